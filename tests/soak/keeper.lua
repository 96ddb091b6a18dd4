-- Soak: the keeper. luajit tests/soak/keeper.lua [cycles (100)] [apps (50)]
-- N SIGKILLs of the daemon with M idle apps (one a crash loop beside them,
-- so that exits happen across the take-overs), each followed by the next
-- daemon answering. Checks after each cycle: every idle app the same pid;
-- one process per app (no duplicate); no zombie under the keeper or the
-- daemon; at the end, the keeper's and the daemon's fds back to the
-- first cycle's and the keeper's memory flat (RssAnon within 256 kB).
-- Everything is stopped by pid at the end.
local S = require "common"
local H, core, util = S.H, S.core, S.util

local N = tonumber(arg[1]) or 100
local M = tonumber(arg[2]) or 50
local home = H.new_home()

local ok, err = pcall(function()
  S.say("keeper: %d SIGKILLs of the daemon with %d apps, PM_HOME %s", N, M, home)
  local apps = {}
  for i = 1, M do
    apps[i] = ("{ name = 'idle%d', script = %q }"):format(i, H.fixtures .. "/ep_app.sh")
  end
  apps[#apps + 1] = ("{ name = 'loop', script = %q, min_uptime = 0, max_restarts = 1000000 }")
    :format(H.fixtures .. "/rel_crash.sh")
  local eco = H.write(home .. "/ecosystem.config.lua", "return { apps = { " .. table.concat(apps, ",\n") .. " } }\n")
  assert(H.pm("start", eco, "-s").code == 0)
  local function pids()
    local t = {}
    for _, p in ipairs(H.jlist()) do t[p.name] = p.pid end
    return t
  end
  local first = pids()
  local k = assert(H.keeper_pid(), "a keeper")
  local kfd0, dfd0, anon0
  local dups, zombies, moved = 0, 0, 0
  local t0 = core.mono()
  for cycle = 1, N do
    local d = H.daemon_pid()
    core.kill(d, 9)
    H.wait_for(function() return not H.alive(d) end, 5000, "the daemon's end")
    local r = H.pm("ping")
    assert(r.code == 0, "no daemon answers after cycle " .. cycle .. ": " .. r.err)
    local now = pids()
    for name, pid in pairs(first) do
      if name ~= "loop" and now[name] ~= pid then moved = moved + 1 end
    end
    -- one live process per app: the marker's pm_id, counted
    local seen = {}
    for _, pid in ipairs(S.processes_of_home(home)) do
      local env = H.environ(pid)
      local marker = env and env.PM_APP_UID
      local st = core.proc_stat(pid)
      if marker and st and st.state ~= "Z" then
        local id = marker:match("^%d+%-(%d+)%-")
        -- (an app's process, not its own children: its parent is the keeper or the daemon)
        if st.ppid == k or st.ppid == H.daemon_pid() then
          if seen[id] then dups = dups + 1 end
          seen[id] = true
        end
      end
    end
    zombies = zombies + #S.zombies_of(k)
    if cycle == 1 then
      kfd0, dfd0 = S.fd_count(k), S.fd_count(H.daemon_pid())
      anon0 = select(2, S.rss(k))
    end
  end
  local ms = core.mono() - t0
  -- the crash loop goes on under the last daemon (its counts after each
  -- take-over are the journal's, written once a second: not summed here)
  local function loop_restarts()
    for _, p in ipairs(H.jlist()) do if p.name == "loop" then return p.pm2_env.restart_time end end
    return 0
  end
  local r0 = loop_restarts()
  local went_on = pcall(H.wait_for, function() return loop_restarts() > r0 + 5 end, 10000, "the loop")
  -- the crash loop stopped: what it holds at a given moment goes
  assert(H.pm("stop", "loop", "-s").code == 0)
  H.wait_for(function() return S.fd_count(k) <= kfd0 end, 5000, "the keeper's fds back")
  local kfd, dfd = S.fd_count(k), S.fd_count(H.daemon_pid())
  local rss, anon = S.rss(k)
  S.say("  %d cycles in %.1f s; keeper fds %d -> %d, daemon fds %d -> %d, keeper VmRSS %d kB, RssAnon %d -> %d kB",
    N, ms / 1000, kfd0, kfd, dfd0, dfd, rss, anon0, anon)
  S.check(moved == 0, "every idle app kept its pid through %d take-overs (%d moved)", N, moved)
  S.check(dups == 0, "no app ever had two processes (%d seen)", dups)
  S.check(zombies == 0, "no zombie under the keeper (%d seen)", zombies)
  S.check(kfd <= kfd0, "the keeper's fds flat (%d -> %d)", kfd0, kfd)
  S.check(dfd <= dfd0 + 2, "the daemon's fds flat (%d -> %d)", dfd0, dfd)
  S.check(anon <= anon0 + 256, "the keeper's memory flat (RssAnon %d -> %d kB)", anon0, anon)
  S.check(went_on, "the crash loop goes on after %d take-overs", N)
end)
if not ok then
  S.check(false, "keeper soak: %s", tostring(err))
  local log = util.read_file(home .. "/pm.log") or ""
  S.say("pm.log ends:\n%s", log:sub(-3000))
end
pcall(H.cleanup, home)
S.finish()
