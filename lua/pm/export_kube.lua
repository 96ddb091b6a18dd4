-- pm export --to kubernetes: a Deployment per app (replicas from
-- instances), and a Service when it has TCP ports (listen, port); probes
-- from health. One YAML file per app, its documents in that order.
local export = require "pm.export"

local M = {}

local RESTART = "restart rules: a Deployment's pods always restart, with Kubernetes' own back-off"
local HANDOFF = "the held socket is not handed to the app (LISTEN_FDS): the Service publishes the port, "
  .. "the app binds it itself"

local LOGS = "log files: the container's output is its log"

M.attrs = {
  instances = true, env_file = true, namespace = true, kill_timeout = true, max_memory_restart = true,
  health = true, port = true, uid = true, gid = true, user = true, autostart = true,
  kill_signal = true, -- (checked in extra: only SIGTERM is sent)
  listen = function(d)
    for _, spec in ipairs(d.listen) do
      if spec:match("^unix:") then return "a unix socket: no equivalent; " .. HANDOFF end
    end
    return HANDOFF
  end,
  learned_listen = HANDOFF,
  autorestart = RESTART, max_restarts = RESTART, min_uptime = RESTART, restart_delay = RESTART,
  exp_backoff_restart_delay = RESTART, stop_exit_codes = RESTART,
  cron_restart = "a restart at set times: no equivalent in a Deployment",
  wait_ready = "a ready signal from the process: readiness comes from health only",
  listen_timeout = "a ready signal from the process: readiness comes from health only",
  watchdog = "a watchdog (WATCHDOG=1): no equivalent",
  depends_on = "start order: Kubernetes has none (a dependent's readiness probe waits)",
  instance_var = "a per-instance number: a Deployment's pods have none",
  increment_var = "a per-instance number: a Deployment's pods have none (each pod has its own ports)",
  out_file = LOGS, error_file = LOGS, log_file = LOGS, disable_logs = LOGS,
  kill_mode = "what a stop kills: the whole container", treekill = "what a stop kills: the whole container",
}

function M.extra(d)
  if d.kill_signal ~= "SIGTERM" then
    return { { "kill_signal", d.kill_signal .. ": Kubernetes stops a container with SIGTERM" } }
  end
  return {}
end

-- Kubernetes expands $(VAR) in a container's command, args and env values
-- ($$ is a $): an app's $ is written $$
local function lit(v) return (tostring(v):gsub("%$", "$$")) end
local function lits(list)
  local out = {}
  for i, v in ipairs(list) do out[i] = lit(v) end
  return out
end

local function probe(h)
  if not h then return nil end
  local p = { periodSeconds = export.seconds(h.interval), timeoutSeconds = export.seconds(h.timeout),
    failureThreshold = math.max(1, math.floor(h.retries)) }
  if h.kind == "http" then
    p.httpGet = { path = h.path, port = h.port }
  elseif h.kind == "tcp" then
    p.tcpSocket = { port = h.port }
  else
    p.exec = { command = export.list({ "/bin/sh", "-c", h.command }) }
  end
  return p
end

-- pm runtime --health's port in a --keep-pm container
M.RUNTIME_HEALTH_PORT = 9615

function M.manifests(d, opts)
  local name = export.dns_name(d.name)
  local labels = { ["app.kubernetes.io/name"] = name, ["app.kubernetes.io/managed-by"] = "pm-export" }
  local meta = { name = name, labels = labels }
  if d.namespace and d.namespace ~= "default" then meta.namespace = export.dns_name(d.namespace) end
  local container = { name = name, image = opts.image or export.PLACEHOLDER_IMAGE, workingDir = d.cwd }
  local env = {}
  if opts.keep_pm then
    container.command = export.list(lits(export.runtime_argv(d, opts, opts.container_file, "pm")))
    container.args = nil
    local health = ("0.0.0.0:%d"):format(M.RUNTIME_HEALTH_PORT)
    container.command[#container.command + 1] = "--health"
    container.command[#container.command + 1] = health
    local p = { httpGet = { path = "/", port = M.RUNTIME_HEALTH_PORT }, periodSeconds = 5, failureThreshold = 3 }
    container.readinessProbe, container.livenessProbe = p, p
    container.workingDir = nil
  else
    local argv = lits(export.container_argv(d))
    container.command = export.list({ argv[1] })
    local rest = { unpack(argv, 2) }
    if #rest > 0 then container.args = export.list(rest) end
    local h = export.health(d)
    container.readinessProbe = probe(h)
    container.livenessProbe = probe(h)
    if d.max_memory_restart then
      container.resources = { limits = { memory = ("%d"):format(d.max_memory_restart) } }
    end
  end
  if not opts.keep_pm then -- (pm runtime reads the file's)
    for _, kv in ipairs(export.env_list(d)) do env[#env + 1] = { name = kv[1], value = lit(kv[2]) } end
  end
  if #env > 0 then container.env = env end
  local ports = export.ports(d)
  if #ports > 0 then
    container.ports = {}
    for _, p in ipairs(ports) do
      container.ports[#container.ports + 1] = { containerPort = p, name = ("p%d"):format(p), protocol = "TCP" }
    end
  end
  local sc
  if not opts.keep_pm and (d.uid or d.gid) then
    sc = { runAsUser = tonumber(d.uid), runAsGroup = tonumber(d.gid) }
    container.securityContext = sc
  end
  local pod = { containers = { container },
    terminationGracePeriodSeconds = export.seconds(export.stop_time(d, opts)) }
  local replicas = d.autostart == false and 0 or (opts.keep_pm and 1 or d.instances)
  local deployment = { apiVersion = "apps/v1", kind = "Deployment", metadata = meta,
    spec = { replicas = replicas, selector = { matchLabels = { ["app.kubernetes.io/name"] = name } },
      template = { metadata = { labels = labels }, spec = pod } } }
  local docs = { deployment }
  if #ports > 0 then
    local sp = {}
    for _, p in ipairs(ports) do
      sp[#sp + 1] = { name = ("p%d"):format(p), port = p, targetPort = p, protocol = "TCP" }
    end
    docs[#docs + 1] = { apiVersion = "v1", kind = "Service", metadata = meta,
      spec = { selector = { ["app.kubernetes.io/name"] = name }, ports = sp } }
  end
  return docs
end

function M.files(decls, opts, unmapped, warnings)
  export.container_prelude(opts, warnings, "manifests")
  local files = {}
  for _, d in ipairs(decls) do
    local head = export.head(opts, unmapped, { [d.name] = true })
    if not opts.image then
      head[#head + 1] = "image: " .. export.PLACEHOLDER_IMAGE .. " is a placeholder: set yours (--image)"
    end
    local text, err = export.yaml(M.manifests(d, opts))
    if not text then return nil, err end
    files[#files + 1] = { name = export.dns_name(d.name) .. ".yaml", text = export.comment(head) .. text }
  end
  return files
end

return M
