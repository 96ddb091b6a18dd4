-- CPU and memory history of each app, in fixed rings: one sample a second
-- for the last 10 minutes, one a minute (the minute's average) for the
-- last 24 hours. A ring is 2 x (600 + 1440) 16-bit values: 8,160 bytes an
-- app, allocated when its first sample is taken. Sampling runs only for
-- the apps someone asked the history of in the last HOLD_MS (the web
-- process asks for all every 30 s while it runs; pm describe for one): an
-- idle daemon does nothing, and a describe of one app beside 9,500 others
-- does not read /proc for all of them for 5 minutes (10 % of a core).
-- Decides nothing else; the samples are describe.lua's (/proc, shared with
-- list).
local ffi = require "ffi"
local core = require "pm.core"

local M = {}

M.SEC, M.MIN = 600, 1440  -- slots
M.HOLD_MS = 5 * 60 * 1000 -- sampling goes on this long after the last ask
local NONE = 65535        -- a slot without a sample

ffi.cdef [[ typedef struct { uint16_t cpu[2040]; uint16_t mem[2040]; } pm_history_t; ]]
local ring_t = ffi.typeof("pm_history_t")

-- record -> { r = ring, sec = last second written, min = last minute
-- written, acc_cpu, acc_mem, acc_n: the current minute's sums }
local rings = setmetatable({}, { __mode = "k" })
local asked_at = nil -- core.mono() of the last ask
local asked = setmetatable({}, { __mode = "k" }) -- record -> core.mono() of the last ask of it
local timer = nil

M.sample = nil -- fn(p) -> rss, cpu (describe.sample: set by the daemon)
M.clock = core.now -- ms since the epoch (a spec gives its own)
M.list = nil   -- fn() -> the records

-- CPU in tenths of a percent; memory in KiB as a small float: 11 bits of
-- mantissa, 5 of exponent (1/1024 relative precision, up to far beyond
-- any RAM)
local function enc_cpu(c)
  local v = math.floor((c or 0) * 10 + 0.5)
  if v < 0 then v = 0 elseif v > 65534 then v = 65534 end
  return v
end
local function dec_cpu(v) return v / 10 end
local function enc_mem(bytes)
  local kb = math.floor((bytes or 0) / 1024)
  local e = 0
  while kb >= 2048 do kb = math.floor(kb / 2); e = e + 1 end
  local v = e * 2048 + kb
  return v > 65534 and 65534 or v
end
local function dec_mem(v) return (v % 2048) * 2 ^ math.floor(v / 2048) * 1024 end
M.enc_mem, M.dec_mem = enc_mem, dec_mem

local function state_of(p)
  local s = rings[p]
  if not s then
    local r = ring_t()
    ffi.fill(r, ffi.sizeof(ring_t), 0xff) -- (every slot NONE)
    s = { r = r, acc_cpu = 0, acc_mem = 0, acc_n = 0 }
    rings[p] = s
  end
  return s
end

-- slots from last+1 to now-1 have no sample; slot now gets v
local function put(arr, base, size, last, now, v)
  if last and now > last then
    for t = math.max(last + 1, now - size + 1), now - 1 do arr[base + t % size] = NONE end
  end
  arr[base + now % size] = v
end

local function record(p, now_s, rss, cpu)
  local s = state_of(p)
  local r = s.r
  local c, m = enc_cpu(cpu), enc_mem(rss)
  if s.sec ~= now_s then
    put(r.cpu, 0, M.SEC, s.sec, now_s, c)
    put(r.mem, 0, M.SEC, s.sec, now_s, m)
    s.sec = now_s
  end
  local minute = math.floor(now_s / 60)
  if s.min ~= minute then
    s.acc_cpu, s.acc_mem, s.acc_n = 0, 0, 0
  end
  s.acc_cpu, s.acc_mem, s.acc_n = s.acc_cpu + (cpu or 0), s.acc_mem + (rss or 0), s.acc_n + 1
  local ac, am = enc_cpu(s.acc_cpu / s.acc_n), enc_mem(s.acc_mem / s.acc_n)
  put(r.cpu, M.SEC, M.MIN, s.min, minute, ac)
  put(r.mem, M.SEC, M.MIN, s.min, minute, am)
  s.min = minute
end

-- One turn of sampling: every app asked for with a process.
function M.tick()
  local now = core.mono()
  if not asked_at or now - asked_at > M.HOLD_MS then
    if timer then timer:close(); timer = nil end
    return
  end
  local now_s = math.floor(M.clock() / 1000)
  for p, at in pairs(asked) do
    if p.deleted or now - at > M.HOLD_MS then
      asked[p] = nil
    elseif (p.pid or 0) > 0 then
      local rss, cpu = M.sample(p)
      record(p, now_s, rss, cpu)
    elseif rings[p] then
      record(p, now_s, 0, 0) -- (a stopped app: zero, not a gap)
    end
  end
end

-- Someone wants the history of list's apps (nil: all): sampling runs
-- (again) for HOLD_MS.
function M.ask(list)
  local now = core.mono()
  asked_at = now
  for _, p in ipairs(list or M.list()) do asked[p] = now end
  if not timer then
    timer = core.timer(1000, 1000, M.tick)
    M.tick()
  end
end

function M.active() return timer ~= nil end

-- The history of p over the last span seconds -> { step (s), start (ms
-- since the epoch of the first point), cpu = {...}, memory = {...} }
-- (false for a slot without a sample); span <= 600: the seconds' ring,
-- else the minutes' (at most 24 h).
function M.of(p, span)
  local s = rings[p]
  local now_s = math.floor(M.clock() / 1000)
  local step, base, size, last
  if span <= M.SEC then
    step, base, size, last = 1, 0, M.SEC, now_s
  else
    step, base, size, last = 60, M.SEC, M.MIN, math.floor(now_s / 60)
    span = math.min(span, M.MIN * 60)
  end
  local points = math.max(1, math.floor(span / step))
  local cpu, mem = {}, {}
  local newest = s and (step == 1 and s.sec or s.min)
  for i = 1, points do
    local t = last - points + i
    local v
    if s and newest and t <= newest and t > newest - size then
      local c = s.r.cpu[base + t % size]
      local m = s.r.mem[base + t % size]
      if c ~= NONE then v = { dec_cpu(c), dec_mem(m) } end
    end
    cpu[i] = v and v[1] or false
    mem[i] = v and v[2] or false
  end
  return { step = step, start = (last - points + 1) * step * 1000, cpu = cpu, memory = mem }
end

-- min/avg/max of cpu and memory of a history (M.of's, or the RPC's) ->
-- { cpu = { min, avg, max, samples }, memory = {...} } | nil (no sample)
function M.summary(h)
  local out = {}
  for _, k in ipairs({ "cpu", "memory" }) do
    local lo, hi, sum, n = math.huge, -math.huge, 0, 0
    for _, v in ipairs(h[k]) do
      if v then
        lo, hi, sum, n = math.min(lo, v), math.max(hi, v), sum + v, n + 1
      end
    end
    if n == 0 then return nil end
    out[k] = { min = lo, avg = sum / n, max = hi, samples = n }
  end
  return out
end

M.ring_bytes = ffi.sizeof(ring_t)

return M
