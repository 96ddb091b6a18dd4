-- How pm shows processes to a person: the columns of `pm list` (and which
-- give way first on a narrow terminal), the card of `pm describe`, the rows
-- of `pm monit`, the colour of each status, human units (bytes, uptime,
-- milliseconds). cli.lua, console.lua and monit.lua print what it returns,
-- so one change of look is made here once.
-- It takes process descriptions (DESIGN §5) and returns text; it must not
-- know the wire, the connection, the daemon or the verbs, and writes
-- nothing: where text goes (stdout, a curses screen) is the caller's.
local core = require "pm.core"
local util = require "pm.util"

local M = {}

-- ---- units ----

-- short: monit's narrow columns ("1.5M"); else PM2's units ("1.5mb")
function M.bytes(n, short)
  n = tonumber(n) or 0
  local units = short and { "G", "M", "K", "B" } or { "gb", "mb", "kb", "b" }
  if n >= 1073741824 then return ("%.1f%s"):format(n / 1073741824, units[1]) end
  if n >= 1048576 then return ("%.1f%s"):format(n / 1048576, units[2]) end
  if n >= 1024 then return ("%.1f%s"):format(n / 1024, units[3]) end
  return ("%d%s"):format(n, units[4])
end

-- One unit, rounded down: a table cell stays narrow (PM2's "5m", "2D").
function M.uptime(ms)
  local s = math.floor(math.max(0, ms) / 1000)
  if s < 60 then return s .. "s" end
  if s < 3600 then return math.floor(s / 60) .. "m" end
  if s < 86400 then return math.floor(s / 3600) .. "h" end
  return math.floor(s / 86400) .. "D"
end

-- A setting in milliseconds, as declared (nil stays nil: no row).
function M.ms(v)
  return v and (v .. " ms")
end

-- Local time, to the second (ms since the epoch).
function M.date(ms)
  return os.date("%Y-%m-%d %H:%M:%S", math.floor(ms / 1000))
end

-- ---- status colours ----

-- The one table: a status -> a style name of pm.term's screen (scr_put);
-- a plain terminal gets the ANSI code of that name.
M.STATUS_COLORS = { online = "green", stopped = "dim", errored = "red", stopping = "yellow",
  launching = "cyan", ["waiting restart"] = "yellow" }

-- "dim" is grey (90), not faint (2): faint is lost on some terminals
local ANSI = { green = "32", red = "31", yellow = "33", cyan = "36", dim = "90" }

function M.status_style(status)
  return M.STATUS_COLORS[status]
end

-- text in the colour of status for a terminal (unchanged for an unknown status)
function M.paint(text, status)
  local code = ANSI[M.STATUS_COLORS[status]]
  if not code then return text end
  return "\27[" .. code .. "m" .. text .. "\27[0m"
end

-- ---- text width ----

-- display width: characters, not bytes (UTF-8); a table repeats its
-- cells' texts, so each text is measured once (per table)
local widths_of = {}
local function width(s)
  s = tostring(s)
  local n = widths_of[s]
  if not n then
    if s:find("[\128-\255]") then
      local _, c = s:gsub("[^\128-\191]", "")
      n = c
    else
      n = #s
    end
    widths_of[s] = n
  end
  return n
end

local function pad(s, w)
  s = tostring(s)
  return s .. string.rep(" ", w - width(s))
end

-- ---- users ----

local user_names = {} -- uid -> name; /etc/passwd is read once per uid
local function user_of(e)
  local uid = e.uid or core.getuid()
  if uid == core.getuid() and not next(user_names) then
    -- the common case, without reading /etc/passwd
    local me = os.getenv("USER") or os.getenv("LOGNAME")
    if me and me ~= "" then return me end
  end
  local id = tonumber(uid)
  if not id then return tostring(uid) end
  local name = user_names[id]
  if name == nil then
    local pw = util.passwd(id)
    name = pw and pw.name or false -- unknown: asked once too
    user_names[id] = name
  end
  return name or tostring(uid)
end

-- ---- the process table (pm list, a list in the console) ----

M.COLUMNS = { "id", "name", "namespace", "version", "mode", "pid", "uptime", "↺", "status", "cpu", "mem", "user",
  "watching" }
-- least useful first: dropped in this order until the table fits
M.DROP_ORDER = { "watching", "user", "version", "namespace", "mode", "uptime" }

-- How stdout shows a table: its terminal's width and colours, or neither.
function M.stdout()
  if not core.isatty(1) then return { color = false } end
  local no = os.getenv("NO_COLOR") -- (no-color.org)
  return { color = not no or no == "", width = select(2, core.winsize(1)) or nil }
end

-- The fields of a description the table reads (what `pm list` asks the
-- daemon for: the rest of a description is not sent)
M.TABLE_FIELDS = { "name", "pid", "pm_id", "monit", "pm2_env.namespace", "pm2_env.version", "pm2_env.exec_mode",
  "pm2_env.instances", "pm2_env.status", "pm2_env.pm_uptime", "pm2_env.restart_time",
  "pm2_env.uid", "pm2_env.watch", "pm2_env.notify" }

-- s with its control characters (C0, DEL, C1) written as \xNN: what an
-- app's user wrote (a package.json's version, sd_notify's STATUS=, its
-- metrics) reaches root's terminal as text, never as escape sequences
local function esc(c) return ("\\x%02X"):format(c:byte()) end
function M.printable(s)
  s = tostring(s)
  if not s:find("[%z\1-\31\127\194]") then return s end
  return (s:gsub("[%z\1-\31\127]", esc):gsub("\194([\128-\159])", esc))
end

--[[ A log line made safe for a terminal, as printable is for a field, but
as a log reads: a tab kept, colours (SGR: ESC [ digits m) kept, a CR that
ends it dropped, a byte that is no UTF-8 U+FFFD (a lone 0x9b is an 8-bit
CSI to some terminals), every other control character \xNN (C1 ones,
U+0080-U+009F, \uNNNN). An app's user wrote it: OSC 52 writes the
reader's clipboard, OSC 0 its title, a CR or a cursor move paints over
what it shows. ]]
function M.term_safe(s)
  if not s:find("[%z\1-\8\11-\31\127-\255]") then return s end
  s = util.utf8_clean(s)
  s = s:gsub("\r$", "")
  s = s:gsub("()([%z\1-\8\11-\31\127])", function(at, c)
    if c == "\27" and s:find("^%[[%d;:]*m", at + 1) then return nil end -- (a colour)
    return ("\\x%02x"):format(c:byte())
  end)
  return (s:gsub("\194([\128-\159])", function(c) return ("\\u%04x"):format(c:byte()) end))
end

local function cells_of(p, now)
  local e = p.pm2_env or {}
  local online = e.status == "online"
  local cells = {
    id = tostring(p.pm_id), name = p.name, namespace = e.namespace or "default",
    version = type(e.version) == "string" and e.version or "N/A",
    mode = tostring(e.exec_mode or "fork"):gsub("_mode$", "")
      .. ((e.instances or 1) > 1 and (" x" .. e.instances) or ""),
    pid = tostring(p.pid or 0), uptime = online and M.uptime(now - (e.pm_uptime or now)) or "0",
    ["↺"] = tostring(e.restart_time or 0),
    -- sd_notify's STATUS= text rides along with the status
    status = (e.status or "?") .. ((type(e.notify) == "table" and type(e.notify.status) == "string"
      and e.notify.status ~= "") and (" (" .. e.notify.status:sub(1, 24) .. ")") or ""),
    status_key = e.status,
    cpu = ("%s%%"):format(p.monit and p.monit.cpu or 0), mem = M.bytes(p.monit and p.monit.memory),
    user = user_of(e), watching = (e.watch and e.watch ~= false) and "enabled" or "disabled",
  }
  for k, v in pairs(cells) do cells[k] = M.printable(v) end
  return cells
end

-- The table of a list of descriptions, lines ended. opts (default: what
-- M.stdout() says): width (columns are dropped until it fits; nil: all),
-- color (the status in its colour), now (ms since the epoch, for uptimes).
function M.table(list, opts)
  opts = opts or M.stdout()
  widths_of = {}
  local cols = {}
  for i, c in ipairs(M.COLUMNS) do cols[i] = c end
  local rows = {}
  local now = opts.now or core.now()
  for _, p in ipairs(list) do rows[#rows + 1] = cells_of(p, now) end
  local function widths(c)
    local w, total = {}, 1
    for i, h in ipairs(c) do
      w[i] = width(h)
      for _, r in ipairs(rows) do w[i] = math.max(w[i], width(r[h])) end
      total = total + w[i] + 3
    end
    return w, total
  end
  local w, total = widths(cols)
  local term_width = opts.width
  for _, victim in ipairs(M.DROP_ORDER) do
    if not term_width or total <= term_width then break end
    for i, c in ipairs(cols) do
      if c == victim then table.remove(cols, i) break end
    end
    w, total = widths(cols)
  end
  local out = {}
  local function line(r, color_status)
    local cells = {}
    for i, c in ipairs(cols) do
      local s = pad(r[c] or c, w[i])
      if c == "status" and color_status and opts.color then s = M.paint(s, r.status_key) end
      cells[i] = s
    end
    out[#out + 1] = "│ " .. table.concat(cells, " │ ") .. " │"
  end
  local function rule(l, m, r)
    local segs = {}
    for i = 1, #w do segs[i] = string.rep("─", w[i] + 2) end
    out[#out + 1] = l .. table.concat(segs, m) .. r
  end
  rule("┌", "┬", "┐")
  local head = {}
  for _, c in ipairs(cols) do head[c] = c end
  line(head)
  rule("├", "┼", "┤")
  for _, r in ipairs(rows) do line(r, true) end
  rule("└", "┴", "┘")
  return table.concat(out, "\n") .. "\n"
end

-- A value the console shows as the table: a non-empty list of descriptions.
function M.is_list(v)
  if type(v) ~= "table" or #v == 0 then return false end
  for _, p in ipairs(v) do
    if type(p) ~= "table" or p.pm_id == nil or type(p.pm2_env) ~= "table" then return false end
  end
  return true
end

-- ---- the card (pm describe) ----

local function set(v) return v ~= nil and v ~= util.null end

-- Everything about one process, lines ended; rows without a value are left
-- out. base: an environment (name -> value, the daemon's) whose variables
-- the env rows leave out when the app's are the same (PM2's "divergent env
-- variables"); nil shows them all.
function M.card(p, now, base)
  local e = p.pm2_env or {}
  local out = {}
  local function row(k, v)
    if set(v) then out[#out + 1] = ("%-20s %s"):format(k, tostring(v)) end
  end
  out[#out + 1] = ("── %s (id %d) ──"):format(p.name, p.pm_id)
  row("status", e.status)
  row("pid", p.pid)
  row("namespace", e.namespace)
  row("version", e.version)
  row("user", e.username)
  row("script", e.pm_exec_path)
  row("args", type(e.args) == "table" and #e.args > 0 and table.concat(e.args, " ") or nil)
  row("interpreter", e.exec_interpreter)
  row("node.js version", e.node_version)
  row("cwd", e.pm_cwd)
  row("exec mode", e.exec_mode)
  row("instances", e.instances)
  row("restarts", e.restart_time)
  row("unstable restarts", e.unstable_restarts)
  row("last exit code", e.exit_code)
  row("last exit signal", e.exit_signal)
  row("uptime", e.status == "online" and M.uptime((now or core.now()) - (e.pm_uptime or 0)) or nil)
  row("created at", e.created_at and M.date(e.created_at))
  row("cpu", p.monit and (p.monit.cpu .. "%"))
  row("memory", p.monit and M.bytes(p.monit.memory))
  row("out log", e.pm_out_log_path)
  row("error log", e.pm_err_log_path)
  row("combined log", e.pm_log_path)
  row("pid file", e.pm_pid_path)
  row("autorestart", e.autorestart)
  row("min uptime", M.ms(e.min_uptime))
  row("max restarts", e.max_restarts)
  row("restart delay", M.ms(e.restart_delay))
  row("kill timeout", M.ms(e.kill_timeout))
  row("error", e.error)
  row("log error", e.log_error)
  local he = e.last_hook_error
  row("last hook error", type(he) == "table" and type(he.message) == "string" and
    ("%s %s: %s"):format(he.at and M.date(he.at) or "", tostring(he.hook), he.message:match("^[^\n]*")) or nil)
  -- (PM2's card says what is watched: the paths, or "enabled" for the cwd)
  row("watch", type(e.watch) == "table" and (#e.watch > 0 and table.concat(e.watch, ", ") or "enabled")
    or e.watch and e.watch ~= false and "enabled" or nil)
  row("cron restart", e.cron_restart)
  row("max memory", e.max_memory_restart and M.bytes(e.max_memory_restart))
  row("notify status", type(e.notify) == "table" and e.notify.status or nil)
  if type(e.events) == "table" and #e.events > 0 then
    out[#out + 1] = "recent events:"
    for _, ev in ipairs(e.events) do
      local extra = {}
      for _, k in ipairs({ "code", "signal", "reason" }) do
        if set(ev[k]) then extra[#extra + 1] = k .. " " .. tostring(ev[k]) end
      end
      out[#out + 1] = ("  %s.%03d  %s%s"):format(M.date(ev.at), math.floor(ev.at % 1000), ev.event,
        #extra > 0 and (" (" .. table.concat(extra, ", ") .. ")") or "")
    end
  end
  -- @pm2/io's metrics (PM2's "Code metrics")
  if type(e.axm_monitor) == "table" and next(e.axm_monitor) then
    local names = {}
    for k in pairs(e.axm_monitor) do names[#names + 1] = k end
    table.sort(names)
    out[#out + 1] = "code metrics:"
    for _, k in ipairs(names) do
      local m = e.axm_monitor[k]
      local v = type(m) == "table" and m.value
      if set(v) then
        out[#out + 1] = ("  %-22s %s%s"):format(k, tostring(v), type(m.unit) == "string" and (" " .. m.unit) or "")
      end
    end
  end
  if type(e.env) == "table" then
    local keys, same = {}, 0
    for k, v in pairs(e.env) do
      if base and base[k] == v then same = same + 1 else keys[#keys + 1] = k end
    end
    table.sort(keys)
    out[#out + 1] = "env:"
    for _, k in ipairs(keys) do out[#out + 1] = ("  %s=%s"):format(k, tostring(e.env[k])) end
    if same > 0 then
      out[#out + 1] = ("  (and %d as in the daemon's environment: --env shows them)"):format(same)
    end
  end
  for i, line in ipairs(out) do out[i] = M.printable(line) end
  return table.concat(out, "\n") .. "\n"
end

-- ---- log lines (pm logs) ----

-- Each app's colour on a terminal (by name: the instances of an app share it)
local APP_COLORS = { "36", "35", "33", "34", "96", "95", "93", "94", "32", "92" }
function M.app_color(name)
  local h = 0
  for i = 1, #tostring(name) do h = (h * 31 + tostring(name):byte(i)) % 65536 end
  return APP_COLORS[h % #APP_COLORS + 1]
end

-- ms since the epoch in a moment-style format (PM2's dayjs tokens,
-- util.MOMENT), local time
function M.moment(fmt, ms)
  local s = math.floor(ms / 1000)
  local out = {}
  for i, piece in ipairs(util.moment_pieces(fmt)) do
    if type(piece) == "table" then
      out[i] = piece[1]
    elseif piece == "SSS" then
      out[i] = ("%03d"):format(math.floor(ms % 1000))
    elseif piece == "Z" then
      local z = os.date("%z", s) -- +HHMM
      out[i] = z:sub(1, 3) .. ":" .. z:sub(4)
    else
      out[i] = os.date(util.MOMENT[piece][1], s)
    end
  end
  return table.concat(out)
end

-- ms since the epoch as JSON's Date (UTC, "2026-12-06T08:00:00.000Z")
function M.iso(ms)
  return os.date("!%Y-%m-%dT%H:%M:%S", math.floor(ms / 1000)) .. (".%03dZ"):format(math.floor(ms % 1000))
end

local function highlight(text, value)
  if not value or value == "" then return text end
  local out, pos = {}, 1
  while true do
    local a, b = text:find(value, pos, true)
    if not a then break end
    out[#out + 1] = text:sub(pos, a - 1) .. "\27[100m" .. value .. "\27[0m"
    pos = b + 1
  end
  out[#out + 1] = text:sub(pos)
  return table.concat(out)
end

--[[ A log line of app d (pm_id, name) for pm logs, ended. which: "out" or
"err". how: "raw" (the line as it is), "json" (PM2's object: message,
timestamp, type, process_id, app_name), "format" (PM2's key=value form),
nil ("<id>|<name>|<line>"). o (optional): { at = ms of the line (nil:
not known), message = the line without its time stamp, timestamp = a
moment format to put before the line, highlight = a text to mark, color =
a terminal's colours (each app its own, out and err after it green and
red, as PM2) }. ]]
function M.log_line(d, which, line, how, o)
  o = o or {}
  if how == "raw" then return line .. "\n" end
  local message = o.message or line
  if how == "json" then
    return ('{"message":%s,"timestamp":%s,"type":%s,"process_id":%s,"app_name":%s}\n'):format(
      util.encode_text(message), o.at and util.encode(M.iso(o.at)) or "null", util.encode(which),
      tonumber(d.pm_id) and util.json_number(tonumber(d.pm_id)) or "null", util.encode_text(tostring(d.name)))
  end
  local color = o.color
  if how == "format" then
    local out = {}
    if o.at then out[#out + 1] = "timestamp=" .. M.moment(o.timestamp or "YYYY-MM-DD-HH:mm:ssZZ", o.at) .. " " end
    out[#out + 1] = ("app=%s id=%s type=%s message=%s\n"):format(d.name, tostring(d.pm_id),
      which == "err" and "error" or "out", color and highlight(message, o.highlight) or message)
    return table.concat(out)
  end
  local stamp = ""
  if o.timestamp and o.at then
    stamp = M.moment(o.timestamp, o.at) .. " "
    if color then stamp = "\27[90m" .. stamp .. "\27[0m" end
  end
  if not color then return ("%s%s|%s|%s\n"):format(stamp, tostring(d.pm_id), d.name, line) end
  return ("%s\27[%sm%s|%s\27[0m\27[%sm|\27[0m%s\n"):format(stamp, M.app_color(d.name), tostring(d.pm_id), d.name,
    which == "err" and "31" or "32", highlight(line, o.highlight))
end

-- The line before a file's last lines on a terminal (PM2's)
function M.log_file_header(path, n)
  return ("\27[90m%s last %d lines:\27[0m\n"):format(path, n)
end

-- ---- lines about events ----

-- The progress of a long operation after count process events (e a
-- process:event packet), not ended: the caller rewrites it in place.
function M.progress(label, e, count)
  return ("%s: %s %s (%s) [%d]"):format(label, e.event, tostring(e.process and e.process.name),
    tostring(e.process and e.process.pm_id), count)
end

-- What re-applying an ecosystem file did to app d (pm2_env.changes), ended;
-- nil when the reply says nothing of it. done: what was done to it
-- ("restarted" by default, "reloaded")
function M.changes(d, done)
  local ch = d.pm2_env and d.pm2_env.changes
  if type(ch) ~= "table" then return nil end
  return ("%s (%d): %s\n"):format(M.printable(d.name), d.pm_id,
    #ch > 0 and ("applied " .. table.concat(ch, ", ")) or ((done or "restarted") .. ", nothing changed"))
end

-- ---- the rows of pm monit ----

-- frac of width filled with "|"
function M.bar(frac, w)
  frac = math.max(0, math.min(1, frac or 0))
  local full = math.floor(frac * w + 0.5)
  return string.rep("|", full) .. string.rep(" ", w - full)
end

-- where a row's status starts: monit paints it there in its colour
M.MONIT_STATUS_COL = 24

function M.monit_head(barw)
  return ("%-4s %-18s %-15s %6s %-" .. (barw + 2) .. "s %7s %-" .. (barw + 2) .. "s %4s %7s")
    :format("id", "name", "status", "cpu", "", "mem", "", "rst", "uptime")
end

-- total_mem: the machine's memory in bytes (0: unknown); a full memory bar
-- is an eighth of it, so that one app's growth shows.
function M.monit_row(p, barw, total_mem, now)
  local e = p.pm2_env or {}
  local cpu = (p.monit and p.monit.cpu) or 0
  local mem = (p.monit and p.monit.memory) or 0
  return ("%-4d %-18s %-15s %5.1f%% [%s] %7s [%s] %4d %7s"):format(p.pm_id, p.name:sub(1, 18),
    e.status or "?", cpu, M.bar(cpu / 100, barw), M.bytes(mem, true),
    M.bar(total_mem > 0 and mem / total_mem * 8 or 0, barw), e.restart_time or 0,
    e.status == "online" and M.uptime(now - (e.pm_uptime or now)) or "-")
end

-- the status cell of a row: its text and its style
function M.monit_status(p)
  local status = (p.pm2_env or {}).status
  return ("%-15s"):format(status or "?"), M.status_style(status)
end

-- values (numbers, false for no sample) as one line of width block
-- characters, the newest last, scaled to their maximum (at least floor)
local BLOCKS = { "▁", "▂", "▃", "▄", "▅", "▆", "▇", "█" }
function M.sparkline(values, w, floor)
  local first = math.max(1, #values - w + 1)
  local max = floor or 0
  for i = first, #values do
    if values[i] and values[i] > max then max = values[i] end
  end
  local out = {}
  for _ = 1, w - (#values - first + 1) do out[#out + 1] = " " end
  for i = first, #values do
    local v = values[i]
    if not v then
      out[#out + 1] = " "
    else
      out[#out + 1] = BLOCKS[max > 0 and math.max(1, math.min(8, math.ceil(v / max * 8))) or 1]
    end
  end
  return table.concat(out), max
end

-- A line of the selected app's history (the daemon's `history`, 1 s
-- steps): CPU and memory sparklines of w characters each, with their maximum.
function M.monit_history(h, w)
  local cpu, cmax = M.sparkline(h.cpu or {}, w, 1)
  local mem, mmax = M.sparkline(h.memory or {}, w, 1024)
  return ("cpu %s %5.1f%% max   mem %s %7s max"):format(cpu, cmax, mem, M.bytes(mmax, true))
end

-- The selected app under the rows: a title and two lines of details.
function M.monit_details(p)
  local e = p.pm2_env or {}
  return ("── %s (id %d) "):format(p.name, p.pm_id),
    ("pid %s   script %s   interpreter %s"):format(tostring(p.pid), tostring(e.pm_exec_path),
      tostring(e.exec_interpreter)),
    ("cwd %s   restarts %d   unstable %d   last exit %s%s"):format(tostring(e.pm_cwd),
      e.restart_time or 0, e.unstable_restarts or 0,
      set(e.exit_code) and tostring(e.exit_code) or tostring(e.exit_signal or "-"),
      e.notify and e.notify.status and ("   status: " .. e.notify.status) or "")
end

return M
