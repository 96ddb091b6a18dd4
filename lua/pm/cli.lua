-- The `pm` command line: verbs of DESIGN §3 over the client API. This file
-- holds the table of verbs, what they share (the connection, the parser,
-- errors) and the entry; the verbs live in cli_procs, cli_info, cli_logs,
-- cli_admin and cli_eco, and a call loads only its verb's file and its own
-- argument parser. How answers look (tables, cards, log lines) is view.lua's;
-- the Lua it runs for pm run and pm -e, console.lua's.
local core = require "pm.core"
local util = require "pm.util"

local M = {}

function M.die(msg, code)
  -- what a refused ecosystem file printed while it loaded (ecosystem.read)
  local printed = tostring(msg):match("\n[^\n]* printed while it loaded:\n(.*)$")
  if printed then io.stdout:write(printed, "\n") end
  msg = tostring(msg):gsub("\nDid you mean", " - did you mean"):gsub("\n.*", "")
  io.stderr:write("pm: ", msg, "\n")
  return code or 1
end

-- ---- connection ----

local pm -- the client API, loaded by verbs that talk to the daemon

function M.api()
  if pm then return pm end
  pm = require "pm"
  local ok, err = pm._connect_quick()
  if not ok then error({ msg = err }, 0) end
  return pm
end

-- Long operations show what happens on a terminal (stderr), and stay
-- quiet when piped: runs fn() while process events update one line.
function M.with_progress(label, fn)
  if not core.isatty(2) then return fn() end
  local client = M.api()
  local bus = client.launchBus()
  if bus then bus.live = true end -- (its events show while the call runs)
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

function M.check(res, err)
  if res == nil and err then error({ msg = err }, 0) end
  return res
end

-- A daemon that cannot write its journal says so on ping: warned on stderr.
function M.warn_unsaved(pong)
  if type(pong) == "table" and type(pong.unsaved) == "string" then
    io.stderr:write("pm: warning: the daemon's state is not saved: ", pong.unsaved, "\n")
  end
end

function M.show_list(silent)
  if silent then return end
  local conn = M.check(M.api()._conn())
  local view = require "pm.view"
  io.stdout:write(view.table(M.check(conn:call("list", { fields = view.TABLE_FIELDS }))))
  M.warn_unsaved(conn:call("ping"))
end

-- "a,b" -> { "a", "b" } (nil stays nil)
function M.names_of(s)
  if not s then return nil end
  local list = {}
  for n in s:gmatch("[^,]+") do list[#list + 1] = n end
  return list
end

function M.target_of(t)
  local st = t and core.stat(t)
  if st and util.is_ecosystem(t) then return util.absolute(t) end
  -- a script's file (PM2: the apps whose script it is, when no app has
  -- that name): its absolute path, which the daemon takes for a name first
  if st and st.type == "file" and not tonumber(t) and t ~= "all" then return util.absolute(t) end
  return t
end

-- Runs fn(target) for each target of a verb in turn (PM2 does them one
-- after the other); a target that fails does not stop the others -> the
-- failures' one-line messages, how many succeeded. One target alone: its
-- error is raised, as any verb's.
function M.each_target(targets, fn)
  local failures, done = {}, 0
  for _, t in ipairs(targets) do
    local ok, err = pcall(fn, t)
    if ok then
      done = done + 1
    else
      if #targets == 1 then error(err, 0) end
      local msg = type(err) == "table" and err.msg or tostring(err)
      failures[#failures + 1] = (tostring(msg):gsub("\n.*", ""))
    end
  end
  return failures, done
end

-- Several targets of one verb: every request sent at once, then their
-- replies (the daemon acts on them together, and one journal write
-- acknowledges many: 4,750 names took one write each, minutes) ->
-- failures, done as each_target. params_of(t) -> the request's params;
-- check(t, result) raises what a result that is no success says.
function M.each_target_at_once(targets, method, params_of, check)
  local c = M.check(M.api()._conn())
  local replies, n = {}, 0
  for i, t in ipairs(targets) do
    local id, err = c:send(method, params_of(t), function(res, rerr)
      replies[i] = { res, rerr }
      n = n + 1
    end)
    if not id then
      replies[i] = { nil, err }
      n = n + 1
    end
  end
  while n < #targets and not c.closed do core.run("once") end
  local k = 0
  return M.each_target(targets, function(t) -- (each reply in turn, as if asked then)
    k = k + 1
    local r = replies[k] or { nil, "the pm daemon closed the connection" }
    M.check(r[1] ~= util.null and r[1] or nil, r[2])
    check(t, r[1])
  end)
end

-- The descriptions a target names; naming none is an error.
function M.described(target, shown)
  local list = M.check(M.api().describe(target))
  if #list == 0 then error({ msg = "process or namespace not found: " .. (shown or target) }, 0) end
  return list
end
-- ---- verbs ----

-- verb -> { file (pm.cli_<file>), help line }. The order is that of `pm help`.
local VERBS, ORDER = {}, {}
for _, v in ipairs({
  { "start", "procs", "start a script, an ecosystem file, or a known app" },
  { "stop", "procs", "stop processes" },
  { "restart", "procs", "restart processes" },
  { "reload", "procs", "reload processes" },
  { "delete", "procs", "stop and forget processes" },
  { "startOrRestart", "procs", "start an ecosystem file's new apps, restart the others with its changes" },
  { "startOrReload", "procs", "start an ecosystem file's new apps, reload the others with its changes" },
  { "startOrGracefulReload", "procs", "the same as startOrReload (PM2's name)" },
  { "list", "info", "the process table (also ls, status, l)" },
  { "jlist", "info", "the process descriptions as a JSON array" },
  { "describe", "info", "everything about a process" },
  { "env", "info", "the environment variables of a process (by id)" },
  { "id", "info", "the ids of an app's processes, as a JSON array" },
  { "prettylist", "info", "the process list as PM2 prints it (Node's util.inspect notation)" },
  { "logs", "logs", "show the last lines of app logs, then follow them" },
  { "scale", "procs", "set the number of instances of an app (N, +N, -N)" },
  { "pid", "info", "pids of an app (or of every app)" },
  { "ping", "info", "is the daemon up? (starts it when not)" },
  { "report", "admin", "what a bug report needs: versions, PM_HOME, the daemon, the last log lines" },
  { "kill", "admin", "stop every app and the daemon" },
  { "reset", "procs", "zero the restart counters" },
  { "flush", "logs", "empty log files" },
  { "reloadLogs", "logs", "reopen log files" },
  { "send", "logs", "write a line to the stdin of a process (input = true)" },
  { "attach", "logs", "show a process's output and send it typed lines (input = true)" },
  { "sendSignal", "admin", "send a signal to processes" },
  { "trigger", "logs", "call an action an app registered (@pm2/io's io.action) and print its answers" },
  { "set", "conf", "set an app's configuration key (APP.KEY VALUE): it restarts with KEY=VALUE" },
  { "multiset", "conf", "set several keys at once (\"APP.KEY VALUE APP.KEY2 VALUE2\")" },
  { "unset", "conf", "remove an app's configuration key (APP.KEY), all its keys (APP), or all" },
  { "get", "conf", "an app configuration key's value (APP.KEY), an app's keys, or every key" },
  { "conf", "conf", "get (KEY) or set (KEY VALUE) an app configuration key (PM2's pm2 conf)" },
  { "install", "conf", "PM2's modules: pm2-logrotate is built in (turned on with its defaults); others say so" },
  { "uninstall", "conf", "PM2's modules: pm2-logrotate's settings removed (its rotation off)" },
  { "save", "admin", "save the app list for pm resurrect" },
  { "resurrect", "admin", "start the saved apps again" },
  { "cleardump", "admin", "empty the saved app list (dump.json)" },
  { "update", "admin", "save, replace the daemon with this pm's, resurrect" },
  { "init", "eco", "write a starter ecosystem.lua here, --json PM2's JSON (also ecosystem)" },
  { "startup", "admin", "print (or --install) a systemd unit that runs pm at boot" },
  { "unstartup", "admin", "remove the systemd unit of pm startup" },
  { "console", "admin", "a Lua REPL connected to the daemon" },
  { "monit", "admin", "a live dashboard of the apps" },
  { "serve", "serve", "serve a folder's files over HTTP as an app (PM2's pm2 serve [path] [port])" },
  { "web", "web", "the web dashboard and Prometheus /metrics (the app pm-web), --off to stop it" },
  { "runtime", "admin", "run an ecosystem file in the foreground (containers, PID 1)" },
  { "export", "export", "an ecosystem file's apps as systemd units, Kubernetes, Nomad or Compose files" },
  { "deploy", "export", "PM2's deploy over ssh and git: setup, update, ref, revert [n], curr, prev, list, exec <cmd>" },
  { "run", "admin", "run a Lua script with require \"pm\" available" },
  { "daemon", "admin", "run the daemon in the foreground" },
  { "help", nil, "usage, or a verb's usage" },
}) do
  VERBS[v[1]] = { file = v[2], help = v[3] }
  ORDER[#ORDER + 1] = v[1]
end

-- Other names of verbs: they work, and are never suggested.
local ALIASES = { del = "delete", ls = "list", status = "list", l = "list", desc = "describe", show = "describe",
  info = "describe", dump = "save", ecosystem = "init", updatePM2 = "update", ps = "list",
  -- (PM2's: its dashboard is pm's monit, its config and create pm's conf and init)
  dashboard = "monit", dash = "monit", config = "conf", create = "init" }

M.VERBS, M.ALIASES = VERBS, ALIASES

-- An option's names and argument on one help line, `-n, --name <name>`
-- (argparse gives each name of an option that takes an argument a line of
-- its own, and has no setting for it); long-only ones indented to line up.
local function one_line_label(self)
  local names = self._public_aliases
  local label = table.concat(names, ", ")
  if #names == 1 and label:sub(1, 2) == "--" then label = "    " .. label end
  local args = self:_get_argument_list()
  if #args > 0 then label = label .. " " .. table.concat(args, " ") end
  return { label }
end

-- The parser of a verb, its help line from VERBS.
function M.parser(name, desc)
  local argparse = require "argparse"
  local p = argparse("pm " .. name, desc or (VERBS[name] and VERBS[name].help))
  p:help_description_margin(34)
  for _, kind in ipairs({ "option", "flag" }) do
    local make = p[kind]
    p[kind] = function(self, ...)
      local o = make(self, ...)
      o._get_label_lines = one_line_label
      return o
    end
  end
  p:add_help("-h --help")
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
function M.no_args(name, args)
  if #args > 0 then M.parser(name):parse(args) end
end

-- The function of a verb (or of an alias), or nil.
local function verb_fn(name)
  name = ALIASES[name] or name
  local v = VERBS[name]
  if not v then return nil end
  if not v.file then return M[name .. "_verb"] end
  return require("pm.cli_" .. v.file)[name]
end

local function usage()
  local out = { ("pm %s: a process manager, policy in Lua"):format(util.VERSION), "",
    "usage: pm <verb> [options]    pm help <verb>    pm -e '<lua>'    pm --version", "",
    "  pm help lua [name]     the Lua reference: require \"pm\", pm.child, hooks, the console", "" }
  for _, v in ipairs(ORDER) do out[#out + 1] = ("  %-22s %s"):format(v, VERBS[v].help) end
  out[#out + 1] = ""
  out[#out + 1] = "examples:"
  out[#out + 1] = "  pm start app.js --name api -i 4 -- --port 3000"
  out[#out + 1] = "  pm start ecosystem.lua --env production"
  out[#out + 1] = "  pm restart api --update-env"
  out[#out + 1] = "  pm -e 'for _, p in ipairs(pm.list()) do print(p.name, p.pid) end'"
  return table.concat(out, "\n") .. "\n"
end

-- " - did you mean 'x'?" for a verb that is not one, or "" (aliases are
-- not suggested)
local function near_verb(v)
  local names = {}
  for _, n in ipairs(ORDER) do names[#names + 1] = n end
  names[#names + 1], names[#names + 2] = "ls", "status" -- the aliases list's help names
  local near = require("pm.app").closest(v, names)
  return near and (" - did you mean '" .. near .. "'?") or ""
end

-- pm help lua [name]: the Lua reference's index, or a function's entries
-- (doc/lua.md, as the console's help() prints them)
local function help_lua(name)
  local ref = require "pm.reference"
  local entries, sections = ref.parse()
  if not entries then return M.die(sections) end
  if not name then
    io.stdout:write("pm's Lua reference (doc/lua.md): pm help lua <name> shows an entry ",
      "(restart, pm.restart, \"hook pm.restart\", bus:on, child.send)\n", ref.index(entries, sections))
    return 0
  end
  local found = ref.find(entries, name)
  if #found == 0 then
    return M.die(("no entry for '%s' in the Lua reference (pm help lua lists them)"):format(name), 2)
  end
  for i, e in ipairs(found) do io.stdout:write(i > 1 and "\n" or "", ref.format(e)) end
  return 0
end

function M.help_verb(args)
  local v = args[1]
  if v == "lua" then return help_lua(args[2] and table.concat(args, " ", 2)) end
  local fn = v and verb_fn(v)
  if fn and v ~= "help" and v ~= "run" then return fn({ "--help" }) end
  if v and not fn then return M.die(("no verb '%s'%s (pm help lists them)"):format(v, near_verb(v)), 2) end
  io.stdout:write(usage())
  return 0
end

-- ---- entry ----

local QUICK = {}
for _, v in ipairs({ "--version", "-v", "-V", "version", "list", "ls", "status", "l", "jlist", "describe", "desc",
  "show", "info", "pid", "ping", "start", "stop", "restart", "reload", "delete", "del", "scale", "reset", "flush",
  "reloadLogs", "sendSignal", "save", "resurrect", "kill", "env", "id", "prettylist" }) do QUICK[v] = true end

function M.main(argv)
  -- pm --verbose <verb> ...: Lua errors of pm -e and pm run with their traceback
  if argv[1] == "--verbose" then
    argv = { unpack(argv, 2) }
    require("pm.console").verbose = true
  end
  local verb = argv[1]
  -- main.c starts with the collector stopped: a short verb is over before
  -- a collection pays (it would mark and sweep the code just loaded);
  -- anything that may run long or run user code collects as usual
  if not QUICK[verb] then collectgarbage("restart") end
  local args = {}
  for i = 2, #argv do args[#args + 1] = argv[i] end
  if verb == nil then -- (usage, and no verb is a usage error: non-zero, as in PM2; pm help exits 0)
    io.stdout:write(usage())
    return 2
  end
  if verb == "--version" or verb == "-v" or verb == "-V" or verb == "version" then
    io.stdout:write(util.VERSION, "\n")
    M.quick_exit = true
    return 0
  end
  if verb == "--help" or verb == "-h" then verb = "help" end
  if verb == "-e" then
    if args[1] == "--verbose" then -- (pm -e --verbose '<lua>' too)
      table.remove(args, 1)
      require("pm.console").verbose = true
    end
    if not args[1] then return M.die("usage: pm -e '<lua>'", 2) end
    jit.on() -- user code: may loop long
    local status, err = require("pm.console").run_string(args[1])
    return status or M.die(err, 2)
  end
  local fn = verb_fn(verb)
  if not fn then
    return M.die(("unknown command '%s'%s (pm help lists them)"):format(verb, near_verb(verb)), 2)
  end
  -- verbs that write no file, hold no terminal and run no user code: the
  -- process may end without closing the Lua state (main.c)
  M.quick_exit = QUICK[verb] or false
  local ok, res = pcall(fn, args)
  if not ok then
    if type(res) == "table" and res.msg then return M.die(res.msg, res.code) end
    return M.die(res)
  end
  return res or 0
end

return M
