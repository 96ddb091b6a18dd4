-- pm's figures, each beside its physical limit, in one run (median of
-- several rounds, min-max beside it). PM2's columns come with the benchmark
-- issue; this measures pm. Writes bench/RESULTS.md.
local core = require "pm.core"
local util = require "pm.util"

local src = core.getcwd()
local bin = src .. "/bin/pm"
local rounds = tonumber(arg[1]) or 5
local home = src .. "/bench/out/home"

local function sh(cmd)
  local ok = os.execute(cmd)
  return ok == 0 or ok == true
end

local function run(args)
  -- fork/exec of the CLI with stdout to /dev/null; returns ms
  local t0 = core.mono()
  local pid = assert(core.spawn({ file = bin, args = args, fds = { -1, -1, 2 },
    env = { "PM_HOME=" .. home, "PATH=" .. os.getenv("PATH") } }))
  local done
  core.on_child(function(p) if p == pid then done = true end end)
  while not done do core.run("once") end
  return core.mono() - t0
end

local function exec_ms(file, args)
  local t0 = core.mono()
  local pid = assert(core.spawn({ file = file, args = args, fds = { -1, -1, 2 } }))
  local done
  core.on_child(function(p) if p == pid then done = true end end)
  while not done do core.run("once") end
  return core.mono() - t0
end

local function stats(xs)
  table.sort(xs)
  return xs[math.ceil(#xs / 2)], xs[1], xs[#xs]
end

local function daemon_status()
  local pid = tonumber((util.read_file(home .. "/pm.pid") or ""):match("%d+"))
  local s = pid and util.read_file("/proc/" .. pid .. "/status") or ""
  return tonumber(s:match("RssAnon:%s*(%d+)")) or 0, tonumber(s:match("VmRSS:%s*(%d+)")) or 0
end

local function kill_daemon()
  run({ bin, "kill" })
end

local rows = {}
local function row(name, xs, unit, limit, target)
  local med, lo, hi = stats(xs)
  rows[#rows + 1] = ("| %s | %.2f %s | %.2f–%.2f | %s | %s |"):format(name, med, unit, lo, hi,
    limit or "", target or "")
  io.stdout:write(rows[#rows], "\n")
end

sh("rm -rf " .. home .. " && mkdir -p " .. home)
local ticker = src .. "/ecosystem/ticker.sh"

-- first call with no daemon: spawn + answer
local first, floor = {}, {}
for _ = 1, rounds do
  kill_daemon()
  first[#first + 1] = run({ bin, "ping" })
end
for _ = 1, 50 do floor[#floor + 1] = exec_ms("/bin/true", { "/bin/true" }) end
local floor_med = stats(floor)
row("first call, no daemon (spawn + answer)", first, "ms", ("exec floor %.2f ms"):format(floor_med), "≤ 20 ms")

-- idle memory
core.sleep(200)
local anon, rss = daemon_status()
rows[#rows + 1] = ("| daemon idle, no app: RssAnon / VmRSS | %d / %d KB | | | ≤ 2 MB RssAnon |"):format(anon, rss)
io.stdout:write(rows[#rows], "\n")

-- list with 10 apps
for i = 1, 10 do run({ bin, "start", ticker, "-n", "t" .. i, "-f", "-s" }) end
local list, fl = {}, {}
for _ = 1, rounds * 20 do
  list[#list + 1] = run({ bin, "list" })
  fl[#fl + 1] = exec_ms("/bin/true", { "/bin/true" })
end
local fmed = stats(fl)
row("`pm list`, 10 apps", list, "ms", ("exec floor %.2f ms"):format(fmed), "≤ floor + 2 ms")
run({ bin, "delete", "all", "-s" })

-- 100 apps: start until all online, delete until all gone
local starts, deletes = {}, {}
local eco = home .. "/ecosystem.hundred.lua"
local f = assert(io.open(eco, "w"))
f:write("local apps = {}\nfor i = 1, 100 do apps[i] = { name = 'a' .. i, script = '", ticker,
  "' } end\nreturn { apps = apps }\n")
f:close()
for _ = 1, rounds do
  local t0 = core.mono()
  run({ bin, "start", eco, "-s" }) -- returns once every app is launched
  starts[#starts + 1] = core.mono() - t0
  if _ == rounds then
    core.sleep(300)
    local a, r = daemon_status()
    rows[#rows + 1] = ("| daemon with 100 apps: RssAnon / VmRSS | %d / %d KB | | | ≤ 4 MB RssAnon |"):format(a, r)
    io.stdout:write(rows[#rows], "\n")
  end
  t0 = core.mono()
  run({ bin, "delete", "all", "-s" })
  deletes[#deletes + 1] = core.mono() - t0
end
row("start 100 apps until online", starts, "ms", "", "≤ 100 ms")
row("delete 100 apps until gone", deletes, "ms", "", "≤ 100 ms")
kill_daemon()

local _, release, machine = core.uname()
local mem = (util.read_file("/proc/meminfo") or ""):match("MemTotal:%s*(%d+)")
local out = {
  "# pm benchmark results", "",
  ("%s — %s, %d cores, %.0f GB, Linux %s; %d rounds"):format(os.date("%Y-%m-%d %H:%M"), machine,
    require("pm.app").cpu_count(), (tonumber(mem) or 0) / 1048576, release, rounds), "",
  "| figure | pm (median) | min–max | limit | target |", "|---|---|---|---|---|",
}
for _, r in ipairs(rows) do out[#out + 1] = r end
out[#out + 1] = ""
out[#out + 1] = "PM2 is not measured yet: the side-by-side run is the benchmark issue's."
local w = assert(io.open(src .. "/bench/RESULTS.md", "w"))
w:write(table.concat(out, "\n"), "\n")
w:close()
sh("rm -rf " .. src .. "/bench/out")
