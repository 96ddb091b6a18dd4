-- The log WAL's replay (core/logs.c) against an app's user and against
-- outside tools: what a daemon killed with SIGKILL had read and not
-- written is replayed by the next one into files the app's user owns, in
-- folders the app's user owns. Between the kill and the replay that user
-- may put anything in place of the file; logrotate may move or copy it.
-- Each case builds the memory the killed daemon left (tests/helpers/
-- walfile.lua), does that to the files, and has a fresh process replay it.
-- The rules checked:
--  - a replay opens a file as the writer does (core.h's pm_open_owned):
--    never through a link, only a regular file of the app's user, with
--    that user's rights outside pm's folders; what is refused is counted
--    and said by file (core.logwal_adopt's failed), nothing blocks;
--  - the record being written at the kill is found where it started (by
--    device and inode, in the file or a rotated one; or a copy holding it
--    at the same offset): there whole, it is not written again; a file is
--    only ever taken back to the offset where pm's write began, and only
--    when what follows it is byte for byte the start of that record (pm's
--    own bytes); anything else is appended, never written in place;
--  - a replay rotates a file at its max_size as the writer does;
--  - lines the killed daemon held outside the buffer are a counted loss.
local util = require "pm.util"
local core = require "pm.core"
local W = require "walfile"

local build, adopt = W.build, W.adopt

local R1 = "n 1\nn 2\nn 3\nn 4\nn 5\n"
local R2 = "n 6\nn 7\n"
local SECRET = "root:$6$secret:19000:0:99999:7:::\n"

local function sh(cmd) assert(os.execute(cmd) == 0, cmd) end

describe("the log WAL's replay, attacked", function()
  local dir
  before_each(function()
    local p = io.popen("mktemp -d")
    dir = p:read("*l")
    p:close()
    sh("chmod 0755 '" .. dir .. "'")
  end)
  after_each(function() if not os.getenv("KEEP") then os.execute("rm -rf '" .. dir .. "'") end end)

  -- A folder of the app's user (nobody) holding its log x.log ("old\n"),
  -- a root file beside it (/etc/shadow's stand-in) -> the sink, log, secret
  local function nobody_setup()
    local nobody = util.passwd("nobody")
    if core.getuid() ~= 0 or not nobody then return nil end
    local u, secret = dir .. "/u", dir .. "/shadow"
    util.write_atomic(secret, SECRET)
    sh("chmod 0640 '" .. secret .. "'")
    sh(("mkdir -m 0755 '%s' && chown %d:%d '%s'"):format(u, nobody.uid, nobody.gid, u))
    local log = u .. "/x.log"
    util.write_atomic(log, "old\n")
    sh(("chown %d:%d '%s'"):format(nobody.uid, nobody.gid, log))
    return { path = log, uid = nobody.uid, gid = nobody.gid, as_user = true }, log, secret
  end

  local function pending_root()
    print("SKIPPED: needs root and a user nobody (another user's ids)")
    return pending("needs root and a user nobody")
  end

  for _, case in ipairs({
    { "a symbolic link to a root file", "ln -s '%s' '%s'", "symbolic link" },
    { "a hard link to a root file", "ln '%s' '%s'", "" },
    { "a FIFO (never blocks the replay)", "mkfifo -m 0666 '%s'", "not a regular file" },
    { "a folder", "mkdir -m 0777 '%s'", "" },
  }) do
    it("the log replaced by " .. case[1] .. ": not written, said by file, the others replayed", function()
      local sink, log, secret = nobody_setup()
      if not sink then return pending_root() end
      local other = sink.path:gsub("x%.log$", "y.log")
      os.remove(log)
      sh(case[2]:find("'%s' '%s'", 1, true) and case[2]:format(secret, log) or case[2]:format(log))
      local got = adopt(build(dir .. "/wal", { sinks = { sink, { path = other, uid = sink.uid, gid = sink.gid,
        as_user = true } }, records = { { sink = 0, data = R1 }, { sink = 1, data = R2 } } }))
      assert.equal(SECRET, util.read_file(secret))
      assert.equal(R2, util.read_file(other), "the other file replayed")
      assert.same({ 1, 5 }, { got.records, got.lost })
      assert.equal(1, #got.failed)
      assert.equal(log, got.failed[1].path)
      assert.equal(5, got.failed[1].lines)
      assert.matches(case[3], got.failed[1].reason, 1, true)
    end)
  end

  it("a root app's log made a FIFO that nobody reads: the replay does not wait on it, and says so", function()
    local log = dir .. "/f.log"
    sh("mkfifo '" .. log .. "'")
    local got = adopt(build(dir .. "/wal", { sinks = { log }, records = { { sink = 0, data = R1 } } }))
    assert.same({ { path = log, lines = 5, reason = "not a regular file, not replayed" } }, got.failed)
  end)

  it("path.1 made a link to a root file while the record in flight's file was moved away: never followed", function()
    local sink, log, secret = nobody_setup()
    if not sink then return pending_root() end
    util.write_atomic(log, "old\n" .. R1:sub(1, 9))
    local wal = build(dir .. "/wal", { sinks = { sink }, records = { { sink = 0, data = R1 }, { sink = 0, data = R2 } },
      writing = { record = 1, start = 4, file = log } })
    -- the attacker moves the file away, makes a new one, and points the
    -- rotated names at the root file: a symbolic link, a hard link
    sh(("mv '%s' '%s/u/moved' && touch '%s' && chown nobody '%s'"):format(log, dir, log, log))
    sh(("ln -s '%s' '%s.1' && ln '%s' '%s.2'"):format(secret, log, secret, log))
    local got = adopt(wal)
    assert.equal(SECRET, util.read_file(secret))
    assert.equal("old\n" .. R1:sub(1, 9), util.read_file(dir .. "/u/moved"), "a file not named as the log: left")
    assert.equal(R1 .. R2, util.read_file(log))
    assert.equal(0, got.left)
  end)

  it("the file truncated during the gap below where pm's write began: appended, nothing of the user's cut", function()
    local log = dir .. "/t.log"
    util.write_atomic(log, "old\n" .. R1:sub(1, 9))
    local wal = build(dir .. "/wal", { sinks = { log }, records = { { sink = 0, data = R1 }, { sink = 0, data = R2 } },
      writing = { record = 1, start = 4, file = log } })
    sh("truncate -s 2 '" .. log .. "'")
    adopt(wal)
    assert.equal("ol\n" .. R1 .. R2, util.read_file(log))
  end)

  it("the file grown during the gap after pm's cut write: the user's bytes kept, the record appended whole", function()
    local log = dir .. "/g.log"
    util.write_atomic(log, "old\n" .. R1:sub(1, 9))
    local wal = build(dir .. "/wal", { sinks = { log }, records = { { sink = 0, data = R1 }, { sink = 0, data = R2 } },
      writing = { record = 1, start = 4, file = log } })
    local f = assert(io.open(log, "a"))
    f:write("EVIL\n")
    f:close()
    adopt(wal)
    assert.equal("old\n" .. R1:sub(1, 9) .. "EVIL\n" .. R1 .. R2, util.read_file(log))
  end)

  it("the file rewritten in place during the gap, as long as the record: kept, the record appended", function()
    local log = dir .. "/w.log"
    util.write_atomic(log, "old\n" .. R1:sub(1, 9))
    local wal = build(dir .. "/wal", { sinks = { log }, records = { { sink = 0, data = R1 } },
      writing = { record = 1, start = 4, file = log } })
    local mine = "old\n" .. ("u"):rep(40) .. "\n"
    local f = assert(io.open(log, "r+"))
    f:write(mine)
    f:close()
    adopt(wal)
    assert.equal(mine .. R1, util.read_file(log))
  end)

  it("logrotate's create with a dated name since the write: found by its inode, not written again", function()
    local log = dir .. "/c.log"
    util.write_atomic(log, "old\n" .. R1)
    local wal = build(dir .. "/wal", { sinks = { log }, records = { { sink = 0, data = R1 }, { sink = 0, data = R2 } },
      writing = { record = 1, start = 4, file = log } })
    sh(("mv '%s' '%s-20261206' && touch '%s'"):format(log, log, log))
    local got = adopt(wal)
    assert.equal("old\n" .. R1, util.read_file(log .. "-20261206"))
    assert.equal(R2, util.read_file(log))
    assert.same({ 1, 1 }, { got.left, got.records })
  end)

  it("logrotate's copytruncate since the write: the copy holds the record, it is not written again", function()
    local log = dir .. "/k.log"
    util.write_atomic(log, "old\n" .. R1)
    local wal = build(dir .. "/wal", { sinks = { log }, records = { { sink = 0, data = R1 }, { sink = 0, data = R2 } },
      writing = { record = 1, start = 4, file = log } })
    sh(("cp '%s' '%s.1' && truncate -s 0 '%s'"):format(log, log, log))
    local got = adopt(wal)
    assert.equal("old\n" .. R1, util.read_file(log .. ".1"))
    assert.equal(R2, util.read_file(log))
    assert.equal(1, got.left)
  end)

  it("logrotate's copytruncate and gzip at once: cannot be told, the record written again (once: the bound)", function()
    local log = dir .. "/z.log"
    util.write_atomic(log, "old\n" .. R1)
    local wal = build(dir .. "/wal", { sinks = { log }, records = { { sink = 0, data = R1 }, { sink = 0, data = R2 } },
      writing = { record = 1, start = 4, file = log } })
    sh(("gzip -c '%s' > '%s.1.gz' && truncate -s 0 '%s'"):format(log, log, log))
    local got = adopt(wal)
    assert.equal(R1 .. R2, util.read_file(log))
    assert.same({ 0, 2 }, { got.left, got.records })
  end)

  it("a disk with room for part of a record: the whole lines that fit kept, the rest counted and said", function()
    if core.getuid() ~= 0 then
      print("SKIPPED: needs root to mount a 64 KB tmpfs")
      return pending("needs root to mount a tmpfs")
    end
    local disk = dir .. "/disk"
    core.mkdir(disk, 493)
    local p = io.popen("mount -t tmpfs -o size=64k tmpfs '" .. disk .. "' 2>&1")
    local err = p:read("*a")
    if not p:close() then
      print("SKIPPED: cannot mount a tmpfs here: " .. err)
      return pending("cannot mount a tmpfs here")
    end
    finally(function() os.execute("umount '" .. disk .. "' 2>/dev/null || umount -l '" .. disk .. "'") end)
    local log = disk .. "/x.log"
    util.write_atomic(log, "")
    -- full, then one page (4 KB) free again
    local filler = "'" .. disk .. "/filler'"
    os.execute("dd if=/dev/zero of=" .. filler .. " bs=1k 2>/dev/null; truncate -s -4096 " .. filler)
    local lines = {}
    for i = 1, 100 do lines[i] = ("r %03d %s\n"):format(i, ("x"):rep(93)) end
    local got = adopt(build(dir .. "/wal", { sinks = { log }, records = { { sink = 0, data = table.concat(lines) } } }))
    local kept = util.read_file(log)
    local k = #kept / 100
    assert.is_true(k >= 1 and k < 100, #kept .. " bytes kept")
    assert.equal(table.concat(lines, "", 1, k), kept, "whole lines, in order")
    assert.equal(100 - k, got.lost)
    assert.same({ { path = log, lines = 100 - k, reason = "No space left on device" } }, got.failed)
  end)

  it("a replayed record that would pass the file's max_size: the file rotated first, as the writer does", function()
    local log = dir .. "/m.log"
    local old = ("o"):rep(19) .. "\n"
    util.write_atomic(log, old)
    adopt(build(dir .. "/wal", { sinks = { { path = log, max_size = 30, retain = 2 } },
      records = { { sink = 0, data = R1 }, { sink = 0, data = R2 } } }))
    assert.equal(old, util.read_file(log .. ".1"))
    assert.equal(R1 .. R2, util.read_file(log))
  end)

  it("lines the killed daemon held outside the buffer (ring full, no slot): a counted loss", function()
    local got = adopt(build(dir .. "/wal", { sinks = {}, records = {}, out_lines = 70000, out_parts = 2 }))
    assert.equal(70002, got.outside)
  end)

  it("the buffer's address space is what it needs (two sizes of slot for unfinished lines): under 40 MB", function()
    local script = dir .. "/size.lua"
    util.write_atomic(script, ([[
package.cpath = %q .. "/lib/?.so;" .. package.cpath
local core = require "pm.core"
local ffi = require "ffi"
ffi.cdef "long lseek(int, long, int);"
local fd = assert(core.logwal_create())
io.write(tostring(tonumber(ffi.C.lseek(fd, 0, 2))))
os.exit(0)
]]):format(os.getenv("PM_SRC") or "."))
    local p = io.popen("luajit " .. script .. " 2>&1")
    local size = tonumber(p:read("*a"))
    p:close()
    assert.equal(W.SIZE, size, "the layout mirrored in tests/helpers/walfile.lua")
    assert.is_true(size < 40 * 1048576, size .. " bytes")
  end)

  it("a long unfinished line moving to a big slot when the kill came: continued once, from g", function()
    local log = dir .. "/l.log"
    local long = ("a"):rep(20000)
    -- the pipe (id 7) had "abc" in a small slot; a read made it 20,000
    -- bytes (in g), which part_set was moving to a big slot
    local got = adopt(build(dir .. "/wal", { sinks = {}, records = {},
      parts = { { id = 7, state = 3, data = "abc", slot = 0 }, { id = 7, state = 0, data = "", slot = 4096 } },
      g = { id = 7, state = #long, data = long } }), { file = log, held = 7, feed = "z\n" })
    assert.equal(long .. "z\n", util.read_file(log))
    assert.same({ 1, 0 }, { got.parts, got.settled })
  end)
end)
