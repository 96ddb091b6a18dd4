-- Issue 20, item 1: an ecosystem file is evaluated with the environment
-- and cwd of the shell that ran the command (PM2's CLI evaluates it
-- there): os.getenv in ecosystem.lua, process.env in ecosystem.config.js,
-- on start, reload and restart of the file; pm resurrect evaluates it with
-- the environment saved with the declaration, never the daemon's.
local H = require "pmtest"
local core = require "pm.core"

local ok, write = H.ok, H.write

local NODE = core.access("/usr/bin/node", "x") or core.access("/usr/local/bin/node", "x")

-- The environment of a live app process, once it is the app's own.
local function env_of(name)
  local p = H.online(H.proc(name))
  return H.wait_for(function()
    local e = H.environ(p.pid)
    return e and e.PM_APP_UID and e
  end, 5000, "the environment of " .. name), p.pid
end

local LUA_FILE = [[
return { apps = { { name = "tagged", script = "/bin/sleep", args = { "1000" },
  env = { TAG = os.getenv("DEPLOY_TAG") or "unset" } } } }
]]

local JS_FILE = [[
module.exports = { apps: [{ name: "tagged", script: "/bin/sleep", args: ["1000"],
  env: { TAG: process.env.DEPLOY_TAG || "unset", FROM: process.cwd() } }] };
]]

describe("an ecosystem file sees the caller's environment", function()
  before_each(function() H.new_home() end)
  after_each(function() H.cleanup() end)

  local function start_then_reload(file)
    -- a daemon started before, without DEPLOY_TAG
    ok(H.pm("ping"))
    ok(H.pm("start", file, "-s", { env = { DEPLOY_TAG = "v42" }, cwd = H.home }))
    local env, pid = env_of("tagged")
    assert.equal("v42", env.TAG)
    ok(H.pm("reload", file, "-s", { env = { DEPLOY_TAG = "v43" }, cwd = H.home }))
    local env2, pid2 = H.wait_for(function()
      local e, p = env_of("tagged")
      return p ~= pid and e.TAG == "v43" and e, p
    end, 5000, "the reloaded process")
    assert.equal("v43", env2.TAG)
    assert.are_not.equal(pid, pid2)
    return env2
  end

  it("DEPLOY_TAG=v42 pm start ecosystem.lua, then DEPLOY_TAG=v43 pm reload ecosystem.lua", function()
    start_then_reload(write(H.home .. "/ecosystem.lua", LUA_FILE))
  end)

  it("DEPLOY_TAG=v42 pm start ecosystem.config.js, DEPLOY_TAG=v43 pm reload (process.env, process.cwd())", function()
    if not NODE then return pending("node is not installed") end
    local dir = H.home .. "/sub"
    core.mkdir(dir, 493)
    local file = write(H.home .. "/ecosystem.config.js", JS_FILE)
    ok(H.pm("ping"))
    ok(H.pm("start", file, "-s", { env = { DEPLOY_TAG = "v42" }, cwd = dir }))
    local env = env_of("tagged")
    assert.equal("v42", env.TAG)
    assert.equal(H.real(dir), H.real(env.FROM))
    start_then_reload(file)
  end)

  it("pm restart <file> and startOrRestart take the caller's environment of the moment", function()
    local file = write(H.home .. "/ecosystem.lua", LUA_FILE)
    ok(H.pm("start", file, "-s", { env = { DEPLOY_TAG = "a1" } }))
    assert.equal("a1", env_of("tagged").TAG)
    ok(H.pm("restart", file, "-s", { env = { DEPLOY_TAG = "a2" } }))
    H.wait_for(function() return env_of("tagged").TAG == "a2" end, 5000, "TAG=a2")
    ok(H.pm("startOrRestart", file, "-s", { env = { DEPLOY_TAG = "a3" } }))
    H.wait_for(function() return env_of("tagged").TAG == "a3" end, 5000, "TAG=a3")
    -- a file evaluated without the variable: not the daemon's either
    ok(H.pm("restart", file, "-s", { env = { DEPLOY_TAG = "" } }))
    H.wait_for(function() return env_of("tagged").TAG == "" end, 5000, "TAG empty")
  end)

  it("pm resurrect keeps the environment saved with the declaration", function()
    local file = write(H.home .. "/ecosystem.lua", LUA_FILE)
    ok(H.pm("start", file, "-s", { env = { DEPLOY_TAG = "saved" } }))
    ok(H.pm("save"))
    ok(H.pm("kill"))
    ok(H.pm("resurrect", { env = { DEPLOY_TAG = "other" } }))
    assert.equal("saved", env_of("tagged").TAG)
  end)
end)
