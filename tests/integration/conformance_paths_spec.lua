-- Issue 23 (PM2's e2e suite: internals/daemon-paths-override.sh): PM2's
-- PM2_PID_FILE_PATH, where a copy of the daemon's pid goes (pm.pid in
-- PM_HOME stays), written as the daemon's user and never through a link;
-- and PM_HOME/pm2.pid, PM2's name of pm.pid (a link).
local H = require "pmtest"
local util = require "pm.util"
local core = require "pm.core"

local ok = H.ok

describe("PM2_PID_FILE_PATH", function()
  before_each(function() H.new_home() end)
  after_each(function() H.cleanup() end)

  local function ls(path)
    return H.sh(H.shquote(H.bin) .. " ls", { env = { PM2_PID_FILE_PATH = path } })
  end

  it("holds the daemon's pid while it runs, and goes with it", function()
    local path = H.home .. "/other/daemon.pid"
    assert(core.mkdir(H.home .. "/other", 448))
    ok(ls(path))
    local pid = H.daemon_pid()
    assert.equal(pid .. "\n", util.read_file(path))
    assert.equal(pid .. "\n", util.read_file(H.home .. "/pm.pid"))
    ok(H.pm("kill"))
    assert.is_false(H.exists(path))
  end)

  it("is never written through a link; the daemon runs all the same", function()
    local victim = H.home .. "/victim"
    local link = H.home .. "/link.pid"
    os.execute("ln -s " .. H.shquote(victim) .. " " .. H.shquote(link))
    ok(ls(link))
    assert.is_number(H.daemon_pid())
    assert.is_false(H.exists(victim))
    assert.is_truthy(H.pm_log():find("PM2_PID_FILE_PATH", 1, true))
  end)
end)

describe("pm2.pid", function()
  before_each(function() H.new_home() end)
  after_each(function() H.cleanup() end)

  it("is a link to pm.pid while the daemon runs (PM2's name), gone with it", function()
    ok(H.pm("ping"))
    assert.equal("link", core.stat(H.home .. "/pm2.pid", true).type)
    assert.equal(H.daemon_pid() .. "\n", util.read_file(H.home .. "/pm2.pid"))
    ok(H.pm("kill"))
    assert.is_nil(core.stat(H.home .. "/pm2.pid", true))
  end)

  it("a pm2.pid that is no link is left alone", function()
    H.write(H.home .. "/pm2.pid", "mine")
    ok(H.pm("ping"))
    assert.equal("mine", util.read_file(H.home .. "/pm2.pid"))
    ok(H.pm("kill"))
    assert.equal("mine", util.read_file(H.home .. "/pm2.pid"))
  end)
end)
