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
  it("answers while apps whose processes end at once loop, and writes each run's last line in order", function()
    -- a walk that delivered each exit as it reaped it found the next
    -- process of a loop ended already: with 20 such apps it never ended
    -- (the daemon answered nothing, not even pm kill), and a crash loop
    -- beside them had its first run's last line written after later ones
    local apps = {}
    for i = 1, 20 do
      apps[i] = { name = "fast" .. i, script = "/bin/false", interpreter = "none", max_restarts = 100000000 }
    end
    local count = H.home .. "/tails.count"
    apps[#apps + 1] = { name = "tails", script = H.fixtures .. "/lb_tail.sh", args = { count },
      max_restarts = 30 }
    local file = H.write(H.home .. "/fast.json", util.encode({ apps = apps }))
    local dpid, kpid = H.daemon_pid(), H.keeper_pid()
    finally(function()
      -- (a daemon that answers no more is not stopped by pm kill)
      if H.sh("timeout 5 " .. H.command("ping")).code ~= 0 then
        kpid = H.keeper_pid() or kpid
        if kpid then core.kill(kpid, 9) end
        core.kill(H.daemon_pid() or dpid, 9)
      end
    end)
    local r = H.sh("timeout 20 " .. H.command("start", file))
    assert.equal(0, r.code, r.out .. r.err)
    local last = -1
    for _ = 1, 3 do
      -- each answer within 5 s, and the loops go on meanwhile
      r = H.sh("timeout 5 " .. H.command("jlist"))
      assert.equal(0, r.code, "no answer: " .. r.err)
      local total = 0
      for _, p in ipairs(util.decode(r.out)) do
        if p.name:match("^fast") then total = total + p.pm2_env.restart_time end
      end
      assert.is_true(total > last, "the loops go on")
      last = total
    end
    H.wait_for(function()
      local rr = H.sh("timeout 5 " .. H.command("jlist"))
      for _, p in ipairs(rr.code == 0 and util.decode(rr.out) or {}) do
        if p.name == "tails" then return p.pm2_env.status == "errored" end
      end
    end, 20000, "tails errored")
    local want = {}
    for i = 1, 30 do want[i] = "tail-" .. i end
    local path = H.out_log("tails")
    pcall(H.wait_for, function() return util.read_file(path) == table.concat(want, "\n") .. "\n" end, 3000)
    assert.equal(table.concat(want, "\n") .. "\n", util.read_file(path))
    r = H.sh("timeout 10 " .. H.command("delete", "all"))
    assert.equal(0, r.code, r.err)
  end)
end)
