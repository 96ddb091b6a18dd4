-- pm export --to compose: one Compose file (the Compose Specification: no
-- version key), a service per app: entrypoint and command, environment,
-- deploy.replicas, the restart policy, a healthcheck from health,
-- depends_on with its condition, stop_signal and stop_grace_period.
local export = require "pm.export"

local M = {}

local HANDOFF = "the held socket is not handed to the app (LISTEN_FDS): the port is published, "
  .. "the app binds it itself"

local LOGS = "log files: the container's output is its log"

M.attrs = {
  instances = true, env_file = true, autorestart = true, max_restarts = true, min_uptime = true,
  restart_delay = true, kill_timeout = true, kill_signal = true, max_memory_restart = true, health = true,
  depends_on = true, port = true, uid = true, gid = true, user = true, autostart = true, listen_timeout = true,
  namespace = "pm's namespaces: a Compose project is one",
  listen = function(d)
    for _, spec in ipairs(d.listen) do
      if spec:match("^unix:") then return "a unix socket: no equivalent; " .. HANDOFF end
    end
    return HANDOFF
  end,
  learned_listen = HANDOFF,
  exp_backoff_restart_delay = "an exponential back-off: Compose's delay is fixed (the first delay is used)",
  stop_exit_codes = "exit codes that mean done: condition any restarts on every exit",
  cron_restart = "a restart at set times: no equivalent",
  wait_ready = "a ready signal from the process: readiness comes from the healthcheck only",
  watchdog = "a watchdog (WATCHDOG=1): no equivalent",
  instance_var = "a per-instance number: replicas have none",
  increment_var = "a per-instance number: replicas have none (publish no fixed port with replicas)",
  out_file = LOGS, error_file = LOGS, log_file = LOGS, disable_logs = LOGS,
  kill_mode = "what a stop kills: the whole container", treekill = "what a stop kills: the whole container",
}

-- Compose interpolates ${VAR} and $VAR in every value of the file (from the
-- environment of whoever runs docker compose): a $ of the app's is $$
local function lit(s) return (tostring(s):gsub("%$", "$$")) end
local function lits(list)
  local out = {}
  for i, v in ipairs(list) do out[i] = lit(v) end
  return out
end

local function sq(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

M.RUNTIME_HEALTH_PORT = 9615

local function healthcheck(h)
  local test
  if h.kind == "http" then
    test = { "CMD-SHELL", ("curl -fsS -o /dev/null %s || wget -q -O /dev/null %s || exit 1")
      :format(sq(h.url), sq(h.url)) }
  elseif h.kind == "tcp" then
    test = { "CMD", "bash", "-c", ("exec 3<>/dev/tcp/%s/%d"):format(h.host ~= "" and h.host or "127.0.0.1", h.port) }
  else
    test = { "CMD-SHELL", h.command }
  end
  return { test = export.list(lits(test)), interval = export.duration(h.interval), timeout = export.duration(h.timeout),
    retries = math.max(1, math.floor(h.retries)) }
end

function M.service(d, opts)
  local s = { image = opts.image or export.PLACEHOLDER_IMAGE }
  local argv
  if opts.keep_pm then
    argv = export.runtime_argv(d, opts, opts.container_file, "pm")
    argv[#argv + 1] = "--health"
    argv[#argv + 1] = ("127.0.0.1:%d"):format(M.RUNTIME_HEALTH_PORT)
  else
    argv = export.container_argv(d)
    s.working_dir = lit(d.cwd)
  end
  argv = lits(argv)
  s.entrypoint = export.list({ argv[1] })
  if #argv > 1 then s.command = export.list({ unpack(argv, 2) }) end
  local env = {}
  if not opts.keep_pm then -- (pm runtime reads the file's)
    for _, kv in ipairs(export.env_list(d)) do env[kv[1]] = lit(kv[2]) end
  end
  if next(env) then s.environment = env end
  if d.uid or d.gid then
    s.user = tostring(d.uid or "") .. (d.gid and (":" .. tostring(d.gid)) or "")
    if s.user:sub(1, 1) == ":" then s.user = nil end
  end
  s.stop_signal = export.stop_signal(d, opts)
  s.stop_grace_period = export.duration(export.stop_time(d, opts))
  local deploy = { replicas = d.autostart == false and 0 or (opts.keep_pm and 1 or d.instances) }
  if opts.keep_pm then
    s.restart = "always"
    deploy.restart_policy = { condition = "any" }
  elseif d.autorestart == false then
    s.restart = "no"
    deploy.restart_policy = { condition = "none" }
  else
    s.restart = "always"
    local delay = d.exp_backoff_restart_delay > 0 and d.exp_backoff_restart_delay or d.restart_delay
    deploy.restart_policy = { condition = "any", delay = export.duration(delay),
      max_attempts = math.max(0, math.floor(d.max_restarts)), window = export.duration(d.min_uptime) }
  end
  if d.max_memory_restart and not opts.keep_pm then
    deploy.resources = { limits = { memory = ("%db"):format(d.max_memory_restart) } }
  end
  s.deploy = deploy
  local h = opts.keep_pm and { kind = "http", url = ("http://127.0.0.1:%d/"):format(M.RUNTIME_HEALTH_PORT),
    interval = 5000, timeout = 2000, retries = 3 } or export.health(d)
  if h then
    s.healthcheck = healthcheck(h)
    if d.listen_timeout and not opts.keep_pm then s.healthcheck.start_period = export.duration(d.listen_timeout) end
  end
  local ports = export.ports(d)
  if #ports > 0 then
    s.ports = export.list()
    for _, p in ipairs(ports) do s.ports[#s.ports + 1] = ("%d:%d"):format(p, p) end
  end
  if d.depends_on and #d.depends_on > 0 then
    s.depends_on = {}
    for _, dep in ipairs(d.depends_on) do
      local other = opts.by_name[dep]
      local healthy = opts.keep_pm or (other and other.health)
      s.depends_on[export.dns_name(dep)] = { condition = healthy and "service_healthy" or "service_started" }
    end
  end
  return s
end

function M.files(decls, opts, unmapped, warnings)
  export.container_prelude(opts, warnings, "services")
  opts.by_name = {}
  for _, d in ipairs(decls) do opts.by_name[d.name] = d end
  local services = {}
  for _, d in ipairs(decls) do services[export.dns_name(d.name)] = M.service(d, opts) end
  local text, err = export.yaml({ { services = services } })
  if not text then return nil, err end
  local head = export.head(opts, unmapped)
  if not opts.image then
    head[#head + 1] = "image: " .. export.PLACEHOLDER_IMAGE .. " is a placeholder: set yours (--image)"
  end
  return { { name = "compose.yaml", text = export.comment(head) .. text } }
end

return M
