-- The CLI's `pm serve [path] [port]` (PM2's `pm2 serve`): an app whose
-- script is "serve", pm's static file server (serve.lua), configured by
-- PM2's variables PM2_SERVE_*; `pm serve --run` is that app's process.
local core = require "pm.core"
local util = require "pm.util"
local cli = require "pm.cli"

local V = {}

function V.serve(args)
  local p = cli.parser("serve")
  p:argument("path", "the folder served (default: this one)"):args("?")
  p:argument("port", "the port (default 8080)"):args("?")
  p:option("--port", "the port (PM2's spelling)"):target("port_opt")
  p:option("--host", "the address to listen on (default 0.0.0.0, PM2's)")
  p:option("--name", "the app's name (default static-page-server-<port>)")
  p:option("--homepage", "the file / and, with --spa, every unknown path give (default /index.html)")
  p:flag("--spa", "single-page app: an unknown path gives the homepage")
  p:option("--basic-auth-username", "HTTP basic auth: the user name")
  p:option("--basic-auth-password", "HTTP basic auth: the password")
  p:flag("-f --force", "start it even when an app of that name exists")
  p:flag("-s --silent", "print nothing on success")
  p:flag("--run"):hidden(true)
  local a = p:parse(args)
  if a.run then
    local rc, err = require("pm.serve").run(core.environ())
    if not rc then return cli.die(err) end
    return rc
  end
  local port = a.port_opt or a.port or os.getenv("PM2_SERVE_PORT") or "8080"
  local n = tonumber(port)
  if not n or n % 1 ~= 0 or n < 1 or n > 65535 then
    return cli.die(("serve: the port must be a whole number from 1 to 65535, not %s"):format(port), 2)
  end
  local dir = util.absolute(a.path or os.getenv("PM2_SERVE_PATH") or ".", core.getcwd())
  local st = core.stat(dir)
  if not st or st.type ~= "dir" then return cli.die(("serve: %s is not a folder"):format(dir), 2) end
  local user, pass = a.basic_auth_username, a.basic_auth_password
  if (user == nil) ~= (pass == nil) then
    return cli.die("serve: --basic-auth-username and --basic-auth-password go together", 2)
  end
  local env = { PM2_SERVE_PATH = dir, PM2_SERVE_PORT = ("%d"):format(n), PM2_SERVE_SPA = a.spa and "true" or "false",
    PM2_SERVE_HOST = a.host, PM2_SERVE_HOMEPAGE = a.homepage }
  if user then
    env.PM2_SERVE_BASIC_AUTH = "true"
    env.PM2_SERVE_BASIC_AUTH_USERNAME, env.PM2_SERVE_BASIC_AUTH_PASSWORD = user, pass
  end
  local app = { name = a.name or ("static-page-server-%d"):format(n), script = "serve", cwd = dir, env = env }
  cli.check(cli.api().start(app, { force = a.force or nil, brief = true }))
  if not a.silent then io.stdout:write(("pm serve: %s on port %d\n"):format(dir, n)) end
  cli.show_list(a.silent)
  return 0
end

return V
