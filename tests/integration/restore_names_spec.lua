-- Restore (recovery.lua) leaves alone the names that ran before it, not
-- those it brought back itself: two declarations of one name (PM2 lets
-- `start a.sh --name x` and `start b.sh --name x` both run) are two
-- entries of the journal, and both come back, after a take-over (same
-- processes, none left running unmanaged) and after a crash of daemon and
-- keeper (started again).
local H = require "pmtest"
local util = require "pm.util"
local core = require "pm.core"

local ok, online = H.ok, H.online

local named = H.named

local function two_of_one_name()
  local a = H.script("a.sh", "#!/bin/sh\nexec sleep 600\n")
  local b = H.script("b.sh", "#!/bin/sh\nexec sleep 601\n")
  online(H.start(a, "dup", "-s"))
  ok(H.pm("start", b, "--name", "dup", "-s"))
  local list = named("dup")
  assert.equal(2, #list)
  for _, p in ipairs(list) do online(p) end
  return list
end

describe("restore with two declarations of one name", function()
  before_each(function() H.new_home() end)
  after_each(function() H.cleanup() end)

  it("a take-over keeps both (same pids)", function()
    local before = two_of_one_name()
    local old = H.daemon_pid()
    core.kill(old, 9)
    H.wait_for(function() return not H.alive(old) end, 5000, "the daemon's end")
    local pong = util.decode(ok(H.pm("ping")).out)
    assert.are_not.equal(old, pong.pid)
    local after = named("dup")
    assert.equal(2, #after, "both apps named dup after the take-over: " .. H.pm_log())
    for i, p in ipairs(after) do
      assert.equal(before[i].pid, p.pid, "the same process")
      assert.equal("online", p.pm2_env.status)
    end
  end)

  it("a crash of daemon and keeper starts both again", function()
    local before = two_of_one_name()
    local dpid = H.daemon_pid()
    H.crash_daemon(dpid)
    H.wait_for(function() return not H.alive(dpid) end, 5000, "the daemon's end")
    ok(H.pm("ping")) -- (the next daemon: the journal's recovery)
    local after
    H.wait_for(function()
      after = named("dup")
      return #after == 2 and after[1].pid > 0 and after[2].pid > 0
    end, 5000, "both apps named dup online again")
    local scripts = { after[1].pm2_env.pm_exec_path, after[2].pm2_env.pm_exec_path }
    table.sort(scripts)
    local was = { before[1].pm2_env.pm_exec_path, before[2].pm2_env.pm_exec_path }
    table.sort(was)
    assert.same(was, scripts)
  end)
end)
