-- The restart rules against a real daemon: crash restarts, min_uptime and
-- max_restarts (errored), stop, autorestart off, stop_exit_codes,
-- restart_delay, restart of an errored app, reset, kill_timeout and the
-- kill of the whole process group.
local H = require "pmtest"
local core = require "pm.core"
local util = require "pm.util"

local start, holds = H.start, H.holds

-- Polls until the app's description satisfies pred; returns it.
local function wait_proc(name, pred, ms, what)
  return H.wait_for(function()
    local p = H.proc(name)
    if p and pred(p, p.pm2_env) then return p end
  end, ms or 5000, what or name)
end

-- Pids that fixtures reported: killed after each test, whatever happened
-- (pm does not know them by a pid file).
local children = {}

local function read_pid(path)
  local pid = H.wait_for(function()
    local s = util.read_file(path)
    return s and tonumber(s:match("%d+"))
  end, 3000, "a pid in " .. path)
  children[#children + 1] = pid
  return pid
end

-- A long-lived app (SIGINT ends it).
local SLEEPER = "exec sleep 1000\n"

describe("restarts", function()
  before_each(function() H.new_home() end)
  after_each(function()
    H.cleanup()
    for _, pid in ipairs(children) do
      if H.alive(pid) then core.kill(pid, 9) end
    end
    children = {}
  end)

  it("restarts an app that crashes after min_uptime, with a new pid each time", function()
    local s = H.script("rb_crash_late.sh", "sleep 0.3\nexit 1\n")
    -- max_restarts 2: exits after min_uptime are stable and never count
    local p0 = start(s, "late", "--min-uptime", "100", "--max-restarts", "2")
    assert.equal("online", p0.pm2_env.status)
    assert.is_true(p0.pid > 0)
    local pids = { [p0.pid] = true }
    local p = wait_proc("late", function(p, e)
      if p.pid > 0 then pids[p.pid] = true end
      return e.restart_time >= 4 and e.status == "online"
    end, 8000, "4 restarts of 'late'")
    local n = 0
    for _ in pairs(pids) do n = n + 1 end
    assert.is_true(n >= 3, "distinct pids seen: " .. n)
    assert.are_not.equal(p0.pid, p.pid)
    assert.is_false(H.alive(p0.pid))
    assert.is_true(H.alive(p.pid))
    assert.equal(0, p.pm2_env.unstable_restarts)
    assert.equal(1, p.pm2_env.exit_code)
  end)

  it("ends errored after 16 fast crashes in a row, restart_time 15 (PM2's defaults)", function()
    local s = H.script("rb_crash_fast.sh", "exit 1\n")
    start(s, "fast")
    local p = wait_proc("fast", function(_, e) return e.status == "errored" end, 10000, "errored")
    assert.equal(15, p.pm2_env.restart_time)
    assert.equal(16, p.pm2_env.unstable_restarts)
    assert.equal(0, p.pid)
    assert.equal(1, p.pm2_env.exit_code)
    holds(function()
      local q = H.proc("fast")
      return q.pm2_env.status == "errored" and q.pm2_env.restart_time == 15
    end, 300, "errored stays errored")
  end)

  it("ends errored sooner with --max-restarts 3", function()
    local s = H.script("rb_crash_fast3.sh", "exit 1\n")
    start(s, "fast3", "--max-restarts", "3")
    local p = wait_proc("fast3", function(_, e) return e.status == "errored" end, 5000, "errored")
    assert.equal(2, p.pm2_env.restart_time)
    assert.equal(3, p.pm2_env.unstable_restarts)
  end)

  -- An app that exits at once, started with flags, restarted n times and
  -- never errored meanwhile -> its description
  local function retrying(name, n, ...)
    start(H.script("rb_" .. name .. ".sh", "exit 1\n"), name, ...)
    return wait_proc(name, function(_, e)
      assert.are_not.equal("errored", e.status)
      return e.restart_time >= n
    end, 10000, n .. " restarts of " .. name)
  end

  it("keeps retrying a back-off app whose fast exits outlast min_uptime x max_restarts (PM2's window)", function()
    -- the window is 300 ms: the third exit comes after 200 + 300 ms of delays
    local p = retrying("backoff", 4, "--exp-backoff-restart-delay", "200", "--max-restarts", "3",
      "--min-uptime", "100")
    assert.equal(2, p.pm2_env.unstable_restarts)
    assert.is_true(p.pm2_env.prev_restart_delay >= 450, p.pm2_env.prev_restart_delay)
  end)

  it("keeps retrying an app with --restart-delay whose fast exits outlast the window from its start (PM2's)",
    function()
    -- the window is 200 ms from the start: the second exit comes 300 ms later
    local p = retrying("slowretry", 3, "--restart-delay", "300", "--max-restarts", "2", "--min-uptime", "100")
    assert.equal(1, p.pm2_env.unstable_restarts)
    -- a command's restart opens the window again: 2 fast exits in it now error it
    local r = H.pm("restart", "slowretry", "--max-restarts", "2", "--min-uptime", "5000")
    assert.equal(0, r.code, r.err)
    wait_proc("slowretry", function(_, e) return e.status == "errored" end, 5000, "errored within the window")
  end)

  it("leaves a stopped app stopped", function()
    local s = H.script("rb_sleeper.sh", SLEEPER)
    local p0 = start(s, "sleeper")
    assert.equal("online", p0.pm2_env.status)
    assert.is_true(H.alive(p0.pid))
    local r = H.pm("stop", "sleeper")
    assert.equal(0, r.code, r.err)
    local p = H.proc("sleeper")
    assert.equal("stopped", p.pm2_env.status)
    assert.equal(0, p.pid)
    H.wait_for(function() return not H.alive(p0.pid) end, 2000, "the stopped process to be gone")
    holds(function()
      local q = H.proc("sleeper")
      return q.pm2_env.status == "stopped" and q.pid == 0 and q.pm2_env.restart_time == 0
    end, 1200, "stopped stays stopped")
  end)

  it("leaves an app stopped while it waited for its restart", function()
    local s = H.script("rb_crash_wait.sh", "exit 1\n")
    start(s, "waiter", "--restart-delay", "400")
    wait_proc("waiter", function(_, e) return e.status == "waiting restart" end, 3000, "waiting restart")
    local r = H.pm("stop", "waiter")
    assert.equal(0, r.code, r.err)
    local p = H.proc("waiter")
    assert.equal("stopped", p.pm2_env.status)
    local n = p.pm2_env.restart_time
    holds(function()
      local q = H.proc("waiter")
      return q.pm2_env.status == "stopped" and q.pm2_env.restart_time == n and q.pid == 0
    end, 900, "no restart after stop")
  end)

  it("--no-autorestart leaves the app stopped after it exits", function()
    local s = H.script("rb_exit1.sh", "exit 1\n")
    start(s, "once", "--no-autorestart")
    local p = wait_proc("once", function(_, e) return e.status == "stopped" end, 3000, "stopped")
    assert.equal(0, p.pm2_env.restart_time)
    assert.equal(1, p.pm2_env.exit_code)
    assert.equal(0, p.pid)
    holds(function()
      local q = H.proc("once")
      return q.pm2_env.status == "stopped" and q.pm2_env.restart_time == 0
    end, 500, "stays stopped")
  end)

  it("--stop-exit-codes 0,42: those codes stop the app, others restart it", function()
    -- first run exits 3 (restarted), the second exits 42 (stays stopped)
    local s = H.script("rb_codes.sh", [[
n=$(cat "$0.count" 2>/dev/null || echo 0)
n=$((n + 1))
echo $n > "$0.count"
[ "$n" -eq 1 ] && exit 3
exit 42
]])
    start(s, "codes", "--stop-exit-codes", "0,42")
    local p = wait_proc("codes", function(_, e) return e.status == "stopped" end, 3000, "stopped")
    assert.equal(42, p.pm2_env.exit_code)
    assert.equal(1, p.pm2_env.restart_time)
    local z = H.script("rb_exit0.sh", "exit 0\n")
    start(z, "zero", "--stop-exit-codes", "0,42")
    local q = wait_proc("zero", function(_, e) return e.status == "stopped" end, 3000, "stopped")
    assert.equal(0, q.pm2_env.exit_code)
    assert.equal(0, q.pm2_env.restart_time)
    holds(function()
      return H.status("codes") == "stopped" and H.status("zero") == "stopped"
        and H.proc("codes").pm2_env.restart_time == 1 and H.proc("zero").pm2_env.restart_time == 0
    end, 400, "both stay stopped")
  end)

  it("--restart-delay 300 shows 'waiting restart' before the restart", function()
    local s = H.script("rb_crash_delay.sh", "exit 1\n")
    start(s, "delayed", "--restart-delay", "300")
    local w = wait_proc("delayed", function(_, e) return e.status == "waiting restart" end, 3000,
      "waiting restart")
    assert.equal(0, w.pid)
    local t0, n0 = w.pm2_env.pm_uptime, w.pm2_env.restart_time
    assert.is_true(n0 <= 2, "restarts before the first 'waiting restart' seen: " .. n0)
    local p = wait_proc("delayed", function(_, e) return e.restart_time > n0 end, 3000, "the restart")
    local e = p.pm2_env
    -- each restart came at least 300 ms after the previous start
    local n = e.restart_time - n0
    assert.is_true(e.pm_uptime - t0 >= 290 * n,
      ("%d restarts came %d ms after the start before them"):format(n, e.pm_uptime - t0))
    assert.is_true(e.pm_uptime - t0 < 1000 * n)
  end)

  it("pm restart brings an errored app back online", function()
    local s = H.script("rb_flaky.sh", '[ -e "$0.crash" ] && exit 1\n' .. SLEEPER)
    local flag = s .. ".crash"
    io.open(flag, "w"):close()
    start(s, "flaky", "--max-restarts", "2")
    wait_proc("flaky", function(_, e) return e.status == "errored" end, 5000, "errored")
    os.remove(flag)
    local r = H.pm("restart", "flaky")
    assert.equal(0, r.code, r.err)
    local p = wait_proc("flaky", function(_, e) return e.status == "online" end, 3000, "online")
    assert.is_true(p.pid > 0)
    assert.is_true(H.alive(p.pid))
    assert.equal(0, p.pm2_env.unstable_restarts)
    -- (the crash restart counted; the manual one of an errored app is a
    -- start, as in PM2)
    assert.equal(1, p.pm2_env.restart_time)
    holds(function()
      local q = H.proc("flaky")
      return q.pm2_env.status == "online" and q.pid == p.pid and H.alive(p.pid)
    end, 300, "stays online")
  end)

  it("pm reset zeroes restart_time", function()
    local s = H.script("rb_crash_reset.sh", "exit 1\n")
    start(s, "resettable", "--max-restarts", "4")
    local p = wait_proc("resettable", function(_, e) return e.status == "errored" end, 5000, "errored")
    assert.equal(3, p.pm2_env.restart_time)
    local r = H.pm("reset", "resettable")
    assert.equal(0, r.code, r.err)
    p = H.proc("resettable")
    assert.equal(0, p.pm2_env.restart_time)
    assert.equal(0, p.pm2_env.unstable_restarts)
    -- and on a running app that restarted
    local l = H.script("rb_sleeper2.sh", SLEEPER)
    start(l, "runner")
    assert.equal(0, H.pm("restart", "runner").code)
    assert.equal(1, H.proc("runner").pm2_env.restart_time)
    assert.equal(0, H.pm("reset", "runner").code)
    local q = H.proc("runner")
    assert.equal(0, q.pm2_env.restart_time)
    assert.equal("online", q.pm2_env.status)
    -- an unknown target fails
    local bad = H.pm("reset", "no-such-app")
    assert.are_not.equal(0, bad.code)
    assert.is_truthy(bad.err:match("not found"))
  end)

  it("finishes the stop of an app that ignores SIGINT with SIGKILL after --kill-timeout", function()
    local s = H.script("rb_stubborn.sh", "trap '' INT\necho ready\nwhile :; do sleep 0.05; done\n")
    local p0 = start(s, "stubborn", "--kill-timeout", "300")
    H.wait_for(function()
      return (util.read_file(H.home .. "/logs/stubborn-out.log") or ""):match("ready")
    end, 3000, "the app's trap to be set")
    local t = core.mono()
    local r = H.pm("stop", "stubborn")
    local took = core.mono() - t
    assert.equal(0, r.code, r.err)
    assert.is_true(took >= 280, "stop took " .. took .. " ms, the kill timeout is 300")
    assert.is_true(took < 1500, "stop took " .. took .. " ms")
    local p = H.proc("stubborn")
    assert.equal("stopped", p.pm2_env.status)
    assert.equal("SIGKILL", p.pm2_env.exit_signal)
    H.wait_for(function() return not H.alive(p0.pid) end, 1000, "the app to be gone")
  end)

  it("stop kills the whole process group (a shell's background child)", function()
    local s = H.script("rb_group.sh", 'sleep 300 &\necho $! > "$0.child"\nwait\n')
    local p0 = start(s, "group")
    local child = read_pid(s .. ".child")
    assert.is_true(H.alive(child))
    assert.equal(p0.pid, core.proc_stat(child).pgrp)
    local r = H.pm("stop", "group")
    assert.equal(0, r.code, r.err)
    assert.equal("stopped", H.status("group"))
    H.wait_for(function() return not H.alive(child) end, 2000, "the background child to be gone")
    assert.is_false(H.alive(p0.pid))
  end)

  it("restart kills the old process group too: no duplicate children", function()
    local s = H.script("rb_group2.sh", 'sleep 300 &\necho $! > "$0.child"\nwait\n')
    start(s, "group2")
    local child = read_pid(s .. ".child")
    os.remove(s .. ".child")
    assert.equal(0, H.pm("restart", "group2").code)
    local child2 = read_pid(s .. ".child")
    assert.are_not.equal(child, child2)
    H.wait_for(function() return not H.alive(child) end, 2000, "the old child to be gone")
    assert.is_true(H.alive(child2))
  end)

  it("stop also kills a descendant that left the group (setsid)", function()
    local s = H.script("rb_escape.sh", 'setsid sleep 300 &\necho $! > "$0.child"\nwait\n')
    local p0 = start(s, "escape")
    local child = read_pid(s .. ".child")
    H.wait_for(function()
      local st = core.proc_stat(child)
      return st and st.pgrp == child -- setsid has run
    end, 2000, "the child to leave the group")
    local r = H.pm("stop", "escape")
    assert.equal(0, r.code, r.err)
    local ok = pcall(H.wait_for, function() return not H.alive(child) end, 2000)
    assert.is_true(ok, "the setsid child of the stopped app still runs")
    assert.is_false(H.alive(p0.pid))
  end)
end)
