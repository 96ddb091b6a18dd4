-- Issue 23: a saved declaration's env_remove (the variables a Lua
-- ecosystem file removed with false) is pm's own list, not PM2's env_<name> section:
-- pm resurrect and the journal's recovery bring the app back without the
-- variable (they used to refuse the app: "'env_remove': 1 is not a
-- variable name"). An env_remove section of a file ({NAME = value}) is
-- still one (--env remove).
local H = require "pmtest"

local ok = H.ok

local APP = "#!/bin/sh\nexec sleep 1000\n"

local function online(name, not_pid)
  return H.wait_for(function()
    local q = H.proc(name)
    return q and q.pm2_env.status == "online" and q.pid > 0 and q.pid ~= not_pid and q
  end, 5000, name .. " online")
end

local function eco()
  local script = H.script("a.sh", APP)
  local path = H.home .. "/eco.config.lua"
  -- (false removes a variable in a Lua file; a PM2 file's null is "null")
  H.write(path, ('return { apps = { { name = "er", script = %q, env = { FOO = false, BAR = "1" }, '
    .. 'env_remove = { BAZ = "section" } } } }\n'):format(script))
  return path
end

describe("a saved env_remove", function()
  before_each(function() H.new_home() end)
  after_each(function() H.cleanup() end)

  it("comes back from pm save / pm resurrect: the variable stays removed", function()
    ok(H.pm("start", eco(), "-s", { env = { FOO = "inherited" } }))
    local p = online("er")
    assert.is_nil(H.environ(p.pid).FOO)
    assert.same({ "FOO" }, p.pm2_env.env_remove)
    ok(H.pm("save"))
    ok(H.pm("kill"))
    local r = ok(H.pm("resurrect", { env = { FOO = "inherited again" } }))
    p = online("er")
    local env = H.environ(p.pid)
    assert.is_nil(env.FOO, r.out)
    assert.equal("1", env.BAR)
    assert.same({ "FOO" }, p.pm2_env.env_remove)
  end)

  it("comes back from the journal after a crash of the daemon", function()
    ok(H.pm("start", eco(), "-s", { env = { FOO = "inherited" } }))
    local p = online("er")
    local dpid = H.daemon_pid()
    H.crash_daemon(dpid)
    H.wait_for(function() return not H.alive(dpid) end, 5000, "the daemon gone")
    ok(H.pm("ping", { env = { FOO = "inherited again" } }))
    local q = online("er", p.pid)
    assert.is_nil(H.environ(q.pid).FOO)
    assert.is_nil(H.pm_log():find("not a variable name", 1, true), H.pm_log())
  end)

  it("an env_remove section of a file is a section: --env remove takes it", function()
    ok(H.pm("start", eco(), "--env", "remove", "-s"))
    local p = online("er")
    assert.equal("section", H.environ(p.pid).BAZ)
  end)
end)
