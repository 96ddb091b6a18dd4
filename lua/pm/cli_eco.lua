-- The CLI's `pm init` (PM2's `pm2 init` / `pm2 ecosystem`): a starter
-- ecosystem file in the current directory, never over an existing one.
local core = require "pm.core"
local cli = require "pm.cli"

local V = {}

-- The starter ecosystem.lua: one app, the attributes a first file needs,
-- the others commented out; it loads as it is once app.js exists.
V.STARTER_LUA = [[
-- ecosystem.lua: the apps pm runs and how. `pm start ecosystem.lua` starts
-- them; starting it again (or `pm restart ecosystem.lua`, `pm reload`,
-- `pm startOrReload`) applies what changed here to the apps that run.
-- PM2's attribute names work, snake_case or camelCase; the README's
-- "ecosystem.lua reference" lists them all.
return {
  apps = {
    {
      name = "app",                        -- the name pm list, pm logs and pm restart take
      script = "app.js",                   -- relative to this file; .js runs under node
      -- args = "--port 3000",             -- a string (split like a shell) or a list
      -- cwd = "app",                      -- default: the directory pm is run from
      -- instances = "max",                -- one process per CPU
      env = { NODE_ENV = "development" },
      env_production = {                   -- pm start ecosystem.lua --env production
        NODE_ENV = "production",
      },
      -- max_memory_restart = "300M",      -- restart above this memory
      -- watch = true,                     -- restart when a file under cwd changes
      -- cron_restart = "0 4 * * *",       -- restart every day at 04:00
      -- restart_delay = 1000,             -- ms between an exit and the restart
    },
  },

  -- Hooks: Lua the daemon runs, for every app of this file (an app's own
  -- on_exit, on_start, on_stop take precedence).
  -- hooks = {
  --   on_exit = function(proc, exit)
  --     if exit.code == 0 then return "stop" end   -- a clean exit stays down
  --     -- nil: the built-in restart policy decides
  --   end,
  -- },
}
]]

-- PM2's shape (`pm2 init simple`: an apps list of name and script), as
-- JSON, which pm reads without node.
V.STARTER_JSON = [[
{
  "apps": [
    {
      "name": "app",
      "script": "app.js",
      "env": { "NODE_ENV": "development" },
      "env_production": { "NODE_ENV": "production" }
    }
  ]
}
]]

function V.init(args)
  local p = cli.parser("init")
  -- (PM2 takes any word: simple gives its short sample, another its full
  -- one; pm has one starter file)
  p:argument("mode", "PM2's mode (simple, or any word): accepted, the file is the same"):args("?")
  p:flag("--json", "write PM2's ecosystem.json instead of ecosystem.lua")
  local a = p:parse(args)
  local name = a.json and "ecosystem.json" or "ecosystem.lua"
  local path = (core.getcwd() or ".") .. "/" .. name
  if core.stat(path) then
    error({ msg = path .. " exists: pm init does not overwrite it (remove it first)" }, 0)
  end
  local f, err = io.open(path, "w")
  if not f then error({ msg = "cannot write " .. tostring(err) }, 0) end
  local ok, werr = f:write(a.json and V.STARTER_JSON or V.STARTER_LUA)
  local cok, cerr = f:close()
  if not ok or not cok then error({ msg = "cannot write " .. path .. ": " .. tostring(werr or cerr) }, 0) end
  io.stdout:write(("wrote %s: edit it, then pm start %s\n"):format(path, name))
  return 0
end

return V
