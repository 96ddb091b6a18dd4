-- Issue 23 (PM2's e2e suite: cli/watch.sh): a stop turns an app's watch
-- off; restart --watch turns it on, or off when it is on; an ecosystem
-- file read again says it anew.
local H = require "pmtest"

local ok = H.ok

describe("watch, as PM2 turns it on and off", function()
  before_each(function() H.new_home() end)
  after_each(function() H.cleanup() end)

  local function watching(name) return H.proc(name).pm2_env.watch end

  it("stop turns it off and start keeps it so; restart --watch turns it on and off", function()
    local s = H.script("w.sh", "#!/bin/sh\nexec sleep 1000\n")
    ok(H.pm("start", s, "--watch", "-s"))
    assert.is_true(watching("w"))
    ok(H.pm("stop", "w", "-s"))
    assert.is_false(watching("w"))
    ok(H.pm("start", "w", "-s"))
    assert.is_false(watching("w"))
    ok(H.pm("restart", "w", "--watch", "-s"))
    assert.is_true(watching("w"))
    ok(H.pm("restart", "w", "--watch", "-s"))
    assert.is_false(watching("w"))
    ok(H.pm("restart", "w", "--watch", "-s"))
    assert.is_true(watching("w"))
    -- a stopped app is not restarted by a change
    ok(H.pm("stop", "w", "-s"))
    H.write(H.home .. "/touched", "x")
    H.holds(function() return H.proc("w").pm2_env.status == "stopped" end, 1500, "stays stopped")
  end)

  it("a file read again turns it on when the file says so", function()
    local s = H.script("w.sh", "#!/bin/sh\nexec sleep 1000\n")
    local f = H.write(H.home .. "/eco.json", ('{ "apps": [ { "name": "w", "script": %q, "watch": true } ] }'):format(s))
    ok(H.pm("start", f, "-s"))
    assert.is_true(watching("w"))
    ok(H.pm("stop", f, "-s"))
    assert.is_false(watching("w"))
    ok(H.pm("restart", f, "-s"))
    assert.is_true(watching("w"))
    ok(H.pm("restart", "all", "-s"))
    assert.is_true(watching("w"))
  end)
end)
