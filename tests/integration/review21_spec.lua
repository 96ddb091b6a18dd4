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
end)
