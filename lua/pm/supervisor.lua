-- The supervisor: the process table keyed by pm_id and the life of each
-- process through the statuses launching, online, stopping, stopped,
-- errored and waiting restart. Exits go to the policy; the policy decides.
local core = require "pm.core"
local util = require "pm.util"
local cjson = require "cjson"
local policy = require "pm.policy"
local bus = require "pm.bus"
local log = require "pm.log"
local hooks = require "pm.hooks"
local cron = require "pm.cron"
local watch = require "pm.watch"
local sockets = require "pm.sockets"
local health = require "pm.health"
local appdecl = require "pm.app"

local M = {}

local procs = {}      -- pm_id -> proc
local by_pid = {}     -- pid -> proc (live main processes)
local next_id = 0
local home, pm_bin
local notify = {}     -- set by the daemon: changed() after every change

local SIGKILL = core.signals.SIGKILL

M.MAX_INSTANCES = 4096

function M.init(opts)
  home = opts.home
  pm_bin = opts.pm_bin
  notify.changed = opts.changed or function() end
  notify.errored = opts.errored
  notify.declared = opts.declared or function() end
  bus.on_change(function() M.update_taps() end)
end

local function now() return core.now() end

-- ---- events ----

local function flat_env(p)
  return {
    name = p.name, pm_id = p.pm_id, namespace = p.decl.namespace, status = p.status,
    restart_time = p.restart_time, unstable_restarts = p.unstable_restarts,
    pm_uptime = p.pm_uptime, exit_code = p.exit_code,
  }
end

local EVENT_JSON = {} -- event name -> its JSON text

local function event(p, what, extra, manually)
  -- the last events of each process, for pm describe
  -- (kept as JSON text: a record costs one string, and lists reuse it)
  local h = p.history or {}
  p.history = h
  local name = EVENT_JSON[what]
  if not name then name = cjson.encode(what); EVENT_JSON[what] = name end
  local rec = ('{"at":%d,"event":%s'):format(now(), name)
  if extra then
    for _, k in ipairs({ "code", "signal", "reason" }) do
      local v = extra[k]
      if v ~= nil and v ~= util.null then rec = rec .. ',"' .. k .. '":' .. util.encode(v) end
    end
  end
  h[#h + 1] = rec .. "}"
  if #h > 10 then table.remove(h, 1) end
  p.history_json = nil
  if not bus.wants("process:event") then return end
  local data = { event = what, process = flat_env(p), at = now(), manually = manually or false }
  for k, v in pairs(extra or {}) do data[k] = v end
  bus.publish("process:event", data)
end
M.event = event

-- ---- log files ----

local function with_id(path, p)
  if p.decl.instances > 1 and not p.decl.merge_logs then
    local stem, ext = path:match("^(.*)(%.[^./]*)$")
    if stem then return stem .. "-" .. p.pm_id .. ext end
    return path .. "-" .. p.pm_id
  end
  return path
end

local function log_path(p, which)
  local d = p.decl
  local given
  if which == "out" then given = d.out_file
  elseif which == "err" then given = d.error_file
  else given = d.log_file end
  if given == "NULL" or given == "/dev/null" then return "/dev/null" end
  if given then return with_id(util.absolute(given, d.cwd), p) end
  if which == "log" then return nil end
  local file = ("%s/logs/%s-%s.log"):format(home, d.name:gsub("/", "_"),
    which == "out" and "out" or "error")
  return with_id(file, p)
end

-- Log files are shared by every pipe that writes to the same path (merged
-- instances, the combined log_file), so one writer rotates each file.
local files = {} -- path -> { file = logfile, refs = n }

local function acquire_file(path, d)
  if not path or path == "/dev/null" then return nil end
  local f = files[path]
  if f then
    f.refs = f.refs + 1
    return f.file
  end
  if d.uid then
    -- the daemon runs as root here: a file the app's user planted (a
    -- symlink, or a file of someone else's) is not written or handed over
    local st = core.stat(path, true)
    if st and (st.type == "link" or st.uid ~= d.uid) then
      log.warn("log %s of %s: refused, it is %s", path, d.name,
        st.type == "link" and "a symbolic link" or ("owned by uid " .. st.uid))
      return nil
    end
  end
  local lopts = { max_size = d.max_log_size, retain = d.retain }
  local file, err = core.logfile(path, lopts)
  if not file and not core.stat(util.dirname(path)) then
    -- a directory that is not there yet (opened first: it nearly always is)
    util.mkdir_p(util.dirname(path))
    file, err = core.logfile(path, lopts)
  end
  if not file then
    log.warn("cannot open log %s: %s", path, err)
    return nil
  end
  if d.uid or d.gid then core.chown(path, d.uid or -1, d.gid or -1) end
  files[path] = { file = file, refs = 1 }
  return file
end

local function release_file(path)
  local f = path and files[path]
  if not f then return end
  f.refs = f.refs - 1
  if f.refs <= 0 then
    f.file:close()
    files[path] = nil
  end
end

-- PM2's moment-style log_date_format -> strftime, %L for milliseconds
local moment = { YYYY = "%Y", YY = "%y", MM = "%m", DD = "%d", HH = "%H", mm = "%M",
  ss = "%S", SSS = "%L", Z = "%%Q", ZZ = "%z", A = "%p" }
function M.time_format(fmt)
  local out, i = {}, 1
  while i <= #fmt do
    local matched
    for _, len in ipairs({ 4, 3, 2, 1 }) do
      local tok = fmt:sub(i, i + len - 1)
      if moment[tok] then
        out[#out + 1] = moment[tok]
        i = i + len
        matched = true
        break
      end
    end
    if not matched then
      local c = fmt:sub(i, i)
      out[#out + 1] = c == "%" and "%%%%" or c
      i = i + 1
    end
  end
  return table.concat(out)
end

local function pipe_opts(p, which)
  local d = p.decl
  local opts = { files = {} }
  local main = which == "out" and p.out_path or p.err_path
  for _, path in ipairs({ main, p.log_path }) do
    if path and path ~= "/dev/null" then
      local f = acquire_file(path, d)
      if f then
        opts.files[#opts.files + 1] = f
        p.acquired[#p.acquired + 1] = path -- released with exactly these
      else
        p.logs_missing = true
      end
    end
  end
  if d.log_date_format then
    opts.time_format = M.time_format(d.log_date_format)
  elseif d.time then
    opts.time_format = "%Y-%m-%dT%H:%M:%S"
  end
  if d.log_type == "json" then
    opts.json = { app_name = p.name, process_id = p.pm_id, type = which }
  end
  return opts
end

local function release_logs(p)
  if not p.log_files then return end
  for _, path in ipairs(p.log_files) do release_file(path) end
  p.log_files = nil
end

local function tap_for(p, which)
  local event_name = which == "out" and "log:out" or "log:err"
  return function(data)
    bus.publish(event_name, {
      process = { pm_id = p.pm_id, name = p.name, namespace = p.decl.namespace },
      at = now(), data = data,
    })
  end
end

-- pm runtime: every line also goes to the daemon's own stdout/stderr,
-- prefixed with the app's name.
local echo = false
function M.set_echo(on) echo = on end

local function echo_for(p, which, publish)
  local out = which == "out" and io.stdout or io.stderr
  return function(data)
    local prefix = p.name .. "| "
    out:write(prefix, (data:gsub("\n(.)", "\n" .. prefix:gsub("%%", "%%%%") .. "%1")))
    if data:sub(-1) ~= "\n" then out:write("\n") end
    out:flush()
    if publish then publish(data) end
  end
end

local function set_taps(p)
  for _, which in ipairs({ "out", "err" }) do
    local lp = p.pipes and p.pipes[which]
    if lp and not lp:closed() then
      local name = which == "out" and "log:out" or "log:err"
      local publish = bus.wants(name) and tap_for(p, which) or nil
      if echo then lp:set_tap(echo_for(p, which, publish)) else lp:set_tap(publish) end
    end
  end
end

function M.update_taps()
  for _, p in pairs(procs) do set_taps(p) end
end

-- Reopens every log file (a deleted one, or its directory, comes back);
-- a file that could not be opened when its app started is tried again.
function M.reload_logs()
  for path, f in pairs(files) do
    util.mkdir_p(util.dirname(path))
    f.file:reopen()
  end
  for _, p in pairs(procs) do
    if p.logs_missing and p.pipes then
      p.logs_missing = nil
      local old = p.log_files
      p.acquired = {}
      for _, which in ipairs({ "out", "err" }) do
        local lp = p.pipes[which]
        if lp and not lp:closed() then lp:set_files(pipe_opts(p, which).files) end
      end
      p.log_files = old
      release_logs(p)
      p.log_files = p.acquired
    end
  end
  return true
end

-- Empties the log files of the procs; returns how many.
function M.flush(list)
  local n = 0
  for _, p in ipairs(list) do
    for _, path in ipairs({ p.out_path, p.err_path, p.log_path }) do
      if path ~= "/dev/null" then
        local f = files[path]
        if f then
          f.file:truncate()
          n = n + 1
        elseif core.truncate(path) then
          n = n + 1
        end
      end
    end
  end
  return n
end

-- ---- spawning ----

-- filter_env: true drops the caller's whole environment, a list drops the
-- variables that start with one of its entries (PM2's rule).
local function filtered(filter, k)
  if filter == true then return true end
  if type(filter) == "string" then filter = { filter } end
  if type(filter) ~= "table" then return false end
  for _, prefix in ipairs(filter) do
    if k:sub(1, #prefix) == prefix then return true end
  end
  return false
end

local function build_env(p)
  local env = {}
  local d = p.decl
  for k, v in pairs(p.environ or {}) do
    if not filtered(d.filter_env, k) then env[k] = v end
  end
  for _, k in ipairs(d.env_remove or {}) do env[k] = nil end
  for k, v in pairs(d.env) do env[k] = v end
  local inc = d.increment_var
  if inc and p.instance > 0 then
    local base = tonumber(env[inc])
    if base then env[inc] = tostring(math.floor(base) + p.instance) end
  end
  env.pm_id = tostring(p.pm_id)
  env.name = p.name
  env[p.decl.instance_var or "NODE_APP_INSTANCE"] = tostring(p.instance)
  env.NODE_APP_INSTANCE = tostring(p.instance)
  env.PM_HOME = home
  if p.channel_fd then
    env.NODE_CHANNEL_FD = tostring(p.channel_fd)
    env.NODE_CHANNEL_SERIALIZATION_MODE = "json"
  end
  env.PM_APP_UID = p.uid_marker -- lets a new daemon recognise this app's processes
  if M.notify_path then env.NOTIFY_SOCKET = M.notify_path end
  if p.decl.watchdog then env.WATCHDOG_USEC = tostring(math.floor(p.decl.watchdog * 1000)) end
  if p.listen then
    env.LISTEN_FDS = tostring(#p.listen.names)
    env.LISTEN_FDNAMES = table.concat(p.listen.names, ":")
    if p.listen.map then env.PM_LISTEN_MAP = p.listen.map end
  else
    env.LISTEN_FDS, env.LISTEN_FDNAMES, env.PM_LISTEN_MAP = nil, nil, nil
  end
  local list, n = {}, 0
  for k, v in pairs(env) do n = n + 1; list[n] = k .. "=" .. v end
  return list, env
end

-- The JSON of an app's environment in two parts: the members it shares
-- with the environment it was started from (one string for every app of
-- the same start that overrides the same names) and its own. 2,000 apps
-- keep 2,000 small strings and one large one instead of 2,000 large ones.
local shared_json = setmetatable({}, { __mode = "k" }) -- environ -> names -> text
local function inner(t)
  if next(t) == nil then return "" end
  return util.encode(t):sub(2, -2)
end
local function env_json(environ, env)
  environ = environ or {}
  local own, changed = {}, {}
  for k, v in pairs(env) do
    if environ[k] ~= v then own[k] = v end
  end
  for k in pairs(environ) do
    if env[k] ~= environ[k] then changed[#changed + 1] = k end
  end
  table.sort(changed)
  local by_names = shared_json[environ]
  if not by_names then
    by_names = {}
    shared_json[environ] = by_names
  end
  local names = table.concat(changed, "\0")
  local text = by_names[names]
  if not text then -- (the shared members: environ's, but for the changed names)
    local shared = {}
    for k, v in pairs(env) do
      if environ[k] == v then shared[k] = v end
    end
    text = inner(shared)
    by_names[names] = text
  end
  return { text, inner(own) }
end

-- The environment of p's next process, as the "K=V" list spawn takes and
-- as the JSON its description shows. Built again only when something it
-- depends on changed: a crash loop reuses it restart after restart.
local function env_of(p)
  local l = p.listen
  local key = l and (table.concat(l.names, ":") .. (l.map or "")) or ""
  local c = p.env_cache
  if c and c.environ == p.environ and c.decl == p.decl and c.key == key
    and c.channel_fd == p.channel_fd and c.notify == M.notify_path then
    return c.list
  end
  local list, env = build_env(p)
  p.env_cache = { environ = p.environ, decl = p.decl, key = key, channel_fd = p.channel_fd,
    notify = M.notify_path, list = list }
  p.env_json = env_json(p.environ, env)
  return list
end

local function command(d)
  local argv = {}
  local file
  if d.interpreter == "none" then
    file = d.script
    argv[1] = d.script
  elseif d.interpreter == "pm" then
    file = pm_bin
    argv[1] = pm_bin
    argv[2] = "run"
  else
    file = d.interpreter
    argv[1] = d.interpreter
    if d.exec_mode == "cluster_mode" and M.cluster_preload and util.basename(d.interpreter):match("^node") then
      -- server.listen(port) becomes listen on the socket the daemon holds
      argv[#argv + 1] = "-r"
      argv[#argv + 1] = M.cluster_preload
    end
    for _, a in ipairs(d.interpreter_args) do argv[#argv + 1] = a end
  end
  if d.interpreter ~= "none" then argv[#argv + 1] = d.script end
  for _, a in ipairs(d.args) do argv[#argv + 1] = a end
  return file, argv
end

-- Pid files. One is rewritten in place on each start (a crash loop
-- costs no new file), and removed when the app stops running, not
-- between an exit and its immediate restart. A removed pid file of
-- PM_HOME/pids is kept aside in pids/.spare and renamed into place for
-- the next one: creating files right after deleting as many costs ext4
-- a scan of every recently freed inode per new file (starting 100 apps
-- after deleting 100 spent a third of its time there).
local SPARE_MAX = 4096
local spare_dir, spares, spare_seq = nil, {}, 0

local function pool_of(p)
  if not spare_dir then return false end
  local v = p.pid_pooled -- reset when the declaration changes
  if v == nil then
    local dir, path = home .. "/pids/", p.pid_path
    v = path:sub(1, #dir) == dir and not path:find("/", #dir + 1, true)
    p.pid_pooled = v
  end
  return v
end

function M.init_spares()
  spare_dir = home .. "/pids/.spare"
  if not core.mkdir(spare_dir, 448) then spare_dir = nil; return end -- 0700
  for name, kind in pairs(core.listdir(spare_dir) or {}) do
    local n = tonumber(name)
    if kind == "file" and n then
      spares[#spares + 1] = spare_dir .. "/" .. name
      spare_seq = math.max(spare_seq, n)
    end
  end
end

local function write_pidfile(p)
  local path = p.pid_path
  if not path then return end
  if not p.pidfile_live and #spares > 0 and pool_of(p) then
    local spare = table.remove(spares)
    if not os.rename(spare, path) then os.remove(spare) end
  end
  local text, k = p.pid .. "\n", p.kept
  if k and k.pid_fd then -- a crash loop: the pid is written in place
    core.put_file(k.pid_fd, text, k.pid_len)
    k.pid_len = #text
  elseif k then
    k.pid_fd = core.open(path, "u")
    if k.pid_fd then
      core.put_file(k.pid_fd, text)
      k.pid_len = #text
    else
      core.put_file(path, text)
    end
  else
    core.put_file(path, text)
  end
  p.pidfile_live = true
end

local function drop_pidfile(p)
  local path = p.pid_path
  if not path then return end
  p.pidfile_live = nil
  local k = p.kept
  if k and k.pid_fd then core.close(k.pid_fd); k.pid_fd = nil end
  if #spares < SPARE_MAX and pool_of(p) and core.stat(path) then
    spare_seq = spare_seq + 1
    local spare = ("%s/%d"):format(spare_dir, spare_seq)
    if os.rename(path, spare) then
      spares[#spares + 1] = spare
      return
    end
  end
  local st = core.stat(path)
  if st and st.type == "file" then os.remove(path) end -- (never a directory pid_file names)
end

local launch -- forward

-- Calls an app's hook with a copy of its description.
local function run_hook(p, name, ...)
  local fn = p.decl[name]
  if type(fn) ~= "function" then return nil end
  return hooks.call(("%s of %s"):format(name, p.name), fn, util.deep_copy(M.describe(p)), ...)
end

-- ---- rules that restart a running app: memory, cron, watch ----

local memory_timer

local function rule_restart(p, reason)
  if p.status ~= "online" and p.status ~= "launching" then
    if reason == "cron" and not p.manual_stop and (p.status == "stopped" or p.status == "errored") then
      log.info("app %s (%d): cron start", p.name, p.pm_id)
      p.restart_time = p.restart_time + 1
      event(p, "restart", { reason = reason }, false)
      launch(p)
    end
    return
  end
  log.info("app %s (%d): restart (%s)", p.name, p.pm_id, reason)
  M.restart(p, { reason = reason }, function(err)
    if err then log.warn("app %s (%d): %s restart failed: %s", p.name, p.pm_id, reason, err) end
  end)
end
M.rule_restart = rule_restart

local function check_memory()
  local any = false
  for _, p in pairs(procs) do
    local limit = p.decl.max_memory_restart
    if limit and p.status == "online" and p.pid > 0 then
      any = true
      local tree = core.proc_tree(p.pid)
      if tree.rss > limit then
        log.warn("app %s (%d) uses %d bytes, over max_memory_restart %d", p.name, p.pm_id, tree.rss, limit)
        rule_restart(p, "memory")
      end
    end
  end
  if not any and memory_timer then
    memory_timer:close()
    memory_timer = nil
  end
end

local function arm_memory()
  if not memory_timer then memory_timer = core.timer(1000, 1000, check_memory) end
end

local function arm_cron(p)
  if p.cron_timer then p.cron_timer:close(); p.cron_timer = nil end
  local expr = p.decl.cron_restart
  if not expr or p.deleted then return end
  local spec = cron.parse(expr)
  if not spec then return end
  local now_s = core.now() / 1000
  local at = cron.next(spec, now_s)
  if not at then return end
  p.cron_timer = core.timer((at - now_s) * 1000, 0, function()
    p.cron_timer = nil
    rule_restart(p, "cron")
    arm_cron(p)
  end)
end

local function arm_watch(p)
  local d = p.decl
  if not d.watch or d.watch == false or p.deleted then
    watch.unwatch(p.pm_id)
    return
  end
  local roots = {}
  if type(d.watch) == "table" then
    for _, w in ipairs(d.watch) do roots[#roots + 1] = util.absolute(tostring(w), d.cwd) end
  elseif type(d.watch) == "string" then
    roots[1] = util.absolute(d.watch, d.cwd)
  else
    roots[1] = d.cwd
  end
  local exact = { [log_path(p, "out")] = true, [log_path(p, "err")] = true }
  local ignore = watch.ignorer(d.cwd, d.ignore_watch, exact, roots)
  local ok, err = watch.watch(p.pm_id, roots, ignore, function(path)
    if p.watch_timer or p.manual_stop then return end
    p.watch_timer = core.timer(d.watch_delay or 1000, 0, function()
      p.watch_timer = nil
      log.info("app %s (%d): change in %s", p.name, p.pm_id, path)
      rule_restart(p, "watch")
    end)
  end)
  if not ok then log.warn("app %s: watch: %s", p.name, err) end
end

local function cancel_timer(p)
  if p.timer then p.timer:close(); p.timer = nil end
end

local function finish_waiters(p, err)
  local w = p.waiters
  p.waiters = nil
  for _, fn in ipairs(w or {}) do fn(err) end
end

-- ---- the IPC channel (Node's: one JSON value per line) ----

local function proc_ref(p)
  return { pm_id = p.pm_id, name = p.name, namespace = p.decl.namespace }
end

local function on_message(p, line)
  local msg, err = util.decode(line)
  if msg == nil then
    p.bad_messages = (p.bad_messages or 0) + 1
    if p.bad_messages <= 3 or p.bad_messages % 1000 == 0 then
      log.warn("app %s (%d) sent a message that is not JSON (%d so far): %s", p.name, p.pm_id,
        p.bad_messages, err)
    end
    return
  end
  if msg == "ready" then
    -- (a crash loop's channel may still hold the dead process's "ready"
    -- when the next one is being launched: only a live process is ready)
    if p.pid and p.pid > 0 then M.mark_ready(p, "ipc") end
    return
  end
  if type(msg) == "table" and type(msg.cmd) == "string" and msg.cmd:match("^NODE_") then
    return -- Node's own internal messages
  end
  local name = "process:msg"
  if type(msg) == "table" and type(msg.type) == "string" and msg.type ~= "" then name = msg.type end
  if not bus.wants(name) then return end
  local data = msg
  if type(msg) == "table" and msg.type ~= nil and msg.data ~= nil then data = msg.data end
  bus.publish(name, { process = proc_ref(p), at = now(), data = data, raw = msg })
end

function M.open_channel(p, fd)
  if p.channel then p.channel:close() end
  local channel
  channel = core.stream(fd, function(line)
    if line then on_message(p, line) end
  end, function()
    if p.channel == channel then p.channel = nil end
  end, 16 * 1024 * 1024)
  p.channel = channel
end

-- Sends a value to the app over its channel -> true | nil, err
function M.send(p, value, internal)
  if not p.channel or p.channel:closed() or not p.pid or p.pid == 0
      or (p.status == "stopping" and not internal) then
    return nil, ("process %d (%s) has no IPC channel (not running, or ipc = false)"):format(p.pm_id, p.name)
  end
  local ok, line = pcall(util.encode, value)
  if not ok then return nil, "cannot encode the message: " .. tostring(line) end
  return p.channel:write(line .. "\n")
end

-- In a crash loop (an immediate restart after a fast exit) the daemon
-- keeps the write ends of an app's output pipes, and its pid file, open:
-- the next process of the loop gets the same pipes (its logpipes, files
-- and watchers stay as they are) and the pid is written in place. What a
-- process of the loop wrote is read in order, before what the next one
-- writes. Released when the loop ends (a stable run, a stop, a delay, a
-- new declaration).
local function unkeep(p)
  local k = p.kept
  if not k then return end
  p.kept = nil
  core.close(k.out_w)
  core.close(k.err_w)
  if k.pid_fd then core.close(k.pid_fd) end
  if k.ipc_child then core.close(k.ipc_child) end
  if k.timer then k.timer:close() end
end

local function end_channel(p)
  if p.channel then p.channel:close(); p.channel = nil end
end

-- Whether p's next process can have the pipes of its last one: what that
-- one wrote is then read, its last line ended (logpipe:cut).
local function reusable(p)
  local k, pipes = p.kept, p.pipes
  return k and k.of == p.decl and pipes and pipes.out:cut() and pipes.err:cut()
end

-- Closes what a spec opened for nothing (a failed start); a crash loop's
-- kept pipes and channel go too.
local function drop_spec(p, spec)
  if spec.reused then
    end_channel(p)
    unkeep(p)
    return
  end
  core.close(spec.out_r); core.close(spec.out_w)
  core.close(spec.err_r); core.close(spec.err_w)
end

-- What a process of p needs before its spawn -> spec | nil, err (p is
-- then errored): its pipes, sockets, channel and the spawn's options.
local function launch_prepare(p)
  local d = p.decl
  cancel_timer(p)
  p.status = "launching"
  local looping = p.looping
  p.looping = nil
  if p.paths_of ~= d then -- the same on every restart of a declaration
    p.out_path = log_path(p, "out")
    p.err_path = log_path(p, "err")
    p.log_path = log_path(p, "log")
    p.paths_of = d
  end
  local spec = { looping = looping }
  if looping and reusable(p) then
    spec.reused = true
    spec.out_w, spec.err_w = p.kept.out_w, p.kept.err_w
  else
    unkeep(p)
    local out_r, out_w = core.pipe(1048576)
    local err_r, err_w = core.pipe(1048576)
    if not out_r or not err_r then
      if out_r then core.close(out_r); core.close(out_w) end
      p.status = "errored"
      p.error = "pipe: " .. tostring(out_w or err_w)
      return nil, p.error
    end
    spec.out_r, spec.out_w, spec.err_r, spec.err_w = out_r, out_w, err_r, err_w
  end
  local file, argv = command(d)
  local fds = { -1, spec.out_w, spec.err_w }
  p.listen = nil
  local specs = M.listen_specs(d)
  if specs then
    local socks, serr = sockets.acquire(p.name, specs, d.cwd)
    if not socks then
      drop_spec(p, spec)
      p.status = "errored"
      p.error = serr
      log.error("app %s (%d) cannot start: %s", p.name, p.pm_id, serr)
      return nil, serr
    end
    local names, map = {}, {}
    for i, sk in ipairs(socks) do
      fds[#fds + 1] = sk.fd
      names[i] = sk.name
      if sk.port then map[#map + 1] = ('"%d":%d'):format(sk.port, i + 2) end
    end
    p.listen = { names = names, map = "{" .. table.concat(map, ",") .. "}" }
  end
  if d.ipc ~= false then
    local k = p.kept
    if spec.reused and k.ipc_child and p.channel and p.channel:cut() then
      -- the loop's channel: what the last process was sent and never read goes
      core.discard(k.ipc_child)
      fds[#fds + 1] = k.ipc_child
    else
      if k and k.ipc_child then core.close(k.ipc_child); k.ipc_child = nil end
      local ipc_parent, ipc_child = core.socketpair()
      if not ipc_parent then -- out of fds: the start fails, with why
        drop_spec(p, spec)
        p.status = "errored"
        p.error = "socketpair: " .. tostring(ipc_child)
        log.error("app %s (%d) cannot start: %s", p.name, p.pm_id, p.error)
        return nil, p.error
      end
      fds[#fds + 1] = ipc_child
      spec.ipc_parent, spec.ipc_child = ipc_parent, ipc_child
    end
    p.channel_fd = #fds - 1
  else
    p.channel_fd = nil
  end
  spec.opts = { file = file, args = argv, env = env_of(p), cwd = d.cwd,
    fds = fds, setsid = true, uid = d.uid, gid = d.gid, listen_pid = p.listen ~= nil }
  return spec
end

-- The process of p once spawned (pid), or its failure (nil, err).
-- Returns true, or nil, err (p is then errored).
local function launch_finish(p, spec, pid, err)
  local d = p.decl
  local ipc_parent = spec.ipc_parent
  if not spec.reused then
    if pid and spec.looping then
      p.kept = { out_w = spec.out_w, err_w = spec.err_w, of = d }
      -- a run that lasts min_uptime ends the loop: the daemon's copies go
      -- (the process has its own), not kept for as long as it runs
      local min = math.max(d.min_uptime or 1000, 10)
      p.kept.timer = core.timer(min, min, function()
        if p.pid and p.pid > 0 and p.started and core.mono() - p.started >= min then unkeep(p) end
      end)
    else
      core.close(spec.out_w)
      core.close(spec.err_w)
    end
  end
  if spec.ipc_child then
    if pid and p.kept then p.kept.ipc_child = spec.ipc_child else core.close(spec.ipc_child) end
  end
  if not pid then
    if not spec.reused then core.close(spec.out_r); core.close(spec.err_r) end
    unkeep(p)
    if ipc_parent then core.close(ipc_parent) end
    p.status = "errored"
    p.error = err
    p.pid = 0
    log.error("app %s (%d) failed to start: %s", p.name, p.pm_id, err)
    event(p, "exit", { code = 127, signal = util.null, reason = "exit" })
    return nil, err
  end
  p.pid = pid
  p.pgid = pid
  p.error = nil
  p.started = core.mono()
  p.pm_uptime = now()
  p.cpu_sample = nil
  by_pid[pid] = p
  if not spec.reused then
    p.acquired = {}
    p.logs_missing = nil
    p.pipes = {
      out = core.logpipe(spec.out_r, pipe_opts(p, "out"), function() end),
      err = core.logpipe(spec.err_r, pipe_opts(p, "err"), function() end),
    }
    -- the files stay open for the proc (its pipes may outlive the process)
    release_logs(p)
    p.log_files = p.acquired
    set_taps(p)
  end
  if ipc_parent then M.open_channel(p, ipc_parent) end
  write_pidfile(p)
  event(p, "start")
  p.manual_stop = nil
  p.ready = nil
  p.notify = nil
  p.health_failures = 0
  if p.decl.max_memory_restart then arm_memory() end
  M.arm_health(p)
  if d.wait_ready or d.health then
    -- launching until the app says it is ready (IPC, sd_notify, health)
    p.ready_timer = core.timer(d.listen_timeout or 3000, 0, function()
      p.ready_timer = nil
      if p.status == "launching" then
        log.warn("app %s (%d) did not say it is ready within listen_timeout %d ms: counted as ready",
          p.name, p.pm_id, d.listen_timeout or 3000)
        M.mark_ready(p, "listen_timeout")
      end
    end)
    notify.changed()
  else
    M.mark_ready(p, "start")
  end
  return true
end

-- Set by M.kill_leftovers: the daemon is exiting, no process starts any more.
local closing = false

-- Starts the process of p. Returns true, or nil, err (p is then errored).
launch = function(p)
  if closing or p.deleting or p.deleted then
    -- a start that a delete (or the daemon's exit) overtook: no process
    -- that nothing would ever stop (nor a crash loop's plumbing kept)
    p.status = "stopped"
    p.looping = nil
    end_channel(p)
    unkeep(p)
    return nil, closing and "the daemon is exiting" or ("%s is being deleted"):format(p.name)
  end
  local spec, err = launch_prepare(p)
  if not spec then return nil, err end
  return launch_finish(p, spec, core.spawn(spec.opts))
end

-- ---- readiness ----

-- The listen addresses of an app: `listen`, or for a Node app in cluster
-- mode its port (PM2 files run unchanged: the preload maps listen(port)).
function M.listen_specs(d)
  if d.listen and #d.listen > 0 then return d.listen end
  if d.exec_mode == "cluster_mode" and util.basename(d.interpreter or ""):match("^node") then
    local port = d.port or (d.env and d.env.PORT)
    if port then return { "tcp://:" .. tostring(port) } end
  end
end

function M.mark_ready(p, how)
  p.ready = how
  if p.status ~= "launching" then return end
  if p.ready_timer then p.ready_timer:close(); p.ready_timer = nil end
  p.status = "online"
  event(p, "online", { ready = how })
  run_hook(p, "on_start")
  notify.changed("runtime")
  local w = p.ready_waiters
  p.ready_waiters = nil
  for _, fn in ipairs(w or {}) do fn(true) end
end

-- why: a text, or a function of p giving it (made only when someone waits)
local function fail_ready(p, why)
  if p.status == "launching" then p.status = "errored" end
  if p.ready_timer then p.ready_timer:close(); p.ready_timer = nil end
  local w = p.ready_waiters
  p.ready_waiters = nil
  if w and type(why) == "function" then why = why(p) end
  for _, fn in ipairs(w or {}) do fn(false, why) end
end

M.fail_ready = fail_ready

local function exited_early(p) return ("%s exited before it was ready"):format(p.name) end

-- done(ok, err) once p is online, or failed to get there.
function M.when_ready(p, done)
  if p.status == "online" then return done(true) end
  if p.status ~= "launching" then
    return done(false, p.error or ("%s is %s"):format(p.name, p.status))
  end
  p.ready_waiters = p.ready_waiters or {}
  p.ready_waiters[#p.ready_waiters + 1] = done
end

-- sd_notify datagrams on NOTIFY_SOCKET, from an app's process or one of
-- its descendants.
function M.on_notify(pid, data)
  local p
  for _ = 1, 16 do
    if not pid or pid <= 1 then break end
    p = by_pid[pid]
    if p then break end
    local st = core.proc_stat(pid)
    pid = st and st.ppid
  end
  if not p or p.retired then return end
  p.notify = p.notify or {}
  for line in data:gmatch("[^\n]+") do
    local k, v = line:match("^([%w_]+)=(.*)$")
    if k == "READY" and v == "1" then
      M.mark_ready(p, "notify")
    elseif k == "STATUS" then
      p.notify.status = v
    elseif k == "RELOADING" then
      p.notify.reloading = v == "1"
    elseif k == "STOPPING" then
      p.notify.stopping = v == "1"
    elseif k == "WATCHDOG" and v == "1" then
      p.watchdog_last = core.mono()
    elseif k == "MAINPID" then
      p.notify.mainpid = tonumber(v)
    end
  end
end

-- ---- health checks and the watchdog ----

local function run_check(argv, timeout, done)
  local pid = core.spawn({ file = argv[1], args = argv, fds = { -1, -1, -1 }, setsid = true })
  if not pid then return done(nil) end
  local finished = false
  local t = core.timer(timeout, 0, function()
    if finished then return end
    finished = true
    core.killpg(pid, SIGKILL)
    done(nil)
  end)
  M.watch_child(pid, function(code)
    if finished then return end
    finished = true
    t:close()
    done(code)
  end)
end

function M.arm_health(p)
  if p.health_timer then p.health_timer:close(); p.health_timer = nil end
  if p.watchdog_timer then p.watchdog_timer:close(); p.watchdog_timer = nil end
  local d = p.decl
  if d.health then
    local h = d.health
    local interval = h.interval or health.DEFAULTS.interval
    local retries = h.retries or health.DEFAULTS.retries
    local busy = false
    local function tick()
      if busy or p.pid == 0 or p.status == "stopping" then return end
      busy = true
      health.probe(h, run_check, function(ok, err)
        busy = false
        if p.pid == 0 or p.status == "stopping" then return end
        if ok then
          p.health_failures = 0
          if p.status == "launching" then M.mark_ready(p, "health") end
          return
        end
        if p.status ~= "online" then return end
        p.health_failures = (p.health_failures or 0) + 1
        log.warn("app %s (%d): health check failed (%d/%d): %s", p.name, p.pm_id,
          p.health_failures, retries, tostring(err))
        if p.health_failures >= retries then
          event(p, "health", { failures = p.health_failures, error = tostring(err) })
          p.health_failures = 0
          M.rule_restart(p, "health")
        end
      end)
    end
    -- probe soon after start (readiness), then every interval
    p.health_timer = core.timer(math.min(interval, 200), interval, tick)
  end
  if d.watchdog then
    p.watchdog_last = nil
    p.watchdog_timer = core.timer(d.watchdog, math.max(50, d.watchdog / 4), function()
      if p.status ~= "online" or not p.watchdog_last then return end
      if core.mono() - p.watchdog_last > d.watchdog then
        log.warn("app %s (%d): no WATCHDOG=1 for %d ms", p.name, p.pm_id, d.watchdog)
        p.watchdog_last = nil
        M.rule_restart(p, "health")
      end
    end)
  end
end

-- Signals the process group and every descendant that left it.
-- (The tree is remembered: what outlives the main process is killed when
-- it exits.)
local function signal_tree(p, sig)
  if not p.pid or p.pid == 0 then return end
  local tree = core.proc_tree(p.pid)
  p.tree = p.tree or {}
  for _, pid in ipairs(tree) do
    if pid ~= p.pid then p.tree[pid] = (core.proc_stat(pid) or {}).start end
  end
  core.killpg(p.pgid, sig)
  for _, pid in ipairs(tree) do core.kill(pid, sig) end
end

-- Kills what is left of a stopped app's tree (descendants that left its
-- process group and ignored the stop signal).
local function kill_leftovers(p)
  for pid, start in pairs(p.tree or {}) do
    local st = core.proc_stat(pid)
    if st and st.state ~= "Z" and st.start == start then core.kill(pid, SIGKILL) end
  end
  p.tree = nil
end

-- ---- exits ----

local function apply_decision(p, decision, exit)
  p.unstable_restarts = decision.unstable_restarts
  p.prev_restart_delay = decision.prev_restart_delay
  if decision.action == "stop" then
    drop_pidfile(p)
    p.status = "stopped"
    event(p, "stop", nil, false)
  elseif decision.action == "errored" then
    drop_pidfile(p)
    p.status = "errored"
    log.warn("app %s (%d) exited too fast %d times in a row: errored", p.name, p.pm_id,
      p.unstable_restarts)
    event(p, "restart overlimit", { code = exit.code, signal = exit.signal })
    if notify.errored then notify.errored(p) end
  else
    local delay = decision.delay or 0
    local function go()
      p.timer = nil
      p.restart_time = p.restart_time + 1
      event(p, "restart", nil, false)
      if not launch(p) then drop_pidfile(p) end
    end
    if delay > 0 then
      end_channel(p)
      unkeep(p)
      drop_pidfile(p)
      p.status = "waiting restart"
      p.timer = core.timer(delay, 0, go)
    else
      -- after a fast exit: a crash loop (see unkeep), where the channel
      -- too goes to the next process once the loop keeps its pipes
      local fast = (decision.unstable_restarts or 0) > 0
      if not (fast and p.kept) then end_channel(p) end
      if fast then p.looping = true else unkeep(p) end
      go()
    end
  end
  if decision.action ~= "restart" then
    end_channel(p)
    unkeep(p)
  end
  -- an immediate restart changes only the counters and the pid
  notify.changed(decision.action == "restart" and "runtime" or nil)
end

-- Exits of helper processes (not apps) the daemon runs: pid -> fn(code, signum)
local helpers = {}
function M.watch_child(pid, fn) helpers[pid] = fn end

function M.on_child(pid, code, signum)
  local helper = helpers[pid]
  if helper then
    helpers[pid] = nil
    return helper(code, signum)
  end
  local p = by_pid[pid]
  if not p then return end -- an orphan adopted as subreaper, or a failed spawn
  by_pid[pid] = nil
  if p.retired then return p.on_exit(code, signum) end -- replaced by a reload
  -- the channel ends with the process (descendants may still hold it),
  -- unless the next process of a crash loop takes it (apply_decision)
  if p.health_timer then p.health_timer:close(); p.health_timer = nil end
  if p.watchdog_timer then p.watchdog_timer:close(); p.watchdog_timer = nil end
  if p.replacing then
    -- a reload's replacement died before it was ready: the old one stays
    local r = p.replacing
    p.replacing = nil
    end_channel(p)
    unkeep(p)
    core.killpg(p.pgid, SIGKILL)
    return r.failed(("exited with %s before it was ready"):format(
      code ~= nil and ("code " .. code) or util.signame(signum)))
  end
  local uptime = core.mono() - (p.started or core.mono())
  -- what is left of the group goes with its leader: no duplicates on restart
  core.killpg(p.pgid, SIGKILL)
  kill_leftovers(p)
  p.pid = 0
  p.ready = nil
  p.exit_code = code ~= nil and code or (128 + (signum or 0))
  p.exit_signal = util.signame(signum)
  local stopping = p.stopping
  local exit = { code = code, signal = p.exit_signal, uptime = uptime,
    reason = stopping and (p.stop_reason == "restart" and "stop" or p.stop_reason) or "exit" }
  event(p, "exit", { code = code == nil and util.null or code,
    signal = exit.signal or util.null, reason = exit.reason })
  fail_ready(p, exited_early)
  if stopping then
    end_channel(p)
    unkeep(p)
    drop_pidfile(p)
    if p.kill_timer then p.kill_timer:close(); p.kill_timer = nil end
    p.stopping = nil
    p.status = "stopped"
    event(p, "stop", nil, exit.reason == "stop")
    if p.stop_reason == "stop" then run_hook(p, "on_stop") end
    notify.changed()
    finish_waiters(p)
    return
  end
  local decision = policy.decide(p.decl, p, exit)
  if p.decl.on_exit then
    local v = run_hook(p, "on_exit", util.shallow_copy(exit))
    local hd, herr = hooks.decision(v)
    if herr then
      log.error("hook on_exit of %s: %s; the built-in policy decides", p.name, herr)
    elseif hd then
      decision.action, decision.delay = hd.action, hd.delay
    end
  end
  apply_decision(p, decision, exit)
end

-- ---- operations ----

-- Stops p; done(err) once its process is gone. reason: "stop" (a stop
-- asked for: it stays down) or the rule restarting it ("memory", ...).
function M.stop(p, done, reason)
  done = done or function() end
  reason = reason or "stop"
  if reason == "stop" then p.manual_stop = true end
  cancel_timer(p)
  if p.status == "stopping" then
    p.waiters[#p.waiters + 1] = done
    return
  end
  if not p.pid or p.pid == 0 then
    if p.status ~= "stopped" then
      p.status = "stopped"
      event(p, "stop", nil, true)
      notify.changed()
    end
    return done()
  end
  p.status = "stopping"
  p.stopping = true
  p.stop_reason = reason
  p.waiters = { done }
  if p.decl.shutdown_with_message and M.send(p, "shutdown", true) then
    log.info("app %s (%d): sent \"shutdown\"", p.name, p.pm_id)
  else
    signal_tree(p, util.signum(p.decl.kill_signal))
  end
  p.kill_timer = core.timer(p.decl.kill_timeout, 0, function()
    p.kill_timer = nil
    if p.status ~= "stopping" then return end
    log.warn("app %s (%d) still running %d ms after %s: SIGKILL", p.name, p.pm_id,
      p.decl.kill_timeout, p.decl.kill_signal)
    signal_tree(p, SIGKILL)
    p.kill_timer = core.timer(5000, 0, function()
      p.kill_timer = nil
      if p.status == "stopping" then
        log.error("app %s (%d) pid %d survived SIGKILL", p.name, p.pm_id, p.pid)
        finish_waiters(p, ("process %d of %s survived SIGKILL"):format(p.pid, p.name))
      end
    end)
  end)
  notify.changed()
end

local function start_stopped(p)
  p.unstable_restarts = 0
  p.prev_restart_delay = 0
  return launch(p)
end

-- Restarts p (stop, then start); opts.environ replaces its environment.
function M.restart(p, opts, done)
  opts = opts or {}
  M.stop(p, function(err)
    if err then return done(err) end
    if p.deleted or p.deleting then return done("deleted meanwhile: " .. p.name) end
    if p.status ~= "stopped" and p.status ~= "errored" then return done() end -- another call started it
    if opts.environ then p.environ = opts.environ end
    if opts.decl then M.redeclare(p, opts.decl) end
    p.restart_time = p.restart_time + 1
    event(p, "restart", opts.reason and { reason = opts.reason } or nil, opts.reason == nil)
    if opts.reason then
      -- a rule's restart is not a crash: the crash counters stay as they are
      local ok, serr = launch(p)
      return done(not ok and serr or nil)
    end
    local ok, serr = start_stopped(p)
    done(not ok and serr or nil)
  end, opts.reason or "restart")
end

-- Starts p if it does not run (start of a known name or id).
function M.start(p, done)
  if p.status == "stopping" then
    -- start once the stop it follows is done: never two processes
    p.waiters[#p.waiters + 1] = function(err)
      if err then return done(err) end
      M.start(p, done)
    end
    return
  end
  if p.status == "online" or p.status == "launching" then return M.restart(p, {}, done) end
  cancel_timer(p)
  local ok, err = start_stopped(p)
  done(not ok and err or nil)
end

-- The daemon's last act: SIGKILL to whatever it still tracks once every
-- app was stopped (a process a reload was replacing when the stop came,
-- or one put back when its replacement died) -> how many.
function M.kill_leftovers()
  closing = true -- what it kills is not restarted by on_child while the daemon finishes
  local n = 0
  for pid, q in pairs(by_pid) do
    local st = core.proc_stat(pid)
    if st and st.state ~= "Z" then
      n = n + 1
      log.warn("app %s: pid %d still runs at the daemon's exit: SIGKILL", tostring(q.name), pid)
      if q.pgid and q.pgid > 1 then core.killpg(q.pgid, SIGKILL) end
      core.kill(pid, SIGKILL)
    end
  end
  return n
end

function M.delete(p, done)
  -- from now on nothing starts p again: a restart or start whose stop
  -- callback runs before this one would launch a process of a deleted app
  p.deleting = true
  M.stop(p, function(err)
    if err then
      p.deleting = nil
      return done(err)
    end
    if p.deleted then return done() end
    p.deleted = true
    unkeep(p)
    procs[p.pm_id] = nil
    if p.cron_timer then p.cron_timer:close(); p.cron_timer = nil end
    if p.watch_timer then p.watch_timer:close(); p.watch_timer = nil end
    watch.unwatch(p.pm_id)
    release_logs(p)
    if #M.by_name(p.name) == 0 then sockets.release(p.name) end
    event(p, "delete", nil, true)
    notify.changed()
    done()
  end)
end

function M.reset(p)
  p.restart_time = 0
  p.unstable_restarts = 0
  p.prev_restart_delay = 0
  notify.changed()
end

function M.redeclare(p, decl)
  p.decl = decl
  p.name = decl.name
  p.pid_pooled = nil
  if decl.pid_file then
    p.pid_path = with_id(util.absolute(decl.pid_file, decl.cwd), p)
  else
    p.pid_path = ("%s/pids/%s-%d.pid"):format(home, decl.name:gsub("/", "_"), p.pm_id)
  end
  arm_cron(p)
  arm_watch(p)
end

-- Creates the processes of a declaration (one per instance) and starts
-- those that autostart. saved (restore): per instance { pm_id, status,
-- restart_time, created_at }; those saved as stopped stay stopped.
-- Returns the list of procs.
local function new_proc(decl, environ, origin, instance, saved)
  saved = saved or {}
  local id = tonumber(saved.pm_id)
  if not id or procs[id] then id = next_id end
  local p = {
    pm_id = id, instance = instance, created_at = tonumber(saved.created_at) or now(),
    restart_time = tonumber(saved.restart_time) or 0,
    unstable_restarts = 0, prev_restart_delay = 0, pid = 0, status = "stopped",
    environ = environ, origin = origin, manual_stop = saved.status == "stopped" or nil,
  }
  p.uid_marker = ("%d-%d-%d"):format(core.getpid(), p.pm_id, math.floor(now()))
  next_id = math.max(next_id, id + 1)
  M.redeclare(p, decl)
  procs[p.pm_id] = p
  return p
end

-- New processes start on the next turn of the loop, together: the apps a
-- request declares are written to the journal once, before any of them
-- runs (write-ahead: a daemon killed meanwhile leaves nothing unknown).
local queued, queue_timer = {}, nil
local function launch_queued()
  queue_timer = nil
  local list = queued
  queued = {}
  notify.declared()
  -- Spawned by threads, a batch at a time, while this thread prepares the
  -- next batch and finishes the previous one (each spawn waits ~0.6 ms
  -- for its child's exec; a batch bounds the fds open at once). The loop
  -- does not run meanwhile.
  local prev, batch = nil, { procs = {}, specs = {} }
  local function finish(b, outcomes)
    for i, p in ipairs(b.procs) do
      local o = outcomes[i]
      local ok, err = launch_finish(p, b.specs[i], o[1], o[2])
      if not ok then M.fail_ready(p, err) end -- whoever waits for it hears why
    end
  end
  local function submit()
    if #batch.procs == 0 then return end
    local opts = {}
    for i, spec in ipairs(batch.specs) do opts[i] = spec.opts end
    local done = prev and prev.spawning:wait()
    batch.spawning = core.spawn_start(opts)
    if prev then finish(prev, done) end
    prev, batch = batch, { procs = {}, specs = {} }
  end
  for _, p in ipairs(list) do
    if not closing and not p.deleted and p.status == "launching" and (p.pid or 0) == 0 then
      local spec, err = launch_prepare(p)
      if spec then
        batch.procs[#batch.procs + 1] = p
        batch.specs[#batch.specs + 1] = spec
        if #batch.procs >= M.SPAWN_BATCH then submit() end
      else
        M.fail_ready(p, err)
      end
    end
  end
  submit()
  if prev then finish(prev, prev.spawning:wait()) end
end
M.SPAWN_BATCH = 16

function M.add(decl, environ, origin, saved)
  local list = {}
  for i = 0, decl.instances - 1 do
    list[#list + 1] = new_proc(decl, environ, origin, i, saved and saved[i + 1])
  end
  for i, p in ipairs(list) do
    local sv = saved and saved[i]
    local start = decl.autostart ~= false
    if sv then start = sv.status ~= "stopped" end
    if start then
      p.status = "launching"
      queued[#queued + 1] = p
    end
  end
  if #queued > 0 and not queue_timer then queue_timer = core.timer(0, 0, launch_queued) end
  notify.changed()
  return list
end

-- ---- reload and scale ----

local function restart_ready(p, opts, done)
  M.restart(p, opts, function(err)
    if err then return done(err) end
    M.when_ready(p, function(ok, why) done(not ok and why or nil) end)
  end)
end

-- Stops a process a reload replaced: gracefully, SIGKILL after kill_timeout.
local function retire(old, d, done)
  if old.gone then return done() end
  local timer
  old.waiter = function()
    if timer then timer:close() end
    done()
  end
  if d.shutdown_with_message and old.channel and not old.channel:closed() then
    old.channel:write('"shutdown"\n')
  else
    signal_tree(old, util.signum(d.kill_signal))
  end
  timer = core.timer(d.kill_timeout, 0, function()
    timer = nil
    if not old.gone then signal_tree(old, SIGKILL) end
  end)
end

--[[ Replaces p's process. With daemon-held sockets (listen, or a Node app
in cluster mode) the new process starts first and the old one is stopped
once the new one is ready: no moment without a process on the sockets.
Otherwise the old one stops first. If the replacement dies before it is
ready, the old process keeps serving and done(err) says why. ]]
function M.reload(p, opts, done)
  opts = opts or {}
  if p.status ~= "online" or not M.listen_specs(p.decl) then
    return restart_ready(p, opts, function(err)
      if not err then event(p, "reload", nil, true) end
      done(err)
    end)
  end
  if opts.environ then p.environ = opts.environ end
  local old = { retired = true, pid = p.pid, pgid = p.pgid, channel = p.channel, name = p.name }
  old.on_exit = function()
    old.gone = true
    core.killpg(old.pgid, SIGKILL)
    kill_leftovers(old)
    if old.channel then old.channel:close() end
    if old.waiter then old.waiter() end
  end
  local saved = { pid = p.pid, pgid = p.pgid, pipes = p.pipes, started = p.started,
    pm_uptime = p.pm_uptime, listen = p.listen, env_json = p.env_json, env_cache = p.env_cache,
    tree = p.tree }
  by_pid[p.pid] = old
  p.channel = nil
  p.tree = nil
  p.pid = 0
  local function back(why)
    -- the replacement failed: the old process is p's again
    if p.ready_timer then p.ready_timer:close(); p.ready_timer = nil end
    p.ready_waiters = nil
    p.replacing = nil
    for k, v in pairs(saved) do p[k] = v end
    p.channel = old.channel
    by_pid[p.pid] = p
    p.status = "online"
    p.ready = "reload aborted"
    M.arm_health(p)
    log.warn("app %s (%d): reload aborted, the old process %d keeps serving: %s", p.name, p.pm_id,
      p.pid, why)
    notify.changed()
    done(("reload of %s (%d) aborted: the new process %s; the old one keeps serving")
      :format(p.name, p.pm_id, why))
  end
  local ok, err = launch(p)
  if not ok then return back("could not start: " .. tostring(err)) end
  p.replacing = { failed = back }
  M.when_ready(p, function(ready)
    if not ready or not p.replacing then return end
    p.replacing = nil
    p.restart_time = p.restart_time + 1
    event(p, "reload", nil, true)
    notify.changed()
    retire(old, p.decl, function() done() end)
  end)
end

-- pm scale: N, "+N" or "-N" instances of an app. New instances take the
-- lowest free instance numbers. done(err, procs)
function M.scale(name, spec, done)
  local list = M.by_name(name)
  if #list == 0 then return done("process not found: " .. tostring(name)) end
  table.sort(list, function(a, b) return a.instance < b.instance end)
  local n = #list
  local target
  spec = tostring(spec)
  if spec:match("^[+-]%d+$") then
    target = n + tonumber(spec)
  elseif spec:match("^%d+$") then
    target = tonumber(spec)
  end
  if not target or target ~= math.floor(target) or target < 1 then
    return done({ code = -32602, message = "scale: instances must be N, +N or -N, and leave at least one" })
  end
  if target > M.MAX_INSTANCES then
    return done({ code = -32602, message = ("scale: at most %d instances"):format(M.MAX_INSTANCES) })
  end
  local decl = list[1].decl
  decl.instances = target
  for _, q in ipairs(list) do q.json_static, q.paths_of = nil, nil end -- its description changed
  if target == n then return done(nil, list) end
  if target < n then
    local victims = {}
    for i = n, target + 1, -1 do victims[#victims + 1] = list[i] end
    local left = #victims
    for _, p in ipairs(victims) do
      M.delete(p, function()
        left = left - 1
        if left == 0 then done(nil, M.by_name(name)) end
      end)
    end
    return
  end
  local used = {}
  for _, p in ipairs(list) do used[p.instance] = true end
  local added, k = {}, 0
  while #added < target - n do
    if not used[k] then
      local p = new_proc(decl, list[1].environ, list[1].origin, k)
      added[#added + 1] = p
    end
    k = k + 1
  end
  local left = #added
  notify.declared()
  for _, p in ipairs(added) do
    launch(p)
    M.when_ready(p, function()
      left = left - 1
      if left == 0 then
        notify.changed()
        done(nil, M.by_name(name))
      end
    end)
  end
end

-- ---- queries ----

function M.all()
  local list = {}
  for _, p in pairs(procs) do list[#list + 1] = p end
  table.sort(list, function(a, b) return a.pm_id < b.pm_id end)
  return list
end

function M.get(id) return procs[id] end

function M.by_path(path)
  local list = {}
  for _, p in ipairs(M.all()) do
    if p.decl.script == path then list[#list + 1] = p end
  end
  return list
end

function M.by_name(name)
  local list = {}
  for _, p in pairs(procs) do
    if p.name == name then list[#list + 1] = p end
  end
  if #list > 1 then table.sort(list, function(a, b) return a.pm_id < b.pm_id end) end
  return list
end

-- A target: pm_id, name, "all" or a namespace -> list of procs, or nil, err
function M.resolve(target)
  if target == nil then return nil, "a target is required" end
  if type(target) ~= "string" and type(target) ~= "number" then
    return nil, { code = -32602, message = "a target is a name, an id, \"all\" or a namespace" }
  end
  local list = {}
  local id = tonumber(target)
  if id then
    if procs[id] then list[1] = procs[id] end
  elseif target == "all" then
    list = M.all()
  else
    target = tostring(target)
    list = M.by_name(target)
    if #list == 0 then
      for _, p in ipairs(M.all()) do
        if p.decl.namespace == target then list[#list + 1] = p end
      end
    end
  end
  if #list == 0 and target ~= "all" then
    return nil, "process or namespace not found: " .. tostring(target)
  end
  return list
end

-- ---- descriptions (DESIGN §5) ----

local clk_tck = core.clk_tck()

-- Memory and CPU of an app's process tree, from /proc. A sample is reused
-- for SAMPLE_MS; one up to STALE_MS old is still answered at once, and a
-- new one is taken after the reply, a chunk of apps per turn of the loop:
-- a client listing 2,000 apps every second never waits for /proc (about
-- 40 ms of reads), and a list asked for after a quiet minute is fresh.
-- The CPU share is measured over the whole time between two samples.
M.SAMPLE_MS, M.STALE_MS, M.REFRESH_CHUNK = 1000, 5000, 100
local stale, stale_set, refresher = {}, {}, nil

local function measure(p, t, prev)
  local tree = core.proc_tree(p.pid)
  local cpu
  if prev and prev.pid == p.pid then
    cpu = (tree.ticks - prev.ticks) / clk_tck / ((t - prev.t) / 1000) * 100
  else
    local up = (t - (p.started or t)) / 1000
    cpu = up > 0 and (tree.ticks / clk_tck) / up * 100 or 0
  end
  if cpu ~= cpu or cpu < 0 then cpu = 0 end
  cpu = math.floor(cpu * 10 + 0.5) / 10
  -- a process caught between fork and exec shows nothing yet: ask again
  if (tree.rss or 0) > 0 then
    p.cpu_sample = { t = t, pid = p.pid, ticks = tree.ticks, cpu = cpu, rss = tree.rss }
  end
  return tree.rss, cpu
end

local function refresh_some()
  refresher = nil
  local n = 0
  while #stale > 0 and n < M.REFRESH_CHUNK do
    local p = table.remove(stale)
    stale_set[p] = nil
    local prev = p.cpu_sample
    if not p.deleted and p.pid and p.pid ~= 0 and prev and prev.pid == p.pid then
      measure(p, core.mono(), prev)
      n = n + 1
    end
  end
  if #stale > 0 then refresher = core.timer(0, 0, refresh_some) end
end

local function sample(p, cached)
  if not p.pid or p.pid == 0 then return 0, 0 end
  local t = core.mono()
  local prev = p.cpu_sample
  if prev and prev.pid == p.pid then
    local age = t - prev.t
    if age < M.SAMPLE_MS then return prev.rss, prev.cpu end
    if age < M.STALE_MS or cached then
      if not stale_set[p] then
        stale_set[p] = true
        stale[#stale + 1] = p
        if not refresher then refresher = core.timer(0, 0, refresh_some) end
      end
      return prev.rss, prev.cpu
    end
  end
  if cached then return 0, 0 end
  return measure(p, t, prev)
end

-- The part of pm2_env that changes only with the declaration, encoded
-- once per declaration (a list of 2,000 apps is then mostly concatenation):
-- a JSON object's members without the braces. The declaration's own
-- members are the journal's encoding of them (app.members_json).
local function static_json(p)
  local s = p.json_static
  if s and p.json_decl == p.decl then return s end
  local d = p.decl
  local own = {
    pm_id = p.pm_id,
    pm_cwd = d.cwd,
    pm_exec_path = d.script,
    exec_interpreter = d.interpreter == "pm" and "pm" or
      (d.interpreter == "none" and "none" or util.basename(d.interpreter)),
    pm_pid_path = p.pid_path,
    created_at = p.created_at,
    NODE_APP_INSTANCE = p.instance,
    unique_id = p.uid_marker,
    origin = p.origin and p.origin.path or nil,
  }
  s = appdecl.members_json(d) .. "," .. util.encode(own):sub(2, -2)
  p.json_static, p.json_decl = s, d
  return s
end

-- JSON members written by hand, as pieces of text (a list of 2,000 apps
-- makes 30,000 of them; most pieces are strings that exist already, so a
-- list makes little garbage): nil leaves the member out, as cjson does.
local jstr = cjson.encode
local function member(parts, n, key, v)
  if v == nil then return n end
  local t = type(v)
  local text
  if t == "string" then text = jstr(v)
  elseif t == "number" then
    text = (v == math.floor(v) and v > -2 ^ 53 and v < 2 ^ 53) and ("%d"):format(v) or util.encode(v)
  elseif t == "boolean" then text = v and "true" or "false"
  elseif v == util.null then text = "null"
  else text = util.encode(v) end
  parts[n + 1] = key
  parts[n + 2] = text
  return n + 2
end

-- brief "table": only what the process table shows (pm list, pm start):
-- a tenth of a description, for the CLI to decode.
local function table_row_into(parts, n, p, mem, cpu)
  local d = p.decl
  parts[n + 1] = '{"name":'
  parts[n + 2] = jstr(p.name)
  parts[n + 3] = (',"pid":%d,"pm_id":%d,"monit":{"memory":%.0f,"cpu":%s},"pm2_env":{"namespace":')
    :format(p.pid or 0, p.pm_id, mem or 0, tostring(cpu or 0))
  parts[n + 4] = jstr(d.namespace or "default")
  n = n + 4
  n = member(parts, n, ',"exec_mode":', d.exec_mode)
  n = member(parts, n, ',"instances":', d.instances)
  n = member(parts, n, ',"status":', p.status)
  n = member(parts, n, ',"pm_uptime":', p.pm_uptime or p.created_at)
  n = member(parts, n, ',"restart_time":', p.restart_time)
  n = member(parts, n, ',"uid":', d.uid)
  n = member(parts, n, ',"watch":', d.watch)
  if type(p.notify) == "table" and p.notify.status then
    n = member(parts, n, ',"notify":', { status = p.notify.status })
  end
  parts[n + 1] = "}}"
  return n + 1
end

-- One description as pieces of JSON text appended to parts after index n
-- (DESIGN section 5) -> the new last index. brief: without the
-- environment (what the process table needs).
local function describe_into(parts, n, p, brief, cached)
  local d = p.decl
  local mem, cpu = sample(p, cached)
  if brief == "table" then return table_row_into(parts, n, p, mem, cpu) end
  parts[n + 1] = '{"name":'
  parts[n + 2] = jstr(p.name)
  parts[n + 3] = ',"pid":'
  parts[n + 4] = ("%d"):format(p.pid or 0)
  parts[n + 5] = ',"pm_id":'
  parts[n + 6] = ("%d"):format(p.pm_id)
  parts[n + 7] = ',"monit":{"memory":'
  parts[n + 8] = ("%.0f"):format(mem or 0)
  parts[n + 9] = ',"cpu":'
  parts[n + 10] = tostring(cpu or 0)
  parts[n + 11] = '},"pm2_env":{'
  parts[n + 12] = static_json(p)
  n = n + 12
  n = member(parts, n, ',"status":', p.status)
  n = member(parts, n, ',"pm_out_log_path":', p.out_path or log_path(p, "out"))
  n = member(parts, n, ',"pm_err_log_path":', p.err_path or log_path(p, "err"))
  n = member(parts, n, ',"pm_uptime":', p.pm_uptime or p.created_at)
  n = member(parts, n, ',"restart_time":', p.restart_time)
  n = member(parts, n, ',"unstable_restarts":', p.unstable_restarts)
  n = member(parts, n, ',"exit_code":', p.exit_code)
  n = member(parts, n, ',"exit_signal":', p.exit_signal)
  n = member(parts, n, ',"prev_restart_delay":', p.prev_restart_delay)
  n = member(parts, n, ',"error":', p.error)
  n = member(parts, n, ',"notify":', p.notify)
  n = member(parts, n, ',"ready":', p.ready)
  if p.history then
    local hj = p.history_json
    if not hj then
      hj = "[" .. table.concat(p.history, ",") .. "]"
      p.history_json = hj
    end
    parts[n + 1] = ',"events":'
    parts[n + 2] = hj
    n = n + 2
  end
  if p.changes then n = member(parts, n, ',"changes":', util.array(p.changes)) end
  if not brief then
    if d.env_remove then n = member(parts, n, ',"env_remove":', util.array(d.env_remove)) end
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
      parts[n + 2] = util.encode(d.env or {})
      n = n + 2
    end
  end
  parts[n + 1] = "}}"
  return n + 1
end

local function describe_json(p, brief)
  local parts = {}
  local n = describe_into(parts, 0, p, brief)
  return table.concat(parts, "", 1, n)
end
M.describe_json = describe_json

-- A description as a Lua table (hooks, the hook API).
function M.describe(p, brief) return util.decode(describe_json(p, brief)) end

-- The descriptions of list as one JSON array, handed to the RPC layer
-- as text pieces (util.raw): no table per app, no re-encoding.
local new_table = require "table.new"
-- cached: monit from the last sample only, /proc is not read (the replies
-- of start, stop, restart and delete, as PM2's carry no fresh monit).
function M.describe_list(list, brief, cached)
  local parts, n = new_table(#list * 36 + 2, 0), 1
  parts[1] = "["
  for i, p in ipairs(list) do
    if i > 1 then n = n + 1; parts[n] = "," end
    n = describe_into(parts, n, p, brief, cached)
  end
  parts[n + 1] = "]"
  return util.raw(parts)
end

-- The same as Lua tables.
function M.describe_tables(list)
  local out = {}
  for i, p in ipairs(list) do out[i] = M.describe(p) end
  return out
end

function M.count() local n = 0; for _ in pairs(procs) do n = n + 1 end; return n end

return M
