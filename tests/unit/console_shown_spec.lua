-- What the console shows of a chunk's values (console.shown): a pm call's
-- result without the nil err of a success after it (`list()` showed a
-- stray nil: the README's console tour shows none, the PM2-user helper
-- saw one); every other list of values as Lua returns it (`1, "two", nil`
-- typed shows its nil), a failure's nil, err whole.
local console = require "pm.console"

describe("the console's shown values", function()
  it("leave out a success's nil err, and nothing else", function()
    assert.equal('"ok"\n', console.shown("ok", nil))
    assert.is_nil(console.shown({ a = 1 }, nil):find("nil", 1, true))
    assert.equal('1, "two", nil\n', console.shown(1, "two", nil))
    assert.equal('nil, "process or namespace not found"\n', console.shown(nil, "process or namespace not found"))
    assert.equal("nil\n", console.shown(nil))
  end)
end)
