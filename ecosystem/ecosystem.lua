-- The demo `make run` starts: a shell ticker, a Python web server and a Lua
-- worker. Paths are relative to this file. Shared defaults come from
-- common.lua (require), variables from demo.env (env_file).
local common = require "common"

return {
  apps = {
    common.app { name = "ticker", script = "ticker.sh" },
    common.app { name = "web", script = "web.py", env = { PORT = 8000, LOG_LEVEL = "debug" },
      env_production = { PORT = 80 }, max_restarts = 5 },
    common.app { name = "worker", script = "worker.lua", restart_delay = 500 },
  },
}
