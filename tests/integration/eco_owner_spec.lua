-- A root daemon and an ecosystem file a user may change (the file, or a
-- folder on the way to it, is theirs): the file is that user's word, so
-- its apps run as that user. One that names root (or another user, or a
-- group the user is not in) refuses the whole file, running apps
-- untouched; its hooks reach that user's apps only; `pm deploy` as root
-- runs none of its commands.
local H = require "pmtest"
local core = require "pm.core"
local util = require "pm.util"

local ok, fails, write = H.ok, H.fails, H.write
local q = H.shquote

local USER = H.other_user()

local function uid_of(pid)
  local s = util.read_file("/proc/" .. pid .. "/status") or ""
  return tonumber(s:match("Uid:%s*(%d+)"))
end

describe("an ecosystem file of a user's, applied by root", function()
  local top
  before_each(function()
    H.new_home()
    top = nil
  end)
  after_each(function()
    H.cleanup()
    if top then os.execute("rm -rf " .. q(top)) end
  end)

  -- a folder of USER's under a folder of root's (not PM_HOME: 0700)
  local function user_dir()
    local p = io.popen("mktemp -d /tmp/pm-eco-owner.XXXXXX")
    top = p:read("*l")
    p:close()
    os.execute("chmod 0711 " .. q(top))
    local dir = top .. "/app"
    core.mkdir(dir, 493)
    return dir
  end
  local function give(dir) os.execute(("chown -R %d:%d %s"):format(USER.uid, USER.gid, q(dir))) end
  -- an app of root's, started from the CLI -> its pid
  local function root_app()
    ok(H.pm("start", "/bin/sleep", "--name", "rootapp", "-s", "--", "1000"))
    return H.online(H.proc("rootapp")).pid
  end

  it("runs its apps as that user, and refuses the whole file when one names root, another user or group", function()
    if core.getuid() ~= 0 or not USER then return pending("needs root and a user cloudsdk (or nobody)") end
    local dir = user_dir()
    local file = write(dir .. "/ecosystem.json",
      '{ "apps": [ { "name": "mine", "script": "/bin/sleep", "args": ["1000"] } ] }\n')
    give(dir)
    ok(H.pm("start", file, "-s"))
    local p = H.online(H.proc("mine"))
    assert.equal(USER.uid, uid_of(p.pid))
    -- the user edits it: an app as root, then one in root's group
    for _, extra in ipairs({ '"user": "root"', '"uid": 0', '"gid": 0', '"listen": "unix:' .. top .. '/root.sock"' }) do
      write(file, ('{ "apps": [ { "name": "mine", "script": "/bin/sleep", "args": ["1000"] },\n'
        .. '  { "name": "evil", "script": "/bin/sleep", "args": ["1000"], %s } ] }\n'):format(extra))
      give(dir)
      for _, verb in ipairs({ "start", "restart", "reload" }) do
        local r = fails(H.pm(verb, file), "app 'evil'")
        local line = (r.out .. r.err):gsub("%s+$", "")
        assert.is_nil(line:find("\n", 1, true), line)
        assert.truthy(line:find(USER.name .. "'s", 1, true), line)
      end
      assert.is_nil(H.proc("evil"))
      assert.is_false(H.exists(top .. "/root.sock"))
      assert.equal(p.pid, H.proc("mine").pid) -- (nothing else changed)
    end
  end)

  it("is the user's when a link on the way is the user's, wherever it leads; refused when writable", function()
    if core.getuid() ~= 0 or not USER then return pending("needs root and a user cloudsdk (or nobody)") end
    local dir = user_dir() -- (top: root's, 0711; top/app: the user's)
    core.mkdir(top .. "/etc", 493)
    core.mkdir(top .. "/rootonly", 493)
    -- root's link -> the user's link -> a file only root may change: the
    -- user may point their link anywhere at any time, so it is their word
    write(top .. "/rootonly/ecosystem.json",
      '{ "apps": [ { "name": "via", "script": "/bin/sleep", "args": ["1000"] } ] }\n')
    os.execute(("ln -s %s %s"):format(q(top .. "/rootonly/ecosystem.json"), q(dir .. "/ecosystem.json")))
    os.execute(("ln -s %s %s"):format(q(dir .. "/ecosystem.json"), q(top .. "/etc/ecosystem.json")))
    os.execute(("chown -h %d %s %s"):format(USER.uid, q(dir), q(dir .. "/ecosystem.json")))
    ok(H.pm("start", top .. "/etc/ecosystem.json", "-s"))
    assert.equal(USER.uid, uid_of(H.online(H.proc("via")).pid))
    -- a file of root's anyone (or a group) may write: refused, whoever owns it
    local open_file = write(top .. "/rootonly/open.json",
      '{ "apps": [ { "name": "open", "script": "/bin/sleep", "args": ["1000"] } ] }\n')
    for _, mode in ipairs({ "0666", "0664" }) do
      os.execute(("chmod %s %s"):format(mode, q(open_file)))
      local r = fails(H.pm("start", open_file), "writable by group or others")
      assert.is_nil((r.out .. r.err):find("\n.", 1))
      assert.is_nil(H.proc("open"))
    end
  end)

  it("may not take the name of an app of root's (applied, it would be the user's)", function()
    if core.getuid() ~= 0 or not USER then return pending("needs root and a user cloudsdk (or nobody)") end
    local root_pid = root_app()
    local dir = user_dir()
    local file = write(dir .. "/ecosystem.json",
      '{ "apps": [ { "name": "rootapp", "script": "/bin/sh", "args": ["-c", "exec sleep 1000"] } ] }\n')
    give(dir)
    for _, verb in ipairs({ "start", "restart", "reload" }) do
      local r = fails(H.pm(verb, file), "app 'rootapp': the name of an app that runs as")
      assert.is_nil((r.out .. r.err):gsub("%s+$", ""):find("\n", 1, true))
    end
    local p = H.proc("rootapp")
    assert.equal(root_pid, p.pid)
    assert.equal(0, uid_of(p.pid))
  end)

  it("is decided before it is read, and read as that user: a folder renamed meanwhile, a link to a root's file",
    function()
    if core.getuid() ~= 0 or not USER then return pending("needs root and a user cloudsdk (or nobody)") end
    local dir = user_dir()
    -- a root's file only root may read, and the user's link to it
    core.mkdir(top .. "/rootonly", 448)
    write(top .. "/rootonly/secret.json", '{ "apps": [ { "name": "leak", "script": "/bin/sleep", "args": ["1000"], '
      .. '"env": { "DB_PASSWORD": "root-only-secret" } } ] }\n')
    os.execute("chmod 0600 " .. q(top .. "/rootonly/secret.json"))
    os.execute(("ln -s %s %s"):format(q(top .. "/rootonly/secret.json"), q(dir .. "/ecosystem.json")))
    give(dir)
    os.execute(("chown -h %d %s"):format(USER.uid, q(dir .. "/ecosystem.json")))
    local r = fails(H.pm("start", dir .. "/ecosystem.json"), "Permission denied")
    assert.is_nil((r.out .. r.err):find("root-only-secret", 1, true))
    assert.is_nil(H.proc("leak"))
    -- a .config.js (node runs it as the user) that renames its own folder
    -- while it is read: the file is still the user's
    if not core.access("/usr/bin/node", "x") then return end
    os.remove(dir .. "/ecosystem.json")
    write(dir .. "/run.sh", "#!/bin/sh\nexec sleep 1000\n")
    os.execute("chmod 0755 " .. q(dir .. "/run.sh"))
    write(dir .. "/ecosystem.config.js", [[
const fs = require('fs'); const gone = __dirname + '.gone';
fs.renameSync(__dirname, gone);
module.exports = { apps: [{ name: 'moved', script: gone + '/run.sh' }] };
]])
    give(dir)
    -- (the user may rename in the root's folder top: theirs to make, as /tmp's)
    os.execute("chmod 1777 " .. q(top))
    finally(function() os.execute("rm -rf " .. q(dir .. ".gone")) end)
    ok(H.pm("start", dir .. "/ecosystem.config.js", "-s", { cwd = "/" }))
    assert.equal(USER.uid, uid_of(H.online(H.proc("moved")).pid))
  end)

  it("sees that user's login environment, not the caller's, and passes none of it to its apps", function()
    if core.getuid() ~= 0 or not USER then return pending("needs root and a user cloudsdk (or nobody)") end
    local dir = user_dir()
    local file = write(dir .. "/ecosystem.lua", [[
return { apps = { { name = "envs", script = "/bin/sleep", args = { "1000" },
  env = { GOT = os.getenv("ROOT_SECRET") or "none", GOT_HOME = os.getenv("HOME"), KEEP = "" } } } }
]])
    give(dir)
    ok(H.pm("start", file, "-s", { env = { ROOT_SECRET = "s3cret", KEEP = "root-value" } }))
    local env = H.proc("envs").pm2_env.env
    assert.equal("none", env.GOT)
    assert.equal(USER.dir ~= "" and USER.dir or "/", env.GOT_HOME)
    ok(H.pm("restart", "envs", "--update-env", "-s", { env = { KEEP = "root-value" } }))
    assert.equal("", H.proc("envs").pm2_env.env.KEEP)
    -- filter_env = false would hand it the caller's whole environment
    write(file, 'return { apps = { { name = "allenv", script = "/bin/sleep", args = { "1000" }, '
      .. 'filter_env = false } } }\n')
    give(dir)
    fails(H.pm("start", file), "filter_env")
    assert.is_nil(H.proc("allenv"))
  end)

  it("lets its hooks see and act on that user's apps only", function()
    if core.getuid() ~= 0 or not USER then return pending("needs root and a user cloudsdk (or nobody)") end
    local root_pid = root_app()
    local dir = user_dir()
    local file = write(dir .. "/ecosystem.lua", [[
return { apps = { { name = "hooked", script = "/bin/sleep", args = { "1000" }, on_start = function()
  local names = {}
  for _, p in ipairs(pm.list()) do names[#names + 1] = p.name end
  pm.log("SEES " .. table.concat(names, ","))
  pm.log("DESCRIBES " .. #pm.describe("rootapp"))
  pm.log("RESTART " .. tostring(pm.restart("rootapp")) .. " " .. tostring(pm.signal("SIGKILL", "rootapp")))
end } } }
]])
    give(dir)
    ok(H.pm("start", file, "-s"))
    H.wait_for(function() return H.pm_log():find("hook: RESTART", 1, true) end, 5000, "the hook ran")
    local log = H.pm_log()
    assert.truthy(log:find("hook: SEES hooked\n", 1, true), log)
    assert.truthy(log:find("hook: DESCRIBES 0", 1, true), log)
    assert.truthy(log:find("hook: RESTART nil nil", 1, true), log)
    H.holds(function()
      local p = H.proc("rootapp")
      return p.pid == root_pid and p.pm2_env.restart_time == 0
    end, 500, "the root app untouched")
  end)

  it("is no module a root's file may require (its code would run as the file's)", function()
    if core.getuid() ~= 0 or not USER then return pending("needs root and a user cloudsdk (or nobody)") end
    local dir = user_dir() -- (top: root's; top/app: the user's)
    write(dir .. "/helpers.lua", "return { n = 1 }\n")
    give(dir)
    local file = write(top .. "/ecosystem.lua", [[
local h = require "app.helpers"
return { apps = { { name = "uses", script = "/bin/sleep", args = { tostring(1000 * h.n) } } } }
]])
    local r = fails(H.pm("start", file), "refused")
    assert.truthy((r.out .. r.err):find("only " .. USER.name .. " may change it", 1, true), r.out .. r.err)
    assert.is_nil(H.proc("uses"))
  end)

  it("is refused by pm deploy run as root", function()
    if core.getuid() ~= 0 or not USER then return pending("needs root and a user cloudsdk (or nobody)") end
    local dir = user_dir()
    local marker = top .. "/ran"
    local file = write(dir .. "/ecosystem.json", ([[
{ "apps": [], "deploy": { "production": { "host": "localhost", "repo": "/nonexistent", "path": %q,
  "ref": "origin/main", "pre-deploy-local": "touch %s" } } }
]]):format(top .. "/dest", marker))
    give(dir)
    local r = fails(H.pm("deploy", file, "production"), "refused")
    assert.truthy((r.out .. r.err):find("only " .. USER.name .. " may change", 1, true), r.out .. r.err)
    assert.is_false(H.exists(marker))
  end)
end)
