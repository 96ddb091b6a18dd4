-- core.timer refuses what libev would abort on: a NaN or an infinite
-- number of ms is a Lua error, a negative one fires at once.
local core = require "pm.core"

describe("core.timer", function()
  it("refuses a NaN or infinite delay or repeat with an error, not an abort", function()
    local fn = function() end
    assert.has_error(function() core.timer(0 / 0, 0, fn) end)
    assert.has_error(function() core.timer(1 / 0, 0, fn) end)
    assert.has_error(function() core.timer(10, 0 / 0, fn) end)
    assert.has_error(function() core.timer(10, -1 / 0, fn) end)
  end)

  it("fires a negative delay at once", function()
    local fired = false
    local t = core.timer(-5, 0, function() fired = true end)
    local guard = core.timer(2000, 0, function() end)
    local deadline = core.mono() + 2000
    while not fired and core.mono() < deadline do core.run("once") end
    t:close()
    guard:close()
    assert.is_true(fired)
  end)
end)
