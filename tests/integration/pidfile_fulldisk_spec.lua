-- A PM_HOME on a full disk: the daemon a keeper starts after a crash
-- still says so in pm.pid (written over in place when no new file fits),
-- so `pm kill` and every tool that reads it reach the live daemon.
local H = require "pmtest"
local core = require "pm.core"

describe("pm.pid on a full disk", function()
  local base, disk, mounted
  before_each(function()
    local p = io.popen("mktemp -d /tmp/pm-piddisk.XXXXXX")
    base = p:read("*l")
    p:close()
    disk = base .. "/home"
    core.mkdir(disk, 448)
    H.home, H.cmd_dir = disk, base -- (the commands' output files: not on the full disk)
    core.setenv("PM_HOME", disk)
    mounted = false
  end)
  after_each(function()
    if mounted then
      os.remove(disk .. "/filler")
      H.stop_daemon(disk)
      os.execute("umount " .. H.shquote(disk) .. " 2>/dev/null || umount -l " .. H.shquote(disk))
    end
    H.cmd_dir = nil
    H.cleanup(disk)
    os.execute("rm -rf " .. H.shquote(base))
  end)

  it("names the daemon a keeper started after a crash", function()
    if core.getuid() ~= 0 then return pending("needs root to mount a 2 MB tmpfs") end
    local r = H.sh("mount -t tmpfs -o size=2m,mode=0700 tmpfs " .. H.shquote(disk))
    if r.code ~= 0 then return pending("mounting a tmpfs is not permitted here: " .. r.err) end
    mounted = true
    H.ok(H.pm("ping"))
    local first = H.daemon_pid()
    assert.truthy(H.keeper_pid(), "a keeper runs")
    H.sh("dd if=/dev/zero of=" .. H.shquote(disk .. "/filler") .. " bs=4k 2>/dev/null")
    core.kill(first, 9)
    local second = H.wait_for(function()
      local r2 = H.pm("ping")
      local pid = r2.code == 0 and tonumber(r2.out:match('"pid":(%d+)'))
      return pid and pid ~= first and pid
    end, 10000, "the keeper's new daemon answering")
    H.wait_for(function() return H.daemon_pid() == second end, 12000, "pm.pid naming " .. second)
  end)
end)
