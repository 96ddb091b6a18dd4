-- The CPU share a process list shows (describe.sample): never the clock
-- tick's noise over a young process's few milliseconds, never above what
-- every CPU gives (the PM2-user helper saw 482-731 % on 2 CPUs for Node
-- processes listed right after a resurrect).
local core = require "pm.core"
local describe_ = require "pm.describe"
local appdecl = require "pm.app"

-- This process has used some CPU (loading busted, and this loop)
local function burn(ms)
  local t0 = os.clock()
  while (os.clock() - t0) * 1000 < ms do end
end

describe("the CPU share of a process", function()
  local min_span = describe_.MIN_SPAN_MS
  after_each(function() describe_.MIN_SPAN_MS = min_span end)

  it("is 0 while the process is younger than MIN_SPAN_MS (its first sample), then measured", function()
    burn(50)
    local p = { pid = core.getpid(), started = core.mono() - 5 }
    local _, cpu = describe_.sample(p)
    assert.equal(0, cpu)
    assert.is_table(p.cpu_sample, "a sample kept: the next one is a share over the time between them")
  end)

  it("is at most 100 % for each CPU", function()
    burn(50)
    describe_.MIN_SPAN_MS = 1 -- (a first sample over 5 ms: 50 ms of CPU in it is 1,000 %)
    local p = { pid = core.getpid(), started = core.mono() - 5 }
    local _, cpu = describe_.sample(p)
    assert.is_true(cpu > 0, tostring(cpu))
    assert.is_true(cpu <= appdecl.cpu_count() * 100, tostring(cpu))
    -- (one CPU: the cap itself, whatever this machine has)
    local max = describe_.CPU_MAX
    describe_.CPU_MAX = 100
    _, cpu = describe_.sample({ pid = core.getpid(), started = core.mono() - 5 })
    describe_.CPU_MAX = max
    assert.equal(100, cpu)
  end)
end)
