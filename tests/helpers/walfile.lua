-- The log WAL's memory (core/logs.c) as a file, for the unit specs of its
-- replay: the layout is mirrored here (a change there is a change here),
-- build() writes what a killed daemon would have left, adopt() has a fresh
-- luajit process take it (core.logwal_adopt) and says what it answered.
local ffi = require "ffi"
local util = require "pm.util"

local M = {}

ffi.cdef [[
typedef struct { uint64_t id, state, until_, used; } t_wpart;
typedef struct {
  uint64_t magic, version, size, ring_size, nsinks, nparts;
  uint64_t head, tail, w_pos, w_dev, w_ino, w_start, sinks_hw, parts_hw;
  t_wpart g;
  uint64_t g_canary[2];
  uint64_t out_lines, out_parts;
} t_whdr;
typedef struct { uint32_t len, op; int32_t sink; uint32_t pad; } t_wrec;
typedef struct {
  uint32_t used, mode; int64_t uid, gid; int32_t as_user, retain;
  int64_t max_size; int32_t dated, compress; char path[464];
} t_wsink;
]]

local PART_MAX, READ_SIZE = 65536, 65536
local SLOT_CAP = PART_MAX + READ_SIZE
local OFF_G = 4096
local OFF_RING = OFF_G + SLOT_CAP
local RING = 4 * 1048576
local OFF_SINKS = OFF_RING + RING
local NSINKS, SINK = 16384, 512
local OFF_PARTS = OFF_SINKS + NSINKS * SINK
local NSMALL, SMALL = 4096, 4096
local NBIG, BIG = 64, SLOT_CAP + 64
local OFF_BIG = OFF_PARTS + NSMALL * SMALL
M.SIZE = OFF_BIG + NBIG * BIG
M.SMALL_CAP = SMALL - 64
local OP_WRITE = 0

local SRC = os.getenv("PM_SRC") or "."

function M.dev_ino(path)
  local p = io.popen("stat -c '%d %i' '" .. path .. "'")
  local d, i = p:read("*l"):match("(%d+) (%d+)")
  p:close()
  return tonumber(d), tonumber(i)
end

-- A part slot's offset: small ones first, then big ones (index NSMALL on)
local function part_off(i) return i < NSMALL and OFF_PARTS + i * SMALL or OFF_BIG + (i - NSMALL) * BIG end

--[[ A WAL: sinks (paths, or {path=, uid=, gid=, as_user=, max_size=,
retain=, dated=}), records ({sink, data}), writing ({record=, start=,
file=}: the one being written, in file from start), parts ({id, state,
until, data, slot=}), g ({id, state, until, data, canary}), out_lines,
out_parts -> its file ]]
function M.build(path, w)
  local f = assert(io.open(path, "w"))
  f:seek("set", M.SIZE - 1)
  f:write("\0")
  local h = ffi.new("t_whdr")
  h.magic, h.version, h.size, h.ring_size = 0x316c61776d6c6d70ULL, 3, M.SIZE, RING
  h.nsinks, h.nparts = NSINKS, NSMALL + NBIG
  for i, p in ipairs(w.sinks) do
    local s = ffi.new("t_wsink")
    s.used, s.mode, s.uid, s.gid = 1, 420, -1, -1
    if type(p) == "table" then
      s.uid, s.gid, s.as_user = p.uid or -1, p.gid or -1, p.as_user and 1 or 0
      s.max_size, s.retain, s.dated = p.max_size or 0, p.retain or 0, p.dated and 1 or 0
      p = p.path
    end
    ffi.copy(s.path, p)
    f:seek("set", OFF_SINKS + (i - 1) * SINK)
    f:write(ffi.string(s, ffi.sizeof(s)))
  end
  h.sinks_hw = #w.sinks
  local pos = 0
  for _, r in ipairs(w.records) do
    local rec = ffi.new("t_wrec")
    rec.len, rec.op, rec.sink = #r.data, OP_WRITE, r.sink
    f:seek("set", OFF_RING + pos)
    f:write(ffi.string(rec, 16), r.data)
    r.pos = pos
    pos = pos + math.floor((16 + #r.data + 15) / 16) * 16
  end
  h.head, h.tail = pos, 0
  if w.writing then
    local r = w.records[w.writing.record]
    h.w_pos, h.w_start = r.pos, w.writing.start
    h.w_dev, h.w_ino = M.dev_ino(w.writing.file)
  else
    h.w_pos = 0xffffffffffffULL
  end
  local hw = 0
  for i, p in ipairs(w.parts or {}) do
    local slot = p.slot or (i - 1)
    local ph = ffi.new("t_wpart")
    ph.id, ph.state, ph.until_, ph.used = p.id, p.state, p["until"] or 0, 1
    f:seek("set", part_off(slot))
    f:write(ffi.string(ph, ffi.sizeof(ph)))
    f:seek("set", part_off(slot) + 64)
    f:write(p.data)
    hw = math.max(hw, slot + 1)
  end
  h.parts_hw = hw
  if w.g then
    h.g.id, h.g.state, h.g.until_ = w.g.id, w.g.state, w.g["until"] or 0
    if w.g.canary then ffi.copy(h.g_canary, w.g.canary, 16) end
    f:seek("set", OFF_G)
    f:write(w.g.data)
  end
  h.out_lines, h.out_parts = w.out_lines or 0, w.out_parts or 0
  f:seek("set", 0)
  f:write(ffi.string(h, ffi.sizeof(h)))
  f:close()
  return path
end

-- A fresh process adopts the WAL at path; with pipe = { file, held, feed }:
-- then a logpipe with that keeper id gets feed and ends -> what adopt said
function M.adopt(path, pipe)
  if os.getenv("KEEP") then os.execute("cp " .. path .. " " .. path .. ".orig") end
  local script = path .. ".lua"
  util.write_atomic(script, ([[
package.cpath = %q .. "/lib/?.so;" .. package.cpath
package.path = %q .. "/lua/?.lua;" .. package.path
local core = require "pm.core"
local cjson = require "cjson"
local ffi = require "ffi"
ffi.cdef "int open(const char *, int, ...);"
local fd = ffi.C.open(%q, 2)
local got, err = core.logwal_adopt(fd)
if not got then io.write("ERR ", tostring(err)) os.exit(1) end
local pipe = %s
if pipe then
  local lf = assert(core.logfile(pipe.file))
  local r, w = core.pipe()
  local done = false
  local lp = core.logpipe(r, { files = { lf }, held = pipe.held }, function() done = true end)
  core.write(w, pipe.feed)
  core.close(w)
  local guard = core.timer(5000, 0, function() done = true end)
  while not done do core.run("once") end
  guard:close()
  lp:close()
  core.log_drain()
end
got.settled = core.logwal_settle()
io.write(cjson.encode(got))
os.exit(0) -- (not lua_close: pm.core's writer thread outlives its unloading)
]]):format(SRC, SRC, path, pipe and ("{ file = %q, held = %d, feed = %q }"):format(pipe.file, pipe.held, pipe.feed)
    or "nil"))
  -- (bounded: a replay that blocked, on a FIFO say, fails the test)
  local p = io.popen("timeout 20 luajit " .. script .. " 2>&1")
  local out = p:read("*a")
  p:close()
  local got = util.decode(out)
  assert(type(got) == "table", "adopt: " .. out)
  return got
end

return M
