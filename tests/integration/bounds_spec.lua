-- What an app or a config file cannot make the daemon hold (issue 15,
-- items 12 and 13): messages for an app that never reads its IPC channel
-- (channel.MAX_PENDING, 4 MB, then each send is refused with one line),
-- and the node that reads a .config.js (10 s, then it is killed with its
-- process group and `pm start` says so; 16 MB of output at most).
local H = require "pmtest"
local core = require "pm.core"
local util = require "pm.util"
local pm = require "pm"

local function vm(pid, field)
  local s = util.read_file("/proc/" .. pid .. "/status") or ""
  return tonumber(s:match(field .. ":%s*(%d+)")) or 0
end

describe("an app that never reads its IPC channel", function()
  before_each(function() H.new_home() end)
  after_each(function()
    pm.disconnect()
    H.cleanup()
  end)

  it("gets at most 4 MB queued for it; past that a send is refused with one line", function()
    local script = H.script("deaf.sh", "#!/bin/sh\nexec sleep 600\n")
    local p = H.online(H.start(script, "deaf", "--ipc"))
    local dpid = H.daemon_pid()
    local rss0 = vm(dpid, "VmRSS")
    local big = ("m"):rep(100 * 1024)
    local sent, refused = 0, nil
    for _ = 1, 300 do
      local okay, err = pm.sendDataToProcessId(p.pm_id, { type = "process:msg", data = big, topic = "t" })
      if not okay then refused = err; break end
      sent = sent + 1
    end
    local grown = (vm(dpid, "VmRSS") - rss0) / 1024
    assert.is_truthy(refused, ("every one of %d sends of 100 KB was queued (daemon +%d MB)"):format(sent, grown))
    assert.is_truthy(refused:find("is not reading its IPC channel", 1, true), refused)
    assert.is_nil(refused:find("\n"), "one line")
    assert.is_true(sent < 80, sent .. " sends of 100 KB were queued")
    if not os.getenv("PM_SANITIZED") then -- (ASan's quarantine keeps what was freed)
      assert.is_true(grown < 24, ("the daemon grew by %d MB"):format(grown))
    end
    -- the app itself is left alone
    H.online(H.proc("deaf"))
    assert.equal(p.pid, H.proc("deaf").pid)
  end)
end)

describe("a .config.js file read by node", function()
  before_each(function() H.new_home() end)
  after_each(function()
    -- a node left spinning by the daemon: found by its file, killed by pid
    for _, pid in ipairs(H.processes_of_home(H.home)) do
      local cmd = util.read_file("/proc/" .. pid .. "/cmdline") or ""
      if cmd:find(".config.js", 1, true) then core.kill(pid, 9) end
    end
    H.cleanup()
  end)

  local function nodes_of(path)
    local list = {}
    for _, pid in ipairs(H.processes_of_home(H.home)) do
      local cmd = util.read_file("/proc/" .. pid .. "/cmdline") or ""
      if cmd:find(path, 1, true) then list[#list + 1] = pid end
    end
    return list
  end

  it("that never finishes: pm start fails after 10 s saying so, and node is killed", function()
    H.ok(H.pm("ping"))
    local path = H.write(H.home .. "/spin.config.js", [[
require("child_process").spawn("sleep", ["600", "spin.config.js"], { stdio: "ignore" });
while (true) {}
]])
    local t0 = core.mono()
    local r = H.sh("timeout -s KILL 25 " .. H.command("start", path))
    local took = core.mono() - t0
    assert.is_true(r.code ~= 0 and r.code ~= 137, ("pm start did not end by itself (exit %s after %d ms)")
      :format(tostring(r.code), took))
    H.fails(r, path, "ran over 10 s")
    assert.is_true(took >= 9500 and took < 15000, took .. " ms")
    H.wait_for(function() return #nodes_of("spin.config.js") == 0 end, 3000,
      "node and what it started gone")
    H.ok(H.pm("ping"))
    assert.equal(0, #H.jlist())
  end)

  it("that writes without end: refused past 16 MB of output, the daemon does not hold it", function()
    H.ok(H.pm("ping"))
    local dpid = H.daemon_pid()
    local hwm0 = vm(dpid, "VmHWM")
    local path = H.write(H.home .. "/loud.config.js", [[
const line = "x".repeat(1 << 20);
for (let i = 0; i < 100; i++) console.log(line);
module.exports = { apps: [ { name: "loud", script: "sleep", args: "600" } ] };
]])
    local r = H.sh("timeout -s KILL 60 " .. H.command("start", path))
    local grown = (vm(dpid, "VmHWM") - hwm0) / 1024
    assert.is_true(grown < 64, ("the daemon's peak memory grew by %d MB"):format(grown))
    H.fails(r, path, "wrote over 16 MB")
    H.wait_for(function() return #nodes_of("loud.config.js") == 0 end, 3000, "node gone")
    assert.equal(0, #H.jlist())
  end)
end)
