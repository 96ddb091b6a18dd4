-- pm console: a Lua REPL connected to the daemon, the whole client API in
-- scope (bare and as pm.*), line editing, history and completion through
-- libedit, bus events printed without garbling the line being typed. Fed a
-- script on stdin (not a terminal), it runs the chunks with no prompts.
-- `pm run file.lua` and `pm -e '<lua>'` run in the same environment.
-- The line editor (rl_*) comes from pm.term (lib/pm/term.so for bin/pm).
local core = require "pm.core"
local util = require "pm.util"
local view = require "pm.view"

local M = {}

local out = function(s) io.stdout:write(s) io.stdout:flush() end

-- ---- pretty printing ----

local function is_ident(k) return type(k) == "string" and k:match("^[%a_][%w_]*$") ~= nil end

function M.pretty(v, indent, seen)
  indent = indent or ""
  seen = seen or {}
  if type(v) == "string" then return ("%q"):format(v):gsub("\\\n", "\\n") end
  if type(v) ~= "table" then return tostring(v) end
  if v == util.null then return "null" end
  if seen[v] then return "<cycle: " .. tostring(v) .. ">" end
  if next(v) == nil then return "{}" end
  seen[v] = true
  local keys = {}
  for k in pairs(v) do keys[#keys + 1] = k end
  local n = #v
  table.sort(keys, function(a, b)
    local ta, tb = type(a), type(b)
    if ta ~= tb then return ta < tb end
    if ta == "number" or ta == "string" then return a < b end
    return tostring(a) < tostring(b)
  end)
  local inner = indent .. "  "
  local lines = {}
  for _, k in ipairs(keys) do
    local key
    if type(k) == "number" and k >= 1 and k <= n and k == math.floor(k) then
      key = ""
    elseif is_ident(k) then
      key = k .. " = "
    else
      key = "[" .. M.pretty(k, inner, seen) .. "] = "
    end
    lines[#lines + 1] = inner .. key .. M.pretty(v[k], inner, seen)
  end
  seen[v] = nil
  return "{\n" .. table.concat(lines, ",\n") .. "\n" .. indent .. "}"
end

-- What a chunk returned, as text: several plain values on one line
-- (`nil, "process or namespace not found"`), a table each on its own
-- lines, a process list as the table pm list shows.
function M.shown(...)
  local n = select("#", ...)
  -- (a pm call's result, nil: the nil err of a success is not shown)
  if n == 2 and (...) ~= nil and select(2, ...) == nil then n = 1 end
  local parts, line = {}, {}
  local function flush()
    if #line > 0 then parts[#parts + 1] = table.concat(line, ", ") .. "\n" end
    line = {}
  end
  for i = 1, n do
    local v = select(i, ...)
    if view.is_list(v) then
      flush()
      parts[#parts + 1] = view.table(v)
    elseif type(v) == "table" and v ~= util.null then
      flush()
      parts[#parts + 1] = M.pretty(v) .. "\n"
    else
      line[#line + 1] = M.pretty(v)
    end
  end
  flush()
  return table.concat(parts)
end

function M.show(...) out(M.shown(...)) end

-- ---- the environment ----

-- The console's globals: Lua's, pm, and every API call bare.
function M.env(print_fn)
  local pm = require "pm"
  local env = setmetatable({}, { __index = _G })
  env.pm = pm
  -- (every public function of the client: its names without "_")
  for name, fn in pairs(pm) do
    if type(fn) == "function" and name:sub(1, 1) ~= "_" then env[name] = fn end
  end
  local bus
  -- on(event, fn): a bus subscription in one call
  env.on = function(event, fn)
    if not bus then
      local err
      bus, err = pm.launchBus()
      if not bus then return nil, err end
    end
    return bus:on(event, function(...)
      local ok, err = pcall(fn, ...)
      if not ok then print_fn("error in the handler of " .. event .. ": " .. tostring(err) .. "\n") end
    end)
  end
  env.off = function(event, fn) if bus then return bus:off(event, fn) end end
  -- print, with tables as one-line JSON (bus packets read well that way);
  -- one with __tostring as that says, one holding NaN or an infinity (JSON
  -- has neither: null) as the console shows it
  local function finite(t, seen)
    seen = seen or {}
    if seen[t] then return true end
    seen[t] = true
    for k, x in pairs(t) do
      for _, y in ipairs({ k, x }) do
        if type(y) == "number" and (y ~= y or y == math.huge or y == -math.huge) then return false end
        if type(y) == "table" and not finite(y, seen) then return false end
      end
    end
    return true
  end
  env.print = function(...)
    local parts = {}
    for i = 1, select("#", ...) do
      local v = select(i, ...)
      local mt = type(v) == "table" and getmetatable(v)
      if type(mt) == "table" and mt.__tostring then
        parts[i] = tostring(v)
      elseif type(v) == "table" and v ~= util.null and not finite(v) then
        parts[i] = M.pretty(v)
      elseif type(v) == "table" then
        local ok, s = pcall(util.encode, v)
        parts[i] = ok and s or tostring(v)
      else
        parts[i] = tostring(v)
      end
    end
    print_fn(table.concat(parts, "\t") .. "\n")
  end
  env.show = M.show
  return env
end

-- ---- help: entries of the Lua reference (doc/lua.md, pm.reference) ----

-- The reference's key of a function of the console: "client pm.restart",
-- "bus bus:on", "child child.send", "console on" -> key | nil
local function key_of(env, fn)
  local ref = require "pm.reference"
  for k, v in pairs(env.pm) do
    if v == fn and type(k) == "string" then return "client pm." .. k end
  end
  local child = package.loaded["pm.child"]
  for k, v in pairs(type(child) == "table" and child or {}) do
    if v == fn then return "child child." .. k end
  end
  for k, v in pairs(ref.bus_class(env.pm) or {}) do
    if v == fn then return "bus bus:" .. k end
  end
  for k, v in pairs(env) do
    if v == fn and type(k) == "string" then return "console " .. k end
  end
end

-- (Interpreted, not traced: once in CI, on a machine not this one, help
-- of a function not pm's and of an unknown name both printed help's own
-- entry, as if the comparisons of these loops had held for a wrong entry;
-- 1,500 runs here never did it. Their speed does not matter: a person
-- waits for them. On a later machine it came back in 12 of 115 runs with
-- these two off, and never with the console's JIT off: pm console runs
-- without it, cli_admin.lua.)
if jit then
  jit.off(key_of)
  jit.off(require("pm.reference").find)
end

-- help([fn | name]): the index, or the entries of a function or a name
-- (what it prints goes through print_fn)
local function make_help(env, print_fn)
  return function(...)
    local ref = require "pm.reference"
    local entries, sections = ref.parse()
    if not entries then return print_fn(tostring(sections) .. "\n") end
    if select("#", ...) == 0 then
      return print_fn("The Lua reference (doc/lua.md, pm help lua): help(restart) or help \"bus:on\" "
        .. "shows an entry.\n" .. ref.index(entries, sections))
    end
    local what = ...
    local found, shown = {}, tostring(what)
    if type(what) == "function" then
      local key = key_of(env, what)
      if key then
        shown = key:match("%S+$")
        found = ref.find(entries, key)
      else
        shown = "this function (not one of pm's)"
      end
    elseif type(what) == "string" then
      found = ref.find(entries, what)
    end
    if #found == 0 then
      return print_fn(("no entry for %s in the Lua reference (help() lists them)\n"):format(shown))
    end
    local parts = {}
    for _, e in ipairs(found) do parts[#parts + 1] = ref.format(e) end
    print_fn(table.concat(parts, "\n"))
  end
end

-- The console's environment: the client's, help() too.
function M.console_env(print_fn)
  local env = M.env(print_fn)
  env.help = make_help(env, print_fn)
  return env
end

-- ---- pm run, pm -e ----

local function write(s) io.stdout:write(s) end

-- Set by `pm --verbose`: errors come with their traceback.
M.verbose = false

-- An error as pm run and pm -e say it: its first line (the message), or
-- the whole traceback when verbose.
local function say_error(err)
  if type(err) == "table" and err ~= util.null then
    -- a table as the console prints it, on one line: { code = 7 }
    err = "error: " .. M.pretty(err):gsub("\n%s*", " ")
  else
    err = tostring(err)
    if not M.verbose then err = err:match("^[^\n]*") end
  end
  io.stderr:write("pm: ", err, "\n")
end

-- fn() under xpcall with its traceback -> ok, every value it returned
-- (or its error) as { n = count, ... }
local function call_all(fn)
  local res = { n = 0 }
  local function keep(ok, ...)
    res.n = select("#", ...)
    for i = 1, res.n do res[i] = select(i, ...) end
    return ok
  end
  return keep(xpcall(fn, debug.traceback)), res
end

--[[ A chunk run in the console's environment, then the loop for as long as
anything keeps it alive (callbacks, a bus with subscriptions), as Node runs
its own -> true, the chunk's first result | false (the error is on stderr,
one line; with M.verbose its traceback). A callback's error ends it the
same way. ]]
local function run_chunk(chunk, args)
  local pm = require "pm"
  pm._verbose = M.verbose
  pm._fatal = true
  pm._on_error = function(msg, tb) say_error(M.verbose and tb or ("error in a callback: " .. msg)) end
  -- a line printed is out at once, as Node's console.log (a script that
  -- runs until it is killed loses nothing)
  io.stdout:setvbuf("line")
  setfenv(chunk, M.env(write))
  local ok, res = call_all(function() return chunk(unpack(args)) end)
  if not ok then
    say_error(res[1])
    return false
  end
  if not pm._run() then return false end
  return true, res
end

-- pm run: a script file, its arguments in arg and in ... -> the exit
-- status (a number it returns, else 0; 1 when it or a callback fails) |
-- nil, err (it does not load)
function M.run_file(file, args)
  local chunk, err = loadfile(file)
  if not chunk then return nil, err end
  _G.arg = { [0] = file }
  for i, v in ipairs(args) do _G.arg[i] = v end
  local ok, res = run_chunk(chunk, args)
  if not ok then return 1 end
  return type(res[1]) == "number" and res[1] or 0
end

-- pm -e: a chunk of Lua; what it returns is printed as the console shows
-- it (`return pm.stop("x")` prints `nil, "process or namespace not
-- found: x"`) -> 0, or 1 when it (or a callback) fails or it returns nil
-- and an error | nil, err (it does not compile)
function M.run_string(code)
  local chunk, err = loadstring(code, "=(command line)")
  if not chunk then return nil, err end
  local ok, res = run_chunk(chunk, {})
  if not ok then return 1 end
  if res.n > 0 then io.stdout:write(M.shown(unpack(res, 1, res.n))) end
  return (res.n >= 2 and res[1] == nil and res[2] ~= nil) and 1 or 0
end

-- ---- evaluation ----

--[[ A chunk whose top-level locals are the console's globals, so that
they are there on the next line (luvit's REPL does the same): `local x,
y = 1, 2` -> `x, y = 1, 2`, `local x` -> `x = nil`, `local function f`
-> `function f`. Locals of functions and blocks stay. -> chunk ]]
function M.globalize(src)
  local n = #src
  local depth, prev = 0, nil
  local edits = {} -- { at, len, text }: replace len bytes at at by text
  local i = 1
  local function name_list(j)
    -- after `local`: names separated by commas -> the position after the last one
    local last
    repeat
      local s, e = src:find("^%s*[%a_][%w_]*", j)
      if not s then break end
      last = e
      local _, c = src:find("^%s*,", e + 1)
      j = c and c + 1 or e + 1
    until not c
    return last
  end
  while i <= n do
    local c = src:sub(i, i)
    if c:match("%s") then
      i = i + 1
    elseif src:find("^%-%-", i) then
      local eq = src:match("^%-%-%[(=*)%[", i)
      local e
      if eq then
        e = select(2, src:find("]" .. eq .. "]", i, true))
      else
        e = src:find("\n", i, true)
      end
      i = (e or n) + 1
    elseif c == '"' or c == "'" then
      local j = i + 1
      while j <= n do
        local d = src:sub(j, j)
        if d == "\\" then j = j + 2
        elseif d == c or d == "\n" then break
        else j = j + 1 end
      end
      i, prev = j + 1, "string"
    elseif src:find("^%[=*%[", i) then
      local eq = src:match("^%[(=*)%[", i)
      local _, e = src:find("]" .. eq .. "]", i, true)
      i, prev = (e or n) + 1, "string"
    elseif c:match("[%a_]") then
      local word = src:match("^[%w_]+", i)
      if prev ~= "." and prev ~= ":" then
        if word == "function" or word == "do" or word == "if" or word == "repeat" then
          depth = depth + 1
        elseif word == "end" or word == "until" then
          depth = depth - 1
        elseif word == "local" and depth == 0 then
          local after = i + #word
          if src:find("^%s+function[^%w_]", after) then
            edits[#edits + 1] = { i, #word + 1, "" }
          else
            local last = name_list(after)
            if last then
              if src:find("^%s*=[^=]", last + 1) or src:find("^%s*=$", last + 1) then
                edits[#edits + 1] = { i, #word + 1, "" }
              else
                edits[#edits + 1] = { i, #word + 1, "" }
                edits[#edits + 1] = { last + 1, 0, " = nil" }
              end
            end
          end
        end
      end
      i, prev = i + #word, word
    elseif c:match("%d") then
      i, prev = i + #src:match("^[%w_%.]+", i), "number"
    else
      i, prev = i + 1, c
    end
  end
  for k = #edits, 1, -1 do
    local e = edits[k]
    src = src:sub(1, e[1] - 1) .. e[3] .. src:sub(e[1] + e[2])
  end
  return src
end

-- Compiles a chunk: "return <chunk>" first, its top-level locals kept as
-- globals. -> fn | nil, err, incomplete
local function compile(chunk, env)
  local fn = loadstring("return " .. chunk, "=console") or loadstring(M.globalize(chunk), "=console")
  if not fn then
    local err
    fn, err = loadstring(chunk, "=console")
    if not fn then
      if err:match("<eof>$") or err:match("<eof>'?$") then return nil, err, true end
      return nil, err
    end
  end
  setfenv(fn, env)
  return fn
end

-- Runs a chunk and shows what it returned, every value (a failure's
-- nil, err too).
-- Runs a chunk and shows what it returned, every value (a failure's
-- nil, err too); the first one becomes `_`. -> true | false, the error
-- as one text (a table's pretty-printed, a string's traceback off)
local function run(fn, show, env)
  local ok, res = call_all(fn)
  if not ok then
    local err = res[1]
    if type(err) == "table" then return false, M.pretty(err) end
    return false, (tostring(err):gsub("\nstack traceback:.*", ""))
  end
  if res.n > 0 then
    if env then env._ = res[1] end
    if show then show(unpack(res, 1, res.n)) end
  end
  return true
end

-- ---- completion ----

local KEYWORDS = { "and", "break", "do", "else", "elseif", "end", "false", "for", "function",
  "if", "in", "local", "nil", "not", "or", "repeat", "return", "then", "true", "until", "while" }

-- calls that only read, so a completion may evaluate them
local READ_ONLY = { list = true, describe = true, ["pm.list"] = true, ["pm.describe"] = true }

-- The value of the expression before a "." or ":" (variables, fields,
-- indexes, and calls to list/describe only) -> value | nil
local function value_of(env, expr)
  for call in expr:gmatch("([%w_%.]+)%s*%(") do
    if not READ_ONLY[call] then return nil end
  end
  local fn = loadstring("return " .. expr)
  if not fn then return nil end
  setfenv(fn, env)
  local ok, v = pcall(fn)
  return ok and v or nil
end

-- Candidates for word (libedit splits words at ".", quotes, brackets...);
-- before: the line up to the cursor. names(): the process names.
local function completions(env, word, before, names)
  local list, seen = {}, {}
  local function add(s)
    if not seen[s] and s:sub(1, #word) == word then seen[s] = true; list[#list + 1] = s end
  end
  local head = before:sub(1, #before - #word)
  local _, dq = head:gsub('"', "")
  local _, sq = head:gsub("'", "")
  if dq % 2 == 1 or sq % 2 == 1 then
    for _, n in ipairs(names()) do add(n) end
  elseif head:match("[%.:]$") then
    local expr = head:sub(1, -2):match("([%w_%.%[%]%(%)\"'%s,]+)$")
    expr = expr and expr:match("^%s*(.-)$")
    local v = expr and expr ~= "" and value_of(env, expr)
    if type(v) == "table" then
      -- its fields and what its metatable's __index has (a bus's methods);
      -- after ":" its methods only
      local colon, t = head:sub(-1) == ":", v
      for _ = 1, 8 do
        for k, x in pairs(t) do
          if is_ident(k) and (not colon or type(x) == "function") then add(k) end
        end
        local mt = getmetatable(t)
        t = type(mt) == "table" and rawget(mt, "__index") or nil
        if type(t) ~= "table" then break end
      end
    elseif type(v) == "string" then
      for k in pairs(string) do add(k) end
    end
  else
    for k in pairs(env) do if is_ident(k) then add(k) end end
    for k in pairs(_G) do if is_ident(k) then add(k) end end
    for _, kw in ipairs(KEYWORDS) do add(kw) end
  end
  table.sort(list)
  return list
end

-- ---- the two modes ----

local function interactive(tty)
  local history = util.home() .. "/console_history"
  local env = M.console_env(tty.rl_print)
  local function print_show(...) tty.rl_print(M.shown(...)) end
  env.show = print_show
  -- (callbacks run while a line is typed: readline runs the loop)
  env.pm._on_error = function(msg) tty.rl_print("error in a callback: " .. msg .. "\n") end
  -- process names for completion, refreshed after every line (completion
  -- never talks to the daemon)
  local names = {}
  local function refresh_names()
    names = {}
    for _, p in ipairs(env.pm.list() or {}) do names[#names + 1] = p.name end
  end
  refresh_names()
  tty.rl_init(function(word, before)
    local ok, list = pcall(completions, env, word, before, function() return names end)
    return ok and list or {}
  end)
  tty.rl_history_load(history)
  local sigint = core.signal(core.signals.SIGINT, function() tty.rl_interrupt() end)
  local version = (env.pm.ping() or {}).version or "?"
  out(("pm %s console, daemon %s. The API is in scope: list(), restart \"api\", "
    .. "on(\"process:event\", print), help(restart). Ctrl-D leaves.\n"):format(util.VERSION, version))
  local buffer
  while true do
    local line, interrupted = tty.rl_readline(buffer and ">> " or "pm> ")
    if interrupted then
      out("^C\n")
      buffer = nil
    elseif line == nil then
      out("\n")
      break
    elseif buffer or not line:match("^%s*$") then
      buffer = buffer and (buffer .. "\n" .. line) or line
      local fn, err, incomplete = compile(buffer, env)
      if not incomplete then
        tty.rl_history_add(buffer) -- (a chunk of several lines: one entry, newlines kept)
        buffer = nil
        if not fn then
          out("error: " .. tostring(err) .. "\n")
        else
          local ok, rerr = run(fn, print_show, env)
          if not ok then out("error: " .. rerr .. "\n") end
        end
        refresh_names()
      end
    end
  end
  sigint:close()
  tty.rl_history_save(history)
  env.pm.disconnect()
  return 0
end

-- Not a terminal: chunks from stdin, no prompts; exit 1 if one failed.
local function batch()
  local env = M.console_env(out)
  local buffer
  local status = 0
  env.pm._on_error = function(msg)
    out("error: in a callback: " .. msg .. "\n")
    status = 1
  end
  for line in io.stdin:lines() do
    buffer = buffer and (buffer .. "\n" .. line) or line
    if not buffer:match("^%s*$") then
      local fn, err, incomplete = compile(buffer, env)
      if not incomplete then
        buffer = nil
        if not fn then
          out("error: " .. tostring(err) .. "\n")
          status = 1
        else
          local ok, rerr = run(fn, M.show, env)
          if not ok then
            out("error: " .. rerr .. "\n")
            status = 1
          end
          env.pm._settle() -- (its callbacks run before the next chunk)
        end
      end
    else
      buffer = nil
    end
  end
  if buffer then
    local _, err = compile(buffer, env)
    out("error: " .. tostring(err) .. "\n")
    status = 1
  end
  env.pm.disconnect()
  return status
end

function M.main()
  local pm = require "pm"
  local ok, err = pm.connect()
  if not ok then
    io.stderr:write("pm: ", tostring(err), "\n")
    return 1
  end
  if core.isatty(0) and core.isatty(1) then
    local tty, rerr = require("pm.term").load("the console")
    if not tty then
      pm.disconnect()
      io.stderr:write(rerr, "\n")
      return 1
    end
    return interactive(tty)
  end
  return batch()
end

return M
