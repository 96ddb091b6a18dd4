-- The CLI's verbs of the daemon and the session: kill, save, resurrect,
-- cleardump, update, report, startup, unstartup, sendSignal, daemon,
-- console, monit, runtime, run.
local core = require "pm.core"
local util = require "pm.util"
local cli = require "pm.cli"

local die, api, check = cli.die, cli.api, cli.check
local show_list, names_of, no_args = cli.show_list, cli.names_of, cli.no_args

local V = {}

function V.kill(args)
  no_args("kill", args)
  -- no daemon: none is started to be killed, and that is said
  local c, _, down = require("pm.client").connect({ spawn = false })
  if not c and down then
    io.stdout:write("no daemon running\n")
    return 0
  end
  if c then c:close() end
  check(require("pm")._kill_brief())
  io.stdout:write("pm daemon stopped\n")
  return 0
end

function V.save(args)
  local p = cli.parser("save")
  p:flag("--force", "save even an empty list")
  local a = p:parse(args)
  local conn = check(api()._conn())
  local n = check(conn:call("save", { force = a.force or nil }))
  io.stdout:write(("saved %d process(es) to %s/dump.json\n"):format(n, util.home()))
  return 0
end

function V.resurrect(args)
  no_args("resurrect", args)
  local conn = check(api()._conn())
  local _, err = conn:call("resurrect")
  show_list(false)
  -- (the apps that came back run and are listed; what did not is said)
  if err then io.stderr:write("pm: ", tostring(err), "\n"); return 1 end
  return 0
end

-- PM2's cleardump: the saved list emptied (the one before kept as
-- dump.json.bak); pm resurrect then starts nothing
function V.cleardump(args)
  no_args("cleardump", args)
  local home = util.home()
  check(util.mkdir_p(home, 448)) -- 0700
  local path = home .. "/dump.json"
  check(util.write_atomic(path, "[]\n", { mode = 384, backup = path .. ".bak" })) -- 0600
  io.stdout:write(("%s emptied\n"):format(path))
  return 0
end

-- What a bug report needs, never starting a daemon: versions, the system,
-- PM_HOME, the daemon's state, the process table, the last lines of
-- pm.log and of the logs of each errored app.
local REPORT_LINES = 20

function V.report(args)
  no_args("report", args)
  local out = {}
  local function say(fmt, ...) out[#out + 1] = fmt:format(...) end
  local function tail(title, path, d)
    local logtail = require "pm.logtail"
    local lines = path and logtail.last_lines(path, REPORT_LINES, logtail.owner(d)) or {}
    local what = not path and "no file" or #lines == 0 and path .. " is empty or missing"
      or ("the last %d lines of %s"):format(#lines, path)
    say("--- %s: %s", title, what)
    for _, l in ipairs(lines) do say("%s", l) end
  end
  local sysname, release, machine = core.uname()
  local home = util.home()
  local uid = core.getuid()
  local pw = util.passwd(uid)
  say("pm report (%s)", os.date("!%Y-%m-%dT%H:%M:%SZ"))
  say("pm          %s (%s)", util.VERSION, util.pm_binary())
  say("lua         %s", jit and jit.version or _VERSION)
  say("system      %s %s %s", sysname, release, machine)
  say("user        %s (uid %d)", pw and pw.name or "?", uid)
  say("PM_HOME     %s", home)
  local c, err, down = require("pm.client").connect({ spawn = false })
  local list
  if not c then
    say("daemon      %s", down and "not running" or err)
  else
    local pong = c:call("ping")
    if type(pong) == "table" then
      say("daemon      running, pid %s, pm %s, Lua heap %s KB, Lua errors %s%s", tostring(pong.pid),
        tostring(pong.version), tostring(pong.heap_kb), tostring(pong.errors),
        pong.unsaved and (", its state is not saved: " .. tostring(pong.unsaved)) or "")
    else
      say("daemon      runs, does not answer ping")
    end
    list = c:call("list", { brief = true })
    c:close()
  end
  if type(list) == "table" then
    say("--- the process table (%d)", #list)
    out[#out + 1] = require("pm.view").table(list, { color = false }):gsub("\n$", "")
  end
  tail("pm.log", home .. "/pm.log")
  for _, d in ipairs(type(list) == "table" and list or {}) do
    local e = d.pm2_env or {}
    if e.status == "errored" then
      local why = e.error and (" (" .. tostring(e.error) .. ")") or ""
      tail(("errored app %s (id %s)%s, its stderr"):format(d.name, tostring(d.pm_id), why), e.pm_err_log_path, d)
      tail(("errored app %s (id %s), its stdout"):format(d.name, tostring(d.pm_id)), e.pm_out_log_path, d)
    end
  end
  io.stdout:write(table.concat(out, "\n"), "\n")
  return 0
end

function V.update(args)
  no_args("update", args)
  require "pm"
  local client = require "pm.client"
  local conn = client.connect({ spawn = false })
  local pong = conn and conn:call("ping")
  if type(pong) == "table" and pong.keeper then
    -- a keeper holds the apps: the next daemon takes them over, same pids
    local bin = check(util.pm_binary())
    local r = conn:call("handover", { bin = bin })
    if type(r) == "table" and r.handed_over then
      client.run_until(function() return conn.closed end, 10000)
      conn:close()
      local deadline = core.mono() + 15000
      local now
      repeat
        local c = client.connect({ spawn = false, timeout = 15000 })
        now = c and c:call("ping")
        if c then c:close() end
        if type(now) ~= "table" or now.pid == pong.pid then core.sleep(20) end
      until (type(now) == "table" and now.pid ~= pong.pid) or core.mono() > deadline
      if type(now) ~= "table" or now.pid == pong.pid then
        error({ msg = "the next daemon did not answer within 15 s (see pm.log)" }, 0)
      end
      local t = type(now.took_over) == "table" and now.took_over or {}
      io.stdout:write(("pm daemon updated %s -> %s, %d apps kept\n"):format(
        tostring(pong.version), tostring(now.version), tonumber(t.kept) or 0))
      if t.keeper_warning then io.stderr:write("pm: ", tostring(t.keeper_warning), "\n") end
      show_list(false)
      return 0
    end
    -- refused: the way without a keeper (the apps restart)
  end
  if conn then
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
  local ran = conn ~= nil
  conn = check(api()._conn())
  if not ran and not core.stat(util.home() .. "/dump.json") then
    -- no daemon ran, none saved: the daemon of this version, and nothing to bring back
    io.stdout:write(("pm daemon %s started (none ran)\n"):format(util.VERSION))
    show_list(false)
    return 0
  end
  local _, err = conn:call("resurrect")
  io.stdout:write(("pm daemon updated to %s\n"):format(util.VERSION))
  show_list(false)
  if err then io.stderr:write("pm: ", tostring(err), "\n"); return 1 end
  return 0
end

-- PM2's startup flags: -u USER, --hp HOME, --service-name NAME
local function startup_flags(p)
  p:option("-u --user", "a system unit that runs pm as this user (PM2's line for root to run)"):argname("<user>")
  p:option("--hp", "that user's home (PM_HOME is <home>/.pm)"):argname("<home>")
  p:option("--service-name", "the unit's name"):argname("<name>")
end

function V.startup(args)
  local p = cli.parser("startup")
  p:argument("platform", "init system (systemd; PM2's distribution names mean it too)", "systemd")
  p:flag("--install", "write and enable the unit (root: system unit; else a user unit)")
  startup_flags(p)
  local a = p:parse(args)
  local startup = require "pm.startup"
  if not startup.SYSTEMD[a.platform] then
    error({ msg = ("startup %s: pm writes systemd units only (systemd, or a distribution that runs it: "
      .. "ubuntu, debian, centos, redhat, ...)"):format(a.platform), code = 2 }, 0)
  end
  local unit, path = startup.unit({ user = a.user, hp = a.hp, service_name = a.service_name })
  if not unit then error({ msg = path }, 0) end
  if not a.install then
    io.stdout:write("# ", path, "\n", unit)
    local words = { "pm startup systemd" }
    if a.user then words[#words + 1] = "-u " .. a.user end
    if a.hp then words[#words + 1] = "--hp " .. a.hp end
    if a.service_name then words[#words + 1] = "--service-name " .. a.service_name end
    io.stdout:write("# install it with: ", table.concat(words, " "), " --install\n")
    return 0
  end
  local msg = check(startup.install(unit, path))
  io.stdout:write(msg, "\n")
  return 0
end

function V.unstartup(args)
  local p = cli.parser("unstartup")
  p:argument("platform", "init system", "systemd")
  startup_flags(p)
  local a = p:parse(args)
  local msg = check(require("pm.startup").remove({ user = a.user, hp = a.hp, service_name = a.service_name }))
  io.stdout:write(msg, "\n")
  return 0
end

function V.sendSignal(args)
  local p = cli.parser("sendSignal")
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

function V.daemon(args)
  -- (as the keeper starts it: no argparse, a take-over's millisecond)
  if #args == 0 or (#args == 1 and args[1] == "--stdio") then
    return require("pm.daemon").run({ foreground = args[1] == "--stdio" or nil })
  end
  local p = cli.parser("daemon")
  p:option("--private-fd", "end with the owner of this fd"):convert(tonumber)
  p:flag("--stdio", "log to stderr instead of pm.log")
  local a = p:parse(args)
  return require("pm.daemon").run({ private_fd = a.private_fd, foreground = a.stdio })
end

function V.console(args)
  -- (the JIT stays off, as for the short verbs: with it on, help() of a
  -- function not pm's printed help's own entry in 12 of 115 runs of
  -- lua_console_spec on one machine, never with it off (0 of 40); a
  -- person's lines run interpreted, and LuaJIT's interpreter is fast)
  no_args("console", args)
  return require("pm.console").main()
end

function V.monit(args)
  no_args("monit", args)
  return require("pm.monit").main()
end

function V.runtime(args)
  local p = cli.parser("runtime")
  p:argument("file", "ecosystem file")
  p:option("--env", "environment of the file (env_<name>)")
  p:option("--only", "only these apps (a,b)")
  p:option("--health", "answer HTTP on ADDR ([HOST:]PORT): 200 while every app is online, else 503")
  p:flag("--json", "log as JSON lines on stdout (PM2's --json)")
  p:option("--grace", "ms the apps have to stop after SIGTERM, then killed (default 30000)"):convert(tonumber)
  p:flag("--no-auto-exit", "stay when no app is left running (default: exit 2)")
  p:epilog("exit: 0 stopped by SIGTERM/SIGINT; 1 an app ended errored, or the file could not be started; "
    .. "2 no app left running (or a usage error)")
  local a = p:parse(args)
  if not core.stat(a.file) then error({ msg = "file not found: " .. a.file }, 0) end
  if a.health then
    local ok, err = require("pm.runtime").parse_addr(a.health)
    if not ok then error({ msg = err, code = 2 }, 0) end
  end
  if a.grace ~= nil and (a.grace ~= a.grace or a.grace < 0) then
    error({ msg = "--grace: a number of ms expected", code = 2 }, 0)
  end
  return require("pm.daemon").run({ foreground = true, runtime = util.absolute(a.file), env = a.env,
    only = names_of(a.only), health = a.health, json = a.json, grace = a.grace,
    auto_exit = not a.no_auto_exit })
end

function V.run(args)
  jit.on() -- user code: may loop long (off for the short verbs, main.c)
  local file = args[1]
  if not file then return die("usage: pm run <script.lua> [args...]", 2) end
  local status, err = require("pm.console").run_file(file, { unpack(args, 2) })
  return status or die(err)
end

return V
