-- The log WAL (core/logs.c, issue 17): what a daemon killed with SIGKILL
-- had read and not written, replayed by the next one (core.logwal_adopt).
-- Each case builds the memory a killed daemon would have left, in a file
-- of the WAL's layout (mirrored here from core/logs.c: a change there is
-- a change here), and a fresh luajit process adopts it: the record being
-- written when the kill came is written once (left when whole, taken back
-- and written when cut), later ones are appended, a rotation since is
-- seen, and a line the pipe had started is continued.
local util = require "pm.util"
local W = require "walfile"

local build, adopt = W.build, W.adopt
local SRC = os.getenv("PM_SRC") or "."
local function core_getuid() return require("pm.core").getuid() end

local R1 = "n 1\nn 2\nn 3\nn 4\nn 5\n"
local R2 = "n 6\nn 7\n"

describe("the log WAL's replay (core.logwal_adopt)", function()
  local dir
  before_each(function()
    local p = io.popen("mktemp -d")
    dir = p:read("*l")
    p:close()
  end)
  after_each(function() if not os.getenv("KEEP") then os.execute("rm -rf '" .. dir .. "'") end end)

  it("a record cut by the kill: the file taken back to where it started, the record written once", function()
    local log = dir .. "/a.log"
    util.write_atomic(log, "old\n" .. R1:sub(1, 9))
    local got = adopt(build(dir .. "/wal", { sinks = { log },
      records = { { sink = 0, data = R1 }, { sink = 0, data = R2 } },
      writing = { record = 1, start = 4, file = log } }))
    assert.equal("old\n" .. R1 .. R2, util.read_file(log))
    assert.same({ 2, 0 }, { got.records, got.lost })
  end)

  it("a record the kill came after: not written twice, the next one appended", function()
    local log = dir .. "/b.log"
    util.write_atomic(log, "old\n" .. R1)
    local got = adopt(build(dir .. "/wal", { sinks = { log },
      records = { { sink = 0, data = R1 }, { sink = 0, data = R2 } },
      writing = { record = 1, start = 4, file = log } }))
    assert.equal("old\n" .. R1 .. R2, util.read_file(log))
    assert.equal(1, got.records)
  end)

  it("records the writer had not started: appended in order, after a newline the file lacked", function()
    local log = dir .. "/c.log"
    util.write_atomic(log, "old\nhalf")
    adopt(build(dir .. "/wal", { sinks = { log }, records = { { sink = 0, data = R1 }, { sink = 0, data = R2 } } }))
    assert.equal("old\nhalf\n" .. R1 .. R2, util.read_file(log))
  end)

  it("a file rotated since the record was written: found as path.1 by its inode, not written again", function()
    local log = dir .. "/d.log"
    util.write_atomic(log .. ".1", "old\n" .. R1)
    util.write_atomic(log, "")
    adopt(build(dir .. "/wal", { sinks = { log }, records = { { sink = 0, data = R1 }, { sink = 0, data = R2 } },
      writing = { record = 1, start = 4, file = log .. ".1" } }))
    assert.equal("old\n" .. R1, util.read_file(log .. ".1"))
    assert.equal(R2, util.read_file(log))
  end)

  it("a record of a file that cannot be opened now: its lines counted as lost, the others written", function()
    local log = dir .. "/e.log"
    local got = adopt(build(dir .. "/wal", { sinks = { dir .. "/none/e.log", log },
      records = { { sink = 0, data = R1 }, { sink = 1, data = R2 } } }))
    assert.equal(R2, util.read_file(log))
    assert.same({ 1, 5 }, { got.records, got.lost })
  end)

  it("a read the kill came in: its completed lines not yet in the ring, the whole read continues the pipe", function()
    local log = dir .. "/f.log"
    -- g: the pipe (keeper id 7) had read "a\nb"; the lines it completed
    -- were to be published up to ring position 64, which never came
    local got = adopt(build(dir .. "/wal", { sinks = {}, records = {},
      g = { id = 7, state = 3ULL + 2ULL * 2 ^ 32, ["until"] = 64, data = "a\nb" } }),
      { file = log, held = 7, feed = "c\nd\n" })
    assert.equal("a\nbc\nd\n", util.read_file(log))
    assert.same({ 1, 0 }, { got.parts, got.settled })
  end)

  it("a read whose completed lines were published: only the unfinished line continues the pipe", function()
    local log = dir .. "/g.log"
    local got = adopt(build(dir .. "/wal", { sinks = {}, records = {},
      g = { id = 7, state = 3ULL + 2ULL * 2 ^ 32, ["until"] = 0, data = "a\nb" } }),
      { file = log, held = 7, feed = "c\n" })
    assert.equal("bc\n", util.read_file(log))
    assert.equal(1, got.parts)
  end)

  -- g's state while a read of n bytes is under way: len | n << 32 | 1 << 63
  local READING = 0x8000000000000000ULL
  local CANARY = "0123456789abcdef"

  it("a kill in read(2): the bytes it took from the pipe (the canary overwritten) continue the pipe", function()
    local log = dir .. "/r.log"
    adopt(build(dir .. "/wal", { sinks = {}, records = {},
      g = { id = 7, state = 2ULL + 4ULL * 2 ^ 32 + READING, canary = CANARY, data = "a\nb\nc\n" } }),
      { file = log, held = 7, feed = "d\n" })
    assert.equal("a\nb\nc\nd\n", util.read_file(log))
  end)

  it("a kill before read(2): the canary still there, only the part before it continues the pipe", function()
    local log = dir .. "/s.log"
    adopt(build(dir .. "/wal", { sinks = {}, records = {},
      g = { id = 7, state = 2ULL + 4ULL * 2 ^ 32 + READING, canary = CANARY, data = "a\n" .. CANARY:sub(1, 4) } }),
      { file = log, held = 7, feed = "d\n" })
    assert.equal("a\nd\n", util.read_file(log))
  end)

  it("a pipe's unfinished line: continued by the pipe of the same keeper id; one no pipe took is let go", function()
    local log = dir .. "/h.log"
    local got = adopt(build(dir .. "/wal", { sinks = {}, records = {},
      parts = { { id = 9, state = 4, data = "half" }, { id = 12, state = 3, data = "gone" } } }),
      { file = log, held = 9, feed = " line\n" })
    assert.equal("half line\n", util.read_file(log))
    assert.same({ 2, 1 }, { got.parts, got.settled })
  end)

  it("a file of an app of another user: opened as that user, never through a link", function()
    if core_getuid() ~= 0 then return pending("needs root (another user's ids)") end
    local secret = dir .. "/secret"
    util.write_atomic(secret, "root's\n")
    os.execute("mkdir -m 0777 '" .. dir .. "/u' && ln -s '" .. secret .. "' '" .. dir .. "/u/x.log'")
    os.execute("chmod 0755 '" .. dir .. "'")
    local mine = dir .. "/u/y.log"
    local function nobody(path) return { path = path, uid = 65534, gid = 65534, as_user = true } end
    local got = adopt(build(dir .. "/wal", { sinks = { nobody(dir .. "/u/x.log"), nobody(mine) },
      records = { { sink = 0, data = R1 }, { sink = 1, data = R2 } } }))
    assert.equal("root's\n", util.read_file(secret))
    assert.equal(R2, util.read_file(mine))
    assert.equal(65534, require("pm.core").stat(mine).uid)
    assert.same({ 1, 5 }, { got.records, got.lost })
  end)

  it("a buffer of another layout is refused, and nothing is written", function()
    local log = dir .. "/i.log"
    util.write_atomic(log, "")
    local path = build(dir .. "/wal", { sinks = { log }, records = { { sink = 0, data = R1 } } })
    local f = assert(io.open(path, "r+"))
    f:write("XXXXXXXX")
    f:close()
    local script = path .. ".lua"
    util.write_atomic(script, ([[
package.cpath = %q .. "/lib/?.so;" .. package.cpath
local core = require "pm.core"
local ffi = require "ffi"
ffi.cdef "int open(const char *, int, ...);"
io.write(tostring(select(2, core.logwal_adopt(ffi.C.open(%q, 2)))))
]]):format(SRC, path))
    local p = io.popen("luajit " .. script .. " 2>&1")
    local out = p:read("*a")
    p:close()
    assert.matches("not a log buffer of this version", out)
    assert.equal("", util.read_file(log))
  end)
end)
