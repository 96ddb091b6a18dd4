--[[ JSON text in Node's util.inspect notation (what PM2's `pm2 prettylist`
prints): `{ name: 'api', restart_time: 0 }`, keys bare when they are
identifiers, strings single-quoted (double or back quotes when that spares
an escape), an object or array on one line when it fits 80 columns and
holds at most two levels below it, arrays of more than six short entries in
columns, at most 100 entries of an array and 10,000 characters of a string
shown. Key order is the text's (the JSON is read here, not by cjson, which
forgets it). Pure: text in, text out.

M.prettylist(text) also gives each process of a description list PM2's
shape (DESIGN §5): pm's own members of pm2_env (its event history, the
readiness it saw, ...) move under one `pm` key of the process, and the
event history is left out (`pm describe` and `pm jlist` show it), as are
`script` and `cwd` when pm_exec_path and pm_cwd say the same, and
interpreter_args is PM2's node_args: a script
that counts `online` or its script's path in PM2's prettylist counts one
per process here too. ]]
local M = {}

local BREAK, COMPACT, MAX_ARRAY, MAX_STRING = 80, 3, 100, 10000
M.MAX_ARRAY = MAX_ARRAY

-- ---- reading JSON with its key order ----
-- object: { keys = {...}, vals = {...} }; array: { arr = true, ... };
-- string: a Lua string; number: { num = text }; true, false; null: M.null

M.null = setmetatable({}, { __tostring = function() return "null" end })

local ESC = { ['"'] = '"', ["\\"] = "\\", ["/"] = "/", b = "\b", f = "\f", n = "\n", r = "\r", t = "\t" }

local function utf8_char(c)
  if c < 0x80 then return string.char(c) end
  if c < 0x800 then return string.char(0xC0 + math.floor(c / 64), 0x80 + c % 64) end
  if c < 0x10000 then
    return string.char(0xE0 + math.floor(c / 4096), 0x80 + math.floor(c / 64) % 64, 0x80 + c % 64)
  end
  return string.char(0xF0 + math.floor(c / 262144), 0x80 + math.floor(c / 4096) % 64,
    0x80 + math.floor(c / 64) % 64, 0x80 + c % 64)
end

local function fail(s, i, what) error(("bad JSON at byte %d: %s"):format(i, what or s:sub(i, i + 10)), 0) end

local read_value

local function read_string(s, i) -- s:sub(i, i) == '"'
  local out, j = {}, i + 1
  while true do
    local k = s:find('["\\]', j)
    if not k then fail(s, i, "unterminated string") end
    out[#out + 1] = s:sub(j, k - 1)
    if s:sub(k, k) == '"' then return table.concat(out), k + 1 end
    local e = s:sub(k + 1, k + 1)
    if e == "u" then
      local c = tonumber(s:sub(k + 2, k + 5), 16)
      if not c then fail(s, k) end
      j = k + 6
      if c >= 0xD800 and c < 0xDC00 and s:sub(j, j + 1) == "\\u" then
        local lo = tonumber(s:sub(j + 2, j + 5), 16)
        if lo and lo >= 0xDC00 and lo < 0xE000 then
          c = 0x10000 + (c - 0xD800) * 1024 + (lo - 0xDC00)
          j = j + 6
        end
      end
      out[#out + 1] = utf8_char(c)
    elseif ESC[e] then
      out[#out + 1] = ESC[e]
      j = k + 2
    else
      fail(s, k)
    end
  end
end

local function skip(s, i) return s:find("[^ \t\r\n]", i) or #s + 1 end

function read_value(s, i)
  i = skip(s, i)
  local c = s:sub(i, i)
  if c == "{" then
    local o = { keys = {}, vals = {} }
    i = skip(s, i + 1)
    if s:sub(i, i) == "}" then return o, i + 1 end
    while true do
      if s:sub(i, i) ~= '"' then fail(s, i) end
      local k, v
      k, i = read_string(s, i)
      i = skip(s, i)
      if s:sub(i, i) ~= ":" then fail(s, i) end
      v, i = read_value(s, i + 1)
      o.keys[#o.keys + 1], o.vals[#o.vals + 1] = k, v
      i = skip(s, i)
      c = s:sub(i, i)
      if c == "}" then return o, i + 1 end
      if c ~= "," then fail(s, i) end
      i = skip(s, i + 1)
    end
  elseif c == "[" then
    local a = { arr = true }
    i = skip(s, i + 1)
    if s:sub(i, i) == "]" then return a, i + 1 end
    while true do
      a[#a + 1], i = read_value(s, i)
      i = skip(s, i)
      c = s:sub(i, i)
      if c == "]" then return a, i + 1 end
      if c ~= "," then fail(s, i) end
      i = i + 1
    end
  elseif c == '"' then
    return read_string(s, i)
  elseif s:sub(i, i + 3) == "true" then return true, i + 4
  elseif s:sub(i, i + 4) == "false" then return false, i + 5
  elseif s:sub(i, i + 3) == "null" then return M.null, i + 4
  end
  local num = s:match("^-?%d+%.?%d*[eE]?[-+]?%d*", i)
  if not num or num == "" or num == "-" then fail(s, i) end
  return { num = num }, i + #num
end

-- text -> the value | nil, error
function M.decode(text)
  local ok, v, i = pcall(read_value, text, 1)
  if not ok then return nil, v end
  if skip(text, i) <= #text then return nil, ("bad JSON at byte %d: text after the value"):format(i) end
  return v
end

-- ---- writing util.inspect's notation ----

-- A number as JavaScript writes it.
local function js_number(text)
  local v = tonumber(text)
  if not v then return text end
  if v ~= v then return "NaN" end
  if v == math.floor(v) and math.abs(v) < 1e21 then
    if v == 0 and text:sub(1, 1) == "-" then return "-0" end
    return ("%.0f"):format(v)
  end
  local s
  for p = 1, 17 do
    s = ("%." .. p .. "g"):format(v)
    if tonumber(s) == v then break end
  end
  -- 1e-07 -> 1e-7, 1e+21 stays
  return (s:gsub("e([-+])0*(%d)", "e%1%2"))
end

-- Control characters, the quote and the backslash escaped as Node does;
-- C1 controls (U+0080..U+009F) as \x80..\x9F.
local META = { ["\b"] = "\\b", ["\t"] = "\\t", ["\n"] = "\\n", ["\11"] = "\\x0B", ["\f"] = "\\f",
  ["\r"] = "\\r", ["\\"] = "\\\\", ["\127"] = "\\x7F" }
local function meta(c)
  return META[c] or ("\\x%02X"):format(c:byte())
end

local function quote(str)
  local q = "'"
  if str:find("'", 1, true) then
    if not str:find('"', 1, true) then q = '"'
    elseif not str:find("`", 1, true) and not str:find("${", 1, true) then q = "`" end
  end
  local s = str:gsub("[%z\1-\31\\\127]", meta)
  s = s:gsub("\194([\128-\159])", function(c) return ("\\x%02X"):format(c:byte()) end)
  if q == "'" then s = s:gsub("'", "\\'") end
  return q .. s .. q
end

local function string_of(str)
  if #str <= MAX_STRING then return quote(str) end
  local rest = #str - MAX_STRING
  return quote(str:sub(1, MAX_STRING)) .. ("... %d more character%s"):format(rest, rest > 1 and "s" or "")
end

local function key_of(k)
  if k:match("^[%a_][%w_]*$") then return k end
  return quote(k)
end

-- Node's groupArrayElements: more than six short entries in columns.
local function group(out, indent, numbers)
  local total, maxlen, lens = 0, 0, {}
  local n = #out
  if out.more then n = n - 1 end
  for i = 1, n do
    local len = #out[i]
    lens[i] = len
    total = total + len + 2
    if len > maxlen then maxlen = len end
  end
  local actual = maxlen + 2
  if not (actual * 3 + indent < BREAK and (total / actual > 5 or maxlen <= 6)) then return out end
  local bias = math.sqrt(actual - total / #out)
  local biased = math.max(actual - 3 - bias, 1)
  local columns = math.min(math.floor(math.sqrt(2.5 * biased * n) / biased + 0.5),
    math.floor((BREAK - indent) / actual), COMPACT * 4, 15)
  if columns <= 1 then return out end
  local widths = {}
  for c = 1, columns do
    local w = 0
    for j = c, #out, columns do
      if (lens[j] or 0) > w then w = lens[j] end
    end
    widths[c] = w + 2
  end
  local rows = {}
  for i = 1, n, columns do
    local last = math.min(i + columns - 1, n)
    local line = {}
    for j = i, last do
      local w = widths[j - i + 1]
      local cell = j < last and (out[j] .. ", ") or out[j]
      if j == last and numbers then w = w - 2 end
      local pad = (" "):rep(math.max(w - #cell, 0))
      if numbers then line[#line + 1] = pad .. cell
      elseif j < last then line[#line + 1] = cell .. pad
      else line[#line + 1] = cell end
    end
    rows[#rows + 1] = table.concat(line)
  end
  if out.more then rows[#rows + 1] = out[#out] end
  return rows
end

local function below_break(out, start)
  local total = #out + start
  if total + #out > BREAK then return false end
  for _, e in ipairs(out) do
    total = total + #e
    if total > BREAK then return false end
  end
  return true
end

local function format(ctx, v, depth)
  local t = type(v)
  if t == "string" then return string_of(v) end
  if t == "boolean" then return tostring(v) end
  if v == M.null then return "null" end
  if v.num then return js_number(v.num) end
  local out, open, close
  if v.arr then
    if #v == 0 then return "[]" end
    open, close = "[", "]"
  else
    if #v.keys == 0 then return "{}" end
    open, close = "{", "}"
  end
  depth = depth + 1
  ctx.current = depth
  out = {}
  ctx.indent = ctx.indent + 2
  if v.arr then
    for i = 1, math.min(#v, MAX_ARRAY) do out[i] = format(ctx, v[i], depth) end
    local n = math.max(#v, v.total or 0)
    if n > MAX_ARRAY then
      local rest = n - math.min(#v, MAX_ARRAY)
      out[#out + 1] = ("... %d more item%s"):format(rest, rest > 1 and "s" or "")
      out.more = true
    end
  else
    for i, k in ipairs(v.keys) do out[i] = key_of(k) .. ": " .. format(ctx, v.vals[i], depth) end
  end
  ctx.indent = ctx.indent - 2
  local entries = #out
  if v.arr and entries > 6 then
    local multiline, numbers = false, true
    for i = 1, math.min(#v, MAX_ARRAY) do
      if out[i]:find("\n", 1, true) then multiline = true end
      if type(v[i]) ~= "table" or not v[i].num then numbers = false end
    end
    if not multiline then out = group(out, ctx.indent, numbers) end
  end
  if ctx.current - depth < COMPACT and entries == #out then
    if below_break(out, #out + ctx.indent + 1 + 10) then
      local joined = table.concat(out, ", ")
      if not joined:find("\n", 1, true) then return open .. " " .. joined .. " " .. close end
    end
  end
  local nl = "\n" .. (" "):rep(ctx.indent)
  return open .. nl .. "  " .. table.concat(out, "," .. nl .. "  ") .. nl .. close
end

-- A value read by M.decode -> util.inspect's text of it
function M.format(v)
  return format({ indent = 0, current = 0 }, v, 0)
end

-- JSON text -> util.inspect's text | nil, error
function M.inspect(text)
  local v, err = M.decode(text)
  if v == nil then return nil, err end
  return M.format(v)
end

-- pm2_env's members that are pm's own (DESIGN §5: PM2's fields stay where
-- they are, pm's extensions move); `events` is left out altogether.
M.EXTENSIONS = { events = "drop", changes = true, notify = true, ready = true, last_hook_error = true, log_error = true,
  exit_signal = true, error = true, origin = true }

-- pm's names of pm2_env's members that PM2 names otherwise
M.PM2_NAMES = { interpreter_args = "node_args" }

local function get(o, key)
  for i, k in ipairs(o.keys) do
    if k == key then return o.vals[i], i end
  end
end

-- One description given PM2's shape: pm's members of pm2_env under `pm`.
function M.pm2_shape(d)
  if type(d) ~= "table" or d.arr or not d.keys then return d end
  local env = get(d, "pm2_env")
  if type(env) ~= "table" or env.arr or not env.keys then return d end
  local ext = { keys = {}, vals = {} }
  local keys, vals = {}, {}
  -- script and cwd: PM2 shows them as pm_exec_path and pm_cwd only (a grep
  -- for the script's path finds it once)
  local same = { script = get(env, "pm_exec_path"), cwd = get(env, "pm_cwd") }
  -- the instance number under instance_var's name, as PM2 shows it (the
  -- variable's text among the flattened environment gives way)
  local var = get(env, "instance_var")
  local names = M.PM2_NAMES
  if type(var) == "string" and var ~= "NODE_APP_INSTANCE" and var:match("^[%a_][%w_]*$") then
    names = setmetatable({ NODE_APP_INSTANCE = var }, { __index = M.PM2_NAMES })
    same[var] = get(env, var)
  end
  for i, k in ipairs(env.keys) do
    local how = M.EXTENSIONS[k]
    if same[k] ~= nil and same[k] == env.vals[i] then
      how = "drop"
    end
    if not how then
      keys[#keys + 1], vals[#vals + 1] = names[k] or k, env.vals[i]
    elseif how ~= "drop" then
      ext.keys[#ext.keys + 1], ext.vals[#ext.vals + 1] = k, env.vals[i]
    end
  end
  env.keys, env.vals = keys, vals
  if #ext.keys > 0 then
    d.keys[#d.keys + 1], d.vals[#d.vals + 1] = "pm", ext
  end
  return d
end

-- A description list's JSON text -> PM2's prettylist text | nil, error
-- (total: how many processes there are when text holds the first ones)
function M.prettylist(text, total)
  local list, err = M.decode(text)
  if list == nil then return nil, err end
  if type(list) == "table" and list.arr then
    for i = 1, #list do list[i] = M.pm2_shape(list[i]) end
    list.total = total
  end
  return M.format(list)
end

return M
