-- pm web: the web dashboard and /metrics, as the built-in app pm-web
-- (namespace pm) that the daemon supervises like any other: its process is
-- this binary, `pm web --serve`, a client of rpc.sock (lua/pm/web.lua).
-- The daemon itself opens no network port.
local core = require "pm.core"
local util = require "pm.util"
local cli = require "pm.cli"

local check = cli.check

local V = {}

local NAME, NAMESPACE = "pm-web", "pm"
local DEFAULT = "127.0.0.1:9615" -- (pm2 web's port)

-- "host:port", "[v6]:port", ":port" or "port" -> host, port | nil, err
local function parse_listen(s)
  local host, port = s:match("^%[([%x:.]+)%]:(%d+)$")
  if not host then host, port = s:match("^([%d.]*):(%d+)$") end
  if not host then port = s:match("^(%d+)$"); host = port and "" end
  port = tonumber(port)
  if not host or not port or port < 1 or port > 65535 then
    return nil, ("--listen %s: an address and port expected (127.0.0.1:9615, 0.0.0.0:9615, [::1]:9615)"):format(s)
  end
  if host == "" then host = "127.0.0.1" end
  return host, port
end

local function url_of(host, port, token)
  local h = host:find(":", 1, true) and "[" .. host .. "]" or host
  if h == "0.0.0.0" then h = "127.0.0.1" elseif h == "[::]" then h = "[::1]" end
  return ("http://%s:%d/?token=%s"):format(h, port, token)
end

-- the process of pm-web: serves until the daemon goes
local function serve(a)
  local host, port = parse_listen(a.listen or DEFAULT)
  if not host then return cli.die(port, 2) end
  jit.on()
  local home = util.home()
  local token, terr = require("pm.web").token(home, false)
  if not token then return cli.die(terr) end
  local user
  if a.user then
    user = util.passwd(a.user)
    if not user then return cli.die("--user " .. a.user .. ": no such user", 2) end
    if core.getuid() ~= 0 then
      return cli.die(("--user %s: the web process runs as uid %d, not root: it cannot become another user")
        :format(a.user, core.getuid()))
    end
  end
  -- the connection may only look and act on apps that exist (methods.lua's
  -- profile "web"), whoever this process becomes
  local function connect(timeout)
    local c, cerr = require("pm.client").connect({ spawn = false, timeout = timeout })
    if not c then return nil, cerr end
    local rok, rerr = c:call("restrict", { profile = "web" })
    if not rok then
      c:close()
      return nil, "the daemon refused to restrict the connection: " .. tostring(rerr)
    end
    return c
  end
  local conn, cerr = connect()
  if not conn then return cli.die(cerr) end
  local web = require "pm.web"
  local lim = {}
  for k in pairs(web.LIMITS) do
    local v = tonumber(os.getenv("PM_WEB_" .. k:upper()))
    if v then lim[k] = v end
  end
  lim.host, lim.port, lim.conn, lim.token = host, port, conn, token
  -- (a take-over: the next daemon's socket; not for a process that gave
  -- up root, which may not connect: it ends and the daemon starts it)
  if not user then lim.connect = function() return connect(0) end end
  lim.on_listen = function(p)
    if user then -- the port is bound, the token read, the connection open: root is not needed any more
      local ok, err = core.drop_privileges(user.uid, user.gid)
      if not ok then error({ msg = "--user " .. a.user .. ": " .. tostring(err) }, 0) end
    end
    io.stdout:write(("pm web: listening on %s:%d%s\n"):format(host, p, user and (" as " .. user.name) or ""))
    io.stdout:flush()
    local child = require "pm.child"
    if child.available() then child.ready() end
  end
  local rc, err = web.serve(lim)
  if not rc then return cli.die(err) end
  return rc
end

function V.web(args)
  local p = cli.parser("web")
  p:option("--listen", "address:port to listen on (default " .. DEFAULT .. ")")
  p:option("--user", "the web process gives up root for this user once it listens")
  p:flag("--off", "stop and forget pm-web")
  p:flag("--serve"):hidden(true)
  local a = p:parse(args)
  if a.serve then return serve(a) end
  local pm = cli.api()
  local conn = check(pm._conn())
  if a.off then
    local list = check(conn:call("list", { fields = { "name", "pm2_env.namespace" } }))
    local found = false
    for _, d in ipairs(list) do
      if d.name == NAME and d.pm2_env.namespace == NAMESPACE then found = true end
    end
    if not found then
      io.stdout:write("pm web is off\n")
      return 0
    end
    check(conn:call("delete", { target = NAME }))
    io.stdout:write("pm web stopped\n")
    return 0
  end
  local listen = a.listen or DEFAULT
  local host, port = parse_listen(listen)
  if not host then return cli.die(port, 2) end
  local home = util.home()
  local token = check(require("pm.web").token(home, true))
  local bin = check(util.pm_binary())
  if a.user and not util.passwd(a.user) then return cli.die("--user " .. a.user .. ": no such user", 2) end
  local app = { name = NAME, namespace = NAMESPACE, script = bin, interpreter = "none",
    args = { "web", "--serve", "--listen", listen, a.user and "--user" or nil, a.user }, wait_ready = true,
    listen_timeout = 5000,
    env = { PM_HOME = home }, max_memory_restart = "256M", restart_delay = 1000 }
  for k in pairs(require("pm.web").LIMITS) do
    local v = os.getenv("PM_WEB_" .. k:upper()) -- (the tests' smaller limits)
    if v then app.env["PM_WEB_" .. k:upper()] = v end
  end
  -- a pm-web that runs this binary with these arguments is kept; one
  -- declared otherwise is replaced
  local list = check(conn:call("list", { fields = { "name", "pm2_env.namespace", "pm2_env.status",
    "pm2_env.args", "pm2_env.pm_exec_path" } }))
  for _, d in ipairs(list) do
    local e = d.pm2_env
    if d.name == NAME and e.namespace == NAMESPACE then
      local same = e.status == "online" and e.pm_exec_path == bin and type(e.args) == "table"
        and table.concat(e.args, " ") == table.concat(app.args, " ")
      if same then
        io.stdout:write(("pm web: %s\n"):format(url_of(host, port, token)))
        return 0
      end
      check(conn:call("delete", { target = NAME }))
    end
  end
  -- (what its error log holds already: a failure says only what comes after)
  local err_log = home .. "/logs/" .. NAME .. "-error.log"
  local st0 = core.stat(err_log)
  local size0 = st0 and st0.size or 0
  local started = check(conn:call("start", { app = app, cwd = home, environ = core.environ() }))
  local d = started[1]
  if not d or d.pm2_env.status ~= "online" then
    -- (what it said, e.g. a port in use, once its line is in the log; then
    -- it is not left restarting)
    conn:call("delete", { target = NAME })
    local path = d and d.pm2_env.pm_err_log_path or err_log
    local last
    local deadline = core.mono() + 2000
    repeat
      local f = io.open(path)
      if f then
        f:seek("set", path == err_log and size0 or 0)
        local text = f:read("*a") or ""
        f:close()
        last = text:match("([^\n]+)\n[^\n]*$")
      end
      if not last then core.sleep(20) end
    until last or core.mono() > deadline
    return cli.die(("pm web could not start: %s"):format(last and last:gsub("^pm: ", "")
      or (d and d.pm2_env.status or "not started")))
  end
  io.stdout:write(("pm web: %s\n"):format(url_of(host, port, token)))
  io.stdout:write("(the token is in " .. home .. "/web.token; /metrics needs none from this machine)\n")
  return 0
end

return V
