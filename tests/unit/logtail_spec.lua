-- What a line of a log file says of itself (lua/pm/logtail.lua): its time
-- (a --time / log_date_format stamp, a JSON line's timestamp), the
-- instance that wrote it (" [id]" after the stamp, process_id), its text.
local logtail = require "pm.logtail"

describe("logtail.parse", function()
  it("a stamp with a zone, then the writer's id", function()
    local e = logtail.parse("1970-01-01T01:00:02.250+01:00 [7]: hello: world")
    assert.same({ at = 2250, id = 7, message = "hello: world" }, e)
    assert.equal(2250, logtail.parse("1970-01-01T00:00:02.250Z: x").at)
  end)

  it("a stamp in local time (no zone)", function()
    local e = logtail.parse("2026-12-06 08:00:00: plain")
    assert.equal(os.time({ year = 2026, month = 12, day = 6, hour = 8, min = 0, sec = 0 }) * 1000, e.at)
    assert.equal("plain", e.message)
    assert.is_nil(e.id)
  end)

  it("a JSON line of log_type json; other lines are what they are", function()
    local e = logtail.parse('{"message":"m","timestamp":"1970-01-01T00:00:01Z","type":"out","process_id":3,'
      .. '"app_name":"a"}')
    assert.same({ 1000, 3, "m" }, { e.at, e.id, e.message })
    assert.same({ message = '{"message":"an app\'s own JSON"}' }, logtail.parse('{"message":"an app\'s own JSON"}'))
    assert.same({ message = "2026-12-06 not a stamp" }, logtail.parse("2026-12-06 not a stamp"))
  end)
end)

describe("logtail.last_lines", function()
  it("reads at most MAX_TAIL bytes from the end (a huge file with no newline is read as its end)", function()
    local path = os.tmpname()
    local f = assert(io.open(path, "w"))
    local chunk = ("x"):rep(65536)
    for _ = 1, (logtail.MAX_TAIL / 65536) * 2 do f:write(chunk) end
    f:write("\nlast line\n")
    f:close()
    local lines = logtail.last_lines(path, 5)
    os.remove(path)
    assert.equal("last line", lines[#lines])
    for _, l in ipairs(lines) do assert.is_true(#l <= logtail.MAX_TAIL) end
  end)
end)
