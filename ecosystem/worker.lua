-- A worker in Lua, run by pm's own LuaJIT: does a unit of work every 2 s.
local core = require "pm.core"
io.stdout:setvbuf("line")
local jobs = 0
while true do
  jobs = jobs + 1
  print(("worker %s: job %d done"):format(os.getenv("name") or "?", jobs))
  core.sleep(2000)
end
