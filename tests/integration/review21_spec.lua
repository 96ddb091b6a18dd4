-- Issue 21's review, as an attacker and as a PM2 user: what an app's
-- cgroup, its IPC channel and running out of fds must not let happen.
local H = require "pmtest"
local util = require "pm.util"

local function ok(r) return H.ok(r) end

-- The folder of the apps' cgroups, or nil (none here: the test is pending)
local function cgroup_base()
  ok(H.pm("ping"))
  return (util.read_file(H.home .. "/cgroup") or ""):match("[^\n]+")
end

-- An app whose main process leaves a child behind it (its pid in a file)
local function leaver(name)
  local pidfile = H.home .. "/" .. name .. ".child"
  local app = H.script(name .. ".sh", ("#!/bin/sh\nsleep 600 &\necho $! > %s\nexec sleep 601\n")
    :format(H.shquote(pidfile)))
  return app, function()
    H.wait_for(function() return tonumber(util.read_file(pidfile) or "") end, 5000, name .. "'s child")
    return tonumber(util.read_file(pidfile))
  end
end

describe("issue 21 review", function()
  before_each(function() H.new_home() end)
  after_each(function() H.cleanup() end)

  it("an app's id used again does not put it in the cgroup of what an earlier app left running "
    .. "(kill_mode = process): the new app's stop leaves it alone", function()
    if not cgroup_base() then return pending("no cgroup for apps here") end
    local app, child_of = leaver("keeper")
    ok(H.pm("start", app, "--name", "keeper", "--no-treekill"))
    local child = child_of()
    ok(H.pm("delete", "keeper")) -- its child lives on, as asked
    assert.is_true(H.alive(child))
    local b = H.online(H.start("/bin/sleep", "other", "--", "600"))
    assert.equal(0, b.pm_id) -- (the id the first app had)
    ok(H.pm("stop", "other"))
    ok(H.pm("ping"))
    assert.is_true(H.alive(child), "the first app's child was stopped with the second app")
    ok(H.pm("delete", "other"))
    assert.is_true(H.alive(child))
    require("pm.core").kill(child, 9)
  end)

  it("a group a killed daemon's app left running is not joined by the next daemon's app", function()
    if not cgroup_base() then return pending("no cgroup for apps here") end
    local app, child_of = leaver("k2")
    ok(H.pm("start", app, "--name", "k2", "--no-treekill"))
    local child = child_of()
    ok(H.pm("kill"))
    assert.is_true(H.alive(child), "kill_mode = process: the child outlives the daemon")
    local b = H.online(H.start("/bin/sleep", "next", "--", "600"))
    assert.equal(0, b.pm_id)
    ok(H.pm("restart", "next"))
    ok(H.pm("stop", "next"))
    assert.is_true(H.alive(child), "the old daemon's app's child was stopped with the new app")
    require("pm.core").kill(child, 9)
  end)

  it("a second message to an app without a channel says the same (it runs; its next restart has one), "
    .. "not 'not running, or ipc = false'", function()
    local p = H.online(H.start("/bin/sleep", "plain", "--", "600"))
    local send = ("return pm.sendDataToProcessId(%d, { type = 'process:msg', data = 1, topic = true })")
      :format(p.pm_id)
    for i = 1, 2 do
      local r = H.pm("-e", send)
      assert.truthy(r.out:find("has no IPC channel: pm opens one for Node and Lua apps", 1, true),
        ("send %d: %s"):format(i, r.out .. r.err))
      assert.truthy(r.out:find("pm restart plain", 1, true), r.out)
    end
  end)

  -- a daemon with 200 fds (soft = hard) that cannot raise them -> true, or
  -- false (a root daemon that could: running out is not reachable here)
  local function small_daemon()
    local drop = ""
    if os.execute("setpriv --bounding-set=-sys_resource true >/dev/null 2>&1") == 0 then
      drop = "setpriv --bounding-set=-sys_resource "
    end
    ok(H.sh(drop .. "sh -c " .. H.shquote("ulimit -n 200 && exec " .. H.shquote(H.bin) .. " ping")))
    return util.decode(ok(H.pm("ping")).out).fds.limit == 200
  end

  it("pm scale past the fd limit says so in one line and fails; the instances that fit run", function()
    if not small_daemon() then return pending("the daemon raised its fd limit: running out is not reachable") end
    H.online(H.start("/bin/sleep", "many", "--", "600"))
    local r = H.pm("scale", "many", "150")
    assert.equal(1, r.code, r.out .. r.err)
    local line = r.err:gsub("\n$", "")
    assert.is_nil(line:find("\n"), "one line: " .. r.err)
    assert.truthy(line:find("apps not started: the daemon's fd limit (200) is reached: each app needs 2", 1, true),
      line)
    local online = 0
    for _, p in ipairs(H.jlist()) do
      if p.pm2_env.status == "online" then online = online + 1 end
    end
    assert.is_true(online > 1, online .. " online")
    H.ok(H.pm("ping")) -- the daemon goes on
  end)
end)
