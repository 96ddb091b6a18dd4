-- Issue 21's two halves of a long reply in core/io.c: stream:write_pieces
-- writes a list of strings (the caller's list, held until written: its
-- small strings through a 256 KB buffer, its large ones from where they
-- are) when nothing else waits, in order with what is written before and
-- after it, however the fd takes it; stream:relay copies the next
-- reply's result to an fd (pm jlist), or gives back another reply's line.
local core = require "pm.core"
local util = require "pm.util"

-- Turns the loop until cond() or ms pass
local function pump(cond, ms)
  local deadline = core.mono() + (ms or 5000)
  while not cond() and core.mono() < deadline do
    local t = core.timer(5, 0, function() end)
    core.run("once")
    t:close()
  end
  return cond()
end

-- Reads fd (through a chunked stream, the loop turning) until it has n
-- bytes or ms pass
local function read_n(fd, n, ms)
  local got, size = {}, 0
  local rs = core.stream(fd, function(data)
    if data then got[#got + 1] = data; size = size + #data end
  end, function() end)
  rs:chunked()
  pump(function() return size >= n end, ms)
  rs:close()
  return table.concat(got)
end

describe("stream:write_pieces", function()
  it("writes the pieces in order between what comes before and after, past a full pipe", function()
    local r, w = core.pipe(4096)
    local st = core.stream(w, function() end, function() end)
    local pieces, want = {}, { "head:" }
    -- (~1.2 MB: the small ones fill the buffer several times over; every
    -- 500th is a large one, 5,000 bytes or 70,000, written from itself)
    for i = 1, 20000 do
      local piece = (i % 3 == 0) and "" or (tostring(i) .. string.rep("x", i % 97))
      if i % 1000 == 0 then
        piece = tostring(i) .. string.rep("L", 70000)
      elseif i % 500 == 0 then
        piece = tostring(i) .. string.rep("M", 5000)
      end
      pieces[i] = piece
      want[#want + 1] = piece
    end
    pieces[20001] = 42 -- (a number is its text)
    want[#want + 1] = "42"
    want[#want + 1] = ":tail\n"
    local expected = table.concat(want)
    assert.is_true(st:write("head:"))
    assert.is_true(st:write_pieces(pieces))
    assert.is_true(st:write(":tail\n"))
    assert.is_true(st:pending() > 0)
    local got = read_n(r, #expected, 20000)
    assert.equal(#expected, #got)
    assert.equal(expected, got)
    assert.is_true(pump(function() return st:pending() == 0 end))
    st:close()
  end)

  it("counts what is pending from the total the caller gives, and ends at the list's end whatever it said", function()
    local r, w = core.pipe(4096)
    local st = core.stream(w, function() end, function() end)
    local pieces = {}
    for i = 1, 5000 do pieces[i] = string.rep("p", 100) end
    assert.is_true(st:write_pieces(pieces, 500000))
    assert.is_true(st:pending() > 0 and st:pending() <= 500000)
    local got = read_n(r, 500000, 20000)
    assert.equal(string.rep("p", 500000), got)
    assert.is_true(pump(function() return st:pending() == 0 end))
    st:close()
    -- a total too small: nothing is cut, nothing goes below 0
    r, w = core.pipe(4096) -- (read_n closed the last one's reader)
    st = core.stream(w, function() end, function() end)
    assert.is_true(st:write_pieces(pieces, 10))
    got = read_n(r, 500000, 20000)
    assert.equal(500000, #got)
    assert.is_true(pump(function() return st:pending() == 0 end))
    st:close()
  end)

  it("copies into the output when something waits already, and refuses a piece that is no string", function()
    local r, w = core.pipe(4096)
    local st = core.stream(w, function() end, function() end)
    local big = string.rep("a", 100000)
    st:write(big)
    assert.is_true(st:write_pieces({ "b", "c" }))
    assert.is_true(st:write_pieces({ "d" }))
    local got = read_n(r, 100003)
    assert.equal(big .. "bcd", got)
    assert.has_error(function() st:write_pieces({ "x", {} }) end)
    st:close()
  end)
end)

describe("stream:relay", function()
  local HEAD = '{"jsonrpc":"2.0","id":7,"result":'

  -- a socketpair-like pair: the daemon's end written by a child shell
  local function relay_of(reply_chunks)
    local r, w = core.pipe()
    local out_r, out_w = core.pipe(1048576)
    local st = core.stream(r, function() end, function() end)
    for _, c in ipairs(reply_chunks) do core.write(w, c) end
    core.close(w)
    local ok, err, line = st:relay(out_w, HEAD)
    core.close(out_w)
    local text = util.read_fd(out_r)
    core.close(out_r)
    st:close()
    return ok, err, line, text
  end

  it("copies the result's text, without the head and the closing brace, whatever the chunks", function()
    local body = '[{"name":"a"},{"name":"b"}]'
    local ok, err, _, text = relay_of({ HEAD:sub(1, 5), HEAD:sub(6) .. body:sub(1, 3), body:sub(4) .. "}", "\n" })
    assert.is_true(ok, err)
    assert.equal(body, text)
    ok, err, _, text = relay_of({ HEAD .. body .. "}\n" })
    assert.is_true(ok, err)
    assert.equal(body, text)
  end)

  it("gives back another reply's line (an error), and says when the peer closes first", function()
    local line = '{"jsonrpc":"2.0","id":7,"error":{"code":-32000,"message":"no"}}'
    local ok, err, got, text = relay_of({ line .. "\n" })
    assert.is_nil(ok)
    assert.equal("other reply", err)
    assert.equal(line, got)
    assert.equal("", text)
    ok, err = relay_of({ HEAD .. '[{"name":' })
    assert.is_nil(ok)
    assert.equal("the pm daemon closed the connection", err)
  end)
end)
