-- An app declaration: PM2's attribute names, defaults and meaning, checked
-- and normalized before anything runs. Input may come from the CLI, the Lua
-- API or an ecosystem file (camelCase accepted as in PM2).
local core = require "pm.core"
local util = require "pm.util"

local M = {}

-- A process gets at most 64 fds from pm.core's spawn: stdio, its listen
-- sockets (fds 3...) and its IPC channel after them.
M.MAX_LISTEN = 60

-- attribute -> kind, default. Kinds: string, number, boolean, table, list
-- (a string or a list), duration, size, func, any.
local schema = {
  name = { "string" }, script = { "string" }, args = { "list" }, cwd = { "string" },
  interpreter = { "string" }, interpreter_args = { "list" },
  -- exec_mode's default is PM2's: cluster for a Node app given instances
  -- (M.normalize), fork otherwise
  instances = { "any", 1 }, exec_mode = { "string" },
  namespace = { "string", "default" }, env = { "table" },
  -- dotenv files whose variables sit under env (read by the daemon when a
  -- file or a start is evaluated: ecosystem.lua's apply_env_file)
  env_file = { "list" },
  autorestart = { "boolean", true }, min_uptime = { "duration", 1000 },
  max_restarts = { "number", 16 }, restart_delay = { "duration", 0 },
  exp_backoff_restart_delay = { "duration", 0 }, stop_exit_codes = { "list" },
  -- (its growth, cap and reset, policy.lua's defaults when absent)
  exp_backoff_factor = { "number" }, exp_backoff_max = { "duration" }, exp_backoff_reset = { "duration" },
  kill_timeout = { "duration", 1600 }, kill_signal = { "string", "SIGINT" },
  max_memory_restart = { "size" }, cron_restart = { "string" },
  watch = { "any", false }, ignore_watch = { "list" }, watch_delay = { "duration" },
  wait_ready = { "boolean", false }, listen_timeout = { "duration", 3000 },
  out_file = { "string" }, error_file = { "string" }, log_file = { "any" },
  merge_logs = { "boolean", false }, time = { "boolean", false }, disable_logs = { "boolean" },
  log_date_format = { "string" }, log_type = { "string" }, pid_file = { "string" },
  autostart = { "boolean", true }, filter_env = { "any" }, port = { "any" },
  increment_var = { "string" }, instance_var = { "string", "NODE_APP_INSTANCE" },
  uid = { "any" }, gid = { "any" }, user = { "string" },
  shutdown_with_message = { "boolean", false }, ipc = { "boolean" },
  listen = { "list" }, health = { "table" }, depends_on = { "list" },
  -- set by pm: the ports the app's instances listened on in cluster mode
  -- (sockets.lua), bound again from the start after a resurrect
  learned_listen = { "list" },
  max_log_size = { "size" }, retain = { "number", 30 }, treekill = { "boolean", true },
  -- log files rotated by time ("daily", "hourly" or a cron expression),
  -- rotated files gzipped; a stdin pipe for pm send / pm attach (applogs.lua)
  log_rotate = { "string" }, compress = { "boolean", false }, input = { "boolean", false },
  on_exit = { "func" }, on_start = { "func" }, on_stop = { "func" },
  force = { "boolean", false }, watchdog = { "duration" },
  -- what a stop and the main process's exit kill (exits.lua): "tree" (the
  -- default), "group" or "process" (treekill = false)
  kill_mode = { "string" },
  -- PM2 attributes pm accepts and has no use for
  vizion = { "any" }, automation = { "any" }, pmx = { "any" },
  source_map_support = { "any" }, disable_source_map_support = { "any" },
  disable_trace = { "any" }, trace = { "any" }, post_update = { "any" },
  append_env_to_name = { "any" }, max = { "any" }, node_version = { "any" },
  version = { "any" }, description = { "any" }, deep_monitoring = { "any" },
  options = { "any" }, -- (an old PM2 sample's, PM2's own test fixtures hold it)
}
M.schema = schema

-- PM2's other spellings of the same attribute
local aliases = {
  output = "out_file", out = "out_file", error = "error_file", err_file = "error_file",
  log = "log_file", combine_logs = "merge_logs", exec_interpreter = "interpreter",
  node_args = "interpreter_args", ["interpreter-args"] = "interpreter_args",
  instance = "instances",
}

-- (each name once: a take-over normalizes every app's attributes; only
-- the schema's names and aliases are kept, not whatever a file declared)
local snaked = {}
local function snake(k)
  local s = snaked[k]
  if s then return s end
  s = k:gsub("(%l)(%u)", "%1_%2"):gsub("%u", string.lower)
  if schema[s] or aliases[s] then snaked[k] = s end
  return s
end

-- The attribute a name (camelCase, an alias) stands for, or nil.
function M.attribute(k)
  if type(k) ~= "string" then return nil end
  local key = aliases[k] or snake(k)
  key = aliases[key] or key
  return schema[key] and key or nil
end

-- Edits from a to b, two letters swapped counting as one (a typo's usual
-- shape: "lsit" is one from "list", two from "init").
local function distance(a, b)
  local before, prev = nil, {}
  for j = 0, #b do prev[j] = j end
  for i = 1, #a do
    local cur = { [0] = i }
    for j = 1, #b do
      local cost = a:byte(i) == b:byte(j) and 0 or 1
      cur[j] = math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
      if before and i > 1 and j > 1 and a:byte(i) == b:byte(j - 1) and a:byte(i - 1) == b:byte(j) then
        cur[j] = math.min(cur[j], before[j - 2] + 1)
      end
    end
    before, prev = prev, cur
  end
  return prev[#b]
end

-- The closest of names to word, when it is close enough to be a typo.
function M.closest(word, names)
  local best, bestd
  for _, n in ipairs(names) do
    local d = distance(word, n)
    if not bestd or d < bestd then best, bestd = n, d end
  end
  if bestd and bestd <= math.max(2, math.floor(#word / 3)) then return best end
end

local known_names
local function suggest(word)
  if not known_names then
    known_names = {}
    for k in pairs(schema) do known_names[#known_names + 1] = k end
    table.sort(known_names)
  end
  return M.closest(word, known_names)
end

-- log_rotate -> its cron expression ("daily": at midnight, "hourly")
local rotate_names = { daily = "0 0 * * *", hourly = "0 * * * *", weekly = "0 0 * * 0",
  monthly = "0 0 1 * *" }
function M.rotate_cron(v)
  return rotate_names[v] or v
end

-- "a b 'c d'" -> { "a", "b", "c d" } | nil, err (a quote left open)
function M.split_args(s)
  local out, i, n = {}, 1, #s
  while i <= n do
    local c = s:sub(i, i)
    if c:match("%s") then
      i = i + 1
    else
      local buf = {}
      while i <= n and not s:sub(i, i):match("%s") do
        local ch = s:sub(i, i)
        if ch == '"' or ch == "'" then
          local j = s:find(ch, i + 1, true)
          if not j then return nil, ("unterminated %s quote at byte %d"):format(ch, i) end
          buf[#buf + 1] = s:sub(i + 1, j - 1)
          i = j + 1
        else
          buf[#buf + 1] = ch
          i = i + 1
        end
      end
      out[#out + 1] = table.concat(buf)
    end
  end
  return out
end

-- The most characters a moment-style log_date_format gives (util.MOMENT's
-- tokens); core/logs.c has room for 127 of them.
M.MAX_DATE_WIDTH = 100
function M.date_width(fmt)
  local width = 0
  for _, piece in ipairs(util.moment_pieces(fmt)) do
    width = width + (type(piece) == "table" and #piece[1] or util.MOMENT[piece][2])
  end
  return width
end

local function cpu_count()
  local s = util.read_file("/sys/devices/system/cpu/online")
  local n = 0
  if s then
    for range in s:gmatch("[^,%s]+") do
      local a, b = range:match("^(%d+)-(%d+)$")
      n = n + (a and (tonumber(b) - tonumber(a) + 1) or 1)
    end
  end
  return n > 0 and n or 1
end
M.cpu_count = cpu_count

local function finite(n) return n == n and n ~= math.huge and n ~= -math.huge end

-- What an "any" attribute holds is saved and shown as JSON: text, finite
-- numbers, booleans and tables of them, names without a NUL (the empty
-- list's marker has one) -> the first thing that is not, or nil
local function not_data(v, depth)
  local t = type(v)
  -- (a number at the top is the attribute's own to judge: port says what a port is)
  if t == "string" or t == "boolean" or (t == "number" and (depth == 0 or finite(v))) or v == util.null then
    return nil
  end
  if t ~= "table" or depth > 32 then return t == "table" and "a table nested too deep" or ("a " .. t) end
  for key, e in pairs(v) do
    if type(key) == "string" and key:find("%z") then return "a name with a NUL byte" end
    if type(key) ~= "string" and type(key) ~= "number" then return "a " .. type(key) .. " as a name" end
    local bad = not_data(e, depth + 1)
    if bad then return bad end
  end
  return nil
end

local function check(app, k, v, kind)
  local label = ("app '%s': attribute '%s'"):format(app, k)
  if kind == "any" then
    local bad = not_data(v, 0)
    if bad then return nil, ("%s holds %s: only text, numbers, booleans and tables of them"):format(label, bad) end
    return v
  end
  if kind == "list" then
    if type(v) == "string" then return v end
    if type(v) == "number" then v = { v } end
    if type(v) ~= "table" then return nil, label .. " must be a string or a list" end
    for _, e in ipairs(v) do
      if type(e) ~= "string" and not (type(e) == "number" and finite(e)) then
        return nil, ("%s must list strings, got a %s"):format(label, type(e))
      end
    end
    return v
  end
  if kind == "duration" or kind == "size" then
    local n, err = (kind == "duration" and util.duration or util.size)(v, label)
    if n and (not finite(n) or n < 0) then
      return nil, ("%s must be a finite, non-negative %s"):format(label, kind)
    end
    return n, err
  end
  if kind == "func" then
    if type(v) ~= "function" then return nil, label .. " must be a function" end
    return v
  end
  if kind == "number" and type(v) == "string" and tonumber(v) then v = tonumber(v) end
  if kind == "boolean" and (v == "true" or v == "false") then return v == "true" end
  if type(v) ~= kind then
    return nil, ("%s must be a %s, got %s"):format(label, kind, type(v))
  end
  if kind == "number" and not finite(v) then return nil, label .. " must be a finite number" end
  return v
end

-- An environment table (env, env_<name>): names without "=" or NUL, values
-- strings (numbers and booleans become strings, tables their JSON text as
-- in PM2; false or null remove it); the names given a number are set in
-- numbers (descriptions show them as numbers, as PM2 does)
-- -> env | nil, err
local function check_env(app, k, env, numbers)
  for name, v in pairs(env) do
    if type(name) ~= "string" or name == "" or name:find("[=%z]") then
      return nil, ("app '%s': attribute '%s': %s is not a variable name"):format(app, k, util.encode(tostring(name)))
    end
    local t = type(v)
    local encoded, text = false, nil
    if t == "table" and v ~= util.null then encoded, text = pcall(util.encode, v) end
    if t == "number" or v == true then
      if t == "number" then numbers[name] = true end
      env[name] = tostring(v)
    elseif encoded then
      env[name] = text -- (PM2: an object's JSON text)
    elseif t ~= "string" and v ~= false and v ~= util.null then
      return nil, ("app '%s': attribute '%s': %s must be a string, a number or a boolean, got a %s")
        :format(app, k, name, t)
    end
  end
  return env
end

local interpreters = { js = "node", cjs = "node", mjs = "node", py = "python3",
  sh = "bash", rb = "ruby", php = "php", pl = "perl", ts = "ts-node" }

-- Whether an interpreter is Node's (PM2's rule: its name starts or ends
-- with "node": node, nodejs, ts-node)
function M.is_node(interpreter)
  local base = util.basename(interpreter or "")
  return base:match("^node") ~= nil or base:match("node$") ~= nil
end

local function find_in_path(cmd, path)
  for dir in (path or "/usr/local/bin:/usr/bin:/bin"):gmatch("[^:]+") do
    local p = dir .. "/" .. cmd
    if core.access(p, "x") then return p end
  end
end
M.find_in_path = find_in_path

-- The PATH an app's user starts with when it is not the daemon's (launch's
-- login environment)
M.LOGIN_PATH = "/usr/local/bin:/usr/bin:/bin"

-- Where d's script, interpreter or shell are looked for: the PATH it runs
-- with. Its declared env's PATH; else the caller's, or for an app of
-- another user the login PATH unless it takes the caller's environment
-- (filter_env = false, or prefixes to leave out): a folder on root's PATH,
-- ~/.pyenv/shims, is not that user's to run.
local function search_path(d, environ)
  local declared = type(d.env) == "table" and d.env.PATH
  if type(declared) == "string" and declared ~= "" then return declared end
  local who = d.user or d.uid
  if who ~= nil and core.getuid() == 0 and (d.filter_env == nil or d.filter_env == true) then
    local pw = util.passwd(who)
    if pw and pw.uid ~= core.getuid() then return M.LOGIN_PATH end
  end
  return environ.PATH or os.getenv("PATH")
end

-- user / uid / gid (names or numbers) -> numeric uid and gid. Only a daemon
-- running as root can run an app as another user.
function M.resolve_ids(d)
  if core.getuid() ~= 0 then
    return nil, "uid/gid/user need a daemon running as root (this one runs as uid " .. core.getuid() .. ")"
  end
  local who = d.user or d.uid
  if who ~= nil then
    local pw = util.passwd(who)
    if not pw then return nil, "unknown user " .. tostring(who) end
    d.uid = pw.uid
    if d.gid == nil then d.gid = pw.gid end
  end
  if d.gid ~= nil and not tonumber(d.gid) then
    local gr = util.group(d.gid)
    if not gr then return nil, "unknown group " .. tostring(d.gid) end
    d.gid = gr.gid
  end
  d.gid = tonumber(d.gid)
  return true
end

--[[
Normalizes a raw declaration. ctx: base (directory relative paths resolve
against: the caller's for the CLI and the API, the file's folder for an
ecosystem file), cwd (the default working directory: the caller's, as in
PM2; base when not given), env_name (--env NAME), environ (the caller's
environment), keep_cwd (a saved app whose cwd went is restored all the
same: errored), unset (names a restart gave as "null": interpreter_args is
then none at all, as PM2 shows it). Returns the declaration or nil,
"one-line error".
]]
-- The declarations whose raw form said how many instances (an ecosystem
-- file read again runs that many; one that says nothing keeps the count)
M.instances_given = setmetatable({}, { __mode = "k" })

--[[ An empty list or environment of a declaration: one table for all of
them, which says so when written to (a declaration's tables are never
changed after normalize: a change is a new declaration). ]]
M.NONE = setmetatable({}, { __newindex = function(_, k)
  error("a declaration's empty list or environment is shared: " .. tostring(k) .. " cannot be set in it", 2)
end, __metatable = "pm: a declaration's shared empty table" })
local SHAREABLE = { "env", "args", "interpreter_args", "stop_exit_codes" }

--[[ A member at its default is not in the declaration: its metatable
gives it (DEFAULTS: the schema's defaults and the shared empty tables).
With 10,000 apps, 26 of a declaration's 31 members were defaults, 5.5 MB
of tables. Reads see every member as before; pairs() sees only those that
differ from the default: M.members (and M.copy) give all of them. ]]
local DEFAULTS = {}
M.DEFAULTS = DEFAULTS
local DECL = { __index = DEFAULTS, __metatable = "pm: a declaration" }
for k, spec in pairs(schema) do DEFAULTS[k] = spec[2] end
-- (interpreter_args too, but it may be absent: a restart's --node-args=null)
for _, k in ipairs({ "args", "env", "stop_exit_codes" }) do DEFAULTS[k] = M.NONE end

function M.normalize(raw, ctx)
  ctx = ctx or {}
  if type(raw) ~= "table" then return nil, "an app must be a table" end
  local label = raw.name or raw.script or "?"
  local d = {}
  local numbers = {} -- env or env_<name> -> the names given a number
  for k, v in pairs(raw) do
    if type(k) ~= "string" then
      return nil, ("app '%s': attribute names must be strings"):format(label)
    end
    local key = aliases[k] or snake(k)
    key = aliases[key] or key
    if v == util.null then v = nil end
    if key == "env_remove" and type(v) == "table" and v[1] ~= nil then
      -- (pm's own: a saved declaration's variables removed, a list of
      -- names; an env_remove section of PM2's, {NAME = value}, is not a list)
      for _, name in ipairs(v) do
        if type(name) ~= "string" or name == "" or name:find("[=%z]") then
          return nil, ("app '%s': env_remove: %s is not a variable name"):format(label, util.encode(tostring(name)))
        end
      end
      numbers.removed = v
    elseif key:match("^env_.") and key ~= "env_file" then
      if type(v) ~= "table" then
        return nil, ("app '%s': attribute '%s' must be a table"):format(label, k)
      end
      numbers[key] = numbers[key] or {}
      local ok, err = check_env(label, k, v, numbers[key])
      if not ok then return nil, err end
      d[key] = v
    elseif key == "numeric_env" then -- (pm's own: a saved declaration's)
      if type(v) ~= "table" then return nil, ("app '%s': numeric_env must be a list"):format(label) end
      numbers.saved = {}
      for _, name in ipairs(v) do
        if type(name) == "string" then numbers.saved[name] = true end
      end
    elseif v ~= nil then
      local spec = schema[key]
      if not spec then
        local near = suggest(key)
        return nil, ("app '%s': unknown attribute '%s'%s"):format(label, k,
          near and (" - did you mean '" .. near .. "'?") or "")
      end
      local val, err = check(label, k, v, spec[1])
      if val == nil then return nil, err end
      if key == "env" then
        numbers.env = numbers.env or {}
        val, err = check_env(label, k, val, numbers.env)
        if not val then return nil, err end
      end
      d[key] = val
    end
  end
  local instances_given = d.instances ~= nil
  for k, spec in pairs(schema) do
    if d[k] == nil and spec[2] ~= nil then d[k] = spec[2] end
  end
  if type(d.script) ~= "string" or d.script == "" then
    return nil, ("app '%s': attribute 'script' is required"):format(label)
  end

  local base = ctx.base or core.getcwd()
  if d.cwd then d.cwd = util.absolute(d.cwd, base) end
  local script = d.script
  -- a script path relative to the given cwd, else to base (the file's
  -- folder: a file works from wherever pm is run)
  local path = util.absolute(script, d.cwd or base)
  local environ = ctx.environ or {}
  local st = core.stat(path)
  local command -- a command line run through the shell
  if st and st.type == "dir" then
    return nil, ("app '%s': script is a directory: %s"):format(label, path)
  elseif st then
    d.script = path
  elseif script == "serve" then
    -- PM2's built-in static file server (its variables PM2_SERVE_*): pm's
    -- own, serve.lua, run as `pm serve --run`
    local bin, berr = util.pm_binary()
    if not bin then return nil, ("app '%s': serve: %s"):format(label, berr) end
    d.script, d.interpreter, d.args = bin, "none", { "serve", "--run" }
  elseif script:find("%s") then
    -- PM2's rule: a script with spaces ("npm run start") is a command line
    -- for bash (sh without bash); its name, unless given, is the line
    local PATH = search_path(d, environ)
    local shell = find_in_path("bash", PATH) or find_in_path("sh", PATH)
    if not shell then
      return nil, ("app '%s': neither bash nor sh on PATH to run the command: %s"):format(label, script)
    end
    command = script
    d.script = shell
    d.interpreter = "none"
  elseif not script:find("/") then
    local found = find_in_path(script, search_path(d, environ))
    if not found then return nil, ("app '%s': script not found: %s"):format(label, script) end
    d.script = found
    if d.interpreter == nil then d.interpreter = "none" end
  else
    return nil, ("app '%s': script not found: %s"):format(label, path)
  end
  -- the default working directory is the caller's (PM2), not the script's
  d.cwd = d.cwd or ctx.cwd or base
  if not ctx.keep_cwd then -- (found at its start, it would stop what runs first)
    local cst = core.stat(d.cwd)
    if not cst or cst.type ~= "dir" then
      return nil, ("app '%s': cwd is not a directory: %s"):format(label, d.cwd)
    end
  end
  d.name = d.name or (command and command:match("^%s*(.-)%s*$")) or util.strip_ext(util.basename(script))
  -- PM2's append_env_to_name: --env production names the app "<name>-production"
  if d.append_env_to_name and ctx.env_name and type(d.name) == "string" then
    d.name = d.name .. "-" .. ctx.env_name
  end
  -- (a name of digits is PM2's too: a target is a name first, then an id)
  if d.name == "" or d.name == "all" then
    return nil, ("app '%s': a name cannot be empty or 'all'"):format(d.name)
  end
  -- (UTF-8: descriptions show its bytes as they are, and its log files
  -- are named after it)
  if #d.name > 200 or d.name:find("%c") or util.utf8_clean(d.name) ~= d.name then
    return nil, ("app %s: a name has at most 200 bytes, no control character and is UTF-8")
      :format(util.encode_text(d.name:sub(1, 60)))
  end

  -- filter_env (PM2's): true leaves the caller's environment out, a prefix
  -- or a list of them the variables that start with one. An app with
  -- user/uid (another user than the daemon's) starts from that user's login
  -- environment (launch.lua) and gets the caller's only when it asks: with
  -- filter_env = false (all of it) or a list (all but those); never its
  -- HOME, USER, LOGNAME or SHELL.
  local fe = d.filter_env
  if fe ~= nil and type(fe) ~= "boolean" and type(fe) ~= "string" then
    local ok = type(fe) == "table"
    for _, e in ipairs(ok and fe or {}) do ok = ok and type(e) == "string" end
    if not ok then
      return nil, ("app '%s': filter_env must be true, a prefix or a list of prefixes"):format(d.name)
    end
  end
  for _, k in ipairs({ "args", "interpreter_args" }) do
    if type(d[k]) == "string" then
      local list, err = M.split_args(d[k])
      if not list then return nil, ("app '%s': %s: %s"):format(d.name, k, err) end
      d[k] = list
    end
  end
  d.args = d.args or {}
  for i, a in ipairs(d.args) do d.args[i] = tostring(a) end
  if command then
    -- the app's own arguments follow the command line's words ("$@")
    local words = { "-c", command }
    if #d.args > 0 then
      words = { "-c", command .. ' "$@"', d.name }
      for _, w in ipairs(d.args) do words[#words + 1] = w end
    end
    d.args = words
  end
  -- (PM2: a restart's --node-args=null deletes them: ctx.unset, none shown)
  if not (ctx.unset and ctx.unset.interpreter_args) then d.interpreter_args = d.interpreter_args or {} end
  for i, a in ipairs(d.interpreter_args or {}) do d.interpreter_args[i] = tostring(a) end
  if type(d.stop_exit_codes) ~= "table" then d.stop_exit_codes = { d.stop_exit_codes } end
  for i, c in ipairs(d.stop_exit_codes) do
    local n = tonumber(c)
    if not n then return nil, ("app '%s': stop_exit_codes must be numbers"):format(d.name) end
    d.stop_exit_codes[i] = n
  end
  local inst = d.instances
  if inst == "max" or inst == 0 or inst == "0" then
    inst = cpu_count()
  elseif tonumber(inst) and finite(tonumber(inst)) and tonumber(inst) % 1 == 0 then
    inst = tonumber(inst)
    if inst < 0 then inst = math.max(1, cpu_count() + inst) end
  else
    return nil, ("app '%s': instances must be a whole number or \"max\""):format(d.name)
  end
  d.instances = math.floor(inst)
  if d.instances > 4096 then
    return nil, ("app '%s': instances: at most 4096"):format(d.name)
  end

  if d.interpreter == nil then
    local ext = d.script:match("%.([%w]+)$")
    if ext == "lua" then
      d.interpreter = "pm"
    else
      d.interpreter = interpreters[ext or ""] or "none"
    end
  end
  if d.interpreter ~= "none" and d.interpreter ~= "pm" and not d.interpreter:find("/") then
    local found = find_in_path(d.interpreter, search_path(d, environ))
    if not found then
      return nil, ("app '%s': interpreter not found: %s"):format(d.name, d.interpreter)
    end
    d.interpreter = found
  end
  -- PM2's rule: a Node app given a number of instances (any, "max" or 1
  -- too) and no exec_mode runs in cluster mode
  if d.exec_mode == nil then
    d.exec_mode = (instances_given and M.is_node(d.interpreter)) and "cluster_mode" or "fork_mode"
  end
  d.exec_mode = d.exec_mode:gsub("_mode$", "") .. "_mode"

  -- (PM2's `--cron-restart 0`: no cron restart)
  if d.cron_restart == "0" or d.cron_restart == 0 then d.cron_restart = nil end
  if d.cron_restart then
    local cron = require("pm.cron")
    local spec, err = cron.parse(d.cron_restart)
    if not spec then return nil, ("app '%s': %s"):format(d.name, err) end
    if not cron.fires(spec) then
      return nil, ("app '%s': cron_restart '%s' never fires (none of its months has that day)")
        :format(d.name, d.cron_restart)
    end
  end
  if d.log_rotate then
    local cron = require("pm.cron")
    local expr = M.rotate_cron(d.log_rotate)
    local spec, err = cron.parse(expr)
    if not spec then
      return nil, ("app '%s': log_rotate: %s (\"daily\", \"hourly\" or a cron expression)"):format(d.name, err)
    end
    if not cron.fires(spec) then
      return nil, ("app '%s': log_rotate '%s' never fires"):format(d.name, d.log_rotate)
    end
  end
  -- (PM2's log_file = true: logs/<name>.log; false: none)
  if d.log_file == false then d.log_file = nil end
  if d.log_file ~= nil and d.log_file ~= true and type(d.log_file) ~= "string" then
    return nil, ("app '%s': log_file must be a path, or true (logs/<name>.log)"):format(d.name)
  end
  if d.watch ~= nil and type(d.watch) ~= "boolean" and type(d.watch) ~= "string" and type(d.watch) ~= "table" then
    return nil, ("app '%s': watch must be a boolean, a path or a list of paths"):format(d.name)
  end
  if type(d.watch) == "string" and (d.watch == "true" or d.watch == "false") then d.watch = d.watch == "true" end
  if d.listen ~= nil then
    if type(d.listen) == "string" then d.listen = { d.listen } end
    for _, spec in ipairs(d.listen) do
      local ok, err = require("pm.sockets").parse(spec)
      if not ok then return nil, ("app '%s': %s"):format(d.name, err) end
    end
    if #d.listen > M.MAX_LISTEN then
      return nil, ("app '%s': at most %d listen sockets, not %d"):format(d.name, M.MAX_LISTEN, #d.listen)
    end
  end
  if d.learned_listen ~= nil then
    if type(d.learned_listen) == "string" then d.learned_listen = { d.learned_listen } end
    for _, spec in ipairs(d.learned_listen) do
      local a, err = require("pm.sockets").parse(spec)
      if a and a.kind ~= "tcp" then err = "learned_listen holds TCP addresses only, not " .. spec end
      if not a or err then return nil, ("app '%s': %s"):format(d.name, err) end
    end
    if #d.learned_listen == 0 then d.learned_listen = nil end
  end
  if d.health ~= nil then
    local ok, err = require("pm.health").check_spec(d.health)
    if not ok then return nil, ("app '%s': %s"):format(d.name, err) end
  end
  if d.depends_on ~= nil then
    if type(d.depends_on) == "string" then d.depends_on = { d.depends_on } end
    for _, n in ipairs(d.depends_on) do
      if type(n) ~= "string" then return nil, ("app '%s': depends_on must list app names"):format(d.name) end
    end
  end
  if d.user or d.uid or d.gid then
    local ok, err = M.resolve_ids(d)
    if not ok then return nil, ("app '%s': %s"):format(d.name, err) end
  end
  if d.port == false or d.port == util.null then d.port = nil end
  if d.port ~= nil then
    local n = (type(d.port) == "number" or type(d.port) == "string") and tonumber(d.port)
    if not n or n % 1 ~= 0 or n < 1 or n > 65535 then
      return nil, ("app '%s': port must be a whole number from 1 to 65535, not %s")
        :format(d.name, type(d.port) == "table" and "a table" or tostring(d.port):sub(1, 40))
    end
    d.port = n
  end
  if d.log_date_format then
    local width = M.date_width(d.log_date_format)
    if width > M.MAX_DATE_WIDTH then
      return nil, ("app '%s': log_date_format gives %d characters: at most %d")
        :format(d.name, width, M.MAX_DATE_WIDTH)
    end
  end
  if d.kill_mode ~= nil and d.kill_mode ~= "tree" and d.kill_mode ~= "group" and d.kill_mode ~= "process" then
    return nil, ("app '%s': kill_mode must be tree, group or process"):format(d.name)
  end
  if not util.signum(d.kill_signal) then
    return nil, ("app '%s': unknown kill_signal %s"):format(d.name, d.kill_signal)
  end

  -- env, then env_<name> over it (PM2's precedence)
  local env = util.shallow_copy(d.env or {})
  local nums = util.shallow_copy(numbers.saved or {})
  for k in pairs(numbers.env or {}) do nums[k] = true end
  if ctx.env_name then
    local over = d["env_" .. ctx.env_name]
    local over_nums = numbers["env_" .. ctx.env_name] or {}
    for k, v in pairs(over or {}) do env[k] = v; nums[k] = over_nums[k] end
  end
  -- a key set to false (null in JSON) removes the variable, the caller's too
  local remove = {}
  for _, name in ipairs(numbers.removed or {}) do
    if env[name] == nil then env[name] = false end
  end
  for k, v in pairs(env) do
    if v == util.null or v == false then
      env[k] = nil
      remove[#remove + 1] = k
    else
      env[k] = tostring(v)
    end
  end
  table.sort(remove)
  d.env_remove = #remove > 0 and remove or nil
  -- the variables given a number (and kept): shown as numbers
  local numeric = {}
  for k in pairs(nums) do
    if env[k] ~= nil then numeric[#numeric + 1] = k end
  end
  table.sort(numeric)
  d.numeric_env = #numeric > 0 and numeric or nil
  if d.port then env.PORT = ("%d"):format(d.port) end
  d.env = env
  -- (the empty ones shared: with 10,000 apps each empty table is 0.8 MB)
  for _, k in ipairs(SHAREABLE) do
    local v = d[k]
    if type(v) == "table" and next(v) == nil and getmetatable(v) == nil then d[k] = M.NONE end
  end
  -- (a Node app in cluster mode shares the ports it listens on through
  -- sockets the daemon holds: declared, or learned at its first listen())
  -- the members that differ from their defaults, in a new table (a
  -- table's part for names never shrinks when members are cleared)
  local out = {}
  for k, v in next, d do
    if DEFAULTS[k] ~= v then out[k] = v end
  end
  if instances_given then M.instances_given[out] = true end
  return setmetatable(out, DECL)
end

-- Every member of d (its own and the defaults it does not hold), as
-- pairs() gives a table's: for k, v in app.members(d) do ... end
function M.members(d)
  if getmetatable(d) ~= DECL.__metatable then return next, d end -- (a table normalize did not make)
  local own = true
  local k
  return function()
    local v
    if own then
      k, v = next(d, k)
      if k ~= nil then return k, v end
      own = false
    end
    repeat
      k, v = next(DEFAULTS, k)
    until k == nil or rawget(d, k) == nil
    return k, v
  end
end

-- A copy of d that may be changed (a declaration itself never is): its
-- own members, the defaults through the same metatable
function M.copy(d)
  local c = {}
  for k, v in next, d do c[k] = v end
  return setmetatable(c, DECL)
end

-- The variables of an environment shown as numbers, as PM2 shows them
-- (it keeps a number of env a number, and increment_var's sum): those d
-- gave a number and d's increment_var, when their text is a number's
-- own. vars: name -> text, changed in place.
function M.show_numbers(d, vars)
  local list = d.numeric_env
  if not list and not d.increment_var then return end
  local function show(k)
    local v = vars[k]
    local n = type(v) == "string" and tonumber(v)
    if n and n == n and math.abs(n) < 2 ^ 53 and util.json_number(n) == v then vars[k] = n end
  end
  for _, k in ipairs(list or {}) do show(k) end
  if d.increment_var then show(d.increment_var) end
end

-- ---- a declaration as JSON ----
-- Its members that descriptions show: all but the hooks, the app's own
-- environment and force. Encoded once per declaration (until scale
-- changes its instances, or its app learns a port), for the journal and
-- for every description.
M.PRIVATE = { on_exit = true, on_start = true, on_stop = true, force = true,
  env = true, env_remove = true, numeric_env = true }
-- decl -> { own, instances, learned, shared, own view, shared view } (an array)
local members_cache = setmetatable({}, { __mode = "k" })
local LISTS = { watch = true } -- attributes whose table is a list: [] when empty
for k, s in pairs(schema) do if s[1] == "list" then LISTS[k] = true end end
-- The members that differ from app to app (its name, what it runs, its
-- files): encoded apart from the others, which most declarations share
local OWN = { name = true, script = true, args = true, cwd = true, node_args = true, out_file = true,
  error_file = true, log_file = true, pid_file = true }

--[[ -> the JSON members of d (an object's text without its braces), as two
texts: own (OWN's) and shared (the others); drop: names left out (not
cached then). The declarations of one file or of one command mostly differ
only in OWN's members: their shared texts are then one string (Lua's
strings are interned), not one copy each (10,000 apps: 5 MB less). ]]
function M.members_json(d, drop)
  local c = not drop and members_cache[d]
  if c and c[2] == d.instances and c[3] == (d.learned_listen or false) then return c[1], c[4] end
  local own, shared = {}, {}
  for k, v in M.members(d) do
    if not M.PRIVATE[k] and type(v) ~= "function" and not (drop and drop[k]) then
      (OWN[k] and own or shared)[k] = (LISTS[k] and type(v) == "table") and util.array(v) or v
    end
  end
  own.args = util.array(d.args)
  shared.interpreter_args = d.interpreter_args and util.array(d.interpreter_args)
  shared.stop_exit_codes = util.array(d.stop_exit_codes)
  local o, sh = util.encode(own):sub(2, -2), util.encode(shared):sub(2, -2)
  if not drop then members_cache[d] = { o, d.instances, d.learned_listen or false, sh, false, false } end
  return o, sh
end

-- members_json's texts for a description (valid UTF-8; the journal keeps
-- the bytes), kept beside them: a list asks for them for every app
-- (in members_json's entry: [5] and [6], the same strings when valid)
function M.members_view(d, drop)
  local o, sh = M.members_json(d, drop)
  local c = not drop and members_cache[d]
  if c and c[5] then return c[5], c[6] end
  local ov, shv = util.utf8_clean(o), util.utf8_clean(sh)
  if c then c[5], c[6] = ov, shv end
  return ov, shv
end

-- members_json's two texts as one
function M.members_text(d, drop)
  local o, sh = M.members_json(d, drop)
  return (o ~= "" and sh ~= "") and (o .. "," .. sh) or (o .. sh)
end

return M
