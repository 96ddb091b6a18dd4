-- Soak: the crash storm. luajit tests/soak/storm.lua [restarts (10000)]
-- An app that prints one line and exits at once, restarted with delay 0
-- until it has restarted N times. Sampled all along: zombie children of
-- the daemon, its fd count and RSS. The baseline and the end are taken
-- with the app stopped (its pipes closed), after a warm-up of 200 restarts.
-- Checks: no zombie beyond the one being reaped, fds back to the baseline,
-- RSS within 2 MB of it, one out-log line per run, the daemon the same
-- process. The daemon and the app are stopped by pid at the end.
local S = require "common"
local H, core = S.H, S.core

local N = tonumber(arg[1]) or 10000
local home = H.new_home()

local ok, err = pcall(function()
  S.say("crash storm: %d restarts, PM_HOME %s", N, home)
  local r = H.pm("start", H.fixtures .. "/rel_crash.sh", "--name", "storm", "--interpreter", "none",
    "--max-restarts", "100000000", "--min-uptime", "0", "-s")
  assert(r.code == 0, r.err)
  local dpid = H.daemon_pid()
  local function restarts()
    local p = H.proc("storm")
    return p and p.pm2_env.restart_time or 0
  end
  H.wait_for(function() return restarts() >= 200 end, 30000, "200 warm-up restarts")
  assert(H.pm("stop", "storm", "-s").code == 0)
  local base = restarts()
  local fd0 = S.fd_count(dpid)
  local rss0, anon0 = S.rss(dpid)
  S.say("  start (app stopped after %d warm-up restarts): daemon fds %d, VmRSS %d kB, RssAnon %d kB",
    base, fd0, rss0, anon0)
  assert(H.pm("start", "storm", "-s").code == 0)
  local t0 = core.mono()
  local max_z, max_fd, max_rss, samples = 0, 0, 0, 0
  local next_report = base + 2000
  H.wait_for(function()
    samples = samples + 1
    max_z = math.max(max_z, #S.zombies_of(dpid))
    max_fd = math.max(max_fd, S.fd_count(dpid) or 0)
    max_rss = math.max(max_rss, (S.rss(dpid)))
    local n = restarts()
    if n >= next_report then
      S.say("  %6d restarts, %.0f s: fds %d, VmRSS %d kB", n - base, (core.mono() - t0) / 1000,
        S.fd_count(dpid), (S.rss(dpid)))
      next_report = next_report + 2000
    end
    return n >= base + N
  end, math.max(120000, N * 30), N .. " restarts")
  local secs = (core.mono() - t0) / 1000
  assert(H.pm("stop", "storm", "-s").code == 0)
  local p = H.proc("storm")
  local done = p.pm2_env.restart_time - base
  H.wait_for(function() return #S.zombies_of(dpid) == 0 end, 3000, "no zombie")
  local fd1 = H.wait_for(function()
    local n = S.fd_count(dpid)
    return n <= fd0 and n
  end, 3000, "the fds back to the baseline") or S.fd_count(dpid)
  local rss1, anon1 = S.rss(dpid)
  S.say("  end   (app stopped after %d restarts in %.1f s, %.0f/s): daemon fds %d, VmRSS %d kB, RssAnon %d kB",
    done, secs, done / secs, fd1, rss1, anon1)
  S.say("  during: %d samples, at most %d zombies, %d fds, VmRSS %d kB", samples, max_z, max_fd, max_rss)
  S.check(done >= N, "%d restarts", done)
  S.check(max_z <= 1, "no zombie piling up (at most %d at once)", max_z)
  S.check(fd1 == fd0, "daemon fds flat: %d -> %d", fd0, fd1)
  S.check(rss1 <= rss0 + 2048, "daemon VmRSS flat: %d kB -> %d kB (+%d kB)", rss0, rss1, rss1 - rss0)
  S.check(p.pm2_env.status == "stopped", "the app stopped (%s)", p.pm2_env.status)
  S.check(H.daemon_pid() == dpid and H.alive(dpid), "the same daemon (pid %d)", dpid)
  -- one line per run: runs = restarts + the two starts; a run cut by a stop may miss its line
  local launches = p.pm2_env.restart_time + 2
  local lines = H.count_lines(home .. "/logs/storm-out.log")
  S.check(lines <= launches and lines >= launches - 2, "%d out-log lines for %d runs", lines, launches)
end)
if not ok then S.check(false, "crash storm: %s", tostring(err)) end
H.home = home
H.cleanup(home)
for _, pid in ipairs(S.processes_of_home(home)) do core.kill(pid, 9) end
S.finish()
