-- Issue 22, items 1 and 2: a hook's budget bills the user's code only
-- (pm's API calls run outside it: a hook calling pm.list() over 500 apps
-- runs), it is measured on the hook's own thread, a cut-off names the
-- file:line it was at, and a file may raise its hooks' limits up to a
-- documented ceiling (hook_limits = { cpu_ms = N }).
local H = require "pmtest"
local hooks = require "pm.hooks"

local ok, fails = H.ok, H.fails

local function eco(body) return H.write(H.home .. "/ecosystem.lua", body) end

local function log_has(text) return H.pm_log():find(text, 1, true) ~= nil end

local function status(name) return H.status(name) end

describe("a hook's budget", function()
  before_each(function()
    H.new_home()
    H.script("sleeper.sh", "#!/bin/sh\nexec sleep 600\n")
    H.script("trig.sh", "#!/bin/sh\nsleep 0.3\nexit 3\n")
  end)
  after_each(function() H.cleanup() end)

  it("does not bill pm.list(): a hook that lists 500 apps runs (it was cut off at about 60)", function()
    local apps = {}
    for i = 1, 500 do
      apps[#apps + 1] = ('  { name = "a%d", script = "sleeper.sh", autostart = false },'):format(i)
    end
    local path = eco("return { apps = {\n" .. table.concat(apps, "\n") .. [[

  { name = "trig", script = "trig.sh", on_exit = function(proc, exit)
      local list = pm.list()
      local names = 0
      for _, p in ipairs(list) do if p.pm2_env.status == "stopped" then names = names + 1 end end
      pm.log("listed", #list, "stopped", names, "described", #pm.describe("all"))
      return #list == 501 and "stop" or "restart"
    end },
} }
]])
    ok(H.pm("start", path, "-s"))
    H.wait_for(function() return log_has("hook: listed 501 stopped 500 described 501") end, 8000,
      "the hook's pm.log line:\n" .. H.pm_log():sub(-2000))
    H.wait_for(function() return status("trig") == "stopped" end, 3000, "trig stopped by its hook")
    assert.is_nil(H.pm_log():find("cut off", 1, true))
  end)

  it("names the file:line where a hook was cut off", function()
    local path = eco([[
return { apps = {
  { name = "spin", script = "trig.sh", autorestart = false, on_exit = function(proc, exit)
      local n = 0
      while true do
        n = n + 1
      end
    end },
} }
]])
    ok(H.pm("start", path, "-s"))
    H.wait_for(function() return log_has("cut off: ran over 10 ms at " .. path .. ":") end, 5000,
      "a cut-off with the file:line:\n" .. H.pm_log():sub(-2000))
    local line = tonumber(H.pm_log():match("cut off: ran over 10 ms at [^\n]-%.lua:(%d+)"))
    assert.is_true(line == 4 or line == 5, "line " .. tostring(line))
  end)

  it("is raised by a file's hook_limits, within a ceiling said when it is passed", function()
    -- a hook that works about 40 ms: over pm's 10 ms, under the file's 150
    local body = [[
return { %s apps = {
  { name = "slow", script = "trig.sh", on_exit = function(proc, exit)
      local t0 = os.clock()
      local n = 0
      while os.clock() - t0 < 0.04 do n = n + 1 end
      pm.log("slow hook done")
      return "stop"
    end },
} }
]]
    local path = eco(body:format("hook_limits = { cpu_ms = 150 },"))
    ok(H.pm("start", path, "-s"))
    H.wait_for(function() return status("slow") == "stopped" end, 5000,
      "slow stopped by its hook:\n" .. H.pm_log():sub(-2000))
    assert.is_true(log_has("hook: slow hook done"))
    assert.is_nil(H.pm_log():find("cut off", 1, true))
    ok(H.pm("delete", "all", "-s"))

    -- without it: cut off, the built-in policy restarts it
    path = eco(body:format(""))
    ok(H.pm("start", path, "-s"))
    H.wait_for(function() return log_has("cut off: ran over 10 ms at " .. path) end, 5000, "a cut-off")
    ok(H.pm("delete", "all", "-s"))

    -- over the ceiling: refused, saying the ceiling
    path = eco(body:format(("hook_limits = { cpu_ms = %d },"):format(hooks.CEILING.cpu_ms + 1)))
    fails(H.pm("start", path), path, "hook_limits.cpu_ms", "at most " .. hooks.CEILING.cpu_ms)
    path = eco(body:format("hook_limits = { cpu = 50 },"))
    fails(H.pm("start", path), "unknown limit 'cpu'")
  end)
end)
