-- The `pm` command line: verbs of DESIGN §3 over the client API. Each verb
-- builds only its own argument parser, so a call loads no more than it uses.
-- How its answers look (tables, cards, log lines) is view.lua's; the Lua it
-- runs for pm run and pm -e, console.lua's.
local core = require "pm.core"
local util = require "pm.util"

local M = {}

local function die(msg, code)
  msg = tostring(msg):gsub("\nDid you mean", " - did you mean"):gsub("\n.*", "")
  io.stderr:write("pm: ", msg, "\n")
  return code or 1
end

-- ---- connection ----

local pm -- the client API, loaded by verbs that talk to the daemon

local function api()
  if pm then return pm end
  pm = require "pm"
  local ok, err = pm._connect_quick()
  if not ok then error({ msg = err }, 0) end
  return pm
end

-- Long operations show what happens on a terminal (stderr), and stay
-- quiet when piped: runs fn() while process events update one line.
local function with_progress(label, fn)
  if not core.isatty(2) then return fn() end
  local client = api()
  local bus = client.launchBus()
  local count = 0
  if bus then
    bus:on("process:event", function(e)
      if e.event == "online" or e.event == "reload" or e.event == "stop" or e.event == "exit" then
        count = count + 1
        io.stderr:write("\r\27[K", require("pm.view").progress(label, e, count))
        io.stderr:flush()
      end
    end)
  end
  io.stderr:write(label, "...")
  io.stderr:flush()
  local res = { pcall(fn) }
  io.stderr:write("\r\27[K")
  io.stderr:flush()
  if bus then bus:close() end
  if not res[1] then error(res[2], 0) end
  return unpack(res, 2, table.maxn(res))
end

local function check(res, err)
  if res == nil and err then error({ msg = err }, 0) end
  return res
end

-- A daemon that cannot write its journal says so on ping: warned on stderr.
local function warn_unsaved(pong)
  if type(pong) == "table" and type(pong.unsaved) == "string" then
    io.stderr:write("pm: warning: the daemon's state is not saved: ", pong.unsaved, "\n")
  end
end

local function show_list(silent)
  if silent then return end
  local conn = check(api()._conn())
  local view = require "pm.view"
  io.stdout:write(view.table(check(conn:call("list", { fields = view.TABLE_FIELDS }))))
  warn_unsaved(conn:call("ping"))
end

-- "a,b" -> { "a", "b" } (nil stays nil)
local function names_of(s)
  if not s then return nil end
  local list = {}
  for n in s:gmatch("[^,]+") do list[#list + 1] = n end
  return list
end

local function target_of(t)
  if t and core.stat(t) and util.is_ecosystem(t) then return util.absolute(t) end
  return t
end

-- The descriptions a target names; naming none is an error.
local function described(target, shown)
  local list = check(api().describe(target))
  if #list == 0 then error({ msg = "process or namespace not found: " .. (shown or target) }, 0) end
  return list
end

-- ---- verbs ----

local verbs = {}
local verb_help = {}

local function new_parser(name, desc)
  local argparse = require "argparse"
  local p = argparse("pm " .. name, desc):add_help("-h --help")
  -- usage errors come back as one line instead of ending the process
  local pparse = p.pparse
  function p.parse(self, args)
    local ok, res = pparse(self, args)
    if not ok then error({ msg = res .. " (pm help " .. name .. ")", code = 2 }, 0) end
    return res
  end
  return p
end

-- A verb that takes no argument: argparse only when some are given
-- (--help, or a mistake); loading it costs a bare `pm jlist` a third of
-- its instructions.
local function no_args(name, args)
  if #args > 0 then new_parser(name, verb_help[name]):parse(args) end
end

local function simple_target(name, desc, method, extra)
  verb_help[name] = desc
  verbs[name] = function(args)
    local p = new_parser(name, desc)
    p:argument("target", "name, id, 'all', a namespace or an ecosystem file")
    p:flag("-s --silent", "print nothing on success")
    if extra then extra(p) end
    local a = p:parse(args)
    local opts = { brief = true } -- the reply's environments are not shown
    if a.update_env then opts.updateEnv = true end
    opts.only = names_of(a.only)
    with_progress(name .. " " .. a.target, function() check(api()[method](target_of(a.target), opts)) end)
    show_list(a.silent)
    return 0
  end
end

simple_target("stop", "stop processes", "stop", function(p) p:option("--only", "apps of the file") end)
simple_target("restart", "restart processes", "restart", function(p)
  p:flag("--update-env", "take the current environment")
  p:option("--only", "apps of the file")
end)
simple_target("reload", "reload processes", "reload", function(p)
  p:flag("--update-env", "take the current environment")
  p:option("--only", "apps of the file")
end)
simple_target("delete", "stop and forget processes", "delete", function(p) p:option("--only", "apps of the file") end)
simple_target("reset", "zero the restart counters", "reset")
verbs.del = verbs.delete

local start_options = {
  -- flag, key, kind ("s" string, "n" number, "b" flag)
  { "-n --name", "name", "s", "app name" },
  { "-i --instances", "instances", "s", "number of instances (or max)" },
  { "--interpreter", "interpreter", "s", "interpreter (none: execute directly)" },
  { "--interpreter-args", "interpreter_args", "s", "arguments for the interpreter" },
  { "--cwd", "cwd", "s", "working directory" },
  { "--namespace", "namespace", "s", "namespace" },
  { "--watch", "watch", "b", "restart on file change" },
  { "--ignore-watch", "ignore_watch", "s", "paths or globs the watch ignores (a,b)" },
  { "--watch-delay", "watch_delay", "n", "ms to gather changes before a restart" },
  { "--max-memory-restart", "max_memory_restart", "s", "restart above this memory (200M)" },
  { "--restart-delay", "restart_delay", "n", "ms before a restart" },
  { "--exp-backoff-restart-delay", "exp_backoff_restart_delay", "n", "exponential backoff base (ms)" },
  { "--max-restarts", "max_restarts", "n", "fast restarts before errored" },
  { "--min-uptime", "min_uptime", "s", "uptime under which an exit is unstable (ms)" },
  { "--kill-timeout", "kill_timeout", "n", "ms from the stop signal to SIGKILL" },
  { "--kill-signal", "kill_signal", "s", "the stop signal (SIGINT)" },
  { "--stop-exit-codes", "stop_exit_codes", "s", "exit codes that are not restarted (0,42)" },
  { "--no-autorestart", "no_autorestart", "b", "do not restart on exit" },
  { "--cron-restart", "cron_restart", "s", "restart on a cron schedule" },
  { "--wait-ready", "wait_ready", "b", "wait for the app's ready signal" },
  { "--listen-timeout", "listen_timeout", "n", "ms to wait for ready" },
  { "--time", "time", "b", "prefix log lines with the time" },
  { "--merge-logs", "merge_logs", "b", "one log file for all instances" },
  { "-o --output", "out_file", "s", "stdout log file" },
  { "-e --error", "error_file", "s", "stderr log file" },
  { "-l --log", "log_file", "s", "combined log file" },
}

verb_help.start = "start a script, an ecosystem file, or a known app"
function verbs.start(args)
  local p = new_parser("start", verb_help.start)
  p:argument("what", "script, ecosystem file, name or id")
  p:argument("args", "arguments for the script (after --)"):args("*")
  for _, o in ipairs(start_options) do
    local key = o[1]:match("%-%-([%w-]+)"):gsub("-", "_")
    if o[3] == "b" then p:flag(o[1], o[4]) else p:option(o[1], o[4]) end
    o.argkey = key
  end
  p:option("--env", "environment of the file (env_<name>)")
  p:option("--only", "start only these apps of the file (a,b)")
  p:flag("-f --force", "start a script that already runs")
  p:flag("-s --silent", "print nothing on success")
  local a = p:parse(args)
  local what = a.what
  local cwd = core.getcwd()
  local only = names_of(a.only)
  local client = api()
  local st = core.stat(what)
  if st and st.type == "file" and util.is_ecosystem(what) then
    local res = with_progress("start " .. what, function()
      return check(client.start(util.absolute(what, cwd), { env = a.env, only = only, reply = "changes" }))
    end)
    for _, d in ipairs(res) do
      local line = not a.silent and require("pm.view").changes(d)
      if line then io.stdout:write(line) end
    end
    return show_list(a.silent) or 0
  end
  local app = { script = what, args = #a.args > 0 and a.args or nil }
  local given = false
  for _, o in ipairs(start_options) do
    local v = a[o.argkey]
    if v ~= nil and v ~= false then
      given = true
      if o[2] == "no_autorestart" then app.autorestart = false
      elseif o[2] == "ignore_watch" then app.ignore_watch = names_of(v)
      elseif o[2] == "stop_exit_codes" then
        app.stop_exit_codes = {}
        for c in v:gmatch("[^,%s]+") do
          app.stop_exit_codes[#app.stop_exit_codes + 1] = tonumber(c)
            or error({ msg = "--stop-exit-codes: numbers expected, got " .. c, code = 2 }, 0)
        end
      elseif o[3] == "n" then
        app[o[2]] = tonumber(v) or error({ msg = o[1] .. ": a number expected" }, 0)
      else app[o[2]] = v end
    end
  end
  if not st and not given and #a.args == 0 then
    check(client.start(what, { brief = true })) -- a known name or id is (re)started
  else
    check(client.start(app, { force = a.force or nil, env = a.env, brief = true }))
  end
  show_list(a.silent)
  return 0
end

local function list_verb(args)
  if #args > 0 then
    local p = new_parser("list", "the process table")
    p:flag("--watch", "refresh every second (Ctrl-C leaves)")
    local a = p:parse(args)
    if a.watch then
      local view = require "pm.view"
      collectgarbage("restart") -- it runs until Ctrl-C: collect as usual
      M.quick_exit = false
      local client = api()
      local stop = false
      local sig = core.signal(core.signals.SIGINT, function() stop = true end)
      while not stop do
        local list = check(client.list())
        local out = view.stdout()
        io.stdout:write(out.color and "\27[H\27[2J" or "", os.date("%H:%M:%S"), "\n", view.table(list, out))
        io.stdout:flush()
        client.wait(1000)
        local t = core.timer(1000, 0, function() end)
        while t:active() and not stop do core.run("once") end
        t:close()
      end
      sig:close()
      return 0
    end
  end
  show_list(false)
  return 0
end
verb_help.list = "the process table (also ls, status, l)"
verbs.list, verbs.ls, verbs.status, verbs.l = list_verb, list_verb, list_verb, list_verb

verb_help.jlist = "the process descriptions as a JSON array"
function verbs.jlist(args)
  no_args("jlist", args)
  local conn = check(api()._conn())
  check(conn:call_streamed("list", nil, function(piece) io.stdout:write(piece) end))
  io.stdout:write("\n")
  return 0
end

verb_help.describe = "everything about a process"
function verbs.describe(args)
  local p = new_parser("describe", verb_help.describe)
  p:argument("target", "name, id, 'all' or namespace")
  p:flag("--json", "print JSON")
  local a = p:parse(args)
  local list = described(target_of(a.target), a.target)
  if a.json then
    io.stdout:write(util.encode(list), "\n")
  else
    local view = require "pm.view"
    for i, d in ipairs(list) do
      if i > 1 then io.stdout:write("\n") end
      io.stdout:write(view.card(d))
    end
  end
  return 0
end
verbs.desc, verbs.show, verbs.info = verbs.describe, verbs.describe, verbs.describe

verb_help.pid = "pids of an app (or of every app)"
function verbs.pid(args)
  local p = new_parser("pid", verb_help.pid)
  p:argument("name"):args("?")
  local a = p:parse(args)
  local list = a.name and described(a.name) or check(api().list())
  for _, d in ipairs(list) do io.stdout:write(tostring(d.pid), "\n") end
  return 0
end

verb_help.ping = "is the daemon up? (starts it when not)"
function verbs.ping(args)
  no_args("ping", args)
  local res = check(api().ping())
  io.stdout:write(util.encode(res), "\n")
  warn_unsaved(res)
  return 0
end

verb_help.kill = "stop every app and the daemon"
function verbs.kill(args)
  no_args("kill", args)
  pm = require "pm"
  check(pm.killDaemon())
  io.stdout:write("pm daemon stopped\n")
  return 0
end

verb_help.logs = "show the last lines of app logs, then follow them"
function verbs.logs(args)
  local p = new_parser("logs", verb_help.logs)
  p:argument("target", "name, id, namespace or all"):args("?")
  p:option("--lines", "how many lines in total", "15"):convert(tonumber)
  p:flag("--err", "only the error logs")
  p:flag("--out", "only the output logs")
  p:flag("--nostream", "print and exit")
  p:flag("--json", "one JSON object per line")
  p:flag("--raw", "lines as they are, no prefix")
  local a = p:parse(args)
  local client = api()
  local all = not a.target or a.target == "all"
  local list = all and check(client.list()) or described(target_of(a.target), a.target)
  local view = require "pm.view"
  local function show(d, which, line)
    io.stdout:write(view.log_line(d, which, line, a.raw and "raw" or a.json and "json" or nil))
  end
  for _, en in ipairs(require("pm.logtail").last(list, a.lines or 15, { out = a.err, err = a.out })) do
    show(en.d, en.which, en.line)
  end
  io.stdout:flush()
  if a.nostream then return 0 end
  local ids = {}
  for _, d in ipairs(list) do ids[d.pm_id] = d end
  local bus = check(client.launchBus())
  local function follow(which)
    return function(packet)
      local pr = packet.process or {}
      if not all and not ids[pr.pm_id] then return end
      for line in tostring(packet.data):gmatch("([^\n]*)\n?") do
        if line ~= "" then show({ pm_id = pr.pm_id, name = pr.name }, which, line) end
      end
      io.stdout:flush()
    end
  end
  if not a.err then check(bus:on("log:out", follow("out"))) end
  if not a.out then check(bus:on("log:err", follow("err"))) end
  client.wait()
  return 0
end

verb_help.scale = "set the number of instances of an app (N, +N, -N)"
function verbs.scale(args)
  local p = new_parser("scale", verb_help.scale)
  p:argument("name", "app name")
  p:argument("instances", "N, +N or -N")
  p:flag("-s --silent", "print nothing on success")
  -- "-2" is a count, not a flag
  local fixed, count = {}, nil
  for _, x in ipairs(args) do
    if x:match("^%-%d+$") then count = x else fixed[#fixed + 1] = x end
  end
  if count then
    fixed[#fixed + 1] = "--"
    fixed[#fixed + 1] = count
  end
  local a = p:parse(fixed)
  local conn = check(api()._conn())
  check(conn:call("scale", { name = a.name, instances = a.instances }))
  show_list(a.silent)
  return 0
end

verb_help.save = "save the app list for pm resurrect"
function verbs.save(args)
  local p = new_parser("save", verb_help.save)
  p:flag("--force", "save even an empty list")
  local a = p:parse(args)
  local conn = check(api()._conn())
  local n = check(conn:call("save", { force = a.force or nil }))
  io.stdout:write(("saved %d process(es) to %s/dump.json\n"):format(n, util.home()))
  return 0
end
verbs.dump = verbs.save

verb_help.resurrect = "start the saved apps again"
function verbs.resurrect(args)
  no_args("resurrect", args)
  local conn = check(api()._conn())
  check(conn:call("resurrect"))
  show_list(false)
  return 0
end

verb_help.update = "save, replace the daemon with this pm's, resurrect"
function verbs.update(args)
  no_args("update", args)
  pm = require "pm"
  local client = require "pm.client"
  local conn = client.connect({ spawn = false })
  if conn then
    local pong = conn:call("ping")
    check(conn:call("save", { force = true }))
    conn:call("killDaemon")
    client.run_until(function() return conn.closed end, 10000)
    conn:close()
    -- the old daemon holds its lock until it has exited: a new one started
    -- sooner would lose the race to it and leave nobody answering
    local old = type(pong) == "table" and tonumber(pong.pid)
    local deadline = core.mono() + 10000
    while old and core.proc_stat(old) and core.mono() < deadline do core.sleep(5) end
  end
  conn = check(api()._conn())
  check(conn:call("resurrect"))
  io.stdout:write(("pm daemon updated to %s\n"):format(util.VERSION))
  show_list(false)
  return 0
end

verb_help.startup = "print (or --install) a systemd unit that runs pm at boot"
function verbs.startup(args)
  local p = new_parser("startup", verb_help.startup)
  p:argument("platform", "init system", "systemd"):choices({ "systemd" })
  p:flag("--install", "write and enable the unit (root: system unit; else a user unit)")
  local a = p:parse(args)
  local startup = require "pm.startup"
  local unit, path = startup.unit()
  if not a.install then
    io.stdout:write("# ", path, "\n", unit)
    io.stdout:write("# install it with: pm startup systemd --install\n")
    return 0
  end
  local msg = check(startup.install(unit, path))
  io.stdout:write(msg, "\n")
  return 0
end

verb_help.unstartup = "remove the systemd unit of pm startup"
function verbs.unstartup(args)
  no_args("unstartup", args)
  local msg = check(require("pm.startup").remove())
  io.stdout:write(msg, "\n")
  return 0
end

verb_help.flush = "empty log files"
function verbs.flush(args)
  local p = new_parser("flush", verb_help.flush)
  p:argument("target"):args("?")
  local a = p:parse(args)
  check(api().flush(a.target))
  io.stdout:write("logs flushed\n")
  return 0
end

verb_help.reloadLogs = "reopen log files"
function verbs.reloadLogs(args)
  no_args("reloadLogs", args)
  check(api().reloadLogs())
  io.stdout:write("logs reopened\n")
  return 0
end

verb_help.sendSignal = "send a signal to processes"
function verbs.sendSignal(args)
  local p = new_parser("sendSignal", verb_help.sendSignal)
  p:argument("signal")
  p:argument("target", "name or id")
  local a = p:parse(args)
  local ok, err = util.signum(a.signal)
  if not ok then error({ msg = err }, 0) end
  if tonumber(a.target) then
    check(api().sendSignalToProcessId(a.signal, tonumber(a.target)))
  else
    check(api().sendSignalToProcessName(a.signal, a.target))
  end
  io.stdout:write(("%s sent to %s\n"):format(a.signal, a.target))
  return 0
end

verb_help.daemon = "run the daemon in the foreground"
function verbs.daemon(args)
  local p = new_parser("daemon", verb_help.daemon)
  p:option("--private-fd", "end with the owner of this fd"):convert(tonumber)
  p:flag("--stdio", "log to stderr instead of pm.log")
  local a = p:parse(args)
  return require("pm.daemon").run({ private_fd = a.private_fd, foreground = a.stdio })
end

verb_help.console = "a Lua REPL connected to the daemon"
function verbs.console(args)
  jit.on() -- user code: may loop long (off for the short verbs, main.c)
  no_args("console", args)
  return require("pm.console").main()
end

verb_help.monit = "a live dashboard of the apps"
function verbs.monit(args)
  no_args("monit", args)
  return require("pm.monit").main()
end

verb_help.runtime = "run an ecosystem file in the foreground (containers, PID 1)"
function verbs.runtime(args)
  local p = new_parser("runtime", verb_help.runtime)
  p:argument("file", "ecosystem file")
  p:option("--env", "environment of the file (env_<name>)")
  p:option("--only", "only these apps (a,b)")
  local a = p:parse(args)
  if not core.stat(a.file) then error({ msg = "file not found: " .. a.file }, 0) end
  return require("pm.daemon").run({ foreground = true, runtime = util.absolute(a.file), env = a.env,
    only = names_of(a.only) })
end

verb_help.run = "run a Lua script with require \"pm\" available"
function verbs.run(args)
  jit.on() -- user code: may loop long (off for the short verbs, main.c)
  local file = args[1]
  if not file then return die("usage: pm run <script.lua> [args...]", 2) end
  local status, err = require("pm.console").run_file(file, { unpack(args, 2) })
  return status or die(err)
end

verb_help.help = "usage, or a verb's usage"
local order = { "start", "stop", "restart", "reload", "delete", "list", "jlist", "describe",
  "logs", "scale", "pid", "ping", "kill", "reset", "flush", "reloadLogs", "sendSignal", "save", "resurrect",
  "update", "startup", "unstartup", "console", "monit", "runtime", "run", "daemon", "help" }

local function usage()
  local out = { ("pm %s: a process manager, policy in Lua"):format(util.VERSION), "",
    "usage: pm <verb> [options]    pm help <verb>    pm -e '<lua>'    pm --version", "" }
  for _, v in ipairs(order) do out[#out + 1] = ("  %-12s %s"):format(v, verb_help[v] or "") end
  out[#out + 1] = ""
  out[#out + 1] = "examples:"
  out[#out + 1] = "  pm start app.js --name api -i 4 -- --port 3000"
  out[#out + 1] = "  pm start ecosystem.lua --env production"
  out[#out + 1] = "  pm restart api --update-env"
  out[#out + 1] = "  pm -e 'for _, p in ipairs(pm.list()) do print(p.name, p.pid) end'"
  return table.concat(out, "\n") .. "\n"
end

-- " - did you mean 'x'?" for a verb that is not one, or ""
local function near_verb(v)
  local names = {}
  for n in pairs(verbs) do names[#names + 1] = n end
  table.sort(names)
  local near = require("pm.app").closest(v, names)
  return near and (" - did you mean '" .. near .. "'?") or ""
end

function verbs.help(args)
  local v = args[1]
  if v and verbs[v] and v ~= "help" and v ~= "run" then
    return verbs[v]({ "--help" })
  end
  if v and not verbs[v] then return die(("no verb '%s'%s (pm help lists them)"):format(v, near_verb(v)), 2) end
  io.stdout:write(usage())
  return 0
end

-- ---- entry ----

local QUICK = {}
for _, v in ipairs({ "--version", "-v", "version", "list", "ls", "status", "l", "jlist", "describe", "desc",
  "show", "info", "pid", "ping", "start", "stop", "restart", "reload", "delete", "del", "scale", "reset", "flush",
  "reloadLogs", "sendSignal", "save", "resurrect", "kill" }) do QUICK[v] = true end

function M.main(argv)
  local verb = argv[1]
  -- main.c starts with the collector stopped: a short verb is over before
  -- a collection pays (it would mark and sweep the code just loaded);
  -- anything that may run long or run user code collects as usual
  if not QUICK[verb] then collectgarbage("restart") end
  local args = {}
  for i = 2, #argv do args[#args + 1] = argv[i] end
  if verb == nil then
    io.stdout:write(usage())
    return 0
  end
  if verb == "--version" or verb == "-v" or verb == "version" then
    io.stdout:write(util.VERSION, "\n")
    M.quick_exit = true
    return 0
  end
  if verb == "--help" or verb == "-h" then verb = "help" end
  if verb == "-e" then
    if not args[1] then return die("usage: pm -e '<lua>'", 2) end
    jit.on() -- user code: may loop long
    local status, err = require("pm.console").run_string(args[1])
    return status or die(err, 2)
  end
  local fn = verbs[verb]
  if not fn then
    return die(("unknown command '%s'%s (pm help lists them)"):format(verb, near_verb(verb)), 2)
  end
  -- verbs that write no file, hold no terminal and run no user code: the
  -- process may end without closing the Lua state (main.c)
  M.quick_exit = QUICK[verb] or false
  local ok, res = pcall(fn, args)
  if not ok then
    if type(res) == "table" and res.msg then return die(res.msg, res.code) end
    return die(res)
  end
  return res or 0
end

return M
