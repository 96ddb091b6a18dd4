-- `pm start srv.js -i 4` as a PM2 user types it (issue 16, item 2): a Node
-- script given instances and no exec_mode runs in cluster mode (PM2's
-- rule), and its instances share the port it listens on, which pm learns
-- at the first listen() (the preload asks the daemon, which binds it for
-- the app and passes the socket back over the IPC channel). The port is
-- the app's from then on: a restart, a reload and a resurrect give it to
-- each process from its start; pm reload stays zero-downtime.
local H = require "pmtest"
local util = require "pm.util"
local core = require "pm.core"
local appdecl = require "pm.app"

local q = H.shquote
local ok = H.ok
local PY = core.access("/usr/bin/python3", "x") and "/usr/bin/python3" or "python3"
local CLIENT = H.fixtures .. "/rl_client.py"

-- A Node server on the port its first argument says (no PORT, no
-- `listen`: pm cannot know the port before the app listens); it answers
-- with its pid and closes gracefully on SIGINT.
local SRV = [[
'use strict';
const http = require('http');
const port = Number(process.argv[2]);
const server = http.createServer((req, res) => {
  res.writeHead(200, { Connection: 'close' });
  res.end(`pid ${process.pid}\n`);
});
server.listen(port, () => console.log(`listening ${port} pid ${process.pid}`));
process.on('SIGINT', () => server.close(() => process.exit(0)));
]]

local function srv() return H.script("srv.js", SRV, "644") end

local procs = H.named

local function count(list, status)
  local n = 0
  for _, p in ipairs(list) do
    if p.pm2_env.status == status then n = n + 1 end
  end
  return n
end

-- One GET on 127.0.0.1:port -> the pid that answered | nil, what happened
local function get_pid(port)
  local r = H.sh(("%s %s get 127.0.0.1:%d / 3"):format(PY, q(CLIENT), port))
  if r.code ~= 0 then return nil, r.out end
  return tonumber(r.out:match("^pid (%d+)")), r.out
end

-- Waits until the port answers (the app's first listen() gives it to pm)
local function serving(port)
  local pid
  H.wait_for(function()
    pid = get_pid(port)
    return pid
  end, 15000, "an answer on port " .. port)
  return pid
end

-- GETs until two instances have answered (the kernel spreads connections
-- over the processes accepting on one socket) -> { pid = n }. Once the
-- port answers, every GET does.
local function answering(port, pids_of)
  serving(port)
  local seen, n = {}, 0
  H.wait_for(function()
    local pid, what = get_pid(port)
    assert(pid, "GET on port " .. port .. ": " .. tostring(what))
    assert(pids_of[pid], ("pid %d answered: not an instance of the app"):format(pid))
    if not seen[pid] then n = n + 1 end
    seen[pid] = true
    return n >= 2
  end, 20000, "answers from two instances on port " .. port)
  return seen
end

-- All instances online, none errored (none restarted, unless restarts
-- says how many times each was); their pids
local function all_online(name, n, restarts)
  local list
  H.wait_for(function()
    list = procs(name)
    return #list == n and count(list, "online") == n
  end, 15000, ("%d instances of %s online"):format(n, name))
  local pids = {}
  for _, p in ipairs(list) do
    assert.equal("cluster_mode", p.pm2_env.exec_mode)
    assert.equal(restarts or 0, p.pm2_env.restart_time, "an instance restarted")
    pids[p.pid] = true
  end
  return list, pids
end

local function errors_of(name)
  return H.sh("cat " .. q(H.home) .. "/logs/" .. name .. "-error*.log 2>/dev/null").out
end

-- The variables of a live process
local function env_of(pid) return H.environ(pid) end

-- What fd (the PM_LISTEN_MAP entry of port) is in a process: "socket:[N]"
local function held_socket(pid, port)
  local map = util.decode(env_of(pid).PM_LISTEN_MAP or "{}") or {}
  local fd = map[tostring(port)]
  if not fd then return nil end
  local p = io.popen(("readlink /proc/%d/fd/%d 2>/dev/null"):format(pid, fd))
  local s = p:read("*l")
  p:close()
  return s
end

-- Background jobs (their own session, killed by group after each test)
local jobs = {}
local function bg(cmd, tag)
  local base = H.home .. "/" .. tag
  local inner = ("%s >%s 2>&1 </dev/null"):format(cmd, q(base .. ".log"))
  local p = io.popen("setsid /bin/sh -c " .. q(inner) .. " >/dev/null 2>&1 </dev/null & echo $!")
  local pid = tonumber(p:read("*l"))
  p:close()
  jobs[#jobs + 1] = pid
  return pid
end

local function start_load(port)
  local out, stopfile = H.home .. "/load.json", H.home .. "/load.stop"
  bg(("%s %s load 127.0.0.1 %d 60 400000 4 %s %s"):format(PY, q(CLIENT), port, q(out), q(stopfile)), "load")
  H.wait_for(function() return core.stat(out .. ".up") end, 10000, "the first answer to the load")
  return { out = out, stopfile = stopfile }
end

local function stop_load(load)
  H.write(load.stopfile, "")
  H.wait_for(function() return core.stat(load.out) end, 15000, "the load's tally")
  return assert(util.decode(util.read_file(load.out)))
end

describe("pm start <node script> -i N (PM2's cluster mode)", function()
  before_each(function() H.new_home() end)
  after_each(function()
    for _, pid in ipairs(jobs) do
      if H.alive(pid) then core.killpg(pid, 9); core.kill(pid, 9) end
    end
    jobs = {}
    H.cleanup()
  end)

  it("pm start srv.js -i 4: 4 instances online in cluster mode, sharing the port the script listens on", function()
    local port = H.free_port()
    local script = srv()
    ok(H.pm("start", script, "-i", "4", "--", tostring(port)), "pm start srv.js -i 4")
    local _, pids = all_online("srv", 4)
    local seen = answering(port, pids)
    local n = 0
    for _ in pairs(seen) do n = n + 1 end
    assert.is_true(n >= 2)
    H.wait_for(function()
      for _, p in ipairs(procs("srv")) do
        if not H.contains(H.home .. "/logs/srv-out-" .. p.pm_id .. ".log", "listening " .. port) then return false end
      end
      return true
    end, 10000, "each instance's listen callback")
    local errs = errors_of("srv")
    assert.is_falsy(errs:find("EADDRINUSE", 1, true), errs)
    -- the port is the app's: in its declaration, as pm learned it
    local d = assert(util.decode(ok(H.pm("describe", "srv", "--json")).out))[1].pm2_env
    assert.same({ "tcp://:" .. port }, d.learned_listen)
    -- (the instances all listen on the one socket the daemon holds)
    assert.equal(0, count(procs("srv"), "errored"))
  end)

  it("each instance is a worker of the cluster, as PM2's: an app's `if (cluster.isPrimary) fork()` forks nothing",
    function()
    local port = H.free_port()
    local script = H.script("classic.js", [[
'use strict';
const cluster = require('cluster');
if (cluster.isPrimary || cluster.isMaster) {
  for (let i = 0; i < 2; i++) cluster.fork();
  console.log('primary ' + process.pid);
} else {
  require('http').createServer((q, r) => r.end('pid ' + process.pid + '\n'))
    .listen(Number(process.argv[2]), () => console.log('worker ' + cluster.worker.id + ' ' + cluster.isWorker));
}
]], "644")
    ok(H.pm("start", script, "-i", "2", "--", tostring(port)), "pm start classic.js -i 2")
    local _, pids = all_online("classic", 2)
    H.wait_for(function()
      for _, p in ipairs(procs("classic")) do
        if not H.contains(H.home .. "/logs/classic-out-" .. p.pm_id .. ".log", "worker " .. (p.pm_id + 1) .. " true")
        then return false end
      end
      return true
    end, 10000, "each instance in the worker's branch, cluster.worker.id its pm_id + 1")
    answering(port, pids)
    for _, p in ipairs(procs("classic")) do
      assert.is_falsy(H.contains(H.home .. "/logs/classic-out-" .. p.pm_id .. ".log", "primary"))
      local kids = util.read_file(("/proc/%d/task/%d/children"):format(p.pid, p.pid)) or ""
      assert.equal("", kids:gsub("%s", ""), "instance " .. p.pm_id .. " forked workers")
    end
  end)

  it("instances that lost a connection to another go on living: none blocks in accept", function()
    -- each instance says it is alive every 100 ms; a socket handed over
    -- blocking would leave the instances that lose a connection's race
    -- stuck in accept(), silent until the next connection
    local port = H.free_port()
    local file = H.script("tick.js", SRV .. "setInterval(() => console.log(`tick ${process.pid}`), 100);\n", "644")
    ok(H.pm("start", file, "-i", "4", "--name", "tick", "-s", "--", tostring(port)))
    local _, pids = all_online("tick", 4)
    answering(port, pids)
    for _ = 1, 8 do assert(get_pid(port)) end
    local function ticks()
      local n = {}
      for line in H.sh("cat " .. q(H.home) .. "/logs/tick-out*.log").out:gmatch("tick (%d+)") do
        n[line] = (n[line] or 0) + 1
      end
      return n
    end
    local before = ticks()
    H.wait_for(function()
      local now = ticks()
      for pid in pairs(pids) do
        if (now[tostring(pid)] or 0) < (before[tostring(pid)] or 0) + 5 then return false end
      end
      return true
    end, 10000, "five more ticks of every instance")
  end)

  it("pm start app.js -i max: one instance per CPU, all online on one port", function()
    local port = H.free_port()
    local script = H.script("app.js", SRV, "644")
    ok(H.pm("start", script, "-i", "max", "--", tostring(port)), "pm start app.js -i max")
    local n = appdecl.cpu_count()
    local _, pids = all_online("app", n)
    if n > 1 then answering(port, pids) else serving(port) end
  end)

  it("pm reload of the cluster: no failed request, every process replaced", function()
    local port = H.free_port()
    ok(H.pm("start", srv(), "-i", "4", "--", tostring(port)))
    local before = all_online("srv", 4)
    serving(port)
    local load = start_load(port)
    ok(H.pm("reload", "srv", "-s"), "pm reload srv")
    local tally = stop_load(load)
    assert.equal(0, tally.failed, "failed requests: " .. util.encode(tally.errors))
    assert.is_true(tally.ok > 0)
    local after = procs("srv")
    assert.equal(4, count(after, "online"))
    for i, p in ipairs(after) do
      assert.are_not.equal(before[i].pid, p.pid)
      assert.truthy(held_socket(p.pid, port), "the new process was not given the port at its start")
    end
  end)

  it("pm reload waits for each new process to listen before the old one goes; one that dies first aborts it",
    function()
    local port = H.free_port()
    local broken = H.home .. "/broken"
    -- it listens 1.5 s after its start, says so and says its end (in its
    -- instance's log: the old process's lines and the new one's, in order)
    local slow = H.script("slow.js", ([[
const fs = require('fs');
if (fs.existsSync(%q)) throw new Error('broken deploy');
process.on('SIGINT', () => { console.log('bye ' + process.pid); process.exit(0); });
setTimeout(() => {
  require('http').createServer((q, r) => r.end(String(process.pid))).listen(%d, () => {
    console.log('listening ' + process.pid);
  });
}, 1500);
]]):format(broken, port), "644")
    -- (listen_timeout far above the 1.5 s: ready by listening, never by the timeout)
    ok(H.pm("start", slow, "-i", "2", "--listen-timeout", "30000", "-s"))
    local before = all_online("slow", 2)
    local log = H.home .. "/logs/slow-out-" .. before[1].pm_id .. ".log"
    H.wait_for(function() return (util.read_file(log) or ""):find("listening " .. before[1].pid, 1, true) end,
      10000, "the first instance listening")
    ok(H.pm("reload", "slow", "-s"))
    local after = procs("slow")
    local text = util.read_file(log) or ""
    local new_at = text:find("listening " .. after[1].pid, 1, true)
    local bye_at = text:find("bye " .. before[1].pid, 1, true)
    assert.truthy(new_at and bye_at, text)
    assert.is_true(new_at < bye_at, "the old process ended before the new one listened: " .. text)
    assert.equal("listen", after[1].pm2_env.ready)
    -- a deploy whose processes die at their start: the reload is aborted,
    -- the old processes keep serving
    H.write(broken, "")
    local r = H.pm("reload", "slow", "-s")
    assert.are_not.equal(0, r.code, r.out)
    assert.truthy(r.err:find("aborted", 1, true), r.err)
    for i, p in ipairs(procs("slow")) do
      assert.equal(after[i].pid, p.pid)
      assert.is_true(H.alive(p.pid))
    end
    -- an aborted reload leaves nothing behind: a restart is online at once
    os.remove(broken)
    ok(H.pm("restart", "slow", "-s"))
    for _, p in ipairs(procs("slow")) do
      assert.equal("online", p.pm2_env.status)
      assert.equal("start", p.pm2_env.ready)
    end
  end)

  it("pm stop frees the port (a client is refused, another program may bind it); pm start binds it again",
    function()
    local port = H.free_port()
    ok(H.pm("start", srv(), "-i", "2", "--", tostring(port)))
    all_online("srv", 2)
    serving(port)
    ok(H.pm("stop", "srv", "-s"))
    local bind = ("%s -c %s"):format(PY, q(("import socket,sys\ns=socket.socket()\n"
      .. "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\ns.bind(('0.0.0.0', %d))\ns.listen()\n"
      .. "c=socket.socket()\nc.connect(('127.0.0.1', %d))\nprint('bound')"):format(port, port)))
    local r = H.sh(bind)
    assert.equal(0, r.code, "the port is still held after pm stop: " .. r.err)
    assert.truthy(r.out:find("bound", 1, true))
    local refused = H.sh(("%s -c %s"):format(PY, q(("import socket\ntry:\n"
      .. "  socket.create_connection(('127.0.0.1', %d), 2)\n  print('accepted')\n"
      .. "except ConnectionRefusedError:\n  print('refused')"):format(port))))
    assert.equal("refused\n", refused.out)
    ok(H.pm("start", "srv", "-s"))
    all_online("srv", 2, 0)
    serving(port)
  end)

  it("a restart keeps the port: the processes get the same held socket from their start", function()
    local port = H.free_port()
    ok(H.pm("start", srv(), "-i", "2", "--", tostring(port)))
    local list = all_online("srv", 2)
    serving(port)
    ok(H.pm("restart", "srv", "-s"), "pm restart srv")
    -- at once: the daemon holds the port, a connection waits for an instance
    assert.truthy(get_pid(port))
    local again = all_online("srv", 2, 1)
    local sock = held_socket(again[1].pid, port)
    assert.truthy(sock, "PM_LISTEN_MAP of a restarted process has no port " .. port)
    for i, p in ipairs(again) do
      assert.are_not.equal(list[i].pid, p.pid)
      assert.equal(sock, held_socket(p.pid, port))
    end
    assert.equal(1, H.count(H.pm_log(), "listens on tcp://:" .. port), H.pm_log())
    -- and a resurrect: the saved declaration has the port
    ok(H.pm("save"), "pm save")
    ok(H.pm("kill"), "pm kill")
    ok(H.pm("resurrect"), "pm resurrect")
    local back = all_online("srv", 2) -- (what a resurrect starts counts from 0, as in PM2)
    for _, p in ipairs(back) do
      assert.truthy(held_socket(p.pid, port), "a resurrected process was not given the port at its start")
    end
    serving(port)
  end)

  it("a script that is not Node, with -i 4, stays in fork mode (PM2's rule); so does Node without -i", function()
    local sh = H.script("worker.sh", "#!/bin/sh\nexec sleep 1000\n")
    ok(H.pm("start", sh, "-i", "4"), "pm start worker.sh -i 4")
    local list
    H.wait_for(function()
      list = procs("worker")
      return #list == 4 and count(list, "online") == 4
    end, 10000, "4 workers online")
    for _, p in ipairs(list) do assert.equal("fork_mode", p.pm2_env.exec_mode) end
    local port = H.free_port()
    ok(H.pm("start", srv(), "--", tostring(port)), "pm start srv.js")
    H.wait_for(function() return H.status("srv") == "online" end, 10000, "srv online")
    assert.equal("fork_mode", H.proc("srv").pm2_env.exec_mode)
    -- an ecosystem file that says fork keeps fork
    H.lua_eco(('{ { name = "forked", script = %q, instances = 2, exec_mode = "fork", args = { "%d" } } }')
      :format(H.home .. "/srv.js", H.free_port()))
    ok(H.pm("start", H.home .. "/ecosystem.config.lua"))
    for _, p in ipairs(procs("forked")) do assert.equal("fork_mode", p.pm2_env.exec_mode) end
  end)

  it("an instance asking for a port another app holds gets a clear error; the other app keeps it", function()
    local port = H.free_port()
    local script = srv()
    ok(H.pm("start", script, "-i", "2", "--name", "first", "--", tostring(port)))
    local _, pids = all_online("first", 2)
    answering(port, pids)
    H.pm("start", script, "-i", "2", "--name", "second", "-f", "--", tostring(port))
    local want = ("port %d is held by pm for app 'first'"):format(port)
    H.wait_for(function() return errors_of("second"):find(want, 1, true) end, 15000,
      "the error in second's log")
    assert.truthy(H.pm_log():find(want, 1, true), "pm.log does not say it")
    local pid = get_pid(port)
    assert.truthy(pids[pid], "the port is not first's any more")
  end)

  it("an app of another user shares its port (its preload is outside PM_HOME); a privileged port: refused", function()
    if core.getuid() ~= 0 then
      pending("needs root: only a daemon running as root runs apps as another user")
      return
    end
    -- (a folder nobody can reach: the home is 0700)
    local p = io.popen("mktemp -d " .. q(H.src .. "/tests/tmp/open.XXXXXX"))
    local dir = p:read("*l")
    p:close()
    core.chmod(dir, 493)
    local script = dir .. "/srv.js"
    H.write(script, SRV)
    core.chmod(script, 420)
    local port, high = 1000 + math.random(0, 20), H.free_port()
    H.lua_eco(('{ { name = "low", script = %q, cwd = %q, user = "nobody", instances = 2, args = { "%d" },'
      .. ' max_restarts = 2, min_uptime = 5000 },'
      .. ' { name = "high", script = %q, cwd = %q, user = "nobody", instances = 2, args = { "%d" } } }')
      :format(script, dir, port, script, dir, high))
    H.pm("start", H.home .. "/ecosystem.config.lua")
    local want = ("port %d is privileged and app 'low' runs as uid"):format(port)
    local found = pcall(H.wait_for, function() return errors_of("low"):find(want, 1, true) end, 15000)
    local errs = errors_of("low")
    local served, why = pcall(function()
      local _, pids = all_online("high", 2)
      answering(high, pids)
    end)
    local herrs = errors_of("high")
    H.cleanup()
    os.execute("rm -rf " .. q(dir))
    assert(found, "the refusal is not in low's log:\n" .. errs)
    assert(served, tostring(why) .. "\n" .. herrs)
  end)
end)
