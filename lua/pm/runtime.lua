--[[ pm runtime inside a scheduler (Kubernetes, Nomad, systemd, Compose):
what its exit code says, how long a SIGTERM's stop may take, when it exits
on its own (PM2's pm2-runtime: when no app is left running), --health
(an HTTP endpoint for liveness and readiness probes) and --json (PM2's
`--json` log lines on stdout, what Loki, Vector and Fluent Bit parse).

Exit codes (doc: `pm help runtime`, README):
  0  stopped by SIGTERM or SIGINT: every app stopped, dependents first
  1  an app ended errored (its restarts spent), the file could not be
     started, PM_HOME was unusable or another daemon holds it, --health
     could not listen
  2  no app left running (each stopped on its own), as pm2-runtime's
     auto-exit; also a usage error
The health endpoint is served by libmicrohttpd (pm.httplib, as pm web's):
a request's head of at most 8 KB, 2 s idle, at most 32 connections. ]]
local core = require "pm.core"
local util = require "pm.util"
local log = require "pm.log"

local M = {}

M.EXIT = { stopped = 0, errored = 1, no_app_left = 2 }
M.GRACE = 30000 -- ms: Kubernetes' default terminationGracePeriodSeconds
M.MAX_CLIENTS, M.MAX_HEAD, M.CLIENT_TIMEOUT = 32, 8192, 2000

local ctx -- { all, shutdown, kill_leftovers, closing }

-- ---- health ----

-- Whether an app counts as up: online, or stopped by its declaration
-- (autostart = false and never started)
local function up(p)
  if p.status == "online" then return true end
  return p.status == "stopped" and p.decl and p.decl.autostart == false and not p.pm_uptime
end

-- -> code, body (JSON: the apps and their status)
function M.health_answer(list, closing)
  local ok = #list > 0 and not closing
  local apps = {}
  for _, p in ipairs(list) do
    ok = ok and up(p)
    apps[#apps + 1] = { name = p.name, pm_id = p.pm_id, status = p.status }
  end
  local body = util.encode({ status = ok and "ok" or "unavailable", apps = util.array(apps) })
  return ok and 200 or 503, body
end

-- "HOST:PORT", "[::1]:PORT", ":PORT" or "PORT" -> host, port | nil, err
function M.parse_addr(s)
  if type(s) ~= "string" then return nil, "an address expected" end
  local host, port = s:match("^%[([^%]]*)%]:(%d+)$")
  if not host then host, port = s:match("^([^:]*):(%d+)$") end
  if not host and s:match("^%d+$") then host, port = "", s end
  port = tonumber(port)
  if not port or port < 1 or port > 65535 then
    return nil, ("--health %s: HOST:PORT or PORT expected"):format(s)
  end
  if host == "" then host = "0.0.0.0" end
  return host, port
end

-- Listens on addr -> true | nil, err. HTTP through libmicrohttpd in pm's
-- loop (pm.httplib, pm web's server): any method and path gets the
-- answer; at most MAX_CLIENTS connections, a request head of MAX_HEAD
-- bytes, no body, CLIENT_TIMEOUT idle.
function M.serve_health(addr)
  local host, port = M.parse_addr(addr)
  if not host then return nil, port end
  local lib, lerr = require("pm.httplib").load()
  if not lib then return nil, ("--health %s: %s"):format(addr, tostring(lerr)) end
  local server, err
  server, err = lib.http_server({ host = host, port = port, connections = M.MAX_CLIENTS,
    per_ip = M.MAX_CLIENTS, timeout = math.ceil(M.CLIENT_TIMEOUT / 1000), memory = M.MAX_HEAD, max_body = 0 },
    function(id)
      local code, body = M.health_answer(ctx.all(), ctx.closing())
      server:respond(id, code, { ["Content-Type"] = "application/json", ["Cache-Control"] = "no-store",
        Connection = "close" }, body) -- (a probe per connection: it reads to the end)
    end, function() end)
  if not server then return nil, ("--health %s: %s"):format(addr, tostring(err)) end
  M.health_server = server
  log.info("pm runtime: health on http://%s:%d/", host, port)
  return true
end

-- ---- --json: PM2's log lines ----

-- ms since the epoch -> "2026-01-02T03:04:05.678Z" (dayjs's JSON)
function M.iso(ms)
  local s = math.floor(ms / 1000)
  return os.date("!%Y-%m-%dT%H:%M:%S", s) .. (".%03dZ"):format(ms - s * 1000)
end

-- One JSON line per line of output: {message, timestamp, type, process_id, app_name}
function M.log_line(p, which, data, now)
  local out = {}
  local ts = util.encode(M.iso(now or core.now()))
  for line in (data .. (data:sub(-1) == "\n" and "" or "\n")):gmatch("([^\n]*)\n") do
    line = line:gsub("\r$", "")
    out[#out + 1] = ('{"message":%s,"timestamp":%s,"type":%s,"process_id":%d,"app_name":%s}\n')
      :format(util.encode(line), ts, which == "out" and '"out"' or '"err"', p.pm_id or 0, util.encode(p.name))
  end
  return table.concat(out)
end

-- {timestamp, type = "process_event", status, app_name}
function M.event_line(event, name, at)
  return ('{"timestamp":%s,"type":"process_event","status":%s,"app_name":%s}\n')
    :format(util.encode(M.iso(at or core.now())), util.encode(event), util.encode(name))
end

local function json_echo(p, which, data)
  io.stdout:write(M.log_line(p, which, data))
  io.stdout:flush()
end

-- The process events, through the bus as a client would hear them
local function listen_events(bus)
  local conn = { stream = {
    pending = function() return 0 end,
    write = function(_, text)
      local m = util.decode(text)
      local d = type(m) == "table" and type(m.params) == "table" and m.params.data
      if type(d) == "table" and m.params.event == "process:event" and type(d.process) == "table" then
        io.stdout:write(M.event_line(tostring(d.event), tostring(d.process.name), tonumber(d.at)))
        io.stdout:flush()
      end
    end,
  } }
  bus.subscribe(conn, { "process:event" })
  M.events_conn = conn
end

-- ---- setup ----

--[[ Called by the daemon in runtime mode before its loop runs. opts:
json, health (ADDR), grace (ms), auto_exit (false: stay). c: { all()
(the records), shutdown(code), kill_leftovers(), closing() (whether the
daemon stops) }. -> true | nil, err ]]
function M.setup(opts, c)
  ctx = c
  M.opts = opts
  if opts.json then
    require("pm.applogs").set_echo(json_echo)
    listen_events(require "pm.bus")
  end
  if opts.health then
    local ok, err = M.serve_health(opts.health)
    if not ok then return nil, err end
  end
  return true
end

-- The apps are started: from now on, no app left running ends it (2)
function M.started()
  if M.opts.auto_exit == false or M.auto_timer then return end
  M.auto_timer = core.timer(500, 500, function()
    if ctx.closing() then return end
    local list = ctx.all()
    for _, p in ipairs(list) do
      if p.status ~= "stopped" and p.status ~= "errored" then return end
    end
    log.info("pm runtime: no app left running: exit %d", M.EXIT.no_app_left)
    ctx.shutdown(M.EXIT.no_app_left)
  end)
end

-- SIGTERM/SIGINT: apps stop dependents first (the daemon's stop); past
-- the grace period what still runs is killed, and the stop completes.
function M.on_term()
  if M.grace_timer then return end
  local grace = tonumber(M.opts.grace) or M.GRACE
  M.grace_timer = core.timer(grace, 0, function()
    local n = ctx.kill_leftovers()
    log.warn("pm runtime: the grace period (%d ms) is over: %d process(es) killed", grace, n)
  end)
end

return M
