-- pm export: app declarations turned into a scheduler's own files
-- (systemd units, Kubernetes manifests, a Nomad job, a Compose file).
-- This module decides what is shared by every target: which attributes a
-- declaration sets, what each target maps of them and what it cannot (one
-- line per app and attribute, with the reason), the printers (YAML through
-- lua-yaml's emitter, keys in a fixed order; JSON with the same order),
-- units. Each target is a module of its own (export_<target>.lua) with
-- `attrs` (attribute -> true when mapped, or the reason it is not) and
-- `files(decls, opts) -> { { name, text }, ... }`.
local core = require "pm.core"
local util = require "pm.util"
local appdecl = require "pm.app"

local M = {}

M.TARGETS = { systemd = "systemd", kubernetes = "kube", nomad = "nomad", compose = "compose" }
M.ALIASES = { k8s = "kubernetes", kube = "kubernetes", ["docker-compose"] = "compose" }

-- The placeholder image of Kubernetes and Compose without --image
M.PLACEHOLDER_IMAGE = "REPLACE-WITH-YOUR-IMAGE:latest"

-- ---- what a declaration sets ----

-- Attributes that never stand for a choice of the user's here: derived by
-- normalize, PM2's that pm has no use for, pm's own bookkeeping.
local NOT_A_CHOICE = { name = true, script = true, cwd = true, interpreter = true, force = true,
  vizion = true, automation = true, pmx = true, source_map_support = true,
  disable_source_map_support = true, disable_trace = true, trace = true, post_update = true,
  append_env_to_name = true, max = true, node_version = true, version = true, description = true,
  deep_monitoring = true, options = true, ipc = true, env_file = true, filter_env = true }

local function same(a, b)
  if type(a) ~= type(b) then return false end
  if type(a) ~= "table" then return a == b end
  return next(a) == nil and next(b) == nil
end

-- The attributes d sets to something else than the default, sorted, with
-- what has no meaning alone left out (args are part of the command, env
-- is always mapped).
function M.set_attributes(d)
  local out = {}
  for k, spec in pairs(appdecl.schema) do
    local v = d[k]
    local chosen = v ~= nil and not NOT_A_CHOICE[k] and not same(v, spec[2])
    if chosen and type(v) == "table" and next(v) == nil then chosen = false end
    if k == "exec_mode" then chosen = v == "cluster_mode" end
    if k == "instance_var" or k == "increment_var" then chosen = v ~= nil and (d.instances or 1) > 1 end
    if k == "namespace" then chosen = v ~= nil and v ~= "default" end
    if k == "args" or k == "interpreter_args" or k == "env" then chosen = false end
    if chosen then out[#out + 1] = k end
  end
  table.sort(out)
  return out
end

-- What every target but systemd says of the same attributes
M.COMMON = {
  on_exit = "a Lua hook: runs in pm only (--keep-pm keeps it)",
  on_start = "a Lua hook: runs in pm only (--keep-pm keeps it)",
  on_stop = "a Lua hook: runs in pm only (--keep-pm keeps it)",
  watch = "restart on file changes: no equivalent",
  ignore_watch = "restart on file changes: no equivalent",
  watch_delay = "restart on file changes: no equivalent",
  exec_mode = "cluster mode (Node's shared listen): instances are separate processes",
  shutdown_with_message = "a stop by IPC message: no equivalent (the stop signal is sent)",
  input = "a stdin pipe (pm send, pm attach): no equivalent",
  log_rotate = "log rotation: the scheduler's logging keeps the output",
  max_log_size = "log rotation: the scheduler's logging keeps the output",
  retain = "log rotation: the scheduler's logging keeps the output",
  compress = "log rotation: the scheduler's logging keeps the output",
  log_type = "JSON log lines: the scheduler's logging frames the output",
  time = "time-stamped log lines: the scheduler's logging stamps them",
  log_date_format = "time-stamped log lines: the scheduler's logging stamps them",
  merge_logs = "log files: the scheduler's logging keeps the output",
  pid_file = "a pid file: no equivalent",
  learned_listen = true, -- (as listen)
  env_file = true, -- (its variables are in the environment)
}

-- -> { { app, attr, why }, ... } for decls under target module T
function M.unmapped(T, decls, opts)
  local out = {}
  if opts.keep_pm then return out end
  for _, d in ipairs(decls) do
    for _, k in ipairs(M.set_attributes(d)) do
      local why = T.attrs[k]
      if why == nil then why = M.COMMON[k] end
      if type(why) == "function" then why = why(d, opts) end
      if why == nil then why = "no equivalent" end
      if type(why) == "string" then out[#out + 1] = { app = d.name, attr = k, why = why } end
    end
    for _, extra in ipairs(T.extra and T.extra(d, opts) or {}) do
      out[#out + 1] = { app = d.name, attr = extra[1], why = extra[2] }
    end
  end
  return out
end

function M.unmapped_lines(list)
  local lines = {}
  for _, u in ipairs(list) do lines[#lines + 1] = ("%s: %s: %s"):format(u.app, u.attr, u.why) end
  return lines
end

-- ---- units ----

-- ms -> whole seconds, at least 1 (Kubernetes' probes)
function M.seconds(ms) return math.max(1, math.ceil((ms or 0) / 1000)) end

-- ms -> "1600ms" | "2s" (systemd's and Compose's durations)
function M.duration(ms)
  ms = math.floor((ms or 0) + 0.5)
  if ms % 1000 == 0 then return ("%ds"):format(ms / 1000) end
  return ("%dms"):format(ms)
end

-- The environment of d's exported processes, names sorted -> { {k, v} }
function M.env_list(d)
  local names = {}
  for k in pairs(d.env or {}) do names[#names + 1] = k end
  table.sort(names)
  local out = {}
  for _, k in ipairs(names) do out[#out + 1] = { k, tostring(d.env[k]) } end
  return out
end

-- The argv d runs (its interpreter, interpreter_args, script, args);
-- pm_bin: the pm that runs Lua apps (`pm run`)
function M.argv(d, pm_bin)
  local argv = {}
  if d.interpreter == "pm" then
    argv = { pm_bin or "pm", "run" }
  elseif d.interpreter and d.interpreter ~= "none" then
    argv[1] = d.interpreter
    for _, a in ipairs(d.interpreter_args or {}) do argv[#argv + 1] = tostring(a) end
  end
  argv[#argv + 1] = d.script
  for _, a in ipairs(d.args or {}) do argv[#argv + 1] = tostring(a) end
  return argv
end

-- The argv d runs in a container: its interpreter by name (found on the
-- image's PATH: the host's path of it means nothing there)
function M.container_argv(d)
  local argv = M.argv(d, "pm")
  if d.interpreter and d.interpreter ~= "none" and d.interpreter ~= "pm" then
    argv[1] = util.basename(argv[1])
  end
  return argv
end

-- The argv of `pm runtime` running d alone (--keep-pm); file: the
-- ecosystem file as the unit or container sees it
function M.runtime_argv(d, opts, file, pm_bin)
  local argv = { pm_bin or "pm", "runtime", file, "--only", d.name, "--grace", ("%d"):format(d.kill_timeout) }
  if opts.env then argv[#argv + 1] = "--env"; argv[#argv + 1] = opts.env end
  return argv
end

-- --keep-pm: what the scheduler gives pm runtime to stop (after SIGTERM)
-- beyond the app's own kill_timeout (its --grace)
M.KEEP_PM_MARGIN = 5000
function M.stop_time(d, opts)
  return d.kill_timeout + (opts.keep_pm and M.KEEP_PM_MARGIN or 0)
end
function M.stop_signal(d, opts)
  return opts.keep_pm and "SIGTERM" or d.kill_signal
end

-- The TCP ports d publishes: its listen addresses', learned ones', its port
-- -> sorted list of numbers
function M.ports(d)
  local set, out = {}, {}
  local sockets = require "pm.sockets"
  for _, key in ipairs({ "listen", "learned_listen" }) do
    for _, spec in ipairs(d[key] or {}) do
      local a = sockets.parse(spec)
      if a and a.kind == "tcp" then set[a.port] = true end
    end
  end
  if d.port then set[d.port] = true end
  for p in pairs(set) do out[#out + 1] = p end
  table.sort(out)
  return out
end

-- A name as a DNS-1123 label (Kubernetes' names, Nomad's and Compose's
-- services): lower case letters, digits and '-', at most 63 characters
function M.dns_name(name)
  local s = name:lower():gsub("[^a-z0-9-]", "-"):gsub("^-+", ""):gsub("-+$", "")
  if s == "" then s = "app" end
  if #s > 63 then s = s:sub(1, 63):gsub("-+$", "") end
  return s
end

-- health -> { kind = "http"|"tcp"|"exec", host, port, path, command,
-- interval, timeout, retries } (ms; pm's defaults filled)
function M.health(d)
  local h = d.health
  if not h then return nil end
  local D = require("pm.health").DEFAULTS
  local out = { interval = h.interval or D.interval, timeout = h.timeout or D.timeout,
    retries = h.retries or D.retries }
  if h.http then
    local host, port, path = tostring(h.http):match("^http://([^/:]+):?(%d*)(.*)$")
    out.kind, out.host, out.port, out.path, out.url = "http", host, tonumber(port) or 80,
      path ~= "" and path or "/", tostring(h.http)
  elseif h.tcp then
    local host, port = tostring(h.tcp):match("^%[?([^%]]*)%]?:(%d+)$")
    out.kind, out.host, out.port = "tcp", host, tonumber(port)
  else
    out.kind, out.command = "exec", tostring(h.exec)
  end
  return out
end

-- ---- printers: key order ----

-- Keys come in this order (the rest sorted after them): what a person
-- reads first in each format.
local FIRST = {}
for i, k in ipairs({ "apiVersion", "kind", "metadata", "name", "namespace", "labels", "spec", "Job",
  "ID", "Name", "Type", "Datacenters", "Namespace", "Meta", "TaskGroups", "Count", "Driver", "User",
  "Config", "image", "entrypoint", "command", "args", "workingDir", "working_dir", "env", "Env",
  "environment", "user", "replicas", "selector", "template", "containers", "ports", "deploy",
  "depends_on", "restart", "healthcheck", "test", "interval", "timeout", "retries" }) do
  FIRST[k] = i
end

local function sorted_keys(t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table.sort(keys, function(a, b)
    local fa, fb = FIRST[a], FIRST[b]
    if fa and fb then return fa < fb end
    if fa or fb then return fa ~= nil end
    return tostring(a) < tostring(b)
  end)
  return keys
end

local LIST = setmetatable({}, { __mode = "k" })
-- t marked as a list (an empty one prints [] rather than {})
function M.list(t)
  t = t or {}
  LIST[t] = true
  return t
end
local function is_list(t) return LIST[t] or t[1] ~= nil end

-- ---- YAML (lua-yaml's emitter: libyaml escapes; we choose the quoting) ----

-- Strings every YAML reader (YAML 1.1's PyYAML as docker-compose's, 1.2's)
-- reads back as the same string when plain; others are double-quoted.
local RESERVED = { y = 1, n = 1, yes = 1, no = 1, on = 1, off = 1, ["true"] = 1, ["false"] = 1,
  null = 1, ["~"] = 1 }
local function plain_ok(s)
  if not s:match("^[A-Za-z_/][A-Za-z0-9_./@-]*$") then return false end
  return not RESERVED[s:lower()]
end

local function yaml_events(v, emit)
  local t = type(v)
  if t == "table" then
    if is_list(v) then
      emit({ type = "SEQUENCE_START", style = "BLOCK" })
      for _, e in ipairs(v) do yaml_events(e, emit) end
      emit({ type = "SEQUENCE_END" })
    else
      emit({ type = "MAPPING_START", style = "BLOCK" })
      for _, k in ipairs(sorted_keys(v)) do
        yaml_events(tostring(k), emit)
        yaml_events(v[k], emit)
      end
      emit({ type = "MAPPING_END" })
    end
  elseif t == "number" then
    local s = (v % 1 == 0 and math.abs(v) < 2 ^ 53) and ("%d"):format(v) or util.json_number(v)
    emit({ type = "SCALAR", value = s, plain_implicit = true, quoted_implicit = true, style = "PLAIN" })
  elseif t == "boolean" then
    emit({ type = "SCALAR", value = tostring(v), plain_implicit = true, quoted_implicit = true, style = "PLAIN" })
  else
    local s = tostring(v)
    emit({ type = "SCALAR", value = s, plain_implicit = true, quoted_implicit = true,
      style = plain_ok(s) and "PLAIN" or "DOUBLE_QUOTED" })
  end
end

-- docs (a list of tables) -> YAML text, one document each | nil, err
function M.yaml(docs)
  local ok, yaml = pcall(require, "yaml")
  if not ok then return nil, "YAML output needs Debian's lua-yaml (apt-get install lua-yaml)" end
  local e = yaml.emitter()
  local out
  local function emit(ev)
    local eok, s = e.emit(ev)
    if not eok then error("YAML: " .. tostring(s), 0) end
    out = s
  end
  local pok, err = pcall(function()
    emit({ type = "STREAM_START", encoding = "UTF8" })
    for _, doc in ipairs(docs) do
      emit({ type = "DOCUMENT_START", implicit = false })
      yaml_events(doc, emit)
      emit({ type = "DOCUMENT_END", implicit = true })
    end
    emit({ type = "STREAM_END" })
  end)
  if not pok then return nil, err end
  return out
end

-- ---- JSON, indented, in the same key order ----

local function json_into(v, ind, buf)
  local t = type(v)
  if t == "table" then
    local pad = ("  "):rep(ind + 1)
    if is_list(v) then
      if #v == 0 then buf[#buf + 1] = "[]"; return end
      buf[#buf + 1] = "[\n"
      for i, e in ipairs(v) do
        buf[#buf + 1] = pad
        json_into(e, ind + 1, buf)
        buf[#buf + 1] = i < #v and ",\n" or "\n"
      end
      buf[#buf + 1] = ("  "):rep(ind) .. "]"
    else
      local keys = sorted_keys(v)
      if #keys == 0 then buf[#buf + 1] = "{}"; return end
      buf[#buf + 1] = "{\n"
      for i, k in ipairs(keys) do
        buf[#buf + 1] = pad .. (util.encode(tostring(k)):gsub("\\/", "/")) .. ": "
        json_into(v[k], ind + 1, buf)
        buf[#buf + 1] = i < #keys and ",\n" or "\n"
      end
      buf[#buf + 1] = ("  "):rep(ind) .. "}"
    end
  elseif t == "number" then
    buf[#buf + 1] = (v % 1 == 0 and math.abs(v) < 2 ^ 53) and ("%d"):format(v) or util.json_number(v)
  else
    buf[#buf + 1] = (util.encode(v):gsub("\\/", "/"))
  end
end

function M.json(v)
  local buf = {}
  json_into(v, 0, buf)
  buf[#buf + 1] = "\n"
  return table.concat(buf)
end

-- "# line" for each of lines, after a first line saying where they come from
function M.comment(lines, prefix)
  prefix = prefix or "# "
  local out = {}
  -- (any control character a space: YAML ends a line at \r too)
  for _, l in ipairs(lines) do out[#out + 1] = prefix .. (l:gsub("%c", " ")) .. "\n" end
  return table.concat(out)
end

-- The head comment of a file: what made it, what it could not map
function M.head(opts, unmapped, apps)
  local lines = { ("generated by pm export --to %s from %s%s"):format(opts.to, opts.source,
    opts.env and (" --env " .. opts.env) or "") }
  if opts.keep_pm then lines[#lines + 1] = "--keep-pm: each app runs under pm runtime (hooks and policies kept)" end
  local mine = {}
  for _, u in ipairs(unmapped) do
    if not apps or apps[u.app] then mine[#mine + 1] = u end
  end
  if #mine > 0 then
    lines[#lines + 1] = "not mapped (pm keeps doing these on one host; --keep-pm keeps them here):"
    for _, l in ipairs(M.unmapped_lines(mine)) do lines[#lines + 1] = "  " .. l end
  end
  return lines
end

-- ---- --out: a folder only the caller (and root) may change ----

local S_IWGO, S_ISVTX = 18, 512 -- (0022, 01000)

-- path's components, from "/" -> false when one is missing | true | nil, err.
-- Each (a link too) is the caller's or root's; a folder others may write
-- to is passed through only when sticky (they cannot rename what is not
-- theirs), and the last is the caller's and written by no one else.
local function walk(path, me)
  local cur = ""
  local comps = {}
  for c in path:gmatch("[^/]+") do comps[#comps + 1] = c end
  for i = 0, #comps do
    if i > 0 then cur = cur .. "/" .. comps[i] end
    local p = cur == "" and "/" or cur
    local st = core.stat(p, true)
    if not st then return false end
    local last = i == #comps
    if st.uid ~= me and st.uid ~= 0 then
      return nil, ("%s is another user's (uid %d)"):format(p, st.uid)
    end
    if st.type ~= "link" then
      if st.type ~= "dir" then return nil, p .. ": not a folder" end
      if last and (st.uid ~= me or bit.band(st.mode, S_IWGO) ~= 0) then
        return nil, p .. ": a folder of yours that only you may write to is needed"
      end
      if not last and bit.band(st.mode, S_IWGO) ~= 0 and bit.band(st.mode, S_ISVTX) == 0 then
        return nil, p .. ": others may write to it (a link put there would take the write)"
      end
    end
  end
  return true
end

-- Whether only root may change dir, as written and resolved (systemd opens
-- a unit's append: paths as root, through links: in a folder a user may
-- change, that user chooses the file)
function M.root_only(dir)
  if walk(dir, 0) ~= true then return false end
  local real = core.realpath(dir)
  return real ~= nil and walk(real, 0) == true
end

--[[ The folder of --out, made when missing (0755) -> its real path (what
the files are written into) | nil, err. pm may run as root: a folder, or a
link on the way to it, that another user can change would let them choose
where root writes (a link to /etc/systemd/system), so the path as given and
the path it resolves to are both walked. ]]
function M.out_dir(dir)
  local me = core.getuid()
  local abs = util.absolute(dir)
  local ok, err = walk(abs, me)
  if ok == nil then return nil, err end
  if ok == false then
    -- the existing part is safe: make the rest, then look again
    local mok, merr = util.mkdir_p(abs, 493)
    if not mok then return nil, abs .. ": " .. tostring(merr) end
    ok, err = walk(abs, me)
    if not ok then return nil, err or (abs .. ": gone") end
  end
  local real, rerr = core.realpath(abs)
  if not real then return nil, tostring(rerr) end
  ok, err = walk(real, me)
  if not ok then return nil, err or (real .. ": gone") end
  return real
end

-- ---- the entry ----

--[[ decls (checked declarations, dependencies first) -> files, unmapped,
warnings | nil, err. opts: to (a target or an alias), image, keep_pm,
env (the --env NAME the declarations were read with), source (what was
exported, for the head comment), file (the ecosystem file, absolute;
needed by keep_pm), pm_bin, caller_user (the user a pm not run by root
runs apps as: systemd's User= of an app that names none). ]]
function M.export(decls, opts)
  local to = M.ALIASES[opts.to] or opts.to
  if not M.TARGETS[to] then
    return nil, ("unknown target '%s' (systemd, kubernetes, nomad or compose)"):format(tostring(opts.to))
  end
  if opts.keep_pm and not opts.file then
    return nil, "--keep-pm needs an ecosystem file (pm runtime runs it)"
  end
  if #decls == 0 then return nil, "no app to export" end
  local o = util.shallow_copy(opts)
  o.to = to
  o.pm_bin = o.pm_bin or "pm"
  if to ~= "systemd" then
    -- names there are DNS labels: two apps must not become one (a file or a
    -- service written over the other's)
    local seen = {}
    for _, d in ipairs(decls) do
      local n = M.dns_name(d.name)
      if seen[n] then
        return nil, ("apps '%s' and '%s' would both be named '%s' in %s (lower case letters, digits and "
          .. "'-'): rename one"):format(seen[n], d.name, n, to)
      end
      seen[n] = d.name
    end
  end
  local T = require("pm.export_" .. M.TARGETS[to])
  if o.keep_pm then
    -- pm runtime runs an app's instances itself: one unit or replica each
    local copies = {}
    for i, d in ipairs(decls) do
      copies[i] = appdecl.copy(d)
      copies[i].instances = 1
    end
    decls = copies
  end
  local unmapped = M.unmapped(T, decls, o)
  local warnings = {}
  local files, err = T.files(decls, o, unmapped, warnings)
  if not files then return nil, err end
  if (to == "kubernetes" or to == "compose") and not o.keep_pm then
    -- the commands and folders are this host's paths: said, as the image is
    local dirs, seen = {}, {}
    for _, d in ipairs(decls) do
      if d.cwd and not seen[d.cwd] then seen[d.cwd] = true; dirs[#dirs + 1] = d.cwd end
    end
    if #dirs > 0 then
      warnings[#warnings + 1] = ("the containers run the apps at this host's paths (%s): the image must hold "
        .. "them there (or --keep-pm with the ecosystem folder in /app, as ecosystem/Dockerfile)")
        :format(table.concat(dirs, ", "))
    end
  end
  return files, unmapped, warnings
end

-- For the container targets (Kubernetes, Compose): warns when no --image
-- was given (what names stands for the manifests or the services), and
-- sets where the file is inside the image (--keep-pm's command)
function M.container_prelude(opts, warnings, names)
  if not opts.image then
    warnings[#warnings + 1] = ("no --image: the %s name %s; set the image your apps are in")
      :format(names, M.PLACEHOLDER_IMAGE)
  end
  opts.container_file = opts.file and ("/app/" .. require("pm.util").basename(opts.file))
end

return M
