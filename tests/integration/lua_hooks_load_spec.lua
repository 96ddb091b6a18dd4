-- Issue 22, item 5: an ecosystem.lua's load step. `return function(ctx)`
-- (ctx: env, environ, hostname, cpus), __index defaults kept when the
-- file's value is copied (an __index function is not run), a load budget
-- larger than a hook's, a cut-off reported with file:line, print shown by
-- the CLI that asked, bit and coroutine in the sandbox.
local H = require "pmtest"
local hooks = require "pm.hooks"

local ok, fails = H.ok, H.fails

local function eco(body) return H.write(H.home .. "/ecosystem.lua", body) end

describe("an ecosystem.lua's load step", function()
  before_each(function()
    H.new_home()
    H.script("sleeper.sh", "#!/bin/sh\nexec sleep 600\n")
  end)
  after_each(function() H.cleanup() end)

  it("calls a returned function with ctx: env name, caller's environment, hostname, cpus", function()
    local path = eco([[
return function(ctx)
  local apps = {}
  for i = 1, math.min(ctx.cpus, 2) do
    apps[i] = { name = "w" .. i, script = "sleeper.sh",
      env = { WHERE = ctx.hostname, MODE = ctx.env or "none", FROM = ctx.environ.H22_FROM } }
  end
  return { apps = apps }
end
]])
    ok(H.pm("start", path, "--env", "production", { env = { H22_FROM = "caller" } }), "start")
    local p = H.wait_for(function() return H.proc("w1") end, 3000, "w1")
    local e = p.pm2_env.env
    local f = assert(io.open("/proc/sys/kernel/hostname"))
    assert.equal(f:read("*l"), e.WHERE)
    f:close()
    assert.equal("production", e.MODE)
    assert.equal("caller", e.FROM)
  end)

  it("keeps __index defaults (tables), and never runs an __index function", function()
    local path = eco([[
local defaults = { script = "sleeper.sh", max_restarts = 7, env = { A = "1" } }
local base = setmetatable({ kill_timeout = 3000 }, { __index = defaults })
local function app(t) return setmetatable(t, { __index = base }) end
return { apps = { app { name = "d1" }, app { name = "d2", max_restarts = 2 },
  setmetatable({ name = "d3", script = "sleeper.sh" }, { __index = function() while true do end end }) } }
]])
    ok(H.pm("start", path, "-s"))
    local by = H.by_name()
    assert.equal(7, by.d1.pm2_env.max_restarts)
    assert.equal(3000, by.d1.pm2_env.kill_timeout)
    assert.equal("1", by.d1.pm2_env.env.A)
    assert.equal(2, by.d2.pm2_env.max_restarts)
    assert.truthy(by.d3)
  end)

  it("runs under a budget larger than a hook's, and a cut-off names the file:line", function()
    assert.is_true(hooks.LOAD_TIME_LIMIT > hooks.TIME_LIMIT)
    -- about 50 ms of work: over a hook's 10 ms, within the load's budget
    local path = eco([[
local t0, n = os.clock(), 0
while os.clock() - t0 < 0.05 do n = n + 1 end
return { apps = { { name = "slowload", script = "sleeper.sh" } } }
]])
    ok(H.pm("start", path, "-s"))
    assert.truthy(H.proc("slowload"))
    path = eco("local n = 0\nwhile true do\n  n = n + 1\nend\n")
    fails(H.pm("start", path), ("ran over %d ms at %s:"):format(hooks.LOAD_TIME_LIMIT, path))
  end)

  it("shows what print printed to the CLI that asked, also with the error of a refused file", function()
    local path = eco([[
print("loading for", os.getenv("H22_WHO"))
return { apps = { { name = "p1", script = "sleeper.sh" } } }
]])
    local r = ok(H.pm("start", path, { env = { H22_WHO = "alice" } }))
    assert.truthy(r.out:find("loading for\talice\n", 1, true), r.out)
    path = eco([[
print("about to fail")
error("refused")
]])
    r = H.pm("start", path)
    fails(r, "refused")
    assert.truthy(r.out:find("about to fail\n", 1, true), r.out) -- (stdout: stderr has the error's one line)
  end)

  it("has bit and coroutine", function()
    local path = eco([[
local co = coroutine.wrap(function() coroutine.yield(bit.band(6, 3)) end)
return { apps = { { name = "b" .. co(), script = "sleeper.sh" } } }
]])
    ok(H.pm("start", path, "-s"))
    assert.truthy(H.proc("b2"))
  end)
end)
