-- Lua hooks from ecosystem files, run inside the daemon where the decision
-- is made. A hook runs in a sandbox, with JIT compilation off for its whole
-- chunk so that an instruction-count hook can cut it off: after about 10 ms
-- of work, or 32 MB of new memory, it is stopped, logged with its
-- traceback, and the built-in policy decides instead.
local log = require "pm.log"

local M = {}

M.TIME_LIMIT = 10              -- ms of work per hook call
M.MEMORY_LIMIT = 32 * 1024     -- KB a hook call may add
M.STRING_LIMIT = 1024 * 1024   -- bytes string.rep may make in a hook
M.PATTERN_LIMIT = 64 * 1024    -- bytes of subject a pattern may scan in a hook

local CUTOFF = setmetatable({}, { __tostring = function() return "hook cut off" end })
local running = false
local reason

-- Bounds on the C functions that can run long or allocate without an
-- instruction being counted; they only bite while a hook runs.
local real = {}
for _, k in ipairs({ "rep", "find", "match", "gmatch", "gsub" }) do real[k] = string[k] end
string.rep = function(s, n, sep) -- luacheck: ignore 122
  if running and (#s + #(sep or "")) * (tonumber(n) or 0) > M.STRING_LIMIT then
    reason = "string.rep over the hook limit"
    error(CUTOFF, 0)
  end
  return real.rep(s, n, sep)
end
for _, k in ipairs({ "find", "match", "gmatch", "gsub" }) do
  local fn = real[k]
  string[k] = function(s, ...) -- luacheck: ignore 122
    if running and type(s) == "string" and #s > M.PATTERN_LIMIT then
      reason = "string." .. k .. " over the hook limit"
      error(CUTOFF, 0)
    end
    return fn(s, ...)
  end
end

-- pcall/xpcall for sandboxed code: they never swallow the cut-off
local function rethrow(ok, ...)
  if not ok and (...) == CUTOFF then error(CUTOFF, 0) end
  return ok, ...
end
local function safe_pcall(f, ...) return rethrow(pcall(f, ...)) end
local function safe_xpcall(f, h, ...)
  return rethrow(xpcall(f, function(e)
    if e == CUTOFF then return CUTOFF end
    return h(e)
  end, ...))
end

M.api = {} -- the daemon-side API, filled by the daemon (pm.* in hooks)

function M.sandbox()
  local env = {
    string = { byte = string.byte, char = string.char, find = string.find, format = string.format,
      gmatch = string.gmatch, gsub = string.gsub, len = string.len, lower = string.lower,
      match = string.match, rep = string.rep, reverse = string.reverse, sub = string.sub,
      upper = string.upper },
    table = { concat = table.concat, insert = table.insert, remove = table.remove,
      sort = table.sort, maxn = table.maxn },
    math = math,
    os = { time = os.time, date = os.date, getenv = os.getenv, clock = os.clock,
      difftime = os.difftime },
    pairs = pairs, ipairs = ipairs, next = next, select = select, type = type,
    tostring = tostring, tonumber = tonumber, unpack = unpack, error = error,
    assert = assert, pcall = safe_pcall, xpcall = safe_xpcall, setmetatable = setmetatable,
    getmetatable = getmetatable, rawget = rawget, rawset = rawset, rawequal = rawequal,
    print = function(...)
      local t = {}
      for i = 1, select("#", ...) do t[i] = tostring((select(i, ...))) end
      log.info("hook: %s", table.concat(t, "\t"))
    end,
    pm = M.api,
  }
  env._G = env
  return env
end

-- Loads an ecosystem.lua file in a sandbox, JIT off for all it defines.
function M.loadfile(path)
  local chunk, err = loadfile(path, "t", M.sandbox())
  if not chunk then return nil, err end
  jit.off(chunk, true)
  return chunk
end

-- Runs chunk() under the same limits as a hook (the file's top level).
-- Returns true, results... or false, message.
function M.run(fn, ...)
  if running then return false, "a hook cannot run another hook" end
  local deadline = os.clock() + M.TIME_LIMIT / 1000 -- CPU time: preemption does not count
  local mem0 = collectgarbage("count")
  reason = nil
  running = true
  debug.sethook(function()
    if os.clock() > deadline then
      reason = ("ran over %d ms"):format(M.TIME_LIMIT)
      error(CUTOFF, 0)
    end
    if collectgarbage("count") - mem0 > M.MEMORY_LIMIT then
      reason = ("allocated over %d KB"):format(M.MEMORY_LIMIT)
      error(CUTOFF, 0)
    end
  end, "", 1000)
  local res = { xpcall(fn, function(e)
    if e == CUTOFF then return CUTOFF end
    return debug.traceback(tostring(e), 2)
  end, ...) }
  debug.sethook()
  running = false
  if not res[1] then
    if res[2] == CUTOFF then
      collectgarbage()
      return false, "cut off: " .. tostring(reason)
    end
    return false, tostring(res[2])
  end
  return unpack(res, 1, table.maxn(res))
end

-- Calls the hook `name` of an app: returns its result, or nil after
-- logging what went wrong (the caller then applies the built-in policy).
function M.call(name, fn, ...)
  local res = { M.run(fn, ...) }
  if not res[1] then
    log.error("hook %s failed, the built-in policy decides: %s", name, res[2])
    return nil, res[2]
  end
  return unpack(res, 2, table.maxn(res))
end

-- on_exit's answer -> { action, delay } | nil, err
function M.decision(v)
  if v == nil then return nil end
  if v == "restart" or v == "stop" then return { action = v, delay = 0 } end
  if type(v) == "number" and v >= 0 and v == v then return { action = "restart", delay = v } end
  if type(v) == "table" and (v.action == "restart" or v.action == "stop") then
    local delay = tonumber(v.delay) or 0
    if delay < 0 or delay ~= delay then return nil, "bad delay " .. tostring(v.delay) end
    return { action = v.action, delay = delay }
  end
  return nil, "on_exit returned " .. tostring(v) ..
    ' (expected "restart", "stop", a delay in ms or {action=, delay=})'
end

return M
