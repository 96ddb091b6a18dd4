-- A Lua error in a callback of a real daemon reaches Lua (core.on_error):
-- the daemon counts it (ping's errors), writes it to pm.log like its other
-- lines, publishes daemon:error, and goes on. The error is raised by a real
-- core callback: the daemon runs with PM_LUA_DIR pointing at a directory
-- that holds only pm/preload.lua (a module the daemon requires once, at its
-- start), the real one plus a SIGUSR1 watcher whose callback raises.
local H = require "pmtest"
local core = require "pm.core"
local util = require "pm.util"
local pm = require "pm"

local function pump(cond, ms, what)
  local deadline = core.mono() + (ms or 5000)
  repeat
    local v = cond()
    if v then return v end
    pm.wait(20)
  until core.mono() > deadline
  error("timed out waiting for " .. (what or "a condition"), 2)
end

local function ping()
  local r = H.ok(H.pm("ping"), "pm ping")
  return assert(util.decode(r.out))
end

describe("a Lua error in a daemon's callback", function()
  before_each(function()
    H.new_home()
    local dir = H.home .. "/lua"
    assert(core.mkdir(dir, 448))
    assert(core.mkdir(dir .. "/pm", 448))
    H.write(dir .. "/pm/preload.lua", ([[
local core = require "pm.core"
local M = dofile(%q)
local n = 0
M.raiser = core.signal(core.signals.SIGUSR1, function()
  n = n + 1
  error("raised on SIGUSR1, time " .. n)
end)
return M
]]):format(H.src .. "/lua/pm/preload.lua"))
    H.ok(H.pm("ping", { env = { PM_LUA_DIR = dir } }), "the daemon's start")
  end)
  after_each(function()
    pm.disconnect()
    H.cleanup()
  end)

  it("is counted, logged to pm.log, published as daemon:error, and the daemon goes on", function()
    local dpid = assert(H.daemon_pid())
    assert.equal(0, ping().errors)
    local bus = assert(pm.launchBus())
    local got = {}
    assert(bus:on("daemon:error", function(packet) got[#got + 1] = packet end))
    assert(pm.ping()) -- subscribed before the signal
    for i = 1, 2 do
      assert(core.kill(dpid, core.signals.SIGUSR1))
      pump(function() return #got >= i end, 5000, "daemon:error " .. i)
    end
    assert.equal(2, #got)
    for i, packet in ipairs(got) do
      assert.equal(i, packet.count)
      assert.is_number(packet.at)
      assert.matches("preload.lua:%d+: raised on SIGUSR1, time " .. i .. "\n", packet.data)
      assert.matches("stack traceback:", packet.data, 1, true)
    end
    assert.equal(2, ping().errors)
    assert.equal(dpid, H.daemon_pid())
    assert.is_true(H.alive(dpid))
    -- in pm.log as every daemon line is: "<time> <level>: <message>"
    local log = util.read_file(H.home .. "/pm.log") or ""
    for i = 1, 2 do
      assert.matches("\n%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d error: lua error: [^\n]*preload.lua:%d+: "
        .. "raised on SIGUSR1, time " .. i .. "\n    stack traceback:\n", "\n" .. log) -- (a line of its own, indented)
    end
    assert.is_nil(log:find(" pm: lua error", 1, true), "the core's own line: the error did not reach Lua")
  end)
end)
