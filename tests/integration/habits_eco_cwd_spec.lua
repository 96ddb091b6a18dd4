-- Issue 16 item 1: the default working directory, as PM2 has it. A script
-- started from the CLI runs where the CLI was run; an ecosystem file's app
-- without cwd runs there too while its script stays relative to the file;
-- a file read again from elsewhere and a resurrect keep the app's cwd.
local H = require "pmtest"
local util = require "pm.util"
local core = require "pm.core"

local ok, real = H.ok, H.real

-- A script that writes where it runs into the app's out log, then waits.
local WHERE = "#!/bin/sh\necho \"cwd=$(pwd)\"\nexec sleep 1000\n"

-- The cwd the app's process reported in its out log.
local function cwd_of(name)
  return H.wait_for(function()
    local s = util.read_file(H.out_log(name))
    return s and s:match("cwd=([^\n]*)\n")
  end, 5000, "the cwd of " .. name)
end

-- The cwd a process runs in now (/proc/PID/cwd).
local function proc_cwd(pid)
  local p = io.popen("readlink /proc/" .. pid .. "/cwd")
  local s = p:read("*l")
  p:close()
  return s
end

local function mkdirs(...)
  for _, d in ipairs({ ... }) do assert(core.mkdir(d, 493) or core.stat(d), "mkdir " .. d) end
end

describe("the default cwd (PM2's)", function()
  local app
  before_each(function()
    H.new_home()
    app = H.home .. "/app"
    mkdirs(app, app .. "/src")
  end)
  after_each(function() H.cleanup() end)

  it("cd app && pm start src/main.sh: runs in app/, not in src/", function()
    H.write(app .. "/src/main.sh", WHERE)
    os.execute("chmod 755 " .. H.shquote(app .. "/src/main.sh"))
    ok(H.pm("start", "src/main.sh", { cwd = app }))
    local p = H.online(H.proc("main"))
    assert.equal(app, p.pm2_env.pm_cwd)
    assert.equal(real(app), cwd_of("main"))
    assert.equal(real(app), proc_cwd(p.pid))
  end)

  it("cd app && pm start npm --name app -- start: npm finds app/package.json", function()
    if not core.access("/usr/bin/npm", "x") and not core.access("/usr/local/bin/npm", "x") then
      pending("npm is not installed")
      return
    end
    H.write(app .. "/package.json", util.encode({ name = "app", version = "1.0.0",
      scripts = { start = "sh ./src/main.sh" } }))
    H.write(app .. "/src/main.sh", WHERE)
    ok(H.pm("start", "npm", "--name", "app", "--", "start", { cwd = app }))
    assert.equal(real(app), cwd_of("app"))
    local p = H.online(H.proc("app"))
    assert.equal(app, p.pm2_env.pm_cwd)
    assert.equal(0, p.pm2_env.restart_time, "npm crash-looped")
  end)

  it("an ecosystem file's app without cwd runs where pm was run; its script is relative to the file", function()
    local proj, elsewhere = H.home .. "/proj", H.home .. "/elsewhere"
    mkdirs(proj, elsewhere)
    mkdirs(proj .. "/work")
    H.write(proj .. "/main.sh", WHERE)
    H.write(proj .. "/work/sub.sh", WHERE) -- (a script is relative to the cwd the file gives)
    os.execute("chmod 755 " .. H.shquote(proj .. "/main.sh") .. " " .. H.shquote(proj .. "/work/sub.sh"))
    local file = H.write(proj .. "/ecosystem.config.lua", [[
return { apps = {
  { name = "nocwd", script = "main.sh" },
  { name = "withcwd", script = "sub.sh", cwd = "work" },
} }
]])
    ok(H.pm("start", file, "-s", { cwd = elsewhere }))
    local a = H.by_name()
    H.online(a.nocwd)
    assert.equal(proj .. "/main.sh", a.nocwd.pm2_env.pm_exec_path)
    assert.equal(elsewhere, a.nocwd.pm2_env.pm_cwd)
    assert.equal(real(elsewhere), cwd_of("nocwd"))
    -- a cwd the file gives is the file's (relative to it)
    assert.equal(proj .. "/work", a.withcwd.pm2_env.pm_cwd)
    assert.equal(real(proj .. "/work"), cwd_of("withcwd"))
  end)

  it("pm restart <file> from another directory applies the file and keeps the app's cwd", function()
    local proj, other = H.home .. "/proj", H.home .. "/other"
    mkdirs(proj, other)
    H.write(proj .. "/main.sh", WHERE)
    os.execute("chmod 755 " .. H.shquote(proj .. "/main.sh"))
    local file = H.write(proj .. "/ecosystem.config.lua", 'return { apps = { { name = "m", script = "main.sh" } } }\n')
    ok(H.pm("start", "ecosystem.config.lua", "-s", { cwd = proj }))
    local before = H.online(H.proc("m"))
    assert.equal(proj, before.pm2_env.pm_cwd)
    H.write(file, 'return { apps = { { name = "m", script = "main.sh", env = { EDITED = "yes" } } } }\n')
    local r = ok(H.pm("restart", file, { cwd = other }))
    local after = H.online(H.proc("m"))
    assert.are_not.equal(before.pid, after.pid)
    assert.equal("yes", H.environ(after.pid).EDITED, "the file was not read again")
    assert.equal(proj, after.pm2_env.pm_cwd)
    assert.equal(real(proj), proc_cwd(after.pid))
    assert.is_falsy(r.out:find("applied cwd", 1, true), r.out)
  end)

  it("pm resurrect brings an app back in the cwd it was saved with, wherever it is run", function()
    H.write(app .. "/src/main.sh", WHERE)
    os.execute("chmod 755 " .. H.shquote(app .. "/src/main.sh"))
    ok(H.pm("start", "src/main.sh", "-s", { cwd = app }))
    H.online(H.proc("main"))
    ok(H.pm("save"))
    H.stop_daemon()
    ok(H.pm("resurrect", { cwd = "/" }))
    local p = H.online(H.wait_for(function()
      local q = H.proc("main")
      return q and q.pm2_env.status == "online" and q
    end, 5000, "main back online"))
    assert.equal(app, p.pm2_env.pm_cwd)
    assert.equal(real(app), proc_cwd(p.pid))
  end)

  it("the Lua API: pm.start({ script = ... }) runs in the caller's cwd", function()
    H.write(app .. "/src/main.sh", WHERE)
    os.execute("chmod 755 " .. H.shquote(app .. "/src/main.sh"))
    ok(H.pm("-e", 'assert(pm.start({ script = "src/main.sh", name = "lapi" }))', { cwd = app }))
    local p = H.online(H.proc("lapi"))
    assert.equal(app, p.pm2_env.pm_cwd)
    assert.equal(real(app), cwd_of("lapi"))
  end)
end)
