-- The log WAL (core/logs.c, lua/pm/logwal.lua) with a real daemon, a real
-- keeper and an app of another user, attacked in the gap between the
-- daemon's SIGKILL and the next daemon's replay, and on a full disk. What
-- the killed daemon had read and not written is made certain: the writer
-- thread is held in a write(2) to a FIFO nobody reads (the log of a root
-- app), so that the lines of the app under attack wait behind it in the
-- WAL's ring when the daemon is killed (its log file is still empty then:
-- checked). The keeper is stopped meanwhile, so that the next daemon
-- starts only once the attack is done.
local H = require "pmtest"
local util = require "pm.util"
local core = require "pm.core"
local ffi = require "ffi"

pcall(ffi.cdef, "int open(const char *, int, ...); int ioctl(int, unsigned long, ...); int close(int);")
local O_NONBLOCK, FIONREAD = 2048, 0x541B
local ok, online, q = H.ok, H.online, H.shquote
local PY = "/usr/bin/python3"
local NOT_WRITTEN = "of the last daemon's output not written: "

-- stdout: 300 KB of lines at once, then nothing
local BLOCK = [[
import os, time
buf = b''.join(b'b %06d %s\n' % (i, b'y' * 990) for i in range(300))
while buf:
    buf = buf[os.write(1, buf):]
time.sleep(1000)
]]
-- stdout: 1.3 MB of numbered lines at once (pm reads at least 300 KB of
-- them: its pipe holds 1 MB), then the file argv[1]; then a line every 50
-- ms, and n MB more at once each time argv[2] holds n (then the file
-- argv[1] with .burst for .done)
local VICTIM = [[
import os, sys, time
i = 0
def lines(n):
    global i
    out = []
    for _ in range(n):
        i += 1
        out.append(b'v %09d %s\n' % (i, b'x' * 86))
    return b''.join(out)
def put(buf):
    while buf:
        buf = buf[os.write(1, buf):]
put(lines(13000))
open(sys.argv[1], 'w').close()
burst = 0
while True:
    time.sleep(0.05)
    put(lines(1))
    try:
        n = int(open(sys.argv[2]).read() or 0)
    except Exception:
        n = 0
    if n > burst:
        burst = n
        put(lines(n * 10000))
        open(sys.argv[1].replace('.done', '.burst'), 'w').close()
]]

describe("the log WAL, attacked in the gap between a SIGKILL and the replay", function()
  local base, u, reader, mounted, nobody
  before_each(function()
    H.new_home()
    local p = io.popen("mktemp -d /tmp/pm-walatk.XXXXXX")
    base = p:read("*l")
    p:close()
    core.chmod(base, 493)
    u = base .. "/u"
    reader, mounted = nil, false
  end)
  after_each(function()
    if reader then ffi.C.close(reader) end
    H.cleanup()
    if mounted then os.execute("umount " .. q(u) .. " 2>/dev/null || umount -l " .. q(u)) end
    os.execute("rm -rf " .. q(base))
  end)

  local function skip(why)
    print("SKIPPED (log WAL attacks): " .. why)
    return pending(why)
  end

  -- The folder of the app's user (nobody), on a small tmpfs of its own
  -- with tmpfs -> false when that cannot be made (then skipped)
  local function user_folder(tmpfs)
    nobody = util.passwd("nobody")
    if core.getuid() ~= 0 or not nobody then return false, "needs root and a user nobody" end
    core.mkdir(u, 493)
    if tmpfs then
      local r = H.sh(("mount -t tmpfs -o size=4m,mode=0755,uid=%d,gid=%d tmpfs %s"):format(nobody.uid, nobody.gid,
        q(u)))
      if r.code ~= 0 then return false, "cannot mount a tmpfs here: " .. r.err end
      mounted = true
    end
    H.sh(("chown %d:%d %s"):format(nobody.uid, nobody.gid, q(u)))
    return true
  end

  --[[ The writer thread held in a FIFO, the victim (nobody's) started and
  its lines queued behind, then the daemon killed with the keeper stopped
  -> the victim, its log, the keeper's pid, the kill's daemon pid ]]
  local function killed_with_lines_queued(before_kill)
    local fifo = base .. "/block.fifo"
    assert(H.sh("mkfifo " .. q(fifo)).code == 0)
    reader = ffi.C.open(fifo, O_NONBLOCK)
    assert(reader >= 0, "the FIFO's reader")
    local block = H.write(base .. "/block.py", BLOCK)
    local victim = H.write(base .. "/victim.py", VICTIM)
    core.chmod(victim, 420)
    ok(H.pm("start", H.write(H.home .. "/block.json", util.encode({ apps = { { name = "block", script = block,
      interpreter = PY, out_file = fifo, error_file = base .. "/block-err.log" } } })), "-s"))
    local n = ffi.new("int[1]")
    H.wait_for(function() return ffi.C.ioctl(reader, FIONREAD, n) == 0 and n[0] > 60000 end, 5000,
      "the FIFO full (the writer thread held)")
    local log = u .. "/v.log"
    local apps = { { name = "victim", script = victim, interpreter = PY, user = "nobody", cwd = base,
      args = { u .. "/v.done", base .. "/burst" }, out_file = log, error_file = u .. "/v-err.log" } }
    ok(H.pm("start", H.write(H.home .. "/victim.json", util.encode({ apps = apps })), "-s"))
    local v = online(H.proc("victim"))
    H.wait_for(function() return core.stat(u .. "/v.done") end, 5000, "the victim's 1.3 MB written")
    ok(H.pm("ping")) -- (the loop is done with what it read: queued)
    assert.equal(0, core.stat(log).size, "the victim's lines wait behind the held writer")
    if before_kill then before_kill() end
    local k, dpid = H.keeper_pid(), H.daemon_pid()
    core.kill(k, core.signals.SIGSTOP)
    finally(function() core.kill(k, core.signals.SIGCONT) end)
    core.kill(dpid, 9)
    H.wait_for(function() return not H.alive(dpid) end, 5000, "the daemon's end")
    -- (the next daemon must not be held by the FIFO: the root app's log
    -- is a file again; its queued lines are replayed into it)
    ffi.C.close(reader)
    reader = nil
    os.remove(fifo)
    return v, log, k, dpid
  end

  -- The keeper goes on: the next daemon replays and answers, the victim kept
  local function next_daemon(k, dpid, v)
    core.kill(k, core.signals.SIGCONT)
    H.wait_for(function() return H.contains(H.home .. "/pm.log", "took over from the last daemon") end, 10000,
      "the take-over")
    local pong = util.decode(ok(H.pm("ping")).out)
    assert.are_not.equal(dpid, pong.pid)
    assert.equal(k, pong.keeper)
    assert.equal(v.pid, H.proc("victim").pid, "the victim adopted: " .. H.pm_log())
  end

  -- pm.log's replay lines about path -> how many, the first
  local function said_about(path)
    local n, first = 0, nil
    for line in H.pm_log():gmatch("[^\n]+") do
      if line:find("log " .. path .. ": ", 1, true) and line:find(NOT_WRITTEN, 1, true) then
        n = n + 1
        first = first or line
      end
    end
    return n, first
  end

  for _, case in ipairs({
    { "a symbolic link to a root file", function(log, secret) assert(core.symlink(secret, log)) end,
      "a symbolic link, refused" },
    { "a hard link to a root file", function(log, secret) H.sh(("ln %s %s"):format(q(secret), q(log))) end, "" },
    { "a FIFO", function(log) H.sh(("mkfifo %s && chown nobody %s"):format(q(log), q(log))) end,
      "not a regular file" },
    { "a folder", function(log) H.sh(("mkdir %s && chown nobody %s"):format(q(log), q(log))) end, "" },
  }) do
    it("the log replaced by " .. case[1] .. ": not written, one line in pm.log, the daemon goes on", function()
      local can, why = user_folder(false)
      if not can then return skip(why) end
      -- /etc/shadow's stand-in: root's, beside the home's files
      local secret = H.write(base .. "/shadow", "root:$6$secret:19000:0:99999:7:::\n")
      core.chmod(secret, 384)
      local v, log, k, dpid = killed_with_lines_queued()
      os.remove(log)
      case[2](log, secret)
      next_daemon(k, dpid, v)
      assert.equal("root:$6$secret:19000:0:99999:7:::\n", util.read_file(secret))
      local n, line = said_about(log)
      assert.equal(1, n, H.pm_log())
      local lines = tonumber(line:match(": (%d+) line%(s%) of the last"))
      assert.is_true(lines >= 3000, line) -- (at least the 300 KB pm read)
      assert.is_truthy(line:find(NOT_WRITTEN .. case[3], 1, true), line)
      -- the root app's queued lines were replayed into its log, a file now
      assert.is_truthy(H.contains(base .. "/block.fifo", "b 000299 "), "the root app's last line replayed")
    end)
  end

  it("a full disk at the replay: one line, the daemon up and the app adopted, lines again once there is room",
    function()
    local can, why = user_folder(true)
    if not can then return skip(why) end
    local v, log, k, dpid = killed_with_lines_queued()
    H.sh("dd if=/dev/zero of=" .. q(u .. "/filler") .. " bs=4k 2>/dev/null")
    next_daemon(k, dpid, v)
    local n, line = said_about(log)
    assert.equal(1, n, H.pm_log())
    assert.is_truthy(line:find(NOT_WRITTEN .. "No space left on device", 1, true), line)
    -- 50 MB more while the disk is full: dropped and counted, not held
    local dpid2 = H.daemon_pid()
    H.write(base .. "/burst", "50")
    H.wait_for(function() return core.stat(u .. "/v.burst") end, 20000, "the victim's 50 MB written")
    local rss = tonumber((util.read_file("/proc/" .. dpid2 .. "/status") or ""):match("VmRSS:%s+(%d+)"))
    assert.is_true(rss < 32 * 1024, "the daemon's memory: " .. tostring(rss) .. " kB")
    assert.equal(1, (said_about(log)), "said once (no spin)")
    -- room again: the lines after are written, after the line saying the drop
    os.remove(u .. "/filler")
    H.wait_for(function() return H.contains(log, "dropped: No space left on device") end, 10000, "the drop said")
    local size = core.stat(log).size
    H.wait_for(function() return core.stat(log).size > size + 500 end, 5000, "lines again")
    assert.equal(v.pid, H.proc("victim").pid)
  end)

  it("lines the killed daemon held outside the buffer (a chunk over the ring): counted and said, exactly", function()
    local can, why = user_folder(false)
    if not can then return skip(why) end
    -- 65,536 empty lines in one write, framed as JSON: one read of them is
    -- about 8 MB, more than the ring holds
    local json = H.write(base .. "/nl.py", "import os, time\nbuf = b'\\n' * 65536\n"
      .. "while buf:\n    buf = buf[os.write(1, buf):]\nopen('j.done', 'w').close()\ntime.sleep(1000)\n")
    local jlog = base .. "/j.log"
    local v, _, k, dpid = killed_with_lines_queued(function()
      ok(H.pm("start", H.write(H.home .. "/j.json", util.encode({ apps = { { name = "j", script = json,
        interpreter = PY, cwd = base, log_type = "json", out_file = jlog,
        error_file = base .. "/j-err.log" } } })), "-s"))
      local j = online(H.proc("j"))
      -- its pipe read by pm (a reader of our own on it, that never reads)
      local fd = ffi.C.open("/proc/" .. j.pid .. "/fd/1", O_NONBLOCK)
      assert(fd >= 0, "the app's pipe")
      local n = ffi.new("int[1]")
      H.wait_for(function() return core.stat(base .. "/j.done") end, 5000, "the app's write")
      H.wait_for(function() return ffi.C.ioctl(fd, FIONREAD, n) == 0 and n[0] == 0 end, 5000,
        "the app's lines read by pm")
      ffi.C.close(fd)
      -- (and framed, queued: the loop answers once the read's callback ended)
      ok(H.pm("ping"))
      assert.equal(0, H.count_lines(jlog))
    end)
    next_daemon(k, dpid, v)
    local said = tonumber(H.pm_log():match("(%d+) line%(s%) the last daemon held outside its log buffer"))
    assert.equal(65536, said, H.pm_log())
    ok(H.pm("ping"))
    assert.equal(0, H.count_lines(jlog))
  end)
end)
