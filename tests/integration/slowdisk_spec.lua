-- A log file on a disk that lags (a FIFO read slowly) must not stall the
-- daemon: the flooding app waits on its pipe, the others are supervised as
-- usual, the daemon answers at once, its memory stays bounded, and once the
-- disk catches up every line arrives.
local H = require "pmtest"
local core = require "pm.core"
local util = require "pm.util"

describe("a slow disk", function()
  local reader
  before_each(function() H.new_home() end)
  after_each(function()
    if reader and H.alive(reader) then core.kill(reader, 9) end
    H.cleanup()
  end)

  it("blocks only the app that writes to it", function()
    local fifo = H.home .. "/slow.fifo"
    local copy = H.home .. "/slow.copy"
    local flag = H.home .. "/fast"
    assert.equal(0, H.sh("mkfifo " .. H.shquote(fifo)).code)
    reader = core.spawn({ file = "python3", args = { "python3", H.fixtures .. "/sd_slow_reader.py", fifo, copy, flag },
      fds = { -1, -1, 2 } })
    assert.truthy(reader)
    -- (the reader in its open of the FIFO first, waiting for a writer: a
    -- log FIFO without a reader is not waited for, see below)
    H.wait_for(function()
      return (util.read_file("/proc/" .. reader .. "/wchan") or ""):find("wait_for_partner", 1, true) ~= nil
    end, 10000, "the reader to open the FIFO")
    local lines = 200000
    local r = H.pm("start", H.fixtures .. "/sd_flood.py", "--name", "flood", "-o", fifo, "--no-autorestart",
      "-s", "--", tostring(lines))
    assert.equal(0, r.code, r.err)
    r = H.pm("start", "/bin/sh", "--name", "crashy", "--min-uptime", "0", "--max-restarts", "100000", "-s",
      "--", "-c", "exit 1")
    assert.equal(0, r.code, r.err)
    -- the flood is held back by the slow disk: meanwhile the daemon answers
    -- at once and keeps restarting the other app
    local first = H.proc("crashy").pm2_env.restart_time
    local worst = 0
    for _ = 1, 20 do
      local t0 = core.mono()
      assert.equal(0, H.pm("ping").code)
      worst = math.max(worst, core.mono() - t0)
    end
    -- (a daemon blocked by the disk would not answer at all until the
    -- reader is let go below: the bound only tells that from a busy machine)
    assert.is_true(worst < 3000, "ping took " .. worst .. " ms")
    H.wait_for(function() return H.proc("crashy").pm2_env.restart_time > first + 20 end, 10000,
      "the other app restarting")
    local flood = H.proc("flood")
    assert.equal("online", flood.pm2_env.status) -- blocked on its pipe, not done
    local dpid = H.daemon_pid()
    local status = util.read_file("/proc/" .. dpid .. "/status")
    local hwm = tonumber(status:match("VmHWM:%s*(%d+)"))
    assert.is_true(hwm < 64 * 1024, "daemon peak RSS " .. hwm .. " KB")
    -- the disk catches up: every line arrives, once, in order
    H.sh("touch " .. H.shquote(flag))
    H.wait_for(function() return H.status("flood") == "stopped" end, 30000, "the flood to end")
    H.pm("stop", "crashy", "-s")
    H.pm("delete", "flood", "-s") -- closes the FIFO: the reader ends
    H.wait_for(function() return not H.alive(reader) end, 10000, "the reader to end")
    local n, prev = 0, -1
    for line in io.lines(copy) do
      local i = tonumber(line:match("^(%d+) "))
      assert.equal(prev + 1, i)
      prev = i
      n = n + 1
    end
    assert.equal(lines, n)
  end)

  it("a log that is a FIFO nobody reads yet: the daemon does not wait for a reader; lines come once one reads",
    function()
      local fifo = H.home .. "/noreader.fifo"
      local copy = H.home .. "/noreader.copy"
      assert.equal(0, H.sh("mkfifo " .. H.shquote(fifo)).code)
      local r = H.pm("start", "/bin/sh", "--name", "ticker", "-o", fifo, "-s", "--", "-c",
        "i=0; while :; do i=$((i+1)); echo tick $i; sleep 0.05; done")
      assert.equal(0, r.code, r.err)
      H.online(H.proc("ticker"))
      assert.equal(0, H.pm("ping").code) -- (a daemon waiting in open(2) for a reader answers nothing)
      reader = core.spawn({ file = "/bin/sh", args = { "sh", "-c", "exec cat " .. H.shquote(fifo) .. " > "
        .. H.shquote(copy) }, fds = { -1, -1, 2 } })
      assert.truthy(reader)
      H.wait_for(function() return (util.read_file(copy) or ""):find("tick %d+\n") ~= nil end, 10000,
        "lines in the FIFO once it has a reader")
      H.pm("delete", "ticker", "-s")
    end)

  it("a log path that is a unix socket is refused at the start, not waited for as a FIFO's reader", function()
    local sock = H.home .. "/out.sock"
    local bind = "import socket,sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])"
    assert.equal(0, H.sh("python3 -c " .. H.shquote(bind) .. " " .. H.shquote(sock)).code)
    local r = H.pm("start", "/bin/sh", "--name", "socklog", "-o", sock, "-s", "--", "-c",
      "while :; do echo x; sleep 1; done")
    assert.equal(0, r.code, r.err)
    H.wait_for(function() return H.contains(H.home .. "/pm.log", "cannot open log " .. sock) end, 5000,
      "the refusal in pm.log")
    H.pm("delete", "socklog", "-s")
  end)
end)
