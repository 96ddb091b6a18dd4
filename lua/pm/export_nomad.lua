-- pm export --to nomad: one job in Nomad's JSON job format (the API's, as
-- `nomad job run -json` takes it: no HCL printer), a group per app with
-- its count, a raw_exec task, restart and reschedule from the restart
-- rules, services and checks from health. JSON holds no comment: what is
-- not mapped is in the job's Meta (pm_export_not_mapped_N).
local export = require "pm.export"
local util = require "pm.util"

local M = {}

local NS = 1000000 -- ms -> ns

local HANDOFF = "the held socket is not handed to the app (LISTEN_FDS): the group reserves the port, "
  .. "the app binds it itself"

M.attrs = {
  instances = true, env_file = true, instance_var = true, autorestart = true, max_restarts = true,
  min_uptime = true, restart_delay = true, exp_backoff_restart_delay = true, kill_timeout = true,
  kill_signal = true, max_memory_restart = true, health = true, port = true, uid = true, gid = true,
  user = true, autostart = true,
  namespace = "pm's namespaces: the job is in the namespace it is run in",
  listen = function(d)
    for _, spec in ipairs(d.listen) do
      if spec:match("^unix:") then return "a unix socket: no equivalent; " .. HANDOFF end
    end
    return HANDOFF
  end,
  learned_listen = HANDOFF,
  stop_exit_codes = "exit codes that mean done: a service task is always restarted",
  cron_restart = "a restart at set times: periodic jobs are batch jobs",
  wait_ready = "a ready signal from the process: no equivalent (checks say when it serves)",
  listen_timeout = "a ready signal from the process: no equivalent (checks say when it serves)",
  watchdog = "a watchdog (WATCHDOG=1): no equivalent",
  depends_on = "start order between groups: no equivalent",
  increment_var = "a variable incremented per instance: use ${NOMAD_ALLOC_INDEX}",
  out_file = "log files: the task's logs are Nomad's", error_file = "log files: the task's logs are Nomad's",
  log_file = "log files: the task's logs are Nomad's", disable_logs = "log files: the task's logs are Nomad's",
  kill_mode = "what a stop kills: Nomad kills the task's processes",
  treekill = "what a stop kills: Nomad kills the task's processes",
}

function M.extra(d)
  if d.gid and not (d.user or d.uid) then
    return { { "gid", "a group alone: a task runs as a user (User)" } }
  end
  return {}
end

local function check_of(h, d, label)
  local c = { Name = export.dns_name(d.name) .. "-health", Interval = h.interval * NS, Timeout = h.timeout * NS,
    CheckRestart = { Limit = math.max(1, math.floor(h.retries)) } }
  if h.kind == "http" then
    c.Type, c.Path, c.Protocol, c.PortLabel = "http", h.path, "http", label
  elseif h.kind == "tcp" then
    c.Type, c.PortLabel = "tcp", label
  else
    c.Type, c.Command, c.Args = "script", "/bin/sh", export.list({ "-c", h.command })
  end
  return c
end

-- Nomad's least restart interval and reschedule delay (ms)
M.MIN_INTERVAL, M.MIN_DELAY = 5000, 5000

function M.group(d, opts)
  local name = export.dns_name(d.name)
  local task = { Name = name, Driver = "raw_exec" }
  local argv
  if opts.keep_pm then
    argv = export.runtime_argv(d, opts, opts.file, opts.pm_bin)
    -- a port Nomad picks, on the address its check reaches (a raw_exec
    -- task shares the node's network: a fixed port would collide between
    -- two apps on one node, and 127.0.0.1 is not where the check asks)
    argv[#argv + 1] = "--health"
    argv[#argv + 1] = "${NOMAD_ADDR_health}"
  else
    argv = export.argv(d, opts.pm_bin)
  end
  -- raw_exec runs in the task's folder: the app's cwd through sh
  task.Config = { command = "/bin/sh",
    args = export.list({ "-c", 'cd "$1" && shift && exec "$@"', "sh", d.cwd, unpack(argv) }) }
  local env = {}
  if opts.keep_pm then -- (pm runtime reads the file's)
    env.PM_HOME = "${NOMAD_TASK_DIR}/pm"
  else
    for _, kv in ipairs(export.env_list(d)) do env[kv[1]] = kv[2] end
    if d.instance_var then env[d.instance_var] = "${NOMAD_ALLOC_INDEX}" end
  end
  if next(env) then task.Env = env end
  if d.user or d.uid then task.User = tostring(d.user or d.uid) end
  task.KillTimeout = math.floor(export.stop_time(d, opts) * NS)
  task.KillSignal = export.stop_signal(d, opts)
  if d.max_memory_restart and not opts.keep_pm then
    task.Resources = { MemoryMB = math.max(10, math.ceil(d.max_memory_restart / 1048576)) }
  end
  local group = { Name = name, Count = d.autostart == false and 0 or (opts.keep_pm and 1 or d.instances),
    Tasks = { task } }
  local h = opts.keep_pm and { kind = "http", path = "/", label = "health", interval = 5000,
    timeout = 2000, retries = 3 } or export.health(d)
  local ports = export.ports(d)
  if h and h.port then
    -- a check's port the app does not publish: reserved for the check
    local have = false
    for _, p in ipairs(ports) do have = have or p == h.port end
    if not have then ports[#ports + 1] = h.port end
  end
  if #ports > 0 or (h and h.label) then
    local net = {}
    if #ports > 0 then
      net.ReservedPorts = {}
      for i, p in ipairs(ports) do net.ReservedPorts[i] = { Label = ("p%d"):format(p), Value = p } end
    end
    if h and h.label then net.DynamicPorts = { { Label = h.label } } end
    group.Networks = { net }
  end
  if h or #ports > 0 then
    local label = (h and h.label) or ((h and h.port) and ("p%d"):format(h.port))
      or (#ports > 0 and ("p%d"):format(ports[1])) or nil
    task.Services = { { Name = name, PortLabel = label, Checks = h and { check_of(h, d, label) } or nil } }
  end
  if opts.keep_pm then
    -- pm runtime restarts the app; Nomad restarts pm runtime when it exits
    group.RestartPolicy = { Attempts = 2, Interval = 30000 * NS, Delay = 1000 * NS, Mode = "fail" }
    group.ReschedulePolicy = { Delay = M.MIN_DELAY * NS, DelayFunction = "constant", Unlimited = true }
  elseif d.autorestart == false then
    group.RestartPolicy = { Attempts = 0, Interval = M.MIN_INTERVAL * NS, Delay = 0, Mode = "fail" }
    group.ReschedulePolicy = { Attempts = 0, Interval = 0, Unlimited = false }
  else
    local delay = d.exp_backoff_restart_delay > 0 and d.exp_backoff_restart_delay or d.restart_delay
    local attempts = math.max(0, math.floor(d.max_restarts))
    -- PM2's max_restarts unstable restarts (each up less than min_uptime)
    -- within as many times min_uptime and the delay; Nomad's least
    -- interval is 5 s, and attempts x delay must fit in it
    local interval = math.max(M.MIN_INTERVAL, attempts * ((d.min_uptime or 1000) + delay))
    group.RestartPolicy = { Attempts = attempts, Interval = math.floor(interval * NS),
      Delay = math.floor(delay * NS), Mode = "fail" }
    -- once the restarts are spent, the group is placed again: no sooner
    -- than Nomad's least delay (5 s)
    local first = math.max(M.MIN_DELAY, delay)
    if d.exp_backoff_restart_delay > 0 then
      group.ReschedulePolicy = { Delay = math.floor(first * NS), DelayFunction = "exponential",
        MaxDelay = math.floor(math.max(first, 15000) * NS), Unlimited = true }
    else
      group.ReschedulePolicy = { Delay = math.floor(first * NS), DelayFunction = "constant", Unlimited = true }
    end
  end
  return group
end

function M.files(decls, opts, unmapped)
  local job_name = opts.file and util.strip_ext(util.basename(opts.file)) or "pm-apps"
  local id = export.dns_name(job_name)
  local groups = {}
  for _, d in ipairs(decls) do groups[#groups + 1] = M.group(d, opts) end
  local meta = {}
  for i, line in ipairs(export.head(opts, unmapped)) do meta[("pm_export_%02d"):format(i)] = line end
  local job = { Job = { ID = id, Name = id, Type = "service", Datacenters = export.list({ "dc1" }),
    Meta = meta, TaskGroups = groups } }
  return { { name = id .. ".nomad.json", text = export.json(job) } }
end

return M
