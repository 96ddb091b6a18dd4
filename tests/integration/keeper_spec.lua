-- The keeper (issue 17, DESIGN §11): the daemon dies or is replaced and
-- no app notices. Every test here kills the daemon with SIGKILL (or
-- updates it) and checks what the apps saw: their pids and counters, the
-- lines they wrote, the connections they were sent, the exits they made
-- meanwhile, the messages sent to them. The keeper's own death (the
-- journal's recovery) is covered by persist_spec, durable_spec and
-- reliability_spec (H.crash_daemon).
local H = require "pmtest"
local util = require "pm.util"
local core = require "pm.core"

local ok, online, q = H.ok, H.online, H.shquote
local PY = core.access("/usr/bin/python3", "x") and "/usr/bin/python3" or "python3"
local F = H.fixtures

-- SIGKILL of the daemon; the next one (the keeper starts it) answers
-- -> its pid
local function kill9()
  local old = H.daemon_pid()
  core.kill(old, 9)
  H.wait_for(function() return not H.alive(old) end, 5000, "the daemon's end")
  local r = ok(H.pm("ping"))
  local pong = util.decode(r.out)
  assert.are_not.equal(old, pong.pid)
  assert.equal(H.keeper_pid(), pong.keeper, "the same keeper")
  return pong
end

-- "n <i>" lines of a log: checks they come in order, each once, no line
-- split or glued -> how many, how many are missing (and their bytes)
local function numbered(path)
  local last, count, lost, lost_bytes = nil, 0, 0, 0
  local lines = {}
  for line in io.lines(path) do lines[#lines + 1] = line end
  -- (the app stopped between the two writes of its last line)
  if lines[#lines] and lines[#lines]:match("^n ?$") then lines[#lines] = nil end
  for _, line in ipairs(lines) do
    local n = tonumber(line:match("^n (%d+)$"))
    assert.is_not_nil(n, "a line split or glued: " .. ("%q"):format(line))
    if last then
      assert(n > last, ("after %d comes %d: a line written twice or out of order"):format(last, n))
      lost = lost + (n - last - 1)
      lost_bytes = lost_bytes + (n - last - 1) * #line
    end
    last = n
    count = count + 1
  end
  return count, lost, lost_bytes
end

-- Apps (declarations without script) whose process exits 3 on SIGUSR1,
-- started and online -> name -> description
local function exit3_apps(apps)
  local app = H.script("ex.sh", "#!/bin/sh\ntrap 'exit 3' USR1\nwhile :; do sleep 0.05; done\n")
  for _, a in ipairs(apps) do a.script = app end
  ok(H.pm("start", H.write(H.home .. "/eco.json", util.encode({ apps = apps })), "-s"))
  local out = {}
  for _, a in ipairs(apps) do out[a.name] = online(H.proc(a.name)) end
  return out
end

describe("the keeper", function()
  before_each(function() H.new_home() end)
  after_each(function() H.cleanup() end)

  it("is the daemon's parent, in keeper.pid and ping; the daemon does not pass its fds to apps", function()
    local app = H.script("env.sh", "#!/bin/sh\nenv > \"$0.env\"\nexec sleep 600\n")
    online(H.start(app, "env", "-s"))
    local pong = util.decode(ok(H.pm("ping")).out)
    local k = H.keeper_pid()
    assert.is_number(k)
    assert.equal(k, pong.keeper)
    assert.equal(k, core.proc_stat(pong.pid).ppid)
    local env = util.read_file(app .. ".env")
    assert.is_nil(env:find("PM_KEEPER", 1, true), "PM_KEEPER_* reached the app")
    -- the app has no fd of the keeper's or of the daemon's: stdin, stdout, stderr
    local p = H.proc("env")
    local fds = {}
    for name in pairs(core.listdir("/proc/" .. p.pid .. "/fd") or {}) do fds[#fds + 1] = tonumber(name) end
    table.sort(fds)
    assert.same({ 0, 1, 2 }, fds)
  end)

  it("SIGKILL of the daemon: same pid, same counters, lines in order, none twice or split", function()
    -- one write(2) a line, as fast as it can (console.log's shape)
    local app = H.script("lines.py", "import os\ni = 0\nwhile True:\n    i += 1\n"
      .. "    os.write(1, b'n %d\\n' % i)\n")
    online(H.start(app, "lines", "--interpreter", PY, "-s"))
    ok(H.pm("restart", "lines", "-s"))
    ok(H.pm("flush", "lines")) -- (its numbers start again at 1)
    local before = online(H.proc("lines"))
    assert.equal(1, before.pm2_env.restart_time)
    local log = H.out_log("lines")
    H.wait_for(function() return (core.stat(log) or {}).size or 0 > 100000 end, 5000, "lines in the log")
    for _ = 1, 3 do
      kill9()
      local p = H.proc("lines")
      assert.equal(before.pid, p.pid, "the same process: " .. H.pm_log())
      assert.equal(1, p.pm2_env.restart_time, "the same restart count")
      assert.equal("online", p.pm2_env.status)
      -- its description shows the environment it runs with, as before
      assert.equal(before.pm2_env.env.PM_APP_UID, p.pm2_env.env.PM_APP_UID)
      assert.equal(H.environ(p.pid).PM_APP_UID, p.pm2_env.env.PM_APP_UID)
      assert.equal(before.pm2_env.PM_HOME, p.pm2_env.PM_HOME, "flattened as before")
    end
    -- the lines go on after the last take-over
    local size = core.stat(log).size
    H.wait_for(function() return core.stat(log).size > size + 100000 end, 5000, "lines after the take-over")
    ok(H.pm("stop", "lines", "-s"))
    -- what a killed daemon had read and not yet written was in the log
    -- WAL the keeper holds: written by the next daemon, once
    local count, lost, bytes = numbered(log)
    assert.is_true(count > 1000)
    assert.equal(0, lost, ("%d lines (%d bytes) lost in 3 SIGKILLs"):format(lost, bytes))
    assert.is_true(H.contains(H.home .. "/pm.log", "took over from the last daemon"))
  end)

  it("SIGKILL of the daemon: time-prefixed lines and lines over 64 KB (written in pieces), none lost, twice or glued",
    function()
    -- every 50th line is 150,000 bytes: longer than a line pm holds, so
    -- written in pieces, each with its own time prefix
    local app = H.script("long.py", "import os\ni = 0\nwhile True:\n    i += 1\n"
      .. "    os.write(1, b'n %d %s\\n' % (i, b'x' * 150000) if i % 50 == 0 else b'n %d\\n' % i)\n")
    online(H.start(app, "long", "--interpreter", PY, "--log-date-format", "YYYY-MM-DD HH:mm:ss.SSS", "-s"))
    local log = H.out_log("long")
    H.wait_for(function() return ((core.stat(log) or {}).size or 0) > 2000000 end, 5000, "lines in the log")
    for _ = 1, 3 do
      kill9()
      local size = core.stat(log).size
      H.wait_for(function() return core.stat(log).size > size + 2000000 end, 5000, "lines after the take-over")
    end
    ok(H.pm("stop", "long", "-s"))
    -- pieces put back together: "<time>: n <i>[ xxx...]", then "<time>: xxx..."
    local recs, cur = {}, nil
    for line in io.lines(log) do
      local text = line:match("^%d%d%d%d%-%d%d%-%d%d %d%d:%d%d:%d%d%.%d%d%d: (.*)$")
      assert.is_not_nil(text, "a line without its time prefix: " .. ("%q"):format(line:sub(1, 80)))
      if text:match("^n %d") then
        cur = { text }
        recs[#recs + 1] = cur
      else
        assert.is_not_nil(cur, "a piece before any line")
        assert.is_nil(text:find("[^x]"), "not the rest of a long line: " .. ("%q"):format(text:sub(1, 80)))
        cur[#cur + 1] = text
      end
    end
    recs[#recs] = nil -- (the app stopped in the middle of its last line)
    assert.is_true(#recs > 1000)
    local last
    for _, r in ipairs(recs) do
      local whole = table.concat(r)
      local n, rest = whole:match("^n (%d+)(.*)$")
      n = tonumber(n)
      assert.is_not_nil(n, "not a line of the app's: " .. ("%q"):format(whole:sub(1, 80)))
      if last then assert.equal(last + 1, n, "after line " .. last) end
      assert.equal(n % 50 == 0 and 150001 or 0, #rest, "line " .. n .. " split or glued")
      last = n
    end
  end)

  it("four instances on a held socket under a client loop: two SIGKILLs in 5 s, no failed request", function()
    local port = H.free_port()
    local eco = H.write(H.home .. "/eco.json", util.encode({ apps = { { name = "web", script = F .. "/rl_server.py",
      interpreter = PY, instances = 4, listen = { "tcp://127.0.0.1:" .. port } } } }))
    ok(H.pm("start", eco, "-s"))
    for _, p in ipairs(H.jlist()) do online(p) end
    local out, stop = H.home .. "/load.json", H.home .. "/load.stop"
    os.execute(("setsid %s %s load 127.0.0.1 %d 30 1000000 4 %s %s >/dev/null 2>&1 </dev/null &")
      :format(PY, q(F .. "/rl_client.py"), port, q(out), q(stop)))
    H.wait_for(function() return core.stat(out .. ".up") end, 10000, "the first answer")
    local pids = {}
    for _, p in ipairs(H.jlist()) do pids[p.pm_id] = p.pid end
    kill9()
    core.sleep(300)
    kill9()
    core.sleep(300)
    H.write(stop, "")
    H.wait_for(function() return core.stat(out) end, 15000, "the load's tally")
    local tally = assert(util.decode(util.read_file(out)))
    assert.is_true(tally.ok > 0)
    assert.equal(0, tally.failed, "failed requests: " .. util.encode(tally.errors or {}))
    for _, p in ipairs(H.jlist()) do assert.equal(pids[p.pm_id], p.pid) end
  end)

  it("an exit while no daemon runs: its real code after the take-over, and the policy", function()
    -- stop_exit_codes {3} for one, a restart for the other
    local started = exit3_apps({ { name = "again" }, { name = "done3", stop_exit_codes = { 3 } } })
    local a, d = started.again, started.done3
    -- the keeper is stopped: it starts no daemon and reaps nothing yet
    local k = H.keeper_pid()
    core.kill(k, core.signals.SIGSTOP)
    local dpid = H.daemon_pid()
    core.kill(dpid, 9)
    H.wait_for(function() return not H.alive(dpid) end, 5000, "the daemon's end")
    core.kill(a.pid, core.signals.SIGUSR1)
    core.kill(d.pid, core.signals.SIGUSR1)
    H.wait_for(function()
      local x, y = core.proc_stat(a.pid), core.proc_stat(d.pid)
      return x and x.state == "Z" and y and y.state == "Z"
    end, 5000, "both ended (zombies of the stopped keeper)")
    core.kill(k, core.signals.SIGCONT)
    H.wait_for(function() return H.status("again") == "online" and H.proc("again").pid ~= a.pid end, 10000,
      "again restarted")
    local p = H.proc("again")
    assert.equal(1, p.pm2_env.restart_time)
    assert.equal(3, p.pm2_env.exit_code)
    H.wait_for(function() return H.status("done3") == "stopped" end, 5000, "done3 stopped by stop_exit_codes")
    assert.equal(3, H.proc("done3").pm2_env.exit_code)
    assert.equal(0, H.proc("done3").pm2_env.restart_time)
  end)

  it("an exit while the second daemon dies: its real code still (the keeper reaps it before the daemon)", function()
    -- (review of issue 17) after one take-over the apps are the keeper's
    -- children older than the daemon: reaped first, their exits must not
    -- go to the dead daemon's socket and be forgotten
    local d = exit3_apps({ { name = "done3", stop_exit_codes = { 3 } } }).done3
    kill9()
    assert.equal(d.pid, H.proc("done3").pid)
    local k = H.keeper_pid()
    core.kill(k, core.signals.SIGSTOP)
    local dpid = H.daemon_pid()
    core.kill(dpid, 9)
    H.wait_for(function() return not H.alive(dpid) end, 5000, "the daemon's end")
    core.kill(d.pid, core.signals.SIGUSR1)
    H.wait_for(function() local y = core.proc_stat(d.pid); return y and y.state == "Z" end, 5000, "its end")
    core.kill(k, core.signals.SIGCONT)
    H.wait_for(function() return H.status("done3") == "stopped" end, 5000,
      "done3 stopped by stop_exit_codes: " .. tostring(H.status("done3")))
    assert.equal(3, H.proc("done3").pm2_env.exit_code)
    assert.equal(0, H.proc("done3").pm2_env.restart_time)
  end)

  it("an exit the keeper told a daemon that died before reading it: its real code still", function()
    -- (review of issue 17) the daemon is stopped (busy, swapping) when the
    -- app exits: the keeper reaps it and tells the daemon, which is killed
    -- before it reads that; the next daemon must hear it from the keeper
    local d = exit3_apps({ { name = "done3", stop_exit_codes = { 3 } } }).done3
    kill9() -- (the app is the keeper's child now: it reaps it)
    local dpid = H.daemon_pid()
    core.kill(dpid, core.signals.SIGSTOP)
    core.kill(d.pid, core.signals.SIGUSR1)
    H.wait_for(function() return not core.proc_stat(d.pid) end, 5000, "its end, reaped by the keeper")
    core.kill(dpid, 9)
    -- (a list sent before its threads are all gone reaches its socket)
    H.wait_for(function() return not H.alive(dpid) end, 5000, "the daemon's end")
    H.wait_for(function() return H.status("done3") == "stopped" end, 5000,
      "done3 stopped by stop_exit_codes: " .. tostring(H.status("done3")))
    assert.equal(3, H.proc("done3").pm2_env.exit_code)
    assert.equal(0, H.proc("done3").pm2_env.restart_time)
  end)

  it("a daemon whose keeper died before it looked adopts nothing, and stops nothing of its new parent's", function()
    -- (review of issue 17) the keeper hands over and dies at once: the
    -- daemon's parent is then whoever reaps orphans (init, a subreaper),
    -- whose children with a PM_APP_UID marker are not this home's apps
    H.write(H.home .. "/journal.json", "[]")
    local out = H.home .. "/gone.txt"
    local pid = tonumber(H.sh(("setsid %s %s %s %s %s >/dev/null 2>&1 </dev/null & echo $!")
      :format(PY, q(F .. "/keeper_gone.py"), q(H.bin), q(H.home), q(out))).out)
    finally(function() core.kill(pid, 9) end)
    H.wait_for(function() return util.read_file(out) end, 5000, "the stand-in's start")
    local daemon, marked, self = util.read_file(out):match("(%d+) (%d+) (%d+)")
    daemon, marked, self = tonumber(daemon), tonumber(marked), tonumber(self)
    -- (setsid may fork: the stand-in's own pid is the one it wrote)
    finally(function() core.kill(daemon, 9); core.kill(marked, 9); core.kill(self, 9) end)
    H.wait_for(function() return H.contains(H.home .. "/pm.log", "ready") end, 5000, "the daemon ready")
    assert.equal(self, core.proc_stat(daemon).ppid)
    core.sleep(100)
    assert.is_true(H.alive(marked), "the daemon stopped a process that is not its keeper's: " .. H.pm_log())
    assert.is_falsy(H.contains(H.home .. "/pm.log", "took over"))
  end)

  it("a stopped keeper: apps restarting meanwhile, the daemon keeps it and it holds their newest fds", function()
    -- (review of issue 17) what the keeper cannot take yet waits; an fd
    -- that waits must be the daemon's own copy (the app's restart closes
    -- its pipes: a waiting number was a closed fd, or another file)
    ok(H.pm("ping"))
    local k = H.keeper_pid()
    core.kill(k, core.signals.SIGSTOP)
    finally(function() core.kill(k, core.signals.SIGCONT) end)
    ok(H.pm("start", "/bin/sh", "--name", "loop", "-i", "12", "--min-uptime", "1", "-s", "--", "-c", "sleep 0.02"))
    local function restarts()
      local n = 0
      for _, p in ipairs(H.jlist()) do n = n + p.pm2_env.restart_time end
      return n
    end
    -- (the socket holds ~200 KB of packets: some hundreds of restarts)
    H.wait_for(function() return restarts() > 400 end, 20000, "restarts while the keeper is stopped")
    core.kill(k, core.signals.SIGCONT)
    ok(H.pm("stop", "loop", "-s"))
    assert.is_falsy(H.contains(H.home .. "/pm.log", "cannot be told"), H.pm_log())
    local pong = util.decode(ok(H.pm("ping")).out)
    assert.equal(k, pong.keeper)
    -- it let go of every pipe of the stopped apps: its fds are its own few
    H.wait_for(function()
      local n = 0
      for _ in pairs(core.listdir("/proc/" .. k .. "/fd") or {}) do n = n + 1 end
      return n < 12
    end, 5000, "the keeper's fds let go")
  end)

  it("a stopped app started again, then SIGKILL at once: its process is kept", function()
    ok(H.pm("start", "--name", "back", "-s", "--", "sleep", "1000"))
    ok(H.pm("stop", "back", "-s"))
    ok(H.pm("start", "back", "-s"))
    local pid = H.online(H.proc("back")).pid
    kill9()
    local p = H.proc("back")
    assert.equal("online", p.pm2_env.status)
    assert.equal(pid, p.pid)
  end)

  it("a kept app's exit that never comes: its stop ends once the process is seen gone (no stop hangs)", function()
    ok(H.pm("start", "--name", "kept", "--kill-timeout", "200", "-s", "--", "sleep", "1000"))
    local pid = H.proc("kept").pid
    kill9() -- (kept: a child of the keeper now, its exit the keeper's to tell)
    assert.equal(pid, H.proc("kept").pid)
    local k = H.keeper_pid()
    core.kill(k, core.signals.SIGSTOP) -- (it reaps and tells nothing: the exit is lost meanwhile)
    finally(function() core.kill(k, core.signals.SIGCONT) end)
    local r = H.pm("stop", "kept", "-s")
    assert.equal(0, r.code, r.err)
    assert.equal("stopped", H.proc("kept").pm2_env.status)
    assert.truthy(H.contains(H.home .. "/pm.log", "pid " .. pid .. " is gone but no exit of it came"), H.pm_log())
    core.kill(k, core.signals.SIGCONT)
    -- the exit the keeper tells late changes nothing; the app starts again
    ok(H.pm("start", "kept", "-s"))
    H.online(H.proc("kept"))
    assert.are_not.equal(pid, H.proc("kept").pid)
    ok(H.pm("ping"))
    assert.equal("online", H.proc("kept").pm2_env.status)
  end)

  it("an app's user cannot pass a process of its own off as another app that exited meanwhile", function()
    -- (review of issue 17) the attacker's app runs as nobody and leaves
    -- behind a process with the victim's PM_APP_UID (read here, guessed
    -- there: daemon pid-pm_id-ms); the victim exits with 3 while no daemon
    -- runs: the next daemon must apply the victim's exit, not adopt the fake
    local nobody = util.passwd("nobody")
    if core.getuid() ~= 0 or not nobody then return pending("needs root and a user nobody") end
    local app = H.script("ex.sh", "#!/bin/sh\ntrap 'exit 3' USR1\nwhile :; do sleep 0.05; done\n")
    local v = online(H.start(app, "victim", "-s"))
    local env = util.read_file("/proc/" .. v.pid .. "/environ")
    local marker = assert(("\0" .. env):match("%zPM_APP_UID=([^%z]+)"))
    local eco = H.write(H.home .. "/evil.json", util.encode({ apps = { { name = "evil", script = "/bin/sh",
      user = "nobody", args = { "-c", ("(setsid env PM_APP_UID=%s sleep 600 &); exec sleep 600"):format(marker) },
    } } }))
    ok(H.pm("start", eco, "-s"))
    local fake
    H.wait_for(function()
      for name in pairs(core.listdir("/proc") or {}) do
        local pid = tonumber(name)
        local e = pid and pid ~= v.pid and util.read_file("/proc/" .. name .. "/environ")
        if e and e:find("PM_APP_UID=" .. marker, 1, true) and (core.proc_stat(pid) or {}).pgrp == pid then
          fake = pid
        end
      end
      return fake
    end, 5000, "the fake process")
    local k = H.keeper_pid()
    core.kill(k, core.signals.SIGSTOP)
    local dpid = H.daemon_pid()
    core.kill(dpid, 9)
    H.wait_for(function() return not H.alive(dpid) end, 5000, "the daemon's end")
    core.kill(v.pid, core.signals.SIGUSR1)
    H.wait_for(function() local x = core.proc_stat(v.pid); return x and x.state == "Z" end, 5000, "the victim's end")
    core.kill(k, core.signals.SIGCONT)
    H.wait_for(function()
      local p = H.proc("victim")
      return p and p.pm2_env.status == "online" and p.pid ~= v.pid and p.pid ~= fake
    end, 10000, "the victim restarted (not the fake adopted)")
    assert.equal(3, H.proc("victim").pm2_env.exit_code)
    assert.equal(1, H.proc("victim").pm2_env.restart_time)
    core.kill(fake, 9)
  end)

  it("a log its user made a link while no daemon ran: refused, its lines counted; written again once it is a file",
    function()
      -- (the next daemon opens an adopted app's logs when it first writes
      -- them: a refusal then is the writer's, counted, and tried again)
      local nobody = util.passwd("nobody")
      if core.getuid() ~= 0 or not nobody then return pending("needs root and a user nobody") end
      -- (a folder nobody reaches: PM_HOME is 0700)
      local base = H.sh("mktemp -d /tmp/pm-keeplink.XXXXXX").out:match("[^\n]+")
      finally(function() os.execute("rm -rf " .. q(base)) end)
      core.chmod(base, 493)
      local dir = base .. "/u"
      core.mkdir(dir, 493)
      H.sh(("chown %d:%d %s"):format(nobody.uid, nobody.gid, q(dir)))
      local victim = H.write(H.home .. "/victim", "root's own\n")
      local log = dir .. "/out.log"
      local eco = H.write(H.home .. "/tick.json", util.encode({ apps = { { name = "tick", script = "/bin/sh",
        user = "nobody", out_file = log, args = { "-c", "i=0; while :; do i=$((i+1)); echo t $i; sleep 0.05; done" },
      } } }))
      ok(H.pm("start", eco, "-s"))
      local pid = online(H.proc("tick")).pid
      H.wait_for(function() return H.contains(log, "t 3\n") end, 5000, "lines in the log")
      local k = H.keeper_pid()
      core.kill(k, core.signals.SIGSTOP)
      local old = H.daemon_pid()
      core.kill(old, 9)
      H.wait_for(function() return not H.alive(old) end, 5000, "the daemon's end")
      H.sh(("rm -f %s && ln -s %s %s && chown -h %d:%d %s"):format(q(log), q(victim), q(log), nobody.uid,
        nobody.gid, q(log)))
      core.kill(k, core.signals.SIGCONT)
      ok(H.pm("ping"))
      assert.equal(pid, H.proc("tick").pid, "the app kept")
      H.wait_for(function()
        return H.contains(H.home .. "/pm.log", "log " .. log .. " cannot be written")
      end, 5000, "the refusal said (its lines dropped and counted)")
      assert.equal("root's own\n", util.read_file(victim))
      -- its user puts a file back: the next lines go there
      H.sh("rm -f " .. q(log))
      H.wait_for(function()
        local st = core.stat(log)
        return st and st.type == "file" and (util.read_file(log) or ""):find("t %d+\n") ~= nil
      end, 5000, "lines in a log file again")
      assert.equal("root's own\n", util.read_file(victim))
    end)

  -- An app that leaves an escapee (a sleep in a session of its own) and a
  -- child; the daemon SIGKILLed (after journaled(pid), when given), then
  -- pm stop: every process of the app gone
  local function stop_after_takeover(name, tag, journaled)
    local mark = tostring(core.getpid()) .. tag .. tostring(math.floor(core.now()) % 100000)
    local app = H.script(name .. ".sh", ("#!/bin/sh\n( setsid sleep %s & )\nsleep %s &\nwhile :; do sleep 1; done\n")
      :format(mark .. ".5", mark .. ".6"))
    online(H.start(app, name, "-s"))
    local function sleeps()
      local out = {}
      for entry in pairs(core.listdir("/proc") or {}) do
        local c = tonumber(entry) and util.read_file("/proc/" .. entry .. "/cmdline")
        if c and c:find("^sleep%z" .. mark) and H.alive(tonumber(entry)) then out[#out + 1] = tonumber(entry) end
      end
      return out
    end
    H.wait_for(function() return #sleeps() == 2 end, 5000, "the app's two sleeps")
    local pid = H.proc(name).pid
    if journaled then journaled(pid) end
    kill9()
    assert.equal(pid, H.proc(name).pid)
    ok(H.pm("stop", name, "-s"))
    H.wait_for(function() return #sleeps() == 0 end, 5000, "every process of the app gone")
    assert.is_false(H.alive(pid))
  end

  it("a stop after the take-over stops what the adopted app started, escapees included", function()
    stop_after_takeover("tree", "7")
  end)

  it("the same once the journal holds the process (known by pid and start time, its group as noted)", function()
    stop_after_takeover("tree2", "8", function(pid)
      H.wait_for(function()
        return (util.read_file(H.home .. "/journal.json") or ""):find('"pid":' .. pid .. ',"start":', 1, true)
      end, 5000, "the journal holding the app's pid and start time")
    end)
  end)

  it("a message sent right after the kill reaches the Lua app once", function()
    local got = H.home .. "/got"
    local app = H.write(H.home .. "/app.lua", ([[
local child = require "pm.child"
child.on_message(function(packet)
  local f = io.open(%q, "a")
  f:write(tostring(packet.data and packet.data.n), "\n")
  f:close()
end)
child.loop()
]]):format(got))
    online(H.start(app, "lapp", "-s"))
    local p = H.proc("lapp")
    local dpid = H.daemon_pid()
    core.kill(dpid, 9)
    -- (its socket goes with its last thread: a request sent before that
    -- reaches nothing that answers)
    H.wait_for(function() return not H.alive(dpid) end, 5000, "the daemon's end")
    local send = H.write(H.home .. "/send.lua", ([[
local pm = require "pm"
assert(pm.connect())
local ok, err = pm.sendDataToProcessId(%d, { type = "process:msg", topic = "t", data = { n = 42 } })
assert(ok, err)
pm.disconnect()
]]):format(p.pm_id))
    ok(H.sh(q(H.bin) .. " run " .. q(send)))
    H.wait_for(function() return util.read_file(got) end, 5000, "the message")
    core.sleep(300)
    assert.equal("42\n", util.read_file(got))
    assert.equal(p.pid, H.proc("lapp").pid)
  end)

  it("handover refuses a bin that is no executable's absolute path, or has a control character", function()
    online(H.start(F .. "/ep_app.sh", "idle", "-s"))
    local pid, dpid = H.proc("idle").pid, H.daemon_pid()
    local pm = require "pm"
    local conn = assert(pm._conn())
    for _, bin in ipairs({ "bin/pm", "/nonexistent/pm", H.bin .. "\nQ", H.home, 42 }) do
      local res, err = conn:call("handover", { bin = bin })
      assert.is_nil(res)
      assert.matches("absolute path of an executable", tostring(err))
    end
    pm.disconnect()
    assert.equal(dpid, H.daemon_pid())
    assert.equal(pid, H.proc("idle").pid)
  end)

  it("PM_KEEPER=0: no keeper, and pm update restarts the apps (the way without one)", function()
    ok(H.sh("PM_KEEPER=0 " .. q(H.bin) .. " ping"))
    assert.is_nil(H.keeper_pid())
    local pong = util.decode(ok(H.pm("ping")).out)
    assert.is_nil(pong.keeper)
    online(H.start(F .. "/ep_app.sh", "idle", "-s"))
    local pid = H.proc("idle").pid
    local r = ok(H.pm("update"))
    assert.is_truthy(r.out:find("pm daemon updated to", 1, true), r.out)
    local now = online(H.proc("idle"))
    assert.are_not.equal(pid, now.pid)
    assert.is_false(H.alive(pid))
    -- (the daemon pm update started has a keeper: the next command's)
    assert.is_number(H.keeper_pid())
  end)

  it("pm update to a build with another version: the same pids, no line lost, the bus back", function()
    -- the "new build": these sources with another version, run by a wrapper
    local lua = H.home .. "/newlua"
    os.execute(("cp -r %s %s"):format(q(H.src .. "/lua"), q(lua)))
    local utilsrc = util.read_file(lua .. "/pm/util.lua")
    H.write(lua .. "/pm/util.lua", (utilsrc:gsub('M%.VERSION = "[^"]*"', 'M.VERSION = "9.9.9-test"', 1)))
    local wrapper = H.script("newpm", ("#!/bin/sh\nPM_LUA_DIR=%s exec %s \"$@\"\n"):format(q(lua), q(H.bin)))
    -- each line in two writes: a read may end inside one (handed over)
    local app = H.script("lines.py", "import os, time\ni = 0\nwhile True:\n    i += 1\n"
      .. "    os.write(1, b'n ')\n    os.write(1, b'%d\\n' % i)\n    if i % 100 == 0: time.sleep(0.001)\n")
    online(H.start(app, "lines", "--interpreter", PY, "-s"))
    online(H.start(F .. "/ep_app.sh", "idle", "-s"))
    local before = {}
    for _, p in ipairs(H.jlist()) do before[p.name] = p.pid end
    -- a bus client of the old daemon: it connects again to the new one
    local pm = require "pm"
    local bus = assert(pm.launchBus())
    local heard = 0
    assert(bus:on("log:out", function(packet)
      if packet.process and packet.process.name == "lines" then heard = heard + 1 end
    end))
    H.pump(function() return heard > 0 end, 5000, "the app's lines on the bus")
    local old = H.daemon_pid()
    local r = ok(H.sh(("PM_BIN=%s %s update"):format(q(wrapper), q(H.bin))))
    assert.is_truthy(r.out:find("pm daemon updated 0.1.0 -> 9.9.9-test, 2 apps kept", 1, true), r.out)
    local pong = util.decode(ok(H.pm("ping")).out)
    assert.equal("9.9.9-test", pong.version)
    assert.are_not.equal(old, pong.pid)
    for _, p in ipairs(H.jlist()) do assert.equal(before[p.name], p.pid, p.name .. " kept its pid") end
    heard = 0
    H.pump(function() return heard > 0 end, 10000, "the app's lines on the bus of the new daemon")
    assert.is_false(bus.conn.closed)
    bus:close()
    -- and the client's calls go to the new daemon
    local list = assert(pm.list())
    assert.equal(2, #list)
    pm.disconnect()
    local log = H.out_log("lines")
    local size = core.stat(log).size
    H.wait_for(function() return core.stat(log).size > size + 10000 end, 5000, "lines after the update")
    ok(H.pm("stop", "lines", "-s"))
    -- (a hand-over, unlike a SIGKILL, loses nothing: every line read is
    -- written first, a line read without its end goes to the next daemon)
    local count, lost = numbered(log)
    assert.is_true(count > 1000)
    assert.equal(0, lost)
  end)

  it("holds a cluster app's sockets again after a take-over: a reload's new processes listen where it did", function()
    if not core.access("/usr/bin/node", "x") then return pending("needs /usr/bin/node") end
    local port = H.free_port()
    local app = H.write(H.home .. "/srv.js", [[
const http = require('http');
http.createServer((q, r) => r.end('pid ' + process.pid + '\n')).listen(Number(process.env.PORT));
]])
    ok(H.pm("start", app, "-i", "2", "--name", "web", "-s", { env = { PORT = tostring(port) } }))
    local function answers()
      -- (python3: the Makefile installs it; curl it does not)
      local r = H.sh(("python3 -c %s %d"):format(H.shquote("import sys, urllib.request; sys.stdout.write("
        .. "urllib.request.urlopen('http://127.0.0.1:%s/' % sys.argv[1], timeout=2).read().decode())"), port))
      return r.code == 0 and r.out:match("^pid (%d+)")
    end
    H.wait_for(answers, 8000, "the app answering")
    kill9()
    local before = {}
    for _, p in ipairs(H.jlist()) do before[p.pid] = true end
    ok(H.pm("reload", "web"))
    H.wait_for(function()
      local pid = answers()
      return pid and not before[tonumber(pid)]
    end, 8000, "a new process answering")
    for _, p in ipairs(H.jlist()) do assert.equal("online", p.pm2_env.status) end
  end)
end)
