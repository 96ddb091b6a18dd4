-- Small pieces shared by the client and the daemon: JSON as the wire wants
-- it, PM_HOME, paths, durations, sizes, signal names, users and groups.
local cjson = require "cjson"
local core = require "pm.core"

local M = {}

M.VERSION = "0.1.0"

cjson.encode_sparse_array(true)
cjson.encode_invalid_numbers("null") -- a NaN never reaches the wire
cjson.decode_max_depth(64)
cjson.encode_max_depth(64)

-- cjson 2.1.0 encodes every empty table as {}; a list that may be empty is
-- marked with M.array() and written as [].
local EMPTY = "\0pm:[]\0"
local EMPTY_JSON = '"\\u0000pm:[]\\u0000"'

function M.array(t)
  if t == nil or next(t) == nil then return EMPTY end
  return t
end

function M.encode(v)
  local s = cjson.encode(v)
  if s:find(EMPTY_JSON, 1, true) then
    s = s:gsub('"\\u0000pm:%[%]\\u0000"', "[]")
  end
  return s
end

-- v as JSON text a client reads: valid UTF-8, each byte that is no part of
-- it replaced by U+FFFD (an environment variable in Latin-1 made the whole
-- `pm jlist` unreadable to a strict parser; Node's PM2 shows U+FFFD). Not
-- for what pm reads back itself (the journal keeps the bytes).
local utf8_clean = core.utf8_clean
M.utf8_clean = utf8_clean
function M.encode_text(v)
  return utf8_clean(M.encode(v))
end

-- A decoded JSON value with its objects' null members removed (in Lua a
-- member that is not there is nil; cjson's null is a userdata, true in a
-- test: `if packet.signal then` was taken for a normal exit). An array's
-- nulls stay (nil there would end it). -> v
local null = cjson.null
local function denull(v)
  for k, x in pairs(v) do
    if x == null then
      if type(k) == "string" then v[k] = nil end
    elseif type(x) == "table" then
      denull(x)
    end
  end
  return v
end
function M.denull(v)
  if type(v) == "table" then denull(v) end
  return v
end

-- PM2's log_date_format and `pm logs --timestamp` take dayjs's tokens:
-- token -> { strftime's spec, the most characters it gives } (SSS, the
-- milliseconds, and Z, the UTC offset as +HH:MM, are the callers': strftime
-- has neither). Names are the C locale's, as dayjs's are English.
M.MOMENT = {
  YYYY = { "%Y", 4 }, YY = { "%y", 2 }, MMMM = { "%B", 9 }, MMM = { "%b", 3 }, MM = { "%m", 2 },
  M = { "%-m", 2 }, DD = { "%d", 2 }, D = { "%-d", 2 }, dddd = { "%A", 9 }, ddd = { "%a", 3 },
  dd = { "%a", 3 }, d = { "%w", 1 }, HH = { "%H", 2 }, H = { "%-H", 2 }, hh = { "%I", 2 }, h = { "%-I", 2 },
  mm = { "%M", 2 }, m = { "%-M", 2 }, ss = { "%S", 2 }, s = { "%-S", 2 }, SSS = { nil, 3 }, ZZ = { "%z", 5 },
  Z = { nil, 6 }, A = { "%p", 2 }, a = { "%P", 2 },
}
-- fmt -> its pieces in order: a token's name, or { text } (what is
-- between [ and ] is text, as in dayjs)
function M.moment_pieces(fmt)
  local out, text, i = {}, {}, 1
  local function flush()
    if #text > 0 then out[#out + 1] = { table.concat(text) }; text = {} end
  end
  while i <= #fmt do
    local close = fmt:sub(i, i) == "[" and fmt:find("]", i + 1, true)
    if close then
      text[#text + 1] = fmt:sub(i + 1, close - 1)
      i = close + 1
    else
      local hit
      for len = 4, 1, -1 do
        local tok = fmt:sub(i, i + len - 1)
        if #tok == len and M.MOMENT[tok] then hit = tok; break end
      end
      if hit then
        flush()
        out[#out + 1] = hit
        i = i + #hit
      else
        text[#text + 1] = fmt:sub(i, i)
        i = i + 1
      end
    end
  end
  flush()
  return out
end

-- Whether a and b are the same string, in a time that does not say where
-- they differ (a token, a password compared with what a client sent)
function M.same_secret(a, b)
  if type(a) ~= "string" or type(b) ~= "string" or #a ~= #b then return false end
  local diff = 0
  for i = 1, #a do diff = bit.bor(diff, bit.bxor(a:byte(i), b:byte(i))) end
  return diff == 0
end

--[[ Is pid still the process we knew? The pid alone is not enough (pids
are reused): it must not be a zombie, and its start time (clock ticks
after boot, /proc/PID/stat) and the marker pm put in its environment
(PM_APP_UID) must match when given. ]]
function M.same_process(pid, start, marker)
  pid = tonumber(pid)
  if not pid or pid <= 0 then return false end
  local st = core.proc_stat(pid)
  if not st or st.state == "Z" or (start and st.start ~= start) then return false end
  if not marker then return true end
  local env = core.proc_environ(pid)
  if not env then return false end
  return env:find("\0PM_APP_UID=" .. marker .. "\0", 1, true) ~= nil
      or env:find("^PM_APP_UID=" .. marker:gsub("%p", "%%%0") .. "%z") ~= nil
end

-- A number as JSON text (the one formatter of replies, descriptions and
-- the journal): an integer digit for digit (cjson keeps 14 digits), any
-- other the shortest of 14 or 17 digits that reads back as
-- the same number, NaN and infinities null.
function M.json_number(v)
  if v == math.floor(v) and v > -2 ^ 53 and v < 2 ^ 53 then
    return ("%.0f"):format(v) -- (-0 stays -0: a request's id comes back as sent)
  end
  if v ~= v or v == math.huge or v == -math.huge then return "null" end
  local s = ("%.14g"):format(v)
  if tonumber(s) ~= v then s = ("%.17g"):format(v) end
  return s
end

-- JSON text ready to send: util.raw(pieces) is written as the pieces
-- one after the other (the RPC layer sends them without re-encoding).
M.RAW = {}
function M.raw(pieces) return setmetatable(pieces, M.RAW) end
function M.is_raw(v) return type(v) == "table" and getmetatable(v) == M.RAW end
function M.raw_text(v) return table.concat(v) end

function M.decode(s)
  local ok, v = pcall(cjson.decode, s)
  if ok then return v end
  return nil, (tostring(v):gsub("^.-:%d+: ", ""))
end

M.null = cjson.null

function M.home()
  local h = os.getenv("PM_HOME")
  if h and h ~= "" then return h end
  return (os.getenv("HOME") or "/tmp") .. "/.pm"
end

function M.is_abs(p) return p:sub(1, 1) == "/" end

function M.join(dir, p)
  if M.is_abs(p) then return p end
  if dir:sub(-1) == "/" then return dir .. p end
  return dir .. "/" .. p
end

-- Removes "." and "x/.." segments without touching the file system.
function M.normalize(p)
  local abs = M.is_abs(p)
  local out = {}
  for seg in p:gmatch("[^/]+") do
    if seg == ".." then
      if #out > 0 and out[#out] ~= ".." then out[#out] = nil
      elseif not abs then out[#out + 1] = seg end
    elseif seg ~= "." then
      out[#out + 1] = seg
    end
  end
  local s = table.concat(out, "/")
  if abs then return "/" .. s end
  return s == "" and "." or s
end

function M.absolute(p, cwd)
  return M.normalize(M.join(cwd or core.getcwd() or "/", p))
end

function M.dirname(p)
  local d = p:match("^(.*)/[^/]*$")
  if d == nil then return "." end
  return d == "" and "/" or d
end

function M.basename(p) return (p:match("([^/]*)/*$")) end

function M.strip_ext(name) return (name:gsub("(.)%.[^.]*$", "%1")) end

-- Which files are ecosystem files (DESIGN §3).
function M.is_ecosystem(p)
  local b = M.basename(p)
  return b:match("%.json$") ~= nil or b:match("%.config%.c?js$") ~= nil
      or b:match("^ecosystem.*%.lua$") ~= nil or b:match("%.config%.lua$") ~= nil
      or b:match("%.ya?ml$") ~= nil
end

-- "1500", 1500, "2s", "5m", "1h", "250ms" -> milliseconds, or nil, err.
function M.duration(v, what)
  if type(v) == "number" then return v end
  if type(v) == "string" then
    local n, unit = v:match("^%s*(%d+%.?%d*)%s*(%a*)%s*$")
    n = tonumber(n)
    local mult = ({ [""] = 1, ms = 1, s = 1000, m = 60000, h = 3600000, d = 86400000 })[unit]
    if n and mult then return n * mult end
  end
  return nil, ("%s: a duration (ms, or like \"5s\", \"2m\", \"1h\") expected, got %s")
    :format(what or "value", tostring(v))
end

-- "200M", "1G", "512K", 1048576 -> bytes, or nil, err.
function M.size(v, what)
  if type(v) == "number" then return v end
  if type(v) == "string" then
    local n, unit = v:match("^%s*(%d+%.?%d*)%s*(%a?)[bB]?%s*$")
    n = tonumber(n)
    local mult = ({ [""] = 1, K = 1024, k = 1024, M = 1048576, m = 1048576,
      G = 1073741824, g = 1073741824 })[unit]
    if n and mult then return math.floor(n * mult) end
  end
  return nil, ("%s: a size (bytes, or like \"200M\", \"1G\") expected, got %s")
    :format(what or "value", tostring(v))
end

local signums = core.signals
local signames = {}
for name, num in pairs(signums) do signames[num] = name end

-- "SIGTERM", "TERM", "15", 15 -> 15, or nil, err.
function M.signum(s)
  if type(s) == "number" or (type(s) == "string" and s:match("^%d+$")) then
    local n = tonumber(s)
    if n >= 0 and n < 65 then return n end
  elseif type(s) == "string" then
    local up = s:upper()
    local n = signums[up] or signums["SIG" .. up]
    if n then return n end
  end
  return nil, "unknown signal: " .. tostring(s)
end

function M.signame(n)
  if n == nil then return nil end
  return signames[n] or ("SIG" .. tostring(n))
end

function M.shallow_copy(t)
  local c = {}
  for k, v in pairs(t) do c[k] = v end
  return c
end

-- A copy by raw access (next: no metamethod runs) and without metatables;
-- shared and cyclic tables stay shared.
function M.deep_copy(t, seen)
  if type(t) ~= "table" then return t end
  seen = seen or {}
  if seen[t] then return seen[t] end
  local c = {}
  seen[t] = c
  local k, v = next(t)
  while k ~= nil do
    c[M.deep_copy(k, seen)] = M.deep_copy(v, seen)
    k, v = next(t, k)
  end
  return c
end

-- The first line of a colon-separated database (passwd, group) whose name
-- (field 1) or number (field 3) is key, as getpwnam/getpwuid would find it,
-- its fields named by fields. Read at each call: a user added while the
-- daemon runs is found.
local function db_entry(file, key, fields)
  local f = io.open(file)
  if not f then return nil end
  key = tostring(key)
  for line in f:lines() do
    local v = {}
    for field in (line .. ":"):gmatch("([^:]*):") do v[#v + 1] = field end
    if (v[1] == key or v[3] == key) and tonumber(v[3]) then
      f:close()
      local entry = {}
      for i, name in ipairs(fields) do entry[name] = v[i] end
      entry.uid = entry.uid and tonumber(entry.uid)
      entry.gid = entry.gid and tonumber(entry.gid)
      return entry
    end
  end
  f:close()
end

local PASSWD = { "name", "passwd", "uid", "gid", "gecos", "dir", "shell" }
local GROUP = { "name", "passwd", "gid", "members" }

-- The entry of /etc/passwd (or file) for a user name or uid: { name, uid,
-- gid, gecos, dir, shell } | nil.
function M.passwd(name_or_uid, file)
  return db_entry(file or "/etc/passwd", name_or_uid, PASSWD)
end

-- The entry of /etc/group (or file) for a group name or gid: { name, gid,
-- members (the text, comma-separated) } | nil.
function M.group(name_or_gid, file)
  return db_entry(file or "/etc/group", name_or_gid, GROUP)
end

-- mkdir -p: the parents 0755, dir itself with mode
function M.mkdir_p(dir, mode, owner) -- (owner: core.mkdir's)
  if core.stat(dir) then return true end
  local parent = M.dirname(dir)
  if parent ~= dir then M.mkdir_p(parent, nil, owner) end
  return core.mkdir(dir, mode or 493, owner) -- 0755
end

--[[ Writes a file atomically and durably: data into "<path>.new" (mode,
0644 by default), flushed to the disk, renamed over path, and the folder
flushed too. On any failure (a full disk shows in write, fsync or close)
the old file stays as it was and nil, err comes back. opts.backup: the
old file is kept under that name (renamed just before the new one takes
its place). opts.durable = false: atomic only, no flush (a file rewritten
at every daemon start, whose loss a crash does not make matter: pm.pid,
the cluster preload; each flush costs milliseconds of a first call). ]]
function M.write_atomic(path, data, opts)
  local durable = not (opts and opts.durable == false)
  local tmp = path .. ".new"
  os.remove(tmp) -- (a stale one keeps its mode)
  local fd, err = core.open(tmp, "w", opts and opts.mode or 420)
  if not fd then return nil, err end
  local ok, werr = core.write(fd, data)
  if ok and durable then ok, werr = core.fsync(fd) end
  local cok, cerr = core.close(fd)
  if ok and not cok then ok, werr = nil, cerr end
  if not ok then os.remove(tmp); return nil, tmp .. ": " .. tostring(werr) end
  local dir = M.dirname(path)
  if opts and opts.backup and core.stat(path) then
    local bok, berr = os.rename(path, opts.backup)
    if not bok then os.remove(tmp); return nil, berr end
  end
  local rok, rerr = os.rename(tmp, path)
  if not rok then os.remove(tmp); return nil, rerr end
  if not durable then return true end
  local sok, serr = core.fsync(dir)
  if not sok then return nil, dir .. ": " .. tostring(serr) end
  return true
end

function M.read_file(path)
  local f, err = io.open(path, "r")
  if not f then return nil, err end
  local s = f:read("*a")
  f:close()
  return s
end

-- Everything an fd gives until its end (a pipe whose writers are gone).
function M.read_fd(fd)
  local out = {}
  while true do
    local s = core.read(fd, 4096)
    if not s or s == "" then break end
    out[#out + 1] = s
  end
  return table.concat(out)
end

-- The pm binary that runs a daemon (and .lua apps) -> path | nil, err. PM_BIN; then, in
-- bin/pm itself, this very binary; embedded in another program (plain
-- luajit, luv, Neovim, nginx: core.embedded), never that program's own
-- executable: `pm` on PATH, then the bin/pm of the prefix pm.core was
-- built for (make's PREFIX).
function M.pm_binary()
  local env = os.getenv("PM_BIN")
  if env and env ~= "" then return env end
  if not core.embedded then
    local exe = core.realpath("/proc/self/exe")
    if exe then return exe end
  end
  for dir in (os.getenv("PATH") or ""):gmatch("[^:]+") do
    local p = dir .. "/pm"
    local st = core.stat(p)
    if st and st.type ~= "dir" and core.access(p, "x") then return p end
  end
  local prefixed = core.prefix and core.prefix .. "/bin/pm"
  if prefixed and core.access(prefixed, "x") then return prefixed end
  return nil, "cannot find the pm binary: set PM_BIN, or put pm on PATH"
    .. (prefixed and " (not in " .. prefixed .. " either)" or "")
end

-- Turns pm's loop once, waiting at most ms (0 or nil: not at all), then
-- once more without waiting, so that watchers started meanwhile join the
-- loop's descriptor (pm.step's and child.step's shape) -> nothing
function M.turn_loop(ms)
  if ms and ms > 0 then
    local t = core.timer(ms, 0, function() end)
    core.run("once")
    t:close()
  else
    core.run("nowait")
  end
  core.run("nowait")
end

return M
