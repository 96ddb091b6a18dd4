-- core.regex_match, what `/regex/` targets (issue 16, item 9) are matched
-- with: POSIX extended expressions over a list of names.
local core = require "pm.core"

describe("core.regex_match", function()
  it("gives the 1-based indexes of the names it matches anywhere, in order", function()
    local names = { "api-1", "worker", "api-2", "web-api" }
    assert.same({ 1, 3 }, core.regex_match("^api", names))
    assert.same({ 1, 3, 4 }, core.regex_match("api", names))
    assert.same({ 2, 3 }, core.regex_match("^work|2$", names))
    assert.same({ 1, 3 }, core.regex_match("-[0-9]+$", names))
    assert.same({}, core.regex_match("^nope", names))
  end)

  it("skips what is not a string, and a string holding NUL", function()
    assert.same({ 3 }, core.regex_match("a", { 1, true, "a", "a\0b" }))
  end)

  it("returns nil and the reason for a bad expression or a NUL in it", function()
    local res, err = core.regex_match("(", { "a" })
    assert.is_nil(res)
    assert.is_string(err)
    res, err = core.regex_match("a\0b", { "a" })
    assert.is_nil(res)
    assert.is_truthy(err:find("NUL", 1, true))
  end)

  it("raises on arguments of the wrong type", function()
    assert.has_error(function() core.regex_match("a") end)
    assert.has_error(function() core.regex_match(nil, {}) end)
  end)
end)
