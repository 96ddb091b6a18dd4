-- Zero-downtime reload benchmark (issue 7), not a test:
--   bin/pm run bench/reload.lua [SECONDS]      (from the repository's root)
-- For a Node and a Python HTTP server (bench/apps/): req/s of one plain
-- process started outside pm, req/s of 4 instances under pm sharing one
-- daemon-held socket (listen = tcp://127.0.0.1:PORT, no relay), and the
-- failed requests while the app is reloaded 3 times under load (must be 0).
-- The load: wrk when installed (bench/reload.sh installs it), else a
-- bounded Python threaded loop (also with PM_BENCH_LOAD=python); a new connection per request, 127.0.0.1
-- only, bounded in time. Prints a markdown table. Everything it starts is
-- stopped by pid; its PM_HOME is bench/out/reload-home.
local core = require "pm.core"
local util = require "pm.util"
local app = require "pm.app"

local src = core.getcwd()
-- the tests' harness: one H.free_port for the specs and this benchmark
package.path = src .. "/tests/helpers/?.lua;" .. package.path
local H = require "pmtest"
local bin = src .. "/bin/pm"
local home = src .. "/bench/out/reload-home"
local seconds = tonumber(arg and arg[1]) or 5 -- each steady-load window
local PATH = os.getenv("PATH") or "/usr/local/bin:/usr/bin:/bin"
local SIGINT, SIGKILL = core.signals.SIGINT, core.signals.SIGKILL

assert(core.stat(bin), "run me from the repository's root, after make build: bin/pm run bench/reload.lua")

local node = app.find_in_path("node", PATH)
local python = core.access("/usr/bin/python3", "x") and "/usr/bin/python3" or app.find_in_path("python3", PATH)
-- PM_BENCH_LOAD=python: the fallback even where wrk is installed
local wrk = os.getenv("PM_BENCH_LOAD") ~= "python" and app.find_in_path("wrk", PATH)
assert(python, "python3 is needed (the Python server, and the load without wrk)")

-- ---- processes, each stopped by its pid ----

local exits, started = {}, {}
core.on_child(function(pid, code, signum) exits[pid] = { code = code, signal = signum } end)

local q = H.shquote

local function spawn(argv, env)
  local list = { "PATH=" .. PATH, "PM_HOME=" .. home, "HOME=" .. (os.getenv("HOME") or "/") }
  for k, v in pairs(env or {}) do list[#list + 1] = k .. "=" .. v end
  local pid = assert(core.spawn({ file = argv[1], args = argv, env = list, fds = { -1, -1, -1 } }))
  started[#started + 1] = pid
  return pid
end

-- Runs the loop until pid has exited or ms pass -> its exit, or nil.
local function wait_exit(pid, ms)
  local deadline = core.mono() + ms
  local t = core.timer(ms, 0, function() end)
  while not exits[pid] and core.mono() < deadline do core.run("once") end
  t:close()
  return exits[pid]
end

local function stop(pid, grace)
  if exits[pid] then return exits[pid] end
  core.kill(pid, SIGINT)
  local e = wait_exit(pid, grace or 5000)
  if not e then
    core.kill(pid, SIGKILL)
    e = wait_exit(pid, 2000)
  end
  return e
end

local function sh(cmd, env) return spawn({ "/bin/sh", "-c", cmd }, env) end

-- pm CLI -> exit code, output
local function pm(...)
  local words = { q(bin) }
  for _, a in ipairs({ ... }) do words[#words + 1] = q(a) end
  local out = home .. "/.pm.out"
  local pid = sh("exec " .. table.concat(words, " ") .. " >" .. q(out) .. " 2>&1")
  local e = wait_exit(pid, 60000)
  if not e then
    stop(pid)
    return -1, "no answer in 60 s"
  end
  return e.code, util.read_file(out) or ""
end

-- "pm_id:pid:status:ready ..." of an app, for error messages
local function state(name)
  local code, out = pm("jlist")
  local list = code == 0 and util.decode(out)
  if type(list) ~= "table" then return "jlist: " .. out end
  local t = {}
  for _, p in ipairs(list) do
    if p.name == name then
      t[#t + 1] = ("%d:%d:%s:%s"):format(p.pm_id, p.pid, p.pm2_env.status, tostring(p.pm2_env.ready))
    end
  end
  return table.concat(t, " ")
end

-- ---- ports and load ----

local free_port = H.free_port

local function tcp_ok(port)
  local fd = core.connect_tcp("127.0.0.1", tostring(port))
  if not fd then return false end
  local res
  local w = core.watch_write(fd, function() res = core.sock_error(fd) == nil end)
  local t = core.timer(300, 0, function() if res == nil then res = false end end)
  while res == nil do core.run("once") end
  w:close()
  t:close()
  core.close(fd)
  return res
end

local function wait_port(port, ms)
  local deadline = core.mono() + ms
  while core.mono() < deadline do
    if tcp_ok(port) then return true end
    core.sleep(20)
  end
  error("nothing answers on port " .. port)
end

local CONNS, THREADS, MAX = 16, 8, 2000000
local nload = 0

-- A load of at most secs seconds on 127.0.0.1:port, in the background.
local function load_start(port, secs)
  nload = nload + 1
  local out = ("%s/load-%d.out"):format(home, nload)
  local cmd
  if wrk then
    cmd = ("exec %s -t2 -c%d -d%ds --timeout 5s -H 'Connection: close' http://127.0.0.1:%d/ >%s 2>&1")
      :format(q(wrk), CONNS, secs, port, q(out))
  else
    cmd = ("exec %s %s %d %d %d %d >%s 2>&1"):format(q(python), q(src .. "/bench/apps/load.py"), port, secs,
      MAX, THREADS, q(out))
  end
  return { pid = sh(cmd), out = out, secs = secs }
end

-- Ends a load (SIGINT now when interrupt) -> { requests, failed, rps, detail }
local function load_finish(l, interrupt)
  if interrupt then core.kill(l.pid, SIGINT) end
  if not wait_exit(l.pid, l.secs * 1000 + 15000) then stop(l.pid) end
  local text = util.read_file(l.out) or ""
  if wrk then
    local n, t, unit = text:match("(%d+) requests in ([%d%.]+)(%a+)")
    assert(n, "wrk said: " .. text)
    t = tonumber(t) * (unit == "ms" and 0.001 or unit == "m" and 60 or 1)
    local c, r, w, to = text:match("Socket errors: connect (%d+), read (%d+), write (%d+), timeout (%d+)")
    local non2xx = tonumber(text:match("Non%-2xx or 3xx responses: (%d+)")) or 0
    c, r, w, to = tonumber(c) or 0, tonumber(r) or 0, tonumber(w) or 0, tonumber(to) or 0
    local failed = c + r + w + to + non2xx
    local detail = failed > 0 and ("connect %d, read %d, write %d, timeout %d, non-2xx %d"):format(c, r, w, to, non2xx)
      or ""
    return { requests = tonumber(n), failed = failed, rps = tonumber(n) / t, detail = detail }
  end
  local st = assert(util.decode(text:match("([^\n]+)%s*$") or ""), "load.py said: " .. text)
  local detail = {}
  for k, v in pairs(st.errors or {}) do detail[#detail + 1] = k .. " " .. v end
  return { requests = st.requests, failed = st.failed, rps = st.requests / st.seconds,
    detail = table.concat(detail, ", ") }
end

local function load_run(port, secs)
  return load_finish(load_start(port, secs), false)
end

-- ---- one server ----

local function bench_server(label, interp, script, name)
  -- one plain process, outside pm
  local port = free_port()
  local pid = spawn({ interp, script }, { PORT = tostring(port) })
  wait_port(port, 10000)
  load_run(port, 1) -- warm-up
  local plain = load_run(port, seconds)
  stop(pid)

  -- 4 instances under pm on one held socket
  port = free_port()
  local eco = ("%s/%s.json"):format(home, name)
  local f = assert(io.open(eco, "w"))
  f:write(util.encode({ apps = { { name = name, script = script, interpreter = interp, instances = 4,
    wait_ready = true, listen_timeout = 5000, kill_timeout = 5000,
    listen = { "tcp://127.0.0.1:" .. port } } } }))
  f:close()
  local code, out = pm("start", eco, "-s")
  assert(code == 0, "pm start: " .. out)
  load_run(port, 1) -- warm-up
  local pooled = load_run(port, seconds)

  -- 3 reloads under load
  local l = load_start(port, 120)
  core.sleep(500)
  local times = {}
  for i = 1, 3 do
    local t0 = core.mono()
    code, out = pm("reload", name, "-s")
    assert(code == 0, ("pm reload #%d: %s; processes: %s"):format(i, out, state(name)))
    times[i] = ("%.0f"):format(core.mono() - t0)
  end
  core.sleep(500)
  local during = load_finish(l, true)
  pm("delete", name, "-s")

  local row = ("| %s | %.0f | %.0f | %.2f | %d | **%d** | %s |"):format(label, plain.rps, pooled.rps,
    pooled.rps / plain.rps, during.requests, during.failed, table.concat(times, ", "))
  io.stdout:write(row, "\n")
  io.stdout:flush()
  if during.failed > 0 then io.stdout:write("  failures: ", during.detail, "\n") end
  if plain.failed > 0 or pooled.failed > 0 then
    io.stdout:write(("  note: failed requests in the steady runs: plain %d (%s), pm %d (%s)\n"):format(plain.failed,
      plain.detail, pooled.failed, pooled.detail))
  end
  return during.failed
end

-- ---- main ----

math.randomseed(core.getpid() * 1000 + core.now() % 1000)
os.execute("rm -rf " .. q(home) .. " && mkdir -p " .. q(home))
local cores = app.cpu_count()
io.stdout:write(("pm reload benchmark: %d cores, load %s, new connection per request, %d s windows\n\n"):format(
  cores, wrk and ("wrk -t2 -c" .. CONNS) or ("python threaded loop, " .. THREADS .. " threads"), seconds))
io.stdout:write("| server | 1 plain process req/s | pm, 4 instances req/s | ratio | requests during 3 reloads"
  .. " | failed | reload ms (each) |\n|---|---|---|---|---|---|---|\n")

local ok, err = pcall(function()
  local failed = 0
  if node then
    failed = failed + bench_server("Node http", node, src .. "/bench/apps/http.js", "bench-node")
  else
    io.stdout:write("| Node http | node not installed | | | | | |\n")
  end
  failed = failed + bench_server("Python asyncio", python, src .. "/bench/apps/http.py", "bench-py")
  return failed
end)

-- everything started here, by pid: loads, plain servers, the daemon and its apps
for _, pid in ipairs(started) do
  if not exits[pid] then stop(pid, 2000) end
end
local dpid = tonumber((util.read_file(home .. "/pm.pid") or ""):match("%d+") or "")
if dpid then
  pm("kill")
  local deadline = core.mono() + 5000
  while core.proc_stat(dpid) and core.mono() < deadline do core.sleep(20) end
  if core.proc_stat(dpid) then core.kill(dpid, SIGKILL) end
end
if not ok then
  io.stderr:write("bench/reload.lua: ", tostring(err), "\n(logs kept in ", home, ")\n")
  return 1
end
os.execute("rm -rf " .. q(home))
io.stdout:write("\nfailed requests must be 0; ratio = pm's 4 instances / one plain process.\n")
return 0
