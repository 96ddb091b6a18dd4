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
}

-- pid -> record, for the live main process of each (launch.lua and
-- exits.lua keep it; reload.lua moves a replaced process to retirees)
M.by_pid = {}

--[[ Every field of a record, by owner. A test build (PM_STRICT=1 in the
daemon's environment, as tests/run sets) seals records: writing a field
not listed here raises, so a misspelt field fails a test. ]]
M.FIELDS = {
  -- who it is, what it runs, its counters; a stop under way; a restart delay
  supervisor = { "pm_id", "instance", "name", "decl", "environ", "origin", "created_at",
    "restart_time", "unstable_restarts", "prev_restart_delay", "uid_marker", "timer",
    "waiters", "kill_timer", "stop_reason" },
  rules = { "cron_timer", "watch_timer" },
  lifecycle = { "status", "manual_stop", "deleting", "deleted" },
  launch = { "pid", "pgid", "started", "pm_uptime", "error", "listen", "channel_fd",
    "env_cache", "env_json", "kept", "exit_code", "exit_signal", "tree" },
  channel = { "channel", "bad_messages" },
  readiness = { "ready", "ready_timer", "ready_waiters", "notify", "health_timer",
    "watchdog_timer", "watchdog_last", "health_failures" },
  applogs = { "out_path", "err_path", "log_path", "paths_of", "pipes", "acquired",
    "log_files", "logs_missing" },
  pidfile = { "pid_path", "pid_pooled", "pidfile_live" },
  describe = { "history", "history_json", "cpu_sample", "json_static", "json_decl" },
}
local known = {}
for _, list in pairs(M.FIELDS) do
  for _, k in ipairs(list) do known[k] = true end
end

local strict = os.getenv("PM_STRICT") == "1"
M.strict = strict
lifecycle.strict = strict
-- (a field that exists is written without the metatable: only a new one
-- is checked)
local seal = { __newindex = function(t, k, v)
  if not known[k] then error(("process record: no field %q (see proc.FIELDS)"):format(tostring(k)), 2) end
  rawset(t, k, v)
end }

-- A new record from its first fields.
function M.new(fields)
  if not strict then return fields end
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
    pm_uptime = p.pm_uptime, exit_code = p.exit_code,
  }
end

local EVENT_JSON = {} -- event name -> its JSON text

-- Publishes a process event and keeps it in p's last 10 (pm describe).
function M.event(p, what, extra, manually)
  -- kept as JSON text: a record costs one string, and lists reuse it
  local h = p.history or {}
  p.history = h
  local name = EVENT_JSON[what]
  if not name then name = cjson.encode(what); EVENT_JSON[what] = name end
  local rec = ('{"at":%d,"event":%s'):format(core.now(), name)
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
  local data = { event = what, process = flat_env(p), at = core.now(), manually = manually or false }
  for k, v in pairs(extra or {}) do data[k] = v end
  bus.publish("process:event", data)
end

-- The actions of lifecycle cells, registered by the modules that own
-- them: unpid (pidfile.lua), release (launch.lua); say:NAME publishes.
M.ACTIONS = {}

-- Does a lifecycle cell's actions (lifecycle.fire's result; nothing for a
-- refused event).
function M.act(p, cell, extra, manually)
  if not cell then return end
  for i = 2, #cell do
    local a = cell[i]
    local said = a:match("^say:(.*)$")
    if said then
      M.event(p, said, extra, manually)
    else
      M.ACTIONS[a](p)
    end
  end
end

return M
