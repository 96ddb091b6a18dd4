-- pm web's figures (issue 18), not a test:
--   bin/pm run bench/web.lua [APPS] [--no-pm2]   (from the repository's root)
-- A scrape of /metrics with APPS (2,000) processes: wall time, and the
-- CPU per scrape of the daemon and of the web process (schedstat of their
-- threads, what each spends meanwhile without scrapes taken off); the dashboard open
-- (one SSE client) with 100 processes: CPU of the daemon and of the web
-- process over 10 s; the daemon's memory added by the history of APPS
-- processes. Prints a markdown table. Its PM_HOME is bench/out/web-home;
-- every process it starts is stopped (pm kill, then by pid).
local core = require "pm.core"
local util = require "pm.util"

local src = core.getcwd()
package.path = src .. "/tests/helpers/?.lua;" .. package.path
local H = require "pmtest"
local http = require "httpc"
local bin = src .. "/bin/pm"
local home = src .. "/bench/out/web-home"
local APPS = tonumber(arg and arg[1]) or 2000
assert(core.stat(bin), "run me from the repository's root, after make build: bin/pm run bench/web.lua")

os.execute("rm -rf " .. H.shquote(home) .. " && mkdir -p " .. H.shquote(home))
core.setenv("PM_HOME", home)
H.home = home
H.bin = bin

local function ok(r, what)
  if r.code ~= 0 then error(what .. ": " .. r.out .. r.err) end
  return r
end

local function cpu_ns(pid)
  local sum = 0
  for tid in pairs(core.listdir("/proc/" .. pid .. "/task") or {}) do
    local s = util.read_file(("/proc/%d/task/%s/schedstat"):format(pid, tid))
    sum = sum + (tonumber(s and s:match("^(%d+)")) or 0)
  end
  return sum
end

local function rss_kb(pid)
  local s = util.read_file("/proc/" .. pid .. "/status") or ""
  return tonumber(s:match("VmRSS:%s*(%d+)")) or 0
end

local function median(xs)
  table.sort(xs)
  return xs[math.ceil(#xs / 2)]
end

local function load1() return (util.read_file("/proc/loadavg") or "?"):match("^(%S+)") end
local load_start = load1()

local rows = {}
local function row(fig, value, target, met)
  rows[#rows + 1] = ("| %s | %s | %s | %s |"):format(fig, value, target, met and "yes" or "no")
end

local ok_run, err = pcall(function()
  -- ---- 100 apps, the dashboard open ----
  ok(H.pm("start", "--name", "s", "-i", "100", "--", "sleep", "100000"), "start 100")
  local port = H.free_port()
  local r = ok(H.pm("web", "--listen", "127.0.0.1:" .. port), "pm web")
  local token = r.out:match("%?token=(%x+)")
  local dpid = H.daemon_pid(home)
  local wpid = H.proc("pm-web").pid
  local login = http.get(port, "/?token=" .. token)
  local cookie = (login.headers["set-cookie"] or ""):match("(pm_session=%x+)")
  -- the dashboard's page, then its event stream for 10 s (as a browser)
  http.get(port, "/", { Cookie = cookie })
  core.sleep(2000) -- (history's first samples, the web settled)
  local d0, w0, t0 = cpu_ns(dpid), cpu_ns(wpid), core.mono()
  local events = http.get(port, "/events", { Cookie = cookie }, { want = "\0never", ms = 10000 })
  local ms = core.mono() - t0
  local dcpu = (cpu_ns(dpid) - d0) / (ms * 1e6) * 100
  local wcpu = (cpu_ns(wpid) - w0) / (ms * 1e6) * 100
  local n = select(2, events.body:gsub("event: procs", ""))
  row("dashboard open, 100 apps: daemon CPU (% of a core)", ("%.2f"):format(dcpu), "≤ 1 %", dcpu <= 1)
  row("dashboard open, 100 apps: web process CPU (% of a core)", ("%.2f"):format(wcpu), "≤ 2 %", wcpu <= 2)
  io.stderr:write(("(%d table updates in %.1f s)\n"):format(n, ms / 1000))

  -- ---- APPS apps: the scrape, history's memory ----
  ok(H.pm("web", "--off"), "pm web --off")
  ok(H.pm("scale", "s", tostring(APPS)), "scale")
  H.wait_for(function()
    local c = H.pm("-e", "local n = 0 for _, p in ipairs(pm.list()) do if p.pm2_env.status == 'online' "
      .. "then n = n + 1 end end io.write(n)")
    return tonumber(c.out) == APPS
  end, 300000, APPS .. " apps online")
  core.sleep(3000) -- (the daemon settles: journal, pid files)
  collectgarbage()
  local before = rss_kb(dpid)
  -- history on (the web process asks): every app sampled every second
  ok(H.pm("web", "--listen", "127.0.0.1:" .. port), "pm web")
  core.sleep(5000)
  -- the daemon's CPU with history on and nobody scraping: 5 s
  wpid = H.proc("pm-web").pid
  local b0, wb0, bt = cpu_ns(dpid), cpu_ns(wpid), core.mono()
  core.sleep(5000)
  local base = (cpu_ns(dpid) - b0) / 1e6 / (core.mono() - bt) -- ms of CPU per ms
  local wbase = (cpu_ns(wpid) - wb0) / 1e6 / (core.mono() - bt)
  row(("history sampling, %d apps: daemon CPU (%% of a core)"):format(APPS), ("%.1f"):format(base * 100),
    "(sampling only while asked)", true)
  -- the scrape: wall (the median, one first to warm up); the CPU of the
  -- daemon and of the web process over them, less what each spends
  -- meanwhile without them. Scrapes one after the other for 5 s (10 at
  -- least): the daemon's sampling, once a second, falls as often in that
  -- time as in the 5 s above (10 scrapes alone take a quarter of a
  -- second: a sampling in it or not would swing the figure by 5 ms).
  -- (the client counts each answer's bytes and keeps none, as a scraper
  -- reading into a buffer it keeps; the first answer is read whole)
  local first = http.get(port, "/metrics", nil, { ms = 30000 })
  assert(first.body:find("\npm_apps " .. APPS + 1 .. "\n$"), "scrape: not the text of " .. APPS .. " apps")
  local walls, size = {}
  local c0, wc0, s0 = cpu_ns(dpid), cpu_ns(wpid), core.mono()
  repeat
    local t = core.mono()
    local m = http.get(port, "/metrics", nil, { ms = 30000, discard = true })
    walls[#walls + 1] = core.mono() - t
    size = m.size
    assert(m.status == 200, "scrape: " .. m.status)
  until #walls >= 10 and core.mono() - s0 >= 5000
  local scrapes = #walls
  local cpu = math.max(0, ((cpu_ns(dpid) - c0) / 1e6 - base * (core.mono() - s0)) / scrapes)
  local wcpu_scrape = math.max(0, ((cpu_ns(wpid) - wc0) / 1e6 - wbase * (core.mono() - s0)) / scrapes)
  local wall = median(walls)
  row(("/metrics scrape, %d apps: wall (ms, median of %d; %d KB)"):format(APPS, scrapes, math.floor(size / 1024)),
    ("%.1f"):format(wall), "≤ 20 ms", wall <= 20)
  row(("/metrics scrape, %d apps: daemon CPU (ms a scrape, the sampling's share taken off)"):format(APPS),
    ("%.1f"):format(cpu), "≤ 10 ms", cpu <= 10)
  row(("/metrics scrape, %d apps: web process CPU (ms a scrape)"):format(APPS), ("%.1f"):format(wcpu_scrape),
    "(no target)", true)
  local after = rss_kb(dpid)
  local added = (after - before) / 1024
  row(("history of %d apps: daemon memory added (MB, VmRSS)"):format(APPS), ("%.1f"):format(added),
    "≤ 16 MB", added <= 16)
end)

H.pm("kill")
if not ok_run then
  io.stderr:write("bench/web.lua: ", tostring(err), "\n")
  os.exit(1)
end

-- ---- PM2 beside it: pm2-prometheus-exporter (npm; it runs as a PM2 app,
-- lists PM2's processes at each scrape and serves them on port 9209)
-- scraping PM2 with APPS sleeps. PM2 and the exporter come from
-- bench/.pm2 (bench/run installs PM2 there; the exporter is added beside
-- it when npm can); without them, or with --no-pm2, a line says so. ----
local pm2_rows = {}
local PM2_CLI = src .. "/bench/.pm2/node_modules/pm2/bin/pm2"
local EXPORTER = src .. "/bench/.pm2/node_modules/pm2-prometheus-exporter/exporter.js"
local EXPORTER_PORT = 9209 -- (the exporter's own: it reads no other)
local function pm2_part()
  if not core.stat(EXPORTER) and core.stat(PM2_CLI) then
    H.sh("npm install --prefix bench/.pm2 --no-audit --no-fund --loglevel=error pm2-prometheus-exporter")
  end
  if not (core.stat(PM2_CLI) and core.stat(EXPORTER)) then
    return "PM2 or pm2-prometheus-exporter not in bench/.pm2 (npm could not install them): PM2 not measured"
  end
  local probe = core.listen_tcp("127.0.0.1", tostring(EXPORTER_PORT))
  if not probe then return "port 9209 (the exporter's) is in use: PM2 not measured" end
  core.close(probe)
  local phome = src .. "/bench/out/web-pm2-home"
  os.execute("rm -rf " .. H.shquote(phome) .. " && mkdir -p " .. H.shquote(phome))
  local apps = {}
  for i = 1, APPS do apps[i] = { name = "s" .. i, script = "/bin/sleep", args = "100000", interpreter = "none" } end
  apps[#apps + 1] = { name = "exporter", script = EXPORTER }
  util.write_atomic(phome .. "/eco.json", util.encode({ apps = apps }))
  local env = { PM2_HOME = phome }
  local function pm2(...)
    local args = { ... }
    for i, a in ipairs(args) do args[i] = H.shquote(a) end
    return H.sh("node " .. H.shquote(PM2_CLI) .. " " .. table.concat(args, " "), { env = env })
  end
  local pids = {}
  local ok2, err2 = pcall(function()
    local t0 = core.mono()
    ok(pm2("start", phome .. "/eco.json"), "pm2 start")
    local list
    H.wait_for(function()
      local r = pm2("jlist")
      list = r.code == 0 and util.decode(r.out)
      if type(list) ~= "table" then return false end
      local n = 0
      for _, p in ipairs(list) do
        if p.pid and p.pid > 0 then pids[p.pid] = true end
        if p.pm2_env.status == "online" then n = n + 1 end
      end
      return n == APPS + 1
    end, 300000, APPS .. " PM2 apps online")
    io.stderr:write(("(PM2: %d apps online in %.0f s)\n"):format(APPS, (core.mono() - t0) / 1000))
    local dpid = tonumber((util.read_file(phome .. "/pm2.pid") or ""):match("%d+"))
    local epid
    for _, p in ipairs(list) do if p.name == "exporter" then epid = p.pid end end
    H.wait_for(function()
      return http.get(EXPORTER_PORT, "/metrics", nil, { ms = 30000 }).status == 200
    end, 60000, "the exporter's /metrics")
    core.sleep(2000)
    -- (what PM2's daemon spends without scrapes, over 5 s, taken off)
    local b0, bt = cpu_ns(dpid), core.mono()
    core.sleep(5000)
    local pbase = (cpu_ns(dpid) - b0) / 1e6 / (core.mono() - bt)
    local walls, size = {}
    local c0, e0, s0 = cpu_ns(dpid), cpu_ns(epid), core.mono()
    repeat
      local t = core.mono()
      local m = http.get(EXPORTER_PORT, "/metrics", nil, { ms = 60000, discard = true })
      walls[#walls + 1] = core.mono() - t
      size = m.size or #m.body
      assert(m.status == 200, "PM2 scrape: " .. m.status)
    until #walls >= 10
    local n, secs = #walls, (core.mono() - s0) / 1000
    local dcpu = math.max(0, ((cpu_ns(dpid) - c0) / 1e6 - pbase * (core.mono() - s0)) / n)
    local ecpu = (cpu_ns(epid) - e0) / 1e6 / n
    pm2_rows[#pm2_rows + 1] = ("| /metrics scrape, %d apps: wall (ms, median of %d; %d KB) | %.1f |"):format(APPS, n,
      math.floor(size / 1024), median(walls))
    pm2_rows[#pm2_rows + 1] = ("| /metrics scrape, %d apps: PM2 daemon's CPU (ms a scrape, over %.1f s; "
      .. "%.1f %% of a core without scrapes, taken off) | %.1f |"):format(APPS, secs, pbase * 100, dcpu)
    pm2_rows[#pm2_rows + 1] = ("| /metrics scrape, %d apps: the exporter's CPU (ms a scrape) | %.1f |"):format(APPS,
      ecpu)
  end)
  pm2("kill")
  -- (what pm2 kill left: the pids PM2 listed, if still its sleeps)
  for pid in pairs(pids) do
    local cmd = util.read_file("/proc/" .. pid .. "/cmdline") or ""
    if cmd == "/bin/sleep\0" .. "100000\0" then core.kill(pid, core.signals.SIGKILL) end
  end
  if not ok2 then return "PM2: " .. tostring(err2) end
end
local pm2_note
if not (arg and (arg[2] == "--no-pm2" or arg[1] == "--no-pm2")) then
  local okp, perr = pcall(pm2_part)
  pm2_note = not okp and tostring(perr) or perr
else
  pm2_note = "PM2 not measured (--no-pm2)"
end

print("| figure | pm | target | met |")
print("|---|---|---|---|")
for _, l in ipairs(rows) do print(l) end
print()
if #pm2_rows > 0 then
  print("PM2 beside it (pm2-prometheus-exporter " .. "scraping PM2, the same client):")
  print()
  print("| figure | PM2 + pm2-prometheus-exporter |")
  print("|---|---|")
  for _, l in ipairs(pm2_rows) do print(l) end
  print()
end
if pm2_note then print(pm2_note); print() end
print(("Load average (1 min) at the start %s, at the end %s: other programs' work inflates the times.")
  :format(load_start, load1()))
