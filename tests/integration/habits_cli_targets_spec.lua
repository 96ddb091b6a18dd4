-- Issue 16, item 9: targets as a PM2 user types them. Several in one
-- command (`pm restart 0 1`, `pm stop api worker`), `/regex/` targets on
-- app names (PM2's), and a target that names nothing among several: said,
-- without hiding (or undoing) what the others did.
local H = require "pmtest"

local ok, by_name = H.ok, H.by_name

-- Three apps (api-1, api-2, worker) that sleep; ids 0, 1, 2.
local function three()
  local s = H.script("sleeper.sh", "#!/bin/sh\nexec sleep 1000\n")
  for _, n in ipairs({ "api-1", "api-2", "worker" }) do ok(H.pm("start", s, "--name", n, "-f", "-s")) end
  return s
end

local function status(name) return by_name()[name].pm2_env.status end
local function restarts(name) return by_name()[name].pm2_env.restart_time end

describe("pm with several targets", function()
  before_each(function() H.new_home() end)
  after_each(function() H.cleanup() end)

  it("pm restart 0 1 restarts both, and only them", function()
    three()
    ok(H.pm("restart", "0", "1", "-s"))
    assert.equal(1, restarts("api-1"))
    assert.equal(1, restarts("api-2"))
    assert.equal(0, restarts("worker"))
  end)

  it("pm stop api-1 worker stops both; the process table shows it", function()
    three()
    local r = ok(H.pm("stop", "api-1", "worker"))
    assert.is_truthy(r.out:find("worker", 1, true), r.out)
    assert.equal("stopped", status("api-1"))
    assert.equal("stopped", status("worker"))
    assert.equal("online", status("api-2"))
  end)

  it("pm stop api-1 nosuch worker: nosuch is said, the others are stopped, exit 1", function()
    three()
    local r = H.pm("stop", "api-1", "nosuch", "worker")
    assert.equal(1, r.code)
    assert.is_truthy(r.err:find("nosuch", 1, true), r.err)
    assert.is_truthy(r.out:find("stopped", 1, true), "the table shows what was done: " .. r.out)
    assert.equal("stopped", status("api-1"))
    assert.equal("stopped", status("worker"))
    assert.equal("online", status("api-2"))
  end)
end)

describe("pm with a /regex/ target", function()
  before_each(function() H.new_home() end)
  after_each(function() H.cleanup() end)

  it("pm stop /^api/ stops the apps whose name matches", function()
    three()
    ok(H.pm("stop", "/^api/", "-s"))
    assert.equal("stopped", status("api-1"))
    assert.equal("stopped", status("api-2"))
    assert.equal("online", status("worker"))
  end)

  it("takes JavaScript's \\d and alternation: pm restart '/-\\d$|^work/' restarts all three", function()
    three()
    ok(H.pm("restart", "/-\\d$|^work/", "-s"))
    assert.equal(1, restarts("api-1"))
    assert.equal(1, restarts("api-2"))
    assert.equal(1, restarts("worker"))
    ok(H.pm("delete", "/2$/", "-s"))
    assert.equal("api-1,worker", H.names())
  end)

  it("a regex that matches no name, or is no regex, is one line and changes nothing", function()
    three()
    H.fails(H.pm("stop", "/^nope/"), "/^nope/")
    H.fails(H.pm("stop", "/(/"), "regex")
    -- nested counted repetitions compile into the daemon's memory: refused
    H.fails(H.pm("stop", "/((a{1,100}){1,100}){1,100}x/"), "counted repetitions")
    H.fails(H.pm("stop", "/" .. ("a"):rep(300) .. "/"), "longer than")
    local pong = assert(require("pm.util").decode(H.ok(H.pm("ping")).out))
    assert.is_true(pong.heap_kb < 65536, "the daemon's heap stayed small")
    assert.equal("online", status("api-1"))
    assert.equal("online", status("worker"))
  end)

  it("pm describe takes one too", function()
    three()
    local r = ok(H.pm("describe", "/^api/", "--json"))
    local list = require("pm.util").decode(r.out)
    assert.equal(2, #list)
  end)

  it("the Lua API takes /regex/ targets and lists of targets", function()
    three()
    local r = ok(H.pm("-e", [[
      local l = assert(pm.stop("/^api/"))
      print(#l)
      local d = assert(pm.describe({ "worker", 0, "/^api/" }))
      print(#d)
    ]]))
    assert.equal("2\n3\n", r.out)
    assert.equal("stopped", status("api-2"))
    assert.equal("online", status("worker"))
  end)
end)
