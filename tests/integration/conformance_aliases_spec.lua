-- Issue 23 (PM2's e2e suite: cli/cli-actions-1.sh, esmodule.sh): PM2's
-- names of verbs pm has under its own, and what a resurrect (pm update's
-- too) starts counts its restarts from 0, as in PM2.
local H = require "pmtest"

local ok = H.ok

describe("PM2's verb names", function()
  before_each(function() H.new_home() end)
  after_each(function() H.cleanup() end)

  it("pm updatePM2 is pm update: a new daemon, the app online (its process kept), restarts counted from 0", function()
    ok(H.pm("start", H.script("a.sh", "#!/bin/sh\nexec sleep 1000\n"), "-s"))
    ok(H.pm("restart", "a", "-s"))
    assert.equal(1, H.proc("a").pm2_env.restart_time)
    local pid = H.proc("a").pid
    local before = H.daemon_pid()
    ok(H.pm("updatePM2"))
    H.wait_for(function() local d = H.daemon_pid(); return d and d ~= before end, 10000, "a new daemon")
    local p = H.wait_for(function()
      local q = H.proc("a")
      return q and q.pm2_env.status == "online" and q
    end, 5000, "a online")
    assert.equal(0, p.pm2_env.restart_time)
    assert.equal(pid, p.pid)
  end)

  it("pm resurrect counts the restarts of what it starts from 0", function()
    ok(H.pm("start", H.script("a.sh", "#!/bin/sh\nexec sleep 1000\n"), "-s"))
    ok(H.pm("restart", "a", "-s"))
    ok(H.pm("save"))
    ok(H.pm("delete", "all", "-s"))
    ok(H.pm("resurrect"))
    local p = H.proc("a")
    assert.equal("online", p.pm2_env.status)
    assert.equal(0, p.pm2_env.restart_time)
  end)
end)
