local policy = require "pm.policy"

local defaults = { autorestart = true, min_uptime = 1000, max_restarts = 16,
  restart_delay = 0, exp_backoff_restart_delay = 0, stop_exit_codes = {} }

local function decl(over)
  local d = {}
  for k, v in pairs(defaults) do d[k] = v end
  for k, v in pairs(over or {}) do d[k] = v end
  return d
end

-- The delays of n fast exits in a row of dd, from state (kept)
local function delays_of(dd, state, n)
  local out = {}
  for _ = 1, n do
    local d = policy.decide(dd, state, { code = 1, uptime = 10, reason = "exit" })
    state.prev_restart_delay = d.prev_restart_delay
    state.unstable_restarts = d.unstable_restarts
    out[#out + 1] = d.delay
  end
  return out
end

describe("the built-in restart policy", function()
  it("restarts a crash at once by default", function()
    local d = policy.decide(decl(), {}, { code = 1, uptime = 5000, reason = "exit" })
    assert.equal("restart", d.action)
    assert.equal(0, d.delay)
    assert.equal(0, d.unstable_restarts)
  end)

  it("does not restart when autorestart is off", function()
    local d = policy.decide(decl({ autorestart = false }), {}, { code = 1, uptime = 5000, reason = "exit" })
    assert.equal("stop", d.action)
  end)

  it("does not restart on a stop exit code", function()
    local d = policy.decide(decl({ stop_exit_codes = { 0, 42 } }), {}, { code = 42, uptime = 10, reason = "exit" })
    assert.equal("stop", d.action)
  end)

  it("makes the 16th fast exit in a row errored", function()
    local state = { unstable_restarts = 0 }
    local d
    for i = 1, 16 do
      d = policy.decide(decl(), state, { code = 1, uptime = 10, reason = "exit" })
      state.unstable_restarts = d.unstable_restarts
      if i < 16 then assert.equal("restart", d.action) end
    end
    assert.equal("errored", d.action)
    assert.equal(16, d.unstable_restarts)
  end)

  it("resets the count after one run that lasted min_uptime", function()
    local d = policy.decide(decl(), { unstable_restarts = 15 }, { code = 1, uptime = 1000, reason = "exit" })
    assert.equal("restart", d.action)
    assert.equal(0, d.unstable_restarts)
  end)

  it("waits restart_delay", function()
    local d = policy.decide(decl({ restart_delay = 250 }), {}, { code = 1, uptime = 10, reason = "exit" })
    assert.equal(250, d.delay)
  end)

  it("grows exp_backoff_restart_delay by 1.5 up to 15 s and resets after 30 s", function()
    local dd = decl({ exp_backoff_restart_delay = 100, max_restarts = 1000 })
    local state = {}
    assert.same({ 100, 150, 225, 337, 505, 757, 1135, 1702, 2553, 3829, 5743, 8614 }, delays_of(dd, state, 12))
    for _ = 1, 5 do
      local d = policy.decide(dd, state, { code = 1, uptime = 10, reason = "exit" })
      state.prev_restart_delay = d.prev_restart_delay
    end
    assert.equal(15000, state.prev_restart_delay)
    local d = policy.decide(dd, state, { code = 1, uptime = 30000, reason = "exit" })
    assert.equal(100, d.delay)
  end)

  it("takes exp_backoff_factor, exp_backoff_max and exp_backoff_reset from a declaration pm accepts", function()
    local appdecl = require "pm.app"
    local dd = assert(appdecl.normalize({ name = "b", script = "/bin/false", exp_backoff_restart_delay = 100,
      exp_backoff_factor = 2, exp_backoff_max = "1s", exp_backoff_reset = 5000, max_restarts = 1000 },
      { base = "/", environ = {} }))
    local state = {}
    assert.same({ 100, 200, 400, 800, 1000, 1000 }, delays_of(dd, state, 6))
    assert.equal(100, policy.decide(dd, state, { code = 1, uptime = 5000, reason = "exit" }).delay)
  end)

  -- n fast exits of dd in a row (each up 10 ms, then its delay), the clock
  -- moving as a real crash loop's does, from the app's start: the last
  -- decision
  local function loop_of(dd, n, up_first)
    local now = 1000000
    local state, d = { unstable_since = now }, nil
    now = now + (up_first or 0)
    for _ = 1, n do
      now = now + 10
      d = policy.decide(dd, state, { code = 1, uptime = 10, reason = "exit" }, now)
      if d.action ~= "restart" then return d end
      state.prev_restart_delay, state.unstable_restarts = d.prev_restart_delay, d.unstable_restarts
      now = now + d.delay
    end
    return d
  end

  it("keeps retrying an app whose restarts wait, once its fast exits outlast PM2's window from its start", function()
    -- min_uptime x max_restarts = 16 s from the start: exits after it no longer count
    local d = loop_of(decl({ exp_backoff_restart_delay = 100 }), 200)
    assert.equal("restart", d.action)
    assert.equal(15000, d.delay)
    assert.is_true(d.unstable_restarts < 16, d.unstable_restarts)
    d = loop_of(decl({ restart_delay = 2000, max_restarts = 3 }), 50)
    assert.equal("restart", d.action)
    -- up longer than the window first (a dependency went down later): never errored
    d = loop_of(decl({ exp_backoff_restart_delay = 100, max_restarts = 4 }), 100, 6000)
    assert.equal("restart", d.action)
    assert.equal(0, d.unstable_restarts)
    -- a run that lasts min_uptime zeroes the count
    local up = policy.decide(decl({ exp_backoff_restart_delay = 100 }), { unstable_restarts = 5 },
      { code = 1, uptime = 2000, reason = "exit" }, 1e9)
    assert.equal(0, up.unstable_restarts)
  end)

  it("errors an app whose restarts wait when its fast exits all fall inside the window", function()
    local d = loop_of(decl({ exp_backoff_restart_delay = 10, max_restarts = 4 }), 50)
    assert.equal("errored", d.action)
    assert.equal(4, d.unstable_restarts)
  end)

  it("errors an app restarted at once after max_restarts fast exits in a row, however long they took", function()
    local state, d = {}, nil
    for _ = 1, 16 do
      d = policy.decide(decl(), state, { code = 1, uptime = 900, reason = "exit" }, 1e12)
      state.unstable_restarts = d.unstable_restarts
    end
    assert.equal("errored", d.action)
    assert.equal(16, d.unstable_restarts)
  end)

  it("stops on a manual stop whatever the rules", function()
    local d = policy.decide(decl(), {}, { code = 0, uptime = 10, reason = "stop" })
    assert.equal("stop", d.action)
  end)
end)
