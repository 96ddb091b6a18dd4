-- The reaper's signalfd (core/loop.c start_reaper): an app that stops and
-- continues (SIGSTOP/SIGCONT, its user's to send) does not wake the daemon
-- (SA_NOCLDSTOP, as the handler had); core.on_child called again (pm run)
-- only changes the function: one signalfd, children still reaped.
local H = require "pmtest"
local util = require "pm.util"
local core = require "pm.core"

local S = core.signals

-- the voluntary context switches of pid's main thread (each wake-up of
-- an event loop waiting in epoll_wait is one)
local function wakeups(pid)
  local st = util.read_file("/proc/" .. pid .. "/status") or ""
  return tonumber(st:match("voluntary_ctxt_switches:%s*(%d+)"))
end

local function state(pid)
  local s = util.read_file("/proc/" .. pid .. "/stat") or ""
  return s:match("^%d+ %b() (%a)")
end

describe("the reaper's signalfd", function()
  before_each(function() H.new_home() end)
  after_each(function() H.cleanup() end)

  it("is not woken by an app that stops and continues", function()
    local app = H.script("stopper.sh", "#!/bin/sh\nexec sleep 600\n")
    local pid = H.online(H.start(app, "stopper", "-s")).pid
    local dpid = H.daemon_pid()
    H.ok(H.pm("ping"))
    local before = wakeups(dpid)
    local cycles = 50
    for _ = 1, cycles do
      core.kill(pid, S.SIGSTOP)
      H.wait_for(function() return state(pid) == "T" end, 5000, "the app stopped")
      core.kill(pid, S.SIGCONT)
      H.wait_for(function() return state(pid) ~= "T" end, 5000, "the app continued")
    end
    local woke = wakeups(dpid) - before
    -- (its own timers wake it a few times meanwhile; a SIGCHLD per stop
    -- and per continue is 2 * cycles)
    assert.is_true(woke < cycles / 2, ("the daemon woke %d times for %d stops and continues"):format(woke, cycles))
    H.ok(H.pm("ping"))
    assert.equal("online", H.proc("stopper").pm2_env.status)
  end)

  it("core.on_child twice (pm run): one signalfd, a child still reaped", function()
    local out = H.home .. "/on_child.out"
    local script = H.write(H.home .. "/on_child.lua", ([[
local core = require "pm.core"
local reaped
core.on_child(function() end)
core.on_child(function(pid, code) reaped = { pid, code } end)
local p = io.popen("ls -l /proc/" .. core.getpid() .. "/fd")
local n = 0
for line in p:lines() do if line:find("signalfd", 1, true) then n = n + 1 end end
p:close()
local pid = assert(core.spawn({ file = "/bin/sh", args = { "/bin/sh", "-c", "exit 7" } }))
local t = core.timer(5000, 0, function() core.stop_loop() end)
local check = core.timer(10, 10, function() if reaped then core.stop_loop() end end)
core.run()
t:close(); check:close()
local f = io.open(%q, "w")
local same = tostring(reaped and reaped[1] == pid)
f:write(("signalfds %%d reaped %%s code %%s\n"):format(n, same, tostring(reaped and reaped[2])))
f:close()
]]):format(out))
    H.ok(H.pm("run", script))
    local text = util.read_file(out) or ""
    assert.equal("signalfds 1 reaped true code 7\n", text)
  end)
end)
