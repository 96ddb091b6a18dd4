-- Lua hooks from ecosystem files, run inside the daemon where the decision
-- is made. A hook runs in a sandbox, with JIT compilation off for its whole
-- chunk so that an instruction-count hook can cut it off: after about 10 ms
-- of its own thread's CPU (a file may raise it up to a ceiling), or 32 MB
-- of new memory, it is stopped, logged with the file:line it was at and a
-- traceback of the file's own frames, and the built-in policy decides.
-- pm's API calls (pm.list...) run outside that budget: only the user's
-- code is billed. Timers (pm.after, pm.every) and pm.state belong to the
-- app whose hook made them.
local core = require "pm.core"
local log = require "pm.log"
local util = require "pm.util"

local M = {}

M.TIME_LIMIT = 10              -- ms of work per hook call
M.MEMORY_LIMIT = 32 * 1024     -- KB a hook call may add
M.LOAD_TIME_LIMIT = 200        -- ms of work for a file's top level
M.LOAD_MEMORY_LIMIT = 64 * 1024 -- KB a file's top level may add
M.CEILING = { cpu_ms = 200, memory_mb = 128 } -- what hook_limits may raise them to
M.API_LIMIT = 500              -- ms pm's API calls may take in one hook call
M.STRING_LIMIT = 1024 * 1024   -- bytes string.rep may make in a hook
M.PATTERN_LIMIT = 64 * 1024    -- bytes of subject a pattern may scan in a hook
M.PATTERN_WORK = 1e7           -- (subject length)^(quantifiers) a pattern may cost
M.STATE_LIMIT = 64 * 1024      -- bytes of pm.state (as JSON) an app may keep
M.TIMER_LIMIT = 64             -- timers (pm.after, pm.every) an app may have at once
M.EVERY_MIN = 10               -- ms: the shortest period of pm.every
M.SHARE_MS = 250               -- ms of CPU a file's hooks may use in each second, all calls together

-- The sandboxes' global tables -> their state (limits, path): a frame
-- whose function has one of them as environment is the user's code.
local sandboxes = setmetatable({}, { __mode = "k" })

local function is_user(fn)
  if type(fn) ~= "function" then return false end
  local ok, env = pcall(getfenv, fn)
  return ok and sandboxes[env] ~= nil
end

-- "file:line" of the innermost frame of the user's code, from level on
local function user_where(level)
  for l = level, 60 do
    local info = debug.getinfo(l, "Slf")
    if not info then return nil end
    if info.currentline and info.currentline > 0 and is_user(info.func) then
      return ("%s:%d"):format(info.source:gsub("^@", ""), info.currentline)
    end
  end
end

-- A traceback of the user's frames only (pm's own are left out)
local function user_traceback(level)
  local lines = {}
  for l = level, 60 do
    local info = debug.getinfo(l, "Slnf")
    if not info then break end
    if info.currentline and info.currentline > 0 and is_user(info.func) then
      local name = info.name and ("function '" .. info.name .. "'")
        or (info.what == "main" and "main chunk")
        or ("function <" .. info.short_src .. ":" .. info.linedefined .. ">")
      lines[#lines + 1] = ("\t%s:%d: in %s"):format(info.source:gsub("^@", ""), info.currentline, name)
    end
  end
  if #lines == 0 then return "" end
  return "\nstack traceback:\n" .. table.concat(lines, "\n")
end

local CUTOFF = setmetatable({}, { __tostring = function() return "hook cut off" end })
local running = false
local reason

-- Bounds on the C functions that can run long or allocate without an
-- instruction being counted; they only bite while a hook runs.
local tripped = false -- the running hook is being cut off
local function cut(why)
  local at = user_where(2)
  reason = at and (why .. " at " .. at) or why
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
-- M.api's calls that are not actions (a file's top level may call them;
-- not pm.tail: a file must not read apps' logs with the daemon's rights)
M.READS = { list = true, describe = true }

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

-- The run in progress (M.run): its deadline and memory base move past
-- what pm's API calls spend (they are not billed to the hook), whose own
-- time is bounded by M.API_LIMIT.
local run = { live = false }

-- Calls fn(...) outside the running hook's budget: no instruction hook,
-- no bounds on the string functions, its CPU time and memory not billed.
local function unbilled(fn, ...)
  if not running or not run.live then return fn(...) end
  debug.sethook()
  running = false
  local t0, m0 = core.thread_cpu(), collectgarbage("count")
  local res = { pcall(fn, ...) }
  local spent = core.thread_cpu() - t0
  run.deadline = run.deadline + spent
  run.api = run.api + spent
  run.mem0 = run.mem0 + math.max(0, collectgarbage("count") - m0)
  running = true
  debug.sethook(run.hook, "", 1)
  if run.api > M.API_LIMIT then cut(("pm's API calls took over %d ms"):format(M.API_LIMIT)) end
  if not res[1] then error(res[2], 0) end
  return unpack(res, 2, table.maxn(res))
end
M.unbilled = unbilled

-- The app whose hook (or timer) runs: its timers and pm.state
local current -- the app's record (supervisor's)
local current_pid -- in its on_start: its process (the timers set then are that process's)
function M.current_app() return current end

--[[ The pm table of one sandbox: its own copy of the daemon's API, so that
what a file does to its pm changes no other file's; its actions refused
while the file's top level runs (a declaration declares: a file refused
afterwards must have changed nothing). state.loading: that phase. ]]
local scope -- the uid whose apps the API call under way may reach (a user's file's), or nil: all
function M.scope() return scope end

-- A hook's table as pm's code may use it: copied with next and rawget, no
-- metatable (a metamethod of the hook's would run in pm's code, where no
-- budget stops it: a __tostring that loops held the daemon for good), at
-- most M.ARG_ENTRIES entries in all. -> the copy | raises
M.ARG_ENTRIES = 10000
local function plain(v, left, depth)
  if type(v) ~= "table" then return v end
  -- (a table met twice is copied twice, and counted twice: 26 levels of
  -- {t, t} are 2^26 entries to JSON, and to the budget here)
  if depth > 64 then error("a table nested over 64 levels", 0) end
  local out = {}
  local k, x = next(v)
  while k ~= nil do
    left[1] = left[1] - 1
    if left[1] < 0 then error(("a table of over %d entries"):format(M.ARG_ENTRIES), 0) end
    out[plain(k, left, depth + 1)] = plain(x, left, depth + 1)
    k, x = next(v, k)
  end
  return out
end

local function scoped(state, fn, ...)
  local n, args = select("#", ...), { ... }
  for i = 1, n do
    if type(args[i]) == "table" then args[i] = plain(args[i], { M.ARG_ENTRIES }, 0) end
  end
  local before = scope
  scope = state.owner_uid
  local res = { pcall(unbilled, fn, unpack(args, 1, n)) }
  scope = before
  if not res[1] then error(res[2], 0) end
  return unpack(res, 2, table.maxn(res))
end

local function pm_table(state)
  local t = {}
  for k, fn in pairs(M.api) do
    if M.READS[k] then
      t[k] = function(...) return scoped(state, fn, ...) end
    else
      t[k] = function(...)
        if state.loading then
          error(("pm.%s cannot be called while an ecosystem file loads (only from a hook)"):format(k), 2)
        end
        return scoped(state, fn, ...)
      end
    end
  end
  t.log = function(...) return hook_log(" ", ...) end
  -- pm.after / pm.every: timers of the app whose hook runs
  for _, kind in ipairs({ "after", "every" }) do
    t[kind] = function(ms, fn)
      if state.loading or not current then
        error(("pm.%s works in a hook (the timer belongs to its app), not while a file loads"):format(kind), 2)
      end
      if type(ms) ~= "number" or ms ~= ms or ms < 0 or ms == math.huge then
        error(("pm.%s: a delay in ms expected"):format(kind), 2)
      end
      if type(fn) ~= "function" then error(("pm.%s: a function expected"):format(kind), 2) end
      if kind == "every" and ms < M.EVERY_MIN then
        error(("pm.every: a period of at least %d ms expected"):format(M.EVERY_MIN), 2)
      end
      local h, err = unbilled(M.add_timer, current, kind, ms, fn)
      if not h then error(err, 2) end
      return h
    end
  end
  -- pm.state: the running app's own table (kept in the journal)
  return setmetatable(t, {
    __index = function(_, k)
      if k == "state" and current and not state.loading then return M.state_of(current) end
    end,
    __newindex = function(tt, k, v)
      if k == "state" then error("pm.state is the app's own table: set its fields (pm.state.n = 1)", 2) end
      rawset(tt, k, v)
    end,
  })
end

-- What print(...) shows while a file loads, kept in list for the CLI that
-- asked (at most M.LOG_LIMIT bytes in all, as pm.log)
function M.keep_printed(list, ...)
  local t = {}
  for i = 1, select("#", ...) do t[i] = tostring((select(i, ...))) end
  local line = real.concat(t, "\t")
  list.size = (list.size or 0) + #line + 1
  if list.size > M.LOG_LIMIT then
    if not list.cut then list[#list + 1] = "[print output cut]"; list.cut = true end
    return
  end
  list[#list + 1] = line
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
    bit = copy(bit),
    coroutine = copy(coroutine),
    os = { time = os.time, date = os.date, getenv = getenv, clock = os.clock,
      difftime = os.difftime },
    pairs = pairs, ipairs = ipairs, next = next, select = select, type = type,
    tostring = tostring, tonumber = tonumber, unpack = unpack, error = error,
    assert = assert, pcall = safe_pcall, xpcall = safe_xpcall, setmetatable = setmetatable,
    getmetatable = function(v)
      if type(v) == "string" then return nil end -- the string library stays the daemon's
      return getmetatable(v)
    end, rawget = rawget, rawset = rawset, rawequal = rawequal,
    print = function(...)
      -- while the file loads, also kept for the CLI that asked (state.printed)
      if state.loading and state.printed then M.keep_printed(state.printed, ...) end
      hook_log("\t", ...)
    end,
    pm = pm_table(state),
  }
  env._G = env
  sandboxes[env] = state
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
sandbox's environ, helpers, require and read (M.sandbox); ctx: what a
file that returns a function is called with; printed: a list that keeps
what print shows while it loads. Also returns the sandbox's state
(M.set_limits takes it). ]]
function M.loadfile(path, opts)
  local state = { loading = true, path = path }
  for k, v in pairs(opts or {}) do state[k] = v end
  state.loading = true
  local chunk, err
  if state.text then -- (its text, read as its user)
    chunk, err = load(state.text, "@" .. path, "t", M.sandbox(state))
    state.text = nil
  else
    chunk, err = loadfile(path, "t", M.sandbox(state))
  end
  if not chunk then return nil, err end
  jit.off(chunk, true)
  return function(...)
    local res = { chunk(...) }
    -- `return function(ctx) ... end`: called with state.ctx, still loading
    if type(res[1]) == "function" and state.ctx then res = { res[1](state.ctx) } end
    state.loading = false
    return unpack(res, 1, table.maxn(res))
  end, state
end

-- The state of fn's file (its hook_limits, path, share), or nil
local function state_of(fn)
  local ok, env = pcall(getfenv, fn)
  return ok and sandboxes[env] or nil
end

-- A file's share of the daemon: its hooks' calls together may use
-- M.SHARE_MS of CPU in each second (64 timers of pm.every(10) that each
-- ran 10 ms kept the daemon at 100 %, every `pm ls` seconds long). A call
-- past it is refused at once (the built-in policy decides); the first
-- refusal of a second is said, the others counted. -> nil, or the refusal
-- and whether it is one more of that second
local function over_share(st)
  if not st or st.loading then return nil end
  local now = core.mono()
  if now - (st.share_at or -1e9) >= 1000 then
    if (st.share_skipped or 0) > 1 then
      log.warn("hooks of %s: %d more calls refused in a second (over %d ms of CPU)", tostring(st.path),
        st.share_skipped - 1, M.SHARE_MS)
    end
    st.share_at, st.share_used, st.share_skipped = now, 0, 0
    return nil
  end
  if st.share_used < M.SHARE_MS then return nil end
  st.share_skipped = st.share_skipped + 1
  return ("cut off: the hooks of %s used over %d ms of CPU in this second"):format(tostring(st.path),
    M.SHARE_MS), st.share_skipped > 1
end

--[[ A file's hook_limits = { cpu_ms = N, memory_mb = N } -> true, or nil,
err: a limit may be raised up to M.CEILING (or lowered), for the hooks
of the file whose state (M.loadfile's second result) is given. ]]
function M.set_limits(state, v)
  if v == nil then return true end
  if type(v) ~= "table" then return nil, "hook_limits: a table { cpu_ms = N, memory_mb = N } expected" end
  local lim = { cpu_ms = M.TIME_LIMIT, memory_kb = M.MEMORY_LIMIT }
  for k, n in pairs(v) do
    local ceil = M.CEILING[k]
    if not ceil then
      return nil, ("hook_limits: unknown limit '%s' (cpu_ms, memory_mb)"):format(tostring(k))
    end
    if type(n) ~= "number" or n ~= n or n <= 0 or n > ceil then
      return nil, ("hook_limits.%s: a number above 0 and at most %d expected"):format(k, ceil)
    end
    if k == "cpu_ms" then lim.cpu_ms = n else lim.memory_kb = n * 1024 end
  end
  state.limits = lim
  return true
end

M.LOAD_LIMITS = { cpu_ms = M.LOAD_TIME_LIMIT, memory_kb = M.LOAD_MEMORY_LIMIT } -- a file's top level

--[[ Runs fn(...) under a hook's limits (limits: { cpu_ms, memory_kb },
default the file's hook_limits or pm's). The time is the CPU time of
this thread (core.thread_cpu): other threads' work is not billed, nor is
what pm's API calls take. Returns true, results... or false, message
(a cut-off names the file:line it was at; an error carries a traceback
of the file's own frames). ]]
function M.run_limited(limits, fn, ...)
  if running then return false, "a hook cannot run another hook" end
  local st = state_of(fn)
  local refused, again = over_share(st)
  if refused then return false, refused, again end
  limits = limits or (st and st.limits) or {}
  local cpu_ms = limits.cpu_ms or M.TIME_LIMIT
  local mem_kb = limits.memory_kb or M.MEMORY_LIMIT
  run.deadline = core.thread_cpu() + cpu_ms
  run.mem0 = collectgarbage("count")
  run.api = 0
  reason = nil
  tripped = false
  running = true
  logged, unlogged = 0, 0
  local ticks = 0
  run.live = true -- off as soon as the hook's code is done
  -- every instruction: a string can double in one; the clock every 256
  -- The cut-off is raised in the user's code only: pm's own (this
  -- function's finish, its error handler, the sandbox's wrappers) runs to
  -- its end and sees `tripped` (an error rethrown by coroutine.wrap or
  -- error() runs the handler with the hook live).
  local function trip(why)
    if is_user(debug.getinfo(3, "f").func) then cut(why) end
    if not tripped then
      reason = why
      tripped = true
    end
  end
  run.hook = function()
    if not run.live then return end
    if tripped then
      if is_user(debug.getinfo(2, "f").func) then error(CUTOFF, 0) end
      return
    end
    if collectgarbage("count") - run.mem0 > mem_kb then
      trip(("allocated over %d KB"):format(mem_kb))
    end
    ticks = ticks + 1
    if ticks % 256 == 0 and core.thread_cpu() > run.deadline then
      trip(("ran over %g ms"):format(cpu_ms))
    end
  end
  debug.sethook(run.hook, "", 1)
  local function finish(...)
    run.live = false
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
  local t_start = core.thread_cpu()
  local res = finish(xpcall(fn, function(e)
    run.live = false
    if e == CUTOFF or tripped then return CUTOFF end
    -- no tostring of a table: its __tostring is the hook's code
    local msg = type(e) == "string" and e or ("error value of type " .. type(e))
    return msg .. user_traceback(2)
  end, ...))
  -- (pm's API calls the hook made count too: a share is the daemon's CPU)
  if st and st.share_used then st.share_used = st.share_used + (core.thread_cpu() - t_start) end
  if not res[1] then
    if res[2] == CUTOFF then
      collectgarbage()
      return false, "cut off: " .. tostring(reason)
    end
    return false, tostring(res[2])
  end
  return unpack(res, 1, table.maxn(res))
end

-- Runs fn(...) under its file's hook limits (a file's top level: ecosystem
-- runs it with M.LOAD_LIMITS).
function M.run(fn, ...) return M.run_limited(nil, fn, ...) end

-- Set by the daemon: on_error(p, name, msg) when a hook of p failed (the
-- bus's hook:error, the app's last_hook_error); on_state(p) when an app's
-- pm.state changed (the journal).
M.on_error = function() end
M.on_state = function() end

-- Calls the hook `name` of an app: returns its result, or nil after
-- logging what went wrong (the caller then applies the built-in policy).
-- p: the app (its record), whose timers and pm.state the hook reaches.
function M.call(name, fn, ...)
  return M.call_app(nil, name, fn, ...)
end

function M.call_app(p, name, fn, ...)
  local before, before_pid = current, current_pid
  current = p
  current_pid = p and name:match("^on_start ") and p.pid ~= 0 and p.pid or nil
  local res = { M.run(fn, ...) }
  current, current_pid = before, before_pid
  if p then M.save_state(p) end
  if not res[1] and res[3] then return nil, res[2] end -- (refused again this second: said once)
  if not res[1] then
    local msg = res[2] -- (an error of the hook's: as long as it made it)
    if #msg > M.LOG_LIMIT then msg = msg:sub(1, M.LOG_LIMIT) .. " [cut]" end
    -- (only on_exit has a policy to fall back on; a timer goes on)
    log.error("hook %s failed%s: %s", name, name:match("^on_exit ") and ", the built-in policy decides" or "", msg)
    if p then
      local ok, err = pcall(M.on_error, p, name, msg)
      if not ok then log.error("hook:error of %s: %s", name, err) end
    end
    return nil, msg
  end
  return unpack(res, 2, table.maxn(res))
end

-- ---- pm.state: a table per app, kept in the journal ----
-- p.hook_state: the table hooks see; p.hook_state_text: its JSON as last
-- saved (what the journal holds, and what a restored app starts from).

function M.state_of(p)
  if not p.hook_state then
    local t
    if p.hook_state_text then
      local ok, v = pcall(require("cjson").decode, p.hook_state_text)
      if ok and type(v) == "table" then t = v end
    end
    p.hook_state = t or {}
  end
  return p.hook_state
end

-- After a hook of p ran: its pm.state, when changed, is saved (as JSON,
-- at most M.STATE_LIMIT bytes; else it goes back to what was saved).
function M.save_state(p)
  if not p.hook_state then return end
  -- (a plain copy first, of at most M.ARG_ENTRIES entries: shared tables
  -- would make the JSON exponential, built outside the hook's limits)
  local ok, text = pcall(function() return require("cjson").encode(plain(p.hook_state, { M.ARG_ENTRIES }, 0)) end)
  local err
  if not ok then
    err = "pm.state cannot be kept: " .. tostring(text):gsub("^.-:%d+: ", "")
  elseif #text > M.STATE_LIMIT then
    err = ("pm.state is %d bytes as JSON, over the %d a state may keep"):format(#text, M.STATE_LIMIT)
  end
  if err then
    log.error("app %s: %s (it goes back to what was kept)", p.name, err)
    p.hook_state = nil
    pcall(M.on_error, p, "pm.state", err)
    return
  end
  if text == "[]" or text == "{}" then text = nil end -- (cjson: an empty table is [] or {})
  if text ~= p.hook_state_text then
    p.hook_state_text = text
    M.on_state(p)
  end
end

-- ---- timers: pm.after, pm.every ----

-- p's timer: fn(proc) after ms (every ms, for every); -> a handle with
-- :cancel(), or nil, err. One set by on_start is its process's: it ends
-- when that process does (M.process_ended: a crash loop's on_start sets
-- one per process, not one more per restart).
function M.add_timer(p, kind, ms, fn)
  p.hook_timers = p.hook_timers or {}
  local n = 0
  for _ in pairs(p.hook_timers) do n = n + 1 end
  if n >= M.TIMER_LIMIT then
    return nil, ("pm.%s: app %s has %d timers already (at most %d)"):format(kind, p.name, n, M.TIMER_LIMIT)
  end
  local h = {}
  local timer
  local function cancel()
    if timer then timer:close(); timer = nil end
    if p.hook_timers then p.hook_timers[h] = nil end
    return true
  end
  timer = core.timer(ms, kind == "every" and ms or 0, function()
    if p.deleted then return cancel() end
    if kind == "after" then cancel() end
    local okd, d = pcall(M.describe, p)
    M.call_app(p, ("pm.%s timer of %s"):format(kind, p.name), fn, okd and d or nil)
  end)
  p.hook_timers[h] = cancel
  h.cancel = function() return cancel() end
  h.pid = current_pid
  return h
end

-- p's process pid ended: the timers its on_start set end with it
function M.process_ended(p, pid)
  if not p.hook_timers then return end -- (a crash loop's exit makes no table)
  for h, cancel in pairs(p.hook_timers) do
    if h.pid == pid then cancel() end
  end
end

-- Set by the daemon: a description of p as a table (what a timer's fn gets)
M.describe = function(p) return { name = p.name, pm_id = p.pm_id } end

-- p is deleted, or its hooks are other code now (a file applied again:
-- they would run the code before): its timers end -> how many
function M.drop_app(p)
  local n = 0
  for _, cancel in pairs(p.hook_timers or {}) do
    cancel()
    n = n + 1
  end
  p.hook_timers = nil
  return n
end

-- Whether two hooks are the same code (a file applied again makes new
-- functions of the same code: those are)
function M.same_code(a, b) return a == b or M.fingerprint(a) == M.fingerprint(b) end

-- A fingerprint of a hook's code: its bytecode without line numbers and
-- the values of its plain upvalues (a re-applied file whose hook changed
-- is a change, one that moved it a line down is not)
function M.fingerprint(fn)
  if type(fn) ~= "function" then return fn end
  local ok, code = pcall(string.dump, fn, true)
  local parts = { ok and code or tostring(fn) }
  for i = 1, 255 do
    local name, v = debug.getupvalue(fn, i)
    if not name then break end
    local t = type(v)
    if t == "string" or t == "number" or t == "boolean" then
      parts[#parts + 1] = name .. "=" .. tostring(v)
    elseif t == "function" and v ~= fn then
      parts[#parts + 1] = name .. "=" .. (is_user(v) and (select(2, pcall(string.dump, v, true)) or "") or "")
    elseif t == "table" then
      local eok, text = pcall(require("cjson").encode, v)
      parts[#parts + 1] = name .. "=" .. (eok and text or "table")
    end
  end
  return real.concat(parts, "\0")
end

-- Where fn is defined: "path:line" | nil
function M.where(fn)
  local ok, info = pcall(debug.getinfo, fn, "S")
  if not (ok and info and info.source) then return nil end
  return info.source:gsub("^@", "") .. ":" .. tostring(info.linedefined)
end

-- on_exit's answer -> { action, delay } | nil, err
function M.decision(v)
  if v == nil then return nil end
  if v == "restart" or v == "stop" then return { action = v, delay = 0 } end
  -- (a delay as attributes take one: 1500, "1500", "2s", "250ms")
  local function ms(x)
    local n = (type(x) == "number" or type(x) == "string") and util.duration(x)
    if n and n >= 0 and n == n and n < math.huge then return n end
  end
  local delay_v = ms(v)
  if delay_v then return { action = "restart", delay = delay_v } end
  -- read with rawget: a metamethod of the hook's would run outside its limits
  if type(v) == "table" then
    local action, delay = rawget(v, "action"), rawget(v, "delay")
    if action == "errored" then
      local why = rawget(v, "reason")
      if why ~= nil and type(why) ~= "string" then return nil, "the reason of an errored decision must be a string" end
      return { action = "errored", reason = why and why:sub(1, 200) or "errored by on_exit" }
    end
    if action == "restart" or action == "stop" then
      if delay ~= nil and not ms(delay) then
        return nil, ("bad delay %s in the on_exit decision (ms, or like \"2s\", \"250ms\")"):format(
          (type(delay) == "string" or type(delay) == "number") and ("%q"):format(tostring(delay):sub(1, 40))
          or ("a " .. type(delay)))
      end
      return { action = action, delay = delay ~= nil and ms(delay) or 0 }
    end
  end
  local shown = (type(v) == "string" or type(v) == "number") and tostring(v):sub(1, 80) or ("a " .. type(v))
  return nil, "on_exit returned " .. shown ..
    ' (expected "restart", "stop", a delay in ms, {action=, delay=} or {action = "errored", reason=})'
end

return M
