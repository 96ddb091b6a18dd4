-- The demo `make run` starts: a shell ticker, a Python web server and a Lua
-- worker. Paths are relative to this file.
return {
  apps = {
    { name = "ticker", script = "ticker.sh" },
    { name = "web", script = "web.py", env = { PORT = 8000 },
      env_production = { PORT = 80 }, max_restarts = 5 },
    { name = "worker", script = "worker.lua", restart_delay = 500 },
  },
}
