-- Issue 23 (PM2's e2e suite: cli/reload.sh, cli/multiparam.sh): a script's
-- file names the apps that run it, `pm start a b c` starts three apps,
-- a restart counts only when a process was running (and internals/
-- increment-var.sh: pm scale down removes the first instances; cli-actions-2.sh:
-- a name of digits).
local H = require "pmtest"

local ok, fails = H.ok, H.fails

local function sleeper(name)
  return H.script(name, "#!/bin/sh\nexec sleep 1000\n")
end

local function statuses()
  local out = {}
  for _, p in ipairs(H.jlist()) do out[p.name] = p.pm2_env.status end
  return out
end

describe("PM2's targets", function()
  before_each(function() H.new_home() end)
  after_each(function() H.cleanup() end)

  it("a script's file, relative or absolute, names the apps that run it", function()
    local a = sleeper("a.sh")
    sleeper("b.sh")
    ok(H.pm("start", a, "-s"))
    ok(H.pm("start", H.home .. "/b.sh", "--name", "other", "-s"))
    local r = H.sh("cd " .. H.shquote(H.home) .. " && " .. H.shquote(H.bin) .. " stop a.sh -s")
    assert.equal(0, r.code, r.err)
    assert.same({ a = "stopped", other = "online" }, statuses())
    ok(H.pm("stop", H.home .. "/b.sh", "-s"))
    assert.same({ a = "stopped", other = "stopped" }, statuses())
    -- a name goes first: an app named as the file is what it names
    ok(H.pm("start", a, "--name", H.home .. "/b.sh", "-s"))
    ok(H.pm("delete", H.home .. "/b.sh", "-s"))
    assert.same({ a = "stopped", other = "stopped" }, statuses())
    fails(H.pm("stop", H.home .. "/nosuch.sh"), "not found")
  end)

  it("pm start a b c starts each; the script's arguments come after --", function()
    local a, b, c = sleeper("a.sh"), sleeper("b.sh"), sleeper("c.sh")
    ok(H.pm("start", a, b, c, "-s", "--", "x", "y"))
    local list = H.jlist()
    assert.equal(3, #list)
    for _, p in ipairs(list) do
      assert.same({ "x", "y" }, p.pm2_env.args)
      assert.equal("online", p.pm2_env.status)
    end
    assert.equal("a,b,c", H.names())
    ok(H.pm("stop", "a", "b", "c", "-s"))
    assert.same({ a = "stopped", b = "stopped", c = "stopped" }, statuses())
  end)

  it("restarting a stopped app starts it without counting a restart", function()
    ok(H.pm("start", sleeper("a.sh"), "-s"))
    ok(H.pm("stop", "a", "-s"))
    ok(H.pm("restart", "a", "-s"))
    local p = H.proc("a")
    assert.equal("online", p.pm2_env.status)
    assert.equal(0, p.pm2_env.restart_time)
    ok(H.pm("restart", "a", "-s"))
    assert.equal(1, H.proc("a").pm2_env.restart_time)
  end)

  it("pm scale down removes the lowest instances, and scale up takes them again", function()
    ok(H.pm("start", sleeper("a.sh"), "-i", "4", "-s"))
    local function instances()
      local out = {}
      for _, p in ipairs(H.jlist()) do out[#out + 1] = p.pm2_env.NODE_APP_INSTANCE end
      table.sort(out)
      return out
    end
    ok(H.pm("scale", "a", "2", "-s"))
    assert.same({ 2, 3 }, instances())
    ok(H.pm("scale", "a", "4", "-s"))
    assert.same({ 0, 1, 2, 3 }, instances())
  end)

  it("a name of digits is a name: a target names the app of that name first, then the id", function()
    ok(H.pm("start", sleeper("a.sh"), "--name", "other", "-s"))
    ok(H.pm("start", sleeper("b.sh"), "--name", "455", "-s"))
    ok(H.pm("restart", "455", "-s"))
    assert.equal(1, H.proc("455").pm2_env.restart_time)
    assert.equal(0, H.proc("other").pm2_env.restart_time)
    ok(H.pm("restart", "0", "-s")) -- (no app is named 0: id 0)
    assert.equal(1, H.proc("other").pm2_env.restart_time)
    ok(H.pm("delete", "455", "-s"))
    assert.equal("other", H.names())
    fails(H.pm("start", sleeper("c.sh"), "--name", "all"), "'all'")
  end)
end)
