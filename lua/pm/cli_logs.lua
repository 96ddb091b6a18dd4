-- The CLI's verbs of logs: logs, flush, reloadLogs; an app's stdin: send, attach.
local cli = require "pm.cli"

local api, check, target_of, described, no_args = cli.api, cli.check, cli.target_of, cli.described, cli.no_args

local V = {}

-- Colours: on a terminal, or with FORCE_COLOR (not "0"); never with NO_COLOR
-- (as PM2's colour library decides)
local function colors_on()
  local force, no = os.getenv("FORCE_COLOR"), os.getenv("NO_COLOR")
  if no and no ~= "" then return false end
  if force and force ~= "" then return force ~= "0" and force ~= "false" end
  return require("pm.core").isatty(1)
end

-- Whether a bus packet's process is one of the target's (PM2: all, its
-- name, its id or its namespace), ids: pm_id -> true of the described ones
local function matches(pr, all, ids)
  return all or ids[pr.pm_id] ~= nil
end

function V.logs(args)
  local p = cli.parser("logs")
  p:argument("target", "name, id, namespace or all"):args("?")
  p:option("--lines", "how many lines of each file (15)"):convert(tonumber)
  p:flag("--err", "only the error logs")
  p:flag("--out", "only the output logs")
  p:flag("--nostream", "print and exit")
  p:flag("--json", "PM2's JSON objects, one a line")
  p:flag("--format", "PM2's key=value lines")
  p:flag("--raw", "lines as they are, no prefix")
  p:option("--timestamp", "the time of each line followed first (default format YYYY-MM-DD-HH:mm:ss; "
    .. "the file's lines carry the time they were written with, if any)"):args("?")
  p:option("--highlight", "mark this text in the lines"):args("?")
  p:flag("--follow", "follow the logs after the last lines (the default)")
  local a = p:parse(args)
  local client = api()
  local all = not a.target or a.target == "all"
  local list = all and check(client.list()) or described(target_of(a.target), a.target)
  local view = require "pm.view"
  local how = a.raw and "raw" or a.json and "json" or a.format and "format" or nil
  local color = how ~= "raw" and how ~= "json" and colors_on()
  local stamp_fmt = a.timestamp and (a.timestamp[1] or "YYYY-MM-DD-HH:mm:ss") or nil
  if how == "format" then stamp_fmt = stamp_fmt or "YYYY-MM-DD-HH:mm:ssZZ" end
  local mark = a.highlight and a.highlight[1] or nil
  -- (on a terminal, what an app wrote cannot drive it: view.term_safe)
  local core = require "pm.core"
  local tty_out, tty_err = core.isatty(1), core.isatty(2)
  local term_safe = view.term_safe
  local function show(d, which, line, at, message)
    local to_err = how == "raw" and which == "err"
    local tty = to_err and tty_err or not to_err and tty_out
    if how ~= "json" and tty then
      line = term_safe(line)
      if message then message = term_safe(message) end
    end
    local text = view.log_line(d, which, line, how,
      { at = at, message = message, timestamp = stamp_fmt, highlight = mark, color = color })
    -- (JSON leaves U+0080-U+009F as they are: on a terminal, \u escapes)
    if how == "json" and tty then
      text = text:gsub("\194([\128-\159])", function(c) return ("\\u%04x"):format(c:byte()) end)
    end
    if how == "raw" and which == "err" then io.stderr:write(text) else io.stdout:write(text) end
  end
  local n = a.lines or 15
  local entries, by_time, files = require("pm.logtail").last(list, n < 0 and -n or n, { out = a.err, err = a.out })
  if color and not by_time then
    -- PM2's: each file's name, then its last lines; an empty file of an
    -- app named says so by its name alone (of all apps', those with lines)
    local of = {}
    for _, en in ipairs(entries) do
      local t = of[en.f] or {}
      of[en.f] = t
      t[#t + 1] = en
    end
    local first = true
    for _, f in ipairs(files) do
      if of[f.path] or not all then
        if not first then io.stdout:write("\n") end
        first = false
        io.stdout:write(view.log_file_header(tty_out and term_safe(f.path) or f.path, n))
        for _, en in ipairs(of[f.path] or {}) do show(en.d, en.which, en.line, en.at, en.message) end
      end
    end
  else
    for _, en in ipairs(entries) do show(en.d, en.which, en.line, en.at, en.message) end
  end
  io.stdout:flush()
  if a.nostream then return 0 end
  local ids = {}
  for _, d in ipairs(list) do ids[d.pm_id] = d end
  local bus = check(client.launchBus())
  -- a line followed carries the time prefix its file got (PM2 sends the
  -- prefixed text on its bus): log_date_format's, or time's
  local function prefix_of(pm_id)
    local e = ids[pm_id] and ids[pm_id].pm2_env or {}
    if how == "json" or e.log_type == "json" then return nil end
    return e.log_date_format or (e.time and "YYYY-MM-DDTHH:mm:ss") or nil
  end
  local function follow(which)
    return function(packet)
      local pr = packet.process or {}
      if not matches(pr, all, ids) then return end
      local fmt = prefix_of(pr.pm_id)
      local pre = fmt and (view.moment(fmt, tonumber(packet.at) or require("pm.core").now()) .. ": ") or ""
      for line in tostring(packet.data):gmatch("([^\n]*)\n?") do
        if line ~= "" then show({ pm_id = pr.pm_id, name = pr.name }, which, pre .. line, packet.at) end
      end
      io.stdout:flush()
    end
  end
  if not a.err then check(bus:on("log:out", follow("out"))) end
  if not a.out then check(bus:on("log:err", follow("err"))) end
  if how == "json" then
    -- PM2's json stream says what happens to the processes too
    check(bus:on("process:event", function(e)
      local pr = e.process or {}
      if not matches(pr, all, ids) then return end
      io.stdout:write(require("pm.util").encode_text({ timestamp = view.iso(tonumber(e.at) or 0),
        type = "process_event", status = e.event, app_name = pr.name }), "\n")
      io.stdout:flush()
    end))
  end
  client.wait()
  return 0
end

-- The one process an id names (PM2's attach and send take a pm_id)
local function one_id(verb, id)
  local n = tonumber(id)
  if not n or n ~= math.floor(n) then
    error({ msg = ("%s: pm_id must be a process number (not a process name): %s"):format(verb, tostring(id)),
      code = 2 }, 0)
  end
  return n
end

function V.send(args)
  local p = cli.parser("send")
  p:argument("pm_id", "the process's id")
  p:argument("line", "the line (a newline is added)")
  local a = p:parse(args)
  local id = one_id("send", a.pm_id)
  local conn = check(api()._conn())
  check(conn:call("sendLineToStdin", { pm_id = id, line = a.line .. "\n" }))
  return 0
end

-- PM2's attach: the process's output, and each line typed sent to its
-- stdin, until Ctrl-C or the end of the input
function V.attach(args)
  local p = cli.parser("attach")
  p:argument("pm_id", "the process's id")
  p:argument("separator", "what ends each line sent (a newline)"):args("?")
  local a = p:parse(args)
  local id = one_id("attach", a.pm_id)
  local client = api()
  local d = described(id, tostring(id))[1]
  if not (d.pm2_env and d.pm2_env.input) then
    error({ msg = ("%s (%d) has no stdin to write to: declare it with input = true"):format(d.name, id) }, 0)
  end
  local core = require "pm.core"
  local conn = check(client._conn())
  local bus = check(client.launchBus())
  local function out(which)
    return function(packet)
      local pr = packet.process or {}
      if pr.pm_id ~= id then return end
      local f = which == "err" and io.stderr or io.stdout
      f:write(tostring(packet.data))
      if tostring(packet.data):sub(-1) ~= "\n" then f:write("\n") end
      f:flush()
    end
  end
  check(bus:on("log:out", out("out")))
  check(bus:on("log:err", out("err")))
  local queue, ended = {}, false
  local sep = a.separator or "\n"
  local input = core.stream(core.dup(0), function(line)
    if line then queue[#queue + 1] = line end
  end, function() ended = true end)
  local client_loop = require "pm.client"
  while true do
    client_loop.run_until(function() return #queue > 0 or ended end)
    while #queue > 0 do
      local line = table.remove(queue, 1)
      local ok, err = conn:call("sendLineToStdin", { pm_id = id, line = line .. sep })
      if not ok then io.stderr:write("pm: ", tostring(err), "\n") end
    end
    if ended then break end
  end
  input:close()
  bus:close()
  return 0
end

-- pm trigger <target> <action> [params]: PM2's. Each running process of
-- target that registered the action (@pm2/io's io.action) is sent it; its
-- answer (axm:reply) is printed [name:id:namespace]=<its return as JSON>
function V.trigger(args)
  local p = cli.parser("trigger")
  p:argument("target", "name, id, namespace or all")
  p:argument("action", "the action's name (registered with @pm2/io's io.action)")
  p:argument("params", "a parameter for it"):args("?")
  p:option("--timeout", "ms to wait for the answers (10000)"):convert(tonumber)
  local a = p:parse(args)
  local util = require "pm.util"
  local view = require "pm.view"
  local answers = check(api().trigger(target_of(a.target), a.action, a.params, { timeout = a.timeout }))
  io.stdout:write(("%d process%s received the action %s\n"):format(#answers, #answers == 1 and "" or "es",
    view.printable(a.action)))
  for _, ans in ipairs(answers) do
    local pr = ans.process
    io.stdout:write(("[%s:%s:%s]=%s\n"):format(view.printable(pr.name), tostring(pr.pm_id),
      view.printable(pr.namespace or "default"), view.printable(ans.data == nil and "null" or util.encode(ans.data))))
  end
  return 0
end

function V.flush(args)
  local p = cli.parser("flush")
  p:argument("target"):args("?")
  local a = p:parse(args)
  check(api().flush(a.target))
  io.stdout:write("logs flushed\n")
  return 0
end

function V.reloadLogs(args)
  no_args("reloadLogs", args)
  check(api().reloadLogs())
  io.stdout:write("logs reopened\n")
  return 0
end

return V
