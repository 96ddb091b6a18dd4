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

local buffer = require "string.buffer"
local ffi = require "ffi"
local clear = require "table.clear"

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
  local n = require("pm.fds").in_use() or 0
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

-- record -> { decl, name, text }: its labels' row, which changes with its
-- declaration only, `[id,"name","namespace",instance,"interpreter"]`
local static = setmetatable({}, { __mode = "k" })

local function static_of(p)
  local s = static[p]
  if s and s[1] == p.decl and s[2] == p.name then return s[3] end
  local d = p.decl
  local text = ("[%d,%s,%s,%d,%s]"):format(p.pm_id, enc(p.name), enc(d.namespace or "default"), p.instance or 0,
    enc(interpreter(d)))
  static[p] = { d, p.name, text }
  return text
end

-- the keys of t, sorted (a counter's labels: the same order every scrape)
local function sorted_keys(t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
  return keys
end

-- (the reply is written into buffers kept from one scrape to the next, and
-- what a scrape adds up into tables kept too: a scrape of 2,000 apps
-- leaves the daemon's heap next to no garbage, its collector no work)
local reply_buf, values_buf -- (made at the first scrape: a daemon nobody scrapes keeps none)
local per_name, w_lines, w_bytes = {}, {}, {}
local HUGE = math.huge

-- The numbers of an app's row in "values", in this order.
M.VALUES = { "up", "cpu", "memory", "uptime", "restarts", "ready", "health_failures", "instances" }

--[[ What a scrape needs, as JSON text (util.raw): apps, every app's labels
[id, name, namespace, instance, interpreter]; values, one string holding
the numbers of every app (M.VALUES: up, cpu, memory, uptime (s), restarts,
ready, health failures, instances of its name), an app's numbers
separated by spaces and ended by ";", in the order of apps (numbers as
text: the web process copies them into its text as they are, without
reading them); the counters as rows; the daemon's own numbers. ctx: list
(the records), sample(p, mono) -> rss, cpu (describe's; mono:
core.mono() now), bus (pm.bus), requests (method -> count). The text is
made by the web process (M.text): the daemon's share of a scrape of 2,000
apps is this. ]]
function M.collect(ctx)
  local list = ctx.list
  local now, mono = core.now(), core.mono()
  clear(per_name)
  for _, p in ipairs(list) do per_name[p.name] = (per_name[p.name] or 0) + 1 end
  if not reply_buf then reply_buf, values_buf = buffer.new(128 * 1024), buffer.new(64 * 1024) end
  local b, v = reply_buf:reset(), values_buf:reset()
  b:put('{"apps":[')
  for i, p in ipairs(list) do
    local online = p.status == "online"
    local rss, c = 0, 0
    if (p.pid or 0) > 0 then rss, c = ctx.sample(p, mono) end
    c = tonumber(c) or 0
    if c ~= c or c == HUGE or c == -HUGE then c = 0 end -- (a number the text can say)
    if i > 1 then b:put(",") end
    b:put(static_of(p))
    v:putf("%d %.14g %d %d %d %d %d %d;", online and 1 or 0,
      c, rss or 0, online and p.pm_uptime and math.floor((now - p.pm_uptime) / 1000) or 0,
      p.restart_time or 0, (online and p.ready) and 1 or 0, p.health_failures or 0, per_name[p.name])
  end
  b:put('],"values":"', v, '","restarts":[')
  local first = true
  for _, p in ipairs(list) do
    local id = p.pm_id
    local r = restarts[id]
    if r then
      for _, k in ipairs(sorted_keys(r)) do
        b:put(first and "[" or ",[", id, ",", enc(k), ",", jnum(r[k]), "]")
        first = false
      end
    end
  end
  b:put('],"exits":[')
  first = true
  for _, p in ipairs(list) do
    local id = p.pm_id
    local e = exits[id]
    if e then
      for _, k in ipairs(sorted_keys(e)) do
        local code, sig = k:match("^(.-)%z(.*)$")
        b:put(first and "[" or ",[", id, ",", enc(code), ",", enc(sig), ",", jnum(e[k]), "]")
        first = false
      end
    end
  end
  b:put('],"health":[')
  first = true
  for _, p in ipairs(list) do
    local h = health[p.pm_id]
    if h then
      b:put(first and "[" or ",[", p.pm_id, ",", jnum(h), "]")
      first = false
    end
  end
  b:put('],"dropped":[')
  first = true
  for _, p in ipairs(list) do
    local d = dropped[p.pm_id]
    if d then
      b:put(first and "[" or ",[", p.pm_id, ",", jnum(d[1]), ",", jnum(d[2]), "]")
      first = false
    end
  end
  -- what the log files took (a file of several apps: its first app's)
  clear(w_lines); clear(w_bytes)
  require("pm.applogs").written(function(id, lines, bytes)
    w_lines[id], w_bytes[id] = (w_lines[id] or 0) + lines, (w_bytes[id] or 0) + bytes
  end)
  b:put('],"written":[')
  first = true
  for _, p in ipairs(list) do
    local id = p.pm_id
    if w_lines[id] then
      b:put(first and "[" or ",[", id, ",", jnum(w_lines[id]), ",", jnum(w_bytes[id]), "]")
      first = false
    end
  end
  -- @pm2/io's metrics whose value is a number (channel.lua keeps them):
  -- [id, metric, unit, value]
  b:put('],"axm":[')
  first = true
  for _, p in ipairs(list) do
    local mon = p.axm_monitor
    if mon and mon.n > 0 and mon.pid == p.pid and (p.pid or 0) > 0 then
      for _, k in ipairs(sorted_keys(mon.by)) do
        local ent = mon.by[k]
        local val = tonumber(ent.value)
        if val and val == val and val ~= HUGE and val ~= -HUGE then
          b:put(first and "[" or ",[", p.pm_id, ",", enc(k), ",", enc(ent.unit or ""), ",", jnum(val), "]")
          first = false
        end
      end
    end
  end
  b:putf('],"daemon":{"subscribers":%s,"bus_dropped":%s,"rss":%s,"heap":%s,"fds":%s,"journal_writes":%s,'
    .. '"requests":[', jnum(ctx.bus.subscribers()), jnum(ctx.bus.dropped_total), jnum(daemon_rss()),
    jnum(math.floor(collectgarbage("count") * 1024)), jnum(fd_count()), jnum(require("pm.persist").writes))
  local req = ctx.requests
  for i, m in ipairs(sorted_keys(req)) do
    b:put(i > 1 and ",[" or "[", enc(m), ",", jnum(req[m]), "]")
  end
  b:put("]}}")
  local out = {}
  while #b > 0 do out[#out + 1] = b:get(M.PIECE) end
  return util.raw(out)
end

-- ---- the web process's half: Prometheus' text format ----

-- A label value as the text format wants it.
local function esc(s)
  s = tostring(s)
  if not s:find('[\\"\n]') then return s end
  return (s:gsub('[\\"\n]', { ["\\"] = "\\\\", ['"'] = '\\"', ["\n"] = "\\n" }))
end

-- pm_id -> { name, namespace, instance, interpreter, labels, open }: an
-- app's labels, made again only when they change
local label_cache = {}

local FAMILIES = { -- name, help, the field of an app's values (M.VALUES)
  { "pm2_up", "Is the process running (1) or not (0)", 1 },
  { "pm2_cpu", "Process CPU usage in percent of one core", 2 },
  { "pm2_memory", "Process memory (RSS of its tree) in bytes", 3 },
  { "pm2_uptime", "Seconds since the process started (0 when not online)", 4 },
  { "pm2_restarts", "Restarts of the process since it was declared or reset", 5 },
  { "pm2_instances", "Processes of the app", 8 },
  { "pm_ready", "The process is online and ready", 6 },
  { "pm_health_failures", "Failed health checks in a row", 7 },
}
local NV = #M.VALUES

-- (the text is written into one buffer kept from one scrape to the next;
-- the numbers are copied from collect's values as they are: where each
-- starts, in an array kept too: app i's field f (from 0) at
-- at[i * (NV + 1) + f], and its end + 1 at at[i * (NV + 1) + NV])
local text_buf -- (the web process's, made at its first scrape: the daemon loads this module too)
local at, at_apps = nil, -1

-- values: collect's string for n apps -> where its numbers are (at) |
-- nil, why (a string of another shape: nothing is read out of it)
local function index_values(values, n)
  if at_apps < n then at, at_apps = ffi.new("int32_t[?]", (n + 1) * (NV + 1)), n end
  local p = ffi.cast("const uint8_t *", values)
  local len = #values
  local row, f, base = 0, 0, 0
  at[0] = 0
  for k = 0, len - 1 do
    local c = p[k]
    if c == 32 then -- " "
      f = f + 1
      if f >= NV then return nil, "too many numbers in a row" end
      at[base + f] = k + 1
    elseif c == 59 then -- ";"
      if f ~= NV - 1 then return nil, "too few numbers in a row" end
      if row >= n then return nil, "more rows than apps" end
      at[base + NV] = k + 1
      row, f, base = row + 1, 0, base + NV + 1
      at[base] = k + 1
    elseif (c < 48 or c > 57) and c ~= 46 and c ~= 45 and c ~= 43 and c ~= 101 then
      return nil, "not a number" -- (digits . - + e)
    end
  end
  if row ~= n or f ~= 0 or at[base] ~= len then return nil, "fewer rows than apps" end
  return p
end

-- (what a scrape makes up as it goes, kept too: by row, '{...} '; by
-- pm_id, the same, and '{...,' (for one more label))
local labels, shut, open, seen = {}, {}, {}, {}
M.PIECE = 65536 -- bytes: a piece of the text (less than LuaJIT's mmap threshold)

--[[ The text of a scrape from M.collect's data (decoded), in pieces of at
most PIECE bytes -> list | nil, why. (A text of 1.8 MB as one Lua string
would be a block of its own each scrape, mapped and faulted in page by
page; pieces come from the heap's free lists.) ]]
function M.pieces(data)
  local apps = type(data) == "table" and type(data.apps) == "table" and data.apps or {}
  local values = type(data) == "table" and data.values or ""
  if type(values) ~= "string" then return nil, "values: not a string" end
  local napps = #apps
  local vp, verr = index_values(values, napps)
  if not vp then return nil, "values: " .. verr end
  text_buf = text_buf or buffer.new(2 * 1024 * 1024)
  local b = text_buf:reset()
  clear(labels); clear(shut); clear(open); clear(seen)
  for i, a in ipairs(apps) do
    local c = label_cache[a[1]]
    if not (c and c[1] == a[2] and c[2] == a[3] and c[3] == a[4] and c[4] == a[5]) then
      local l = ('{id="%d",name="%s",namespace="%s",instance="%d",interpreter="%s"'):format(a[1], esc(a[2]),
        esc(a[3]), a[4], esc(a[5]))
      c = { a[2], a[3], a[4], a[5], l .. "} ", l .. "," }
      label_cache[a[1]] = c
    end
    seen[a[1]] = true
    labels[i], shut[a[1]], open[a[1]] = c[5], c[5], c[6]
  end
  for id in pairs(label_cache) do
    if not seen[id] then label_cache[id] = nil end
  end
  local stride = NV + 1
  for _, fam in ipairs(FAMILIES) do
    local name, f = fam[1], fam[3] - 1
    b:put("# HELP ", name, " ", fam[2], "\n# TYPE ", name, " gauge\n")
    for i = 1, napps do
      local k = (i - 1) * stride + f
      local s = at[k]
      b:put(name, labels[i]):putcdata(vp + s, at[k + 1] - 1 - s):put("\n")
    end
  end
  local function counter(name, help, rows, label_of, value_col)
    b:put("# HELP ", name, " ", help, "\n# TYPE ", name, " counter\n")
    for _, r in ipairs(type(rows) == "table" and rows or {}) do
      local l = open[r[1]]
      if l then b:put(name, l, label_of(r), "} ", tostring(r[value_col]), "\n") end
    end
  end
  counter("pm_restarts_total", "Restarts since the daemon started, by reason", data.restarts,
    function(r) return ('reason="%s"'):format(esc(r[2])) end, 3)
  counter("pm_exits_total", "Process exits since the daemon started, by exit code or signal", data.exits,
    function(r) return ('code="%s",signal="%s"'):format(esc(r[2]), esc(r[3])) end, 4)
  local function closed(name, help, rows, col)
    b:put("# HELP ", name, " ", help, "\n# TYPE ", name, " counter\n")
    for _, r in ipairs(type(rows) == "table" and rows or {}) do
      local l = shut[r[1]]
      if l then b:put(name, l, tostring(r[col]), "\n") end
    end
  end
  closed("pm_health_failures_total", "Failed health checks since the daemon started", data.health, 2)
  closed("pm_log_written_lines_total", "Log lines written to the app's files", data.written, 2)
  closed("pm_log_written_bytes_total", "Log bytes written to the app's files", data.written, 3)
  closed("pm_log_dropped_lines_total", "Log lines a full disk refused", data.dropped, 2)
  closed("pm_log_dropped_bytes_total", "Log bytes a full disk refused", data.dropped, 3)
  b:put("# HELP pm_app_metric An app's own metric (@pm2/io's probes, PM2's axm_monitor)\n",
    "# TYPE pm_app_metric gauge\n")
  for _, r in ipairs(type(data.axm) == "table" and data.axm or {}) do
    local l = open[r[1]]
    if l then b:put("pm_app_metric", l, 'metric="', esc(r[2]), '",unit="', esc(r[3]), '"} ', tostring(r[4]), "\n") end
  end
  local d = type(data.daemon) == "table" and data.daemon or {}
  local function one(name, help, kind, v)
    b:put("# HELP ", name, " ", help, "\n# TYPE ", name, " ", kind, "\n", name, " ", tostring(v or 0), "\n")
  end
  one("pm_bus_subscribers", "Connections subscribed to events", "gauge", d.subscribers)
  one("pm_bus_dropped_events_total", "Events dropped for subscribers that did not read", "counter", d.bus_dropped)
  one("pm_daemon_memory_bytes", "The daemon's resident memory", "gauge", d.rss)
  one("pm_daemon_lua_heap_bytes", "The daemon's Lua heap", "gauge", d.heap)
  one("pm_daemon_fds", "The daemon's open file descriptors", "gauge", d.fds)
  one("pm_daemon_journal_writes_total", "Writes of journal.json (the declared apps and their states)", "counter",
    d.journal_writes)
  b:put("# HELP pm_daemon_requests_total Requests on rpc.sock, by method\n",
    "# TYPE pm_daemon_requests_total counter\n")
  for _, r in ipairs(type(d.requests) == "table" and d.requests or {}) do
    b:put('pm_daemon_requests_total{method="', esc(r[1]), '"} ', tostring(r[2]), "\n")
  end
  one("pm_apps", "Processes in the table", "gauge", napps)
  local out = {}
  while #b > 0 do out[#out + 1] = b:get(M.PIECE) end
  return out
end

-- The text of a scrape from M.collect's data (decoded) -> text | nil, why
function M.text(data)
  local pieces, err = M.pieces(data)
  if not pieces then return nil, err end
  return table.concat(pieces)
end

return M
