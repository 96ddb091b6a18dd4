-- pm.log's lines (log.lua): what an app's words carry into a message can
-- neither start a line of its own nor put an escape sequence in the file.
local core = require "pm.core"
local util = require "pm.util"
local log = require "pm.log"

describe("pm.log", function()
  it("escapes control characters and indents what follows a line break", function()
    local path = os.tmpname()
    local saved = core.dup(2)
    local fd = assert(core.open(path, "w", 384))
    core.dup(fd, 2)
    core.close(fd)
    log.warn("app %s listens on port %s", "x", "1\n2026-12-06T09:00:00 error: FORGED\27]0;pwned\7")
    io.stderr:flush()
    core.dup(saved, 2)
    core.close(saved)
    local text = util.read_file(path)
    os.remove(path)
    assert.is_falsy(text:find("\n2026", 1, true), text)
    assert.is_falsy(text:find("\27", 1, true), text)
    assert.is_truthy(text:find("\\x1b]0;pwned\\x07", 1, true), text)
    assert.is_truthy(text:find("\n    2026-12-06T09:00:00 error: FORGED", 1, true), text)
  end)
end)
