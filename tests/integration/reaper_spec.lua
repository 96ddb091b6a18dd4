-- The daemon's reaper (core/loop.c): each exit is reaped by the pid its
-- SIGCHLD names (read from a signalfd: SIGCHLD is blocked in the daemon),
-- and a walk over all children, at most a hundredth of the time, finds
-- those whose signals merged into another's. Every exit is seen, with its
-- status, however many end at once; no app inherits the blocked signal.
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

  it("leaves no signal blocked in an app's processes", function()
    local out = H.home .. "/sigblk"
    local app = H.script("sigblk.sh", ("#!/bin/sh\ngrep SigBlk /proc/self/status > %s.$$.tmp\n"
      .. "mv %s.$$.tmp %s.$$\nexec sleep 600\n"):format(out, out, out))
    H.ok(H.pm("start", app, "--name", "sigblk"))
    local pid = H.online(H.proc("sigblk")).pid
    local text
    H.wait_for(function()
      text = util.read_file(out .. "." .. pid)
      return text and text:find("SigBlk", 1, true)
    end, 5000, "the app's masks written")
    for mask in text:gmatch("SigBlk:%s*(%x+)") do assert.equal(0, tonumber(mask, 16), text) end
    -- (the exec'd process itself, once it is sleep: the shell before its
    -- exec blocks SIGCHLD itself while it waits for mv)
    local st
    H.wait_for(function()
      st = util.read_file("/proc/" .. pid .. "/status")
      return st and st:match("^Name:%s*sleep")
    end, 5000, "the app's exec of sleep")
    assert.equal(0, tonumber(st:match("SigBlk:%s*(%x+)"), 16), st)
    -- the daemon itself blocks SIGCHLD (it reads it from a signalfd), or has a handler
    local dst = util.read_file("/proc/" .. H.daemon_pid() .. "/status")
    local blk, caught = tonumber(dst:match("SigBlk:%s*(%x+)"), 16), tonumber(dst:match("SigCgt:%s*(%x+)"), 16)
    local chld = 2 ^ (17 - 1) -- SIGCHLD is 17 on Linux
    assert.is_true(math.floor(blk / chld) % 2 == 1 or math.floor(caught / chld) % 2 == 1, dst)
  end)
end)
