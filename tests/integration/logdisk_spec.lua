-- An app's log on a full disk (issue 15, item 9): never a split or glued
-- line; what could not be written is counted and, once writing works
-- again, said in the file ("[pm] N lines (B bytes) dropped: <reason>"), in
-- pm.log and on the bus (log:dropped). After a crash in the middle of a
-- line, the next write starts on a new line.
local H = require "pmtest"
local core = require "pm.core"
local util = require "pm.util"
local pm = require "pm"

local LINE = "^line (%d%d%d%d%d%d%d%d%d) x+$"
local DROPPED = "^%[pm%] (%d+) lines %((%d+) bytes%) dropped: (.+)$"

describe("a log on a full disk", function()
  local base, disk, mounted
  before_each(function()
    H.new_home()
    local p = io.popen("mktemp -d /tmp/pm-logdisk.XXXXXX")
    base = p:read("*l")
    p:close()
    disk = base .. "/disk"
    core.mkdir(disk, 493)
    mounted = false
  end)
  after_each(function()
    pm.disconnect()
    H.cleanup()
    if mounted then os.execute("umount " .. H.shquote(disk) .. " 2>/dev/null || umount -l " .. H.shquote(disk)) end
    if base then os.execute("rm -rf " .. H.shquote(base)) end
  end)

  it("keeps whole lines, counts what it dropped and says so once it can write again", function()
    if core.getuid() ~= 0 then pending("needs root to mount a 2 MB tmpfs"); return end
    local r = H.sh("mount -t tmpfs -o size=2m tmpfs " .. H.shquote(disk))
    if r.code ~= 0 then pending("mounting a tmpfs is not permitted here: " .. r.err); return end
    mounted = true
    local bus = assert(pm.launchBus())
    local events = {}
    assert(bus:on("log:dropped", function(packet) events[#events + 1] = packet end))
    -- 24,000 lines of 72 bytes, about 6,000 a second: 1.7 MB in all
    local script = H.write(base .. "/flood.pl", [[
$| = 1;
for my $i (0 .. 23999) {
  printf("line %09d %s\n", $i, "x" x 56);
  select(undef, undef, undef, 0.002) if $i % 12 == 11;
}
sleep 1000;
]])
    local out = disk .. "/out.log"
    H.ok(H.pm("start", "/usr/bin/perl", "--name", "flood", "-o", out, "-e", base .. "/err.log", "--", script),
      "pm start")
    H.wait_for(function() return H.count_lines(out) > 2000 end, 5000, "the first lines")
    -- the disk fills up while the app writes; some time later it has room again
    H.sh("dd if=/dev/zero of=" .. H.shquote(disk .. "/filler") .. " bs=4k 2>/dev/null")
    local full_at = H.count_lines(out)
    H.run_until(function() return false end, 800)
    os.remove(disk .. "/filler")
    H.pump(function() return H.contains(out, "line 000023999 ") end, 20000, "the last line")
    local prev, missing, said, said_bytes, notices = -1, 0, 0, 0, 0
    local n = 0
    for line in io.lines(out) do
      n = n + 1
      local i = line:match(LINE)
      if i then
        assert.equal(71, #line, "a whole line: " .. line)
        i = tonumber(i)
        assert.is_true(i > prev, ("line %d after %d: %s"):format(i, prev, line))
        missing = missing + (i - prev - 1)
        prev = i
      else
        local lines, bytes, reason = line:match(DROPPED)
        assert.is_truthy(lines, ("line %d is neither the app's nor pm's: %q"):format(n, line:sub(1, 200)))
        assert.equal("No space left on device", reason)
        said, said_bytes, notices = said + tonumber(lines), said_bytes + tonumber(bytes), notices + 1
      end
    end
    assert.equal(23999, prev)
    assert.is_true(missing > 0, "the full disk dropped lines (it was full after line " .. full_at .. ")")
    assert.equal(missing, said, "every dropped line is counted")
    assert.equal(missing * 72, said_bytes, "and every byte")
    H.pump(function() return #events > 0 end, 3000, "log:dropped on the bus")
    local ev_lines = 0
    for _, e in ipairs(events) do
      assert.equal(out, e.path)
      assert.equal("No space left on device", e.reason)
      assert.equal("flood", e.process and e.process.name)
      ev_lines = ev_lines + e.lines
    end
    assert.equal(said, ev_lines, "log:dropped says as many lines")
    assert.equal(notices, #events)
    assert.is_truthy(H.pm_log():find("dropped: No space left on device", 1, true), "pm.log says so too")
    bus:close()
  end)

  it("starts a new line when the file ends in the middle of one (a daemon killed while writing)", function()
    local out = H.write(base .. "/half.log", "line 1\nhalf a li")
    H.ok(H.pm("start", "/bin/sh", "--name", "half", "-o", out, "--no-autorestart", "--", "-c",
      "echo next; sleep 1000"), "pm start")
    H.wait_for(function() return H.contains(out, "next") end, 5000, "the app's line")
    assert.equal("line 1\nhalf a li\nnext\n", util.read_file(out))
  end)
end)
