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
M.PATTERN_WORK = 1e7           -- (subject length)^(quantifiers) a pattern may cost

local CUTOFF = setmetatable({}, { __tostring = function() return "hook cut off" end })
local running = false
local reason

-- Bounds on the C functions that can run long or allocate without an
-- instruction being counted; they only bite while a hook runs.
local tripped = false -- the running hook is being cut off
local function cut(why)
  reason = why
  tripped = true
  error(CUTOFF, 0)
end

local real = {}
for _, k in ipairs({ "rep", "find", "match", "gmatch", "gsub", "format" }) do real[k] = string[k] end
real.concat = table.concat

string.rep = function(s, n, sep) -- luacheck: ignore 122
  if running and (#tostring(s) + #tostring(sep or "")) * (tonumber(n) or 0) > M.STRING_LIMIT then
    cut("string.rep over the hook limit")
  end
  return real.rep(s, n, sep)
end

-- A pattern's work grows like (subject length)^(quantifiers): bound both.
local function pattern_cost(s, pat)
  local q = 0
  if type(pat) == "string" then
    local i = 1
    while i <= #pat do
      local c = pat:byte(i)
      if c == 37 then i = i + 1 -- %x: escaped
      elseif c == 42 or c == 43 or c == 45 or c == 63 then q = q + 1 end -- * + - ?
      i = i + 1
    end
  end
  return math.max(1, #s) ^ math.max(1, q)
end

for _, k in ipairs({ "find", "match", "gmatch", "gsub" }) do
  local fn = real[k]
  string[k] = function(s, pat, ...) -- luacheck: ignore 122
    if running and type(s) == "string" then
      if #s > M.PATTERN_LIMIT or pattern_cost(s, pat) > M.PATTERN_WORK then
        cut("string." .. k .. " over the hook limit")
      end
      if k == "gsub" then
        local repl = ...
        if type(repl) == "string" and #repl * (#s + 1) + #s > M.STRING_LIMIT * 4 then
          cut("string.gsub result over the hook limit")
        end
      end
    end
    return fn(s, pat, ...)
  end
end

string.format = function(fmt, ...) -- luacheck: ignore 122
  if running then
    local size = #tostring(fmt)
    for i = 1, select("#", ...) do
      local v = select(i, ...)
      size = size + (type(v) == "string" and #v or 32)
    end
    if size > M.STRING_LIMIT * 4 then cut("string.format over the hook limit") end
  end
  return real.format(fmt, ...)
end

table.concat = function(t, sep, i, j) -- luacheck: ignore 122
  if running and type(t) == "table" then
    local size, seplen = 0, type(sep) == "string" and #sep or 0
    for k = i or 1, j or #t do
      local v = rawget(t, k)
      size = size + (type(v) == "string" and #v or 24) + seplen
      if size > M.STRING_LIMIT * 4 then cut("table.concat over the hook limit") end
    end
  end
  return real.concat(t, sep, i, j)
end

-- pcall/xpcall for sandboxed code: they never swallow the cut-off
local function rethrow(ok, ...)
  if tripped or (not ok and (...) == CUTOFF) then error(CUTOFF, 0) end
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
M.READS = { list = true, describe = true } -- M.api's calls that are not actions

local function copy(t)
  local c = {}
  for k, v in pairs(t) do c[k] = v end
  return c
end

-- The string functions a sandbox has. They are also all that a string's
-- methods reach (`("").dump` would otherwise be string.dump): the string
-- metatable is shared by the daemon and every sandbox.
local STRING = {}
for _, k in ipairs({ "byte", "char", "find", "format", "gmatch", "gsub", "len", "lower", "match",
  "rep", "reverse", "sub", "upper" }) do STRING[k] = string[k] end
getmetatable("").__index = STRING

-- What one hook call (or a file's top level) may write to pm.log, print
-- and pm.log together; the rest is counted and said in one line.
M.LOG_LIMIT = 16 * 1024
local logged, unlogged = 0, 0

local function hook_log(sep, ...)
  local t, size = {}, 0
  for i = 1, select("#", ...) do
    local s = tostring((select(i, ...)))
    size = size + #s + (i > 1 and #sep or 0)
    if size - #s <= M.LOG_LIMIT then -- (what the limit cuts off is never joined)
      t[i] = #s > M.LOG_LIMIT and s:sub(1, M.LOG_LIMIT) or s
    end
  end
  local room = M.LOG_LIMIT - logged
  if size > room then
    unlogged = unlogged + size - math.max(room, 0)
    if room <= 0 then return true end
    local line = real.concat(t, sep)
    logged = M.LOG_LIMIT
    log.info("hook: %s [cut]", line:sub(1, room))
    return true
  end
  logged = logged + size
  log.info("hook: %s", real.concat(t, sep))
  return true
end

--[[ The pm table of one sandbox: its own copy of the daemon's API, so that
what a file does to its pm changes no other file's; its actions refused
while the file's top level runs (a declaration declares: a file refused
afterwards must have changed nothing). state.loading: that phase. ]]
local function pm_table(state)
  local t = {}
  for k, fn in pairs(M.api) do
    if M.READS[k] then
      t[k] = fn
    else
      t[k] = function(...)
        if state.loading then
          error(("pm.%s cannot be called while an ecosystem file loads (only from a hook)"):format(k), 2)
        end
        return fn(...)
      end
    end
  end
  t.log = function(...) return hook_log(" ", ...) end
  return t
end

-- A function of the sandbox that only works while the file's top level
-- runs (reading files from a hook, later, would read with no one's leave)
local function while_loading(state, what, fn)
  return function(...)
    if not state.loading then
      error(("%s works while an ecosystem file loads, not in a hook"):format(what), 2)
    end
    return fn(...)
  end
end

-- The names require takes: Lua's ("lib.common", "common"), no path
local MODULE_NAME = "^[%w_%-]+$"

--[[ A sandbox. state: loading (the file's top level runs), environ (what
os.getenv sees: the caller's environment; nil: the daemon's, for hooks of
old callers), helpers (pm.read, pm.json... added to pm, usable while
loading), require (name -> path | nil, err and read(path) -> text | nil,
err: the modules a file may load; each runs in this same sandbox, once). ]]
function M.sandbox(state)
  state = state or {}
  local getenv = os.getenv
  if state.environ then
    local environ = state.environ
    getenv = function(k)
      if type(k) ~= "string" then error("bad argument #1 to 'getenv' (string expected)", 2) end
      local v = rawget(environ, k)
      return type(v) == "string" and v or nil
    end
  end
  local env = {
    string = copy(STRING),
    table = { concat = table.concat, insert = table.insert, remove = table.remove,
      sort = table.sort, maxn = table.maxn },
    math = copy(math),
    os = { time = os.time, date = os.date, getenv = getenv, clock = os.clock,
      difftime = os.difftime },
    pairs = pairs, ipairs = ipairs, next = next, select = select, type = type,
    tostring = tostring, tonumber = tonumber, unpack = unpack, error = error,
    assert = assert, pcall = safe_pcall, xpcall = safe_xpcall, setmetatable = setmetatable,
    getmetatable = function(v)
      if type(v) == "string" then return nil end -- the string library stays the daemon's
      return getmetatable(v)
    end, rawget = rawget, rawset = rawset, rawequal = rawequal,
    print = function(...) hook_log("\t", ...) end,
    pm = pm_table(state),
  }
  env._G = env
  for k, fn in pairs(state.helpers or {}) do env.pm[k] = while_loading(state, "pm." .. k, fn) end
  if state.require then
    -- each module once per evaluation: its value (true when it returns
    -- nothing), LOADING while its own top level runs (a loop is an error)
    local loaded, LOADING = {}, {}
    env.require = function(name)
      if type(name) ~= "string" then error("require: a module name (a string) expected", 2) end
      local v = loaded[name]
      if v == LOADING then error(("require '%s': a loop (the module requires itself)"):format(name), 2) end
      if v ~= nil then return v end
      if not state.loading then
        error(("require '%s' works while an ecosystem file loads, not in a hook"):format(name), 2)
      end
      local ok = true
      for part in (name .. "."):gmatch("([^.]*)%.") do ok = ok and part:match(MODULE_NAME) ~= nil end
      if not ok then
        error(("require '%s': a module of the file's folder expected ('common', 'lib.util')"):format(name), 2)
      end
      local path, perr = state.require(name)
      if not path then error(perr, 2) end
      local text, rerr = state.read(path)
      if not text then error(("require '%s': %s"):format(name, rerr), 2) end
      if text:byte(1) == 27 then
        error(("require '%s': %s is bytecode: only Lua source is loaded"):format(name, path), 2)
      end
      local chunk, lerr = load(text, "@" .. path, "t", env)
      if not chunk then error(lerr, 0) end
      jit.off(chunk, true)
      loaded[name] = LOADING
      local res = { pcall(chunk, name) }
      if not res[1] then
        loaded[name] = nil
        error(res[2], 0)
      end
      if res[2] == nil then res[2] = true end
      loaded[name] = res[2]
      return res[2]
    end
  end
  return env
end

--[[ Loads an ecosystem.lua file in a sandbox of its own, JIT off for all
it defines. What it returns runs the file's top level (with hooks.run),
where pm's actions are refused; the hooks it defines have them. opts: the
sandbox's environ, helpers, require and read (M.sandbox). ]]
function M.loadfile(path, opts)
  local state = { loading = true }
  for k, v in pairs(opts or {}) do state[k] = v end
  state.loading = true
  local chunk, err = loadfile(path, "t", M.sandbox(state))
  if not chunk then return nil, err end
  jit.off(chunk, true)
  return function(...)
    local res = { chunk(...) }
    state.loading = false
    return unpack(res, 1, table.maxn(res))
  end
end

-- Runs chunk() under the same limits as a hook (the file's top level).
-- Returns true, results... or false, message.
function M.run(fn, ...)
  if running then return false, "a hook cannot run another hook" end
  local deadline = os.clock() + M.TIME_LIMIT / 1000 -- CPU time: preemption does not count
  local mem0 = collectgarbage("count")
  reason = nil
  tripped = false
  running = true
  logged, unlogged = 0, 0
  local ticks = 0
  local live = true -- off as soon as the hook's code is done
  -- every instruction: a string can double in one; the clock every 256
  debug.sethook(function()
    if not live then return end
    if tripped then error(CUTOFF, 0) end
    if collectgarbage("count") - mem0 > M.MEMORY_LIMIT then
      cut(("allocated over %d KB"):format(M.MEMORY_LIMIT))
    end
    ticks = ticks + 1
    if ticks % 256 == 0 and os.clock() > deadline then
      cut(("ran over %d ms"):format(M.TIME_LIMIT))
    end
  end, "", 1)
  local function finish(...)
    live = false
    debug.sethook()
    running = false
    if unlogged > 0 then
      log.warn("hook: %d more bytes not logged (at most %d a hook call)", unlogged, M.LOG_LIMIT)
      unlogged = 0
    end
    local res = { ... }
    if tripped then res = { false, CUTOFF } end
    tripped = false
    return res
  end
  local res = finish(xpcall(fn, function(e)
    live = false
    if e == CUTOFF or tripped then return CUTOFF end
    -- no tostring of a table: its __tostring is the hook's code
    local msg = type(e) == "string" and e or ("error value of type " .. type(e))
    return debug.traceback(msg, 2)
  end, ...))
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
    local msg = res[2] -- (an error of the hook's: as long as it made it)
    if #msg > M.LOG_LIMIT then msg = msg:sub(1, M.LOG_LIMIT) .. " [cut]" end
    log.error("hook %s failed, the built-in policy decides: %s", name, msg)
    return nil, msg
  end
  return unpack(res, 2, table.maxn(res))
end

-- on_exit's answer -> { action, delay } | nil, err
function M.decision(v)
  if v == nil then return nil end
  if v == "restart" or v == "stop" then return { action = v, delay = 0 } end
  if type(v) == "number" and v >= 0 and v < math.huge then return { action = "restart", delay = v } end
  -- read with rawget: a metamethod of the hook's would run outside its limits
  if type(v) == "table" then
    local action, delay = rawget(v, "action"), rawget(v, "delay")
    if action == "restart" or action == "stop" then
      if delay ~= nil and (type(delay) ~= "number" or delay < 0 or delay ~= delay or delay == math.huge) then
        return nil, "bad delay in the on_exit decision"
      end
      return { action = action, delay = delay or 0 }
    end
  end
  local shown = (type(v) == "string" or type(v) == "number") and tostring(v):sub(1, 80) or ("a " .. type(v))
  return nil, "on_exit returned " .. shown ..
    ' (expected "restart", "stop", a delay in ms or {action=, delay=})'
end

return M
