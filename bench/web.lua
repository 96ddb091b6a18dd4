-- pm web's figures (issue 18), not a test:
--   bin/pm run bench/web.lua [APPS]        (from the repository's root)
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
  http.get(port, "/metrics", nil, { ms = 30000 })
  local walls, size = {}
  local c0, wc0, s0 = cpu_ns(dpid), cpu_ns(wpid), core.mono()
  repeat
    local t = core.mono()
    local m = http.get(port, "/metrics", nil, { ms = 30000 })
    walls[#walls + 1] = core.mono() - t
    size = #m.body
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
print("| figure | pm | target | met |")
print("|---|---|---|---|")
for _, l in ipairs(rows) do print(l) end
print()
print(("Load average (1 min) at the start %s, at the end %s: other programs' work inflates the times.")
  :format(load_start, load1()))
