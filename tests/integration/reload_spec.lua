-- Zero-downtime reload (issue 7) against a real daemon: readiness by IPC,
-- sd_notify and listen_timeout; daemon-held sockets passed by socket
-- activation (LISTEN_FDS) to Node and Python apps; the rolling reload under
-- a client load, its abort and its refusal while one runs; stop-then-start
-- for apps without sockets; health checks (http, tcp, exec); depends_on;
-- pm scale; PM2 cluster-mode files.
local H = require "pmtest"
local util = require "pm.util"
local core = require "pm.core"
local pm = require "pm"

local F = H.fixtures
local q = H.shquote
local PY = core.access("/usr/bin/python3", "x") and "/usr/bin/python3" or "python3"
local NODE = core.access("/usr/bin/node", "x") and "/usr/bin/node" or "node"
local SERVER_PY = F .. "/rl_server.py"
local SERVER_JS = F .. "/rl_server.js"
local CLIENT = F .. "/rl_client.py"

math.randomseed(core.getpid() * 1000 + core.now() % 1000)

-- ---- helpers ----

local free_port, ok, fails, write = H.free_port, H.ok, H.fails, H.write

-- A PM2-style JSON ecosystem file in the home.
local function eco(name, apps)
  local path = H.home .. "/" .. name .. ".json"
  write(path, util.encode({ apps = apps }))
  return path
end

local pmcmd = H.command

local procs = H.named

local function count_status(list, status)
  local n = 0
  for _, p in ipairs(list) do
    if p.pm2_env.status == status then n = n + 1 end
  end
  return n
end

local function describe_json(name)
  local r = ok(H.pm("describe", name, "--json"), "describe")
  return assert(util.decode(r.out))[1]
end

local environ = H.environ

-- What /proc/PID/fd/N points to ("socket:[123]").
local function fd_link(pid, fd)
  local p = io.popen(("readlink /proc/%d/fd/%d 2>/dev/null"):format(pid, fd))
  local s = p:read("*l")
  p:close()
  return s
end

-- One GET through rl_client.py: code (0 answered 200), body.
local function get(addr, path, timeout)
  local r = H.sh(("%s %s get %s %s %s"):format(PY, q(CLIENT), q(addr), q(path or "/"), tostring(timeout or 5)))
  return r.code, r.out
end

local function env_of(addr)
  local code, body = get(addr, "/env")
  assert(code == 0, "GET /env on " .. addr .. ": " .. body)
  return assert(util.decode(body))
end

local function tcp_connects(port)
  return H.sh(("%s %s connect 127.0.0.1 %d"):format(PY, q(CLIENT), port)).code == 0
end

local function can_bind(port)
  return H.sh(("%s %s bind 127.0.0.1 %d"):format(PY, q(CLIENT), port)).code == 0
end

-- Background jobs (a command in its own session, killed by its pid's group
-- at the end of each test): pm commands that block, client loads.
local jobs = {}
local function bg(cmd, tag)
  local base = H.home .. "/" .. tag
  local inner = ("cd %s && PM_HOME=%s %s >%s 2>%s </dev/null; echo $? >%s && mv %s %s"):format(
    q(H.src), q(H.home), cmd, q(base .. ".out"), q(base .. ".err"), q(base .. ".rc.tmp"),
    q(base .. ".rc.tmp"), q(base .. ".rc"))
  local p = io.popen("setsid /bin/sh -c " .. q(inner) .. " >/dev/null 2>&1 </dev/null & echo $!")
  local pid = tonumber(p:read("*l"))
  p:close()
  local job = { pid = assert(pid), base = base }
  jobs[#jobs + 1] = job
  return job
end

local function finished(job)
  return util.read_file(job.base .. ".rc") ~= nil
end

local function result(job, ms, what)
  H.wait_for(function() return finished(job) end, ms or 10000, what or job.base)
  return { code = tonumber(util.read_file(job.base .. ".rc")), out = util.read_file(job.base .. ".out") or "",
    err = util.read_file(job.base .. ".err") or "" }
end

local function kill_jobs()
  for _, job in ipairs(jobs) do
    if H.alive(job.pid) then core.killpg(job.pid, 9); core.kill(job.pid, 9) end
  end
  jobs = {}
end

local holds, pump = H.holds, H.pump

-- process:event packets on a bus, pumped by the client's loop.
local function event_log()
  local bus = assert(pm.launchBus())
  local got = {}
  assert(bus:on("process:event", function(packet) got[#got + 1] = packet end))
  return got
end

local function events_of(got, what, pm_id)
  local out = {}
  for _, e in ipairs(got) do
    if e.event == what and (pm_id == nil or e.process.pm_id == pm_id) then out[#out + 1] = e end
  end
  return out
end

local function lines(path)
  local t = {}
  for l in (util.read_file(path) or ""):gmatch("[^\n]+") do t[#t + 1] = l end
  return t
end

local function index_of(list, value, from)
  for i = from or 1, #list do
    if list[i] == value then return i end
  end
end

-- In an app's out log, the new process said "ready" before the old one
-- said "stopped": it was started anew before the old one was stopped.
local function new_before_old(path, new_pid, old_pid)
  local l
  H.wait_for(function()
    l = lines(path)
    return index_of(l, "stopped pid " .. old_pid)
  end, 5000, "stopped pid " .. old_pid .. " in " .. path)
  local r, s = index_of(l, "ready pid " .. new_pid), index_of(l, "stopped pid " .. old_pid)
  assert(r and r < s, ("%s: the old process %d stopped before the new %d was ready:\n%s"):format(path, old_pid,
    new_pid, table.concat(l, "\n")))
end

-- A background client load on 127.0.0.1:port (new connection per request),
-- bounded in time and count; stop(load) ends it and returns its tally.
local function start_load(port, tag)
  local out = H.home .. "/" .. tag .. ".json"
  local stopfile = H.home .. "/" .. tag .. ".stop"
  local job = bg(("%s %s load 127.0.0.1 %d 60 400000 4 %s %s"):format(PY, q(CLIENT), port, q(out), q(stopfile)), tag)
  H.wait_for(function() return core.stat(out .. ".up") end, 10000, "the first answer to the load")
  return { job = job, out = out, stopfile = stopfile }
end

local function stop_load(load)
  write(load.stopfile, "")
  H.wait_for(function() return core.stat(load.out) end, 15000, "the load's tally")
  return assert(util.decode(util.read_file(load.out)))
end

-- ---- specs ----

describe("zero-downtime reload", function()
  before_each(function() H.new_home() end)
  after_each(function()
    pm.disconnect()
    kill_jobs()
    H.cleanup()
  end)

  describe("readiness", function()
    it("wait_ready: a Node app is launching until process.send('ready'), and pm start waits for it", function()
      local flag = H.home .. "/go"
      local file = eco("ipc", { { name = "ipc", script = SERVER_JS, interpreter = NODE, wait_ready = true,
        listen_timeout = 30000, env = { RL_READY_FLAG = flag } } })
      local job = bg(pmcmd("start", file, "-s"), "start")
      H.wait_for(function() return H.status("ipc") == "launching" end, 5000, "ipc launching")
      local p = H.proc("ipc")
      assert.is_true(H.alive(p.pid))
      holds(function() return H.status("ipc") == "launching" and not finished(job) end, 400,
        "ipc launching and pm start waiting")
      write(flag, "")
      local r = result(job, 10000, "pm start")
      ok(r, "pm start")
      -- the moment pm start returns, the app is online, by its IPC message
      p = H.proc("ipc")
      assert.equal("online", p.pm2_env.status)
      assert.equal("ipc", p.pm2_env.ready)
      assert.equal(0, p.pm2_env.restart_time)
    end)

    it("READY=1 on NOTIFY_SOCKET from a Python app makes it online; STATUS= shows in describe", function()
      local flag = H.home .. "/go"
      local file = eco("notify", { { name = "py", script = SERVER_PY, interpreter = PY, wait_ready = true,
        listen_timeout = 30000, env = { RL_READY_FLAG = flag, RL_STATUS = "warming up" } } })
      local job = bg(pmcmd("start", file, "-s"), "start")
      H.wait_for(function()
        local d = H.proc("py")
        return d and d.pm2_env.status == "launching" and type(d.pm2_env.notify) == "table"
          and d.pm2_env.notify.status == "warming up"
      end, 5000, "py launching with STATUS=warming up")
      local env = environ(H.proc("py").pid)
      assert.equal(H.home .. "/notify.sock", env.NOTIFY_SOCKET)
      holds(function() return H.status("py") == "launching" and not finished(job) end, 300,
        "py launching and pm start waiting")
      write(flag, "")
      ok(result(job, 10000, "pm start"), "pm start")
      local d = describe_json("py")
      assert.equal("online", d.pm2_env.status)
      assert.equal("notify", d.pm2_env.ready)
      assert.equal("serving", d.pm2_env.notify.status)
    end)

    it("STATUS= text shows in pm describe and pm list (the issue: 'shown in describe and pm list')", function()
      local file = eco("notify", { { name = "py", script = SERVER_PY, interpreter = PY, wait_ready = true,
        env = { RL_STATUS = "warming up" } } })
      ok(H.pm("start", file, "-s"))
      H.wait_for(function()
        local n = describe_json("py").pm2_env.notify
        return type(n) == "table" and n.status == "serving"
      end, 5000, "STATUS=serving")
      local desc = ok(H.pm("describe", "py")).out
      local list = ok(H.pm("list")).out
      local missing = {}
      if not desc:find("serving", 1, true) then missing[#missing + 1] = "pm describe:\n" .. desc end
      if not list:find("serving", 1, true) then missing[#missing + 1] = "pm list:\n" .. list end
      assert(#missing == 0, "STATUS=serving is not shown by " .. table.concat(missing, "\n"))
    end)

    it("READY=1 sent by a child of a shell app (socat) counts for the app", function()
      local file = eco("sh", { { name = "shy", script = F .. "/rl_notify.sh", wait_ready = true,
        listen_timeout = 30000 } })
      ok(H.pm("start", file, "-s"))
      local d = describe_json("shy")
      assert.equal("online", d.pm2_env.status)
      assert.equal("notify", d.pm2_env.ready)
      assert.equal("shell serving", d.pm2_env.notify.status)
    end)

    it("listen_timeout: an app that never says ready is online after it, with a warning in pm.log", function()
      local file = eco("idle", { { name = "idle", script = F .. "/rl_idle.sh", wait_ready = true,
        listen_timeout = 700 } })
      local t0 = core.mono()
      local job = bg(pmcmd("start", file, "-s"), "start")
      H.wait_for(function() return H.status("idle") == "launching" end, 5000, "idle launching")
      local pid = H.proc("idle").pid
      ok(result(job, 10000, "pm start"), "pm start")
      local elapsed = core.mono() - t0
      assert.is_true(elapsed >= 650, "pm start returned after " .. elapsed .. " ms, before listen_timeout")
      local p = H.proc("idle")
      assert.equal("online", p.pm2_env.status)
      assert.equal("listen_timeout", p.pm2_env.ready)
      assert.equal(pid, p.pid)
      assert.is_true(H.alive(pid))
      local log = util.read_file(H.home .. "/pm.log") or ""
      assert.is_truthy(log:find("idle (0) did not say it is ready within listen_timeout 700 ms", 1, true),
        "no warning in pm.log:\n" .. log)
    end)
  end)

  describe("LISTEN_FDS", function()
    it("a Node app gets LISTEN_FDS=1, LISTEN_PID = its pid, LISTEN_FDNAMES, serves fd 3; IPC at fd 4", function()
      local port = free_port()
      local file = eco("node", { { name = "web", script = SERVER_JS, interpreter = NODE, wait_ready = true,
        listen = { "tcp://127.0.0.1:" .. port } } })
      ok(H.pm("start", file, "-s"))
      local p = H.proc("web")
      assert.equal("ipc", p.pm2_env.ready) -- process.send worked over fd 4
      local e = env_of("127.0.0.1:" .. port)
      assert.equal(p.pid, e.pid)
      assert.equal("1", e.LISTEN_FDS)
      assert.equal(tostring(p.pid), e.LISTEN_PID)
      assert.is_truthy(type(e.LISTEN_FDNAMES) == "string" and e.LISTEN_FDNAMES ~= ""
        and not e.LISTEN_FDNAMES:find(":", 1, true), "LISTEN_FDNAMES: " .. tostring(e.LISTEN_FDNAMES))
      assert.is_true(e.fds["3"].socket)
      assert.is_true(e.fds["4"].socket)
      assert.is_true(e.connected)
      assert.equal("4", environ(p.pid).NODE_CHANNEL_FD)
      assert.is_truthy(fd_link(p.pid, 3):match("^socket:"))
    end)

    it("a Python app gets the same: fd 3 the listening socket on the port, fd 4 the IPC channel", function()
      local port = free_port()
      local file = eco("py", { { name = "py", script = SERVER_PY, interpreter = PY, wait_ready = true,
        listen = { "tcp://127.0.0.1:" .. port } } })
      ok(H.pm("start", file, "-s"))
      local p = H.proc("py")
      assert.equal("notify", p.pm2_env.ready)
      local e = env_of("127.0.0.1:" .. port)
      assert.equal(p.pid, e.pid)
      assert.equal("1", e.LISTEN_FDS)
      assert.equal(tostring(p.pid), e.LISTEN_PID)
      assert.is_truthy(e.LISTEN_FDNAMES and e.LISTEN_FDNAMES ~= "")
      local fd3 = e.fds["3"]
      assert.is_true(fd3.socket and fd3.listening and fd3.stream)
      assert.equal("inet", fd3.family)
      assert.same({ "127.0.0.1", port }, fd3.name)
      assert.equal("4", e.NODE_CHANNEL_FD)
      local fd4 = e.fds["4"]
      assert.is_true(fd4.socket and fd4.stream)
      assert.equal("unix", fd4.family)
      assert.is_false(fd4.listening)
    end)

    it("tcp and unix: listen together gives LISTEN_FDS=2, both served, the IPC channel at fd 5", function()
      local port = free_port()
      local path = H.home .. "/rl.sock"
      local file = eco("two", { { name = "two", script = SERVER_PY, interpreter = PY, wait_ready = true,
        listen = { "tcp://127.0.0.1:" .. port, "unix:" .. path } } })
      ok(H.pm("start", file, "-s"))
      local p = H.proc("two")
      local e = env_of("127.0.0.1:" .. port)
      local u = env_of("unix:" .. path)
      assert.equal(p.pid, e.pid)
      assert.equal(p.pid, u.pid)
      assert.equal("2", e.LISTEN_FDS)
      assert.equal(tostring(p.pid), e.LISTEN_PID)
      local names = {}
      for n in e.LISTEN_FDNAMES:gmatch("[^:]+") do names[#names + 1] = n end
      assert.equal(2, #names, "LISTEN_FDNAMES: " .. e.LISTEN_FDNAMES)
      assert.is_true(e.fds["3"].listening)
      assert.equal("inet", e.fds["3"].family)
      assert.is_true(e.fds["4"].listening)
      assert.equal("unix", e.fds["4"].family)
      assert.equal(path, e.fds["4"].name)
      assert.equal("5", e.NODE_CHANNEL_FD)
      assert.equal("unix", e.fds["5"].family)
      assert.is_false(e.fds["5"].listening)
    end)
  end)

  describe("held sockets", function()
    it("with the app stopped, connections wait in the backlog and are served once it starts", function()
      local port = free_port()
      local file = eco("held", { { name = "held", script = SERVER_PY, interpreter = PY, wait_ready = true,
        listen = { "tcp://127.0.0.1:" .. port } } })
      ok(H.pm("start", file, "-s"))
      ok(H.pm("stop", "held", "-s"))
      assert.equal("stopped", H.status("held"))
      assert.is_true(tcp_connects(port), "a connect to the held port of a stopped app was refused")
      -- a request made while it is stopped is answered by the next process
      local waiting = bg(("%s %s get 127.0.0.1:%d / 20"):format(PY, q(CLIENT), port), "waiting")
      holds(function() return not finished(waiting) end, 200, "the request waits")
      ok(H.pm("start", "held", "-s"))
      local r = result(waiting, 15000, "the waiting request")
      assert.equal(0, r.code, r.out)
      assert.equal(("pid %d inst 0\n"):format(H.proc("held").pid), r.out)
    end)

    it("re-declared on another port, the app serves there and the old port is released", function()
      local p1, p2 = free_port(), free_port()
      local function file(port)
        return eco("move", { { name = "mv", script = SERVER_PY, interpreter = PY, wait_ready = true,
          listen = { "tcp://127.0.0.1:" .. port } } })
      end
      ok(H.pm("start", file(p1), "-s"))
      ok(H.pm("start", file(p2), "-s"))
      local p = H.proc("mv")
      local code, body = get("127.0.0.1:" .. p2, "/")
      assert.equal(0, code, body)
      assert.equal(("pid %d inst 0\n"):format(p.pid), body)
      assert.is_false(tcp_connects(p1), "the old port " .. p1 .. " still accepts")
    end)

    it("a second app on a port another app holds is refused with the address in the message", function()
      local port = free_port()
      local function app(name)
        return { name = name, script = SERVER_PY, interpreter = PY, listen = { "tcp://127.0.0.1:" .. port } }
      end
      ok(H.pm("start", eco("first", { app("first") }), "-s"))
      local r = fails(H.pm("start", eco("second", { app("second") }), "-s"), tostring(port))
      assert.is_truthy(r.err:lower():find("in use", 1, true), r.err)
      assert.equal("online", H.status("first"))
      assert.are_not.equal("online", H.status("second"))
    end)

    it("after pm delete the port is free again", function()
      local port = free_port()
      local file = eco("held", { { name = "held", script = SERVER_PY, interpreter = PY, wait_ready = true,
        listen = { "tcp://127.0.0.1:" .. port } } })
      ok(H.pm("start", file, "-s"))
      ok(H.pm("delete", "held", "-s"))
      assert.equal(0, #H.jlist())
      assert.is_false(tcp_connects(port), "port " .. port .. " still accepts connections after delete")
      assert.is_true(can_bind(port), "port " .. port .. " cannot be bound after delete")
    end)
  end)

  describe("pm reload", function()
    it("rolls through 4 instances under load: no failed request, >= 3 online at every poll", function()
      local port = free_port()
      local file = eco("roll", { { name = "roll", script = SERVER_PY, interpreter = PY, instances = 4,
        wait_ready = true, listen_timeout = 5000, listen = { "tcp://127.0.0.1:" .. port },
        env = { RL_READY_DELAY = "150" } } })
      ok(H.pm("start", file, "-s"))
      local before = procs("roll")
      assert.equal(4, #before)
      assert.equal(4, count_status(before, "online"))
      local got = event_log()
      local load = start_load(port, "load")
      local job = bg(pmcmd("reload", "roll", "-s"), "reload")
      local polls, min_online, saw_launching = 0, 4, false
      while not finished(job) do
        local list = procs("roll")
        assert.equal(4, #list)
        polls = polls + 1
        min_online = math.min(min_online, count_status(list, "online"))
        if count_status(list, "launching") > 0 then saw_launching = true end
        assert(min_online >= 3, "fewer than 3 instances online during the reload: " .. min_online)
        assert(polls < 2000, "the reload does not end")
      end
      local r = result(job)
      local tally = stop_load(load)
      ok(r, "pm reload")
      assert.is_true(polls >= 3, "only " .. polls .. " polls during the reload")
      assert.is_true(saw_launching, "no replacement was seen launching during the reload")
      assert.is_true(min_online >= 3)
      assert.equal(0, tally.failed, "failed requests: " .. util.encode(tally.errors))
      assert.is_true(tally.ok > 20, "only " .. tally.ok .. " requests answered")
      local after = procs("roll")
      assert.equal(4, #after)
      for i, p in ipairs(after) do
        local old = before[i]
        assert.equal(old.pm_id, p.pm_id)
        assert.equal("online", p.pm2_env.status)
        assert.are_not.equal(old.pid, p.pid)
        assert.equal(old.pm2_env.restart_time + 1, p.pm2_env.restart_time)
        assert.equal(old.pm2_env.NODE_APP_INSTANCE, p.pm2_env.NODE_APP_INSTANCE)
        assert.is_false(H.alive(old.pid), "old pid " .. old.pid .. " still runs")
        new_before_old(("%s/logs/roll-out-%d.log"):format(H.home, p.pm_id), p.pid, old.pid)
      end
      pump(function() return #events_of(got, "reload") >= 4 end, 5000, "4 reload events")
      local ids = {}
      for _, e in ipairs(events_of(got, "reload")) do ids[e.process.pm_id] = true end
      for _, p in ipairs(after) do assert.is_true(ids[p.pm_id], "no reload event for " .. p.pm_id) end
    end)

    it("a replacement that never becomes ready aborts the reload; the old processes keep serving", function()
      local port = free_port()
      local flag = H.home .. "/fail"
      local file = eco("abort", { { name = "ab", script = SERVER_PY, interpreter = PY, instances = 2,
        wait_ready = true, listen = { "tcp://127.0.0.1:" .. port }, env = { RL_FAIL_FLAG = flag } } })
      ok(H.pm("start", file, "-s"))
      local before = procs("ab")
      write(flag, "")
      local r = fails(H.pm("reload", "ab", "-s"), "aborted")
      assert.is_truthy(r.err:find("keeps serving", 1, true), r.err)
      local after = procs("ab")
      assert.equal(2, #after)
      local old = {}
      for i, p in ipairs(after) do
        assert.equal(before[i].pid, p.pid)
        assert.equal("online", p.pm2_env.status)
        assert.equal(0, p.pm2_env.restart_time)
        assert.is_true(H.alive(p.pid))
        old[p.pid] = true
      end
      for _ = 1, 4 do
        local code, body = get("127.0.0.1:" .. port, "/")
        assert.equal(0, code, body)
        assert.is_true(old[tonumber(body:match("^pid (%d+)"))], "served by " .. body)
      end
      -- once the cause is gone, a reload goes through
      os.remove(flag)
      ok(H.pm("reload", "ab", "-s"), "the second reload")
      for i, p in ipairs(procs("ab")) do
        assert.are_not.equal(before[i].pid, p.pid)
        assert.equal("online", p.pm2_env.status)
      end
    end)

    it("a second reload while one runs is refused with a clear message", function()
      local port = free_port()
      local flag = H.home .. "/ready"
      write(flag, "")
      local file = eco("twice", { { name = "tw", script = SERVER_PY, interpreter = PY, instances = 2,
        wait_ready = true, listen_timeout = 30000, listen = { "tcp://127.0.0.1:" .. port },
        env = { RL_READY_FLAG = flag } } })
      ok(H.pm("start", file, "-s"))
      os.remove(flag) -- the replacements wait for it
      local job = bg(pmcmd("reload", "tw", "-s"), "reload")
      H.wait_for(function() return count_status(procs("tw"), "launching") == 1 end, 5000, "a replacement launching")
      -- in the background with a deadline: a reload that is not refused would wait too
      fails(result(bg(pmcmd("reload", "tw", "-s"), "again"), 5000, "the refusal"), "reload of tw is under way")
      fails(result(bg(pmcmd("reload", tostring(procs("tw")[2].pm_id), "-s"), "again2"), 5000, "the refusal"),
        "under way")
      assert.is_false(finished(job))
      write(flag, "")
      ok(result(job, 10000, "the first reload"), "the first reload")
      for _, p in ipairs(procs("tw")) do
        assert.equal("online", p.pm2_env.status)
        assert.equal(1, p.pm2_env.restart_time)
      end
    end)

    it("an app without listen reloads by stop-then-start and answers right after", function()
      local port = free_port()
      local file = eco("plain", { { name = "plain", script = SERVER_PY, interpreter = PY, wait_ready = true,
        env = { RL_PORT = tostring(port) } } })
      ok(H.pm("start", file, "-s"))
      local before = H.proc("plain")
      local got = event_log()
      ok(H.pm("reload", "plain", "-s"))
      local code, body = get("127.0.0.1:" .. port, "/")
      local after = H.proc("plain")
      assert.equal(0, code, body)
      assert.equal(("pid %d inst 0\n"):format(after.pid), body)
      assert.are_not.equal(before.pid, after.pid)
      assert.equal(1, after.pm2_env.restart_time)
      assert.equal("online", after.pm2_env.status)
      assert.is_false(H.alive(before.pid))
      -- the old process was gone before the new one started
      pump(function() return #events_of(got, "online") >= 1 end, 5000, "online event")
      local order = {}
      for _, e in ipairs(got) do order[#order + 1] = e.event end
      local exit_at = index_of(order, "exit")
      local start_at = index_of(order, "start")
      assert.is_truthy(exit_at and start_at and exit_at < start_at, "events: " .. table.concat(order, ","))
    end)
  end)

  describe("pm reload, more", function()
    it("a single instance with listen starts anew before the old one stops: no failed request", function()
      local port = free_port()
      local file = eco("one", { { name = "one", script = SERVER_PY, interpreter = PY, wait_ready = true,
        listen = { "tcp://127.0.0.1:" .. port }, env = { RL_READY_DELAY = "200" } } })
      ok(H.pm("start", file, "-s"))
      local before = H.proc("one")
      local load = start_load(port, "load")
      ok(H.pm("reload", "one", "-s"))
      local tally = stop_load(load)
      local after = H.proc("one")
      assert.are_not.equal(before.pid, after.pid)
      assert.equal(1, after.pm2_env.restart_time)
      assert.equal(0, tally.failed, "failed requests: " .. util.encode(tally.errors))
      assert.is_true(tally.ok > 5)
      new_before_old(H.home .. "/logs/one-out.log", after.pid, before.pid)
    end)

    it("Node, 2 instances, shutdown_with_message: no failed request, the old ones told by message", function()
      local port = free_port()
      local file = eco("nd", { { name = "nd", script = SERVER_JS, interpreter = NODE, instances = 2,
        wait_ready = true, shutdown_with_message = true, listen = { "tcp://127.0.0.1:" .. port },
        merge_logs = true, env = { RL_READY_DELAY = "100" } } })
      ok(H.pm("start", file, "-s"))
      local before = procs("nd")
      local load = start_load(port, "load")
      ok(H.pm("reload", "nd", "-s"))
      local tally = stop_load(load)
      assert.equal(0, tally.failed, "failed requests: " .. util.encode(tally.errors))
      local out = H.home .. "/logs/nd-out.log"
      for i, p in ipairs(procs("nd")) do
        assert.are_not.equal(before[i].pid, p.pid)
        assert.equal("online", p.pm2_env.status)
        H.wait_for(function()
          return (util.read_file(out) or ""):find(("stopping pid %d by message"):format(before[i].pid), 1, true)
        end, 3000, "old pid " .. before[i].pid .. " stopped by message")
      end
    end)

    it("an old process that ignores SIGINT is killed after kill_timeout, and the reload completes", function()
      local port = free_port()
      local file = eco("deaf", { { name = "deaf", script = SERVER_PY, interpreter = PY, wait_ready = true,
        kill_timeout = 400, listen = { "tcp://127.0.0.1:" .. port }, env = { RL_IGNORE_INT = "1" } } })
      ok(H.pm("start", file, "-s"))
      local before = H.proc("deaf")
      local t0 = core.mono()
      ok(H.pm("reload", "deaf", "-s"))
      assert.is_true(core.mono() - t0 >= 350, "the reload did not wait for the old process")
      H.wait_for(function() return not H.alive(before.pid) end, 3000, "the old process killed")
      local after = H.proc("deaf")
      assert.equal("online", after.pm2_env.status)
      assert.are_not.equal(before.pid, after.pid)
    end)
  end)

  describe("pm reload, and a stop meanwhile", function()
    it("a stop while the replacement launches stops the app: the reload is aborted, no process left", function()
      local port = free_port()
      local flag = H.home .. "/ready.flag"
      write(flag, "")
      local file = eco("rs", { { name = "rs", script = SERVER_PY, interpreter = PY, wait_ready = true,
        listen_timeout = 30000, kill_timeout = 500, listen = { "tcp://127.0.0.1:" .. port },
        env = { RL_READY_FLAG = flag } } })
      ok(H.pm("start", file, "-s"))
      local old = H.proc("rs")
      assert.equal("online", old.pm2_env.status)
      os.remove(flag) -- the replacement never says it is ready
      local job = bg(pmcmd("reload", "rs", "-s"), "reload")
      local new_pid = H.wait_for(function()
        local p = H.proc("rs")
        return p and p.pm2_env.status == "launching" and p.pid ~= old.pid and p.pid > 0 and p.pid
      end, 10000, "the replacement launching")
      local stop = result(bg(pmcmd("stop", "rs", "-s"), "stop"), 10000, "pm stop's reply")
      assert.equal(0, stop.code, stop.err)
      local r = result(job, 10000, "the reload's reply")
      assert.are_not.equal(0, r.code)
      assert.matches("aborted", r.err)
      H.wait_for(function() return H.proc("rs").pm2_env.status == "stopped" end, 5000, "rs stopped")
      H.wait_for(function() return not H.alive(old.pid) and not H.alive(new_pid) end, 5000,
        "neither process left")
      assert.equal(0, H.proc("rs").pid)
    end)
  end)

  describe("health checks", function()
    it("a passing http check marks a wait_ready app ready", function()
      local port = free_port()
      local file = eco("hh", { { name = "hh", script = SERVER_PY, interpreter = PY, wait_ready = true,
        listen_timeout = 30000, listen = { "tcp://127.0.0.1:" .. port },
        health = { http = ("http://127.0.0.1:%d/health"):format(port), interval = 200 },
        env = { RL_NO_READY = "1" } } })
      local t0 = core.mono()
      ok(H.pm("start", file, "-s"))
      assert.is_true(core.mono() - t0 < 10000)
      local p = H.proc("hh")
      assert.equal("online", p.pm2_env.status)
      assert.equal("health", p.pm2_env.ready)
    end)

    it("localhost is 127.0.0.1 or ::1 (http and tcp): the check passes and the app is ready", function()
      local port, port6 = free_port(), free_port()
      local file = eco("hl", { { name = "hl", script = SERVER_PY, interpreter = PY, wait_ready = true,
        listen_timeout = 30000, listen = { "tcp://127.0.0.1:" .. port },
        health = { http = ("http://localhost:%d/health"):format(port), interval = 150, retries = 2 },
        env = { RL_NO_READY = "1" } },
        { name = "tl", script = "/bin/sleep", args = { "600" }, wait_ready = true, listen_timeout = 30000,
          health = { tcp = "localhost:" .. port, interval = 150, retries = 2 } },
        -- a server on ::1 only (Node's listen(port, "localhost") where ::1 comes first)
        { name = "t6", script = PY, interpreter = "none", args = { "-c", ("import socket, time\n"
          .. "s = socket.socket(socket.AF_INET6)\ns.bind(('::1', %d))\ns.listen()\n"
          .. "while True:\n  c, _ = s.accept()\n  c.close()\n"):format(port6) },
          wait_ready = true, listen_timeout = 30000,
          health = { tcp = "localhost:" .. port6, interval = 150, retries = 40 } } })
      ok(H.pm("start", file, "-s"))
      for _, name in ipairs({ "hl", "tl", "t6" }) do
        local p = H.proc(name)
        assert.equal("online", p.pm2_env.status, name)
        assert.equal("health", p.pm2_env.ready, name)
        assert.equal(0, p.pm2_env.restart_time, name)
      end
      -- (the held sockets answer from the start: never a failed check; t6's
      -- own may miss the first probes while python starts)
      local log = util.read_file(H.home .. "/pm.log") or ""
      assert.is_nil(log:find("app [ht]l %(%d+%): health check failed"), log)
    end)

    it("a server whose /health starts failing is restarted after `retries` failures (reason health)", function()
      local port = free_port()
      local flag = H.home .. "/sick"
      local file = eco("hf", { { name = "hf", script = SERVER_PY, interpreter = PY,
        listen = { "tcp://127.0.0.1:" .. port },
        health = { http = ("http://127.0.0.1:%d/health"):format(port), interval = 150, retries = 2, timeout = 1000 },
        env = { RL_HEALTH_FLAG = flag } } })
      ok(H.pm("start", file, "-s"))
      local before = H.proc("hf")
      assert.equal("online", before.pm2_env.status)
      local got = event_log()
      write(flag, "")
      pump(function() return #events_of(got, "exit") >= 1 end, 8000, "an exit event")
      os.remove(flag)
      local exit = events_of(got, "exit")[1]
      assert.equal("health", exit.reason)
      local hev = events_of(got, "health")
      assert.is_true(#hev >= 1, "no health event")
      assert.equal(2, hev[1].failures)
      H.wait_for(function()
        local p = H.proc("hf")
        return p.pm2_env.status == "online" and p.pid ~= before.pid and p
      end, 8000, "hf online again")
      local p = H.proc("hf")
      assert.is_true(p.pm2_env.restart_time >= 1)
      assert.is_false(H.alive(before.pid))
      local log = util.read_file(H.home .. "/pm.log") or ""
      assert.is_truthy(log:find("health check failed (2/2)", 1, true), log)
    end)

    it("a tcp check marks the app ready once its port accepts", function()
      local port = free_port()
      local file = eco("ht", { { name = "ht", script = SERVER_PY, interpreter = PY, wait_ready = true,
        listen_timeout = 30000, health = { tcp = "127.0.0.1:" .. port, interval = 100 },
        env = { RL_PORT = tostring(port), RL_BIND_DELAY = "400", RL_NO_READY = "1" } } })
      ok(H.pm("start", file, "-s"))
      local p = H.proc("ht")
      assert.equal("online", p.pm2_env.status)
      assert.equal("health", p.pm2_env.ready)
      assert.is_true(tcp_connects(port))
    end)

    it("an exec check: passing marks ready, failing `retries` times restarts", function()
      local flag = H.home .. "/sick"
      local file = eco("he", { { name = "he", script = F .. "/rl_idle.sh", listen_timeout = 30000,
        health = { exec = "test ! -e " .. q(flag), interval = 150, retries = 2 } } })
      ok(H.pm("start", file, "-s"))
      local before = H.proc("he")
      assert.equal("online", before.pm2_env.status)
      assert.equal("health", before.pm2_env.ready)
      local got = event_log()
      write(flag, "")
      pump(function() return #events_of(got, "exit") >= 1 end, 8000, "an exit event")
      os.remove(flag)
      assert.equal("health", events_of(got, "exit")[1].reason)
      H.wait_for(function()
        local p = H.proc("he")
        return p.pm2_env.status == "online" and p.pid ~= before.pid
      end, 8000, "he online again")
      assert.equal("health", H.proc("he").pm2_env.ready)
    end)

    it("watchdog: when WATCHDOG=1 pings stop, the app is restarted (reason health)", function()
      local file = eco("wd", { { name = "wd", script = SERVER_PY, interpreter = PY, wait_ready = true,
        watchdog = 400, env = { RL_WATCHDOG_PINGS = "3" } } })
      ok(H.pm("start", file, "-s"))
      local before = H.proc("wd")
      assert.equal(tostring(400 * 1000), environ(before.pid).WATCHDOG_USEC)
      local got = event_log()
      pump(function() return #events_of(got, "exit") >= 1 end, 8000, "an exit event")
      assert.equal("health", events_of(got, "exit")[1].reason)
      H.wait_for(function()
        local p = H.proc("wd")
        return p.pm2_env.status == "online" and p.pid ~= before.pid
      end, 8000, "wd online again")
    end)

    it("a bad health spec is refused at start", function()
      local bad = {
        { http = "ftp://127.0.0.1/x" },
        {},
        { tcp = "nowhere" },
        { http = "http://127.0.0.1:1/", exec = "true" },
        { exec = "true", interval = -5 },
        { exec = "true", retries = "3" },
      }
      for i, h in ipairs(bad) do
        local file = eco("bad" .. i, { { name = "bad", script = F .. "/rl_idle.sh", health = h } })
        fails(H.pm("start", file, "-s"), "health")
      end
      assert.equal(0, #H.jlist())
    end)
  end)

  describe("depends_on", function()
    it("b starts after a is ready; pm stop <file> and pm kill stop b before a", function()
      local log = H.home .. "/dep.log"
      local file = eco("dep", {
        { name = "b", script = F .. "/rl_dep.sh", depends_on = { "a" },
          env = { RL_NAME = "b", RL_LOG = log, RL_STOP_DELAY = "0.3" } },
        { name = "a", script = F .. "/rl_dep.sh", wait_ready = true, listen_timeout = 30000,
          env = { RL_NAME = "a", RL_LOG = log, RL_READY_DELAY = "0.6" } },
      })
      ok(H.pm("start", file, "-s"))
      local a, b = H.proc("a"), H.proc("b")
      assert.equal("online", a.pm2_env.status)
      assert.equal("notify", a.pm2_env.ready)
      assert.is_true(b.pm2_env.pm_uptime - a.pm2_env.pm_uptime >= 500,
        ("b started %d ms after a"):format(b.pm2_env.pm_uptime - a.pm2_env.pm_uptime))
      local l = lines(log)
      local a_ready, b_start = index_of(l, "a ready"), index_of(l, "b start")
      assert.is_truthy(a_ready and b_start and a_ready < b_start, table.concat(l, ","))

      local function stopped_in_order(from, what)
        H.wait_for(function() return index_of(lines(log), "a done", from) end, 5000, "a done")
        l = lines(log)
        local bs, bd, as = index_of(l, "b stop", from), index_of(l, "b done", from), index_of(l, "a stop", from)
        assert(bs and bd and as and bs < bd and bd < as,
          what .. ": b is not stopped before a: " .. table.concat(l, ",", from))
      end
      local n = #l + 1
      ok(H.pm("stop", file, "-s"))
      stopped_in_order(n, "pm stop <file>")

      ok(H.pm("start", file, "-s"))
      l = lines(log)
      n = #l + 1
      local daemon = H.daemon_pid()
      ok(H.pm("kill"))
      H.wait_for(function() return not H.alive(daemon) end, 5000, "the daemon gone")
      stopped_in_order(n, "pm kill")
    end)

    it("a cycle and an unknown name are refused at load time, naming the apps", function()
      local idle = F .. "/rl_idle.sh"
      local cyc = eco("cycle", {
        { name = "a", script = idle, depends_on = { "b" } },
        { name = "b", script = idle, depends_on = { "a" } },
      })
      local r = fails(H.pm("start", cyc, "-s"), "cycle")
      assert.is_truthy(r.err:find("a -> b -> a", 1, true) or r.err:find("b -> a -> b", 1, true), r.err)
      local unk = eco("unknown", { { name = "a", script = idle, depends_on = { "ghost" } } })
      fails(H.pm("start", unk, "-s"), "'a'", "'ghost'")
      assert.equal(0, #H.jlist())
    end)
  end)

  describe("pm scale", function()
    local function scale_app()
      local port = free_port()
      local file = eco("sc", { { name = "sc", script = SERVER_PY, interpreter = PY, wait_ready = true,
        listen = { "tcp://127.0.0.1:" .. port } } })
      ok(H.pm("start", file, "-s"))
      local sock = fd_link(H.proc("sc").pid, 3)
      assert.is_truthy(sock and sock:match("^socket:"))
      -- sorted instance numbers; every instance online on the same socket at fd 3
      local function instances()
        local list = procs("sc")
        local t = {}
        for _, p in ipairs(list) do
          assert.equal("online", p.pm2_env.status)
          assert.equal(sock, fd_link(p.pid, 3), "pm_id " .. p.pm_id .. " has another socket at fd 3")
          t[#t + 1] = p.pm2_env.NODE_APP_INSTANCE
          assert.equal(tostring(p.pm2_env.NODE_APP_INSTANCE), environ(p.pid).NODE_APP_INSTANCE)
        end
        table.sort(t)
        return t, list
      end
      return port, instances
    end

    it("gives the new instance count to one app's declaration: another app of the same name keeps its own", function()
      local a = H.script("sa.sh", "exec sleep 100\n")
      local b = H.script("sb.sh", "exec sleep 100\n")
      ok(H.pm("start", a, "--name", "x", "-s"))
      ok(H.pm("start", b, "--name", "x", "-s"))
      ok(H.pm("scale", "x", "3", "-s"))
      local list = procs("x")
      assert.equal(3, #list)
      local by_script = {}
      for _, p in ipairs(list) do
        by_script[p.pm2_env.pm_exec_path] = (by_script[p.pm2_env.pm_exec_path] or 0) + 1
      end
      assert.equal(2, by_script[H.real(a)] or by_script[a])
      assert.equal(1, by_script[H.real(b)] or by_script[b])
      for _, p in ipairs(list) do
        local is_b = p.pm2_env.pm_exec_path == b or p.pm2_env.pm_exec_path == H.real(b)
        assert.equal(is_b and 1 or 3, p.pm2_env.instances, p.pm_id)
      end
      ok(H.pm("restart", tostring(list[2].pm_id), "-s"))
      assert.equal(list[2].pm2_env.pm_exec_path, procs("x")[2].pm2_env.pm_exec_path)
    end)

    it("4, then -2, then +1: counts, NODE_APP_INSTANCE numbers reused, new instances share the held socket", function()
      local port, instances = scale_app()
      ok(H.pm("scale", "sc", "4", "-s"))
      local inst, list = instances()
      assert.same({ 0, 1, 2, 3 }, inst)
      local gone = {}
      for _, p in ipairs(list) do
        if p.pm2_env.NODE_APP_INSTANCE < 2 then gone[#gone + 1] = p.pid end
      end
      -- -2 through the API (the command line's "-2" is the next test's):
      -- the lowest instances go, as in PM2
      assert(pm.scale("sc", "-2"))
      inst = instances()
      assert.same({ 2, 3 }, inst)
      for _, pid in ipairs(gone) do assert.is_false(H.alive(pid)) end
      ok(H.pm("scale", "sc", "+1", "-s"))
      inst = instances()
      assert.same({ 0, 2, 3 }, inst)
      local code, body = get("127.0.0.1:" .. port, "/")
      assert.equal(0, code, body)
    end)

    it("pm scale <name> -2 on the command line", function()
      local _, instances = scale_app()
      ok(H.pm("scale", "sc", "3", "-s"))
      ok(H.pm("scale", "sc", "-2", "-s"), "pm scale sc -2")
      assert.same({ 2 }, (instances()))
    end)

    it("instances \"max\" and -1 follow the CPU count; increment_var numbers PORT per instance", function()
      local cpus = require("pm.app").cpu_count()
      local idle = F .. "/rl_idle.sh"
      local base = free_port()
      local file = eco("inst", {
        { name = "mx", script = idle, instances = "max" },
        { name = "m1", script = idle, instances = -1 },
        { name = "inc", script = idle, instances = 3, increment_var = "PORT", env = { PORT = tostring(base) } },
      })
      ok(H.pm("start", file, "-s"))
      assert.equal(cpus, #procs("mx"))
      assert.equal(math.max(1, cpus - 1), #procs("m1"))
      local ports = {}
      for _, p in ipairs(procs("inc")) do
        local e = environ(p.pid)
        ports[tonumber(e.NODE_APP_INSTANCE) + 1] = tonumber(e.PORT)
      end
      assert.same({ base, base + 1, base + 2 }, ports)
      ok(H.pm("scale", "inc", "+1", "-s"))
      for _, p in ipairs(procs("inc")) do
        if p.pm2_env.NODE_APP_INSTANCE == 3 then assert.equal(tostring(base + 3), environ(p.pid).PORT) end
      end
    end)

    it("an unknown name and a bad count are errors", function()
      fails(H.pm("scale", "nope", "2"), "not found")
      local file = eco("sc", { { name = "sc", script = F .. "/rl_idle.sh" } })
      ok(H.pm("start", file, "-s"))
      for _, bad in ipairs({ "x", "0", "2.5", "" }) do
        fails(H.pm("scale", "sc", bad, "-s"))
        assert.equal(1, #procs("sc"), "scale " .. bad)
      end
      assert.is_nil(pm.scale("sc", "-1")) -- none would be left
      assert.equal(1, #procs("sc"))
    end)

    it("counts that are not decimal N, +N or -N are refused (0x2, 1e1)", function()
      local file = eco("sc", { { name = "sc", script = F .. "/rl_idle.sh" } })
      ok(H.pm("start", file, "-s"))
      for _, bad in ipairs({ "0x2", "+0x2", "1e1" }) do
        local r = H.pm("scale", "sc", bad, "-s")
        local n = #procs("sc")
        if n ~= 1 then H.pm("scale", "sc", "1", "-s") end
        assert(r.code ~= 0 and n == 1, ("pm scale sc %s: exit %d, %d instances"):format(bad, r.code, n))
      end
    end)
  end)

  describe("PM2 cluster mode", function()
    it("a PM2 JSON file, exec_mode cluster, 3 instances of a Node server calling listen(PORT): one port", function()
      local port = free_port()
      local file = eco("cluster", { { name = "web", script = F .. "/rl_cluster.js", interpreter = NODE,
        exec_mode = "cluster", instances = 3, wait_ready = true, listen_timeout = 30000,
        env = { PORT = port } } })
      ok(H.pm("start", file, "-s"))
      local list = procs("web")
      assert.equal(3, #list)
      local sock = fd_link(list[1].pid, 3)
      local pids = {}
      for _, p in ipairs(list) do
        assert.equal("online", p.pm2_env.status)
        assert.equal("ipc", p.pm2_env.ready) -- listen's callback ran: no EADDRINUSE
        assert.equal(0, p.pm2_env.restart_time)
        assert.equal(sock, fd_link(p.pid, 3))
        pids[p.pid] = true
      end
      local code, body = get("127.0.0.1:" .. port, "/")
      assert.equal(0, code, body)
      assert.is_true(pids[tonumber(body:match("^pid (%d+)"))], body)
      local errs = H.sh("cat " .. q(H.home) .. "/logs/web-error*.log").out
      assert.is_falsy(errs:find("EADDRINUSE", 1, true), errs)
    end)

    it("a cluster-mode app reloads with no failed request", function()
      local port = free_port()
      local file = eco("cluster", { { name = "web", script = F .. "/rl_cluster.js", interpreter = NODE,
        exec_mode = "cluster", instances = 2, wait_ready = true, env = { PORT = port } } })
      ok(H.pm("start", file, "-s"))
      local before = procs("web")
      local load = start_load(port, "load")
      ok(H.pm("reload", "web", "-s"))
      local tally = stop_load(load)
      assert.equal(0, tally.failed, "failed requests: " .. util.encode(tally.errors))
      for i, p in ipairs(procs("web")) do
        assert.are_not.equal(before[i].pid, p.pid)
        assert.equal("online", p.pm2_env.status)
      end
    end)

    it("with no port, env.PORT or listen, pm learns the port at the first listen(PORT): one port", function()
      local port = free_port()
      local file = eco("cluster", { { name = "web", script = F .. "/rl_cluster.js", interpreter = NODE,
        exec_mode = "cluster", instances = 2, min_uptime = 200, max_restarts = 3, wait_ready = true,
        env = { RL_HTTP_PORT = tostring(port) } } })
      ok(H.pm("start", file, "-s"))
      local list = procs("web")
      assert.equal(2, count_status(list, "online"))
      for _, p in ipairs(list) do
        assert.equal("ipc", p.pm2_env.ready) -- listen's callback ran: no EADDRINUSE
        assert.equal(0, p.pm2_env.restart_time)
      end
      local code, body = get("127.0.0.1:" .. port, "/")
      assert.equal(0, code, body)
    end)
  end)
end)
