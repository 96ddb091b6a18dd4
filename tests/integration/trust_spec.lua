-- What a root daemon trusts (issue 15, items 2 and 3): pm resurrect runs
-- the saved declaration, never what an app's user wrote in the ecosystem
-- file since, and reads a file again for its hooks only when no one else
-- could have written it; a PM_HOME (or its logs/, pids/) that someone else
-- owns or may write is refused with one line.
local H = require "pmtest"
local util = require "pm.util"
local core = require "pm.core"

local APP = H.fixtures .. "/ep_app.sh" -- reports, then `exec sleep`: one process

local ok, contains, online = H.ok, H.contains, H.online
local q = H.shquote

local NOBODY = util.passwd("nobody")

local function root_with_nobody()
  return core.getuid() == 0 and NOBODY ~= nil
end

local dirs = {}
local function tmpdir(tag)
  local p = io.popen("mktemp -d /tmp/pm-" .. tag .. ".XXXXXX")
  local d = p:read("*l")
  p:close()
  dirs[#dirs + 1] = d
  return d
end
local function rm_dirs()
  for _, d in ipairs(dirs) do os.execute("rm -rf " .. q(d)) end
  dirs = {}
end

local function uid_of(pid)
  local s = util.read_file("/proc/" .. pid .. "/status") or ""
  return tonumber(s:match("\nUid:%s*(%d+)"))
end

describe("pm resurrect as root, of an app whose ecosystem file its user owns", function()
  before_each(function() H.new_home() end)
  after_each(function() H.cleanup(); rm_dirs() end)

  it("runs the saved declaration (user, script, args), never the file rewritten since", function()
    if not root_with_nobody() then
      print("SKIPPED (item 2): needs root and a user nobody")
      return pending("needs root and a user nobody")
    end
    local dir = tmpdir("tenant")
    local file = dir .. "/ecosystem.lua"
    H.write(file, ([[
return { apps = { { name = "tenant", script = %q, user = "nobody", cwd = %q,
  on_exit = function() return "stop" end } } }
]]):format(APP, dir))
    os.execute(("chown -R %d:%d %s && chmod 0755 %s"):format(NOBODY.uid, NOBODY.gid, q(dir), q(dir)))
    ok(H.pm("start", file, "-s"))
    local p = online(H.proc("tenant"))
    assert.equal(NOBODY.uid, uid_of(p.pid))
    ok(H.pm("save"))
    ok(H.pm("delete", "all", "-s"))

    -- the app's user rewrites the file: no user, and a script of its own
    local r = H.sh(("setpriv --reuid=%d --regid=%d --clear-groups sh -c %s"):format(NOBODY.uid, NOBODY.gid,
      q(("cat > %s <<'EOF'\nreturn { apps = { { name = \"tenant\", script = \"/bin/sh\", "
        .. "args = { \"-c\", \"id > proof; exec sleep 1000\" }, cwd = %q } } }\nEOF"):format(q(file), dir))))
    if r.code ~= 0 then -- (no setpriv: the same file, written by root and given to nobody)
      H.write(file, ([[return { apps = { { name = "tenant", script = "/bin/sh",
  args = { "-c", "id > proof; exec sleep 1000" }, cwd = %q } } }
]]):format(dir))
      os.execute(("chown %d:%d %s"):format(NOBODY.uid, NOBODY.gid, q(file)))
    end
    assert.is_truthy(contains(file, "id > proof"))

    ok(H.pm("resurrect"))
    local back = online(H.proc("tenant"))
    -- the saved script says "ready" a second time, or the file's command writes its proof
    H.wait_for(function()
      return H.exists(dir .. "/proof") or H.count(util.read_file(H.out_log("tenant")) or "", "ready") >= 2
    end, 5000, "the app running")
    core.sleep(100)
    assert.is_falsy(H.exists(dir .. "/proof"), "the rewritten file's command ran: "
      .. tostring(util.read_file(dir .. "/proof")))
    assert.equal(NOBODY.uid, uid_of(back.pid), "the app runs as nobody, as saved")
    assert.equal(APP, back.pm2_env.pm_exec_path)
    -- nobody may write the file: its hooks are not read again, and pm.log says so
    assert.is_truthy(H.wait_for(function() return contains(H.home .. "/pm.log", "not trusted") end, 3000,
      "pm.log says the file was not trusted"))
  end)
end)

describe("a PM_HOME the daemon does not own", function()
  before_each(function() H.new_home() end)
  after_each(function() H.cleanup(); rm_dirs() end)

  local function refused(home, what)
    local r = H.sh(H.command("ping"), { env = { PM_HOME = home } })
    if r.code == 0 then H.stop_daemon(home) end
    assert.are_not.equal(0, r.code, what .. ": the daemon must refuse: " .. r.out .. r.err)
    local lines = select(2, r.err:gsub("\n", ""))
    assert.equal(1, lines, what .. ": one line: " .. r.err)
    assert.is_falsy(H.exists(home .. "/rpc.sock"), what .. ": no socket")
    assert.is_falsy(H.exists(home .. "/pm.pid"), what .. ": no pm.pid")
    assert.same({}, H.processes_of_home(home), what .. ": no daemon")
    return r.err
  end

  it("is refused with one line saying why and how to fix it; nothing starts", function()
    if not root_with_nobody() then
      print("SKIPPED (item 3): needs root and a user nobody")
      return pending("needs root and a user nobody")
    end
    local home = tmpdir("home")
    os.execute(("chown %d %s && chmod 0777 %s"):format(NOBODY.uid, q(home), q(home)))
    local err = refused(home, "a nobody-owned 0777 PM_HOME")
    assert.is_truthy(err:find(home, 1, true), err)
    assert.is_truthy(err:find("chown", 1, true), "says how to fix it: " .. err)

    os.execute("chmod 0700 " .. q(home))
    refused(home, "a nobody-owned 0700 PM_HOME")

    local home2 = tmpdir("home")
    os.execute("chmod 0777 " .. q(home2))
    err = refused(home2, "a root-owned 0777 PM_HOME")
    assert.is_truthy(err:find("chmod", 1, true), "says how to fix it: " .. err)

    local home3 = tmpdir("home")
    core.mkdir(home3 .. "/logs", 493)
    os.execute(("chown %d %s"):format(NOBODY.uid, q(home3 .. "/logs")))
    err = refused(home3, "a nobody-owned logs/")
    assert.is_truthy(err:find("logs", 1, true), err)

    local home4 = tmpdir("home")
    core.mkdir(home4 .. "/pids", 511)
    os.execute("chmod 0777 " .. q(home4 .. "/pids"))
    err = refused(home4, "a 0777 pids/")
    assert.is_truthy(err:find("pids", 1, true), err)

    -- its own folder, as the daemon makes it: accepted
    local home5 = tmpdir("home")
    local r = H.sh(H.command("ping"), { env = { PM_HOME = home5 } })
    H.stop_daemon(home5)
    assert.equal(0, r.code, r.err)
  end)
end)
