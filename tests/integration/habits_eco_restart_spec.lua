-- Issue 16 item 3: `pm restart|reload <ecosystem file> [--env NAME]` and
-- PM2's startOrRestart / startOrReload / startOrGracefulReload read the
-- file again: the --env section merged, new apps started, known apps
-- restarted or reloaded with what changed, apps no longer in the file left
-- running (PM2); a bad file changes nothing.
local H = require "pmtest"
local util = require "pm.util"
local core = require "pm.core"

local ok, fails, write = H.ok, H.fails, H.write
local q = H.shquote

local NODE = core.access("/usr/bin/node", "x") or core.access("/usr/local/bin/node", "x")
local PY = core.access("/usr/bin/python3", "x") and "/usr/bin/python3" or "python3"
local SERVER_PY = H.fixtures .. "/rl_server.py"
local CLIENT = H.fixtures .. "/rl_client.py"

-- An ecosystem.config.js in the home (PM2's own file) with these apps
-- (a Lua table turned into JSON inside module.exports).
local function config_js(apps)
  return write(H.home .. "/ecosystem.config.js", "module.exports = " .. util.encode({ apps = apps }) .. "\n")
end

local function sleeper(name, extra)
  local a = { name = name, script = "/bin/sleep", args = { "1000" }, env = { STAGE = "dev" },
    env_production = { STAGE = "production" } }
  for k, v in pairs(extra or {}) do a[k] = v end
  return a
end

-- The environment of a live app process, once it is the app's own.
local function env_of(pid)
  return H.wait_for(function()
    local e = H.environ(pid)
    return e and e.PM_APP_UID and e
  end, 5000, "the environment of " .. tostring(pid))
end

-- Without node an ecosystem.config.js cannot be read: the test is pending.
local function no_node()
  if NODE then return false end
  pending("node is not installed (ecosystem.config.js)")
  return true
end

local function pids()
  local t = {}
  for _, p in ipairs(H.jlist()) do t[p.name] = p.pid end
  return t
end

describe("an ecosystem file read again", function()
  before_each(function() H.new_home() end)
  after_each(function() H.cleanup() end)

  it("pm reload ecosystem.config.js --env production: env merged, new apps started, removed ones left", function()
    if no_node() then return end
    config_js({ sleeper("api"), sleeper("gone") })
    ok(H.pm("start", "ecosystem.config.js", "-s", { cwd = H.home }))
    local before = pids()
    assert.equal("dev", env_of(before.api).STAGE)
    -- the deploy: api changes, worker is new, gone left the file
    config_js({ sleeper("api", { env = { STAGE = "dev", RELEASE = "2" } }), sleeper("worker") })
    local r = ok(H.pm("reload", "ecosystem.config.js", "--env", "production", { cwd = H.home }))
    assert.is_truthy(r.out:find("api (0): applied env.RELEASE, env.STAGE", 1, true), r.out)
    local a = H.by_name()
    H.online(a.api)
    assert.are_not.equal(before.api, a.api.pid)
    local e = env_of(a.api.pid)
    assert.equal("production", e.STAGE)
    assert.equal("2", e.RELEASE)
    H.online(a.worker, "worker (new in the file)")
    assert.equal("production", env_of(a.worker.pid).STAGE)
    H.online(a.gone, "gone (no longer in the file: PM2 leaves it)")
    assert.equal(before.gone, a.gone.pid)
  end)

  it("pm restart ecosystem.config.js --env production restarts with the section merged", function()
    if no_node() then return end
    config_js({ sleeper("api") })
    ok(H.pm("start", "ecosystem.config.js", "-s", { cwd = H.home }))
    local before = H.proc("api")
    ok(H.pm("restart", "ecosystem.config.js", "--env", "production", "-s", { cwd = H.home }))
    local p = H.online(H.proc("api"))
    assert.are_not.equal(before.pid, p.pid)
    assert.equal("production", env_of(p.pid).STAGE)
    assert.equal(1, p.pm2_env.restart_time)
  end)

  it("pm startOrReload ecosystem.config.js --env production starts, then reloads", function()
    if no_node() then return end
    config_js({ sleeper("api"), sleeper("worker") })
    ok(H.pm("startOrReload", "ecosystem.config.js", "--env", "production", "-s", { cwd = H.home }))
    local first = H.by_name()
    H.online(first.api)
    H.online(first.worker)
    assert.equal("production", env_of(first.api.pid).STAGE)
    ok(H.pm("startOrReload", "ecosystem.config.js", "-s", { cwd = H.home }))
    local second = H.by_name()
    assert.are_not.equal(first.api.pid, second.api.pid)
    assert.are_not.equal(first.worker.pid, second.worker.pid)
    assert.equal("dev", env_of(second.api.pid).STAGE, "without --env, env alone")
    assert.equal(2, #H.jlist())
  end)

  it("pm startOrRestart and pm startOrGracefulReload take the file the same way", function()
    if no_node() then return end
    config_js({ sleeper("api") })
    ok(H.pm("startOrRestart", "ecosystem.config.js", "-s", { cwd = H.home }))
    local p1 = H.online(H.proc("api"))
    config_js({ sleeper("api"), sleeper("worker") })
    ok(H.pm("startOrGracefulReload", "ecosystem.config.js", "--env", "production", "-s", { cwd = H.home }))
    local a = H.by_name()
    assert.are_not.equal(p1.pid, a.api.pid)
    H.online(a.worker)
    assert.equal("production", env_of(a.api.pid).STAGE)
    ok(H.pm("startOrRestart", "ecosystem.config.js", "-s", { cwd = H.home }))
    assert.equal("dev", env_of(H.proc("worker").pid).STAGE)
  end)

  it("the file's instances: a reload or restart of it runs as many as it says (more, fewer, after pm scale)",
    function()
    local function count(name)
      local n = 0
      for _, p in ipairs(H.jlist()) do
        if p.name == name then
          n = n + 1
          assert.equal("online", p.pm2_env.status, name)
        end
      end
      return n
    end
    local f = config_js({ sleeper("iw", { instances = 2 }) })
    ok(H.pm("start", f, "-s"))
    assert.equal(2, count("iw"))
    local r = ok(H.pm("reload", f))
    assert.truthy(r.out:find("iw (0): reloaded, nothing changed", 1, true), r.out)
    config_js({ sleeper("iw", { instances = 3 }) })
    r = ok(H.pm("reload", f))
    assert.truthy(r.out:find("applied instances", 1, true), r.out)
    assert.equal(3, count("iw"))
    assert.equal(3, H.proc("iw").pm2_env.instances)
    config_js({ sleeper("iw", { instances = 1 }) })
    ok(H.pm("restart", f, "-s"))
    assert.equal(1, count("iw"))
    -- a count changed by pm scale since: the file's again
    ok(H.pm("scale", "iw", "3", "-s"))
    assert.equal(3, count("iw"))
    ok(H.pm("startOrReload", f, "-s"))
    assert.equal(1, count("iw"))
    -- a file that does not say how many keeps the count pm scale made
    config_js({ sleeper("iw") })
    ok(H.pm("scale", "iw", "2", "-s"))
    r = ok(H.pm("reload", f))
    assert.is_nil(r.out:find("instances", 1, true), r.out)
    assert.equal(2, count("iw"))
    assert.equal(2, H.proc("iw").pm2_env.instances)
  end)

  it("a bad file changes nothing: one line, the apps run on untouched", function()
    if no_node() then return end
    config_js({ sleeper("api") })
    ok(H.pm("start", "ecosystem.config.js", "-s", { cwd = H.home }))
    local before = H.proc("api")
    write(H.home .. "/ecosystem.config.js", "module.exports = { apps: [ { name: 'api' script: 'x' } ] }\n")
    for _, verb in ipairs({ "restart", "reload", "startOrReload", "startOrRestart" }) do
      fails(H.pm(verb, "ecosystem.config.js", "--env", "production", { cwd = H.home }), "ecosystem.config.js:1:")
    end
    config_js({ sleeper("api", { max_restarts = "many" }) })
    fails(H.pm("reload", "ecosystem.config.js", { cwd = H.home }), "max_restarts")
    local p = H.online(H.proc("api"))
    assert.equal(before.pid, p.pid)
    assert.equal(0, p.pm2_env.restart_time)
    assert.equal(1, #H.jlist())
  end)

  it("startOr* need an ecosystem file", function()
    fails(H.pm("startOrReload", "nosuch.config.js", { cwd = H.home }), "file not found")
    H.script("plain.sh", "#!/bin/sh\nsleep 1\n")
    fails(H.pm("startOrRestart", "plain.sh", { cwd = H.home }), "not an ecosystem file")
  end)

  it("the Lua API: pm.startOrReload(file, { env = 'production' }), pm.reload(file, { env = ... })", function()
    if no_node() then return end
    config_js({ sleeper("api") })
    local code = [[
local list = assert(pm.startOrReload("ecosystem.config.js", { env = "production" }))
print(#list)
local f = io.open("ecosystem.config.js", "w")
f:write("module.exports = { apps: [ { name: 'api', script: '/bin/sleep', args: ['1000'], "
  .. "env: { STAGE: 'dev', V: '3' } }, { name: 'b', script: '/bin/sleep', args: ['1000'] } ] }\n")
f:close()
assert(pm.reload("ecosystem.config.js"))
print(#pm.list())
]]
    local r = ok(H.pm("-e", code, { cwd = H.home }))
    assert.equal("1\n2\n", r.out)
    local a = H.by_name()
    assert.equal("3", env_of(a.api.pid).V)
    H.online(a.b)
  end)

  it("a reload of held sockets applies the file: the new process has the new env and serves the port", function()
    if no_node() then return end
    local port = H.free_port()
    local function app(v)
      return { name = "web", script = SERVER_PY, interpreter = PY, wait_ready = true,
        listen = { "tcp://127.0.0.1:" .. port }, env = { WEB_V = v } }
    end
    config_js({ app("1") })
    ok(H.pm("start", "ecosystem.config.js", "-s", { cwd = H.home }))
    local before = H.online(H.proc("web"))
    config_js({ app("2") })
    ok(H.pm("reload", "ecosystem.config.js", "-s", { cwd = H.home }))
    local after = H.online(H.proc("web"))
    assert.are_not.equal(before.pid, after.pid)
    assert.equal("2", env_of(after.pid).WEB_V)
    local r = H.sh(("%s %s get 127.0.0.1:%d / 5"):format(PY, q(CLIENT), port))
    assert.equal(0, r.code, r.out .. r.err)
    assert.equal(("pid %d inst 0\n"):format(after.pid), r.out)
  end)
end)

describe("a file of many apps read again", function()
  before_each(function() H.new_home() end)
  after_each(function() H.cleanup() end)

  it("restarts its apps together, not one after the other (those after one that depends wait for it)", function()
    -- apps slow to stop (SIGINT ignored, kill_timeout 3 s): one at a time,
    -- never two would be stopping at once
    local slow = H.script("slow.sh", "#!/bin/sh\ntrap '' INT\nexec sleep 1000\n")
    local apps = {}
    for i = 1, 4 do apps[i] = { name = "slow" .. i, script = slow, kill_timeout = 3000 } end
    apps[5] = { name = "after", script = "/bin/sleep", args = { "1000" }, depends_on = { "slow1" } }
    local path = write(H.home .. "/many.json", util.encode({ apps = apps }))
    ok(H.pm("start", path, "-s"))
    H.wait_for(function()
      local n = 0
      for _, p in ipairs(H.jlist()) do if p.pm2_env.status == "online" then n = n + 1 end end
      return n == 5
    end, 10000, "5 apps online")
    local before = H.proc("after").pid
    local c = H.connect()
    c:send(util.encode({ jsonrpc = "2.0", id = 1, method = "restart",
      params = { target = path, cwd = H.home, environ = {} } }) .. "\n")
    H.wait_for(function()
      local n = 0
      for _, p in ipairs(H.jlist()) do if p.pm2_env.status == "stopping" then n = n + 1 end end
      return n >= 2
    end, 5000, "two apps of the file stopping at once")
    -- the one that depends on slow1 is restarted after it, once slow1 runs again
    assert.equal(before, H.proc("after").pid)
    local r = c:reply(1, 20000)
    c:close()
    assert(r and r.result, "the restart replied " .. util.encode(r or {}))
    local a, s1 = H.proc("after"), H.proc("slow1")
    assert.are_not.equal(before, a.pid)
    assert.is_true(a.pm2_env.pm_uptime >= s1.pm2_env.pm_uptime)
  end)
end)

describe("--env without a file", function()
  before_each(function() H.new_home() end)
  after_each(function() H.cleanup() end)

  it("pm restart <name> --env production is refused, as PM2 does, and restarts nothing", function()
    ok(H.pm("start", "/bin/sleep", "--name", "s", "-s", "--", "1000"))
    local before = H.proc("s")
    fails(H.pm("restart", "s", "--env", "production"), "--env production", "not an ecosystem file")
    fails(H.pm("reload", "s", "--env", "production"), "not an ecosystem file")
    assert.equal(before.pid, H.proc("s").pid)
  end)
end)
