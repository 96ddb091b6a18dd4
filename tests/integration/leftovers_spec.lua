-- Descendants that leave their app's process group (issue 15, item 10):
-- stopped with it when its main process exits (before the restart), on
-- stop, delete and kill, unless the app opts out (kill_mode); and found by
-- crash recovery whichever earlier daemon started them.
local H = require "pmtest"
local core = require "pm.core"

local ok = H.ok

-- A number no other test's sleep uses.
local seq = 0
local function unique()
  seq = seq + 1
  return tostring(770000 + (core.getpid() % 1000) * 100 + seq)
end

-- Live `sleep <arg>` processes -> list of pids
local function sleeps(arg)
  local want = "sleep\0" .. arg .. "\0"
  local list = {}
  for name in pairs(core.listdir("/proc") or {}) do
    local pid = tonumber(name)
    if pid and H.alive(pid) then
      local f = io.open("/proc/" .. pid .. "/cmdline")
      local c = f and f:read("*a")
      if f then f:close() end
      if c == want then list[#list + 1] = pid end
    end
  end
  return list
end

local args = {} -- every sleep a test made: killed after it, whatever happened
local function escapees(n)
  local t = {}
  for i = 1, n do t[i] = unique(); args[#args + 1] = t[i] end
  return unpack(t)
end

local eco = H.lua_eco

local function gone(arg, what)
  H.wait_for(function() return #sleeps(arg) == 0 end, 3000, what or ("sleep " .. arg .. " gone"))
end

describe("descendants that left the group", function()
  before_each(function() H.new_home() end)
  after_each(function()
    H.cleanup()
    for _, a in ipairs(args) do
      for _, pid in ipairs(sleeps(a)) do core.kill(pid, 9) end
    end
    args = {}
  end)

  it("are killed when the main process exits, before the restart: a crash loop leaves none behind", function()
    local a, b = escapees(2)
    -- one escapee in a session of its own, one whose parent (a subshell)
    -- is gone: the daemon, a subreaper, adopted it while the app ran
    local app = H.script("escaping.sh", ("#!/bin/sh\nsetsid sleep %s &\n( setsid sleep %s & )\nsleep 0.3\nexit 1\n")
      :format(a, b))
    -- (sh starts background commands with SIGINT ignored: they end by the
    -- SIGKILL that follows kill_timeout)
    ok(H.pm("start", eco(("{ { name = 'loop', script = %q, min_uptime = 100, kill_timeout = 300 } }")
      :format(app)), "-s"))
    local most = 0
    local deadline = core.mono() + 2500
    while core.mono() < deadline do
      most = math.max(most, #sleeps(a), #sleeps(b))
      core.sleep(50)
    end
    assert.is_true(H.proc("loop").pm2_env.restart_time >= 2, "it restarted")
    assert.is_true(most <= 1, ("%d escapees of one process at once: each run leaves its own behind"):format(most))
    ok(H.pm("delete", "loop"))
    gone(a, "the last run's setsid sleep after delete")
    gone(b, "the last run's adopted sleep after delete")
  end)

  it("one a fast crash loop's fourth run leaves gets the kill_signal first (the group the loop keeps open read)",
    function()
      local flag, counter = H.home .. "/fast-escapee-term", H.home .. "/runs"
      local a = escapees(1)
      local app = H.script("escaping2.sh", ("#!/bin/sh\nn=$(cat %s 2>/dev/null || echo 0); n=$((n+1)); echo $n > %s\n"
        .. "if [ $n -eq 4 ]; then setsid sh -c 'trap \"echo term >> %s; exit 0\" TERM; "
        .. "while :; do sleep %s; done' & fi\nsleep 0.1\nexit 1\n"):format(counter, counter, flag, a))
      ok(H.pm("start", eco(("{ { name = 'fast', script = %q, min_uptime = 5000, kill_timeout = 3000, "
        .. "kill_signal = 'SIGTERM' } }"):format(app)), "-s"))
      H.wait_for(function() return H.contains(flag, "term") end, 10000, "the escapee's SIGTERM trap")
      ok(H.pm("delete", "fast"))
      gone(a, "the escapee after delete")
    end)

  it("get the app's kill_signal first, SIGKILL only after kill_timeout", function()
    local flag, pidfile = H.home .. "/escapee-got-term", H.home .. "/escapee.pid"
    local app = H.script("graceful.sh", ("#!/bin/sh\nsetsid sh -c 'echo $$ > %s; trap \"echo term > %s; exit 0\" TERM; "
      .. "while :; do sleep 0.05; done' &\nsleep 0.3\nexit 1\n"):format(pidfile, flag))
    ok(H.pm("start", eco(("{ { name = 'once', script = %q, autorestart = false, kill_signal = 'SIGTERM' } }")
      :format(app)), "-s"))
    H.wait_for(function() return H.status("once") == "stopped" end, 3000, "its exit")
    H.wait_for(function() return H.contains(flag, "term") end, 3000, "the escapee's SIGTERM trap")
    local pid = tonumber((require("pm.util").read_file(pidfile) or ""):match("%d+"))
    H.wait_for(function() return not H.alive(pid) end, 1000, "the escapee's end")
  end)

  it("are stopped by stop, delete and kill", function()
    local a1, b1, a2, b2, a3, b3 = escapees(6)
    local function app(name, a, b)
      return ("{ name = %q, script = %q }"):format(name, H.script(name .. ".sh",
        ("#!/bin/sh\nsetsid sleep %s &\n( setsid sleep %s & )\nexec sleep 1000\n"):format(a, b)))
    end
    ok(H.pm("start", eco("{ " .. app("s", a1, b1) .. ", " .. app("d", a2, b2) .. ", "
      .. app("k", a3, b3) .. " }"), "-s"))
    for _, x in ipairs({ a1, b1, a2, b2, a3, b3 }) do
      H.wait_for(function() return #sleeps(x) == 1 end, 3000, "sleep " .. x)
    end
    ok(H.pm("stop", "s"))
    gone(a1, "s's setsid sleep after stop"); gone(b1, "s's adopted sleep after stop")
    ok(H.pm("delete", "d"))
    gone(a2, "d's setsid sleep after delete"); gone(b2, "d's adopted sleep after delete")
    ok(H.pm("kill"))
    gone(a3, "k's setsid sleep after kill"); gone(b3, "k's adopted sleep after kill")
  end)

  it("in the app's cgroup are stopped even when they cleared their environment (no marker to find)", function()
    local a, b = escapees(2)
    ok(H.pm("ping"))
    local base = (require("pm.util").read_file(H.home .. "/cgroup") or ""):match("[^\n]+")
    if not base then
      return pending("no cgroup for apps here (cgroup2 not writable): escapees are found by their marker")
    end
    -- env -i: nothing of the app's environment, nor its marker, is left
    local app = H.script("hiding.sh", ("#!/bin/sh\nsetsid env -i sleep %s &\n( setsid env -i sleep %s & )\n"
      .. "exec sleep 1000\n"):format(a, b))
    ok(H.pm("start", app, "--name", "hiding"))
    for _, x in ipairs({ a, b }) do H.wait_for(function() return #sleeps(x) == 1 end, 3000, "sleep " .. x) end
    local id = H.proc("hiding").pm_id
    local members = require("pm.util").read_file(base .. "/" .. id .. "/cgroup.procs") or ""
    for _, x in ipairs({ a, b }) do
      assert.truthy(members:find("%f[%d]" .. sleeps(x)[1] .. "%f[%D]"), "sleep " .. x .. " in " .. members)
    end
    ok(H.pm("stop", "hiding"))
    gone(a, "a hidden setsid sleep after stop"); gone(b, "a hidden adopted sleep after stop")
    -- delete takes its group away; kill the folder
    ok(H.pm("delete", "hiding"))
    H.wait_for(function() return not H.exists(base .. "/" .. id) end, 3000, "its cgroup removed")
    ok(H.pm("kill"))
    H.wait_for(function() return not H.exists(base) end, 3000, "the daemon's cgroup folder removed")
  end)

  it("of an app's health exec check go with the app: the check runs in its cgroup", function()
    local a = escapees(1)
    ok(H.pm("ping"))
    if not (require("pm.util").read_file(H.home .. "/cgroup") or ""):match("[^\n]+") then
      return pending("no cgroup for apps here (cgroup2 not writable)")
    end
    H.script("hc.sh", "#!/bin/sh\nexec sleep 1000\n")
    eco(([[{ { name = "hc", script = "hc.sh", health = { exec = "(setsid sleep %s &); exit 0", interval = 200 } } }]])
      :format(a))
    ok(H.pm("start", H.home .. "/ecosystem.config.lua", { cwd = H.home }))
    H.wait_for(function() return #sleeps(a) >= 1 end, 5000, "the check's setsid sleep")
    ok(H.pm("delete", "hc"))
    gone(a, "what the check left, after the app's delete")
  end)

  it("live on with kill_mode = 'process' (and a wrong kill_mode is refused)", function()
    local a, b = escapees(2)
    local app = H.script("keeps.sh", ("#!/bin/sh\nsetsid sleep %s &\n( setsid sleep %s & )\nexec sleep 1000\n")
      :format(a, b))
    local r = H.pm("start", eco(("{ { name = 'bad', script = %q, kill_mode = 'all' } }"):format(app)))
    assert.are_not.equal(0, r.code)
    assert.is_truthy((r.out .. r.err):find("kill_mode must be tree, group or process", 1, true), r.out .. r.err)
    ok(H.pm("start", eco(("{ { name = 'keep', script = %q, kill_mode = 'process' } }"):format(app)), "-s"))
    H.wait_for(function() return #sleeps(a) == 1 and #sleeps(b) == 1 end, 3000, "its sleeps")
    ok(H.pm("stop", "keep"))
    H.holds(function() return #sleeps(a) == 1 and #sleeps(b) == 1 end, 300, "the sleeps it keeps")
  end)

  it("of a daemon killed before the last one are found by crash recovery", function()
    local a = escapees(1)
    -- SIGINT (recovery's first signal) is ignored by the app and its escapee
    local app = H.script("stubborn.sh", ("#!/bin/sh\ntrap '' INT\n( setsid sleep %s & )\n"
      .. "while :; do sleep 1; done\n"):format(a))
    ok(H.pm("start", eco(("{ { name = 'stubborn', script = %q } }"):format(app)), "-s"))
    H.wait_for(function() return #sleeps(a) == 1 end, 3000, "the escapee")
    local escapee = sleeps(a)[1]
    local started = core.proc_stat(escapee).start
    local d1 = H.daemon_pid()
    H.crash_daemon(d1)
    H.wait_for(function() return not H.alive(d1) end, 3000, "D1's end")
    -- D2 starts, signals D1's leftovers and is killed during its grace period
    local pidfile = H.home .. "/cli.pid"
    os.execute(("PM_HOME=%s %s ping >/dev/null 2>&1 & echo $! > %s"):format(H.shquote(H.home),
      H.shquote(H.bin), H.shquote(pidfile)))
    local d2 = H.wait_for(function()
      local d = H.daemon_pid()
      return d and d ~= d1 and H.alive(d) and d
    end, 5000, "D2")
    core.sleep(200)
    H.crash_daemon(d2)
    H.wait_for(function() return not H.alive(d2) end, 3000, "D2's end")
    -- (the CLI that started D2 would wait for it 10 s: it goes too)
    local cli = tonumber((require("pm.util").read_file(pidfile) or ""):match("%d+"))
    if cli and H.alive(cli) then core.kill(cli, 9) end
    local function lives()
      local st = core.proc_stat(escapee)
      return st ~= nil and st.state ~= "Z" and st.start == started
    end
    assert.is_true(lives(), "D1's escapee outlived D2's grace period")
    -- D3 finds D1's leftovers, not only D2's (and restores the app, whose
    -- new run has an escapee of its own)
    ok(H.pm("ping"))
    H.wait_for(function() return not lives() end, 3000, "D1's escapee gone after D3's recovery")
  end)
end)
