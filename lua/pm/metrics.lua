-- The daemon's numbers in Prometheus' text format (the RPC `metrics`,
-- served by the web process as /metrics): pm2-prometheus-exporter's names
-- (pm2_up, pm2_cpu, pm2_memory, pm2_uptime, pm2_restarts, pm2_instances,
-- labels id, name, namespace, instance, interpreter), so that dashboards
-- made for it work, and what only pm knows (pm_*): restarts by reason,
-- exits by code and signal, readiness and health, log lines dropped, the
-- bus, the daemon's own memory, Lua heap, fds and requests. What it counts
-- it learns from the process events (proc.on_event) and the bus's
-- log:dropped; the rest is read from the records when asked.
local core = require "pm.core"
local util = require "pm.util"
local proc = require "pm.proc"

local M = {}

-- counters kept since the daemon started, by app (pm_id) and label
local restarts = {}   -- pm_id -> reason -> n
local exits = {}      -- pm_id -> "code\0signal" -> n
local health = {}     -- pm_id -> n
local dropped = {}    -- pm_id -> { lines, bytes }
local last_exit = setmetatable({}, { __mode = "k" }) -- record -> reason of its last exit

local function bump(t, id, key)
  local c = t[id]
  if not c then c = {}; t[id] = c end
  c[key] = (c[key] or 0) + 1
end

-- proc.on_event: every process event, published or not
function M.on_event(p, what, extra, manually)
  if what == "exit" then
    local code = extra and extra.code
    local sig = extra and extra.signal
    code = (code ~= nil and code ~= util.null) and tostring(code) or ""
    sig = (sig ~= nil and sig ~= util.null) and tostring(sig) or ""
    bump(exits, p.pm_id, code .. "\0" .. sig)
    last_exit[p] = extra and extra.reason
  elseif what == "restart" then
    local reason = extra and extra.reason
    if not reason then
      reason = manually and "manual" or last_exit[p] or "exit"
      if reason == "stop" then reason = "manual" end
    end
    bump(restarts, p.pm_id, reason)
  elseif what == "health" then
    health[p.pm_id] = (health[p.pm_id] or 0) + 1
  elseif what == "delete" then
    restarts[p.pm_id], exits[p.pm_id], health[p.pm_id], dropped[p.pm_id] = nil, nil, nil, nil
  end
end

-- the bus's log:dropped (applogs.lua): lines a full disk refused
function M.on_dropped(data)
  local id = type(data) == "table" and type(data.process) == "table" and data.process.pm_id
  if not id then return end
  local d = dropped[id]
  if not d then d = { 0, 0 }; dropped[id] = d end
  d[1] = d[1] + (tonumber(data.lines) or 0)
  d[2] = d[2] + (tonumber(data.bytes) or 0)
end

-- A label value as the text format wants it.
local function esc(s)
  return (tostring(s):gsub('[\\"\n]', { ["\\"] = "\\\\", ['"'] = '\\"', ["\n"] = "\\n" }))
end

local function num(v)
  if v ~= v or v == math.huge or v == -math.huge then return "0" end
  return util.json_number(v)
end

local function interpreter(d)
  local i = d.interpreter
  if i == nil or i == "" then return "none" end
  return util.basename(tostring(i))
end

local function daemon_rss()
  local f = io.open("/proc/self/statm")
  if not f then return 0 end
  local s = f:read("*l") or ""
  f:close()
  local pages = tonumber(s:match("^%d+%s+(%d+)")) or 0
  return pages * 4096
end

local function fd_count()
  local n = 0
  for _ in pairs(core.listdir("/proc/self/fd") or {}) do n = n + 1 end
  return n
end

--[[ The text of a scrape. ctx: sample(p) -> rss, cpu (describe's, from
/proc when stale), list (the records), bus (pm.bus), requests (method ->
count). ]]
function M.text(ctx)
  local list = ctx.list
  local now = core.now()
  local out, n = {}, 0
  local function put(s) n = n + 1; out[n] = s end
  local labels, up, cpu, mem, uptime, rest, inst, ready, hf = {}, {}, {}, {}, {}, {}, {}, {}, {}
  local per_name = {}
  for i, p in ipairs(list) do
    local d = p.decl
    per_name[p.name] = (per_name[p.name] or 0) + 1
    labels[i] = ('{id="%d",name="%s",namespace="%s",instance="%d",interpreter="%s"}'):format(
      p.pm_id, esc(p.name), esc(d.namespace or "default"), p.instance or 0, esc(interpreter(d)))
    local online = p.status == "online"
    local rss, c = 0, 0
    if (p.pid or 0) > 0 then rss, c = ctx.sample(p) end
    up[i] = online and "1" or "0"
    cpu[i] = num(c or 0)
    mem[i] = num(rss or 0)
    uptime[i] = online and p.pm_uptime and num(math.floor((now - p.pm_uptime) / 1000)) or "0"
    rest[i] = num(p.restart_time or 0)
    ready[i] = (online and p.ready) and "1" or "0"
    hf[i] = num(p.health_failures or 0)
  end
  for i, p in ipairs(list) do inst[i] = num(per_name[p.name]) end
  local function family(name, help, kind, values)
    put("# HELP " .. name .. " " .. help .. "\n# TYPE " .. name .. " " .. kind .. "\n")
    for i = 1, #list do put(name .. labels[i] .. " " .. values[i] .. "\n") end
  end
  family("pm2_up", "Is the process running (1) or not (0)", "gauge", up)
  family("pm2_cpu", "Process CPU usage in percent of one core", "gauge", cpu)
  family("pm2_memory", "Process memory (RSS of its tree) in bytes", "gauge", mem)
  family("pm2_uptime", "Seconds since the process started (0 when not online)", "gauge", uptime)
  family("pm2_restarts", "Restarts of the process since it was declared or reset", "gauge", rest)
  family("pm2_instances", "Processes of the app", "gauge", inst)
  family("pm_ready", "The process is online and ready", "gauge", ready)
  family("pm_health_failures", "Failed health checks in a row", "gauge", hf)
  local function counter(name, help, t, label_of)
    put("# HELP " .. name .. " " .. help .. "\n# TYPE " .. name .. " counter\n")
    for i, p in ipairs(list) do
      local c = t[p.pm_id]
      if c then
        local keys = {}
        for k in pairs(c) do keys[#keys + 1] = k end
        table.sort(keys)
        for _, k in ipairs(keys) do
          put(name .. labels[i]:sub(1, -2) .. "," .. label_of(k) .. "} " .. num(c[k]) .. "\n")
        end
      end
    end
  end
  counter("pm_restarts_total", "Restarts since the daemon started, by reason", restarts,
    function(k) return ('reason="%s"'):format(esc(k)) end)
  counter("pm_exits_total", "Process exits since the daemon started, by exit code or signal", exits,
    function(k)
      local code, sig = k:match("^(.-)%z(.*)$")
      return ('code="%s",signal="%s"'):format(esc(code), esc(sig))
    end)
  put("# HELP pm_health_failures_total Failed health checks since the daemon started\n"
    .. "# TYPE pm_health_failures_total counter\n")
  for i, p in ipairs(list) do
    if health[p.pm_id] then put("pm_health_failures_total" .. labels[i] .. " " .. num(health[p.pm_id]) .. "\n") end
  end
  put("# HELP pm_log_dropped_lines_total Log lines a full disk refused\n# TYPE pm_log_dropped_lines_total counter\n")
  for i, p in ipairs(list) do
    local d = dropped[p.pm_id]
    if d then put("pm_log_dropped_lines_total" .. labels[i] .. " " .. num(d[1]) .. "\n") end
  end
  put("# HELP pm_log_dropped_bytes_total Log bytes a full disk refused\n# TYPE pm_log_dropped_bytes_total counter\n")
  for i, p in ipairs(list) do
    local d = dropped[p.pm_id]
    if d then put("pm_log_dropped_bytes_total" .. labels[i] .. " " .. num(d[2]) .. "\n") end
  end
  local bus = ctx.bus
  put("# HELP pm_bus_subscribers Connections subscribed to events\n# TYPE pm_bus_subscribers gauge\n")
  put("pm_bus_subscribers " .. num(bus.subscribers()) .. "\n")
  put("# HELP pm_bus_dropped_events_total Events dropped for subscribers that did not read\n"
    .. "# TYPE pm_bus_dropped_events_total counter\n")
  put("pm_bus_dropped_events_total " .. num(bus.dropped_total) .. "\n")
  put("# HELP pm_daemon_memory_bytes The daemon's resident memory\n# TYPE pm_daemon_memory_bytes gauge\n")
  put("pm_daemon_memory_bytes " .. num(daemon_rss()) .. "\n")
  put("# HELP pm_daemon_lua_heap_bytes The daemon's Lua heap\n# TYPE pm_daemon_lua_heap_bytes gauge\n")
  put("pm_daemon_lua_heap_bytes " .. num(math.floor(collectgarbage("count") * 1024)) .. "\n")
  put("# HELP pm_daemon_fds The daemon's open file descriptors\n# TYPE pm_daemon_fds gauge\n")
  put("pm_daemon_fds " .. num(fd_count()) .. "\n")
  put("# HELP pm_daemon_requests_total Requests on rpc.sock, by method\n# TYPE pm_daemon_requests_total counter\n")
  local methods = {}
  for k in pairs(ctx.requests) do methods[#methods + 1] = k end
  table.sort(methods)
  for _, m in ipairs(methods) do
    put(('pm_daemon_requests_total{method="%s"} %s\n'):format(esc(m), num(ctx.requests[m])))
  end
  put("# HELP pm_apps Processes in the table\n# TYPE pm_apps gauge\n")
  put("pm_apps " .. num(#list) .. "\n")
  return table.concat(out)
end

proc.on_event = M.on_event

return M
