-- The history rings (lua/pm/history.lua): their size, what a sample keeps
-- of a number, seconds and minutes, gaps, and when sampling runs.
local history = require "pm.history"
local metrics = require "pm.metrics"
local util = require "pm.util"

describe("history rings", function()
  local now, apps, samples
  before_each(function()
    now = 1800000000000 -- (a whole minute)
    apps, samples = {}, {}
    history.clock = function() return now end
    history.list = function() return apps end
    history.sample = function(p) return samples[p][1], samples[p][2] end
  end)

  it("holds 10 min of seconds and 24 h of minutes of cpu and memory in at most 8 KB an app", function()
    assert.equal(2 * 2 * (600 + 1440), history.ring_bytes)
    assert.is_true(history.ring_bytes <= 8192)
  end)

  it("keeps memory within 0.1 % and cpu to a tenth of a percent", function()
    for _, b in ipairs({ 0, 4096, 1536 * 1024, 123456789, 7.5 * 2 ^ 30, 3 * 2 ^ 40 }) do
      local back = history.dec_mem(history.enc_mem(b))
      assert.is_true(math.abs(back - b) <= b * 0.001 + 1024, ("%d came back as %d"):format(b, back))
    end
  end)

  it("samples every second while asked, with gaps where no sample was taken", function()
    local p = { pid = 10, pm_id = 3 }
    apps[1] = p
    samples[p] = { 10 * 2 ^ 20, 12.34 }
    history.ask()      -- (one sample at once)
    now = now + 1000
    samples[p] = { 20 * 2 ^ 20, 50 }
    history.tick()
    now = now + 3000   -- two seconds without a sample
    history.tick()
    local h = history.of(p, 5)
    assert.equal(1, h.step)
    assert.same({ 12.3, 50, false, false, 50 }, h.cpu)
    assert.equal(10 * 2 ^ 20, h.memory[1])
    assert.equal(false, h.memory[3])
    assert.equal(now - 4000, h.start)
    -- the minutes' ring: this minute's average
    local m = history.of(p, 3600)
    assert.equal(60, m.step)
    assert.equal(60, #m.cpu)
    assert.is_true(math.abs(m.cpu[60] - (12.34 + 50 + 50) / 3) < 0.06)
    assert.equal(false, m.cpu[59])
    local s = history.summary(h)
    assert.equal(12.3, s.cpu.min)
    assert.equal(50, s.cpu.max)
    assert.equal(3, s.cpu.samples)
    assert.is_true(math.abs(s.cpu.avg - 112.3 / 3) < 1e-9)
    assert.is_nil(history.summary(history.of({ pm_id = 9 }, 60)))
  end)

  it("stops sampling a while after the last ask", function()
    local p = { pid = 10, pm_id = 1 }
    apps[1] = p
    samples[p] = { 1024, 1 }
    history.ask()
    assert.is_true(history.active())
    local real = history.HOLD_MS
    history.HOLD_MS = -1 -- (the hold is over)
    history.tick()
    history.HOLD_MS = real
    assert.is_false(history.active())
  end)
end)

describe("history sampling", function()
  -- (issue 21: pm describe of one app beside 9,500 others read /proc for
  -- all of them every second for 5 minutes)
  it("samples only the apps asked for (all when none is named)", function()
    local now = 1800000000000
    local a, b = { pid = 10, pm_id = 1 }, { pid = 11, pm_id = 2 }
    local taken = {}
    history.clock = function() return now end
    history.list = function() return { a, b } end
    history.sample = function(p) taken[p] = (taken[p] or 0) + 1; return 4096, 1 end
    history.ask({ a })
    now = now + 1000
    history.tick()
    assert.equal(2, taken[a])
    assert.is_nil(taken[b])
    history.ask() -- (all)
    now = now + 1000
    history.tick()
    assert.equal(3, taken[a])
    assert.equal(1, taken[b])
    local real = history.HOLD_MS
    history.HOLD_MS = -1 -- (every ask is over: sampling stops)
    history.tick()
    history.HOLD_MS = real
    assert.is_false(history.active())
  end)
end)

describe("metrics text", function()
  it("escapes label values and counts restarts by reason and exits by code or signal", function()
    local p = { pm_id = 7, name = 'we"ird\\name', instance = 0, status = "online", pid = 5, pm_uptime = 0,
      restart_time = 2, decl = { namespace = "n\ns", interpreter = "/usr/bin/node" } }
    metrics.on_event(p, "exit", { code = 1, reason = "exit" })
    metrics.on_event(p, "restart", nil, false)
    metrics.on_event(p, "exit", { signal = "SIGKILL", reason = "memory" })
    metrics.on_event(p, "restart", { reason = "memory" }, false)
    metrics.on_event(p, "restart", nil, true)
    -- (the daemon's numbers as JSON, the web process's text)
    local json = util.raw_text(metrics.collect({ list = { p }, sample = function() return 2048, 1.5 end,
      bus = { subscribers = function() return 0 end, dropped_total = 0 }, requests = { list = 3 } }))
    local text = metrics.text(util.decode(json))
    local labels = '{id="7",name="we\\"ird\\\\name",namespace="n\\ns",instance="0",interpreter="node"'
    assert.truthy(text:find("pm2_up" .. labels .. "} 1\n", 1, true))
    assert.truthy(text:find("pm2_memory" .. labels .. "} 2048\n", 1, true))
    assert.truthy(text:find("pm_restarts_total" .. labels .. ',reason="exit"} 1\n', 1, true))
    assert.truthy(text:find("pm_restarts_total" .. labels .. ',reason="memory"} 1\n', 1, true))
    assert.truthy(text:find("pm_restarts_total" .. labels .. ',reason="manual"} 1\n', 1, true))
    assert.truthy(text:find("pm_exits_total" .. labels .. ',code="1",signal=""} 1\n', 1, true))
    assert.truthy(text:find("pm_exits_total" .. labels .. ',code="",signal="SIGKILL"} 1\n', 1, true))
    assert.truthy(text:find('pm_daemon_requests_total{method="list"} 3\n', 1, true))
    metrics.on_event(p, "delete")
  end)
end)
