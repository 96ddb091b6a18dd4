-- Issue 23 (PM2's e2e suite: process-file/app-config-update.sh): restart
-- and reload take start's flags and apply them to the app; a start of a
-- known app with flags restarts it with them.
local H = require "pmtest"

local ok = H.ok

describe("restart with start's flags", function()
  before_each(function() H.new_home() end)
  after_each(function() H.cleanup() end)

  local function sleeper()
    return H.script("s.sh", "#!/bin/sh\nexec sleep 1000\n")
  end

  it("pm restart <app> --interpreter-args ... --max-memory-restart ...: the app takes them", function()
    local s = sleeper()
    ok(H.pm("start", s, "--name", "a", "-s"))
    assert.same({}, H.proc("a").pm2_env.interpreter_args)
    ok(H.pm("restart", "a", "--interpreter-args=-e", "--max-memory-restart", "200M", "-s"))
    local p = H.proc("a")
    assert.same({ "-e" }, p.pm2_env.interpreter_args)
    assert.equal(200 * 1024 * 1024, p.pm2_env.max_memory_restart)
    assert.equal(1, p.pm2_env.restart_time)
    ok(H.pm("reload", "a", "--kill-timeout", "900", "-s"))
    assert.equal(900, H.proc("a").pm2_env.kill_timeout)
    -- and by its script's file
    ok(H.pm("restart", s, "--max-memory-restart", "300M", "-s"))
    assert.equal(300 * 1024 * 1024, H.proc("a").pm2_env.max_memory_restart)
  end)

  it("pm start <known app> with flags restarts it with them; its name stays", function()
    ok(H.pm("start", sleeper(), "--name", "a", "-s"))
    ok(H.pm("start", "a", "--max-memory-restart", "100M", "-s"))
    local list = H.jlist()
    assert.equal(1, #list)
    assert.equal("a", list[1].name)
    assert.equal(100 * 1024 * 1024, list[1].pm2_env.max_memory_restart)
    assert.equal(1, list[1].pm2_env.restart_time)
  end)
end)
