-- Issue 23 (PM2's e2e suite: process-file/app-config-update.sh): `pm
-- restart <app> --name new` (and reload, and start of a known app) renames
-- it, as PM2 does; an attribute given as null goes back to its default
-- (--node-args=null: no node_args at all, PM2's); a rename that would give
-- two apps one name, or that moves listen sockets, is refused.
local H = require "pmtest"
local core = require "pm.core"

local ok = H.ok

describe("a restart's --name", function()
  before_each(function() H.new_home() end)
  after_each(function() H.cleanup() end)

  local function names()
    local out = {}
    for _, p in ipairs(H.jlist()) do out[#out + 1] = p.name end
    table.sort(out)
    return table.concat(out, " ")
  end

  it("renames the app on restart, on start of a known app and on reload; its files follow", function()
    local s = H.script("echo.sh", "#!/bin/sh\nexec sleep 1000\n")
    ok(H.pm("start", s, "-s"))
    ok(H.pm("restart", "0", "--name=new-name", "-s"))
    assert.equal("new-name", names())
    local p = H.online(H.proc("new-name"))
    assert.equal(1, p.pm2_env.restart_time)
    assert.equal(H.home .. "/logs/new-name-out.log", p.pm2_env.pm_out_log_path)
    assert.equal(("%s/pids/new-name-%d.pid"):format(H.home, p.pm_id), p.pm2_env.pm_pid_path)
    H.wait_for(function() return H.exists(p.pm2_env.pm_pid_path) end, 3000, "the new pid file")
    assert.is_nil(core.stat(("%s/pids/echo-%d.pid"):format(H.home, p.pm_id)), "the old pid file is gone")
    ok(H.pm("restart", "new-name", "-s"))
    ok(H.pm("start", "0", "--name", "new-name-2", "-s"))
    assert.equal("new-name-2", names())
    ok(H.pm("reload", "new-name-2", "--name", "third", "-s"))
    assert.equal("third", names())
    H.online(H.proc("third"))
    -- the name given to another app again: its default files are its own
    ok(H.pm("start", s, "-s"))
    assert.equal("echo third", names())
    assert.equal(H.home .. "/logs/echo-out.log", H.proc("echo").pm2_env.pm_out_log_path)
  end)

  it("refuses a name another app has, or several apps, or an app that holds listen sockets", function()
    local s = H.script("echo.sh", "#!/bin/sh\nexec sleep 1000\n")
    ok(H.pm("start", s, "--name", "a", "-s"))
    ok(H.pm("start", s, "--name", "b", "-s"))
    H.fails(H.pm("restart", "a", "--name", "b"), "an app of that name exists")
    H.fails(H.pm("restart", "all", "--name", "c"), "several apps")
    local port = H.free_port()
    local eco = H.write(H.home .. "/sock.json", ('{ "apps": [ { "name": "sock", "script": %q, '
      .. '"listen": [ "tcp://127.0.0.1:%d" ] } ] }\n'):format(s, port))
    ok(H.pm("start", eco, "-s"))
    H.fails(H.pm("restart", "sock", "--name", "d"), "holds listen sockets")
    assert.equal("a b sock", names())
  end)

  it("--node-args=null leaves no node_args; a plain start shows node_args: []", function()
    local s = H.script("app.js", "setInterval(() => {}, 1000)\n")
    ok(H.pm("start", s, "-s"))
    assert.is_truthy(ok(H.pm("prettylist")).out:find("node_args: []", 1, true))
    ok(H.pm("restart", "app", "--node-args=--max-old-space-size=100", "-s"))
    assert.is_truthy(ok(H.pm("prettylist")).out:find("node_args: [ '--max-old-space-size=100' ]", 1, true))
    ok(H.pm("restart", "app", "--node-args=null", "-s"))
    assert.is_nil(ok(H.pm("prettylist")).out:find("node_args", 1, true))
    H.online(H.proc("app"))
    -- a null for another attribute: back to its default
    ok(H.pm("restart", "app", "--max-memory-restart", "100M", "-s"))
    assert.is_truthy(H.proc("app").pm2_env.max_memory_restart)
    ok(H.pm("restart", "app", "--max-memory-restart", "null", "-s"))
    assert.is_nil(H.proc("app").pm2_env.max_memory_restart)
  end)
end)
