-- Issue 22, item 3: what policies need in a hook. Timers of the app
-- (pm.after, pm.every: cancelled when it is deleted), pm.state (kept in the
-- journal: survives re-applying the file and a daemon killed with -9),
-- pm.tail (the app's last log lines), the errored action (not a stop:
-- on_stop does not run), pm.signal, pm.send, pm.scale, pm.reset, pm.reload,
-- and pm.publish packets shaped as app messages ({ process, at, data }).
local H = require "pmtest"
local core = require "pm.core"
local pm = require "pm"

local ok, fails = H.ok, H.fails

local function eco(body) return H.write(H.home .. "/ecosystem.lua", body) end
local function log_has(text) return H.pm_log():find(text, 1, true) ~= nil end
local function count(text) return H.count(H.pm_log(), text) end
local function wait_log(text, ms)
  return H.wait_for(function() return log_has(text) end, ms or 5000,
    ("%q in pm.log:\n%s"):format(text, H.pm_log():sub(-3000)))
end

local SLEEPER = "#!/bin/sh\nexec sleep 600\n"

describe("hooks", function()
  before_each(function()
    H.new_home()
    H.script("sleeper.sh", SLEEPER)
  end)
  after_each(function()
    pm.disconnect()
    H.cleanup()
  end)

  it("set timers of their app (pm.after, pm.every, :cancel()), which end when the app is deleted", function()
    local path = eco([[
return { apps = {
  { name = "tick", script = "sleeper.sh", on_start = function(proc)
      pm.after(50, function(p) pm.log("after fired for", p.name, p.pm_id) end)
      local h = pm.after(100, function() pm.log("the cancelled timer fired") end)
      h:cancel()
      pm.every(40, function(p)
        pm.state.ticks = (pm.state.ticks or 0) + 1
        pm.log("tick", pm.state.ticks, p.pm2_env.status)
      end)
    end },
} }
]])
    ok(H.pm("start", path, "-s"))
    wait_log("hook: after fired for tick 0")
    wait_log("hook: tick 3 online")
    ok(H.pm("delete", "tick", "-s"))
    local n = count("hook: tick ")
    H.holds(function() return count("hook: tick ") <= n + 1 end, 600, "no tick after the delete")
    assert.is_false(log_has("the cancelled timer fired"))
  end)

  it("end the timers an on_start set with its process, and every timer of hooks a re-applied file changed", function()
    local function file(tag)
      return eco(([[
return { apps = {
  { name = "tick", script = "sleeper.sh", on_start = function(proc)
      local mine = proc.pid
      pm.every(60, function() pm.log("TICK %s of", mine) end)
      -- (a timer set by a timer belongs to no process)
      pm.after(10, function() pm.every(60, function() pm.log("FREE %s") end) end)
    end },
} }
]]):format(tag, tag))
    end
    local path = file("v1")
    ok(H.pm("start", path, "-s"))
    wait_log("hook: TICK v1 of")
    for _ = 1, 3 do ok(H.pm("restart", "tick", "-s")) end
    local pid = H.proc("tick").pid
    wait_log("hook: TICK v1 of " .. pid)
    -- from now on only the last process's on_start timer ticks
    local mark = #H.pm_log()
    H.wait_for(function() return H.count(H.pm_log():sub(mark), "hook: TICK v1 of " .. pid) >= 4 end, 5000,
      "ticks of the last process")
    local since = H.pm_log():sub(mark)
    for other in since:gmatch("hook: TICK v1 of (%d+)") do assert.equal(tostring(pid), other, since) end
    -- the file again with other hooks: the timers the old code set end
    file("v2")
    ok(H.pm("start", path, "-s"))
    wait_log("hook: FREE v2")
    mark = #H.pm_log()
    H.wait_for(function() return H.count(H.pm_log():sub(mark), "hook: FREE v2") >= 3 end, 5000, "v2 ticks")
    since = H.pm_log():sub(mark)
    assert.is_nil(since:find("hook: FREE v1", 1, true), since)
    assert.is_nil(since:find("hook: TICK v1", 1, true), since)
  end)

  it("give pm's API plain copies of their tables: a metamethod of theirs never runs in pm's code", function()
    local path = eco([[
return { apps = {
  { name = "meta", script = "sleeper.sh", on_start = function()
      local evil = setmetatable({}, { __tostring = function() while true do end end,
        __index = function() while true do end end, __eq = function() while true do end end })
      local r1, e1 = pm.signal(evil, "meta")
      local r2, e2 = pm.restart(evil)
      local r3 = #pm.describe(evil)
      pm.log("AFTER", tostring(r1), tostring(r2), r3, type(e1), type(e2))
    end },
} }
]])
    ok(H.pm("start", path, "-s"))
    wait_log("hook: AFTER nil nil 0 string string")
    ok(H.pm("ping"))
  end)

  it("keep no pm.state and send nothing that shared tables would make huge (2^26 entries as JSON)", function()
    local path = eco([[
return { apps = {
  { name = "dag", script = "sleeper.sh", on_start = function()
      local t = { 1 }
      for _ = 1, 26 do t = { t, t } end
      pm.state.x = t
      local ok, err = pcall(pm.send, "dag", { data = t })
      pm.log("SENT", tostring(ok), tostring(err):match("over %d+ entries") or tostring(err))
    end },
} }
]])
    ok(H.pm("start", path, "-s"))
    -- (the copy for pm.send is the hook's own time: it may be cut off
    -- first, at 10 ms; either way nothing huge is made)
    wait_log("pm.state cannot be kept: a table of over 10000 entries")
    ok(H.pm("ping"))
    assert.is_nil(H.proc("dag").pm2_env.hook_state)
  end)

  it("say in pm.log when an action names no app (a hook seldom checks what it returns)", function()
    local path = eco([[
return { apps = {
  { name = "acts", script = "sleeper.sh", on_start = function()
      local okr, err = pm.restart("cache-that-is-not")
      pm.log("RETURNED", tostring(okr), err)
    end },
} }
]])
    ok(H.pm("start", path, "-s"))
    wait_log("hook: RETURNED nil")
    wait_log('hook pm.restart("cache-that-is-not"): ')
  end)

  it("share a quarter of a core per file: calls past it are refused, said once a second, and the daemon answers",
    function()
    -- 64 timers of 10 ms, each cut off at its 10 ms: without a share, the
    -- daemon's loop did nothing else
    local path = eco([[
return { apps = {
  { name = "hog", script = "sleeper.sh", on_start = function()
      for _ = 1, 64 do pm.every(10, function() while true do end end) end
    end },
  { name = "calm", script = "sleeper.sh" },
} }
]])
    ok(H.pm("start", path, "-s"))
    wait_log("used over 250 ms of CPU in this second")
    wait_log("more calls refused in a second")
    -- (one line a second for the refusals, not one each)
    assert.is_true(count("used over 250 ms of CPU") <= count("more calls refused") + 2)
    ok(H.pm("restart", "calm", "-s"))
    -- pm's API calls count too (they are the daemon's CPU as well)
    local path2 = H.write(H.home .. "/ecosystem.api.lua", [[
return { apps = {
  { name = "apihog", script = "sleeper.sh", on_start = function()
      for _ = 1, 64 do pm.every(10, function() for _ = 1, 1e5 do pm.describe("apihog") end end) end
    end },
} }
]])
    ok(H.pm("start", path2, "-s"))
    wait_log("ecosystem.api.lua used over 250 ms of CPU in this second")
    local e = H.wait_for(function() return H.proc("hog").pm2_env.last_hook_error end, 3000, "last_hook_error")
    assert.truthy(tostring(e.message):find("ran over 10 ms", 1, true) or tostring(e.message):find("250 ms", 1, true),
      tostring(e.message))
  end)

  it("cannot set a timer nor read logs while the file loads, nor set a timer of a bad period", function()
    local path = eco([[
pm.after(10, function() end)
return { apps = { { name = "x", script = "sleeper.sh" } } }
]])
    fails(H.pm("start", path), path .. ":1:", "pm.after works in a hook")
    path = eco([[
local t = pm.tail("all", 5)
return { apps = { { name = "x", script = "sleeper.sh" } } }
]])
    fails(H.pm("start", path), path .. ":1:", "pm.tail cannot be called while an ecosystem file loads")
    path = eco([[
return { apps = { { name = "x", script = "sleeper.sh", on_start = function()
  local ok, err = pcall(pm.every, 0, function() end)
  pm.log("every 0:", ok, err)
end } } }
]])
    ok(H.pm("start", path, "-s"))
    wait_log("every 0: false")
    assert.is_true(log_has("a period of at least 10 ms"))
  end)

  it("keep pm.state across a re-applied file and a daemon killed with -9", function()
    local path = eco([[
return { apps = {
  { name = "st", script = "sleeper.sh", on_start = function(proc)
      pm.state.starts = (pm.state.starts or 0) + 1
      pm.state.names = pm.state.names or {}
      pm.state.names[#pm.state.names + 1] = proc.name
      pm.log("starts", pm.state.starts, #pm.state.names)
    end },
} }
]])
    ok(H.pm("start", path, "-s"))
    wait_log("hook: starts 1 1")
    ok(H.pm("start", path, "-s")) -- re-applied: the app restarts, its state stays
    wait_log("hook: starts 2 2")
    H.wait_for(function() return H.contains(H.home .. "/journal.json", 'starts\\":2') end, 3000,
      "the state in the journal")
    local dpid = assert(H.daemon_pid())
    local pid = H.proc("st").pid
    core.kill(dpid, 9)
    H.wait_for(function() return not H.alive(dpid) end, 3000, "the daemon gone")
    ok(H.pm("ping"))
    -- (its keeper's next daemon took the app over: no start, the same process)
    assert.equal(pid, H.proc("st").pid)
    ok(H.pm("restart", "st", "-s"))
    wait_log("hook: starts 3 3", 8000)
    -- and with the keeper killed too: the journal's recovery starts it again
    H.wait_for(function() return H.contains(H.home .. "/journal.json", 'starts\\":3') end, 3000,
      "the state in the journal")
    H.crash_daemon(H.daemon_pid())
    ok(H.pm("ping"))
    wait_log("hook: starts 4 4", 8000)
    H.wait_for(function() return H.status("st") == "online" end, 5000, "st online")
  end)

  it("classify a crash with pm.tail and make it errored (not a stop: on_stop does not run)", function()
    H.script("crash.sh", "#!/bin/sh\necho connecting\necho 'FATAL: database down' >&2\nsleep 0.2\nexit 3\n")
    local path = eco([[
return { apps = {
  { name = "db", script = "crash.sh",
    on_exit = function(proc, exit)
      local t = pm.tail(proc.name, 5)
      pm.log("tail out:", t.out[#t.out], "err:", t.err[#t.err])
      for _, l in ipairs(t.err) do
        if l:find("database down") then return { action = "errored", reason = "db down: " .. l } end
      end
      return "restart"
    end,
    on_stop = function() pm.log("on_stop ran") end },
} }
]])
    ok(H.pm("start", path, "-s"))
    H.wait_for(function() return H.status("db") == "errored" end, 5000, "db errored")
    local p = H.proc("db")
    assert.equal("db down: FATAL: database down", p.pm2_env.error)
    assert.equal(0, p.pm2_env.restart_time)
    assert.is_true(log_has("hook: tail out: connecting err: FATAL: database down"))
    assert.is_true(log_has("is errored by its on_exit: db down"))
    H.holds(function() return not log_has("on_stop ran") end, 300, "on_stop not run")
    local d = H.pm("describe", "db")
    assert.truthy(d.out:find("db down: FATAL: database down", 1, true), d.out)
    -- a bad reason is the hook's mistake: the built-in policy decides
    assert.same({ nil, "the reason of an errored decision must be a string" },
      { require("pm.hooks").decision({ action = "errored", reason = 3 }) })
  end)

  it("signal, send to, scale, reset and reload apps, and publish packets shaped as app messages", function()
    local q = H.shquote(H.home)
    H.script("trig.sh", "#!/bin/sh\nwhile [ ! -e " .. q .. "/go ]; do sleep 0.05; done\nexit 3\n")
    H.script("sig.sh", "#!/bin/bash\ntrap 'echo got usr1 > " .. q .. "/usr1.txt' USR1\n"
      .. "while true; do sleep 0.05; done\n")
    local path = eco(([[
return { apps = {
  { name = "w", script = "sleeper.sh" },
  { name = "sig", script = "sig.sh" },
  { name = "r", script = "sleeper.sh" },
  { name = "ch", script = %q },
  { name = "trig", script = "trig.sh", on_exit = function(proc, exit)
      assert(pm.scale("w", 2))
      assert(pm.signal("SIGUSR1", "sig"))
      assert(pm.reload("r"))
      assert(pm.reset("w"))
      assert(pm.send("ch", { topic = "t", data = { hello = "from hook" } }))
      assert(pm.publish("hk:evt", { code = exit.code }))
      pm.log("bad:", select(2, pm.signal("SIGNOPE", "sig")), select(2, pm.scale("nope", 2)),
        select(2, pm.publish("process:event", {})), select(2, pm.publish("daemon:error", {})))
      return "stop"
    end },
} }
]]):format(H.fixtures .. "/lb_child.lua"))
    ok(H.pm("start", path, "-s"))
    for _, n in ipairs({ "w", "sig", "r", "ch", "trig" }) do
      H.wait_for(function() return H.status(n) == "online" end, 5000, n .. " online")
    end
    ok(H.pm("restart", "w", "-s"))
    assert.equal(1, H.proc("w").pm2_env.restart_time)
    local r_pid = H.proc("r").pid
    local bus = assert(pm.launchBus())
    local seen = {}
    assert(bus:on("hk:evt", function(d) seen.evt = d end))
    assert(bus:on("process:msg", function(d) seen.msg = d end))
    H.write(H.home .. "/go", "")
    H.wait_for(function() return H.status("trig") == "stopped" end, 5000,
      "trig stopped by its hook:\n" .. H.pm_log():sub(-3000))
    H.wait_for(function() return #H.jlist() >= 6 end, 5000, "w scaled to 2")
    local ws = {}
    for _, p in ipairs(H.jlist()) do if p.name == "w" then ws[#ws + 1] = p end end
    assert.equal(2, #ws)
    assert.equal(0, ws[1].pm2_env.restart_time) -- reset
    H.wait_for(function() return H.exists(H.home .. "/usr1.txt") end, 3000, "sig got SIGUSR1")
    H.wait_for(function()
      local p = H.proc("r")
      return p.pid ~= r_pid and p.pm2_env.status == "online"
    end, 5000, "r reloaded")
    H.pump(function() return seen.evt and seen.msg end, 3000, "the hook's event and ch's echo")
    assert.equal("trig", seen.evt.process.name)
    assert.equal("number", type(seen.evt.at))
    assert.same({ code = 3 }, seen.evt.data)
    assert.same({ hello = "from hook" }, seen.msg.data.echo)
    assert.equal("t", seen.msg.data.packet.topic)
    assert.is_true(log_has("hook: bad: "))
    assert.is_true(log_has("process not found: nope"))
    assert.is_true(log_has("publish: process:event is the daemon's own event"))
    assert.is_true(log_has("publish: daemon:error is the daemon's own event"))
    bus:close()
  end)
end)
