-- Issue 23 (PM2's e2e suite: cli/cli-actions-1.sh, cli/cli-actions-2.sh):
-- a pid file named NAME.pid is NAME-<pm_id>.pid, as in PM2, and goes when
-- the app stops; `pm` alone exits 2; `pm init` takes any word as PM2's mode; a line an app
-- writes without its newline reaches the log file, ended, within a second
-- or so (PM2 writes each chunk as it comes; pm holds a line at most a
-- second).
local H = require "pmtest"
local core = require "pm.core"
local util = require "pm.util"

local ok = H.ok

describe("PM2's cli actions", function()
  before_each(function() H.new_home() end)
  after_each(function() H.cleanup() end)

  it("writes -p NAME.pid as NAME-<pm_id>.pid (one instance or several) and removes it on stop", function()
    local s = H.script("echo.sh", "#!/bin/sh\nexec sleep 1000\n")
    ok(H.pm("start", s, "-p", H.home .. "/echo.pid", "-s"))
    local p = H.online(H.proc("echo"))
    local path = ("%s/echo-%d.pid"):format(H.home, p.pm_id)
    assert.equal(path, p.pm2_env.pm_pid_path)
    H.wait_for(function() return util.read_file(path) == p.pid .. "\n" end, 3000, "the pid file")
    assert.is_nil(core.stat(H.home .. "/echo.pid"), "no file under the name as given")
    ok(H.pm("stop", "echo", "-s"))
    H.wait_for(function() return core.stat(path) == nil end, 3000, "the pid file removed")
    ok(H.pm("delete", "all", "-s"))
    -- a -N of its own is replaced; several instances: one file each
    ok(H.pm("start", s, "--name", "multi", "-p", H.home .. "/multi-7.pid", "-i", "2", "-s"))
    for _, q in ipairs(H.jlist()) do
      local want = ("%s/multi-%d.pid"):format(H.home, q.pm_id)
      assert.equal(want, q.pm2_env.pm_pid_path)
      H.wait_for(function() return H.exists(want) end, 3000, want)
    end
    -- a name not ending in .pid: as given (with the id for several instances)
    ok(H.pm("start", s, "--name", "plain", "-p", H.home .. "/plain.lock", "-s"))
    assert.equal(H.home .. "/plain.lock", H.proc("plain").pm2_env.pm_pid_path)
  end)

  it("exits 2 (usage) when given no verb, after the usage; PM2 exits non-zero too", function()
    local r = H.pm()
    assert.equal(2, r.code)
    assert.is_truthy(r.out:find("usage: pm <verb>", 1, true))
    ok(H.pm("help"))
  end)

  it("takes any word as init's mode, as PM2 does", function()
    local dir = H.home .. "/initdir"
    assert(core.mkdir(dir, 493))
    ok(H.pm("init", "echo", { cwd = dir }))
    assert.is_true(H.exists(dir .. "/ecosystem.lua"))
  end)

  it("writes a line that never gets its newline, ended, instead of holding it forever", function()
    local s = H.script("partial.sh", "#!/bin/sh\nprintf errwrite >&2\nprintf outwrite\nexec sleep 1000\n")
    local entire = H.home .. "/entire.log"
    ok(H.pm("start", s, "-l", entire, "--merge-logs", "-s"))
    H.wait_for(function()
      local t = util.read_file(entire) or ""
      return t:find("errwrite\n", 1, true) and t:find("outwrite\n", 1, true)
    end, 5000, "both held lines written, each ended")
    assert.is_truthy((util.read_file(H.home .. "/logs/partial-error.log") or ""):find("^errwrite\n$"))
  end)
end)
