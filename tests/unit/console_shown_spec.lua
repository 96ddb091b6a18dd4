-- What the console shows of a chunk's values (console.shown): a call's
-- result without the nil err after it (the README's console tour shows
-- none; the PM2-user helper saw a stray "nil" after list()), a failure's
-- nil, err whole, a lone nil as nil.
local console = require "pm.console"

describe("the console's shown values", function()
  it("leave out the nils after a value, keep a failure's nil, err and a lone nil", function()
    assert.equal("1\n", console.shown(1, nil, nil))
    assert.equal('"ok"\n', console.shown("ok", nil))
    assert.equal('nil, "process or namespace not found"\n', console.shown(nil, "process or namespace not found"))
    assert.equal("nil\n", console.shown(nil))
    assert.equal("true, 2\n", console.shown(true, 2))
    assert.is_nil(console.shown({ a = 1 }, nil):find("nil", 1, true))
  end)
end)
