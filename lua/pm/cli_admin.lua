-- The CLI's verbs of the daemon and the session: kill, save, resurrect, update,
-- startup, unstartup, sendSignal, daemon, console, monit, runtime, run.
local core = require "pm.core"
local util = require "pm.util"
local cli = require "pm.cli"

local die, api, check = cli.die, cli.api, cli.check
local show_list, names_of, no_args = cli.show_list, cli.names_of, cli.no_args

local V = {}

function V.kill(args)
  no_args("kill", args)
  check(require("pm").killDaemon())
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
  check(conn:call("resurrect"))
  show_list(false)
  return 0
end

function V.update(args)
  no_args("update", args)
  require "pm"
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

function V.startup(args)
  local p = cli.parser("startup")
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

function V.unstartup(args)
  no_args("unstartup", args)
  local msg = check(require("pm.startup").remove())
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
  local p = cli.parser("daemon")
  p:option("--private-fd", "end with the owner of this fd"):convert(tonumber)
  p:flag("--stdio", "log to stderr instead of pm.log")
  local a = p:parse(args)
  return require("pm.daemon").run({ private_fd = a.private_fd, foreground = a.stdio })
end

function V.console(args)
  jit.on() -- user code: may loop long (off for the short verbs, main.c)
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
  local a = p:parse(args)
  if not core.stat(a.file) then error({ msg = "file not found: " .. a.file }, 0) end
  return require("pm.daemon").run({ foreground = true, runtime = util.absolute(a.file), env = a.env,
    only = names_of(a.only) })
end

function V.run(args)
  jit.on() -- user code: may loop long (off for the short verbs, main.c)
  local file = args[1]
  if not file then return die("usage: pm run <script.lua> [args...]", 2) end
  local status, err = require("pm.console").run_file(file, { unpack(args, 2) })
  return status or die(err)
end

return V
