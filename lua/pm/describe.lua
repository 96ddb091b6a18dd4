-- Descriptions of processes (DESIGN §5), as the wire sends them: JSON
-- written from pieces (a list of 2,000 apps is mostly concatenation), with
-- memory and CPU sampled from /proc off the reply's path. Also the copy of
-- a description a hook is called with. Decides nothing, and knows no
-- screen: what a CLI shows of it is view.lua's.
local core = require "pm.core"
local util = require "pm.util"
local cjson = require "cjson"
local hooks = require "pm.hooks"
local appdecl = require "pm.app"
local applogs = require "pm.applogs"
local children = require "pm.children"
local proc = require "pm.proc"

local M = {}
local clk_tck = core.clk_tck()

-- Memory and CPU of an app's process tree, from /proc. A sample is reused
-- for SAMPLE_MS; one up to STALE_MS old is still answered at once, and a
-- new one is taken after the reply, a chunk of apps per turn of the loop:
-- a client listing 2,000 apps every second never waits for /proc (about
-- 40 ms of reads), and a list asked for after a quiet minute is fresh.
-- The CPU share is measured over the whole time between two samples.
M.SAMPLE_MS, M.STALE_MS, M.REFRESH_CHUNK = 1000, 5000, 100
local stale, stale_set, refresher = {}, {}, nil

-- A share over less time than this is the clock tick's noise (10 ms of
-- CPU over 5 ms of life: 200 %): a process younger says 0 until the next
-- sample. No share is above what every CPU gives.
M.MIN_SPAN_MS = 500
M.CPU_MAX = nil -- (100 % a CPU, counted at the first sample)

-- p.cpu_sample: { t, pid, ticks, cpu, rss } (an array: with 10,000 apps a
-- table of five named fields each is 1.5 MB more)
local S_T, S_PID, S_TICKS, S_CPU, S_RSS = 1, 2, 3, 4, 5

local function measure(p, t, prev)
  local rss, ticks = core.proc_usage(p.pid)
  local cpu
  if prev and prev[S_PID] == p.pid then
    cpu = (ticks - prev[S_TICKS]) / clk_tck / ((t - prev[S_T]) / 1000) * 100
  else
    local up = t - (p.started or t)
    cpu = up >= M.MIN_SPAN_MS and (ticks / clk_tck) / (up / 1000) * 100 or 0
  end
  M.CPU_MAX = M.CPU_MAX or appdecl.cpu_count() * 100
  if cpu ~= cpu or cpu < 0 then cpu = 0 end
  if cpu > M.CPU_MAX then cpu = M.CPU_MAX end
  cpu = math.floor(cpu * 10 + 0.5) / 10
  -- a process caught between fork and exec shows nothing yet: ask again
  -- (the same table each time: 10,000 apps sampled make no garbage)
  if rss > 0 then
    local s = prev or { 0, 0, 0, 0, 0 }
    s[S_T], s[S_PID], s[S_TICKS], s[S_CPU], s[S_RSS] = t, p.pid, ticks, cpu, rss
    p.cpu_sample = s
  end
  return rss, cpu
end

local function refresh_some()
  refresher = nil
  local n = 0
  while #stale > 0 and n < M.REFRESH_CHUNK do
    local p = table.remove(stale)
    stale_set[p] = nil
    local prev = p.cpu_sample
    if not p.deleted and p.pid and p.pid ~= 0 and prev and prev[S_PID] == p.pid then
      measure(p, core.mono(), prev)
      n = n + 1
    end
  end
  if #stale > 0 then
    refresher = core.timer(0, 0, refresh_some)
  else -- (emptied: tables that held 10,000 apps keep their size)
    stale, stale_set = {}, {}
  end
end

-- (now: the time of a list's samples, read once for all of them)
local function sample(p, cached, now)
  if not p.pid or p.pid == 0 then return 0, 0 end
  local t = now or core.mono()
  local prev = p.cpu_sample
  if prev and prev[S_PID] == p.pid then
    local age = t - prev[S_T]
    if age < M.SAMPLE_MS then return prev[S_RSS], prev[S_CPU] end
    if age < M.STALE_MS or cached then
      if not stale_set[p] then
        stale_set[p] = true
        stale[#stale + 1] = p
        if not refresher then refresher = core.timer(0, 0, refresh_some) end
      end
      return prev[S_RSS], prev[S_CPU]
    end
  end
  if cached then return 0, 0 end
  return measure(p, t, prev)
end

-- p's last sample if it is of its process and younger than max_age ms
-- at mono -> rss, cpu | nil
function M.last_sample(p, mono, max_age)
  local s = p.cpu_sample
  if s and s[S_PID] == p.pid and mono - s[S_T] < max_age then return s[S_RSS], s[S_CPU] end
  return nil
end

-- (history.lua and metrics read the same samples)
M.sample = sample

local function exec_interpreter(d)
  return d.interpreter == "pm" and "pm" or
    (d.interpreter == "none" and "none" or util.basename(d.interpreter))
end

-- ---- what pm2_env holds beside the declaration: username, version,
-- node_version (PM2's), each read once, not once per list ----

-- pm2_env's members pm works out itself: a declaration's attributes of the
-- same names (PM2 accepts them, and its daemon overwrites them too) are
-- left out of its descriptions
local COMPUTED = { username = true, version = true, node_version = true }

-- The name of the user an app runs as (PM2's username: who started it;
-- pm's apps run as their uid's user, or the daemon's).
local usernames = {} -- uid -> name
local function username_of(d)
  local uid = tonumber(d.uid) or core.getuid()
  local name = usernames[uid]
  if not name then
    local pw = util.passwd(uid)
    name = pw and pw.name or tostring(uid)
    usernames[uid] = name
  end
  return name
end

-- A package.json's text, read with the rights of the app's user (an app of
-- another user: no link, a file of that user's, as applogs.owner does),
-- never a FIFO or a file over 1 MB -> text | nil
local PKG_MAX = 1048576
local function read_package(path, d)
  local st = core.stat(path)
  if not st or st.type ~= "file" or st.size > PKG_MAX then return nil end
  local uid = tonumber(d.uid)
  local owner = uid and uid ~= core.getuid() and { uid = uid, gid = tonumber(d.gid) or -1, as_user = true } or nil
  local fd = core.open(path, "r", nil, owner)
  if not fd then return nil end
  local out, size = {}, 0
  while size <= PKG_MAX do
    local piece = core.read(fd, 65536)
    if not piece or piece == "" then break end
    out[#out + 1] = piece
    size = size + #piece
  end
  core.close(fd)
  return size <= PKG_MAX and table.concat(out) or nil
end

--[[ The version of app d's package, as PM2 finds it: the first
package.json in the folder of the app's script or above it; "N/A" when
there is none or it is not JSON, nil when the one found has no version.
Folders are remembered for one describe call (a list of 2,000 apps of one
folder reads it once). ]]
local pkg_seen = {} -- uid and folder -> its answer (false: no package.json there), this call
function M.package_version(d)
  local script = d.script
  if type(script) ~= "string" or script:sub(1, 1) ~= "/" then return "N/A" end
  local dir = util.dirname(script)
  local who = tostring(d.uid or "") .. ":"
  local walked = {}
  local v
  while true do
    v = pkg_seen[who .. dir]
    if v == nil then
      local text = read_package(dir .. "/package.json", d)
      if text then
        local pkg = util.decode(text)
        if type(pkg) ~= "table" then v = { "N/A" }
        else
          local ver = pkg.version
          v = { (type(ver) == "string" or type(ver) == "number") and tostring(ver) or nil }
        end
      else
        v = false
      end
      pkg_seen[who .. dir] = v
    end
    walked[#walked + 1] = who .. dir
    if v then break end
    local up = util.dirname(dir)
    if up == dir then v = { "N/A" }; break end
    dir = up
  end
  for _, w in ipairs(walked) do pkg_seen[w] = v end
  return v[1]
end

--[[ node_version: the version of a Node app's interpreter (PM2's comes from
the process itself). Asked once of each interpreter (`node --version`, a
helper process: the answer shows in the descriptions made after it), and
again when its file changes; as the app's user. -> the version | false (not a Node app, or
it did not say) | nil (being asked) ]]
local node_versions = {} -- interpreter path -> { mtime, version }
function M.node_version(d, recheck)
  local interp = d.interpreter
  if type(interp) ~= "string" or interp:sub(1, 1) ~= "/"
      or not util.basename(interp):match("^node") then
    return false
  end
  local c = node_versions[interp]
  if c and not recheck then return c.version end
  local st = core.stat(interp)
  if not st then return c and c.version or false end
  if c and c.mtime == st.mtime then return c.version end
  c = { mtime = st.mtime, version = nil }
  node_versions[interp] = c
  -- (as the app's user, in a session of its own, with no more environment
  -- than a PATH: the interpreter may be the user's own, ~/.nvm, and what
  -- it runs gets neither the daemon's user nor the daemon's environment)
  children.run({ interp, "--version" }, { capture = true, timeout = 10000, uid = d.uid, gid = d.gid,
    cwd = "/", setsid = true, env = { "PATH=/usr/local/bin:/usr/bin:/bin" } }, function(code, _, out)
    local v = code == 0 and type(out) == "string" and out:match("^v?(%d+%.%d+%.%d+[%w.+-]*)")
    c.version = v or false
  end)
  return nil
end

-- A record's cached texts and what each was made from, one array (p.json)
-- instead of fields of the record (with 10,000 apps each field costs a
-- hash slot in every record) or small tables of its own (64 bytes each
-- more): J_* are single places in it, H0, M0, F0 and S0 where the head's,
-- the versions', the environment's and the state's places begin.
local J_STATE, J_STATIC, J_DECL, J_LEARNED, J_INSTANCES, J_HISTORY, J_WHOLE, J_STATIC_SHARED =
  1, 2, 3, 4, 5, proc.J_HISTORY, 7, 8 -- (proc.event empties J_HISTORY)
local H0, M0, F0, S0 = 8, 14, 19, 25 -- (6, 5, 6 and 18 places)
local J_SIZE = S0 + 18
local new_table = require "table.new"
local function cache_of(p)
  local j = p.json
  if not j then
    j = new_table(J_SIZE, 0)
    for i = 1, J_SIZE do j[i] = false end
    p.json = j
  end
  return j
end

-- ,"version":...,"node_version":... of p's process: read again when a new
-- process starts (a deploy changed them) -> text
local function meta_json(p)
  local j = cache_of(p)
  local at, d = p.pm_uptime or p.created_at, p.decl
  -- (M0 + 1..5: at, d, version or false, node's version, text)
  local fresh = not (j[M0 + 1] == at and j[M0 + 2] == d)
  if not fresh and j[M0 + 4] ~= nil then return j[M0 + 5] end
  local version
  if fresh then version = M.package_version(d) else version = j[M0 + 3] end
  local nv = M.node_version(d, fresh)
  local text = (version and (',"version":' .. util.encode_text(version)) or "")
    .. (nv and (',"node_version":' .. util.encode_text(nv)) or "")
  j[M0 + 1], j[M0 + 2], j[M0 + 3], j[M0 + 4], j[M0 + 5] = at, d, version or false, nv, text
  return text
end

-- The part of pm2_env that changes only with the declaration, encoded
-- once per declaration (a list of 2,000 apps is then mostly concatenation):
-- JSON objects' members without the braces, as four texts: the
-- declaration's own members and the ones most declarations share (the
-- journal's encoding of them, app.members_json, kept there: not copied
-- into each description's), and the record's own and shared ones (its
-- folder, script, interpreter, file and user: one string for the apps of
-- one file, as app.members_json's shared text). -> members, shared
-- members, own, shared own
local function static_json(p)
  local j = cache_of(p)
  local own = j[J_STATIC]
  local d = p.decl
  -- (a scale changes d.instances in place)
  if own and j[J_DECL] == d and j[J_LEARNED] == d.learned_listen and j[J_INSTANCES] == d.instances then
    -- (J_WHOLE: a declaration with a member named as a computed one: its
    -- members are left out of it and were encoded with the record's)
    if j[J_WHOLE] then return "", "", own, "" end
    local mo, ms = appdecl.members_view(d)
    return mo, ms, own, j[J_STATIC_SHARED]
  end
  local t = {
    pm_id = p.pm_id,
    pm_pid_path = p.pid_path,
    created_at = p.created_at,
    NODE_APP_INSTANCE = p.instance,
    unique_id = p.uid_marker,
  }
  local ts = {
    pm_cwd = d.cwd,
    pm_exec_path = d.script,
    exec_interpreter = exec_interpreter(d),
    origin = p.origin and p.origin.path or nil,
    username = username_of(d),
    node_args = d.interpreter_args and util.array(d.interpreter_args) or nil, -- (PM2's name of them)
  }
  local drop
  for k in pairs(COMPUTED) do
    if d[k] ~= nil then drop = COMPUTED end
  end
  local mo, ms = appdecl.members_view(d, drop)
  own = util.encode_text(t):sub(2, -2)
  local owns = util.encode_text(ts):sub(2, -2)
  if drop then
    local all = {}
    for _, text in ipairs({ mo, ms, owns, own }) do
      if text ~= "" then all[#all + 1] = text end
    end
    own, mo, ms, owns = table.concat(all, ","), "", "", ""
  end
  j[J_STATIC], j[J_DECL], j[J_LEARNED], j[J_INSTANCES], j[J_WHOLE] = own, d, d.learned_listen, d.instances,
    drop ~= nil
  j[J_STATIC_SHARED] = owns
  return mo, ms, own, owns
end

-- JSON members written by hand, as pieces of text (a list of 2,000 apps
-- makes 30,000 of them; most pieces are strings that exist already, so a
-- list makes little garbage): nil leaves the member out, as cjson does.
local encode_string, utf8_clean = cjson.encode, util.utf8_clean
local function jstr(s) return utf8_clean(encode_string(s)) end
local channel_m -- (pm.channel, required when first used: it loads after this module)
local function channel_mod()
  channel_m = channel_m or require "pm.channel"
  return channel_m
end
local function member(parts, n, key, v)
  if v == nil then return n end
  local t = type(v)
  local text
  if t == "string" then text = jstr(v)
  elseif t == "number" then text = util.json_number(v)
  elseif t == "boolean" then text = v and "true" or "false"
  elseif v == util.null then text = "null"
  else text = util.encode_text(v) end
  parts[n + 1] = key
  parts[n + 2] = text
  return n + 2
end

-- ---- a selection of fields (a client asks for what it shows) ----

-- pm2_env's members that are not the declaration's own, by name
local ENV = {
  status = function(p) return p.status end,
  pm_uptime = function(p) return p.pm_uptime or p.created_at end,
  restart_time = function(p) return p.restart_time end,
  unstable_restarts = function(p) return p.unstable_restarts end,
  exit_code = function(p) return p.exit_code == nil and p.exit_signal and util.null or p.exit_code end,
  exit_signal = function(p) return p.exit_signal end,
  prev_restart_delay = function(p) return p.prev_restart_delay end,
  error = function(p) return p.error end,
  notify = function(p) return p.notify end,
  ready = function(p) return p.ready end,
  last_hook_error = function(p) return p.last_hook_error end,
  log_error = function(p) return p.logs_missing end,
  pm_out_log_path = function(p) return p.out_path or applogs.path(p, "out") end,
  pm_err_log_path = function(p) return p.err_path or applogs.path(p, "err") end,
  pm_log_path = function(p) return p.log_path end,
  pm_id = function(p) return p.pm_id end,
  pm_cwd = function(p) return p.decl.cwd end,
  pm_exec_path = function(p) return p.decl.script end,
  exec_interpreter = function(p) return exec_interpreter(p.decl) end,
  pm_pid_path = function(p) return p.pid_path end,
  created_at = function(p) return p.created_at end,
  NODE_APP_INSTANCE = function(p) return p.instance end,
  unique_id = function(p) return p.uid_marker end,
  origin = function(p) return p.origin and p.origin.path or nil end,
  namespace = function(p) return p.decl.namespace or "default" end,
  name = function(p) return p.name end,
  username = function(p) return username_of(p.decl) end,
  version = function(p) meta_json(p); return p.json[M0 + 3] or nil end,
  node_version = function(p) meta_json(p); return p.json[M0 + 4] or nil end,
}

-- ---- the app's environment flattened into pm2_env (PM2's shape) ----

--[[ PM2 copies an app's environment into pm2_env (its daemon then sets
its own fields over it): p.pm2_env.NODE_ENV. So does pm, but for the names
of pm2_env's own members and of app attributes: in PM2 a variable named
`watch` or `instances` overrides the attribute, in what pm2_env says and
in what the daemon does; in pm the declaration alone governs an app, and
pm2_env says what governs it (the variable is in pm2_env.env). ]]
local KEEP = { env = true, events = true, changes = true, env_remove = true }
for k in pairs(ENV) do KEEP[k] = true end
for k in pairs(appdecl.schema) do KEEP[k] = true end

local function inner(t)
  if next(t) == nil then return "" end
  return util.encode_text(t):sub(2, -2)
end

-- Whether pm2_env keeps name for itself, or for d's attribute of that name
local function kept(name, d) return KEEP[name] or d[name] ~= nil end

-- members (a decoded object) and their text -> the text without the names
-- pm2_env keeps (d: also those of d's members)
local function flat_text(members, text, d)
  for k in pairs(members) do
    if KEEP[k] or (d and d[k] ~= nil) then
      local rest = {}
      for k2, v in pairs(members) do
        if not (KEEP[k2] or (d and d[k2] ~= nil)) then rest[k2] = v end
      end
      return inner(rest)
    end
  end
  return text
end

-- JSON members' text (no braces) -> their values, a table ({} for none
-- or a text that is not an object's members)
local function members_of(text)
  local vars = text ~= "" and util.decode("{" .. text .. "}") or {}
  return type(vars) == "table" and vars or {}
end

-- The part of an app's environment it shares with the environment it was
-- started from (launch.lua's env_json[1], one string for many apps) ->
-- { vars, text } (flattened), kept for the few such strings there are.
local shared_flat, shared_count = {}, 0
local function shared_of(text)
  local c = shared_flat[text]
  if c then return c end
  local vars = members_of(text)
  c = { vars = vars, text = flat_text(vars, text) }
  if shared_count >= 64 then shared_flat, shared_count = {}, 0 end
  shared_flat[text] = c
  shared_count = shared_count + 1
  return c
end

-- p's environment flattened, in p.json from F0: [F0 + 1] env and [F0 +
-- 2] decl (what it was made from), [F0 + 3] the shared part's variables,
-- [F0 + 4] the shared part's text, [F0 + 5] its own part's text, [F0 + 6]
-- its own part's variables (decoded when first asked: a list never asks);
-- made again when the environment of its process changes (once per start,
-- not once per description). The shared text and its own stay apart: one
-- copy of the shared text for all the apps started from one environment,
-- not one in each. -> p.json
local function flat_of(p)
  local e, d = p.env_json or false, p.decl
  local j = cache_of(p)
  if j[F0 + 2] == d and j[F0 + 1] == e then return j end
  local shared, vars, text
  if e then
    shared = shared_of(e[1])
    vars = members_of(e[2])
    text = flat_text(vars, e[2], d)
    vars = nil -- (decoded again when asked: kept, it cost more than the text)
  else -- (no process yet: the declared environment)
    shared = shared_of("")
    vars = d.env or {}
    text = flat_text(vars, inner(vars), d)
  end
  local stext = shared.text
  for k in pairs(d) do -- (a member of d that is no attribute of the schema: rare)
    if not KEEP[k] and shared.vars[k] ~= nil then stext = flat_text(shared.vars, stext, d); break end
  end
  j[F0 + 1], j[F0 + 2], j[F0 + 3], j[F0 + 4], j[F0 + 5], j[F0 + 6] = e, d, shared.vars, stext, text, vars or false
  return j
end

-- A variable of p's environment as pm2_env shows it flattened (nil for
-- the names pm2_env keeps for itself).
local function flat_value(p, name)
  if kept(name, p.decl) then return nil end
  local f = flat_of(p)
  local vars = f[F0 + 6]
  if not vars then
    vars = members_of(f[F0 + 1][2])
    f[F0 + 6] = vars
  end
  local v = vars[name]
  if v == nil then v = f[F0 + 3][name] end
  return v
end

-- ---- a selection's fields ----

local selections = setmetatable({}, { __mode = "v" }) -- fields' text -> compiled

--[[ fields: a list of "name", "pid", "pm_id", "monit" (or "monit.memory",
"monit.cpu") and "pm2_env.KEY" (any member of pm2_env but its env and
events) -> a compiled selection | nil, err ]]
function M.selection(fields)
  if type(fields) ~= "table" or #fields == 0 or #fields > 256 then
    return nil, "fields must be a list of 1 to 256 names"
  end
  for _, f in ipairs(fields) do
    if type(f) ~= "string" then return nil, "fields must be strings" end
  end
  local key = table.concat(fields, ",")
  local sel = selections[key]
  if sel then return sel end
  sel = { top = {}, env = {} }
  for _, f in ipairs(fields) do
    local head, rest = f:match("^([%w_]+)%.?(.*)$")
    if (head == "name" or head == "pid" or head == "pm_id") and rest == "" then
      sel.top[#sel.top + 1] = head
    elseif head == "monit" and (rest == "" or rest == "memory" or rest == "cpu") then
      sel.monit = true
    elseif head == "pm2_env" and rest:match("^[%w_]+$") and rest ~= "env" and rest ~= "events" then
      -- (attr: an attribute's name, read from the declaration; the
      -- environment is looked at only for the other names)
      sel.env[#sel.env + 1] = { name = rest, key = ',"' .. rest .. '":', get = ENV[rest],
        attr = KEEP[rest] and not appdecl.PRIVATE[rest] }
    else
      return nil, "no such field: " .. f
    end
  end
  selections[key] = sel
  return sel
end

-- brief "table" (the wire's, README): what `pm list` showed before a client
-- named its own fields
M.TABLE_FIELDS = { "name", "pid", "pm_id", "monit", "pm2_env.namespace", "pm2_env.exec_mode",
  "pm2_env.instances", "pm2_env.status", "pm2_env.pm_uptime", "pm2_env.restart_time",
  "pm2_env.uid", "pm2_env.watch", "pm2_env.notify" }

local function selected_into(parts, n, p, sel, mem, cpu)
  local d = p.decl
  local sep = "{"
  for _, k in ipairs(sel.top) do
    parts[n + 1] = sep .. '"' .. k .. '":'
    parts[n + 2] = k == "name" and jstr(p.name) or ("%d"):format(k == "pid" and (p.pid or 0) or p.pm_id)
    n = n + 2
    sep = ","
  end
  if sel.monit then
    parts[n + 1] = ('%s"monit":{"memory":%.0f,"cpu":%s}'):format(sep, mem or 0, tostring(cpu or 0))
    n = n + 1
    sep = ","
  end
  if #sel.env > 0 then
    parts[n + 1] = sep .. '"pm2_env":{'
    n = n + 1
    local first = n
    for _, f in ipairs(sel.env) do
      local v
      if f.get then
        v = f.get(p)
      elseif f.attr then
        v = d[f.name]
        if type(v) == "function" then v = nil end
      elseif not KEEP[f.name] then
        v = d[f.name] -- (a member of d that no attribute of the schema names)
        if v == nil then v = flat_value(p, f.name) end
        if type(v) == "function" then v = nil end
      end
      n = member(parts, n, f.key, v)
    end
    if n > first then parts[first + 1] = parts[first + 1]:sub(2) end -- (no comma first)
    parts[n + 1] = "}"
    n = n + 1
    sep = ","
  end
  parts[n + 1] = sep == "{" and "{}" or "}"
  return n + 1
end

-- p's events as JSON text, kept (proc.event empties the place)
local function events_json(p)
  local j = cache_of(p)
  local hj = j[J_HISTORY]
  if not hj then
    hj = "[" .. table.concat(p.history, ",") .. "]"
    j[J_HISTORY] = hj
  end
  return hj
end

-- pm2_env's members after static_json's up to its environment (status,
-- logs, restarts, exit, readiness, metrics, versions, events, changes),
-- as pieces of JSON text appended to parts after index n -> the new last
-- index. (The events follow it: describe_into, a text of their own that
-- the state's cached text would hold a copy of.)
local function state_into(parts, n, p, changes)
  n = member(parts, n, ',"status":', p.status)
  n = member(parts, n, ',"pm_out_log_path":', p.out_path or applogs.path(p, "out"))
  n = member(parts, n, ',"pm_err_log_path":', p.err_path or applogs.path(p, "err"))
  n = member(parts, n, ',"pm_log_path":', p.log_path) -- (PM2's: the combined log_file, when one)
  n = member(parts, n, ',"pm_uptime":', p.pm_uptime or p.created_at)
  n = member(parts, n, ',"restart_time":', p.restart_time)
  n = member(parts, n, ',"unstable_restarts":', p.unstable_restarts)
  -- (null when a signal ended it, as in PM2: Node's exit code then)
  n = member(parts, n, ',"exit_code":', p.exit_code == nil and p.exit_signal and util.null or p.exit_code)
  n = member(parts, n, ',"exit_signal":', p.exit_signal)
  n = member(parts, n, ',"prev_restart_delay":', p.prev_restart_delay)
  n = member(parts, n, ',"error":', p.error)
  n = member(parts, n, ',"notify":', p.notify)
  n = member(parts, n, ',"ready":', p.ready)
  n = member(parts, n, ',"last_hook_error":', p.last_hook_error)
  -- (a log file that could not be opened: what pm start says)
  n = member(parts, n, ',"log_error":', p.logs_missing)
  -- (@pm2/io's metrics and actions of the process: PM2's axm_monitor, {}
  -- when none, and axm_actions)
  parts[n + 1] = channel_mod().axm_json(p)
  n = n + 2
  parts[n] = meta_json(p)
  local ch = changes and changes[p]
  if ch then n = member(parts, n, ',"changes":', util.array(ch)) end
  return n
end

-- pm2_env's last members: the environment, flattened and as env, as
-- pieces (the texts an app's environment is made of are shared: an app's
-- description holds no copy of them)
local function env_into(parts, n, p)
  local d = p.decl
  if d.env_remove then n = member(parts, n, ',"env_remove":', util.array(d.env_remove)) end
  local f = flat_of(p)
  if f[F0 + 4] ~= "" then
    parts[n + 1] = ","
    parts[n + 2] = f[F0 + 4]
    n = n + 2
  end
  if f[F0 + 5] ~= "" then
    parts[n + 1] = ","
    parts[n + 2] = f[F0 + 5]
    n = n + 2
  end
  local e = p.env_json
  if e then
    parts[n + 1] = ',"env":{'
    parts[n + 2] = e[1]
    parts[n + 3] = (e[1] ~= "" and e[2] ~= "") and "," or ""
    parts[n + 4] = e[2]
    parts[n + 5] = "}"
    n = n + 5
  else
    parts[n + 1] = ',"env":'
    parts[n + 2] = util.encode_text(d.env or {})
    n = n + 2
  end
  return n
end

--[[ state_into's text, kept with the values it was made from
(p.json from S0; J_STATE says it is there), made again only when one of those differs. The comparison
is of values (a string, a number), so no path that changes an app has to
say so: a list of 2,000 unchanged apps is 2,000 comparisons of ~17 values.
A state with a table among them (notify, last_hook_error: they may change
in place) is made each time. ]]
local function state_json(p)
  local j = cache_of(p)
  local exit_code = p.exit_code == nil and p.exit_signal and util.null or p.exit_code
  local notify, hook_err = p.notify, p.last_hook_error
  local mon, meta = channel_mod().axm_json(p), meta_json(p)
  if j[J_STATE] and j[S0 + 1] == p.status and j[S0 + 2] == p.out_path and j[S0 + 3] == p.err_path
      and j[S0 + 4] == p.log_path and j[S0 + 5] == (p.pm_uptime or p.created_at)
      and j[S0 + 6] == p.restart_time and j[S0 + 7] == p.unstable_restarts and j[S0 + 8] == exit_code
      and j[S0 + 9] == p.exit_signal and j[S0 + 10] == p.prev_restart_delay and j[S0 + 11] == p.error
      and j[S0 + 12] == notify and j[S0 + 13] == p.ready and j[S0 + 14] == hook_err and j[S0 + 15] == mon
      and j[S0 + 16] == meta and j[S0 + 17] == p.logs_missing then
    return j[S0 + 18]
  end
  local parts = new_table(40, 0)
  local text = table.concat(parts, "", 1, state_into(parts, 0, p, nil))
  if type(notify) == "table" or type(hook_err) == "table" or type(p.error) == "table"
      or type(p.ready) == "table" or p.out_path == nil or p.err_path == nil then
    j[J_STATE] = false -- (made each time: in place changes, or paths worked out each time)
    return text
  end
  j[S0 + 1], j[S0 + 2], j[S0 + 3], j[S0 + 4], j[S0 + 5], j[S0 + 6] = p.status, p.out_path, p.err_path,
    p.log_path, p.pm_uptime or p.created_at, p.restart_time
  j[S0 + 7], j[S0 + 8], j[S0 + 9], j[S0 + 10], j[S0 + 11], j[S0 + 12] = p.unstable_restarts, exit_code,
    p.exit_signal, p.prev_restart_delay, p.error, notify
  j[S0 + 13], j[S0 + 14], j[S0 + 15], j[S0 + 16], j[S0 + 17] = p.ready, hook_err, mon, meta, p.logs_missing
  j[S0 + 18] = text
  j[J_STATE] = true
  return text
end

-- One description as pieces of JSON text appended to parts after index n
-- (DESIGN section 5) -> the new last index. brief: without the
-- environment (what the process table needs).
local HEAD = '{"name":%s,"pid":%d,"pm_id":%d,"monit":{"memory":%.0f,"cpu":%s},"pm2_env":{'
-- text and a comma after it appended to parts after index n, unless it is
-- "" (members of an object without its braces) -> the new last index
local function member_text(parts, n, text)
  if text == "" then return n end
  parts[n + 1], parts[n + 2] = text, ","
  return n + 2
end
local function describe_into(parts, n, p, brief, cached, changes, now)
  if type(brief) == "table" then -- a selection
    local mem, cpu
    if brief.monit then mem, cpu = sample(p, cached, now) end
    return selected_into(parts, n, p, brief, mem, cpu)
  end
  local mem, cpu = sample(p, cached, now)
  mem, cpu = mem or 0, cpu or 0
  -- (kept while the sample is the same: a burst of lists makes none)
  local j = cache_of(p)
  local pid = p.pid or 0
  -- (H0 + 1..6: name, pid, memory, cpu, id, text)
  if not (j[H0 + 1] == p.name and j[H0 + 2] == pid and j[H0 + 3] == mem and j[H0 + 4] == cpu
      and j[H0 + 5] == p.pm_id) then
    j[H0 + 1], j[H0 + 2], j[H0 + 3], j[H0 + 4], j[H0 + 5] = p.name, pid, mem, cpu, p.pm_id
    -- (a name is UTF-8: app.lua refuses one that is not)
    j[H0 + 6] = HEAD:format(encode_string(p.name), pid, p.pm_id, mem, tostring(cpu))
  end
  n = n + 1
  parts[n] = j[H0 + 6]
  local mo, ms, own, owns = static_json(p)
  n = member_text(parts, member_text(parts, member_text(parts, n, mo), ms), owns)
  n = n + 1
  parts[n] = own
  if changes and changes[p] then
    n = state_into(parts, n, p, changes)
  else
    n = n + 1
    parts[n] = state_json(p)
  end
  if p.history then
    parts[n + 1] = ',"events":'
    parts[n + 2] = events_json(p)
    n = n + 2
  end
  if not brief then n = env_into(parts, n, p) end
  parts[n + 1] = "}}"
  return n + 1
end

local function describe_json(p, brief)
  pkg_seen = {}
  local parts = {}
  local n = describe_into(parts, 0, p, brief)
  return table.concat(parts, "", 1, n)
end
M.describe_json = describe_json

-- A description as a Lua table (hooks, the hook API).
function M.describe(p, brief) return util.decode(describe_json(p, brief)) end

-- The descriptions of list as one JSON array, handed to the RPC layer
-- as text pieces (util.raw): no table per app, no re-encoding.
-- cached: monit from the last sample only, /proc is not read (the replies
-- of start, stop, restart and delete, as PM2's carry no fresh monit).
-- changes: record -> what an ecosystem file changed of its declaration.
function M.describe_list(list, brief, cached, changes)
  if brief == "table" then brief = M.selection(M.TABLE_FIELDS) end
  pkg_seen = {}
  -- (an app is about 22 pieces: room for 24 each, so that the list of
  -- 10,000 is made once, not grown by doubling and copied)
  local parts, n = new_table(#list * 24 + 2, 0), 1
  local now = core.mono()
  parts[1] = "["
  for i, p in ipairs(list) do
    if i > 1 then n = n + 1; parts[n] = "," end
    n = describe_into(parts, n, p, brief, cached, changes, now)
  end
  parts[n + 1] = "]"
  return util.raw(parts)
end

-- The same as Lua tables. cached: monit from the last sample (/proc is
-- not read: a hook's pm.list of 500 apps), decoded as one text.
function M.describe_tables(list, cached)
  if cached then
    if #list == 0 then return {} end
    return util.decode(util.raw_text(M.describe_list(list, nil, true)))
  end
  local out = {}
  for i, p in ipairs(list) do out[i] = M.describe(p) end
  return out
end

-- Calls an app's hook with a copy of its description.
function M.hook(p, name, ...)
  local fn = p.decl[name]
  if type(fn) ~= "function" then return nil end
  return hooks.call_app(p, ("%s of %s"):format(name, p.name), fn, util.deep_copy(M.describe(p)), ...)
end

return M
