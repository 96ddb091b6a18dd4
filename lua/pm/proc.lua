-- The process record: what the daemon knows of one instance of an app,
-- every field listed below by the module that owns (writes) it; the
-- process events it publishes (pm describe's history, the bus); and the
-- daemon's settings the supervisor's modules share. Decides nothing about
-- a process's life (lifecycle.lua does) nor how it is shown (describe.lua).
local core = require "pm.core"
local util = require "pm.util"
local cjson = require "cjson"
local bus = require "pm.bus"
local lifecycle = require "pm.lifecycle"

local M = {}

-- Set by supervisor.init: PM_HOME, the pm binary, and the daemon's
-- callbacks: changed(kind) after every change, declared() once new
-- records exist, errored(p) when one ends errored (pm runtime).
M.ctx = {
  home = nil, pm_bin = nil, notify_path = nil, cluster_preload = nil,
  changed = function() end, declared = function() end, errored = nil,
  closing = false, -- the daemon is exiting: nothing starts any more
  -- PM2_KILL_USE_MESSAGE=true (PM2's) in the daemon's environment: every
  -- app stops as with shutdown_with_message
  kill_use_message = os.getenv("PM2_KILL_USE_MESSAGE") == "true",
}

-- pid -> record, for the live main process of each (launch.lua and
-- exits.lua keep it; reload.lua moves a replaced process to retirees)
M.by_pid = {}

--[[ Every field of a record, by the module that owns (writes) it, with
what it holds. Others only read them. A test build (PM_STRICT=1 in the
daemon's environment, as tests/run sets) seals records: writing a field
not listed here raises, so a misspelt field fails a test. ]]
M.FIELDS = {
  hooks = {
    hook_timers = "its hooks' timers (pm.after, pm.every): handle -> cancel",
    hook_state = "pm.state of its hooks (a table), read from hook_state_text when first used",
    hook_state_text = "pm.state as JSON, as last saved (in the journal; nil when empty)",
    last_hook_error = "{ hook, message, at } of its last failed hook (pm2_env.last_hook_error)",
  },
  supervisor = {
    pm_id = "its id, unique in the daemon (kept by save/resurrect)",
    instance = "its instance number among its app's (0..instances-1)",
    name = "its app's name (decl.name)",
    decl = "its app's declaration (app.normalize's; shared by the instances)",
    environ = "the environment it was declared with (the caller's)",
    origin = "{ path, env } of the ecosystem file it came from, or nil",
    created_at = "ms since the epoch when it was declared",
    uid_marker = "PM_APP_UID of its processes: daemon pid-pm_id-created",
    restart_time = "restarts since declared or reset (pm2_env.restart_time)",
    unstable_restarts = "fast exits in a row (policy.lua)",
    prev_restart_delay = "the last restart delay (exp_backoff_restart_delay)",
    unstable_since = "with a restart delay: when a command last started it (core.mono; policy.decide)",
    timer = "a restart delay's timer (status waiting restart)",
    waiters = "callbacks of a stop under way: fn(err) once it is over",
    kill_timer = "SIGKILL after kill_timeout, while stopping",
    stop_reason = "why the stop under way: stop, restart, memory, cron, watch, health",
    fd_wait = "a restart's wait for fds under way (a token; supervisor.restart)",
  },
  lifecycle = {
    status = "pm2_env.status: stopped, launching, online, stopping, waiting restart, errored",
    manual_stop = "a user stopped it: no rule starts it again (saved as stopped)",
    deleting = "a delete waits for its stop: nothing starts it",
    deleted = "gone from the table",
  },
  launch = {
    pid = "its process's pid, 0 when none runs",
    pgid = "its process group (= pid: every process leads its own session)",
    started = "core.mono() at its process's spawn",
    pm_uptime = "ms since the epoch at its process's spawn",
    error = "why its last start failed",
    listen = "{ names, map } of the held sockets its process got",
    channel_fd = "the fd number of the IPC channel in its process, or nil",
    ipc_asked = "something was sent to it while it had no channel: its next process gets one",
    cgroup = "true when its process joined a cgroup of its own (cgroup.lua)",
    env_cache = "what its process's environment list was built from",
    env_json = "that environment as JSON pieces (describe.lua)",
    kept = "a crash loop's plumbing kept for its next process",
    stdin_w = "the write end of its process's stdin (input = true: pm send), or nil",
    stdin_held = "the keeper's id of stdin_w, or nil",
    exit_code = "its last process's exit code (nil when a signal ended it)",
    exit_signal = "the signal that ended its last process, or nil",
    tree = "pid -> start time of descendants signalled in a stop (exits.lua)",
  },
  channel = {
    channel = "the IPC stream to its process",
    channel_held = "the keeper's id of the channel's fd, or nil",
    bad_messages = "messages that were not JSON",
    listen_warned = "the pid whose refused NODE_PM_LISTEN pm.log told (once a process)",
    axm_monitor = "@pm2/io's metrics of its process: { pid, n, by = name -> {value, unit, type, historic}, json }",
    axm_actions = "@pm2/io's actions its process registered (pm trigger): { pid, names }",
  },
  readiness = {
    ready = "how its process became ready: start, ipc, notify, health, listen, listen_timeout",
    ready_timer = "listen_timeout while launching",
    await_listen = "a reload of a Node app in cluster mode waits for its new process to listen",
    ready_waiters = "callbacks fn(ok, why) waiting for online",
    notify = "sd_notify's last STATUS=, RELOADING=, STOPPING=, MAINPID=",
    health_timer = "the health check's interval",
    watchdog_timer = "the sd_notify watchdog's check",
    watchdog_last = "core.mono() of the last WATCHDOG=1",
    health_failures = "failed health checks in a row",
  },
  rules = {
    cron_timer = "the next cron_restart",
    watch_timer = "watch_delay after a change",
  },
  applogs = {
    out_path = "its out log's path", err_path = "its error log's path",
    log_path = "its combined log_file's path, or nil",
    paths_of = "the declaration those paths are of",
    log_folder = "the folder of its default files under logs/ (\"\" or \"<namespace>/\")",
    pipes = "{ out, err } log pipes reading its process's output",
    acquired = "paths of the shared files its pipes were given (being built)",
    log_files = "paths of the shared files its pipes hold",
    logs_missing = "why a log file could not be opened (pm2_env.log_error; reloadLogs tries again)",
  },
  pidfile = {
    pid_path = "its pid file's path",
    pid_pooled = "whether that file comes from pids/.spare",
    pid_owner = "the user whose rights write and remove it (applogs.owner), false: the daemon's",
    pidfile_live = "its pid file holds a running process's pid",
  },
  describe = {
    history = "its last 10 events, as JSON texts",
    cpu_sample = "the last /proc sample: { t, pid, ticks, cpu, rss } (an array)",
    json = "its description's texts as last made, and what they were made from (describe.lua's cache_of): "
      .. "its places J_*, H0, M0, F0, S0 there",
  },
}
local known = {}
for _, fields in pairs(M.FIELDS) do
  for k in pairs(fields) do known[k] = true end
end

M.strict = os.getenv("PM_STRICT") == "1"
lifecycle.strict = M.strict
-- (a field that exists is written without the metatable: only a new one
-- is checked)
local seal = { __newindex = function(t, k, v)
  if not known[k] then error(("process record: no field %q (see proc.FIELDS)"):format(tostring(k)), 2) end
  rawset(t, k, v)
end }

-- A new record from its first fields.
function M.new(fields)
  if not M.strict then return fields end
  for k in pairs(fields) do
    if not known[k] then error(("process record: no field %q (see proc.FIELDS)"):format(k), 2) end
  end
  return setmetatable(fields, seal)
end

-- { pm_id, name, namespace }: how events and messages name a process
function M.ref(p)
  return { pm_id = p.pm_id, name = p.name, namespace = p.decl.namespace }
end

local function flat_env(p)
  return {
    name = p.name, pm_id = p.pm_id, namespace = p.decl.namespace, status = p.status,
    restart_time = p.restart_time, unstable_restarts = p.unstable_restarts,
    pm_uptime = p.pm_uptime,
    exit_code = p.exit_code == nil and p.exit_signal and util.null or p.exit_code,
  }
end

local EVENT_JSON = {} -- event name -> its JSON text

-- An event's code, signal or reason as JSON: an exit code and a signal's
-- or a reason's name are a few values, each encoded once (cjson prints a
-- number through snprintf: 6 % of a crash loop's restart)
local VALUE_JSON, value_count = {}, 0
local function json_value(v)
  if v ~= v then return util.encode(v) end -- (NaN: no key)
  local s = VALUE_JSON[v]
  if s then return s end
  s = util.encode_text(v)
  if value_count < 256 then
    VALUE_JSON[v] = s
    value_count = value_count + 1
  end
  return s
end
M.J_HISTORY = 6 -- (the place of p.history's text in p.json: describe.lua's cache_of)

-- Publishes a process event and keeps it in p's last 10 (pm describe).
function M.event(p, what, extra, manually)
  if M.on_event then M.on_event(p, what, extra, manually) end -- (metrics.lua's counters)
  -- kept as JSON text: a record costs one string, and lists reuse it
  local h = p.history or {}
  p.history = h
  local name = EVENT_JSON[what]
  if not name then name = cjson.encode(what); EVENT_JSON[what] = name end
  local code, signal, reason = "", "", ""
  if extra then
    local v = extra.code
    if v ~= nil and v ~= util.null then code = ',"code":' .. json_value(v) end
    v = extra.signal
    if v ~= nil and v ~= util.null then signal = ',"signal":' .. json_value(v) end
    v = extra.reason
    if v ~= nil and v ~= util.null then reason = ',"reason":' .. json_value(v) end
  end
  h[#h + 1] = ('{"at":%d,"event":%s%s%s%s}'):format(core.now(), name, code, signal, reason)
  if #h > 10 then table.remove(h, 1) end
  local j = p.json
  if j then j[M.J_HISTORY] = false end -- (describe's cached text of h: made again)
  if not bus.wants("process:event") then return end
  local data = { event = what, process = flat_env(p), at = core.now(), manually = manually or false }
  for k, v in pairs(extra or {}) do data[k] = v end
  -- the pid the event is about (an exit's: the one that ended)
  if data.pid == nil and (p.pid or 0) > 0 then data.pid = p.pid end
  data.process.pid = data.pid
  bus.publish("process:event", data)
end

-- The actions of lifecycle cells, registered by the modules that own
-- them: unpid (pidfile.lua), release (launch.lua); say:NAME publishes.
M.ACTIONS = {}

-- Does a lifecycle cell's actions (lifecycle.fire's result; nothing for a
-- refused event).
-- action -> the event it says, or false
local SAYS = setmetatable({}, { __index = function(t, a)
  local said = a:match("^say:(.*)$") or false
  t[a] = said
  return said
end })

function M.act(p, cell, extra, manually)
  if not cell then return end
  for i = 2, #cell do
    local a = cell[i]
    local said = SAYS[a]
    if said then
      M.event(p, said, extra, manually)
    else
      M.ACTIONS[a](p)
    end
  end
end

return M
