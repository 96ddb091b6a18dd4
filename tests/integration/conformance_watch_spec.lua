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

describe("watch, against an app's user who makes folders", function()
  before_each(function() H.new_home() end)
  after_each(function() H.cleanup() end)

  -- The inotify watches the daemon holds
  local function watches()
    local n = 0
    local dir = "/proc/" .. H.daemon_pid() .. "/fdinfo"
    for fd in pairs(require("pm.core").listdir(dir) or {}) do
      local text = require("pm.util").read_file(dir .. "/" .. fd) or ""
      n = n + select(2, text:gsub("\ninotify wd:", ""))
    end
    return n
  end

  it("takes at most 2,000 of the daemon's inotify watches for one app, and says so once", function()
    local tree = H.home .. "/tree"
    local core = require "pm.core"
    local function folders(prefix, n)
      for i = 1, n do assert(core.mkdir(("%s/%s%d"):format(tree, prefix, i), 493)) end
    end
    assert(core.mkdir(tree, 493))
    folders("d", 2100)
    local s = H.write(tree .. "/w.sh", "#!/bin/sh\nexec sleep 1000\n")
    os.execute("chmod +x " .. H.shquote(s))
    ok(H.pm("start", s, "--watch", "-s", { cwd = tree }))
    local n = watches()
    assert.is_true(n >= 2000 and n <= 2002, n .. " watches")
    -- new folders past the cap are not watched either
    folders("e", 50)
    -- (seen: the change restarts the app)
    H.wait_for(function() return H.proc("w").pm2_env.restart_time >= 1 end, 5000, "the restart on change")
    assert.is_true(watches() <= 2002)
    local log = H.pm_log()
    assert.equal(1, select(2, log:gsub("more than 2000 folders", "")), log)
  end)
end)

describe("watch, when the kernel's queue of events overflows", function()
  before_each(function() H.new_home() end)
  after_each(function()
    local d = H.daemon_pid()
    if d then require("pm.core").kill(d, require("pm.core").signals.SIGCONT) end
    H.cleanup()
  end)

  it("restarts only the apps whose files changed, not every watched app", function()
    local core = require "pm.core"
    local max = tonumber(require("pm.util").read_file("/proc/sys/fs/inotify/max_queued_events") or "")
    if not max or max > 65536 then return pending("fs.inotify.max_queued_events is " .. tostring(max)) end
    local function app(name)
      local dir = H.home .. "/" .. name
      assert(core.mkdir(dir, 493))
      assert(core.mkdir(dir .. "/churn", 493))
      local s = H.write(dir .. "/app.sh", "#!/bin/sh\nexec sleep 1000\n")
      os.execute("chmod +x " .. H.shquote(s))
      -- (files of an hour ago: only what changes after the start is new)
      assert.equal(0, H.sh(("touch -h -d '1 hour ago' %s %s %s"):format(H.shquote(s), H.shquote(dir .. "/churn"),
        H.shquote(dir))).code)
      ok(H.pm("start", s, "--name", name, "--watch", "-s", { cwd = dir }))
      return dir
    end
    app("victim")
    local noisy = app("noisy")
    -- a daemon too busy to read (stopped), and more events than the queue holds
    local dpid = H.daemon_pid()
    core.kill(dpid, core.signals.SIGSTOP)
    local n = math.floor(max / 2) + 1000
    for i = 1, n do
      local f = noisy .. "/churn/f" .. i
      assert(io.open(f, "w")):close()
      os.remove(f)
    end
    core.kill(dpid, core.signals.SIGCONT)
    H.wait_for(function() return H.pm_log():find("queue of file events overflowed", 1, true) end, 20000,
      "the overflow rescanned")
    H.wait_for(function() return H.proc("noisy").pm2_env.restart_time >= 1 end, 5000, "noisy restarted")
    assert.equal(0, H.proc("victim").pm2_env.restart_time, H.pm_log())
  end)
end)
