-- Issue 23 (PM2's e2e suite: logs/log-entire.sh): the combined log file
-- (-l, log_file) is pm2_env.pm_log_path, as in PM2, and only when there
-- is one; pm describe shows it.
local H = require "pmtest"

local ok = H.ok

describe("pm_log_path", function()
  before_each(function() H.new_home() end)
  after_each(function() H.cleanup() end)

  it("is the combined log's path with -l, absent without", function()
    local s = H.script("a.sh", "#!/bin/sh\necho tick\necho boom >&2\nexec sleep 1000\n")
    local entire = H.home .. "/entire.log"
    ok(H.pm("start", s, "-l", entire, "--merge-logs", "-s"))
    assert.equal(entire, H.proc("a").pm2_env.pm_log_path)
    assert.is_truthy(ok(H.pm("describe", "a")).out:find("combined log +" .. entire:gsub("%p", "%%%0")))
    H.wait_for(function() return H.contains(entire, "tick") and H.contains(entire, "boom") end, 5000,
      "both streams in the combined log")
    ok(H.pm("start", s, "--name", "b", "-f", "-s"))
    assert.is_nil(H.proc("b").pm2_env.pm_log_path)
  end)
end)
