-- The daemon's numbers in Prometheus' text format (the RPC `metrics`,
-- served by the web process as /metrics): pm2-prometheus-exporter's names
-- (pm2_up, pm2_cpu, pm2_memory, pm2_uptime, pm2_restarts, pm2_instances,
-- labels id, name, namespace, instance, interpreter), so that dashboards
-- made for it work, and what only pm knows (pm_*): restarts by reason,
-- exits by code and signal, readiness and health, log lines dropped, the
-- bus, the daemon's own memory, Lua heap, fds and requests. What it counts
-- it learns from the process events (proc.on_event) and the bus's
-- log:dropped; the rest is read from the records when asked. The daemon
-- sends the numbers (M.collect); the web process writes the text (M.text).
local core = require "pm.core"
local util = require "pm.util"

local new_table = require "table.new"

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

-- ---- the daemon's half: the numbers, as compact JSON ----

local function daemon_rss()
  local f = io.open("/proc/self/statm")
  if not f then return 0 end
  local s = f:read("*l") or ""
  f:close()
  local pages = tonumber(s:match("^%d+%s+(%d+)")) or 0
  return pages * 4096
end

-- (counted at most every 5 s: 2,000 apps hold some 8,000 fds)
local fds, fds_at = 0, nil
local function fd_count()
  if fds_at and core.mono() - fds_at < 5000 then return fds end
  local n = 0
  for _ in pairs(core.listdir("/proc/self/fd") or {}) do n = n + 1 end
  fds, fds_at = n, core.mono()
  return n
end

local function interpreter(d)
  local i = d.interpreter
  if i == nil or i == "" then return "none" end
  return util.basename(tostring(i))
end

local jnum = util.json_number
local enc = util.encode

-- record -> { decl, name, text }: the part of its row that changes with
-- its declaration only, `[id,"name","namespace",instance,"interpreter",`
local static = setmetatable({}, { __mode = "k" })

local function static_of(p)
  local s = static[p]
  if s and s[1] == p.decl and s[2] == p.name then return s[3] end
  local d = p.decl
  local text = ("[%d,%s,%s,%d,%s,"):format(p.pm_id, enc(p.name), enc(d.namespace or "default"), p.instance or 0,
    enc(interpreter(d)))
  static[p] = { d, p.name, text }
  return text
end

local function pairs_sorted(t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
  return ipairs(keys)
end

--[[ What a scrape needs, as JSON pieces (util.raw): every app's row
[id, name, namespace, instance, interpreter, up, cpu, memory, uptime (s),
restarts, ready, health failures, instances of its name], the counters as
rows, the daemon's own numbers. ctx: list (the records), sample(p) ->
rss, cpu (describe's), bus (pm.bus), requests (method -> count). The text
is made by the web process (M.text): the daemon's share of a scrape of
2,000 apps is this. ]]
function M.collect(ctx)
  local list = ctx.list
  local now = core.now()
  local per_name = {}
  for _, p in ipairs(list) do per_name[p.name] = (per_name[p.name] or 0) + 1 end
  local out, n = { '{"apps":[' }, 1
  for i, p in ipairs(list) do
    local online = p.status == "online"
    local rss, c = 0, 0
    if (p.pid or 0) > 0 then rss, c = ctx.sample(p) end
    if i > 1 then n = n + 1; out[n] = "," end
    out[n + 1] = static_of(p)
    out[n + 2] = ("%d,%.1f,%d,%d,%d,%d,%d,%d]"):format(online and 1 or 0,
      c or 0, rss or 0, online and p.pm_uptime and math.floor((now - p.pm_uptime) / 1000) or 0,
      p.restart_time or 0, (online and p.ready) and 1 or 0, p.health_failures or 0, per_name[p.name])
    n = n + 2
  end
  local rows = {}
  for _, p in ipairs(list) do
    local id = p.pm_id
    for _, k in pairs_sorted(restarts[id] or {}) do
      rows[#rows + 1] = ("[%d,%s,%s]"):format(id, enc(k), jnum(restarts[id][k]))
    end
  end
  n = n + 1; out[n] = '],"restarts":[' .. table.concat(rows, ",")
  rows = {}
  for _, p in ipairs(list) do
    local id = p.pm_id
    for _, k in pairs_sorted(exits[id] or {}) do
      local code, sig = k:match("^(.-)%z(.*)$")
      rows[#rows + 1] = ("[%d,%s,%s,%s]"):format(id, enc(code), enc(sig), jnum(exits[id][k]))
    end
  end
  n = n + 1; out[n] = '],"exits":[' .. table.concat(rows, ",")
  rows = {}
  for _, p in ipairs(list) do
    local id = p.pm_id
    if health[id] then rows[#rows + 1] = ("[%d,%s]"):format(id, jnum(health[id])) end
  end
  n = n + 1; out[n] = '],"health":[' .. table.concat(rows, ",")
  rows = {}
  for _, p in ipairs(list) do
    local d = dropped[p.pm_id]
    if d then rows[#rows + 1] = ("[%d,%s,%s]"):format(p.pm_id, jnum(d[1]), jnum(d[2])) end
  end
  n = n + 1; out[n] = '],"dropped":[' .. table.concat(rows, ",")
  -- what the log files took (a file of several apps: its first app's)
  rows = {}
  local written = {}
  for _, w in ipairs(require("pm.applogs").written()) do
    local t = written[w[1]]
    if not t then t = { 0, 0 }; written[w[1]] = t end
    t[1], t[2] = t[1] + w[2], t[2] + w[3]
  end
  for _, p in ipairs(list) do
    local w = written[p.pm_id]
    if w then rows[#rows + 1] = ("[%d,%s,%s]"):format(p.pm_id, jnum(w[1]), jnum(w[2])) end
  end
  n = n + 1; out[n] = '],"written":[' .. table.concat(rows, ",")
  -- @pm2/io's metrics whose value is a number (channel.lua keeps them):
  -- [id, metric, unit, value]
  rows = {}
  for _, p in ipairs(list) do
    local m = p.axm_monitor
    if m and m.n > 0 and m.pid == p.pid and (p.pid or 0) > 0 then
      for _, k in pairs_sorted(m.by) do
        local e = m.by[k]
        local v = tonumber(e.value)
        if v and v == v and v ~= math.huge and v ~= -math.huge then
          rows[#rows + 1] = ("[%d,%s,%s,%s]"):format(p.pm_id, enc(k), enc(e.unit or ""), jnum(v))
        end
      end
    end
  end
  n = n + 1; out[n] = '],"axm":[' .. table.concat(rows, ",")
  local req = {}
  for _, m in pairs_sorted(ctx.requests) do req[#req + 1] = ("[%s,%s]"):format(enc(m), jnum(ctx.requests[m])) end
  n = n + 1
  out[n] = ('],"daemon":{"subscribers":%s,"bus_dropped":%s,"rss":%s,"heap":%s,"fds":%s,"requests":[%s]}}'):format(
    jnum(ctx.bus.subscribers()), jnum(ctx.bus.dropped_total), jnum(daemon_rss()),
    jnum(math.floor(collectgarbage("count") * 1024)), jnum(fd_count()), table.concat(req, ","))
  return util.raw(out)
end

-- ---- the web process's half: Prometheus' text format ----

-- A label value as the text format wants it.
local function esc(s)
  s = tostring(s)
  if not s:find('[\\"\n]') then return s end
  return (s:gsub('[\\"\n]', { ["\\"] = "\\\\", ['"'] = '\\"', ["\n"] = "\\n" }))
end

local pieces, pieces_cap = {}, 0

-- pm_id -> { name, namespace, instance, interpreter, labels, open }: an
-- app's labels, made again only when they change
local label_cache = {}

local FAMILIES = { -- name, help, the app row's column
  { "pm2_up", "Is the process running (1) or not (0)", 6 },
  { "pm2_cpu", "Process CPU usage in percent of one core", 7 },
  { "pm2_memory", "Process memory (RSS of its tree) in bytes", 8 },
  { "pm2_uptime", "Seconds since the process started (0 when not online)", 9 },
  { "pm2_restarts", "Restarts of the process since it was declared or reset", 10 },
  { "pm2_instances", "Processes of the app", 13 },
  { "pm_ready", "The process is online and ready", 11 },
  { "pm_health_failures", "Failed health checks in a row", 12 },
}

-- The text of a scrape from M.collect's data (decoded).
function M.text(data)
  local apps = type(data) == "table" and type(data.apps) == "table" and data.apps or {}
  -- (the pieces' table is kept from one scrape to the next: 64,000 slots
  -- for 2,000 apps, made once)
  local need = #apps * 4 * #FAMILIES + 64
  if pieces_cap < need then pieces, pieces_cap = new_table(need, 0), need end
  local out, n = pieces, 0
  local labels, open = {}, {} -- by pm_id: '{...}' and '{...,' (for one more label)
  local order = {}
  local seen = {}
  for i, a in ipairs(apps) do
    local c = label_cache[a[1]]
    if not (c and c[1] == a[2] and c[2] == a[3] and c[3] == a[4] and c[4] == a[5]) then
      local l = ('{id="%d",name="%s",namespace="%s",instance="%d",interpreter="%s"'):format(a[1], esc(a[2]),
        esc(a[3]), a[4], esc(a[5]))
      c = { a[2], a[3], a[4], a[5], l .. "} ", l .. "," }
      label_cache[a[1]] = c
    end
    seen[a[1]] = true
    labels[i], open[a[1]] = c[5], c[6]
    order[i] = a
  end
  for id in pairs(label_cache) do
    if not seen[id] then label_cache[id] = nil end
  end
  local strs = {} -- number -> its text (the same few values come again and again)
  for _, f in ipairs(FAMILIES) do
    local name, col = f[1], f[3]
    n = n + 1; out[n] = "# HELP " .. name .. " " .. f[2] .. "\n# TYPE " .. name .. " gauge\n"
    for i, a in ipairs(order) do
      local v = a[col]
      local s = strs[v]
      if not s then s = tostring(v); strs[v] = s end
      out[n + 1], out[n + 2], out[n + 3], out[n + 4] = name, labels[i], s, "\n"
      n = n + 4
    end
  end
  local function counter(name, help, rows, label_of, value_col)
    n = n + 1; out[n] = "# HELP " .. name .. " " .. help .. "\n# TYPE " .. name .. " counter\n"
    for _, r in ipairs(type(rows) == "table" and rows or {}) do
      local l = open[r[1]]
      if l then
        n = n + 1
        out[n] = name .. l .. label_of(r) .. "} " .. tostring(r[value_col]) .. "\n"
      end
    end
  end
  counter("pm_restarts_total", "Restarts since the daemon started, by reason", data.restarts,
    function(r) return ('reason="%s"'):format(esc(r[2])) end, 3)
  counter("pm_exits_total", "Process exits since the daemon started, by exit code or signal", data.exits,
    function(r) return ('code="%s",signal="%s"'):format(esc(r[2]), esc(r[3])) end, 4)
  -- (labels without one more: the open form's trailing comma taken off)
  local function closed(name, help, rows, col)
    n = n + 1; out[n] = "# HELP " .. name .. " " .. help .. "\n# TYPE " .. name .. " counter\n"
    for _, r in ipairs(type(rows) == "table" and rows or {}) do
      local l = open[r[1]]
      if l then n = n + 1; out[n] = name .. l:sub(1, -2) .. "} " .. tostring(r[col]) .. "\n" end
    end
  end
  closed("pm_health_failures_total", "Failed health checks since the daemon started", data.health, 2)
  closed("pm_log_written_lines_total", "Log lines written to the app's files", data.written, 2)
  closed("pm_log_written_bytes_total", "Log bytes written to the app's files", data.written, 3)
  closed("pm_log_dropped_lines_total", "Log lines a full disk refused", data.dropped, 2)
  closed("pm_log_dropped_bytes_total", "Log bytes a full disk refused", data.dropped, 3)
  n = n + 1; out[n] = "# HELP pm_app_metric An app's own metric (@pm2/io's probes, PM2's axm_monitor)\n"
    .. "# TYPE pm_app_metric gauge\n"
  for _, r in ipairs(type(data.axm) == "table" and data.axm or {}) do
    local l = open[r[1]]
    if l then
      n = n + 1
      out[n] = ('pm_app_metric%smetric="%s",unit="%s"} %s\n'):format(l, esc(r[2]), esc(r[3]), tostring(r[4]))
    end
  end
  local d = type(data.daemon) == "table" and data.daemon or {}
  local function one(name, help, kind, v)
    n = n + 1
    out[n] = ("# HELP %s %s\n# TYPE %s %s\n%s %s\n"):format(name, help, name, kind, name, tostring(v or 0))
  end
  one("pm_bus_subscribers", "Connections subscribed to events", "gauge", d.subscribers)
  one("pm_bus_dropped_events_total", "Events dropped for subscribers that did not read", "counter", d.bus_dropped)
  one("pm_daemon_memory_bytes", "The daemon's resident memory", "gauge", d.rss)
  one("pm_daemon_lua_heap_bytes", "The daemon's Lua heap", "gauge", d.heap)
  one("pm_daemon_fds", "The daemon's open file descriptors", "gauge", d.fds)
  n = n + 1; out[n] = "# HELP pm_daemon_requests_total Requests on rpc.sock, by method\n"
    .. "# TYPE pm_daemon_requests_total counter\n"
  for _, r in ipairs(type(d.requests) == "table" and d.requests or {}) do
    n = n + 1; out[n] = ('pm_daemon_requests_total{method="%s"} %s\n'):format(esc(r[1]), tostring(r[2]))
  end
  one("pm_apps", "Processes in the table", "gauge", #apps)
  return table.concat(out, "", 1, n)
end

return M
