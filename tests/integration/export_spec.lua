-- pm export (lua/pm/export*.lua): one ecosystem file using every attribute,
-- exported to each target; the values checked field by field, the list of
-- what is not mapped checked, and every file validated by the target's own
-- tool: systemd-analyze verify (Debian's systemd), docker-compose config
-- (Debian's docker-compose), the Kubernetes API schemas (kubernetes-models
-- from npm in tests/npm: `make test-npm`), Nomad's job structure (a checker
-- here, from Nomad's api/ types and its Validate rules).
local H = require "pmtest"
local util = require "pm.util"
local core = require "pm.core"

local function which(cmd)
  local p = io.popen("command -v " .. cmd .. " 2>/dev/null")
  local out = p:read("*l")
  p:close()
  return out
end

-- ---- the ecosystem file: every attribute of app.lua's schema ----

local PORT, DB_PORT = 18080, 15432
local function ecosystem()
  local home = H.home
  H.script("app.sh", "#!/bin/bash\nexec sleep 1000\n")
  H.script("worker.lua", "require('pm.child')\n", "644")
  H.write(home .. "/.env", "FROM_FILE=2\n")
  return H.write(home .. "/ecosystem.lua", ([[
local function hook() end
return {
  apps = {
    { name = "db", script = "/bin/sleep", args = "1000", autorestart = false, kill_mode = "process",
      health = { tcp = "127.0.0.1:%d" } },
    { name = "api", script = "app.sh", interpreter = "bash", interpreter_args = { "-e" },
      args = { "--port", "%d" }, cwd = %q, instances = 2, exec_mode = "cluster", namespace = "shop",
      env = { MODE = "on", QUOTE = 'say "hi" 100%%' }, env_production = { MODE = "prod" }, env_file = ".env",
      min_uptime = 2000, max_restarts = 5, restart_delay = 250, stop_exit_codes = { 3 },
      kill_timeout = 4000, kill_signal = "SIGTERM", max_memory_restart = "128M",
      cron_restart = "30 4 * * 1-5", wait_ready = true, listen_timeout = 8000,
      listen = { "tcp://127.0.0.1:%d" },
      health = { http = "http://127.0.0.1:%d/health", interval = 3000, timeout = 1500, retries = 4 },
      depends_on = { "db" }, user = "daemon", instance_var = "APP_INSTANCE", increment_var = "PORT",
      watchdog = 10000, out_file = %q, error_file = %q, log_file = %q, merge_logs = true,
      time = true, log_date_format = "YYYY-MM-DD", log_type = "json", pid_file = %q,
      max_log_size = "10M", retain = 5, log_rotate = "daily", compress = true,
      watch = { "src" }, ignore_watch = { "node_modules" }, watch_delay = 500,
      shutdown_with_message = true, input = true, on_exit = hook, on_start = hook, on_stop = hook,
      vizion = false, force = true },
    { name = "worker", script = "worker.lua", exp_backoff_restart_delay = 200, disable_logs = true,
      port = 9000, gid = 0, health = { exec = "true" }, autostart = false, filter_env = true,
      ipc = false, treekill = false },
  },
}
]]):format(DB_PORT, PORT, home, PORT, PORT, home .. "/api.out", home .. "/api.err", home .. "/api.log",
    home .. "/api.pid"))
end

-- What each target cannot map, per app (the attributes, sorted)
local LOGS = { "compress", "log_date_format", "log_rotate", "log_type", "max_log_size", "merge_logs",
  "retain", "time" }
local API_COMMON = { "exec_mode", "ignore_watch", "input", "on_exit", "on_start", "on_stop", "pid_file",
  "shutdown_with_message", "watch", "watch_delay" }
local function plus(...)
  local out = {}
  for _, list in ipairs({ ... }) do for _, v in ipairs(list) do out[#out + 1] = v end end
  table.sort(out)
  return out
end
local EXPECTED = {
  systemd = { db = { "health" }, worker = { "health" },
    api = plus(API_COMMON, LOGS, { "health", "increment_var", "log_file", "namespace" }) },
  kubernetes = { db = { "autorestart", "kill_mode", "kill_signal" },
    worker = { "disable_logs", "exp_backoff_restart_delay", "kill_signal", "treekill" },
    api = plus(API_COMMON, LOGS, { "cron_restart", "depends_on", "error_file", "increment_var", "instance_var",
      "listen", "listen_timeout", "log_file", "max_restarts", "min_uptime", "out_file", "restart_delay",
      "stop_exit_codes", "wait_ready", "watchdog" }) },
  nomad = { db = { "kill_mode" }, worker = { "disable_logs", "gid", "treekill" },
    api = plus(API_COMMON, LOGS, { "cron_restart", "depends_on", "error_file", "increment_var", "listen",
      "listen_timeout", "log_file", "namespace", "out_file", "stop_exit_codes", "wait_ready", "watchdog" }) },
  compose = { db = { "kill_mode" }, worker = { "disable_logs", "exp_backoff_restart_delay", "treekill" },
    api = plus(API_COMMON, LOGS, { "cron_restart", "error_file", "increment_var", "instance_var", "listen",
      "log_file", "namespace", "out_file", "stop_exit_codes", "wait_ready", "watchdog" }) },
}

-- stderr's "pm export: not mapped: app: attr: why" lines -> { app = { attr... } }
local function unmapped_of(err)
  local out = {}
  for app, attr in err:gmatch("pm export: not mapped: ([%w_-]+): ([%w_]+): [^\n]+") do
    out[app] = out[app] or {}
    table.insert(out[app], attr)
  end
  for _, list in pairs(out) do table.sort(list) end
  return out
end

-- pm export of the spec's file (each set of arguments once: the specs
-- share the files) -> the folder, the command's result
local exported = {}
local function export(to, ...)
  local key = table.concat({ to, ... }, " ")
  if exported[key] then return unpack(exported[key]) end
  local out = H.home .. "/out-" .. key:gsub("[^%w]+", "-")
  local r = H.ok(H.pm("export", H.home .. "/ecosystem.lua", "--to", to, "--out", out, "--env", "production", ...),
    "pm export --to " .. to)
  exported[key] = { out, r }
  return out, r
end

local function read(path) return assert(util.read_file(path), path) end

-- a unit file -> { Section = { Key = { values in order } } }
local function unit(path)
  local u, sec = {}, nil
  for line in read(path):gmatch("[^\n]+") do
    local s = line:match("^%[(.+)%]$")
    if s then
      sec = s
      u[s] = u[s] or {}
    elseif sec and not line:match("^#") then
      local k, v = line:match("^([%w]+)=(.*)$")
      u[sec][k] = u[sec][k] or {}
      table.insert(u[sec][k], v)
    end
  end
  return u
end

local function yaml_docs(path)
  local docs = {}
  for _, d in ipairs(require("lyaml").load(read(path), { all = true })) do docs[#docs + 1] = d end
  return docs
end

local function find(list, key, value)
  for _, e in ipairs(list or {}) do if e[key] == value then return e end end
end

describe("pm export", function()
  local file, home
  setup(function()
    home = H.new_home()
    file = ecosystem()
  end)
  before_each(function() H.home = home end)
  teardown(function() H.cleanup(home) end)

  it("lists what a target cannot map, one line per app and attribute, and in each file's head", function()
    for to, expected in pairs(EXPECTED) do
      local out, r = export(to)
      assert.same(expected, unmapped_of(r.err), to)
      -- each file's head comment says the same of its apps
      local p = io.popen("ls " .. H.shquote(out))
      for name in p:lines() do
        local text = read(out .. "/" .. name)
        if to == "nomad" then
          local meta = util.decode(text).Job.Meta
          local lines = {}
          for _, v in pairs(meta) do lines[#lines + 1] = v end
          text = table.concat(lines, "\n")
        end
        for app, attrs in pairs(expected) do
          if to == "nomad" or to == "compose" or name:match("^" .. app .. "[@.-]") then
            for _, a in ipairs(attrs) do
              assert.truthy(text:find(app .. ": " .. a .. ": ", 1, true), ("%s %s: %s %s"):format(to, name, app, a))
            end
          end
        end
      end
      p:close()
    end
  end)

  it("--keep-pm runs each app under pm runtime and leaves nothing unmapped", function()
    local out, r = export("systemd", "--keep-pm")
    assert.equal("", (r.err:gsub("pm export: warning:[^\n]*\n", "")))
    -- one unit per app (pm runtime runs its instances), the file's own env
    local u = unit(out .. "/api.service")
    assert.equal(("%s runtime %s --only api --grace 4000 --env production"):format(H.bin, file),
      u.Service.ExecStart[1])
    assert.same({ "PM_HOME=/run/pm-api" }, u.Service.Environment)
    assert.same({ "SIGTERM" }, u.Service.KillSignal)
    assert.same({ "9s" }, u.Service.TimeoutStopSec) -- kill_timeout, and 5 s for pm runtime
    assert.same({ "on-failure" }, u.Service.Restart) -- (pm runtime ends 1 when its app is errored)
    local kout = export("kubernetes", "--keep-pm", "--image", "reg/app:1")
    local docs = yaml_docs(kout .. "/api.yaml")
    local dep = docs[1]
    local c = dep.spec.template.spec.containers[1]
    assert.same({ "pm", "runtime", "/app/ecosystem.lua", "--only", "api", "--grace", "4000", "--env", "production",
      "--health", "0.0.0.0:9615" }, c.command)
    assert.equal(1, dep.spec.replicas)
    assert.equal(9615, c.readinessProbe.httpGet.port)
    assert.is_nil(c.env)
    assert.equal(9, dep.spec.template.spec.terminationGracePeriodSeconds)
    assert.equal(PORT, docs[2].spec.ports[1].port) -- (what pm holds is published)
    -- valid for each tool too
    local cout = export("compose", "--keep-pm", "--image", "reg/app:1")
    if which("docker-compose") then
      assert.equal(0, H.sh("docker-compose -f " .. H.shquote(cout .. "/compose.yaml") .. " config").code)
    end
    local nout = export("nomad", "--keep-pm")
    assert.same({}, require("nomad_job").check(util.decode(read(nout .. "/ecosystem.nomad.json"))))
  end)

  it("systemd: units checked field by field and by systemd-analyze verify", function()
    local out = export("systemd")
    local names = {}
    local p = io.popen("ls " .. H.shquote(out))
    for n in p:lines() do names[#names + 1] = n end
    p:close()
    assert.same({ "api-restart.service", "api-restart.timer", "api.target", "api@.service", "api@.socket",
      "db.service", "worker.service" }, names)
    local api = unit(out .. "/api@.service")
    local S = api.Service
    assert.same({ "/usr/bin/bash -e " .. H.home .. "/app.sh --port " .. PORT }, S.ExecStart)
    assert.same({ H.home }, S.WorkingDirectory)
    assert.same({ '"FROM_FILE=2"', '"MODE=prod"', '"QUOTE=say \\"hi\\" 100%%"', '"APP_INSTANCE=%i"' }, S.Environment)
    assert.same({ "notify" }, S.Type)
    assert.same({ "8s" }, S.TimeoutStartSec)
    assert.same({ "10s" }, S.WatchdogSec)
    assert.same({ "always" }, S.Restart)
    assert.same({ "250ms" }, S.RestartSec)
    assert.same({ "3" }, S.RestartPreventExitStatus)
    assert.same({ "SIGTERM" }, S.KillSignal)
    assert.same({ "4s" }, S.TimeoutStopSec)
    assert.same({ "134217728" }, S.MemoryMax)
    assert.same({ "daemon" }, S.User)
    assert.same({ "append:" .. H.home .. "/api.out" }, S.StandardOutput)
    assert.same({ "append:" .. H.home .. "/api.err" }, S.StandardError)
    assert.same({ "5" }, api.Unit.StartLimitBurst)
    assert.same({ "11250ms" }, api.Unit.StartLimitIntervalSec) -- 5 x (min_uptime + delay)
    assert.same({ "network.target api@%i.socket db.service" }, api.Unit.After)
    assert.same({ "api@%i.socket db.service" }, api.Unit.Requires)
    assert.same({ "api.target" }, api.Install.WantedBy)
    local target = unit(out .. "/api.target")
    assert.same({ "api@0.service api@1.service" }, target.Unit.Wants)
    local sock = unit(out .. "/api@.socket")
    assert.same({ "127.0.0.1:" .. PORT }, sock.Socket.ListenStream)
    assert.same({ "tcp_127.0.0.1_" .. PORT }, sock.Socket.FileDescriptorName)
    assert.same({ "yes" }, sock.Socket.ReusePort)
    local timer = unit(out .. "/api-restart.timer")
    assert.same({ "Mon..Fri *-*-* 04:30:00" }, timer.Timer.OnCalendar)
    assert.same({ "/bin/systemctl try-restart api@0.service api@1.service" },
      unit(out .. "/api-restart.service").Service.ExecStart)
    local db = unit(out .. "/db.service")
    assert.same({ "no" }, db.Service.Restart)
    assert.same({ "process" }, db.Service.KillMode)
    assert.same({ "SIGINT" }, db.Service.KillSignal)
    assert.is_nil(db.Unit.StartLimitBurst)
    local worker = unit(out .. "/worker.service")
    assert.same({ H.bin .. " run " .. H.home .. "/worker.lua" }, worker.Service.ExecStart)
    assert.same({ "200ms" }, worker.Service.RestartSec)
    assert.same({ "null" }, worker.Service.StandardOutput)
    assert.same({ "process" }, worker.Service.KillMode)
    assert.same({ "0" }, worker.Service.Group)
    assert.same({ '"PORT=9000"' }, worker.Service.Environment)
    assert.is_nil(worker.Install) -- autostart = false: not enabled

    if not which("systemd-analyze") then return pending("systemd-analyze is not installed (make deps)") end
    local files = {}
    for _, n in ipairs(names) do
      if not n:find("@", 1, true) then files[#files + 1] = H.shquote(out .. "/" .. n) end
    end
    -- the template and its socket are loaded through api.target's Wants=
    local r = H.sh("systemd-analyze verify --man=no " .. table.concat(files, " "))
    local complaints = {}
    for line in (r.err .. r.out):gmatch("[^\n]+") do
      -- systemd before 254 knows no RestartSteps= nor RestartMaxDelaySec= (the
      -- exponential back-off): said, and the unit loads without them
      if not line:find("Unknown key '(RestartSteps|RestartMaxDelaySec)'")
          and not line:find("Unknown key 'RestartSteps'", 1, true)
          and not line:find("Unknown key 'RestartMaxDelaySec'", 1, true) then
        complaints[#complaints + 1] = line
      end
    end
    assert.equal(0, r.code, table.concat(complaints, "\n"))
    assert.same({}, complaints)
    -- the check can fail: a missing program is refused
    H.write(out .. "/bad.service", (read(out .. "/db.service"):gsub("/bin/sleep", "/nonexistent/sleep")))
    assert.are_not.equal(0, H.sh("systemd-analyze verify --man=no " .. H.shquote(out .. "/bad.service")).code)
  end)

  it("kubernetes: manifests checked field by field and against the API schemas", function()
    local _, r = export("kubernetes")
    assert.truthy(r.err:find("warning: no --image", 1, true))
    local out = export("kubernetes", "--image", "registry.example/shop:1")
    local api = yaml_docs(out .. "/api.yaml")
    assert.equal(2, #api)
    local dep, svc = api[1], api[2]
    assert.equal("Deployment", dep.kind)
    assert.equal("shop", dep.metadata.namespace)
    assert.equal(2, dep.spec.replicas)
    local pod = dep.spec.template.spec
    assert.equal(4, pod.terminationGracePeriodSeconds)
    local c = pod.containers[1]
    assert.equal("registry.example/shop:1", c.image)
    assert.same({ "bash" }, c.command) -- (the image's, on its PATH)
    assert.same({ "-e", H.home .. "/app.sh", "--port", tostring(PORT) }, c.args)
    assert.equal(H.home, c.workingDir)
    assert.same({ { name = "FROM_FILE", value = "2" }, { name = "MODE", value = "prod" },
      { name = "QUOTE", value = 'say "hi" 100%' } }, c.env)
    assert.same({ path = "/health", port = PORT }, c.readinessProbe.httpGet)
    assert.equal(3, c.readinessProbe.periodSeconds)
    assert.equal(2, c.readinessProbe.timeoutSeconds)
    assert.equal(4, c.readinessProbe.failureThreshold)
    assert.same(c.readinessProbe, c.livenessProbe)
    assert.equal("134217728", c.resources.limits.memory)
    assert.equal(1, c.securityContext.runAsUser)
    assert.same({ { containerPort = PORT, name = "p" .. PORT, protocol = "TCP" } }, c.ports)
    assert.equal("Service", svc.kind)
    assert.same({ { name = "p" .. PORT, port = PORT, targetPort = PORT, protocol = "TCP" } }, svc.spec.ports)
    local db = yaml_docs(out .. "/db.yaml")
    assert.equal(1, #db) -- no port published: no Service
    assert.equal(DB_PORT, db[1].spec.template.spec.containers[1].livenessProbe.tcpSocket.port)
    local worker = yaml_docs(out .. "/worker.yaml")
    assert.equal(0, worker[1].spec.replicas) -- autostart = false
    local wc = worker[1].spec.template.spec.containers[1]
    assert.same({ "/bin/sh", "-c", "true" }, wc.readinessProbe.exec.command)
    assert.same({ "run", H.home .. "/worker.lua" }, wc.args)

    local validator = H.src .. "/tests/npm/node_modules/kubernetes-models"
    if not which("node") or not H.exists(validator) then
      return pending("the Kubernetes schemas (make test-npm: kubernetes-models from npm) are not installed")
    end
    local all = {}
    for _, f in ipairs({ "api", "db", "worker" }) do
      for _, d in ipairs(yaml_docs(out .. "/" .. f .. ".yaml")) do all[#all + 1] = d end
    end
    local vr = H.sh("node " .. H.shquote(H.src .. "/tests/helpers/kube_validate.js"), { stdin = util.encode(all) })
    assert.equal(0, vr.code, vr.out .. vr.err)
    assert.equal(5, select(2, vr.out:gsub("valid ", "")))
    -- the check can fail: a replica count as a string is refused
    dep.spec.replicas = "2"
    vr = H.sh("node " .. H.shquote(H.src .. "/tests/helpers/kube_validate.js"), { stdin = util.encode({ dep }) })
    assert.equal(1, vr.code, vr.out)
  end)

  it("compose: services checked field by field and by docker-compose config", function()
    local out = export("compose", "--image", "registry.example/shop:1")
    local doc = yaml_docs(out .. "/compose.yaml")[1]
    local api = doc.services.api
    assert.equal("registry.example/shop:1", api.image)
    assert.same({ "bash" }, api.entrypoint)
    assert.same({ "-e", H.home .. "/app.sh", "--port", tostring(PORT) }, api.command)
    assert.equal(H.home, api.working_dir)
    assert.same({ FROM_FILE = "2", MODE = "prod", QUOTE = 'say "hi" 100%' }, api.environment)
    assert.equal("1:1", api.user)
    assert.equal("always", api.restart)
    assert.same({ replicas = 2, restart_policy = { condition = "any", delay = "250ms", max_attempts = 5,
      window = "2s" }, resources = { limits = { memory = "134217728b" } } }, api.deploy)
    assert.same({ db = { condition = "service_healthy" } }, api.depends_on)
    assert.equal("SIGTERM", api.stop_signal)
    assert.equal("4s", api.stop_grace_period)
    assert.same({ PORT .. ":" .. PORT }, api.ports)
    assert.equal("3s", api.healthcheck.interval)
    assert.equal("1500ms", api.healthcheck.timeout)
    assert.equal(4, api.healthcheck.retries)
    assert.equal("8s", api.healthcheck.start_period)
    assert.equal("CMD-SHELL", api.healthcheck.test[1])
    assert.truthy(api.healthcheck.test[2]:find("http://127.0.0.1:" .. PORT .. "/health", 1, true))
    local db = doc.services.db
    assert.equal("no", db.restart)
    assert.same({ condition = "none" }, db.deploy.restart_policy)
    assert.same({ "CMD", "bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/" .. DB_PORT }, db.healthcheck.test)
    local worker = doc.services.worker
    assert.equal(0, worker.deploy.replicas)
    assert.same({ "CMD-SHELL", "true" }, worker.healthcheck.test)
    assert.same({ "9000:9000" }, worker.ports)

    if not which("docker-compose") then return pending("docker-compose is not installed (make deps)") end
    local r = H.sh("docker-compose -f " .. H.shquote(out .. "/compose.yaml") .. " config")
    assert.equal(0, r.code, r.err)
    local seen = require("lyaml").load(r.out)
    assert.equal("registry.example/shop:1", seen.services.api.image)
    -- the check can fail: a restart policy Compose does not know
    H.write(out .. "/bad.yaml", (read(out .. "/compose.yaml"):gsub("stop_signal:", "stop_signall:", 1)))
    assert.are_not.equal(0, H.sh("docker-compose -f " .. H.shquote(out .. "/bad.yaml") .. " config").code)
  end)

  it("nomad: the JSON job checked field by field and against Nomad's job structure", function()
    local out = export("nomad")
    local job = util.decode(read(out .. "/ecosystem.nomad.json"))
    assert.same({}, require("nomad_job").check(job))
    local J = job.Job
    assert.equal("ecosystem", J.ID)
    assert.equal("service", J.Type)
    local api = find(J.TaskGroups, "Name", "api")
    assert.equal(2, api.Count)
    local NS = 1000000
    assert.same({ Attempts = 5, Interval = 5 * 2250 * NS, Delay = 250 * NS, Mode = "fail" }, api.RestartPolicy)
    assert.same({ Delay = 5000 * NS, DelayFunction = "constant", Unlimited = true }, api.ReschedulePolicy)
    assert.same({ { ReservedPorts = { { Label = "p" .. PORT, Value = PORT } } } }, api.Networks)
    local t = api.Tasks[1]
    assert.equal("raw_exec", t.Driver)
    assert.equal("/bin/sh", t.Config.command)
    assert.same({ "-c", 'cd "$1" && shift && exec "$@"', "sh", H.home, "/usr/bin/bash", "-e", H.home .. "/app.sh",
      "--port", tostring(PORT) }, t.Config.args)
    assert.same({ FROM_FILE = "2", MODE = "prod", QUOTE = 'say "hi" 100%', APP_INSTANCE = "${NOMAD_ALLOC_INDEX}" },
      t.Env)
    assert.equal("daemon", t.User)
    assert.equal(4000 * NS, t.KillTimeout)
    assert.equal("SIGTERM", t.KillSignal)
    assert.same({ MemoryMB = 128 }, t.Resources)
    local check = t.Services[1].Checks[1]
    assert.same({ Name = "api-health", Type = "http", Path = "/health", Protocol = "http", PortLabel = "p" .. PORT,
      Interval = 3000 * NS, Timeout = 1500 * NS, CheckRestart = { Limit = 4 } }, check)
    local db = find(J.TaskGroups, "Name", "db")
    assert.same({ Attempts = 0, Interval = 5000 * NS, Delay = 0, Mode = "fail" }, db.RestartPolicy)
    assert.equal("tcp", db.Tasks[1].Services[1].Checks[1].Type)
    local worker = find(J.TaskGroups, "Name", "worker")
    assert.equal(0, worker.Count)
    assert.equal("exponential", worker.ReschedulePolicy.DelayFunction)
    assert.equal("script", worker.Tasks[1].Services[1].Checks[1].Type)
    -- the checker can fail: a misspelt field, a wrong type, a restart policy Nomad refuses
    api.Count = "2"
    t.Kill_Timeout = 1
    db.RestartPolicy.Interval = 1000 * NS
    local errs = require("nomad_job").check(job)
    assert.equal(3, #errs, table.concat(errs, "\n"))
  end)

  it("exports what runs: the daemon's declarations, with their own environment only", function()
    H.ok(H.pm("start", file, "--only", "db"))
    local r = H.ok(H.pm("export", "db", "--to", "kubernetes", "--image", "x/y:1"))
    local dep = require("lyaml").load(r.out)
    local c = dep.spec.template.spec.containers[1]
    assert.same({ "/bin/sleep" }, c.command)
    assert.same({ "1000" }, c.args)
    assert.is_nil(c.env) -- (the daemon's environment is not the app's declaration)
    assert.same({ db = { "autorestart", "kill_mode", "kill_signal" } }, unmapped_of(r.err))
    H.fails(H.pm("export", "nosuch", "--to", "nomad"), "not found")
  end)

  it("refuses a bad target or a bad file with one line", function()
    H.fails(H.pm("export", file, "--to", "upstart"), "unknown target 'upstart'")
    H.fails(H.pm("export", file), "--to is required")
    H.write(H.home .. "/bad.lua", "return { apps = { { name = 'x' } } }")
    H.fails(H.pm("export", H.home .. "/bad.lua", "--to", "systemd"), "script")
    H.fails(H.pm("export", file, "--to", "systemd", "--out", "/proc/nope"))
    -- a folder others may write to: a link there would take the write
    core.mkdir(H.home .. "/shared", 511)
    core.chmod(H.home .. "/shared", 511) -- 0777
    H.fails(H.pm("export", file, "--to", "systemd", "--out", H.home .. "/shared"), "only you may write")
  end)

  it("systemd: a log file in a folder a user may change goes to the journal, and every file is 0600", function()
    local USER = H.other_user()
    if core.getuid() ~= 0 or not USER then return pending("needs root and a user cloudsdk (or nobody)") end
    local p = io.popen("mktemp -d /tmp/pm-export-logs.XXXXXX")
    local top = p:read("*l")
    p:close()
    finally(function() os.execute("rm -rf " .. H.shquote(top)) end)
    os.execute("chmod 0711 " .. H.shquote(top))
    core.mkdir(top .. "/theirs", 493)
    os.execute(("chown %d %s"):format(USER.uid, H.shquote(top .. "/theirs")))
    core.mkdir(top .. "/roots", 493)
    local eco_file = H.write(H.home .. "/logs-eco.lua", ([[
return { apps = {
  { name = "svc", script = "/bin/sleep", args = "1000", user = %q, env = { SECRET = "s3cret" },
    out_file = %q, error_file = %q },
} }
]]):format(USER.name, top .. "/theirs/out.log", top .. "/roots/err.log"))
    local out = H.home .. "/out-logs"
    H.ok(H.pm("export", eco_file, "--to", "systemd", "--out", out))
    local S = unit(out .. "/svc.service").Service
    assert.same({ "journal" }, S.StandardOutput)
    assert.same({ "append:" .. top .. "/roots/err.log" }, S.StandardError)
    local text = read(out .. "/svc.service")
    assert.truthy(text:find("# StandardOutput: not append:" .. top .. "/theirs/out.log", 1, true), text)
    assert.equal(384, bit.band(core.stat(out .. "/svc.service").mode, 511)) -- 0600: SECRET is in it
  end)
end)
