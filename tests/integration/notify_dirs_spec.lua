-- The folders of sd_notify sockets a dead daemon left in /run or /tmp
-- (readiness.clean_notify, run by a crash's recovery): anybody may make a
-- pm-notify.<pid>.<n> in /tmp; only the daemon's user's own are its.
local H = require "pmtest"
local core = require "pm.core"
local util = require "pm.util"

local ok, sq = H.ok, H.shquote

describe("a crash's recovery and the pm-notify folders in /tmp", function()
  local made = {}
  before_each(function() H.new_home() end)
  after_each(function()
    for _, dir in ipairs(made) do os.execute("rm -rf " .. sq(dir)) end
    made = {}
    H.cleanup()
  end)

  -- A folder named as a dead daemon's, made by `nobody`, its owner file
  -- made by the shell words `what` (%s: the folder) -> its path
  local function planted(n, what)
    local dead = tonumber(util.read_file("/proc/sys/kernel/pid_max") or "") - 1 - n
    assert.is_false(H.alive(dead), "pid " .. dead .. " runs")
    local dir = ("/tmp/pm-notify.%d.%d"):format(dead, core.getpid() % 100000)
    os.execute("rm -rf " .. sq(dir))
    made[#made + 1] = dir
    local r = H.sh(("mkdir -m 0755 %s && %s && chown -hR nobody %s"):format(sq(dir), what:format(sq(dir)), sq(dir)))
    assert.equal(0, r.code, r.err)
    return dir
  end

  it("is not held up by another user's folder whose owner is a FIFO or a link to /dev/zero, and leaves it",
    function()
    if core.getuid() ~= 0 then
      pending("needs root: a folder of another user (nobody)")
      return
    end
    local fifo = planted(0, "mkfifo %s/owner")
    local zero = planted(1, "ln -s /dev/zero %s/owner")
    ok(H.pm("start", "/bin/sleep", "--name", "s1", "--", "600"))
    local old = H.proc("s1").pid
    local dpid = H.daemon_pid()
    H.crash_daemon(dpid)
    H.wait_for(function() return not H.alive(dpid) end, 5000, "the daemon gone")
    -- the next daemon recovers and answers (it hung in the FIFO's open)
    local r = H.sh("timeout 8 " .. H.command("ping"))
    assert.equal(0, r.code, "ping: " .. r.err)
    H.wait_for(function()
      local p = H.proc("s1")
      return p and p.pm2_env.status == "online" and p.pid ~= old and not H.alive(old)
    end, 5000, "s1 recovered (its old process stopped, a new one started)")
    -- another user's folders are left as they are
    assert.equal("other", (core.stat(fifo .. "/owner", true) or {}).type)
    assert.equal("link", (core.stat(zero .. "/owner", true) or {}).type)
  end)
end)
