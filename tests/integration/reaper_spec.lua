-- The daemon's reaper (core/loop.c): each exit is reaped by the pid its
-- SIGCHLD names, and a walk over all children, at most a fortieth of the
-- time, finds those whose signals merged into another's. Every exit is
-- seen, with its status, however many end at once.
local H = require "pmtest"
local util = require "pm.util"
local core = require "pm.core"

local function sleepers(n, prefix)
  local apps = {}
  for i = 1, n do
    apps[i] = { name = prefix .. i, script = "/bin/sleep", args = { "600" }, interpreter = "none" }
  end
  return H.write(H.home .. "/" .. prefix .. ".json", util.encode({ apps = apps }))
end

local function by_name(prefix)
  local t = {}
  for _, p in ipairs(H.jlist()) do
    if p.name:sub(1, #prefix) == prefix then t[p.name] = p end
  end
  return t
end

describe("the reaper", function()
  before_each(function() H.new_home() end)
  after_each(function() H.cleanup() end)

  it("sees every exit when 40 apps die while it is stopped (one SIGCHLD for all), beside a crash loop",
    function()
    H.ok(H.pm("start", sleepers(40, "z")))
    -- a crash loop keeps exits coming (walks are spaced out while it runs)
    local crash = H.script("reaper_crash.sh", "#!/bin/sh\nexit 3\n")
    H.ok(H.pm("start", crash, "--name", "crash", "--restart-delay", "0", "--max-restarts", "1000000"))
    local before
    H.wait_for(function()
      before = by_name("z")
      local n = 0
      for _, p in pairs(before) do if p.pm2_env.status == "online" and p.pid > 0 then n = n + 1 end end
      return n == 40
    end, 10000, "40 apps online")
    -- killed while the daemon is stopped: their SIGCHLDs merge into one
    -- (a signal pending once), which names one pid only
    local dpid = H.daemon_pid()
    core.kill(dpid, 19) -- SIGSTOP
    local pids = {}
    for _, p in pairs(before) do pids[#pids + 1] = p.pid end
    for _, pid in ipairs(pids) do core.kill(pid, 9) end
    H.wait_for(function()
      for _, pid in ipairs(pids) do
        local st = core.proc_stat(pid)
        if st and st.state ~= "Z" then return false end
      end
      return true
    end, 5000, "the 40 dead (zombies of the stopped daemon)")
    core.kill(dpid, 18) -- SIGCONT
    H.wait_for(function()
      local now = by_name("z")
      for name, p in pairs(now) do
        if p.pm2_env.status ~= "online" or p.pid == before[name].pid or p.pm2_env.restart_time ~= 1 then
          return false
        end
      end
      return true
    end, 10000, "each of the 40 restarted once, with a new pid")
    -- the exit each had: SIGKILL, as the daemon saw it
    for name, p in pairs(by_name("z")) do
      assert.equal("SIGKILL", p.pm2_env.exit_signal, name)
    end
    -- and the crash loop goes on, each exit with its code
    local c = by_name("crash").crash
    assert.equal(3, c.pm2_env.exit_code)
    assert.is_true(c.pm2_env.restart_time > 0)
  end)
end)
