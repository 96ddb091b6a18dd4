-- The fast half of the reliability harness (the long half: tests/soak/run):
-- a crash storm, the control-socket fuzzer, faults (SIGKILL of the daemon
-- mid-work, log files deleted or unwritable, EMFILE, hooks that never
-- return) and the security boundaries (modes in PM_HOME, other uids, what
-- the daemon opens and chowns on behalf of a request, inherited fds).
-- Every daemon, app and helper process is stopped by pid.
local H = require "pmtest"
local core = require "pm.core"
local util = require "pm.util"

local F = dofile(H.src .. "/tests/fuzz/rpcfuzz.lua")

local SLEEP = H.fixtures .. "/rel_sleep.sh"   -- `exec sleep`: one process
local CRASH = H.fixtures .. "/rel_crash.sh"   -- one line, then exit 1
local TICKER = H.fixtures .. "/rel_ticker.sh" -- a numbered line every 20 ms
local RUNAS = "setpriv --reuid=nobody --regid=nogroup --clear-groups"

-- ---- helpers ----

local ok = H.ok

local fd_count = H.fd_count

local function rss_kb(pid)
  local s = util.read_file("/proc/" .. pid .. "/status") or ""
  return tonumber(s:match("VmRSS:%s*(%d+)")) or 0
end

local zombies_of = H.zombies_of

-- Live processes of this PM_HOME's apps: { [name] = { pid, ... } }
local function app_processes(home)
  local found = {}
  for dir in pairs(core.listdir("/proc") or {}) do
    local pid = tonumber(dir)
    if pid and H.alive(pid) then
      local env = core.proc_environ(pid)
      if env then
        env = "\0" .. env .. "\0"
        local i = env:find("\0name=", 1, true)
        local name = i and env:sub(i + 6, env:find("\0", i + 1, true) - 1)
        if name and env:find("\0PM_HOME=" .. home .. "\0", 1, true) and env:find("\0PM_APP_UID=", 1, true) then
          found[name] = found[name] or {}
          table.insert(found[name], pid)
        end
      end
    end
  end
  return found
end

local function is_root() return core.getuid() == 0 end

local function have(cmd) return os.execute("command -v " .. cmd .. " >/dev/null 2>&1") == 0 end

local pm_log = H.pm_log

-- A raw connection to rpc.sock: lines in c.msgs (decoded)
local connect = H.connect

local strays = H.processes_of_home

-- pm kill and the recorded pids (H.cleanup), then, by pid, any process
-- still carrying this PM_HOME (one the daemon lost track of)
local function cleanup(home)
  home = home or H.home
  if not home then return end
  H.home = home
  H.cleanup(home)
  for _, pid in ipairs(strays(home)) do core.kill(pid, 9) end
end

local write = H.write

-- ---- crash storm ----

describe("a crash storm", function()
  before_each(function() H.new_home() end)
  after_each(function() cleanup() end)

  it("of 1,000 restarts leaves no zombie, the daemon's fds and RSS flat, and every run's line", function()
    ok(H.pm("start", CRASH, "--name", "storm", "--interpreter", "none", "--max-restarts", "1000000",
      "--min-uptime", "0", "-s"))
    local dpid = H.daemon_pid()
    local function restarts()
      local p = H.proc("storm")
      return p and p.pm2_env.restart_time or 0
    end
    -- warm up (the log files open, the Lua heap at its working size), then
    -- the baseline with the app stopped
    H.wait_for(function() return restarts() >= 50 end, 10000, "50 warm-up restarts")
    ok(H.pm("stop", "storm", "-s"))
    local base = restarts()
    local fd0, rss0 = fd_count(dpid), rss_kb(dpid)
    ok(H.pm("start", "storm", "-s"))
    local max_zombies = 0
    H.wait_for(function()
      max_zombies = math.max(max_zombies, #zombies_of(dpid))
      return restarts() >= base + 1000
    end, 30000, "1,000 restarts")
    ok(H.pm("stop", "storm", "-s"))
    local p = H.proc("storm")
    assert.equal("stopped", p.pm2_env.status)
    H.wait_for(function() return #zombies_of(dpid) == 0 end, 2000, "no zombie child of the daemon")
    local fd1 = H.wait_for(function()
      local n = fd_count(dpid)
      return n <= fd0 and n
    end, 3000, ("the daemon's fds back to %d"):format(fd0))
    local rss1 = rss_kb(dpid)
    print(("    crash storm: %d restarts, fds %d -> %d, VmRSS %d kB -> %d kB, zombies at most %d")
      :format(p.pm2_env.restart_time - base, fd0, fd1, rss0, rss1, max_zombies))
    assert.is_true(max_zombies <= 1, ("%d zombies at once"):format(max_zombies))
    assert.equal(fd0, fd1)
    -- (a sanitizer build keeps freed memory in quarantine: its RSS grows by design)
    if not os.getenv("PM_SANITIZED") then
      assert.is_true(rss1 <= rss0 + 2048, ("VmRSS grew from %d kB to %d kB"):format(rss0, rss1))
    end
    -- every run wrote its line (a run killed by a stop may not have)
    local launches = p.pm2_env.restart_time + 2
    local lines = H.count_lines(H.home .. "/logs/storm-out.log")
    assert.is_true(lines <= launches and lines >= launches - 2,
      ("%d lines in the out log for %d runs"):format(lines, launches))
    assert.is_true(H.alive(dpid))
  end)
end)

-- ---- the control socket ----

describe("the control socket under fuzzing", function()
  local home, dpid

  lazy_setup(function()
    home = H.new_home()
    for i = 0, 2 do
      ok(H.pm("start", SLEEP, "--name", "fz" .. i, "--namespace", "nsfz", "--kill-timeout", "300", "-s"))
    end
    dpid = H.daemon_pid()
  end)

  lazy_teardown(function() cleanup(home) end)

  it("answers every request with an id of 20,000 seeded frames once, and never crashes or hangs", function()
    local stats = F.run({ sock = home .. "/rpc.sock", frames = 20000, seed = 20240611, daemon_pid = dpid,
      corpus = H.src .. "/tests/fuzz/corpus/rpc", conns = 4, hang_ms = 10000 })
    local summary = F.summary(stats)
    print("    fuzz: " .. summary)
    local detail = summary
    for _, l in ipairs(stats.unanswered_lines) do detail = detail .. "\n  no reply to: " .. l end
    for i = 1, math.min(5, #stats.bad) do detail = detail .. "\n  " .. stats.bad[i] end
    for _, m in ipairs(stats.internal_list) do detail = detail .. "\n  internal error: " .. m end
    assert.is_false(stats.died, "the daemon died: " .. detail)
    assert.is_nil(stats.hang, detail)
    assert.equal(20000, stats.frames)
    assert.is_true(stats.with_id > 5000 and stats.expect_null > 1000, detail)
    assert.equal(stats.with_id, stats.id_replies, "replies == requests with an id: " .. detail)
    assert.equal(stats.expect_null, stats.null_replies, "errors with id null: " .. detail)
    assert.equal(0, stats.unanswered, detail)
    assert.equal(0, stats.unexpected, detail)
    assert.equal(0, stats.duplicates, detail)
    assert.equal(0, stats.malformed_replies, detail)
    assert.equal(0, stats.codes[-32603] or 0, "internal errors: " .. detail)
    -- the same daemon, answering, with nothing alarming in its log
    local r = ok(H.pm("ping"))
    assert.equal(dpid, util.decode(r.out).pid)
    local log = util.read_file(home .. "/pm.log") or ""
    assert.is_nil(log:find("lua error", 1, true), "Lua errors in pm.log")
    assert.is_nil(log:find("stack traceback", 1, true), "tracebacks in pm.log")
  end)

  it("echoes every id exactly, big integers included (JSON-RPC: the same value)", function()
    local c = connect(home .. "/rpc.sock")
    local ids = { "9007199254740991", "1732470000000001", "123456789012345", "0.1", "-5", "1e300", '"x"' }
    for i, id in ipairs(ids) do
      c:send(('{"jsonrpc":"2.0","id":%s,"method":"ping","params":{"n":%d}}\n'):format(id, i))
    end
    H.run_until(function() return #c.msgs >= #ids end, 3000)
    c:close()
    assert.equal(#ids, #c.msgs)
    local bad = {}
    for i, id in ipairs(ids) do
      local want = util.decode(id)
      local m = c.msgs[i]
      if m.id ~= want then bad[#bad + 1] = ("%s came back as %s"):format(id, ("%.17g"):format(m.id)) end
    end
    assert.same({}, bad)
  end)

  it("answers every request when a start comes while a stop is under way, with one process at a time", function()
    -- an app that ignores SIGINT: its stop lasts until the SIGKILL
    local stub = H.script("rel_stubborn.sh", "#!/bin/sh\ntrap '' INT\nexec sleep 1000\n")
    ok(H.pm("start", stub, "--name", "stub", "--kill-timeout", "1500", "-s"))
    local old = H.proc("stub").pid
    local c = connect(home .. "/rpc.sock")
    c:send('{"jsonrpc":"2.0","id":1,"method":"stop","params":{"target":"stub"}}\n')
    H.wait_for(function() return H.status("stub") == "stopping" end, 2000, "stub stopping")
    c:send('{"jsonrpc":"2.0","id":2,"method":"start","params":{"target":"stub"}}\n')
    local r2 = c:reply(2, 5000)
    local procs = app_processes(home).stub or {}
    c:send('{"jsonrpc":"2.0","id":3,"method":"stop","params":{"target":"stub"}}\n')
    local r3 = c:reply(3, 10000)
    local r1 = c:reply(1, 3000)
    c:close()
    for _, pid in ipairs(app_processes(home).stub or {}) do core.kill(pid, 9) end
    if H.alive(old) then core.kill(old, 9) end
    assert.is_truthy(r2, "no reply to the start")
    assert.is_truthy(r3, "no reply to the second stop")
    assert.is_truthy(r1, "no reply to the first stop (its request is lost)")
    assert.is_true(#procs <= 1, ("%d processes of the app at once: %s"):format(#procs, table.concat(procs, " ")))
  end)
end)

describe("a restart and a delete of one app sent together", function()
  before_each(function() H.new_home() end)
  after_each(function() cleanup(H.home) end)

  it("leave no process of the deleted app, and pm kill leaves nothing of this PM_HOME", function()
    ok(H.pm("start", SLEEP, "--name", "a", "--kill-timeout", "500", "-s"))
    -- a big app table keeps the kill's reply pending while the loop turns
    local big = string.rep("x", 100000)
    ok(H.pm("start", H.script("big.json", util.encode({ apps = { { name = "big", script = SLEEP,
      env = { BIG1 = big, BIG2 = big, BIG3 = big } } } }), "644"), "-s"))
    local dpid = H.daemon_pid()
    local c = connect()
    c:send('{"jsonrpc":"2.0","id":1,"method":"restart","params":{"target":"a"}}\n'
      .. '{"jsonrpc":"2.0","id":2,"method":"delete","params":{"target":"a"}}\n')
    local r1, r2 = c:reply(1, 5000), c:reply(2, 5000)
    c:close()
    assert.is_truthy(r1, "no reply to the restart")
    assert.is_truthy(r2, "no reply to the delete")
    assert.is_nil(r2.error, r2.error and r2.error.message)
    assert.same({ "big" }, (function()
      local names = {}
      for _, p in ipairs(H.jlist()) do names[#names + 1] = p.name end
      return names
    end)())
    H.wait_for(function() return not app_processes(H.home).a end, 3000, "no process of the deleted app")
    ok(H.pm("kill"))
    H.wait_for(function() return not H.alive(dpid) end, 5000, "the daemon gone")
    assert.same({}, strays(H.home))
  end)
end)

describe("a restart with an environment of the wrong type", function()
  before_each(function() H.new_home() end)
  after_each(function() cleanup() end)

  it("is answered, and leaves the app restartable", function()
    ok(H.pm("start", SLEEP, "--name", "envy", "-s"))
    local c = connect()
    c:send('{"jsonrpc":"2.0","id":1,"method":"restart","params":{"target":"envy","updateEnv":true,'
      .. '"environ":{"PATH":"/usr/bin:/bin","BAD":{"a":1},"ALSO":[1,2]}}}\n')
    local reply = c:reply(1, 5000)
    c:close()
    local r = H.pm("restart", "envy", "-s")
    local p = H.proc("envy")
    assert.is_truthy(reply, "no reply to the restart (status now " .. p.pm2_env.status .. ", pid " .. p.pid .. ")")
    assert.is_nil(reply.error and reply.error.message:find("internal error", 1, true), util.encode(reply))
    ok(r, "a plain restart afterwards")
    assert.equal("online", H.status("envy"))
  end)
end)

describe("a request for a huge number of instances", function()
  before_each(function() H.new_home() end)
  after_each(function() cleanup() end)

  it("is refused or bounded: the daemon keeps answering (scale to 100,000,000)", function()
    ok(H.pm("start", SLEEP, "--name", "big", "-s"))
    local dpid = H.daemon_pid()
    local c = connect()
    -- (the records of the instances are all made before the first spawn: the
    -- daemon is killed long before it could start one)
    c:send('{"jsonrpc":"2.0","id":1,"method":"scale","params":{"name":"big","instances":100000000}}\n')
    local reply = c:reply(1, 2000)
    c:close()
    local alive, why = F.ping(H.home .. "/rpc.sock", 1000)
    local rss = rss_kb(dpid)
    if not reply or not alive then
      -- it loops making records of processes: stop it before it eats the machine
      H.crash_daemon(dpid)
      H.wait_for(function() return not H.alive(dpid) end, 3000)
    end
    assert.is_true(alive, ("the daemon stopped answering (%s; VmRSS %d kB and growing)"):format(tostring(why), rss))
    assert.is_table(reply and reply.error, "an error expected: " .. util.encode(reply or {}))
  end)
end)

-- ---- faults ----

describe("after a SIGKILL of the daemon mid-work", function()
  before_each(function() H.new_home() end)
  after_each(function() cleanup() end)

  -- An ecosystem of 8 sleepers, 2 apps that ignore SIGINT and 2 crash loops.
  local function eco()
    local lines = { "return { apps = {" }
    for i = 1, 8 do
      lines[#lines + 1] = ('{ name = "s%d", script = %q, kill_timeout = 1000 },'):format(i, SLEEP)
    end
    local stub = H.script("rel_stubborn.sh", "#!/bin/sh\ntrap '' INT\nexec sleep 1000\n")
    for i = 1, 2 do
      lines[#lines + 1] = ('{ name = "t%d", script = %q, kill_timeout = 1500 },'):format(i, stub)
    end
    for i = 1, 2 do
      lines[#lines + 1] = ('{ name = "c%d", script = %q, interpreter = "none", min_uptime = 0, '
        .. 'max_restarts = 1000000 },'):format(i, CRASH)
    end
    lines[#lines + 1] = "} }"
    return write(H.home .. "/ecosystem.config.lua", table.concat(lines, "\n") .. "\n")
  end

  local NAMES = { "c1", "c2", "s1", "s2", "s3", "s4", "s5", "s6", "s7", "s8", "t1", "t2" }

  local function check_restored(old_pids, dpid, round)
    local list = H.jlist()
    assert.are_not.equal(dpid, H.daemon_pid())
    local seen = {}
    for _, p in ipairs(list) do seen[#seen + 1] = p.name end
    table.sort(seen)
    assert.equal(table.concat(NAMES, ","), table.concat(seen, ","), "every app exactly once")
    for _, pid in ipairs(old_pids) do
      H.wait_for(function() return not H.alive(pid) end, 8000,
        ("%s: the old process %d gone (journal: %s)"):format(round, pid,
          (util.read_file(H.home .. "/journal.json") or "none"):sub(1, 300)))
    end
    -- each long-running app online with exactly one live process
    local last
    local found, procs = pcall(H.wait_for, function()
      local pr = app_processes(H.home)
      last = pr
      for _, n in ipairs(NAMES) do
        if n:match("^[st]") and #(pr[n] or {}) ~= 1 then return nil end
      end
      return pr
    end, 10000)
    if not found then
      local t = {}
      for _, n in ipairs(NAMES) do t[#t + 1] = n .. ":" .. table.concat(last[n] or {}, "+") end
      local st = {}
      for _, p in ipairs(H.jlist()) do st[#st + 1] = p.name .. "=" .. p.pm2_env.status .. "/" .. p.pid end
      error(("%s: not one live process per app: %s (jlist: %s; processes with this PM_HOME: %s)"):format(round,
        table.concat(t, " "), table.concat(st, " "), table.concat(strays(H.home), " ")), 0)
    end
    for _, p in ipairs(H.jlist()) do
      if p.name:match("^[st]") then
        assert.equal("online", p.pm2_env.status, p.name)
        assert.same({ p.pid }, procs[p.name], p.name .. ": one process, the one jlist shows")
      else
        assert.is_true(#(procs[p.name] or {}) <= 1, p.name .. ": at most one process")
      end
    end
  end

  local function old_processes()
    local old = {}
    for _, pids in pairs(app_processes(H.home)) do
      for _, pid in ipairs(pids) do old[#old + 1] = pid end
    end
    return old
  end

  it("while an ecosystem starts: every app back exactly once, no process of the old daemon left", function()
    local path = eco()
    ok(H.pm("ping"))
    local dpid = H.daemon_pid()
    -- the kill lands while the start of the file is in progress
    local c = connect()
    c:send(util.encode({ jsonrpc = "2.0", id = 1, method = "start", params = { path = path } }) .. "\n")
    H.wait_for(function()
      local p = io.popen("ls " .. H.shquote(H.home .. "/pids") .. " 2>/dev/null | wc -l")
      local n = tonumber(p:read("*a")) or 0
      p:close()
      return n >= 4
    end, 5000, "the first apps launched")
    H.crash_daemon(dpid)
    c:close()
    H.wait_for(function() return not H.alive(dpid) end, 3000, "the daemon gone")
    local old = old_processes()
    local journal = util.decode(util.read_file(H.home .. "/journal.json") or "[]") or {}
    print(("    SIGKILL during a start: %d processes of the old daemon alive, %d apps in its journal")
      :format(#old, #journal))
    ok(H.pm("ping"))
    -- if the start was cut short, the journal restored what it knew; the
    -- file started again completes the set (once each)
    if #H.jlist() < #NAMES then ok(H.pm("start", path, "-s")) end
    check_restored(old, dpid, "after a kill during the start")
  end)

  it("while a restart of all is under way: every app back exactly once, no process of the old daemon left", function()
    local path = eco()
    ok(H.pm("start", path, "-s"))
    H.wait_for(function()
      local j = util.read_file(H.home .. "/journal.json") or ""
      for _, n in ipairs(NAMES) do
        if not j:find('"name":"' .. n .. '"', 1, true) then return false end
      end
      return true
    end, 5000, "every app in the journal")
    local dpid = H.daemon_pid()
    local c = connect()
    c:send('{"jsonrpc":"2.0","id":2,"method":"restart","params":{"target":"all"}}\n')
    -- the stubborn ones hold the restart up for their kill_timeout (the
    -- others' processes by then running: a loaded machine restarts them
    -- later, and one killed meanwhile did not outlive its daemon)
    H.wait_for(function() return H.status("t1") == "stopping" and #old_processes() >= 8 end, 8000,
      "the restart under way")
    H.crash_daemon(dpid)
    c:close()
    H.wait_for(function() return not H.alive(dpid) end, 3000, "the daemon gone")
    local old = old_processes()
    assert.is_true(#old >= 8, "the apps outlived their daemon")
    ok(H.pm("ping"))
    check_restored(old, dpid, "after a kill during restart all")
  end)
end)

describe("log files", function()
  before_each(function() H.new_home() end)
  after_each(function() cleanup() end)

  local function lines_of(path)
    return H.count_lines(path)
  end

  it("deleted, or their directory removed, while an app writes: the app goes on, reloadLogs resumes them", function()
    ok(H.pm("start", TICKER, "--name", "tick", "-s"))
    local pid = H.proc("tick").pid
    local out = H.home .. "/logs/tick-out.log"
    H.wait_for(function() return lines_of(out) >= 3 end, 3000, "ticks in the log")
    os.remove(out)
    H.wait_for(function() return not core.stat(out) end, 1000)
    ok(H.pm("reloadLogs"))
    H.wait_for(function() return lines_of(out) >= 3 end, 3000, "ticks in a new log after reloadLogs")
    -- the whole directory
    os.execute("rm -rf " .. H.shquote(H.home .. "/logs"))
    ok(H.pm("reloadLogs"))
    H.wait_for(function() return lines_of(out) >= 3 end, 3000, "ticks in the recreated directory")
    local p = H.proc("tick")
    assert.equal(pid, p.pid, "the app was not restarted")
    assert.equal("online", p.pm2_env.status)
    assert.is_true(H.alive(pid))
  end)

  it("in a directory made unwritable: the app goes on, and after reloadLogs its logs resume", function()
    if not is_root() or not have("setpriv") then
      pending("needs root and setpriv: the daemon runs as nobody, for whom a mode is binding")
      return
    end
    -- a daemon running as nobody, in a PM_HOME that nobody owns
    os.execute("chown nobody:nogroup " .. H.shquote(H.home))
    local function pm(...)
      local words = { RUNAS, H.shquote(H.bin) }
      for _, a in ipairs({ ... }) do words[#words + 1] = H.shquote(a) end
      return H.sh(table.concat(words, " "))
    end
    ok(pm("start", TICKER, "--name", "t1", "-s"))
    local dpid = H.daemon_pid()
    assert.are_not.equal(0, core.stat(H.home .. "/pm.pid").uid, "the daemon runs as nobody")
    local logs = H.home .. "/logs"
    local out1 = logs .. "/t1-out.log"
    H.wait_for(function() return lines_of(out1) >= 3 end, 3000, "t1's ticks")
    local pid1 = H.proc("t1").pid
    -- the file goes, the directory turns read-only, the logs are reopened:
    -- nothing can be written now
    os.remove(out1)
    core.chmod(logs, 365) -- 0555
    ok(pm("reloadLogs"))
    -- an app started meanwhile cannot open its logs either
    ok(pm("start", TICKER, "--name", "t2", "-s"))
    local pid2 = H.proc("t2").pid
    local out2 = logs .. "/t2-out.log"
    assert.is_nil(core.stat(out1))
    assert.is_nil(core.stat(out2))
    core.chmod(logs, 493) -- 0755
    ok(pm("reloadLogs"))
    H.wait_for(function() return lines_of(out1) >= 3 end, 3000, "t1's ticks after reloadLogs")
    assert.equal(pid1, H.proc("t1").pid)
    assert.is_true(H.alive(pid1), "t1 kept running")
    assert.is_true(H.alive(pid2), "t2 kept running")
    assert.equal(pid2, H.proc("t2").pid)
    -- t2 never had its files open: reloadLogs must still give it its logs
    local ok2 = pcall(H.wait_for, function() return lines_of(out2) >= 3 end, 3000)
    assert.is_true(ok2, "t2 (started while the directory was unwritable) has no log after reloadLogs: "
      .. tostring(core.stat(out2) and "the file exists, empty" or "no file"))
    assert.equal(dpid, H.daemon_pid())
  end)
end)

describe("EMFILE", function()
  before_each(function() H.new_home() end)
  after_each(function() cleanup() end)

  it("with ulimit -n 64 on the daemon: starts fail with a clear error, and work again once fds are freed", function()
    ok(H.sh("ulimit -n 64 && " .. H.shquote(H.bin) .. " ping"), "a daemon with 64 fds")
    local dpid = H.daemon_pid()
    local limits = util.read_file("/proc/" .. dpid .. "/limits") or ""
    assert.is_truthy(limits:match("Max open files%s+64%s"), limits)
    local started, failure = {}, nil
    for i = 1, 40 do
      local r = H.pm("start", SLEEP, "--name", "e" .. i, "-s")
      if r.code ~= 0 then
        failure = r
        break
      end
      started[#started + 1] = "e" .. i
    end
    assert.is_truthy(failure, "40 apps started under a limit of 64 fds")
    assert.is_true(#started >= 3, "only " .. #started .. " apps before the limit")
    -- (issue 21: with the arithmetic)
    assert.is_truthy(failure.err:find("the daemon's fd limit (64) is reached: each app needs 2", 1, true),
      "a clear error expected, got: " .. failure.err)
    assert.is_truthy(failure.err:match("^[^\n]+\n$"), "one line on stderr: " .. failure.err)
    -- the daemon is up, answers, and what runs runs
    local r = ok(H.pm("ping"))
    assert.equal(dpid, util.decode(r.out).pid)
    for _, n in ipairs(started) do assert.equal("online", H.status(n), n) end
    -- free fds: half of the apps go
    for i = 1, math.ceil(#started / 2) do ok(H.pm("delete", started[i], "-s")) end
    local failed_name = "e" .. (#started + 1)
    ok(H.pm("restart", failed_name, "-s"), "the app that could not start, once fds are free")
    assert.equal("online", H.status(failed_name))
    ok(H.pm("start", SLEEP, "--name", "again", "-s"))
    assert.equal("online", H.status("again"))
    assert.equal(dpid, H.daemon_pid())
  end)
end)

describe("a hook in an endless loop", function()
  before_each(function() H.new_home() end)
  after_each(function() cleanup() end)

  it("is cut off, the daemon stays responsive, and the built-in policy applies", function()
    write(H.home .. "/ecosystem.config.lua", ([[
return { apps = {
  { name = "loopy", script = %q, interpreter = "none", min_uptime = 60000, max_restarts = 3,
    on_exit = function(proc, exit) while true do end end,
    on_start = function(proc) local n = 0; while true do n = n + 1 end end },
  -- a hook that would say "stop", but too late: its answer does not count
  { name = "slow", script = %q, interpreter = "none", min_uptime = 60000, max_restarts = 2,
    on_exit = function(proc, exit)
      local t = os.clock()
      while os.clock() - t < 0.2 do end
      return "stop"
    end },
} }
]]):format(CRASH, CRASH))
    local t0 = core.mono()
    local r = H.pm("start", H.home .. "/ecosystem.config.lua", "-s")
    -- the built-in policy: restarts while unstable, then errored at max_restarts
    local loopy = H.wait_for(function()
      local p = H.proc("loopy")
      return p and p.pm2_env.status == "errored" and p
    end, 10000, "loopy errored by the built-in policy")
    assert.equal(2, loopy.pm2_env.restart_time)
    local slow = H.wait_for(function()
      local p = H.proc("slow")
      return p and p.pm2_env.status == "errored" and p
    end, 10000, "slow errored by the built-in policy, not stopped by its hook")
    assert.equal(1, slow.pm2_env.restart_time)
    local log = pm_log()
    local _, cut = log:gsub("hook on_exit of loopy failed[^\n]*cut off", "")
    assert.equal(3, cut, "three on_exit cut-offs for loopy in pm.log:\n" .. log)
    assert.is_truthy(log:find("hook on_start of loopy failed[^\n]*cut off"), "on_start cut off:\n" .. log)
    assert.is_truthy(log:find("hook on_exit of slow failed[^\n]*cut off"), "slow's hook cut off:\n" .. log)
    -- and the daemon answered all along
    local t1 = core.mono()
    ok(H.pm("ping"))
    assert.is_true(core.mono() - t1 < 1000)
    assert.is_true(r.code == 0 or r.err:find("loopy", 1, true) ~= nil, r.err)
    assert.is_true(core.mono() - t0 < 15000)
  end)
end)

-- ---- security ----

describe("security", function()
  before_each(function() H.new_home() end)
  after_each(function() cleanup() end)

  it("PM_HOME is 0700, rpc.sock 0600, and nothing in PM_HOME is world-writable", function()
    ok(H.pm("start", TICKER, "--name", "w1", "-s"))
    ok(H.pm("start", SLEEP, "--name", "w2", "-i", "2", "-s"))
    ok(H.pm("save"))
    ok(H.pm("reloadLogs"))
    ok(H.pm("flush"))
    H.wait_for(function() return core.stat(H.home .. "/journal.json") end, 3000, "the journal")
    assert.equal("dir", core.stat(H.home).type)
    assert.equal(448, core.stat(H.home).mode, ("PM_HOME mode %o"):format(core.stat(H.home).mode)) -- 0700
    assert.equal("socket", core.stat(H.home .. "/rpc.sock").type)
    assert.equal(384, core.stat(H.home .. "/rpc.sock").mode,
      ("rpc.sock mode %o"):format(core.stat(H.home .. "/rpc.sock").mode)) -- 0600
    -- the walk: every file, directory and socket (links excepted)
    local p = io.popen("find " .. H.shquote(H.home) .. " ! -type l -perm -0002 2>/dev/null")
    local ww = p:read("*a")
    p:close()
    assert.equal("", ww, "world-writable in PM_HOME")
    p = io.popen("find " .. H.shquote(H.home) .. " | wc -l")
    local n = tonumber(p:read("*a"))
    p:close()
    assert.is_true(n >= 10, "the walk saw only " .. n .. " entries")
  end)

  it("refuses a client with another uid, even one that sends kill (the socket opened up on purpose)", function()
    if not is_root() or not have("setpriv") or not have("socat") then
      pending("needs root, setpriv and socat")
      return
    end
    ok(H.pm("start", SLEEP, "--name", "victim", "-s"))
    local dpid, vpid = H.daemon_pid(), H.proc("victim").pid
    local sock = H.home .. "/rpc.sock"
    -- as it is: PM_HOME 0700 keeps nobody from the socket
    local r = H.sh(RUNAS .. " " .. H.shquote(H.bin) .. " list")
    assert.are_not.equal(0, r.code)
    os.execute("chmod 0711 " .. H.shquote(H.home) .. " && chmod 0666 " .. H.shquote(sock))
    local ok1, err = pcall(function()
      -- pm itself as nobody: refused, and it does not take over the home
      r = H.sh(RUNAS .. " " .. H.shquote(H.bin) .. " stop victim")
      assert.are_not.equal(0, r.code, "pm stop as nobody succeeded: " .. r.out)
      -- raw requests: kill and stop, never carried out
      r = H.sh(RUNAS .. " socat -t 2 - UNIX-CONNECT:" .. H.shquote(sock), { stdin =
        '{"jsonrpc":"2.0","id":1,"method":"stop","params":{"target":"victim"}}\n'
        .. '{"jsonrpc":"2.0","id":2,"method":"kill"}\n' })
      -- one line that says why, no answer to either
      assert.is_truthy(r.out:match('^{"jsonrpc":"2.0","id":null,"error":{[^\n]*"refused: [^\n]*\n$'), r.out)
    end)
    os.execute("chmod 0600 " .. H.shquote(sock))
    core.chmod(H.home, 448)
    assert(ok1, err)
    assert.is_true(H.alive(dpid), "the daemon was killed by uid nobody")
    assert.is_true(H.alive(vpid), "the app was stopped by uid nobody")
    assert.equal(dpid, H.daemon_pid())
    assert.equal("online", H.status("victim"))
    assert.is_truthy(pm_log():find("refused a client with uid", 1, true))
  end)

  it("a daemon's reach is its uid's: it cannot be made to read, run or write what that uid cannot", function()
    if not is_root() or not have("setpriv") then
      pending("needs root and setpriv: a daemon as nobody, files only root may read")
      return
    end
    -- root's private things: a directory of its own (0700), and a 0600
    -- file in a directory anyone may cross
    local priv = H.home .. "/root-only"
    local open = H.home .. "/open"
    os.execute(("mkdir -m 0700 %s && mkdir -m 0755 %s"):format(H.shquote(priv), H.shquote(open)))
    write(priv .. "/secret.sh", "#!/bin/sh\necho SECRET-SCRIPT-RAN\nexec sleep 1000\n")
    os.execute("chmod 0755 " .. H.shquote(priv .. "/secret.sh"))
    write(priv .. "/ecosystem.config.lua", 'return { apps = { { name = "sneaky", script = "secret.sh" } } }\n')
    local secret = write(open .. "/secret.txt", "TOP SECRET\n")
    os.execute("chmod 0600 " .. H.shquote(secret))
    -- nobody's home for the daemon, in a place nobody can reach
    local nh = H.home .. "/nobody-home"
    os.execute(("mkdir -m 0755 %s && chown nobody:nogroup %s"):format(H.shquote(nh), H.shquote(nh)))
    os.execute("chmod 0711 " .. H.shquote(H.home))
    local pmhome = nh .. "/pm"
    local function pm(...)
      local words = { "PM_HOME=" .. H.shquote(pmhome), RUNAS, H.shquote(H.bin) }
      for _, a in ipairs({ ... }) do words[#words + 1] = H.shquote(a) end
      return H.sh(table.concat(words, " "))
    end
    local app = nh .. "/mine.sh"
    write(app, "#!/bin/sh\necho mine\nexec sleep 1000\n")
    os.execute("chmod 0755 " .. H.shquote(app) .. " && chown nobody " .. H.shquote(app))
    local ok1, err = pcall(function()
      ok(pm("ping"))
      -- a script in root's directory
      local r = pm("start", priv .. "/secret.sh", "--name", "s1")
      assert.are_not.equal(0, r.code, "started root's script: " .. r.out)
      assert.is_nil((r.out .. r.err):find("SECRET", 1, true))
      -- an ecosystem file there
      r = pm("start", priv .. "/ecosystem.config.lua")
      assert.are_not.equal(0, r.code, "loaded root's ecosystem file: " .. r.out)
      -- a working directory there
      r = pm("start", app, "--name", "s3", "--cwd", priv)
      local s3 = H.proc("s3")
      assert.is_true(r.code ~= 0 or (s3 and s3.pm2_env.status ~= "online"), "ran in root's directory")
      -- the root-only file as the app's log, then flushed: untouched
      pm("start", app, "--name", "s4", "-o", secret, "-e", secret)
      pm("flush")
      pm("reloadLogs")
      -- whatever the app did, nothing came out of or went into root's files
      assert.equal("TOP SECRET\n", util.read_file(secret))
      assert.equal(0, core.stat(secret).uid)
      assert.equal(384, core.stat(secret).mode)
      local listed = pm("jlist").out
      assert.is_nil(listed:find("TOP SECRET", 1, true))
      assert.is_nil(listed:find("SECRET-SCRIPT-RAN", 1, true))
      local procs = app_processes(pmhome)
      assert.is_nil(procs.s1)
      assert.is_nil(procs.sneaky)
    end)
    -- the nobody daemon: pm kill as root (accepted), then by pid
    local dpid = H.daemon_pid(pmhome)
    local saved = H.home
    H.sh("PM_HOME=" .. H.shquote(pmhome) .. " " .. H.shquote(H.bin) .. " kill")
    if dpid then
      pcall(H.wait_for, function() return not H.alive(dpid) end, 5000)
      if H.alive(dpid) then H.crash_daemon(dpid, pmhome) end
    end
    for _, pids in pairs(app_processes(pmhome)) do
      for _, pid in ipairs(pids) do core.kill(pid, 9) end
    end
    H.home = saved
    core.chmod(H.home, 448)
    assert(ok1, err)
  end)

  it("an app running as another user cannot get a root file through its log path (a planted symlink)", function()
    if not is_root() or not have("setpriv") then
      pending("needs root and setpriv")
      return
    end
    -- the app's user owns its log directory and plants a link to a file of root's
    os.execute("chmod 0711 " .. H.shquote(H.home))
    local open = H.home .. "/open"
    os.execute(("mkdir -m 0755 %s"):format(H.shquote(open)))
    local secret = write(open .. "/secret.txt", "TOP SECRET\n")
    os.execute("chmod 0600 " .. H.shquote(secret))
    local logdir = H.home .. "/applogs"
    os.execute(("mkdir -m 0755 %s && chown nobody:nogroup %s"):format(H.shquote(logdir), H.shquote(logdir)))
    ok(H.sh(RUNAS .. " ln -s " .. H.shquote(secret) .. " " .. H.shquote(logdir .. "/out.log")))
    -- (the app's script is not in PM_HOME: the daemon makes it 0700)
    write(H.home .. "/ecosystem.config.lua", ([[
return { apps = { { name = "asnobody", script = "/bin/sh", args = { "-c", "echo written-by-the-app; exec sleep 1000" },
  cwd = "/", user = "nobody", out_file = %q } } }
]]):format(logdir .. "/out.log"))
    ok(H.pm("start", H.home .. "/ecosystem.config.lua", "-s"))
    assert.equal("online", H.status("asnobody"))
    -- its first line, if it went through the link, is there within a second
    pcall(H.wait_for, function() return (util.read_file(secret) or ""):find("written", 1, true) end, 1000)
    local st = core.stat(secret)
    local content = util.read_file(secret)
    core.chmod(H.home, 448)
    assert.equal(0, st.uid, "root's file now belongs to uid " .. st.uid)
    assert.equal("TOP SECRET\n", content, "root's file was written through the link")
  end)

  it("neither the daemon nor its apps inherit the fds of the shell that started the daemon", function()
    local marker = H.home .. "/inherited-fd"
    ok(H.sh("exec 7>" .. H.shquote(marker) .. "; " .. H.shquote(H.bin) .. " start " .. H.shquote(SLEEP)
      .. " --name fdapp -s"))
    local dpid, apid = H.daemon_pid(), H.proc("fdapp").pid
    local function holds(pid)
      local p = io.popen("ls -l /proc/" .. pid .. "/fd 2>/dev/null")
      local s = p:read("*a")
      p:close()
      return s:find(marker, 1, true) ~= nil
    end
    assert.is_false(holds(dpid), "the daemon holds the caller's fd 7")
    assert.is_false(holds(apid), "the app holds the caller's fd 7")
  end)
end)
