-- make bench: pm beside PM2 and beside the physical limit, figure by figure.
-- Run by bench/run as `bin/pm run bench/bench.lua [options]`; prints the
-- table and writes it to bench/RESULTS.md.
--
--   --quick        2 rounds, shorter loops, a 10 s idle window, PM2's 2,000 apps skipped
--   --rounds N     rounds per figure (default 5)
--   --idle S       seconds of the idle-CPU window (default 30; the issue's figure is 120)
--   --no-pm2       pm's columns only
--   --only a,b     only these figures (first list hundred crash burst idle keeper big huge); RESULTS.md is left alone
--   --no-write     print the table, leave bench/RESULTS.md alone
--   --cleanup      only stop what a run left behind (bench/run's trap)
--
-- Each figure runs the limit, pm and PM2 in turn, round after round. The
-- apps are the same for both managers: /bin/sleep 3600 (interpreter none)
-- from one JSON ecosystem file, bench/stamp.c for the crash loop and
-- bench/writer.py for the log burst. pm's PM_HOME and PM2's PM2_HOME are
-- under bench/out/; every process a figure starts is stopped by pid at the end.
local core = require "pm.core"
local util = require "pm.util"

local S = core.signals
io.stdout:setvbuf("line")
local SRC = core.getcwd()
local OUT = SRC .. "/bench/out"
local PM_BIN = SRC .. "/bin/pm"
local NODE = os.getenv("NODE") or "/usr/bin/node"
local PYTHON = os.getenv("PYTHON") or "/usr/bin/python3"
local PM2_DIR = SRC .. "/bench/.pm2/node_modules/pm2"
local PM2_CLI = PM2_DIR .. "/bin/pm2"
local BURST = 200 * 1000 * 1000 -- bytes
local STAMP_LINE = 42 -- bytes per line of bench/stamp.c

-- ---- options ----

local opt = { rounds = 5, idle = 30, pm2 = true, write = true, figs = nil }
do
  local i, rounds_set, idle_set = 1, false, false
  while arg[i] do
    local a = arg[i]
    if a == "--quick" then opt.quick = true
    elseif a == "--rounds" then i = i + 1; opt.rounds = assert(tonumber(arg[i]), "--rounds N"); rounds_set = true
    elseif a == "--idle" then i = i + 1; opt.idle = assert(tonumber(arg[i]), "--idle SECONDS"); idle_set = true
    elseif a == "--no-pm2" then opt.pm2 = false
    elseif a == "--no-write" then opt.write = false
    elseif a == "--cleanup" then opt.cleanup = true
    elseif a == "--only" then
      i = i + 1
      opt.figs = {}
      for f in (arg[i] or ""):gmatch("[^,]+") do opt.figs[f] = true end
    else
      io.stderr:write("bench: unknown option ", a, "\n")
      os.exit(2)
    end
    i = i + 1
  end
  if opt.quick then
    if not rounds_set then opt.rounds = 2 end
    if not idle_set then opt.idle = 10 end
  end
end
local R = math.max(1, math.floor(opt.rounds))
local LIST_CALLS = opt.quick and 5 or 10 -- `list` calls per manager per round
local CRASH_N = opt.quick and 100 or 200 -- restarts per round (bounded by CRASH_MS too)
local CRASH_MS = opt.quick and 3000 or 5000

-- ---- processes ----

local reaped = {}
core.on_child(function(pid, code, sig) reaped[pid] = { code = code, sig = sig } end)

-- runs the loop for ms (children are reaped meanwhile)
local function pause(ms)
  local done = false
  local t = core.timer(ms, 0, function() done = true end)
  while not done do core.run("once") end
  t:close()
end

-- waits for a child of ours; past timeout_ms it is killed
local function wait_pid(pid, timeout_ms)
  local deadline = core.mono() + timeout_ms
  local wake = core.timer(timeout_ms, 0, function() end)
  while not reaped[pid] and core.mono() < deadline do core.run("once") end
  wake:close()
  local timed_out = not reaped[pid]
  if timed_out then
    core.kill(pid, S.SIGKILL)
    while not reaped[pid] do pause(10) end
  end
  local r = reaped[pid]
  reaped[pid] = nil
  r.timeout = timed_out
  return r
end

local errfd

-- run(argv, {env, out, timeout}) -> ms, exit. stdout to /dev/null or to the
-- file `out`, stderr to bench/out/stderr.log.
local function run(argv, o)
  o = o or {}
  local outfd = -1
  if o.out then outfd = assert(core.open(o.out, "w")) end
  local t0 = core.mono()
  local pid, err, failed = core.spawn({ file = argv[1], args = argv, env = o.env, fds = { -1, outfd, errfd } })
  if outfd >= 0 then core.close(outfd) end
  if not pid then
    if failed then wait_pid(failed, 1000) end
    error("spawn " .. argv[1] .. ": " .. tostring(err))
  end
  local r = wait_pid(pid, o.timeout or 60000)
  return core.mono() - t0, r
end

local function alive(pid)
  local st = pid and core.proc_stat(pid)
  return st ~= nil and st.state ~= "Z"
end

local function sh_quote(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

-- ---- /proc ----

local function pstatus(pid)
  local s = pid and util.read_file("/proc/" .. pid .. "/status")
  if not s then return nil end
  local function mb(k) return (tonumber(s:match(k .. ":%s*(%d+)")) or 0) / 1024 end
  return { anon = mb("RssAnon"), rss = mb("VmRSS"), hwm = mb("VmHWM") }
end

-- CPU time of a process in ns: the per-thread schedstat sums (ns precision),
-- or utime+stime when that is larger (threads that ended are only there)
local TICK_NS = 1e9 / core.clk_tck()
local function cpu_ns(pid)
  local tasks = core.listdir("/proc/" .. pid .. "/task")
  if not tasks then return nil end
  local sum = 0
  for tid in pairs(tasks) do
    local s = util.read_file(("/proc/%d/task/%s/schedstat"):format(pid, tid))
    sum = sum + (tonumber(s and s:match("^(%d+)")) or 0)
  end
  local st = core.proc_stat(pid)
  return sum, st and st.ticks * TICK_NS or 0
end
local function cpu_pct(c0, c1, ms)
  local d = math.max(c1[1] - c0[1], c1[2] - c0[2] - 2 * TICK_NS) -- ticks: coarse, ±1 each end
  return d / (ms * 1e6) * 100
end
local function cpu_sample(pid)
  local a, b = cpu_ns(pid)
  return { a or 0, b or 0 }
end

-- Waits (at most 3 s) until the cores are nearly idle: at most 5 % busy
-- over 200 ms (a manager's own aftermath, e.g. PM2 still busy after a
-- delete, would otherwise land in the next timed run of the other).
local function busy_ticks()
  local f = io.open("/proc/stat")
  local line = f and f:read("*l") or ""
  if f then f:close() end
  local v = {}
  for n in line:gmatch("%d+") do v[#v + 1] = tonumber(n) end
  -- user nice system idle iowait irq softirq steal
  return (v[1] or 0) + (v[2] or 0) + (v[3] or 0) + (v[6] or 0) + (v[7] or 0), (v[4] or 0) + (v[5] or 0)
end
local settles, settle_waits = 0, 0
local function settle()
  local deadline = core.mono() + 3000
  local t0 = core.mono()
  repeat
    local b0, i0 = busy_ticks()
    pause(200)
    local b1, i1 = busy_ticks()
    local total = (b1 - b0) + (i1 - i0)
    if total > 0 and (b1 - b0) <= 0.05 * total then break end
  until core.mono() > deadline
  settles, settle_waits = settles + 1, settle_waits + (core.mono() - t0)
end

local function file_size(path)
  local st = core.stat(path)
  return st and st.size or 0
end

-- ---- the managers ----

local function manager(key, label, homevar, pidfile, cli)
  local home = OUT .. "/" .. key .. "-home"
  return { key = key, label = label, home = home, homevar = homevar, pidfile = pidfile, cli = cli,
    marker = homevar .. "=" .. home,
    env = { "PATH=" .. (os.getenv("PATH") or "/usr/bin:/bin"), "HOME=" .. (os.getenv("HOME") or "/root"),
      homevar .. "=" .. home } }
end
local PM = manager("pm", "pm", "PM_HOME", "pm.pid", { PM_BIN })
local PM2 = manager("pm2", "PM2", "PM2_HOME", "pm2.pid", { NODE, PM2_CLI })

local pm2_missing
if not opt.pm2 then
  pm2_missing = "not run (--no-pm2)"
elseif not core.stat(PM2_CLI) then
  pm2_missing = "missing: PM2 could not be installed (see bench/.pm2/install.log)"
elseif not core.access(NODE, "x") then
  pm2_missing = "missing: no node at " .. NODE
end
local MANAGERS = pm2_missing and { PM } or { PM, PM2 }

local function cli(m, args, o)
  local argv = {}
  for _, a in ipairs(m.cli) do argv[#argv + 1] = a end
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  o = o or {}
  o.env = m.env
  return run(argv, o)
end

-- a process is the benchmark's when its environment holds the manager's home
local function owned(pid, m)
  local env = core.proc_environ(pid)
  return env ~= nil and ("\0" .. env):find("\0" .. m.marker .. "\0", 1, true) ~= nil
end

local seen_daemons = {}
local function daemon_pid(m)
  local pid = tonumber((util.read_file(m.home .. "/" .. m.pidfile) or ""):match("%d+"))
  if pid and alive(pid) then
    seen_daemons[pid] = m
    return pid
  end
end

local function jlist(m, timeout)
  local path = OUT .. "/jlist-" .. m.key .. ".json"
  local _, r = cli(m, { "jlist" }, { out = path, timeout = timeout or 60000 })
  local s = util.read_file(path) or ""
  os.remove(path)
  if r.code ~= 0 then return nil end
  local j = s:match("(%[.*%])")
  local ok, list = pcall(util.decode, j or "")
  if ok and type(list) == "table" then return list end
end

local function online(list)
  local n = 0
  for _, p in ipairs(list) do
    if type(p.pm2_env) == "table" and p.pm2_env.status == "online" then n = n + 1 end
  end
  return n
end

-- polls jlist until done(list); bounded in time and count
local function wait_list(m, done, timeout_ms)
  local deadline = core.mono() + timeout_ms
  for _ = 1, 100000 do
    local list = jlist(m, timeout_ms)
    if list and done(list) then return true end
    if core.mono() > deadline then return false end
  end
  return false
end
local function all_online(n) return function(list) return online(list) >= n end end
local function empty(list) return #list == 0 end

local function ensure_daemon(m)
  if not daemon_pid(m) then cli(m, { "ping" }, { timeout = 30000 }) end
  return daemon_pid(m)
end

local function kill_daemon(m)
  local pid = daemon_pid(m)
  if not pid then return end
  cli(m, { "kill" }, { timeout = 60000 })
  local deadline = core.mono() + 10000
  while alive(pid) and core.mono() < deadline do pause(10) end
  if alive(pid) and owned(pid, m) then core.kill(pid, S.SIGKILL) end
end

-- every pid the managers recorded, every daemon seen, every process carrying
-- a manager's home in its environment: SIGKILL, by pid
local function sweep()
  local pids = {}
  for _, m in ipairs({ PM, PM2 }) do
    local function add(path)
      local pid = tonumber((util.read_file(path) or ""):match("%d+"))
      if pid then pids[pid] = m end
    end
    add(m.home .. "/" .. m.pidfile)
    for name in pairs(core.listdir(m.home .. "/pids") or {}) do add(m.home .. "/pids/" .. name) end
  end
  for pid, m in pairs(seen_daemons) do pids[pid] = m end
  for name in pairs(core.listdir("/proc") or {}) do
    local pid = tonumber(name)
    if pid and not pids[pid] then
      for _, m in ipairs({ PM, PM2 }) do
        if owned(pid, m) then pids[pid] = m end
      end
    end
  end
  local me, n = core.getpid(), 0
  for pid, m in pairs(pids) do
    if pid ~= me and alive(pid) and owned(pid, m) then
      core.kill(pid, S.SIGKILL)
      n = n + 1
    end
  end
  return n
end

local function stop_all()
  for _, m in ipairs(MANAGERS) do
    local ok, err = pcall(kill_daemon, m)
    if not ok then io.stderr:write("bench: ", m.label, " kill: ", tostring(err), "\n") end
  end
  local total = 0
  for _ = 1, 5 do -- again while a sweep finds something (a daemon may be starting or stopping)
    local n = sweep()
    if n == 0 then break end
    total = total + n
    pause(200)
  end
  if total > 0 then io.stdout:write(("swept %d leftover process(es) by pid\n"):format(total)) end
end

if opt.cleanup then
  stop_all()
  return 0
end

-- ---- results ----

local res, notes = {}, {}
local function add(fig, who, v) -- who: "limit", "pm", "pm2"
  res[fig] = res[fig] or {}
  res[fig][who] = res[fig][who] or {}
  table.insert(res[fig][who], v)
end
-- the daemon's RssAnon and VmRSS as two figures
local function memory(m, anon_fig, rss_fig)
  local st = pstatus(daemon_pid(m))
  if st then
    add(anon_fig, m.key, st.anon)
    add(rss_fig, m.key, st.rss)
  end
end
local function note(s)
  notes[#notes + 1] = s
  io.stdout:write("  note: ", s, "\n")
end

local function stats(xs)
  if not xs or #xs == 0 then return nil end
  local s = {}
  for i, v in ipairs(xs) do s[i] = v end
  table.sort(s)
  local n = #s
  local med = n % 2 == 1 and s[(n + 1) / 2] or (s[n / 2] + s[n / 2 + 1]) / 2
  return { med = med, lo = s[1], hi = s[n], n = n }
end

-- three significant digits, never an exponent
local function num(v)
  if v == 0 then return "0" end
  local a = math.abs(v)
  if a >= 100 then return ("%.0f"):format(v) end
  local d = math.max(0, 2 - math.floor(math.log10(a)))
  return ("%." .. d .. "f"):format(v)
end

local function progress(fig, label)
  local parts = {}
  for _, who in ipairs({ "limit", "pm", "pm2" }) do
    local s = stats(res[fig] and res[fig][who])
    if s then parts[#parts + 1] = ("%s %s"):format(who, num(s.med)) end
  end
  io.stdout:write(("  %-44s %s\n"):format(label, table.concat(parts, ", ")))
end

-- ---- set-up ----

local function write(path, s)
  local f = assert(io.open(path, "w"))
  f:write(s)
  f:close()
end

-- the same ecosystem file for both managers (pm reads PM2's JSON as it is)
local function eco(name, apps)
  local path = OUT .. "/" .. name .. ".json"
  write(path, util.encode({ apps = apps }))
  return path
end
local function sleepers(n)
  local apps = {}
  for i = 1, n do
    apps[i] = { name = "s" .. i, script = "/bin/sleep", args = "3600", interpreter = "none" }
  end
  return eco("sleepers-" .. n, apps)
end

local STAMP = OUT .. "/stamp"
local RESPAWN = OUT .. "/respawn"
local SOCKFLOOR = OUT .. "/sockfloor"
local ECO = {}

local function setup()
  os.execute("rm -rf " .. sh_quote(OUT))
  util.mkdir_p(OUT)
  errfd = assert(core.open(OUT .. "/stderr.log", "a"))
  local _, r = run({ "/bin/sh", "-c", ("cc -O2 -static -o %s %s 2>/dev/null || cc -O2 -o %s %s"):format(
    sh_quote(STAMP), sh_quote(SRC .. "/bench/stamp.c"), sh_quote(STAMP), sh_quote(SRC .. "/bench/stamp.c")) })
  assert(r.code == 0, "cannot build bench/stamp.c")
  _, r = run({ "cc", "-O2", "-o", RESPAWN, SRC .. "/bench/respawn.c", "-lev" })
  assert(r.code == 0, "cannot build bench/respawn.c")
  _, r = run({ "cc", "-O2", "-o", SOCKFLOOR, SRC .. "/bench/sockfloor.c" })
  assert(r.code == 0, "cannot build bench/sockfloor.c")
  for _, n in ipairs({ 10, 100, 2000, 10000 }) do ECO[n] = sleepers(n) end
  for _, m in ipairs({ PM, PM2 }) do
    ECO["crash-" .. m.key] = eco("crash-" .. m.key, { { name = "crash", script = STAMP,
      args = OUT .. "/stamps-" .. m.key .. ".txt", interpreter = "none", autorestart = true,
      restart_delay = 0, max_restarts = 1000000 } })
    ECO["burst-" .. m.key] = eco("burst-" .. m.key, { { name = "burst", script = SRC .. "/bench/writer.py",
      interpreter = PYTHON, args = tostring(BURST), autorestart = false,
      out_file = OUT .. "/burst-" .. m.key .. ".log", error_file = OUT .. "/burst-" .. m.key .. ".err" } })
  end
end

local function delete_all(m, timeout)
  cli(m, { "delete", "all" }, { timeout = timeout or 60000 })
  return wait_list(m, empty, timeout or 60000)
end

-- ---- figures ----

local function floor_sample(n)
  for _ = 1, n do add("floor", "limit", (run({ "/bin/true" }))) end
end

local figures = {}

-- first call with no daemon (spawn + answer), then the fresh daemon's memory
function figures.first()
  for _, m in ipairs(MANAGERS) do -- warm-up: homes created, binaries and modules in the page cache
    cli(m, { "list" })
    kill_daemon(m)
  end
  for _ = 1, R do
    floor_sample(10)
    for _, m in ipairs(MANAGERS) do
      kill_daemon(m)
      local ms, r = cli(m, { "list" }, { timeout = 30000 })
      if r.code == 0 then add("first", m.key, ms) end
      pause(1500)
      memory(m, "idle_anon", "idle_rss")
    end
  end
  progress("first", "first call, no daemon (ms)")
  progress("idle_rss", "daemon VmRSS idle (MB)")
end

-- `list` round trip with 10 apps, the daemon up
function figures.list()
  for _, m in ipairs(MANAGERS) do
    cli(m, { "start", ECO[10] })
    if not wait_list(m, all_online(10), 30000) then note(m.label .. ": the 10 apps did not all come online") end
  end
  for _ = 1, R do
    for _ = 1, LIST_CALLS do
      floor_sample(1)
      for _, m in ipairs(MANAGERS) do
        local ms, r = cli(m, { "list" })
        if r.code == 0 then add("list", m.key, ms) end
      end
    end
  end
  for _, m in ipairs(MANAGERS) do delete_all(m) end
  progress("list", "`list`, 10 apps (ms)")
end

-- 100 apps: start until jlist shows all online, memory, delete until all gone
-- the floor of starting 100 apps: the same 100 /bin/sleep processes
-- spawned by this script (in parallel threads) until each has exec'd,
-- then waited until each shows as sleeping in /proc, and killed
local function spawn_floor()
  local list = {}
  for i = 1, 100 do
    list[i] = { file = "/bin/sleep", args = { "/bin/sleep", "3600" }, fds = { -1, -1, errfd }, setsid = true }
  end
  local t0 = core.mono()
  local pids = {}
  for i, o in ipairs(core.spawn_many(list)) do pids[i] = o[1] end
  local function started(pid)
    local st = pid and core.proc_stat(pid)
    return st and st.state == "S"
  end
  for _, pid in ipairs(pids) do
    local deadline = core.mono() + 5000
    while not started(pid) and core.mono() < deadline do core.sleep(0.2) end
  end
  add("start100", "limit", core.mono() - t0)
  for _, pid in ipairs(pids) do if pid then core.kill(pid, S.SIGKILL); wait_pid(pid, 5000) end end
end

function figures.hundred()
  for _, m in ipairs(MANAGERS) do ensure_daemon(m) end
  for _ = 1, R do
    settle()
    spawn_floor()
    for _, m in ipairs(MANAGERS) do
      settle()
      local t0 = core.mono()
      cli(m, { "start", ECO[100] })
      if wait_list(m, all_online(100), 60000) then
        add("start100", m.key, core.mono() - t0)
      else
        note(m.label .. ": 100 apps not all online within 60 s")
      end
      pause(1000)
      memory(m, "anon100", "rss100")
      settle()
      t0 = core.mono()
      if delete_all(m) then
        add("delete100", m.key, core.mono() - t0)
      else
        note(m.label .. ": 100 apps not all gone within 60 s")
      end
    end
  end
  progress("start100", "start 100 apps (ms)")
  progress("delete100", "delete 100 apps (ms)")
end

-- the stamp file: "start end" per instance; interval = next start - this end
local function intervals(path)
  local s = util.read_file(path) or ""
  local starts, ends = {}, {}
  for a, b in s:gmatch("(%d+) (%d+)\n") do
    starts[#starts + 1] = tonumber(a)
    ends[#ends + 1] = tonumber(b)
  end
  local out = {}
  for i = 1, #starts - 1 do out[i] = (starts[i + 1] - ends[i]) / 1e6 end
  return out
end

local pooled = {}
local function crash_round(who, fn, path)
  os.remove(path)
  fn()
  local iv = intervals(path)
  os.remove(path)
  if #iv < 10 then
    note(("%s: only %d restarts in a crash round"):format(who, #iv))
    return
  end
  add("crash", who, stats(iv).med)
  pooled[who] = pooled[who] or {}
  for _, v in ipairs(iv) do table.insert(pooled[who], v) end
end

-- crash -> respawn with restart delay 0, and the daemon's CPU meanwhile
function figures.crash()
  for _, m in ipairs(MANAGERS) do ensure_daemon(m) end
  for _ = 1, R do
    -- the limit: the same app respawned by a bare fork/exec/wait loop (this script)
    local lpath = OUT .. "/stamps-limit.txt"
    crash_round("limit", function()
      -- bench/respawn.c: posix_spawn + waitpid and nothing else; its own
      -- CPU is the floor of the CPU rows at its pace
      local out = OUT .. "/respawn.out"
      run({ RESPAWN, tostring(CRASH_N + 1), tostring(CRASH_MS), STAMP, lpath }, { out = out })
      local n, wall, cpu = (util.read_file(out) or ""):match("^(%d+) (%d+) (%-?%d+)")
      n, wall, cpu = tonumber(n), tonumber(wall), tonumber(cpu)
      if not n or n == 0 or cpu < 0 then return note("bench/respawn gave no figures") end
      add("crash_cpu", "limit", cpu / wall * 100)
      add("crash_cpu_each", "limit", cpu / 1e6 / n)
    end, lpath)
    -- the same from an event loop (respawn --ev: libev's ev_child, as a
    -- supervisor that also serves its clients must wait): the floor of
    -- such a daemon's CPU per restart
    local epath, out = OUT .. "/stamps-ev.txt", OUT .. "/respawn.out"
    run({ RESPAWN, "--ev", tostring(CRASH_N + 1), tostring(CRASH_MS), STAMP, epath }, { out = out })
    os.remove(epath)
    local n, _, cpu = (util.read_file(out) or ""):match("^(%d+) (%d+) (%-?%d+)")
    n, cpu = tonumber(n), tonumber(cpu)
    if n and n > 0 and cpu >= 0 then add("crash_cpu_each_ev", "limit", cpu / 1e6 / n)
    else note("bench/respawn --ev gave no figures") end
    -- and with the system calls a supervisor makes for each run (respawn
    -- --sup: its pipes read, its pid file written, a file read again, its
    -- group killed): the floor of pm's promises, without its Lua
    run({ RESPAWN, "--sup", tostring(CRASH_N + 1), tostring(CRASH_MS), STAMP, epath }, { out = out })
    os.remove(epath)
    n, _, cpu = (util.read_file(out) or ""):match("^(%d+) (%d+) (%-?%d+)")
    n, cpu = tonumber(n), tonumber(cpu)
    if n and n > 0 and cpu >= 0 then add("crash_cpu_each_sup", "limit", cpu / 1e6 / n)
    else note("bench/respawn --sup gave no figures") end
    for _, m in ipairs(MANAGERS) do
      local path = OUT .. "/stamps-" .. m.key .. ".txt"
      crash_round(m.key, function()
        local dpid = daemon_pid(m)
        cli(m, { "start", ECO["crash-" .. m.key] })
        local t = core.mono() + 10000
        while file_size(path) < STAMP_LINE and core.mono() < t do core.sleep(1) end
        local c0, w0, n0 = cpu_sample(dpid), core.mono(), math.floor(file_size(path) / STAMP_LINE)
        while file_size(path) < STAMP_LINE * (CRASH_N + 1) and core.mono() - w0 < CRASH_MS do core.sleep(20) end
        local c1, w1, n1 = cpu_sample(dpid), core.mono(), math.floor(file_size(path) / STAMP_LINE)
        local pct = cpu_pct(c0, c1, w1 - w0)
        add("crash_cpu", m.key, pct)
        if n1 > n0 then add("crash_cpu_each", m.key, pct / 100 * (w1 - w0) / (n1 - n0)) end
        cli(m, { "delete", "crash" })
      end, path)
    end
  end
  progress("crash", "crash -> respawn (ms)")
  progress("crash_cpu", "daemon CPU in the crash loop (%)")
end

-- watches a file grow: the first and the last byte's time, bounded
local function growth(path, expected)
  local deadline = core.mono() + 120000
  local size, first, first_size, last = 0, nil, 0, nil
  while core.mono() < deadline do
    local s = file_size(path)
    local now = core.mono()
    if s > size then
      if not first then first, first_size = now, s end
      size, last = s, now
    end
    if size >= expected then break end
    if first and now - last > 2000 then break end -- stalled: what is missing is lost
    core.sleep(1)
  end
  if not first then return { size = 0, mbs = 0 } end
  local span = last - first
  return { size = size, mbs = span > 0 and (size - first_size) / 1e6 / (span / 1000) or 0 }
end

local lost_runs = {}
-- 200 MB on stdout from an app that then exits
function figures.burst()
  for _, m in ipairs(MANAGERS) do -- fresh daemons: the peak is the burst's, not an earlier figure's
    kill_daemon(m)
    ensure_daemon(m)
  end
  local lpath = OUT .. "/burst-limit.log"
  for _ = 1, R do
    os.remove(lpath)
    local pid = assert(core.spawn({ file = "/bin/sh", args = { "/bin/sh", "-c", ("%s %s %d | cat > %s"):format(
      sh_quote(PYTHON), sh_quote(SRC .. "/bench/writer.py"), BURST, sh_quote(lpath)) }, fds = { -1, -1, errfd } }))
    local g = growth(lpath, BURST)
    wait_pid(pid, 60000)
    add("burst_mbs", "limit", g.mbs)
    for _, m in ipairs(MANAGERS) do
      local path = OUT .. "/burst-" .. m.key .. ".log"
      os.remove(path)
      local dpid = daemon_pid(m)
      local f = io.open("/proc/" .. dpid .. "/clear_refs", "w") -- VmHWM back to the current RSS
      if f then f:write("5"); f:close() else note("cannot reset VmHWM: the burst's peak is since daemon start") end
      cli(m, { "start", ECO["burst-" .. m.key] })
      g = growth(path, BURST)
      local st = pstatus(dpid)
      cli(m, { "delete", "burst" })
      add("burst_mbs", m.key, g.mbs)
      add("burst_lost", m.key, BURST - g.size)
      if st then add("burst_hwm", m.key, st.hwm) end
      lost_runs[m.key] = lost_runs[m.key] or { lost = 0, n = 0, differ = 0 }
      local lr = lost_runs[m.key]
      lr.n = lr.n + 1
      if g.size < BURST then lr.lost = lr.lost + 1 end
      local _, c = run({ "/usr/bin/cmp", "-s", lpath, path })
      if c.code ~= 0 then lr.differ = lr.differ + 1 end
      os.remove(path)
      os.remove(OUT .. "/burst-" .. m.key .. ".err")
    end
  end
  os.remove(lpath)
  progress("burst_mbs", "200 MB burst (MB/s)")
  progress("burst_hwm", "daemon VmHWM in the burst (MB)")
end

-- daemon CPU over an idle window with 100 apps: both managers at once, no
-- client. The figure is the whole window; its slices give the range.
local idle_slice_s
function figures.idle()
  for _, m in ipairs(MANAGERS) do
    cli(m, { "start", ECO[100] })
    if not wait_list(m, all_online(100), 60000) then
      note(m.label .. ": 100 apps not all online for the idle window")
    end
  end
  pause(3000)
  local slice = opt.idle * 1000 / R
  local pids, c0 = {}, {}
  for _, m in ipairs(MANAGERS) do
    pids[m] = daemon_pid(m)
    c0[m] = cpu_sample(pids[m])
  end
  local w0 = core.mono()
  local first, wprev = {}, w0
  for k, v in pairs(c0) do first[k] = v end
  for _ = 1, R do
    core.sleep(slice)
    local now = core.mono()
    for _, m in ipairs(MANAGERS) do
      local c = cpu_sample(pids[m])
      add("idle_slices", m.key, cpu_pct(c0[m], c, now - wprev))
      c0[m] = c
    end
    wprev = now
  end
  for _, m in ipairs(MANAGERS) do add("idle_cpu", m.key, cpu_pct(first[m], c0[m], wprev - w0)) end
  idle_slice_s = slice / 1000
  for _, m in ipairs(MANAGERS) do delete_all(m) end
  progress("idle_cpu", ("daemon CPU idle, %d s (%%)"):format(opt.idle))
end

-- The floor of a jlist figure (key): the bytes m's jlist gives now, held
-- ready by bench/sockfloor.c and sent over a unix socket to a client that
-- copies them to its stdout (spawned and timed as a pm jlist is), n times;
-- and the size of those bytes (MB) as size_key.
local function jlist_floor(m, key, size_key, n)
  local path = OUT .. "/jlist-floor.json"
  local _, r = cli(m, { "jlist" }, { out = path, timeout = 120000 })
  if r.code ~= 0 then return end
  add(size_key, m.key, file_size(path) / 1e6)
  if m ~= PM then return end
  local sock = OUT .. "/sockfloor.sock"
  os.remove(sock)
  local pid = core.spawn({ file = SOCKFLOOR, args = { SOCKFLOOR, "serve", sock, path }, fds = { -1, -1, errfd } })
  local t = core.mono() + 10000
  while not core.stat(sock) and core.mono() < t do core.sleep(1) end
  for _ = 1, n do
    local ms, rr = run({ SOCKFLOOR, sock }, { timeout = 60000 })
    if rr.code == 0 then add(key, "limit", ms) end
  end
  core.kill(pid, S.SIGTERM)
  wait_pid(pid, 5000)
  os.remove(sock)
  os.remove(path)
end

-- 2,000 apps: start, jlist round trip, daemon memory, delete
local big_skipped
-- One manager at a time: its 2,000 apps are started, listed, measured and
-- deleted before the other's start, so that neither's figures carry the
-- load of the other's 2,000 processes and daemon.
function figures.big()
  local ms_ = { PM }
  if not pm2_missing then
    if opt.quick then big_skipped = "not measured with --quick (about 90 s for PM2)" else ms_[2] = PM2 end
  end
  for _, m in ipairs(ms_) do
    ensure_daemon(m)
    local t0 = core.mono()
    cli(m, { "start", ECO[2000] }, { timeout = 300000 })
    local up = wait_list(m, all_online(2000), 300000)
    if up then
      add("start2000", m.key, core.mono() - t0)
      for _ = 1, R * 3 do
        local ms, r = cli(m, { "jlist" }, { timeout = 60000 })
        if r.code == 0 then add("jlist2000", m.key, ms) end
      end
      jlist_floor(m, "jlist_floor2000", "jlist_mb2000", R * 3)
      pause(2000)
      memory(m, "anon2000", "rss2000")
      local k = m == PM and tonumber((util.read_file(m.home .. "/keeper.pid") or ""):match("%d+"))
      if k then
        local st = util.read_file("/proc/" .. k .. "/status") or ""
        add("keeper_anon2000", m.key, tonumber(st:match("RssAnon:%s*(%d+)")) / 1024)
        add("keeper_rss2000", m.key, tonumber(st:match("VmRSS:%s*(%d+)")) / 1024)
        add("keeper_file2000", m.key, tonumber(st:match("RssFile:%s*(%d+)")) / 1024)
        local pss = (util.read_file("/proc/" .. k .. "/smaps_rollup") or ""):match("\nPss:%s*(%d+)")
        if pss then add("keeper_pss2000", m.key, tonumber(pss) / 1024) end
      end
    else
      note(m.label .. ": 2,000 apps not all online within 300 s: not measured")
      if m == PM2 then big_skipped = "not measured: 2,000 apps not online within 300 s" end
    end
    t0 = core.mono()
    if delete_all(m, 300000) then
      add("delete2000", m.key, core.mono() - t0)
    else
      note(m.label .. ": 2,000 apps not all gone within 300 s")
    end
  end
  progress("jlist2000", "2,000 apps: jlist (ms)")
  progress("rss2000", "2,000 apps: daemon VmRSS (MB)")
end

-- The keeper: 100 idle apps, SIGKILL of the daemon. takeover100: from
-- the kill to a ping answered by the next daemon (a raw client polling
-- rpc.sock every ms); kept100: the apps with the same pid afterwards (PM2:
-- its next call starts a daemon, which finds its list gone); the keeper's
-- memory with 2,000 apps is taken by figures.big.
local function raw_ping(path, not_pid)
  local fd = core.connect_unix(path)
  if not fd then return false end
  core.write(fd, '{"jsonrpc":"2.0","id":1,"method":"ping"}\n')
  local got, deadline = "", core.mono() + 2000
  while not got:find("\n", 1, true) and core.mono() < deadline do
    local s = core.read(fd, 65536)
    if s == "" then break end
    if s then got = got .. s else core.sleep(1) end
  end
  core.close(fd)
  local pid = tonumber(got:match('"pid":(%d+)'))
  return pid ~= nil and pid ~= not_pid
end
function figures.keeper()
  for _, m in ipairs(MANAGERS) do
    ensure_daemon(m)
    cli(m, { "start", ECO[100] })
    if not wait_list(m, all_online(100), 60000) then
      note(m.label .. ": 100 apps not online within 60 s: keeper figures not measured")
    else
      local before = {}
      for _, p in ipairs(jlist(m) or {}) do before[p.name] = p.pid end
      for _ = 1, (m == PM and R or 1) do
        pause(2500) -- (a daemon killed within 2 s of serving counts as dying young)
        local d = daemon_pid(m)
        local t0 = core.mono()
        core.kill(d, S.SIGKILL)
        if m == PM then
          local sock = m.home .. "/rpc.sock"
          while not raw_ping(sock, d) and core.mono() - t0 < 10000 do core.sleep(1) end
          add("takeover100", m.key, core.mono() - t0)
        else
          while alive(d) and core.mono() - t0 < 5000 do pause(1) end
        end
      end
      local kept = 0
      for _, p in ipairs(jlist(m) or {}) do
        if before[p.name] and before[p.name] == p.pid then kept = kept + 1 end
      end
      add("kept100", m.key, kept)
      if m == PM then
        local k = tonumber((util.read_file(m.home .. "/keeper.pid") or ""):match("%d+"))
        if k then
          local st = util.read_file("/proc/" .. k .. "/status") or ""
          add("keeper_anon100", m.key, tonumber(st:match("RssAnon:%s*(%d+)")) / 1024)
        end
      end
    end
    delete_all(m, 60000)
    sweep() -- (PM2's apps its new daemon does not know)
  end
  progress("takeover100", "keeper: take-over with 100 apps (ms)")
end

-- 10,000 apps (pm only: PM2 took 37-44 s for 2,000, so about 4 minutes
-- for 10,000 and 1 GB; it is not run): start until as many as fit are
-- online, jlist, daemon memory, its fds per app, the CPU of a crash loop
-- with the 10,000 idle apps beside it, delete.
local function proc_fds(pid)
  local n = 0
  for _ in pairs(core.listdir("/proc/" .. pid .. "/fd") or {}) do n = n + 1 end
  return n
end
function figures.huge()
  local m = PM
  local dpid = ensure_daemon(m)
  local fds0 = proc_fds(dpid)
  local t0 = core.mono()
  cli(m, { "start", ECO[10000] }, { timeout = 600000 })
  -- as many as the fd limit lets run (ping says how many more fit)
  local up = 0
  wait_list(m, function(list)
    local n = online(list)
    local settled = n == up
    up = n
    return n >= 10000 or (settled and n > 0)
  end, 600000)
  add("start10k", m.key, core.mono() - t0)
  add("online10k", m.key, up)
  local fds1 = proc_fds(dpid)
  local ping_path = OUT .. "/ping.json"
  cli(m, { "ping" }, { out = ping_path })
  local ok, ping = pcall(util.decode, util.read_file(ping_path) or "")
  if not ok or type(ping) ~= "table" then ping = {} end
  if up < 10000 then
    note(("pm: %d of 10,000 apps online: the daemon's fd limit is %s (each app needs 2)"):format(up,
      tostring(ping.fds and ping.fds.limit)))
  end
  -- (the log files the daemon keeps open are a pool of at most 256 for
  -- all apps, not a cost of each: counted apart)
  local logs = type(ping.fds) == "table" and type(ping.fds.log_files) == "table"
    and tonumber(ping.fds.log_files.open) or 0
  note(("pm: %d fds more with %d apps online: 2 pipes each, and %d log files open (the daemon's pool of at "
    .. "most 256)"):format(fds1 - fds0, up, logs))
  add("fds10k", m.key, (fds1 - fds0 - logs) / math.max(up, 1))
  for _ = 1, R do
    local ms, r = cli(m, { "jlist" }, { timeout = 120000 })
    if r.code == 0 then add("jlist10k", m.key, ms) end
  end
  jlist_floor(m, "jlist_floor10k", "jlist_mb10k", R)
  pause(2000)
  memory(m, "anon10k", "rss10k")
  -- the keeper with 10,000 apps: SIGKILL of the daemon, until the next one
  -- answers; the apps it kept (same pids) and its memory after (what a
  -- take-over reads is garbage once the records are built)
  do
    local before = {}
    for _, p in ipairs(jlist(m, 120000) or {}) do before[p.name] = p.pid end
    pause(2500) -- (a daemon killed within 2 s of serving counts as dying young)
    local d = daemon_pid(m)
    local t = core.mono()
    core.kill(d, S.SIGKILL)
    while not raw_ping(m.home .. "/rpc.sock", d) and core.mono() - t < 120000 do core.sleep(1) end
    add("takeover10k", m.key, core.mono() - t)
    local kept = 0
    for _, p in ipairs(jlist(m, 120000) or {}) do
      if before[p.name] and before[p.name] == p.pid then kept = kept + 1 end
    end
    add("kept10k", m.key, kept)
    pause(2000)
    memory(m, "anon10k_taken", "rss10k_taken")
    dpid = daemon_pid(m) or dpid
  end
  -- the crash loop beside them (the crash figure's app, its CPU per restart)
  if up < 10000 then
    -- room for it: the fds of a few running apps (an errored one holds none)
    local names = { "delete" }
    for _, p in ipairs(jlist(m, 120000) or {}) do
      if #names > 8 then break end
      if p.pm2_env and p.pm2_env.status == "online" then names[#names + 1] = p.name end
    end
    cli(m, names)
  end
  local path = OUT .. "/stamps-" .. m.key .. ".txt"
  os.remove(path)
  cli(m, { "start", ECO["crash-" .. m.key] })
  local t = core.mono() + 10000
  while file_size(path) < STAMP_LINE and core.mono() < t do core.sleep(1) end
  -- The window opens 2 s after the loop's first restart (the aftermath of
  -- the calls before it, a /proc sample of 10,000 apps the last list asked
  -- for and the collection of its garbage, is no cost of a restart) and
  -- lasts 10 times the crash figure's (its 200 restarts take a quarter of
  -- a second: a reaper's walk, once a second, would land in some and not
  -- in others)
  pause(2000)
  local c0, w0, n0 = cpu_sample(dpid), core.mono(), math.floor(file_size(path) / STAMP_LINE)
  while file_size(path) < STAMP_LINE * (n0 + 10 * CRASH_N) and core.mono() - w0 < 2 * CRASH_MS do
    core.sleep(20)
  end
  local c1, w1, n1 = cpu_sample(dpid), core.mono(), math.floor(file_size(path) / STAMP_LINE)
  if n1 > n0 then add("crash_cpu_each10k", m.key, cpu_pct(c0, c1, w1 - w0) / 100 * (w1 - w0) / (n1 - n0)) end
  cli(m, { "delete", "crash" })
  t0 = core.mono()
  if delete_all(m, 600000) then
    add("delete10k", m.key, core.mono() - t0)
  else
    note("pm: 10,000 apps not all gone within 600 s")
  end
  progress("jlist10k", "10,000 apps: jlist (ms)")
end

-- ---- the table ----

local function t_max(v) return function(pm) return pm <= v end end
local ROWS = {
  { "list", "`list` round trip, 10 apps, daemon up (ms)", limit = "floor", dist = "ms",
    met = function(pm, lim) return lim and pm <= lim + 2 end, target = "≤ exec floor + 2 ms" },
  { "first", "first call, no daemon: spawn + answer (ms)", limit = "floor", dist = "ms",
    met = t_max(20), target = "≤ 20 ms" },
  { "idle_anon", "daemon RssAnon, idle (MB)", met = t_max(2), target = "≤ 2 MB" },
  { "idle_rss", "daemon VmRSS, idle (MB)" },
  { "anon100", "daemon RssAnon, 100 apps (MB)", met = t_max(4), target = "≤ 4 MB" },
  { "rss100", "daemon VmRSS, 100 apps (MB)" },
  { "start100", "start 100 apps until `jlist` shows all online (ms)", limit = "start100", dist = "ms",
    met = t_max(100), target = "≤ 100 ms" },
  { "delete100", "delete 100 apps until all gone (ms)", met = t_max(100), target = "≤ 100 ms" },
  { "crash", "crash → respawn, restart delay 0 (ms, median per round)", limit = "crash", dist = "ms",
    met = t_max(3), target = "≤ 3 ms" },
  { "crash_cpu", "daemon CPU during the crash loop (% of a core)", limit = "crash_cpu", dist = "pts",
    met = t_max(10), target = "≤ 10 %" },
  { "crash_cpu_each", "daemon CPU per restart in the crash loop (ms)", limit = "crash_cpu_each", dist = "ms" },
  -- the floor ratios (issue 21): pm's median over its limit's, same run
  { "list", "`list` round trip ÷ exec floor", ratio = true, limit = "floor", met = t_max(1.5), target = "≤ 1.5" },
  { "start100", "start 100 apps ÷ bare spawn of 100", ratio = true, met = t_max(1.2), target = "≤ 1.2" },
  { "crash_cpu_each", "daemon CPU per restart ÷ bare respawn loop's", ratio = true, met = t_max(1.3),
    target = "≤ 1.3" },
  { "crash_cpu_each", "daemon CPU per restart ÷ an event loop's respawn (bench/respawn.c --ev)", ratio = true,
    limit = "crash_cpu_each_ev", met = t_max(1.3), target = "≤ 1.3" },
  { "crash_cpu_each", "daemon CPU per restart ÷ a supervisor's respawn (bench/respawn.c --sup: pipes, pid file, "
    .. "group)", ratio = true, limit = "crash_cpu_each_sup", met = t_max(1.3), target = "≤ 1.3" },
  { "burst_mbs", "200 MB stdout burst, first to last byte (MB/s)", limit = "burst_mbs", dist = "pct",
    met = function(pm, lim) return lim and pm >= 0.9 * lim end, target = "≥ 90 % of writer \\| cat" },
  { "burst_lost", "200 MB burst: bytes lost", met = function(...) return select(3, ...).hi == 0 end, target = "0",
    lost = true },
  { "burst_hwm", "200 MB burst: daemon peak RSS, VmHWM (MB)", met = t_max(8), target = "≤ 8 MB" },
  { "idle_cpu", "daemon CPU idle, 100 apps, %IDLE% s window (%)", met = t_max(0.03), target = "≤ 0.03 %",
    slices = "idle_slices" },
  { "takeover100", "keeper: SIGKILL of the daemon → the next one answers, 100 apps (ms)", dist = "ms",
    met = t_max(50), target = "≤ 50 ms" },
  { "kept100", "keeper: apps with the same pid after that SIGKILL (of 100)", met = function(pm) return pm == 100 end,
    target = "100" },
  { "keeper_anon100", "keeper: RssAnon, 100 apps (MB)", met = t_max(1), target = "≤ 1 MB" },
  { "start2000", "2,000 apps: start until all online (ms)", big = true },
  { "jlist2000", "2,000 apps: `jlist` round trip (ms)", limit = "jlist_floor2000", dist = "ms", met = t_max(10),
    target = "≤ 10 ms", big = true },
  { "jlist_mb2000", "2,000 apps: `jlist` size (MB; each app's environment is in it twice, as in PM2's)",
    big = true },
  { "rss2000", "2,000 apps: daemon VmRSS (MB)", met = t_max(40), target = "≤ 40 MB", big = true },
  { "anon2000", "2,000 apps: daemon RssAnon (MB)", big = true },
  { "delete2000", "2,000 apps: delete until all gone (ms)", big = true },
  { "keeper_anon2000", "2,000 apps: keeper RssAnon (MB)", met = t_max(1), target = "≤ 1 MB", big = true },
  { "keeper_rss2000", "2,000 apps: keeper VmRSS (MB; bin/pm-keeper, static: its own pages only)",
    met = t_max(1), target = "≤ 1 MB", big = true },
  { "keeper_file2000", "2,000 apps: keeper RssFile (MB)", big = true },
  { "keeper_pss2000", "2,000 apps: keeper Pss (MB)", big = true },
  { "start10k", "10,000 apps: start until as many as fit are online (ms)", huge = true },
  { "online10k", "10,000 apps: online (fd limit %NOFILE%)", met = function(pm) return pm >= 10000 end,
    target = "10,000", huge = true },
  { "fds10k", "10,000 apps: daemon fds per running app (besides its pool of log files)", met = t_max(2),
    target = "≤ 2", huge = true },
  { "jlist10k", "10,000 apps: `jlist` round trip (ms)", limit = "jlist_floor10k", dist = "ms", met = t_max(50),
    target = "≤ 50 ms", huge = true },
  { "jlist_mb10k", "10,000 apps: `jlist` size (MB)", huge = true },
  { "rss10k", "10,000 apps: daemon VmRSS (MB)", met = t_max(80), target = "≤ 80 MB", huge = true },
  { "anon10k", "10,000 apps: daemon RssAnon (MB)", huge = true },
  { "takeover10k", "10,000 apps: SIGKILL of the daemon → the next one answers (ms)", huge = true },
  { "kept10k", "10,000 apps: apps with the same pid after that SIGKILL", huge = true },
  { "rss10k_taken", "10,000 apps: daemon VmRSS after that take-over (MB)", huge = true,
    met = function(pm)
      local start = stats((res.rss10k or {}).pm)
      return start ~= nil and pm <= start.med * 1.1
    end,
    target = "as after their start (≤ 1.1x)" },
  { "anon10k_taken", "10,000 apps: daemon RssAnon after that take-over (MB)", huge = true },
  { "crash_cpu_each10k", "10,000 idle apps beside a crash loop: daemon CPU per restart (ms)",
    target = "as with 1 app (the crash row)", huge = true,
    met = function(pm) local c = res.crash_cpu_each and stats(res.crash_cpu_each.pm)
      return c ~= nil and pm <= c.med * 1.2 end },
  { "delete10k", "10,000 apps: delete until all gone (ms)", huge = true },
}

local function cell(s)
  if not s then return "—" end
  if s.n == 1 or s.lo == s.hi then return num(s.med) end
  return ("%s (%s–%s)"):format(num(s.med), num(s.lo), num(s.hi))
end

-- the fd limit a daemon started by this run gets (ulimit -n)
local function nofile_text()
  local p = io.popen("sh -c 'ulimit -n'")
  local v = p and p:read("*l")
  if p then p:close() end
  return v or "?"
end

local function table_lines()
  local pm2_head = pm2_missing and "PM2" or "PM2 median (min–max)"
  local lines = {
    "| figure | limit | pm median (min–max) | " .. pm2_head .. " | pm/PM2 | pm vs limit | pm target | met |",
    "|---|---|---|---|---|---|---|---|",
  }
  for _, row in ipairs(ROWS) do
    local fig = row[1]
    local r = res[fig] or {}
    local pm, pm2 = stats(r.pm), stats(r.pm2)
    local lim = row.limit and stats((res[row.limit] or {}).limit)
    if row.ratio then -- (pm's and PM2's medians over the limit's: one number each)
      lim = stats((res[row.limit or fig] or {}).limit)
      local function over(x) return x and lim and lim.med > 0 and { med = x.med / lim.med, n = 1 } or nil end
      pm, pm2, lim = over(pm), over(pm2), nil
    end
    if pm or pm2 then
      local what = row[2]:gsub("%%IDLE%%", tostring(opt.idle)):gsub("%%NOFILE%%", nofile_text())
      local pm_cell, pm2_cell = cell(pm), cell(pm2)
      if row.lost then
        for _, m in ipairs(MANAGERS) do
          local lr = lost_runs[m.key]
          if lr then
            local c = ("%s; lost in %d of %d runs"):format(m == PM and pm_cell or pm2_cell, lr.lost, lr.n)
            if lr.differ > lr.lost then c = c .. (", content differs in %d"):format(lr.differ) end
            if m == PM then pm_cell = c else pm2_cell = c end
          end
        end
      end
      if row.slices then
        local function with_slices(c, who)
          local sl = stats((res[row.slices] or {})[who])
          if not sl then return c end
          return ("%s (%s s slices: %s–%s)"):format(c, num(idle_slice_s), num(sl.lo), num(sl.hi))
        end
        pm_cell, pm2_cell = with_slices(pm_cell, "pm"), with_slices(pm2_cell, "pm2")
      end
      if pm2_missing then
        pm2_cell = pm2_missing:match("^missing") and "missing" or "not run"
      elseif row.big and big_skipped and not pm2 then
        pm2_cell = big_skipped
      elseif row.huge then
        pm2_cell = "not run (about 4 min and 1 GB at 2,000 apps' pace)"
      end
      local ratio = (pm and pm2 and pm2.med ~= 0) and num(pm.med / pm2.med) or "—"
      local dist = "—"
      if pm and lim then
        if row.dist == "ms" then dist = ("%s%s ms"):format(pm.med >= lim.med and "+" or "", num(pm.med - lim.med))
        elseif row.dist == "pts" then
          dist = ("%s%s points"):format(pm.med >= lim.med and "+" or "", num(pm.med - lim.med))
        else dist = ("%s %% of it"):format(num(pm.med / lim.med * 100)) end
      end
      local met = "—"
      if row.met and pm then met = row.met(pm.med, lim and lim.med, pm) and "✓" or "✗" end
      local lim_cell = "—"
      if lim then
        lim_cell = (row.limit == "floor" and "exec floor " or row.limit == "crash" and "bare respawn "
          or row.limit:match("^crash_cpu") and "bare respawn loop "
          or row.limit == "start100" and "bare spawn of 100 "
          or row.limit:match("^jlist_floor") and "its bytes over a socket " or "writer \\| cat ") .. num(lim.med)
      end
      lines[#lines + 1] = ("| %s | %s | %s | %s | %s | %s | %s | %s |"):format(what, lim_cell, pm_cell, pm2_cell,
        ratio, dist, row.target or "—", met)
    end
  end
  return lines
end

-- ---- the run ----

local function capture(argv)
  local path = OUT .. "/capture.txt"
  local ok = pcall(run, argv, { out = path, timeout = 10000 })
  local s = ok and util.read_file(path) or ""
  os.remove(path)
  return (s:gsub("%s+$", ""))
end

local function machine()
  local cpuinfo = util.read_file("/proc/cpuinfo") or ""
  local model = cpuinfo:match("model name%s*:%s*([^\n]+)") or "?"
  local mem = tonumber((util.read_file("/proc/meminfo") or ""):match("MemTotal:%s*(%d+)")) or 0
  local _, release, arch = core.uname()
  return ("%s, %d cores (%s), %.1f GB memory, Linux %s"):format(arch, require("pm.app").cpu_count(), model,
    mem / 1048576, release)
end

local ORDER = { "first", "list", "hundred", "crash", "burst", "idle", "keeper", "big", "huge" }

local function loadavg() return (util.read_file("/proc/loadavg") or "?"):match("^(%S+)") end

local function bin_mtime() local st = core.stat(PM_BIN); return st and st.mtime end

-- the commit bin/pm is measured at, and whether its sources differ from it
local function revision()
  local rev = capture({ "/usr/bin/git", "-C", SRC, "rev-parse", "--short", "HEAD" })
  if rev == "" then return "unknown commit" end
  local dirty = capture({ "/usr/bin/git", "-C", SRC, "status", "--porcelain", "--", "core", "lua", "Makefile" })
  return "commit " .. rev .. (dirty ~= "" and " with local changes to core/ or lua/" or "")
end

local function main()
  local t_start, load_start, mtime = core.mono(), loadavg(), bin_mtime()
  stop_all() -- whatever an interrupted run left
  setup()
  local pm2_version = "?"
  if not pm2_missing then
    pm2_version = (util.read_file(PM2_DIR .. "/package.json") or ""):match('"version"%s*:%s*"([^"]+)"') or "?"
  end
  io.stdout:write(("pm bench: %d rounds%s, idle window %d s, PM2 %s\n"):format(R, opt.quick and " (--quick)" or "",
    opt.idle, pm2_missing or pm2_version))
  for _, fig in ipairs(ORDER) do
    if not opt.figs or opt.figs[fig] then
      io.stdout:write(fig, "\n")
      figures[fig]()
    end
  end
  stop_all()
  if bin_mtime() ~= mtime then note("bin/pm was rebuilt during this run: the figures mix two builds") end

  local minutes = (core.mono() - t_start) / 60000
  local head = {
    "# pm benchmark results", "",
    ("%s — %s"):format(os.date("%Y-%m-%d %H:%M %Z"), machine()), "",
    ("pm %s (%s); %s; node %s. %d rounds%s, idle window %d s; the figures took %.1f min (`make bench`%s)."):format(
      capture({ PM_BIN, "--version" }), revision(),
      pm2_missing and ("PM2 " .. pm2_missing) or ("PM2 " .. pm2_version),
      pm2_missing and "—" or capture({ NODE, "--version" }),
      R, opt.quick and " (--quick)" or "", opt.idle, minutes, opt.quick and " --quick" or ""),
    ("Load average (1 min) at the start %s, at the end %s: anything well above 0 is another"):format(load_start,
      loadavg()) .. " program's work on the same cores, and shows in the ranges.",
    "",
  }
  local lines = table_lines()
  io.stdout:write("\n", table.concat(lines, "\n"), "\n")
  local how = {
    "",
    "Medians with min–max over the rounds (CLI round trips: over every call). *limit*: the physical",
    "floor — `/bin/true` spawned and reaped the same way as the CLIs (exec floor); the crash app",
    "respawned by `bench/respawn.c`, posix_spawn then waitpid and nothing else (bare respawn), whose",
    "own CPU is the floor of the crash-loop CPU rows (bare respawn loop), and `respawn.c --ev` the same",
    "from a libev loop told of each exit by SIGCHLD (an event loop's respawn: a daemon that also answers",
    "clients waits there, not in waitpid), `respawn.c --sup` that loop with the system calls a supervisor",
    "makes each run (the child's pipes read, its pid file written, a file read again, its group killed);",
    "the 100 `/bin/sleep` spawned",
    "by the bench script in parallel threads until all sleep (bare spawn of 100); the writer piped",
    "into `cat > file`.",
    "*pm vs limit*: pm's median minus the limit's, or its share of the limit's throughput. The rows",
    "with ÷ are pm's median over the limit's (the issue's floor ratios), PM2's the same.",
    "",
    "How: apps are `/bin/sleep 3600` (interpreter none) from one JSON ecosystem file read by both;",
    "\"online\" and \"gone\" are what `jlist` shows (each start and delete of 100 waits, 3 s at most, until",
    "the cores are under 5 % busy over 200 ms, so that neither manager's aftermath lands in the other's",
    "timed run" .. (settles > 0 and (": %d waits, %.0f ms on average"):format(settles, settle_waits / settles)
      or "") .. "); memory from /proc/<daemon>/status; CPU from the",
    "daemon's per-thread schedstat (utime+stime when larger), as % of one core. Crash loop: `bench/stamp.c`",
    "appends its monotonic start and exit times and exits 1 (max_restarts 1,000,000); interval = next",
    "start − previous exit. Burst: `bench/writer.py` builds 200 MB of numbered lines, then writes them",
    "in 1 MiB chunks; throughput from the log file's growth (polled every ms), bytes lost = 200 MB − the",
    "file's final size, content checked with `cmp` against the `cat` copy; VmHWM reset by",
    "`clear_refs` on fresh daemons before each burst. Idle: both daemons with 100 apps over the same",
    "window, no client; the figure is the whole window, the range its slices. The crash loop's CPU share",
    "depends on its pace (a manager that respawns faster does more restarts per second): the CPU per",
    "restart row is the cost of one restart. 2,000 apps: one manager at a time (its apps started,",
    "listed 3 times a round, measured, deleted), so that neither carries the other's 4,000 processes.",
  }
  if #notes > 0 then
    how[#how + 1] = ""
    how[#how + 1] = "Notes from this run:"
    for _, n in ipairs(notes) do how[#how + 1] = "- " .. n end
  end
  if next(pooled) then
    how[#how + 1] = ""
    how[#how + 1] = "Crash → respawn, every interval of every round pooled:"
    for _, who in ipairs({ "limit", "pm", "pm2" }) do
      local iv = pooled[who]
      if iv then
        local st = stats(iv)
        table.sort(iv)
        local p99 = iv[math.max(1, math.ceil(#iv * 0.99))]
        how[#how + 1] = ("- %s: %d intervals, median %s ms, p99 %s ms, max %s ms"):format(
          who == "limit" and "bare respawn" or who == "pm" and "pm" or "PM2", st.n, num(st.med), num(p99), num(st.hi))
      end
    end
  end
  io.stdout:write(table.concat(how, "\n"), "\n")
  if opt.write and not opt.figs then
    write(SRC .. "/bench/RESULTS.md", table.concat(head, "\n") .. "\n" .. table.concat(lines, "\n") .. "\n"
      .. table.concat(how, "\n") .. "\n")
    io.stdout:write("written: bench/RESULTS.md\n")
  end
  return 0
end

local ok, err = xpcall(main, debug.traceback)
if not ok then
  io.stderr:write("bench: ", tostring(err), "\n")
  pcall(stop_all)
  return 1
end
return 0
