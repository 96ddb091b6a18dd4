-- Restart rules and Lua restart hooks against a real daemon: on_exit hooks
-- (stop, delay, error, endless loop, acting on another app), memory, cron
-- and watch restarts, with the reasons seen on the bus.
local H = require "pmtest"
local core = require "pm.core"
local util = require "pm.util"
local pm = require "pm"

local function eco(body)
  return H.script("ecosystem.lua", body, "644")
end

local function start(...)
  local r = H.pm("start", ...)
  assert.equal(0, r.code, "pm start failed: " .. r.err .. r.out)
  return r
end

local function env(name)
  local p = H.proc(name)
  return p and p.pm2_env, p
end

local pm_log = H.pm_log

local function log_has(text)
  return pm_log():find(text, 1, true) ~= nil
end

-- The `process:event` events of the bus, collected as they come.
local function listen(extra)
  local r = H.pm("ping") -- the daemon runs before the bus connects
  assert.equal(0, r.code, r.err)
  local bus = assert(pm.launchBus())
  local seen = { events = {}, custom = {} }
  assert(bus:on("process:event", function(d) seen.events[#seen.events + 1] = d end))
  if extra then
    assert(bus:on(extra, function(d) seen.custom[#seen.custom + 1] = d end))
  end
  return seen
end

-- Waits for an exit event of app `name` with `reason`; returns it.
local function wait_exit(seen, name, reason, ms)
  return H.wait_for(function()
    pm.wait(20)
    for _, e in ipairs(seen.events) do
      if e.event == "exit" and e.process and e.process.name == name and e.reason == reason then
        return e
      end
    end
  end, ms, ("an exit event of %s with reason %s"):format(name, reason))
end

local function restart_time(name)
  local e = env(name)
  return e and e.restart_time or -1
end

-- `pm ping`, bounded by `timeout`: returns the result and its duration in ms.
local function timed_ping(limit_s)
  local t0 = core.mono()
  local r = H.sh(("timeout -s KILL %d %s ping"):format(limit_s or 5, H.shquote(H.bin)))
  return r, core.mono() - t0
end

local function lines(path) return H.count_lines(path) end

local SLEEPER = "#!/bin/sh\nexec sleep 600\n"

describe("restart rules and hooks", function()
  before_each(function() H.new_home() end)
  after_each(function()
    pm.disconnect()
    H.cleanup()
  end)

  describe("on_exit hooks", function()
    it("stop an app on exit code 3 (app hook and file-wide default hook)", function()
      H.script("ex3.sh", "#!/bin/sh\nsleep 0.3\nexit 3\n")
      eco([[
return {
  hooks = { on_exit = function(proc, exit)
    if exit.code == 3 then return { action = "stop" } end
  end },
  apps = {
    { name = "ex3", script = "ex3.sh",
      on_exit = function(proc, exit)
        if exit.code == 3 and proc.name == "ex3" and proc.pm2_env.name == "ex3"
          and exit.reason == "exit" and type(exit.uptime) == "number" then
          return "stop"
        end
      end },
    { name = "ex3b", script = "ex3.sh" },
  },
}]])
      start(H.home .. "/ecosystem.lua")
      for _, name in ipairs({ "ex3", "ex3b" }) do
        local e = H.wait_for(function()
          local x = env(name)
          return x and x.status == "stopped" and x.exit_code == 3 and x
        end, 5000, name .. " stopped with exit code 3")
        assert.equal(0, e.restart_time)
      end
      assert.equal(0, H.proc("ex3").pid)
    end)

    it("delay a restart by the number they return (status `waiting restart` meanwhile)", function()
      H.script("dly.sh", "#!/bin/sh\nsleep 0.2\nexit 1\n")
      eco([[
return { apps = { { name = "dly", script = "dly.sh",
  on_exit = function(proc, exit) return 1500 end } } }]])
      start(H.home .. "/ecosystem.lua")
      local first = H.wait_for(function()
        local e = env("dly")
        return e and e.status == "online" and e.pm_uptime
      end, 3000, "dly online")
      H.wait_for(function() return env("dly").status == "waiting restart" end, 3000,
        "status waiting restart")
      assert.equal(0, restart_time("dly"))
      local e = H.wait_for(function()
        local x = env("dly")
        return x.restart_time >= 1 and x
      end, 4000, "the delayed restart")
      -- ran 200 ms, then waited 1500 ms
      assert.is_true(e.pm_uptime - first >= 1500, ("restarted after %d ms"):format(e.pm_uptime - first))
    end)

    it("that error leave the decision to the built-in policy and are logged with file:line", function()
      H.script("err.sh", "#!/bin/sh\nsleep 0.2\nexit 1\n")
      eco([[
return { apps = { { name = "errh", script = "err.sh",
  on_exit = function(proc, exit)
    local x = nil
    error("hook exploded " .. exit.code)
  end } } }]])
      start(H.home .. "/ecosystem.lua")
      H.wait_for(function() return restart_time("errh") >= 1 end, 4000, "a restart by the built-in policy")
      H.wait_for(function() return log_has(H.home .. "/ecosystem.lua:4: hook exploded 1") end, 2000,
        "the hook's error with file:line in pm.log:\n" .. pm_log())
      assert.truthy(pm_log():find("on_exit of errh", 1, true), pm_log())
      local e = env("errh")
      assert.is_true(e.status == "online" or e.status == "launching", e.status)
    end)

    it("that loop forever are cut off: the app is restarted and ping answers within 1 s", function()
      H.script("fast.sh", "#!/bin/sh\nsleep 0.05\nexit 1\n")
      eco([[
return { apps = { { name = "spin", script = "fast.sh", min_uptime = 0,
  on_exit = function(proc, exit)
    local n = 0
    while true do n = n + 1 end
  end } } }]])
      start(H.home .. "/ecosystem.lua")
      H.wait_for(function() return restart_time("spin") >= 3 end, 5000, "restarts of spin")
      for _ = 1, 3 do
        local r, ms = timed_ping(5)
        assert.equal(0, r.code, "ping failed: " .. r.err)
        assert.truthy(r.out:find("pong", 1, true), r.out)
        assert.is_true(ms < 1000, ("ping took %d ms"):format(ms))
      end
      assert.truthy(pm_log():find("cut off", 1, true), pm_log())
      H.wait_for(function() return restart_time("spin") >= 6 end, 5000, "more restarts of spin")
    end)

    it("act through the daemon's pm API: restart another app, publish, log, list, describe", function()
      H.script("sleeper.sh", SLEEPER)
      H.script("trig.sh", "#!/bin/sh\nsleep 0.5\nexit 0\n")
      eco([[
return { apps = {
  { name = "other", script = "sleeper.sh" },
  { name = "trigger", script = "trig.sh",
    on_exit = function(proc, exit)
      local ok = pm.restart("other")
      pm.publish("hk:custom", { from = proc.name, code = exit.code, restarted = ok })
      pm.log("trigger fired", exit.code, #pm.list(), pm.describe("other")[1].name)
      return "stop"
    end },
} }]])
      local seen = listen("hk:custom")
      start(H.home .. "/ecosystem.lua")
      local pid0 = H.wait_for(function()
        local _, p = env("other")
        return p and p.pm2_env.status == "online" and p.pid
      end, 3000, "other online")
      local p = H.wait_for(function()
        local x, px = env("other")
        if x.restart_time >= 1 and x.status == "online" then return px end
      end, 5000, "other restarted by trigger's hook")
      assert.equal(1, p.pm2_env.restart_time)
      assert.are_not.equal(pid0, p.pid)
      assert.is_true(H.alive(p.pid))
      assert.is_false(H.alive(pid0))
      H.wait_for(function() return env("trigger").status == "stopped" end, 2000, "trigger stopped")
      assert.equal(0, restart_time("trigger"))
      local msg = H.wait_for(function()
        pm.wait(20)
        return seen.custom[1]
      end, 3000, "the hook's hk:custom event")
      -- shaped as an app's message (issue 22): { process, at, data }
      assert.same({ from = "trigger", code = 0, restarted = true }, msg.data)
      assert.equal("trigger", msg.process.name)
      H.wait_for(function() return log_has("hook: trigger fired 0 2 other") end, 2000,
        "pm.log to show the hook's pm.log line:\n" .. pm_log())
    end)

    it("never stall the daemon, even by returning a table with a looping __index", function()
      H.script("ex.sh", "#!/bin/sh\nsleep 0.2\nexit 1\n")
      eco([[
return { apps = { { name = "trap", script = "ex.sh",
  on_exit = function(proc, exit)
    return setmetatable({}, { __index = function() while true do end end })
  end } } }]])
      start(H.home .. "/ecosystem.lua")
      local dpid = H.daemon_pid()
      finally(function()
        -- a stalled daemon would not answer `pm kill`: SIGKILL it by its pid
        local r = timed_ping(2)
        if r.code ~= 0 and dpid and H.alive(dpid) then
          H.crash_daemon(dpid)
          pcall(H.wait_for, function() return not H.alive(dpid) end, 3000)
        end
      end)
      -- wait for the app's first exit (its pid is gone), then ask the daemon
      local pid = H.proc("trap").pid
      H.wait_for(function() return not H.alive(pid) end, 3000, "the app's exit")
      local r, ms = timed_ping(3)
      assert.equal(0, r.code, ("the daemon did not answer ping (%d ms): it stalls in the hook's __index"):format(ms))
      assert.is_true(ms < 1000, ("ping took %d ms"):format(ms))
    end)
  end)

  describe("ecosystem files", function()
    it("whose top level loops forever are refused with a message, and the daemon goes on", function()
      eco("local n = 0\nwhile true do n = n + 1 end\nreturn { apps = {} }\n")
      local r = H.pm("start", H.home .. "/ecosystem.lua")
      assert.are_not.equal(0, r.code)
      assert.truthy((r.err .. r.out):find("cut off", 1, true), r.err .. r.out)
      local pr, ms = timed_ping(5)
      assert.equal(0, pr.code)
      assert.is_true(ms < 1000)
      assert.same({}, H.jlist())
    end)
  end)

  describe("max_memory_restart", function()
    it("restarts an app whose process tree grows past the limit, with reason memory", function()
      H.script("big.sh", "#!/bin/sh\n" ..
        "python3 -c 'import time; s = \"x\" * (60 * 1024 * 1024); time.sleep(600)'\n")
      H.script("small.sh", SLEEPER)
      eco([[
return { apps = {
  { name = "big", script = "big.sh", max_memory_restart = "30M", kill_timeout = 500 },
  { name = "small", script = "small.sh", max_memory_restart = "30M" },
} }]])
      local seen = listen()
      start(H.home .. "/ecosystem.lua")
      H.wait_for(function() return restart_time("big") >= 1 end, 10000, "a memory restart of big")
      local ev = wait_exit(seen, "big", "memory", 3000)
      assert.is_true(ev.process.restart_time ~= nil)
      assert.truthy(pm_log():find("over max_memory_restart", 1, true), pm_log())
      -- the small one, sampled as long, stays
      assert.equal(0, restart_time("small"))
      for _, e in ipairs(seen.events) do
        assert.is_false(e.process.name == "small" and e.event == "exit",
          "small exited: " .. util.encode(e))
      end
      -- it was a graceful restart, not a crash: the crash counter did not move
      assert.equal(0, env("big").unstable_restarts)
    end)
  end)

  describe("max_memory_restart, an app slow to be ready", function()
    it("is checked once online, even when no other app with a limit runs (it was never checked)", function()
      H.script("slowbig.sh", "#!/bin/sh\n" ..
        "python3 -c 'import time; s = \"x\" * (60 * 1024 * 1024); time.sleep(600)'\n")
      eco([[
return { apps = {
  { name = "slowbig", script = "slowbig.sh", max_memory_restart = "30M", kill_timeout = 500,
    wait_ready = true, listen_timeout = 1500 },
} }]])
      start(H.home .. "/ecosystem.lua")
      H.wait_for(function() return restart_time("slowbig") >= 1 end, 10000, "a memory restart of slowbig")
      assert.truthy(pm_log():find("over max_memory_restart", 1, true), pm_log())
    end)
  end)

  describe("cron_restart", function()
    it("restarts a running app on a 6-field schedule, with reason cron, also after a manual restart", function()
      local script = H.script("cr.sh", SLEEPER)
      local seen = listen()
      start(script, "--name", "cr", "--cron-restart", "*/2 * * * * *")
      local e = env("cr")
      assert.equal("*/2 * * * * *", e.cron_restart)
      H.wait_for(function() return restart_time("cr") >= 1 end, 5000, "a cron restart")
      wait_exit(seen, "cr", "cron", 2000)
      local r = H.pm("restart", "cr")
      assert.equal(0, r.code, r.err)
      local n = restart_time("cr")
      H.wait_for(function() return restart_time("cr") > n end, 5000, "a cron restart after a manual one")
      local crons = 0
      H.wait_for(function()
        pm.wait(20)
        crons = 0
        for _, ev in ipairs(seen.events) do
          if ev.event == "exit" and ev.reason == "cron" then crons = crons + 1 end
        end
        return crons >= 2
      end, 3000, "two exits with reason cron")
      assert.equal("online", H.wait_for(function()
        local st = env("cr").status
        return st == "online" and st
      end, 3000, "cr online"))
    end)

    it("is turned off by restart --cron-restart 0 (PM2's)", function()
      local script = H.script("cr.sh", SLEEPER)
      start(script, "--name", "cr0", "--cron-restart", "*/1 * * * * *")
      H.wait_for(function() return restart_time("cr0") >= 1 end, 5000, "a cron restart")
      H.ok(H.pm("restart", "cr0", "--cron-restart", "0"))
      assert.is_nil(env("cr0").cron_restart)
      local n = restart_time("cr0")
      H.holds(function() return restart_time("cr0") == n end, 2500, "no cron restart after it is off")
    end)

    it("refuses an invalid expression at start with a clear message and starts nothing", function()
      local script = H.script("cr.sh", SLEEPER)
      local r = H.pm("start", script, "--name", "badcron", "--cron-restart", "61 * * * *")
      assert.are_not.equal(0, r.code)
      local msg = r.err .. r.out
      assert.truthy(msg:find("cron_restart", 1, true), msg)
      assert.truthy(msg:find("bad minute '61'", 1, true), msg)
      assert.same({}, H.jlist())

      eco([[
return { apps = {
  { name = "good", script = "cr.sh" },
  { name = "bad", script = "cr.sh", cron_restart = "*/2 * * *" },
} }]])
      r = H.pm("start", H.home .. "/ecosystem.lua")
      assert.are_not.equal(0, r.code)
      msg = r.err .. r.out
      assert.truthy(msg:find("5 or 6 fields", 1, true), msg)
      assert.truthy(msg:find("bad", 1, true), msg)
      assert.same({}, H.jlist())
    end)
  end)

  describe("watch", function()
    local W

    local function write(rel, text)
      local f = assert(io.open(W .. "/" .. rel, "w"))
      f:write(text or "x\n")
      f:close()
    end

    -- waits until the app wrote n more lines to its log: time has passed
    -- with its log changing all along
    local function log_grows(n)
      local base = lines(W .. "/out.log")
      H.wait_for(function() return lines(W .. "/out.log") >= base + n end, 5000,
        ("%d more lines in out.log"):format(n))
    end

    local function settle(name)
      return H.wait_for(function()
        local x, p = env(name)
        return x.status == "online" and p.pid > 0 and p
      end, 3000, name .. " online")
    end

    it("restarts on a change under the cwd, not in node_modules, dot-dirs or its own log; debounces; sees new dirs",
      function()
        W = H.home .. "/w"
        for _, d in ipairs({ "", "/node_modules", "/node_modules/pkg", "/.git", "/src" }) do
          assert(core.mkdir(W .. d, 493))
        end
        H.script("w/app.sh", "#!/bin/sh\nwhile true; do echo tick; sleep 0.1; done\n")
        eco([[
return { apps = { { name = "wapp", script = "app.sh", cwd = "w", watch = true, watch_delay = 300,
  out_file = "out.log", error_file = "err.log" } } }]])
        local seen = listen()
        start(H.home .. "/ecosystem.lua")
        local pid0 = settle("wapp").pid
        log_grows(3)

        -- ignored: node_modules, dot-directories (old and new), the app's own log
        write("node_modules/pkg/index.js")
        write("node_modules/new.js")
        write(".git/HEAD")
        assert(core.mkdir(W .. "/.cache", 493))
        write(".cache/blob")
        log_grows(8)
        assert.equal(0, restart_time("wapp"))
        assert.equal(pid0, H.proc("wapp").pid)

        -- a real change
        write("src/a.txt")
        H.wait_for(function() return restart_time("wapp") >= 1 end, 3000, "a watch restart")
        wait_exit(seen, "wapp", "watch", 2000)
        local pid1 = settle("wapp").pid
        assert.are_not.equal(pid0, pid1)
        log_grows(5)
        assert.equal(1, restart_time("wapp"))

        -- a burst within watch_delay: one restart
        for i = 1, 5 do write("burst" .. i .. ".txt") end
        write("src/a.txt", "y\n")
        H.wait_for(function() return restart_time("wapp") >= 2 end, 3000, "the burst's restart")
        settle("wapp")
        log_grows(8)
        assert.equal(2, restart_time("wapp"))

        -- a directory made after start is watched too
        assert(core.mkdir(W .. "/newdir", 493))
        log_grows(8) -- the new directory itself may restart the app; let that pass
        settle("wapp")
        local n = restart_time("wapp")
        write("newdir/f.txt")
        H.wait_for(function() return restart_time("wapp") > n end, 3000,
          "a restart for a file in a directory made after start")
      end)

    it("reads at most MAX_ENTRIES of a crowded folder moved in (once said), and watches on", function()
      W = H.home .. "/crowd"
      assert(core.mkdir(W, 493))
      local script = H.script("crowd/app.sh", SLEEPER)
      start(script, "--name", "crowd", "--watch", "--watch-delay", "100ms")
      settle("crowd")
      -- 25,000 files and, past them, a folder: made outside, moved in at once
      local big = H.home .. "/big"
      assert(core.mkdir(big, 493))
      assert.equal(0, H.sh(("python3 -c %s %s"):format(H.shquote(
        "import os, sys\nd = sys.argv[1]\nfor i in range(25000): open(os.path.join(d, 'f%d' % i), 'w').close()"),
        H.shquote(big))).code)
      assert(core.mkdir(big .. "/zz_sub", 493))
      assert(os.rename(big, W .. "/big"))
      H.wait_for(function() return H.pm_log():find("has over 20000 entries", 1, true) end, 5000,
        "the crowded folder said in pm.log")
      H.ok(H.pm("ping"))
      -- the rest is watched as before
      H.wait_for(function() return restart_time("crowd") >= 1 end, 3000, "the move's restart")
      local n = settle("crowd") and restart_time("crowd")
      write("after.txt")
      H.wait_for(function() return restart_time("crowd") > n end, 3000, "a restart for a change after it")
    end)

    it("watches an app started with --watch whose cwd is under a dot-directory", function()
      W = H.home .. "/.apps/web"
      assert(core.mkdir(H.home .. "/.apps", 493))
      assert(core.mkdir(W, 493))
      local script = H.script(".apps/web/app.sh", SLEEPER)
      -- (PM2's --watch-delay is in seconds; "ms" says milliseconds)
      start(script, "--name", "web", "--watch", "--watch-delay", "200ms")
      assert.equal(200, H.proc("web").pm2_env.watch_delay)
      settle("web")
      write("server.conf")
      H.wait_for(function() return restart_time("web") >= 1 end, 3000,
        "a watch restart (the cwd " .. W .. " is under a dot-directory)")
    end)
  end)
end)
