-- Issue 22, item 4: a hook's failure is visible: a hook:error event on the
-- bus, pm2_env.last_hook_error in descriptions and `pm describe`, the
-- traceback trimmed to the user's own file; and a hook whose code changed
-- is a change when the file is applied again (it was "nothing changed").
local H = require "pmtest"
local pm = require "pm"

local ok = H.ok

local function eco(body) return H.write(H.home .. "/ecosystem.lua", body) end

local FAILING = [[
local function check(code)
  if code == 3 then error("code three is not handled") end
end
return { apps = {
  { name = "bad", script = "trig.sh", autorestart = false, on_exit = function(proc, exit)
      check(exit.code)
      return "stop"
    end },
} }
]]

describe("a hook that fails", function()
  before_each(function()
    H.new_home()
    H.script("trig.sh", "#!/bin/sh\nsleep 0.3\nexit 3\n")
    H.script("sleeper.sh", "#!/bin/sh\nexec sleep 600\n")
  end)
  after_each(function()
    pm.disconnect()
    H.cleanup()
  end)

  it("is a hook:error on the bus, last_hook_error in jlist and pm describe, its traceback the file's own", function()
    ok(H.pm("ping"))
    local bus = assert(pm.launchBus())
    local seen
    assert(bus:on("hook:error", function(d) seen = d end))
    local path = eco(FAILING)
    ok(H.pm("start", path, "-s"))
    H.pump(function() return seen end, 5000, "a hook:error event")
    assert.equal("bad", seen.process.name)
    assert.equal("number", type(seen.at))
    assert.equal("on_exit of bad", seen.data.hook)
    local msg = seen.data.message
    assert.truthy(msg:find(path .. ":2: code three is not handled", 1, true), msg)
    -- the traceback: the file's frames (check, then the hook), none of pm's
    assert.truthy(msg:find("stack traceback:\n\t" .. path .. ":2: in ", 1, true), msg)
    assert.truthy(msg:find("\n\t" .. path .. ":6: in ", 1, true), msg)
    assert.is_nil(msg:find("lua/pm/", 1, true), msg)
    assert.is_nil(msg:find("[C]", 1, true), msg)
    local e = H.wait_for(function() return H.proc("bad").pm2_env.last_hook_error end, 3000, "last_hook_error")
    assert.equal("on_exit of bad", e.hook)
    assert.equal(msg, e.message)
    local d = H.pm("describe", "bad")
    assert.truthy(d.out:find("last hook error", 1, true), d.out)
    assert.truthy(d.out:find("on_exit of bad: " .. path .. ":2: code three is not handled", 1, true), d.out)
    bus:close()
  end)

  it("an answer that means nothing is a hook:error and last_hook_error too", function()
    ok(H.pm("ping"))
    local bus = assert(pm.launchBus())
    local seen
    assert(bus:on("hook:error", function(d) seen = d end))
    ok(H.pm("start", eco([[
return { apps = { { name = "odd", script = "trig.sh", autorestart = false,
  on_exit = function() return "bogus" end } } }
]]), "-s"))
    H.pump(function() return seen end, 5000, "a hook:error event")
    assert.equal("on_exit of odd", seen.data.hook)
    -- (what it returned has no line: the hook's own is said)
    assert.truthy(seen.data.message:find(H.home .. "/ecosystem.lua:2: on_exit returned bogus", 1, true),
      seen.data.message)
    local e = H.wait_for(function() return H.proc("odd").pm2_env.last_hook_error end, 3000, "last_hook_error")
    assert.truthy(e.message:find("on_exit returned bogus", 1, true), e.message)
    bus:close()
  end)

  it("takes a delay as attributes do (\"2s\"), and a timer's failure is no policy's", function()
    ok(H.pm("start", eco([[
return { apps = {
  { name = "later", script = "trig.sh", on_exit = function(proc)
      if proc.pm2_env.restart_time == 0 then return { action = "restart", delay = "50ms" } end
      return "stop"
    end },
  { name = "ticks", script = "sleeper.sh", on_start = function()
      pm.every(50, function() error("tick fails") end)
    end },
} }
]]), "-s"))
    H.wait_for(function()
      local p = H.proc("later")
      return p.pm2_env.restart_time == 1 and p.pm2_env.status == "stopped"
    end, 5000, "a restart after 50ms, then a stop")
    assert.is_nil(H.proc("later").pm2_env.last_hook_error)
    H.wait_for(function() return H.pm_log():find("hook pm.every timer of ticks failed: ", 1, true) end, 5000,
      "the timer's failure in pm.log")
    assert.is_nil(H.pm_log():find("timer of ticks failed, the built-in policy", 1, true))
  end)

  it("is a hook:error when its pm.state cannot be kept (over the size limit)", function()
    ok(H.pm("ping"))
    local bus = assert(pm.launchBus())
    local seen
    assert(bus:on("hook:error", function(d) seen = d end))
    local path = eco([[
return { apps = { { name = "big", script = "sleeper.sh", on_start = function()
  pm.state.kept = "yes"
end, on_stop = function()
  pm.state.big = string.rep("x", 70000)
end } } }
]])
    ok(H.pm("start", path, "-s"))
    H.wait_for(function() return H.contains(H.home .. "/journal.json", 'kept\\":\\"yes') end, 3000, "kept")
    ok(H.pm("stop", "big", "-s"))
    H.pump(function() return seen end, 5000, "a hook:error event")
    assert.equal("pm.state", seen.data.hook)
    assert.truthy(seen.data.message:find("over the 65536 a state may keep", 1, true), seen.data.message)
    assert.is_false(H.contains(H.home .. "/journal.json", "xxxxxxxx"))
    bus:close()
  end)
end)

describe("a file applied again", function()
  before_each(function()
    H.new_home()
    H.script("sleeper.sh", "#!/bin/sh\nexec sleep 600\n")
  end)
  after_each(function() H.cleanup() end)

  local TEMPLATE = [[
%sreturn { apps = { { name = "h", script = "sleeper.sh", on_exit = function(proc, exit)
  return %q
end } } }
]]

  it("says a hook whose code changed is a change, and one only moved is not", function()
    local path = eco(TEMPLATE:format("", "stop"))
    ok(H.pm("start", path))
    local r = ok(H.pm("start", path))
    assert.truthy(r.out:find("nothing changed", 1, true), r.out)
    eco(TEMPLATE:format("-- a comment moves the hook a line down\n", "stop"))
    r = ok(H.pm("start", path))
    assert.truthy(r.out:find("nothing changed", 1, true), r.out)
    eco(TEMPLATE:format("", "restart"))
    r = ok(H.pm("start", path))
    assert.truthy(r.out:find("on_exit", 1, true), r.out)
    assert.is_nil(r.out:find("nothing changed", 1, true), r.out)
  end)
end)
