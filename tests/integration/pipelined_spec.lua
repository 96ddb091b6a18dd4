-- Requests pipelined on one connection (issue 15, item 11): a client that
-- sends thousands of requests and never reads its replies holds at most
-- the reply bound (rpc.MAX_PENDING, 16 MB) of the daemon's memory, and one
-- that reads them slowly still gets every reply, in order.
local H = require "pmtest"
local core = require "pm.core"
local util = require "pm.util"

local function rss_kb(pid)
  local s = util.read_file("/proc/" .. pid .. "/status") or ""
  return tonumber(s:match("VmRSS:%s*(%d+)")) or 0
end

local LIST = '{"jsonrpc":"2.0","id":%d,"method":"list"}\n'

describe("requests pipelined on one connection", function()
  local home, dpid

  lazy_setup(function()
    home = H.new_home()
    H.ok(H.pm("ping"))
    dpid = H.daemon_pid()
    -- two apps whose descriptions are about 60 KB each: a list is ~120 KB
    -- (the old code answered every request of a 64 KB read: ~170 MB)
    local pad = ("p"):rep(60000)
    for i = 1, 2 do
      H.api_start({ name = "big" .. i, script = "/bin/sh", args = { "-c", "exec sleep 1000", pad } })
    end
  end)

  lazy_teardown(function()
    H.home = home
    H.cleanup(home)
  end)

  it("from a client that never reads: the daemon stops answering at the reply bound", function()
    if os.execute("command -v socat >/dev/null 2>&1 && command -v setsid >/dev/null 2>&1") ~= 0 then
      pending("needs socat and setsid")
      return
    end
    local reqs = {}
    for i = 1, 20000 do reqs[i] = LIST:format(i) end
    local file = H.write(home .. "/reqs.txt", table.concat(reqs))
    -- warm up, then the baseline
    for _ = 1, 3 do H.ok(H.pm("jlist")) end
    core.sleep(300)
    local before = rss_kb(dpid)
    -- 20,000 requests written, the connection held open, nothing read
    local inner = ("(cat %s; exec sleep 60) | exec socat -u - UNIX-CONNECT:%s")
      :format(H.shquote(file), H.shquote(home .. "/rpc.sock"))
    local p = io.popen(("setsid sh -c %s >/dev/null 2>&1 & echo $!"):format(H.shquote(inner)))
    local writer = tonumber(p:read("*l"))
    p:close()
    assert.is_truthy(writer)
    local peak = before
    local ok, err = pcall(function()
      local deadline = core.mono() + 2500
      repeat
        peak = math.max(peak, rss_kb(dpid))
        core.sleep(50)
      until core.mono() > deadline
      -- and it still serves everyone else
      H.ok(H.pm("ping"))
    end)
    core.killpg(writer, 9)
    assert(ok, err)
    local grown = (peak - before) / 1024
    -- 16 MB of replies, and the garbage of making them (under the
    -- sanitizers freed memory is held a while: more of it is counted)
    local limit = os.getenv("PM_SANITIZED") and 100 or 40
    print(("    one connection that does not read: the daemon grew by %.1f MB"):format(grown))
    assert.is_true(grown < limit, ("the daemon grew by %.0f MB for one connection that does not read "
      .. "(%d KB -> %d KB)"):format(grown, before, peak))
    assert.equal(dpid, H.daemon_pid())
  end)

  it("from a client that reads: every reply comes, in order", function()
    local c = H.connect()
    local t = {}
    for i = 1, 600 do t[i] = LIST:format(i) end
    c:send(table.concat(t))
    H.run_until(function() return #c.msgs >= 600 or c.closed end, 30000)
    assert.equal(600, #c.msgs)
    for i, m in ipairs(c.msgs) do
      assert.equal(i, m.id)
      assert.equal(2, #m.result)
    end
    c:close()
  end)

  it("with more requests waiting for their reply than the daemon takes at once: all answered", function()
    H.ok(H.pm("start", "/bin/sleep", "--name", "quick", "--", "1000"))
    local c = H.connect()
    local t = {}
    for i = 1, 150 do
      t[i] = ('{"jsonrpc":"2.0","id":%d,"method":"restart","params":{"target":"quick"}}\n'):format(i)
    end
    t[#t + 1] = '{"jsonrpc":"2.0","id":151,"method":"ping"}\n'
    c:send(table.concat(t))
    H.run_until(function() return #c.msgs >= 151 or c.closed end, 60000)
    assert.equal(151, #c.msgs)
    local seen = {}
    for _, m in ipairs(c.msgs) do
      assert.is_nil(m.error, util.encode(m.error))
      seen[m.id] = true
    end
    for i = 1, 151 do assert.is_true(seen[i], "no reply to " .. i) end
    c:close()
    H.online(H.proc("quick"), "quick")
  end)
end)
