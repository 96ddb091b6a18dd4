-- pm monit's history line (view.sparkline, view.monit_history): the
-- daemon's samples as block characters, newest last, gaps as spaces.
local view = require "pm.view"

describe("sparklines", function()
  it("scales to the maximum, keeps the newest width values, and shows gaps", function()
    local s, max = view.sparkline({ 0, 1, 2, 4, false, 8 }, 6)
    assert.equal(8, max)
    assert.equal("▁▁▂▄ █", s)
    assert.equal("▄ █", (view.sparkline({ 0, 1, 2, 4, false, 8 }, 3)))
    -- fewer values than the width: padded on the left
    assert.equal("   ██", (view.sparkline({ 3, 3 }, 5)))
    -- a floor keeps small values small
    assert.equal("▁", (view.sparkline({ 0.1 }, 1, 100)))
    assert.equal("     ", (view.sparkline({}, 5)))
  end)

  it("makes monit's line of CPU and memory", function()
    local line = view.monit_history({ cpu = { 10, 20, false, 40 }, memory = { 1048576, 2097152, false, 4194304 } }, 4)
    assert.equal("cpu ▂▄ █  40.0% max   mem ▂▄ █    4.0M max", line)
  end)
end)
