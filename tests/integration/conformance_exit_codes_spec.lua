-- Issue 23 (PM2's e2e suite: cli/right-exit-code.sh): a verb that finds
-- no process exits non-zero, `all` with no process included.
local H = require "pmtest"

local ok, fails = H.ok, H.fails

describe("exit codes when nothing is found", function()
  before_each(function() H.new_home() end)
  after_each(function() H.cleanup() end)

  it("stop, restart, reload and delete of all with no process fail with one line", function()
    for _, verb in ipairs({ "stop", "restart", "reload", "delete" }) do
      fails(H.pm(verb, "all"), "no process found")
    end
    fails(H.pm("restart", "nosuch"), "not found")
    fails(H.pm("delete", "10"), "not found")
  end)

  it("with processes, all succeeds", function()
    ok(H.pm("start", H.script("a.sh", "#!/bin/sh\nexec sleep 1000\n"), "-s"))
    ok(H.pm("restart", "all", "-s"))
    ok(H.pm("stop", "all", "-s"))
    ok(H.pm("delete", "all", "-s"))
    fails(H.pm("delete", "all"), "no process found")
  end)
end)
