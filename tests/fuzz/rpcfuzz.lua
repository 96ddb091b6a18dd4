-- A seeded generator of JSON-RPC frames for the daemon's control socket,
-- and a driver that sends them over many connections and counts replies.
--
-- Frames: valid requests, valid ones with wrong types, notifications,
-- envelope errors (bad id, non-string method, arrays, scalars), malformed
-- JSON (truncated, flipped, spliced), binary junk, deep nesting, blank
-- lines, huge lines (over rpc.MAX_LINE), medium lines, frames replayed
-- and mutated from tests/fuzz/corpus/rpc/*.jsonl, and real operations on
-- the apps of the fuzzed daemon (restart, stop, scale, signals).
--
-- What a frame must get back follows JSON-RPC 2.0 and pm's wire contract
-- (README "Talking to the daemon", lua/pm/rpc.lua):
--   * a line of blanks: nothing;
--   * unparseable, or not an object, or an id that is not a string, a
--     number or null: one error with id null;
--   * a method that is not a string: one error, with the id if it had one;
--   * an id (string or number) and a string method: exactly one reply with
--     that id, a result or an error;
--   * id null: one reply with id null; no id: nothing (a notification);
--   * a line over 1 MiB + 128 KiB: one -32600 error with id null.
-- The parse is the daemon's own decoder (pm.util.decode: cjson with its
-- depth limit), so "parseable" means the same on both sides.
--
-- Usage: local F = dofile(".../tests/fuzz/rpcfuzz.lua") (tests/helpers on
--        package.path, as the specs and the soak scripts have it)
--        local stats = F.run({ sock = path, frames = 20000, seed = 1, daemon_pid = pid, ... })
local core = require "pm.core"
local util = require "pm.util"
local bit = require "bit"
local H = require "pmtest" -- (H.run_until)

local F = {}

F.MAX_LINE = 1024 * 1024
F.HUGE_MIN = F.MAX_LINE + 128 * 1024 + 1 -- always cut by the framing, whatever the reads

-- ---- a small PRNG of our own (xorshift32): the same frames for a seed on
-- ---- every LuaJIT, whatever else uses math.random

local function rng(seed)
  local s = bit.tobit(seed)
  if s == 0 then s = 0x2545F491 end
  local r = {}
  local function next32()
    s = bit.bxor(s, bit.lshift(s, 13))
    s = bit.bxor(s, bit.rshift(s, 17))
    s = bit.bxor(s, bit.lshift(s, 5))
    return s % 4294967296
  end
  -- 1..n (or a..b)
  function r.int(a, b)
    if not b then a, b = 1, a end
    return a + next32() % (b - a + 1)
  end
  function r.chance(p) return next32() / 4294967296 < p end
  function r.pick(t) return t[r.int(#t)] end
  -- a key of a weights table { name = weight, ... } (ordered list of pairs)
  function r.weighted(list)
    local total = 0
    for _, e in ipairs(list) do total = total + e[2] end
    local x = next32() / 4294967296 * total
    for _, e in ipairs(list) do
      x = x - e[2]
      if x < 0 then return e[1] end
    end
    return list[#list][1]
  end
  return r
end
F.rng = rng

-- ---- JSON text, written by hand so that it can be odd ----

local NULL = util.null
local ARRAY = setmetatable({}, { __mode = "k" }) -- tables to write as arrays

local function arr(t)
  ARRAY[t] = true
  return t
end

local function esc_string(r, s)
  local out = { '"' }
  for i = 1, #s do
    local c = s:byte(i)
    if c == 34 then out[#out + 1] = '\\"'
    elseif c == 92 then out[#out + 1] = "\\\\"
    elseif c < 32 then out[#out + 1] = ("\\u%04x"):format(c)
    elseif c < 127 and r.chance(0.03) then out[#out + 1] = ("\\u%04X"):format(c) -- a gratuitous escape
    else out[#out + 1] = string.char(c) end
  end
  out[#out + 1] = '"'
  return table.concat(out)
end

local function ws(r)
  if r.chance(0.9) then return "" end
  return r.pick({ " ", "  ", "\t", " \r ", "\r" })
end

local function enc(r, v)
  local t = type(v)
  if v == NULL then return "null" end
  if t == "boolean" then return tostring(v) end
  if t == "number" then
    if v ~= v then return "NaN" end
    if v == math.huge then return "1e999" end
    if v == -math.huge then return "-1e999" end
    if v == math.floor(v) and math.abs(v) < 2 ^ 53 then return ("%d"):format(v) end
    return ("%.17g"):format(v)
  end
  if t == "string" then return esc_string(r, v) end
  if t == "table" then
    local parts = {}
    if ARRAY[v] or (v[1] ~= nil) then
      for i = 1, #v do parts[i] = ws(r) .. enc(r, v[i]) .. ws(r) end
      return "[" .. table.concat(parts, ",") .. "]"
    end
    local keys = {}
    for k in pairs(v) do keys[#keys + 1] = tostring(k) end
    table.sort(keys)
    -- shuffle a little: key order must not matter
    for i = #keys, 2, -1 do
      if r.chance(0.3) then
        local j = r.int(i)
        keys[i], keys[j] = keys[j], keys[i]
      end
    end
    for i, k in ipairs(keys) do
      parts[i] = ws(r) .. esc_string(r, k) .. ws(r) .. ":" .. ws(r) .. enc(r, v[k]) .. ws(r)
    end
    return "{" .. table.concat(parts, ",") .. "}"
  end
  return "null"
end
F.encode = enc

-- ---- random values ----

local STRINGS = { "", "a", "all", "fz0", "fz1", "fz2", "0", "1", "-1", "1e3", "x", "default",
  "SIGUSR1", "SIGTERM", "SIGSTOP", "SIGCONT", "SIGHUP", "SIGKILL", "SIGNOPE", "USR2", "15",
  "/nonexistent-rel/x.sh", "/nonexistent-rel/ecosystem.config.js", "rel-no-such-cmd",
  "../../../../etc/passwd", "/dev/null", "NULL", "__index", "__gc", "toString", "constructor",
  "%s%s%s%n", "%", "\0", "a\0b", "\xff\xfe", "\xc3\x28", "\xed\xa0\x80", "é", "日本", "😀",
  "line\nbreak", "tab\there", "\\", "\"", "{}", "[]", "null", "true", "*", "process:*", "log:*",
  "+1", "-1", "2", "3", "max", "0x10", "1e309", "NaN", "Infinity" }

local function rstring(r)
  if r.chance(0.6) then return r.pick(STRINGS) end
  local n = r.int(0, r.chance(0.1) and 300 or 16)
  local t = {}
  for i = 1, n do
    local k = r.int(10)
    if k <= 6 then t[i] = string.char(r.int(32, 126))
    elseif k <= 8 then t[i] = string.char(r.int(0, 31))
    else t[i] = string.char(r.int(128, 255)) end
  end
  return table.concat(t)
end

local NUMBERS = { 0, 1, 2, 3, -1, -0.0, 0.5, 1e308, -1e308, 2 ^ 53, 2 ^ 63, 1e-300, 4294967296,
  99, 999999, 1.5, -2147483649 }

local function rvalue(r, depth)
  depth = depth or 0
  local k = r.int(depth > 3 and 6 or 9)
  if k == 1 then return NULL
  elseif k == 2 then return r.chance(0.5)
  elseif k == 3 then return r.pick(NUMBERS)
  elseif k == 4 then return r.int(-5, 100)
  elseif k <= 6 then return rstring(r)
  elseif k == 7 then
    local t = arr({})
    for i = 1, r.int(0, 4) do t[i] = rvalue(r, depth + 1) end
    return t
  else
    local t = {}
    for _ = 1, r.int(0, 4) do t[rstring(r)] = rvalue(r, depth + 1) end
    return t
  end
end
F.rvalue = rvalue

-- ---- methods and their parameters ----

-- (kill and killDaemon are never sent: they end the daemon under test)
local TARGETS = { "fz0", "fz1", "fz2", "all", "default", 0, 1, 2, 3, 99, -1, "no-such-app", "nsfz" }
local SIGNALS = { "SIGUSR1", "SIGUSR2", "SIGHUP", "SIGTERM", "SIGINT", "SIGKILL", "SIGSTOP", "SIGCONT",
  "USR1", 10, 15, 0, -1, 65, 99999, "SIGNOPE", "" }

local function target(r)
  if r.chance(0.8) then return r.pick(TARGETS) end
  return rvalue(r)
end

local function app_decl(r)
  local a = {}
  -- a script that never exists, or a value of the wrong type: no process
  -- can come out of a fuzzed start
  a.script = r.pick({ "/nonexistent-rel/app.sh", "rel-no-such-cmd", "nonexistent-rel/../x.py", "", 7,
    NULL, arr({}), {}, true })
  if r.chance(0.7) then a.name = r.chance(0.5) and ("fzx" .. r.int(9)) or rvalue(r) end
  for _ = 1, r.int(0, 4) do
    a[r.pick({ "instances", "cwd", "args", "env", "interpreter", "max_restarts", "min_uptime",
      "restart_delay", "kill_timeout", "max_memory_restart", "cron_restart", "watch", "out_file",
      "error_file", "user", "uid", "gid", "listen", "health", "depends_on", "on_exit", "namespace",
      "exec_mode", "node_args", "log_date_format", "max_log_size", "filter_env", "unknown_attr" })] = rvalue(r)
  end
  if type(a.instances) == "number" and a.instances > 4 then a.instances = 4 end
  return a
end

local PARAMS = {
  ping = function() return {} end,
  list = function() return {} end,
  describe = function(r) return { target = target(r) } end,
  reset = function(r) return { target = target(r) } end,
  flush = function(r) return r.chance(0.5) and {} or { target = target(r) } end,
  reloadLogs = function() return {} end,
  subscribe = function(r)
    return { events = r.pick({ "*", "process:event", "log:*", arr({ "process:*", "x" }), 5, arr({ 1, 2 }) }) }
  end,
  unsubscribe = function(r) return r.chance(0.5) and {} or { events = r.pick({ "*", arr({ "log:*" }), 7 }) } end,
  save = function(r) return { force = r.chance(0.5) } end,
  stop = function(r) return { target = target(r) } end,
  restart = function(r)
    local p = { target = target(r) }
    if r.chance(0.2) then p.updateEnv = true; p.environ = { PATH = "/usr/bin:/bin", FUZZ = rstring(r) } end
    return p
  end,
  reload = function(r) return { target = target(r) } end,
  delete = function(r) return { target = r.pick({ "fz2", "no-such-app", 2, 77, rvalue(r) }) } end,
  start = function(r)
    local k = r.int(4)
    if k == 1 then return { app = app_decl(r), cwd = r.pick({ "/nonexistent-rel", "/", 5, NULL }) } end
    if k == 2 then return { path = r.pick({ "/nonexistent-rel/ecosystem.config.js", "nope.json", 3, arr({}) }) } end
    if k == 3 then return { target = target(r) } end
    return {}
  end,
  scale = function(r)
    return { name = r.pick({ "fz0", "fz1", "no-such-app", 4, NULL }),
      instances = r.pick({ 1, 2, 3, "2", "1", "-1", 0, -3, "x", 1.5, NULL, arr({}), "+0" }) }
  end,
  sendSignalToProcessName = function(r) return { signal = r.pick(SIGNALS), target = target(r) } end,
  sendSignalToProcessId = function(r) return { signal = r.pick(SIGNALS), target = target(r) } end,
  sendDataToProcessId = function(r)
    return { id = target(r), packet = r.chance(0.7) and { type = "process:msg", data = rvalue(r),
      topic = r.chance(0.5) or rstring(r), id = target(r) } or rvalue(r) }
  end,
  resurrect = function() return {} end,
}
local METHODS = {}
for m in pairs(PARAMS) do METHODS[#METHODS + 1] = m end
table.sort(METHODS)
local UNKNOWN = { "noSuchMethod", "", "__index", "constructor", "PING", "ping ", "list\0", "toString",
  "killdaemon", "methods", "_G", "getMonitorData" }
-- the methods that act on the fuzzed daemon's apps
local APP_OPS = { "restart", "stop", "start", "scale", "reset", "sendSignalToProcessName",
  "sendSignalToProcessId", "reload", "delete", "describe", "save", "resurrect", "flush" }

-- ---- the reply a line must get (see the header) ----

-- -> "none" | "null" | "id", id
function F.expect(line)
  if #line >= F.HUGE_MIN then return "null" end
  if line:match("^%s*$") then return "none" end
  local req = util.decode(line)
  if req == nil then return "null" end
  if type(req) ~= "table" or req[1] ~= nil then return "null" end
  local id = req.id
  local tid = type(id)
  if not (id == nil or tid == "string" or tid == "number" or id == NULL) then return "null" end
  if id == nil or id == NULL then
    if type(req.method) ~= "string" then return "null" end
    return id == NULL and "null" or "none"
  end
  -- an id of 1e999 or NaN has no JSON spelling: it can only come back null
  if tid == "number" and (id ~= id or id == math.huge or id == -math.huge) then return "null" end
  return "id", id
end

-- Replies are matched to requests on the id's value to 14 significant
-- digits; an id that comes back other than it went is counted apart
-- (stats.inexact_ids), so that the counts stay exact either way. A string
-- id comes back with its invalid UTF-8 replaced (every reply is UTF-8).
function F.id_key(id)
  if type(id) == "number" then return "n:" .. ("%.14g"):format(id) end
  if type(id) == "string" then return "string:" .. require("pm.rpc").utf8_clean(id) end
  return type(id) .. ":" .. tostring(id)
end

-- ---- the generator ----

local function corpus_lines(dir)
  local lines = {}
  local p = io.popen("ls " .. "'" .. dir .. "'" .. "/*.jsonl 2>/dev/null")
  local files = {}
  for f in p:lines() do files[#files + 1] = f end
  p:close()
  table.sort(files)
  for _, f in ipairs(files) do
    local h = io.open(f, "rb")
    if h then
      for l in h:lines() do lines[#lines + 1] = l end
      h:close()
    end
  end
  return lines
end

local function mutate(r, s)
  if #s == 0 then return rstring(r) end
  local k = r.int(6)
  local i = r.int(#s)
  if k == 1 then return s:sub(1, i - 1) -- truncated
  elseif k == 2 then return s:sub(1, i - 1) .. string.char(r.int(0, 255)):gsub("\n", " ") .. s:sub(i + 1)
  elseif k == 3 then return s:sub(1, i - 1) .. s:sub(i + 1) -- a byte gone
  elseif k == 4 then return s:sub(1, i) .. r.pick({ ",", "}", "]", "{", "[", '"', ":", "\\", "\\u", "null",
    "\0", "\xff", "1e", "-", "  ", "/*x*/" }) .. s:sub(i + 1)
  elseif k == 5 then return s .. r.pick({ ",", " junk", "}", "{}", "\0", " " }) -- trailing bytes
  else
    local j = r.int(#s)
    if j < i then i, j = j, i end
    return s:sub(1, i) .. s:sub(i, j) .. s:sub(j) -- a piece duplicated
  end
end

local KINDS = {
  { "valid", 30 }, { "wrongtype", 14 }, { "notify", 8 }, { "envelope", 8 }, { "malformed", 12 },
  { "binary", 6 }, { "deep", 5 }, { "blank", 2 }, { "corpus", 8 }, { "appop", 5 }, { "medium", 0.4 },
  { "huge", 0.04 },
}

--[[ F.generator(seed, opts) -> gen; gen.next() -> line (no "\n"), kind.
opts.corpus: a directory of *.jsonl seed frames (replayed first, then mutated);
opts.huge: weight of huge lines (default 0.04 %); opts.appops: weight of app
operations (default 5 %). ]]
function F.generator(seed, opts)
  opts = opts or {}
  local r = rng(seed)
  local corpus = opts.corpus and corpus_lines(opts.corpus) or {}
  local kinds = {}
  for _, e in ipairs(KINDS) do
    local w = e[2]
    if e[1] == "huge" and opts.huge then w = opts.huge end
    if e[1] == "appop" and opts.appops then w = opts.appops end
    if e[1] == "corpus" and #corpus == 0 then w = 0 end
    kinds[#kinds + 1] = { e[1], w }
  end
  local n = 0
  local replay = 0
  local g = {}

  local function new_id()
    n = n + 1
    local k = r.int(10)
    if k <= 6 then return n end
    if k <= 8 then return "r" .. n end
    if k == 9 then return n + 0.5 end
    return -n
  end

  local function request(method, params, with_id)
    local req = { jsonrpc = "2.0", method = method }
    if with_id then req.id = new_id() end
    if params ~= nil then req.params = params end
    if r.chance(0.05) then req.jsonrpc = r.pick({ "1.0", NULL, 2 }) end
    if r.chance(0.05) then req.extra = rvalue(r) end
    return enc(r, req)
  end

  local function valid(with_id)
    local m = r.chance(0.05) and r.pick(UNKNOWN) or r.pick(METHODS)
    local p = PARAMS[m] and PARAMS[m](r) or {}
    if r.chance(0.1) then p = r.chance(0.5) and NULL or nil end
    return request(m, p, with_id)
  end

  local function wrongtype(with_id)
    local m = r.pick(METHODS)
    local p = PARAMS[m](r)
    -- one to three fields of the wrong type (or unknown fields)
    for _ = 1, r.int(3) do
      local keys = {}
      for k in pairs(p) do keys[#keys + 1] = k end
      table.sort(keys)
      local key = (#keys > 0 and r.chance(0.8)) and r.pick(keys)
        or r.pick({ "target", "name", "id", "app", "path", "signal", "instances", "events", "packet", "env",
          "environ", "only", "force", "cwd", "updateEnv" })
      p[key] = rvalue(r)
    end
    if r.chance(0.15) then p = rvalue(r) end -- params itself of any type
    -- never a large instance count: a scale to 1e308 (or a million) would
    -- make the daemon create that many processes (tested apart)
    if m == "scale" and type(p) == "table" and tonumber(p.instances) then p.instances = r.int(1, 3) end
    return request(m, p, with_id)
  end

  local function envelope()
    local k = r.int(8)
    if k == 1 then return enc(r, { jsonrpc = "2.0", id = rvalue(r), method = "ping" }) end
    if k == 2 then return enc(r, { jsonrpc = "2.0", id = new_id(), method = rvalue(r) }) end
    if k == 3 then return enc(r, { jsonrpc = "2.0", method = rvalue(r) }) end
    if k == 4 then return enc(r, arr({ { jsonrpc = "2.0", id = new_id(), method = "ping" } })) end
    if k == 5 then return enc(r, rvalue(r)) end
    if k == 6 then return enc(r, { jsonrpc = "2.0", id = NULL, method = r.pick(METHODS), params = {} }) end
    if k == 7 then return enc(r, { id = new_id() }) end
    return enc(r, { jsonrpc = "2.0", id = new_id(), method = "ping", params = rvalue(r) })
  end

  local function binary()
    local len = r.int(0, r.chance(0.05) and 20000 or 200)
    local t = {}
    for i = 1, len do
      local c = r.int(0, 255)
      if c == 10 then c = 0 end
      t[i] = string.char(c)
    end
    return table.concat(t)
  end

  local function deep()
    local depth = r.int(1, r.chance(0.3) and 3000 or 100)
    local open, close = {}, {}
    for i = 1, depth do
      if r.chance(0.5) then open[i], close[depth - i + 1] = "[", "]"
      else open[i], close[depth - i + 1] = '{"a":', "}" end
    end
    local inner = table.concat(open) .. enc(r, rvalue(r)) .. table.concat(close)
    if r.chance(0.3) then return inner end -- nesting at the top level
    local with_id = r.chance(0.8)
    local head = with_id and ('{"jsonrpc":"2.0","id":' .. enc(r, new_id()) .. ",") or '{"jsonrpc":"2.0",'
    return head .. '"method":' .. enc(r, r.pick(METHODS)) .. ',"params":{"target":' .. inner .. "}}"
  end

  local function padded(size, with_id)
    local pad = string.rep(string.char(r.int(97, 122)), size)
    if r.chance(0.3) then return pad end -- junk
    local head = with_id and ('{"jsonrpc":"2.0","id":' .. enc(r, new_id()) .. ",") or '{"jsonrpc":"2.0",'
    return head .. '"method":"' .. r.pick({ "ping", "describe", "list", "stop" }) .. '","params":{"target":"'
      .. pad .. '"}}'
  end

  function g.next()
    if replay < #corpus then
      replay = replay + 1
      return corpus[replay], "corpus"
    end
    local kind = r.weighted(kinds)
    local line
    if kind == "valid" then line = valid(true)
    elseif kind == "wrongtype" then line = wrongtype(r.chance(0.85))
    elseif kind == "notify" then line = r.chance(0.5) and valid(false) or wrongtype(false)
    elseif kind == "envelope" then line = envelope()
    elseif kind == "malformed" then line = mutate(r, r.chance(0.5) and valid(true) or wrongtype(true))
    elseif kind == "binary" then line = binary()
    elseif kind == "deep" then line = deep()
    elseif kind == "blank" then line = r.pick({ "", " ", "\t", "\r", " \t \r" })
    elseif kind == "corpus" then
      line = corpus[r.int(#corpus)]
      if r.chance(0.7) then line = mutate(r, line) end
    elseif kind == "appop" then
      local m = r.pick(APP_OPS)
      line = request(m, PARAMS[m](r), true)
    elseif kind == "medium" then line = padded(r.int(8 * 1024, 300 * 1024), r.chance(0.9))
    else line = padded(F.HUGE_MIN + r.int(0, 512 * 1024), r.chance(0.9)) end
    line = line:gsub("\n", " ")
    -- lines between the limit and HUGE_MIN may or may not be cut: not made
    if #line > F.MAX_LINE - 16 and #line < F.HUGE_MIN then line = line:sub(1, F.MAX_LINE - 16) end
    return line, kind
  end

  g.rng = r
  return g
end

-- ---- the driver ----

local function check_reply(stats, msg, line)
  if type(msg) ~= "table" or msg.jsonrpc ~= "2.0" then
    stats.malformed_replies = stats.malformed_replies + 1
    stats.bad[#stats.bad + 1] = "not a JSON-RPC reply: " .. line:sub(1, 200)
    return
  end
  local has_result, has_error = msg.result ~= nil, msg.error ~= nil
  if has_result == has_error then
    stats.malformed_replies = stats.malformed_replies + 1
    stats.bad[#stats.bad + 1] = "result and error both or neither: " .. line:sub(1, 200)
    return
  end
  if has_error then
    local e = msg.error
    if type(e) ~= "table" or type(e.code) ~= "number" or type(e.message) ~= "string" then
      stats.malformed_replies = stats.malformed_replies + 1
      stats.bad[#stats.bad + 1] = "a bad error object: " .. line:sub(1, 200)
      return
    end
    stats.codes[e.code] = (stats.codes[e.code] or 0) + 1
    if e.code == -32603 then
      local m = e.message:sub(1, 160)
      if not stats.internal[m] then
        stats.internal[m] = true
        stats.internal_list[#stats.internal_list + 1] = m
      end
    end
  else
    stats.results = stats.results + 1
  end
end

--[[ F.run(opts) -> stats. opts: sock (rpc.sock path), frames, seed,
daemon_pid, conns (connections at once, default 4), batch (max frames a
batch, default 64), corpus (dir), huge, appops (weights), hang_ms (a batch
not answered in this long is a hang, default 30000), log (fn(msg) for
progress), progress_every (frames). Stops early at the first hang or when
the daemon dies. ]]
function F.run(opts)
  local gen = F.generator(opts.seed or 1, { corpus = opts.corpus, huge = opts.huge, appops = opts.appops })
  local r = gen.rng
  local stats = {
    frames = 0, with_id = 0, id_replies = 0, expect_null = 0, null_replies = 0, notifications = 0,
    blanks = 0, events = 0, results = 0, codes = {}, internal = {}, internal_list = {},
    unexpected = 0, duplicates = 0, malformed_replies = 0, bad = {}, abandoned = 0, connections = 0,
    inexact_ids = 0, inexact = {}, hangs = 0, unanswered = 0, unanswered_lines = {},
    hang = nil, died = false, kinds = {}, bytes = 0, ms = 0,
  }
  local t0 = core.mono()
  local conns = {}
  local want_frames = opts.frames or 20000
  local hang_ms = opts.hang_ms or 30000
  local next_report = opts.progress_every or math.huge

  local function open_conn()
    local fd, err = core.connect_unix(opts.sock)
    if not fd then return nil, err end
    stats.connections = stats.connections + 1
    local c = { pending = {}, npending = 0, null_expected = 0, null_got = 0, closed = false, busy = false,
      owed = 0, got = 0 }
    c.stream = core.stream(fd, function(line)
      if not line then
        stats.malformed_replies = stats.malformed_replies + 1
        stats.bad[#stats.bad + 1] = "a reply line over 64 MB"
        return
      end
      local msg = util.decode(line)
      if type(msg) == "table" and msg.id == nil and msg.method == "event" then
        stats.events = stats.events + 1
        return
      end
      check_reply(stats, msg, line)
      if type(msg) ~= "table" or msg.id == nil then return end
      c.got = c.got + 1
      if msg.id == NULL then
        c.null_got = c.null_got + 1
        stats.null_replies = stats.null_replies + 1
        if c.null_got > c.null_expected then
          stats.unexpected = stats.unexpected + 1
          stats.bad[#stats.bad + 1] = "an unexpected reply with id null: " .. line:sub(1, 200)
        end
        return
      end
      local key = F.id_key(msg.id)
      if c.pending[key] ~= nil then
        if type(msg.id) == "number" and c.pending[key] ~= msg.id then
          stats.inexact_ids = stats.inexact_ids + 1
          if #stats.inexact < 5 then
            stats.inexact[#stats.inexact + 1] = ("%.17g came back as %.17g"):format(c.pending[key], msg.id)
          end
        end
        c.pending[key] = nil
        c.npending = c.npending - 1
        stats.id_replies = stats.id_replies + 1
      elseif c.answered and c.answered[key] then
        stats.duplicates = stats.duplicates + 1
        stats.bad[#stats.bad + 1] = "a second reply for id " .. key
      else
        stats.unexpected = stats.unexpected + 1
        stats.bad[#stats.bad + 1] = "a reply for an id never sent: " .. line:sub(1, 200)
      end
      c.answered = c.answered or {}
      c.answered[key] = true
    end, function() c.closed = true end, 64 * 1024 * 1024)
    return c
  end

  -- every reply a batch is owed has come (matched or not: a reply that
  -- matches nothing is counted as unexpected, and the batch does not wait)
  local function batch_done(c)
    return c.got >= c.owed
  end

  -- sends a batch of frames on c
  local function send_batch(c)
    local n = math.min(r.int(1, opts.batch or 64), want_frames - stats.frames)
    local chunks = {}
    c.answered = {}
    for _ = 1, n do
      local line, kind = gen.next()
      stats.frames = stats.frames + 1
      stats.kinds[kind] = (stats.kinds[kind] or 0) + 1
      stats.bytes = stats.bytes + #line + 1
      local what, id = F.expect(line)
      if what == "id" then
        local key = F.id_key(id)
        if c.pending[key] ~= nil or c.answered[key] then
          -- an id seen twice on one connection (a corpus line replayed):
          -- the replies cannot be told apart, so it is sent as a notification
          line = " "
          stats.blanks = stats.blanks + 1
        else
          c.pending[key] = id
          c.lines = c.lines or {}
          c.lines[key] = #line > 300 and (line:sub(1, 300) .. "...") or line
          c.npending = c.npending + 1
          c.owed = c.owed + 1
          stats.with_id = stats.with_id + 1
        end
      elseif what == "null" then
        c.null_expected = c.null_expected + 1
        c.owed = c.owed + 1
        stats.expect_null = stats.expect_null + 1
      elseif line:match("^%s*$") then
        stats.blanks = stats.blanks + 1
      else
        stats.notifications = stats.notifications + 1
      end
      chunks[#chunks + 1] = line .. "\n"
    end
    local data = table.concat(chunks)
    if r.chance(0.2) and #data > 1 then
      -- split at random places, the loop run between the writes
      local pos = 1
      while pos <= #data do
        local len = r.int(1, math.max(1, math.min(#data - pos + 1, r.chance(0.5) and 7 or 4096)))
        c.stream:write(data:sub(pos, pos + len - 1))
        pos = pos + len
        if r.chance(0.3) then core.run("nowait") end
      end
    else
      c.stream:write(data)
    end
    c.busy = true
    c.since = core.mono()
  end

  local function abandon(c)
    -- a connection that goes away with a frame half sent: no reply counted
    local line = gen.next()
    stats.abandoned = stats.abandoned + 1
    c.stream:write(line:sub(1, math.max(1, math.floor(#line / 2))))
    c.stream:close()
    c.closed = true
  end

  local nconns = opts.conns or 4
  local tick = core.timer(100, 100, function() end) -- wakes the loop up to check the clock
  local ok, err = pcall(function()
    while true do
      -- keep nconns connections busy
      for i = 1, nconns do
        local c = conns[i]
        if c and c.busy and batch_done(c) then
          c.busy = false
          if r.chance(0.1) then
            if r.chance(0.3) then abandon(c) else c.stream:close(); c.closed = true end
            c = nil
            conns[i] = nil
          end
        end
        if c and c.closed and not c.busy then c = nil; conns[i] = nil end
        if not c and stats.frames < want_frames then
          local nc, cerr = open_conn()
          if not nc then
            stats.hang = "cannot connect: " .. tostring(cerr)
            return
          end
          conns[i] = nc
          c = nc
        end
        if c and not c.busy and stats.frames < want_frames then send_batch(c) end
      end
      local any_busy = false
      for i = 1, nconns do
        local c = conns[i]
        if c and c.busy then
          any_busy = true
          if c.closed and not batch_done(c) then
            stats.hang = ("the daemon closed a connection with %d replies missing"):format(c.owed - c.got)
            return
          end
          if core.mono() - c.since > hang_ms then
            -- requests left unanswered: noted, the connection dropped, and
            -- the run goes on (is the daemon itself still answering?)
            stats.hangs = stats.hangs + 1
            stats.unanswered = stats.unanswered + (c.owed - c.got)
            for key in pairs(c.pending) do
              if #stats.unanswered_lines < 20 then
                stats.unanswered_lines[#stats.unanswered_lines + 1] = tostring(c.lines and c.lines[key])
              end
            end
            c.stream:close()
            c.closed = true
            c.busy = false
            conns[i] = nil
            local alive, why = F.ping(opts.sock, 3000)
            if not alive then
              stats.hang = "the daemon does not answer a ping on a new connection: " .. tostring(why)
              return
            end
          end
        end
      end
      if opts.daemon_pid then
        local st = core.proc_stat(opts.daemon_pid)
        if not st or st.state == "Z" then
          stats.died = true
          return
        end
      end
      if stats.frames >= next_report and opts.log then
        next_report = next_report + opts.progress_every
        opts.log(("  %d frames, %d replies with an id of %d, %d errors with id null of %d, %.0f s")
          :format(stats.frames, stats.id_replies, stats.with_id, stats.null_replies, stats.expect_null,
            (core.mono() - t0) / 1000))
      end
      if not any_busy and stats.frames >= want_frames then return end
      core.run("once")
    end
  end)
  tick:close()
  for _, c in pairs(conns) do
    if c and not c.closed then c.stream:close() end
  end
  if not ok then stats.hang = "driver error: " .. tostring(err) end
  stats.ms = core.mono() - t0
  return stats
end

-- A ping on a new connection answered within ms? -> true | false, why
function F.ping(sock, ms)
  local fd, err = core.connect_unix(sock)
  if not fd then return false, err end
  local got
  local st = core.stream(fd, function(line)
    local m = line and util.decode(line)
    if type(m) == "table" and m.id == "liveness" then got = m end
  end, function() end)
  st:write('{"jsonrpc":"2.0","id":"liveness","method":"ping"}\n')
  H.run_until(function() return got ~= nil end, ms)
  st:close()
  if not got then return false, ("no pong in %d ms"):format(ms) end
  return type(got.result) == "table" and got.result.msg == "pong", "answered " .. util.encode(got)
end

-- One line of figures for logs and assertion messages.
function F.summary(s)
  local codes = {}
  for code, n in pairs(s.codes) do codes[#codes + 1] = ("%d:%d"):format(code, n) end
  table.sort(codes)
  return ("%d frames (%.1f MB) on %d connections in %.1f s: requests with an id %d, replies to them %d; "
    .. "frames owed an error with id null %d, such errors %d; notifications %d, blank lines %d, events %d; "
    .. "results %d; errors by code %s; unexpected %d, duplicates %d, malformed replies %d, abandoned %d, "
    .. "ids echoed inexactly %d; batches left unanswered %d (%d replies missing)")
    :format(s.frames, s.bytes / 1e6, s.connections, s.ms / 1000, s.with_id, s.id_replies, s.expect_null,
      s.null_replies, s.notifications, s.blanks, s.events, s.results, table.concat(codes, " "), s.unexpected,
      s.duplicates, s.malformed_replies, s.abandoned, s.inexact_ids, s.hangs, s.unanswered)
end

return F
