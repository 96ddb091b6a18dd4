-- App log files against a real daemon (issue 5, DESIGN §2): default and
-- given paths, the combined log_file, per-instance names, merge_logs,
-- /dev/null, missing directories, time prefixes, JSON lines, partial lines,
-- no loss on a fast burst (with and without rotation, retain) and in a
-- crash loop, flush, reloadLogs / SIGUSR2 / SIGHUP (a deleted file or
-- directory comes back), and `pm logs` (last N lines of each file, --err/--out,
-- merged by time, then live lines).
local H = require "pmtest"
local core = require "pm.core"
local util = require "pm.util"
local pm = require "pm"

local F = H.fixtures

local start, api_start = H.start, H.api_start

local function read(path) return util.read_file(path) end

local function lines_of(s)
  local t = {}
  for l in (s or ""):gmatch("([^\n]*)\n") do t[#t + 1] = l end
  return t
end

local exists = H.exists

local function size(path)
  local st = core.stat(path)
  return st and st.size or 0
end

-- Waits (bounded) until the file holds exactly `expected`, then asserts it.
local function wait_equal(path, expected, ms)
  pcall(H.wait_for, function() return read(path) == expected end, ms or 3000)
  assert.equal(expected, read(path), path)
end

local function wait_contains(path, text, ms)
  return H.wait_for(function()
    local s = read(path)
    return s and s:find(text, 1, true) and s
  end, ms or 3000, ("%q in %s"):format(text, path))
end

-- The line i of lb_burst.py with the given width.
local function burst_pad(width) return string.rep("x", width - 10) end

--[[ Checks that s is exactly lines first..last of lb_burst.py (width bytes
each). Returns nil, or a message naming the first difference. ]]
local function check_burst(s, first, last, width)
  local pad = burst_pad(width)
  local i, pos = first, 1
  while pos <= #s do
    local nl = s:find("\n", pos, true)
    if not nl then return ("line %d is not terminated: %q"):format(i, s:sub(pos, pos + 80)) end
    local line = s:sub(pos, nl - 1)
    local want = ("%08d %s"):format(i, pad)
    if line ~= want then
      return ("line %d: expected %q, got %q"):format(i - first + 1, want:sub(1, 30), line:sub(1, 120))
    end
    i, pos = i + 1, nl + 1
  end
  if i ~= last + 1 then
    return ("%d lines, expected %d (last seen %d)"):format(i - first, last - first + 1, i - 1)
  end
end

-- A long-lived shell app that writes a line to stdout and one to stderr.
local TWO_LINES = F .. "/lb_two_lines.sh"

-- A FIFO at H.home/name and a process of cmd (a format of the FIFO's
-- path) as its reader, its pid written by the shell that then becomes it
-- -> the FIFO's path, the reader's pid
local function fifo_with(name, cmd)
  local fifo = H.home .. "/" .. name
  assert.equal(0, H.sh("mkfifo " .. H.shquote(fifo)).code)
  H.sh(("sh -c 'echo $$ > %s.pid; exec %s' >/dev/null 2>&1 &"):format(fifo, cmd:format(fifo)))
  local pid
  H.wait_for(function() pid = tonumber((read(fifo .. ".pid"))); return pid end, 5000, "the FIFO's reader")
  return fifo, pid
end

describe("log files", function()
  before_each(function() H.new_home() end)
  after_each(function()
    pm.disconnect()
    H.cleanup()
  end)

  it("defaults to $PM_HOME/logs/<name>-out.log and <name>-error.log", function()
    local p = start(TWO_LINES, "lp")
    local out, err = H.home .. "/logs/lp-out.log", H.home .. "/logs/lp-error.log"
    assert.equal(out, p.pm2_env.pm_out_log_path)
    assert.equal(err, p.pm2_env.pm_err_log_path)
    wait_equal(out, "out line\n")
    wait_equal(err, "err line\n")
  end)

  it("writes out_file, error_file and log_file (both streams, lines never merged), creating directories", function()
    local dir = H.home .. "/custom/a/b"
    local comb = H.home .. "/comb/x/all.log"
    -- a partial stdout line, a whole stderr line while it is pending, then
    -- the rest of the stdout line, then 200 interleaved pairs
    assert.is_nil(core.stat(H.home .. "/custom"))
    local p = start(F .. "/lb_streams.sh", "streams", "-o", dir .. "/o.log", "-e", dir .. "/e.log", "-l", comb)
    assert.equal(dir .. "/o.log", p.pm2_env.pm_out_log_path)
    assert.equal(dir .. "/e.log", p.pm2_env.pm_err_log_path)
    local want_out = { "out-partial-rest" }
    local want_err = { "err-whole" }
    for i = 1, 200 do
      want_out[#want_out + 1] = "out-" .. i
      want_err[#want_err + 1] = "err-" .. i
    end
    want_out[#want_out + 1] = "done-writing"
    wait_equal(dir .. "/o.log", table.concat(want_out, "\n") .. "\n")
    wait_equal(dir .. "/e.log", table.concat(want_err, "\n") .. "\n")
    assert.is_false(exists(H.home .. "/logs/streams-out.log"))
    -- the combined file: every line of both streams, whole, each stream in order
    H.wait_for(function() return #lines_of(read(comb)) >= #want_out + #want_err end, 3000,
      "the combined file")
    local got = lines_of(read(comb))
    assert.equal(#want_out + #want_err, #got)
    local io_, ie = 1, 1
    for n, l in ipairs(got) do
      if l == want_out[io_] then
        io_ = io_ + 1
      elseif l == want_err[ie] then
        ie = ie + 1
      else
        error(("combined line %d is %q: not the next line of either stream (out %q, err %q)")
          :format(n, l, tostring(want_out[io_]), tostring(want_err[ie])))
      end
    end
    -- the stderr line came while the stdout line was incomplete
    local pos_err, pos_out
    for n, l in ipairs(got) do
      if l == "err-whole" then pos_err = n end
      if l == "out-partial-rest" then pos_out = n end
    end
    assert.is_true(pos_err < pos_out, "err-whole should precede the completed partial line")
  end)

  it("adds -<pm_id> for several instances, also to out_file, and not with merge_logs", function()
    local s = F .. "/lb_instance.sh"
    start(s, "multi", "-i", "2")
    local ids = {}
    for _, p in ipairs(H.jlist()) do
      if p.name == "multi" then ids[#ids + 1] = p end
    end
    assert.equal(2, #ids)
    for _, p in ipairs(ids) do
      local path = ("%s/logs/multi-out-%d.log"):format(H.home, p.pm_id)
      assert.equal(path, p.pm2_env.pm_out_log_path)
      assert.equal(("%s/logs/multi-error-%d.log"):format(H.home, p.pm_id), p.pm2_env.pm_err_log_path)
      wait_equal(path, ("inst %d id %d\n"):format(p.pm2_env.NODE_APP_INSTANCE, p.pm_id))
    end
    assert.is_false(exists(H.home .. "/logs/multi-out.log"))

    start(s, "given", "-i", "2", "-o", H.home .. "/given/o.log", "-f")
    for _, p in ipairs(H.jlist()) do
      if p.name == "given" then
        local path = ("%s/given/o-%d.log"):format(H.home, p.pm_id)
        assert.equal(path, p.pm2_env.pm_out_log_path)
        wait_equal(path, ("inst %d id %d\n"):format(p.pm2_env.NODE_APP_INSTANCE, p.pm_id))
      end
    end
    assert.is_false(exists(H.home .. "/given/o.log"))

    start(s, "merged", "-i", "2", "--merge-logs", "-f")
    local path = H.home .. "/logs/merged-out.log"
    local want = {}
    for _, p in ipairs(H.jlist()) do
      if p.name == "merged" then
        assert.equal(path, p.pm2_env.pm_out_log_path)
        want[#want + 1] = ("inst %d id %d"):format(p.pm2_env.NODE_APP_INSTANCE, p.pm_id)
        assert.is_false(exists(("%s/logs/merged-out-%d.log"):format(H.home, p.pm_id)))
      end
    end
    assert.equal(2, #want)
    H.wait_for(function() return #lines_of(read(path)) >= 2 end, 3000, "both instances' lines")
    local got = lines_of(read(path))
    table.sort(got)
    table.sort(want)
    assert.same(want, got)
  end)

  it("writes nothing for out_file /dev/null and error_file NULL", function()
    local witness = H.home .. "/witness.log"
    local p = start(TWO_LINES, "nul", "-o", "/dev/null", "-e", "NULL", "-l", witness)
    assert.equal("/dev/null", p.pm2_env.pm_out_log_path)
    assert.equal("/dev/null", p.pm2_env.pm_err_log_path)
    -- the combined file shows the app wrote both lines
    H.wait_for(function() return #lines_of(read(witness)) >= 2 end, 3000, "the witness log")
    local got = lines_of(read(witness))
    table.sort(got)
    assert.same({ "err line", "out line" }, got)
    assert.is_false(exists(H.home .. "/logs/nul-out.log"))
    assert.is_false(exists(H.home .. "/logs/nul-error.log"))
    assert.is_false(exists(H.home .. "/NULL"))
    assert.is_false(exists(H.src .. "/NULL"))
    assert.are_not.equal("file", core.stat("/dev/null").type)
  end)

  it("time = true prefixes each line with YYYY-MM-DDTHH:mm:ss: ", function()
    start(TWO_LINES, "timed", "--time")
    for _, pair in ipairs({ { "out", "out line" }, { "error", "err line" } }) do
      local path = ("%s/logs/timed-%s.log"):format(H.home, pair[1])
      local text = wait_contains(path, "\n")
      local y, mo, d, h, mi, se, rest = text:match("^(%d%d%d%d)%-(%d%d)%-(%d%d)T(%d%d):(%d%d):(%d%d): (.*)\n$")
      assert(y, "not a time-prefixed line: " .. text)
      assert.equal(pair[2], rest)
      local t = os.time({ year = tonumber(y), month = tonumber(mo), day = tonumber(d),
        hour = tonumber(h), min = tonumber(mi), sec = tonumber(se) })
      assert.is_true(math.abs(os.time() - t) < 30, "the stamp is local time now: " .. text)
    end
  end)

  it("log_date_format 'YYYY-MM-DD HH:mm:ss.SSS' prefixes that shape", function()
    api_start({ script = TWO_LINES, name = "datefmt",
      log_date_format = "YYYY-MM-DD HH:mm:ss.SSS" })
    local text = wait_contains(H.home .. "/logs/datefmt-out.log", "\n")
    assert.truthy(text:match("^%d%d%d%d%-%d%d%-%d%d %d%d:%d%d:%d%d%.%d%d%d: out line\n$"), text)
    text = wait_contains(H.home .. "/logs/datefmt-error.log", "\n")
    assert.truthy(text:match("^%d%d%d%d%-%d%d%-%d%d %d%d:%d%d:%d%d%.%d%d%d: err line\n$"), text)
    assert.equal(os.date("%Y-%m-%d"):sub(1, 4), text:sub(1, 4))
  end)

  it("log_date_format 'YYYY-MM-DD HH:mm Z' (PM2's example) writes Z as moment does: +HH:mm", function()
    api_start({ script = TWO_LINES, name = "datez",
      log_date_format = "YYYY-MM-DD HH:mm Z" })
    local text = wait_contains(H.home .. "/logs/datez-out.log", "\n")
    assert.truthy(text:match("^%d%d%d%d%-%d%d%-%d%d %d%d:%d%d [%+%-]%d%d:%d%d: out line\n$"), text)
  end)

  it("log_date_format takes dayjs's other tokens as PM2 does: names, unpadded numbers, am/pm, [text]", function()
    api_start({ script = TWO_LINES, name = "datenames", log_date_format = "dddd, MMM D [at] h:m:s a" })
    local text = wait_contains(H.home .. "/logs/datenames-out.log", "\n")
    local wd, mon, day, h, mi, se, ap = text:match("^(%a+), (%a%a%a) (%d+) at (%d+):(%d+):(%d+) ([ap]m): out line\n$")
    assert.truthy(wd, text)
    assert.equal(os.date("%A"), wd)
    assert.equal(os.date("%b"), mon)
    assert.equal(tostring(tonumber(os.date("%d"))), day)
    assert.is_true(tonumber(h) >= 1 and tonumber(h) <= 12 and #mi <= 2 and #se <= 2, text)
    assert.equal(os.date("%p"):lower(), ap)
  end)

  it("log_type = 'json' writes one JSON object per line", function()
    local p = api_start({ script = F .. "/lb_json.sh", name = "jsonapp", log_type = "json" })
    local out = H.home .. "/logs/jsonapp-out.log"
    H.wait_for(function() return #lines_of(read(out)) >= 2 end, 3000, "two JSON lines")
    local got = lines_of(read(out))
    assert.equal(2, #got)
    local msgs = {}
    for i, l in ipairs(got) do
      local o = util.decode(l)
      assert(type(o) == "table", "not a JSON object: " .. l)
      msgs[i] = o.message
      assert.equal("out", o.type)
      assert.equal(p.pm_id, o.process_id)
      assert.equal("jsonapp", o.app_name)
      assert.equal("string", type(o.timestamp))
      -- (PM2's: JavaScript's toISOString, in UTC)
      assert.truthy(o.timestamp:match("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%dZ$"), o.timestamp)
    end
    assert.same({ "plain", 'say "hi"\tback\\slash' }, msgs)
    local errl = lines_of(wait_contains(H.home .. "/logs/jsonapp-error.log", "\n"))
    assert.equal(1, #errl)
    local o = util.decode(errl[1])
    assert.equal("oops", o.message)
    assert.equal("err", o.type)
    assert.equal(p.pm_id, o.process_id)
    assert.equal("jsonapp", o.app_name)
  end)

  it("log_type = 'json' lines stay valid UTF-8 JSON when the app writes bytes that are not UTF-8", function()
    api_start({ script = F .. "/lb_json_bytes.sh", name = "jsonbytes", log_type = "json" })
    local out = H.home .. "/logs/jsonbytes-out.log"
    H.wait_for(function() return #lines_of(read(out)) >= 2 end, 3000, "two JSON lines")
    -- a strict reader: python3's json on the line decoded as UTF-8
    local r = H.sh("python3 -c " .. H.shquote([[
import json, sys
for raw in open(sys.argv[1], "rb"):
    print(json.loads(raw.decode("utf-8"))["message"].encode("unicode_escape").decode())
]]) .. " " .. H.shquote(out))
    assert.equal(0, r.code, "not valid UTF-8 JSON: " .. r.err)
    local got = lines_of(r.out)
    assert.equal(2, #got)
    assert.truthy(got[1]:match("^bad .* bytes$"), got[1])
    assert.equal("ok \\xe9", got[2])
  end)

  it("ends a last line without newline at exit, never merged with the next run's output", function()
    start(F .. "/lb_tail.sh", "tails", "--max-restarts", "3", "--", H.home .. "/tails.count")
    H.wait_for(function() return H.status("tails") == "errored" end, 5000, "errored")
    wait_equal(H.home .. "/logs/tails-out.log", "tail-1\ntail-2\ntail-3\n")
  end)

  it("holds a crash loop's restart while the log writer is behind: no pipe more a run, its lines in order", function()
    -- four apps flood FIFOs whose readers never read: the writer waits on
    -- them and every pipe that reads pauses; the crash loop beside them
    -- got pipes of its own each run (an fd more each, lines out of order)
    local readers, apps = {}, {}
    for k = 1, 4 do
      local fifo = H.home .. "/fifo" .. k
      assert.equal(0, H.sh("mkfifo " .. H.shquote(fifo)).code)
      -- (its pid written by the process that then becomes the reader)
      H.sh(("sh -c 'echo $$ > %s.pid; exec sleep 600 < %s' >/dev/null 2>&1 &"):format(fifo, fifo))
      H.wait_for(function() readers[k] = tonumber((read(fifo .. ".pid"))); return readers[k] end, 5000)
      apps[k] = { name = "flood" .. k, script = "/usr/bin/yes", args = { string.rep("x", 70) },
        interpreter = "none", out_file = fifo }
    end
    finally(function() -- (one finally a test: busted keeps the last)
      for _, pid in ipairs(readers) do core.kill(pid, 9) end
      for pid in (read(H.home .. "/drainers") or ""):gmatch("%d+") do core.kill(tonumber(pid), 9) end
    end)
    local count = H.home .. "/tails.count"
    apps[5] = { name = "tails", script = F .. "/lb_tail.sh", args = { count }, max_restarts = 100000000 }
    H.ok(H.pm("start", H.write(H.home .. "/stall.json", util.encode({ apps = apps }))))
    local dpid = H.daemon_pid()
    H.wait_for(function() return H.status("tails") == "waiting restart" end, 20000, "the restart held back")
    assert.truthy(H.pm_log():find("app tails (4): its restart waits for the log writer", 1, true), H.pm_log())
    local fds = H.fd_count(dpid)
    local runs = tonumber((read(count)))
    -- held: no run more, no fd more, while the writer is behind
    H.holds(function() return H.fd_count(dpid) <= fds + 4 and tonumber((read(count))) == runs end, 1500,
      "no run and no fd more while the writer waits")
    -- the FIFOs read again: the loop goes on, every run's line in order
    for k = 1, 4 do
      H.sh(("sh -c 'echo $$ >> %s/drainers; exec cat %s/fifo%d' >/dev/null 2>&1 &"):format(H.home, H.home, k))
    end
    H.ok(H.pm("delete", "flood1", "flood2", "flood3", "flood4"))
    -- (the count file is rewritten by each run: empty a moment)
    local function runs_now() return tonumber((read(count))) or 0 end
    H.wait_for(function() return runs_now() >= runs + 20 end, 20000, "the loop going on")
    local n = runs_now()
    H.ok(H.pm("stop", "tails"))
    -- every run's line, in order (the run the stop ended may have had no
    -- time to write its own, nor its count)
    local path, got = H.home .. "/logs/tails-out.log", nil
    pcall(H.wait_for, function()
      got = lines_of(read(path))
      return #got >= n - 1
    end, 5000)
    assert.is_true(#got >= n - 1, #got .. " lines of " .. n .. " runs at least")
    for i, line in ipairs(got) do assert.equal("tail-" .. i, line) end
  end)

  it("a FIFO whose reader reads nothing holds the other apps' lines PM_LOG_FIFO_WAIT_MS at most: its own "
    .. "are dropped then, said in pm.log and, once it reads again, in the FIFO", function()
    -- a reader that reads a while, then stops (SIGSTOP)
    local taken = H.home .. "/stuck.taken"
    local fifo, reader = fifo_with("stuck.fifo", "cat %s > " .. H.shquote(taken))
    finally(function()
      core.kill(reader, 9)
      local g = tonumber((read(fifo .. ".grep")))
      if g then core.kill(g, 9) end
    end)
    local steady = H.script("steady.sh", "#!/bin/sh\ni=0\nwhile :; do i=$((i+1)); echo line-$i; sleep 0.1; done\n")
    -- (lines of 121 bytes a few ms apart: the FIFO's last page is left
    -- part full, room for a drop's line)
    local flood = H.script("flood.sh",
      "#!/bin/sh\nl=$(printf '%0120d' 0)\nwhile :; do echo \"$l\"; sleep 0.002; done\n")
    local apps = {
      { name = "flood", script = flood, out_file = fifo },
      { name = "steady", script = steady },
    }
    H.ok(H.pm("start", H.write(H.home .. "/stuck.json", util.encode({ apps = apps })),
      { env = { PM_LOG_FIFO_WAIT_MS = "1000" } }))
    H.wait_for(function() return size(taken) > 20000 end, 10000, "the reader reading")
    core.kill(reader, core.signals.SIGSTOP)
    -- the FIFO is full at once; the steady app's lines go on after a second
    local path = H.home .. "/logs/steady-out.log"
    local before = #lines_of(read(path))
    H.wait_for(function() return #lines_of(read(path)) >= before + 40 end, 20000, "the steady app's lines written")
    local said = "log " .. fifo .. " cannot be written: its reader has read nothing for 1000 ms"
    H.wait_for(function() return H.pm_log():find(said, 1, true) end, 5000, "pm.log saying why")
    -- said once while it reads nothing; nothing written to it meanwhile (a
    -- drop's line written into what was left of its last page counted as
    -- a write that went through: the next write waited again, and pm.log
    -- said "1 lines dropped")
    local function count(text, what)
      local k = 0
      for _ in text:gmatch(what) do k = k + 1 end
      return k
    end
    H.holds(function()
      local log = H.pm_log()
      return count(log, "cannot be written: its reader has read nothing") == 1
        and not log:find("dropped: its reader is not reading", 1, true)
    end, 2500, "one stop said, no drop said before it reads")
    -- a reader that reads: the FIFO says what it lost
    H.sh(("sh -c 'echo $$ > %s.grep; exec grep -a -m1 \"^\\[pm\\] \" %s > %s.notice' >/dev/null 2>&1 &")
      :format(fifo, fifo, fifo))
    local notice
    H.wait_for(function()
      notice = read(fifo .. ".notice")
      return notice and notice ~= ""
    end, 10000, "the drop said in the FIFO")
    local lost = tonumber(notice:match("^%[pm%] (%d+) lines %(%d+ bytes%) dropped: its reader is not reading\n$"))
    assert.truthy(lost and lost > 50, notice) -- (every line since it stopped, in one count)
    H.ok(H.pm("delete", "all"))
  end)

  it("says a FIFO log that no process reads is one (not 'No such device or address')", function()
    local fifo = H.home .. "/none.fifo"
    assert.equal(0, H.sh("mkfifo " .. H.shquote(fifo)).code)
    local talker = H.script("talk.sh", "#!/bin/sh\nwhile :; do echo hi; sleep 0.1; done\n")
    H.ok(H.pm("start", talker, "--name", "nofifo", "-o", fifo))
    H.wait_for(function()
      return H.pm_log():find("log " .. fifo .. " cannot be written: a FIFO no process reads", 1, true)
    end, 5000, "pm.log saying so")
    H.ok(H.pm("delete", "nofifo"))
  end)

  it("tells a slow FIFO reader (it reads) from a stopped one (it reads nothing)", function()
    -- 4 KB every 0.2 s; and one that never reads
    local reader = H.script("slowread.py", "import os, sys, time\nfd = os.open(sys.argv[1], os.O_RDONLY)\n"
      .. "while True:\n    os.read(fd, 4096)\n    time.sleep(0.2)\n")
    local pids = {}
    local slow, dead
    slow, pids[1] = fifo_with("slow.fifo", "python3 " .. H.shquote(reader) .. " %s")
    dead, pids[2] = fifo_with("dead.fifo", "sleep 600 < %s")
    finally(function() for _, pid in ipairs(pids) do core.kill(pid, 9) end end)
    local apps = {
      { name = "toslow", script = "/usr/bin/yes", args = { string.rep("y", 100) }, interpreter = "none",
        out_file = slow },
      { name = "todead", script = "/usr/bin/yes", args = { string.rep("d", 100) }, interpreter = "none",
        out_file = dead },
    }
    H.ok(H.pm("start", H.write(H.home .. "/slow.json", util.encode({ apps = apps })),
      { env = { PM_LOG_FIFO_WAIT_MS = "1000" } }))
    H.wait_for(function()
      return H.pm_log():find("log " .. dead .. " cannot be written: its reader has read nothing for 1000 ms", 1, true)
    end, 10000, "the stopped reader said")
    H.holds(function() return not H.pm_log():find("log " .. slow .. " cannot be written", 1, true) end, 3000,
      "the slow reader not said stopped")
    H.ok(H.pm("delete", "all"))
  end)

  it("PM_LOG_FIFO_WAIT_MS=0: a FIFO whose reader reads nothing is said at once, never waited for", function()
    local dead, pid = fifo_with("dead0.fifo", "sleep 600 < %s")
    finally(function() core.kill(pid, 9) end)
    H.ok(H.pm("start", "/usr/bin/yes", "--name", "todead0", "--interpreter", "none", "-o", dead,
      { env = { PM_LOG_FIFO_WAIT_MS = "0" } }))
    H.wait_for(function()
      return H.pm_log():find("log " .. dead .. " cannot be written: its reader has read nothing for 0 ms", 1, true)
    end, 5000, "the stopped reader said")
    H.ok(H.pm("delete", "todead0"))
  end)

  it("never rotates a FIFO given as a log file (max_log_size): its reader reads on", function()
    local got = H.home .. "/rot.got"
    local fifo, reader = fifo_with("rot.fifo", "cat %s > " .. H.shquote(got))
    finally(function() core.kill(reader, 9) end)
    local writer = H.script("seq200.sh", "#!/bin/sh\nseq -f 'line %08g' 1 20000\nsleep 600\n")
    H.ok(H.pm("start", H.write(H.home .. "/rot.json", util.encode({ apps = {
      { name = "rotf", script = writer, out_file = fifo, max_log_size = "10K", retain = 2 } } }))))
    -- 20,000 lines of 14 bytes: 28 rotations' worth, every one through the FIFO
    H.wait_for(function() return (read(got) or ""):find("line 00020000\n", 1, true) end, 10000,
      "the last line read from the FIFO")
    assert.equal("other", core.stat(fifo).type, "the FIFO was moved away")
    assert.is_nil(core.stat(fifo .. ".1"), "a rotated copy of the FIFO")
    assert.equal(20000, #lines_of(read(got)))
    assert.truthy(H.alive(reader), "the reader saw the FIFO end")
    H.ok(H.pm("delete", "rotf"))
  end)

  it("holds a partial line until its newline: one line, one time prefix", function()
    start(F .. "/lb_partial.sh", "partial", "--time")
    local path = H.home .. "/logs/partial-out.log"
    local text = wait_contains(path, "part-B")
    assert.truthy(text:match("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d: part%-Apart%-B\n$"), text)
  end)

  it("writes every line of a 20 MB burst exactly once, in order, from an app that exits at once", function()
    local n, width = 200000, 100
    start(F .. "/lb_burst.py", "burst", "--no-autorestart", "--", tostring(n), tostring(width))
    H.wait_for(function() return H.status("burst") == "stopped" end, 15000, "the burst to end")
    local path = H.home .. "/logs/burst-out.log"
    pcall(H.wait_for, function() return size(path) >= n * width end, 10000)
    assert.equal(n * width, size(path))
    local problem = check_burst(read(path), 1, n, width)
    assert.is_nil(problem)
    assert.equal(0, size(H.home .. "/logs/burst-error.log"))
  end)

  it("rotates at max_log_size '1M' (retain 50): every line in exactly one file, none split", function()
    local n, width = 200000, 100
    api_start({ script = F .. "/lb_burst.py", name = "rot", autorestart = false,
      args = { tostring(n), tostring(width) }, max_log_size = "1M", retain = 50 })
    local path = H.home .. "/logs/rot-out.log"
    local function files()
      local list = { path }
      local i = 1
      while exists(path .. "." .. i) do
        list[#list + 1] = path .. "." .. i
        i = i + 1
      end
      return list
    end
    local function total()
      local t = 0
      for _, f in ipairs(files()) do t = t + size(f) end
      return t
    end
    H.wait_for(function() return H.status("rot") == "stopped" end, 15000, "the burst to end")
    pcall(H.wait_for, function() return total() >= n * width end, 10000)
    assert.equal(n * width, total())
    local list = files()
    assert.is_true(#list >= 19, "files: " .. #list)
    assert.is_false(exists(path .. "." .. (#list + 1)))
    local parts = {}
    for i = #list, 1, -1 do -- oldest first
      local s = read(list[i])
      assert.is_true(#s <= 1048576, list[i] .. " is " .. #s .. " bytes")
      assert.is_true(#s == 0 or s:sub(-1) == "\n", list[i] .. " ends inside a line")
      assert.truthy(#s == 0 or s:match("^%d%d%d%d%d%d%d%d x"), list[i] .. " starts inside a line")
      parts[#parts + 1] = s
    end
    assert.is_nil(check_burst(table.concat(parts), 1, n, width))
  end)

  it("keeps at most `retain` rotated files, the newest lines", function()
    local n, width = 20000, 100
    api_start({ script = F .. "/lb_burst.py", name = "ret", autorestart = false,
      args = { tostring(n), tostring(width) }, max_log_size = "256K", retain = 3 })
    local path = H.home .. "/logs/ret-out.log"
    H.wait_for(function() return H.status("ret") == "stopped" end, 10000, "the burst to end")
    local last = ("%08d %s\n"):format(n, burst_pad(width))
    H.wait_for(function()
      local s = read(path)
      return s and s:sub(-#last) == last
    end, 10000, "the last line")
    assert.is_true(exists(path .. ".3"))
    assert.is_false(exists(path .. ".4"))
    local s = read(path .. ".3") .. read(path .. ".2") .. read(path .. ".1") .. read(path)
    assert.is_true(#s % width == 0)
    local k = #s / width
    assert.is_true(k < n, "older lines are gone")
    assert.is_nil(check_burst(s, n - k + 1, n, width))
  end)

  it("writes every line of every run of a crash-restart loop", function()
    local per = 2000
    local count = H.home .. "/loop.count"
    start(F .. "/lb_crashloop.sh", "loop", "--max-restarts", "5", "--", count, tostring(per))
    H.wait_for(function() return H.status("loop") == "errored" end, 10000, "errored")
    local runs = tonumber(read(count))
    assert.equal(5, runs)
    local path = H.home .. "/logs/loop-out.log"
    pcall(H.wait_for, function() return H.count_lines(path) >= runs * per end, 5000)
    local got = lines_of(read(path))
    assert.equal(runs * per, #got)
    -- run after run, each complete and in order
    for i, l in ipairs(got) do
      local want = ("run-%d-%d"):format(math.floor((i - 1) / per) + 1, (i - 1) % per + 1)
      if l ~= want then error(("line %d is %q, expected %q"):format(i, l, want)) end
    end
  end)

  it("pm flush empties the files; later lines start the file again", function()
    local p = start(F .. "/lb_trap.sh", "fl")
    local out, err = H.home .. "/logs/fl-out.log", H.home .. "/logs/fl-error.log"
    wait_contains(out, "ready")
    local f = io.open(err, "a") -- something in the error log too
    f:write("old error\n")
    f:close()
    local r = H.pm("flush")
    assert.equal(0, r.code, r.err)
    H.wait_for(function() return size(out) == 0 and size(err) == 0 end, 3000, "empty files")
    core.kill(p.pid, core.signals.SIGUSR1)
    wait_equal(out, ("got USR1 %d\n"):format(p.pid))
    r = H.pm("flush", "fl")
    assert.equal(0, r.code, r.err)
    H.wait_for(function() return size(out) == 0 end, 3000, "empty again")
    r = H.pm("flush", "nosuchapp")
    assert.are_not.equal(0, r.code)
    assert.truthy(r.err:find("nosuchapp", 1, true), r.err)
  end)

  it("pm reloadLogs, SIGUSR2 and SIGHUP to the daemon bring back a deleted log file", function()
    local p = start(F .. "/lb_trap.sh", "rl")
    local out = H.home .. "/logs/rl-out.log"
    wait_contains(out, "ready")
    local line = ("got USR1 %d\n"):format(p.pid)
    local dpid = H.daemon_pid()
    local ways = {
      { "pm reloadLogs", function()
        local r = H.pm("reloadLogs")
        assert.equal(0, r.code, r.err)
      end },
      { "SIGUSR2", function() core.kill(dpid, core.signals.SIGUSR2) end },
      { "SIGHUP", function() core.kill(dpid, core.signals.SIGHUP) end },
    }
    for _, way in ipairs(ways) do
      assert(os.remove(out))
      way[2]()
      H.wait_for(function() return exists(out) end, 3000, way[1] .. " to recreate the file")
      core.kill(p.pid, core.signals.SIGUSR1)
      wait_equal(out, line)
    end
    assert.is_true(H.alive(dpid))
  end)

  it("pm reloadLogs recreates a deleted log directory", function()
    local dir = H.home .. "/gone/sub"
    local p = start(F .. "/lb_trap.sh", "rd", "-o", dir .. "/o.log")
    wait_contains(dir .. "/o.log", "ready")
    os.execute("rm -rf " .. H.shquote(H.home .. "/gone"))
    local r = H.pm("reloadLogs")
    assert.equal(0, r.code, r.err)
    core.kill(p.pid, core.signals.SIGUSR1)
    wait_equal(dir .. "/o.log", ("got USR1 %d\n"):format(p.pid))
  end)
end)

describe("pm logs", function()
  before_each(function() H.new_home() end)
  after_each(function()
    pm.disconnect()
    H.cleanup()
  end)

  it("--lines 5 --nostream: the last 5 lines of each file, prefixed <pm_id>|<name>|; --err/--out select", function()
    start(F .. "/lb_other.sh", "other")
    local p = start(F .. "/lb_ten.sh", "lg")
    wait_contains(H.home .. "/logs/lg-out.log", "out-10\n")
    wait_contains(H.home .. "/logs/lg-error.log", "err-10\n")
    local prefix = p.pm_id .. "|lg|"
    local function payloads(r)
      assert.equal(0, r.code, r.err)
      local t = {}
      for _, l in ipairs(lines_of(r.out)) do
        assert.equal(prefix, l:sub(1, #prefix), "line without the prefix: " .. l)
        t[#t + 1] = l:sub(#prefix + 1)
      end
      return t
    end
    local got = payloads(H.pm("logs", "lg", "--lines", "5", "--nostream"))
    assert.equal(10, #got, "lines: " .. table.concat(got, ","))
    -- each file's share is the end of that stream, in order, one file after the other
    local seen = { out = {}, err = {} }
    for _, l in ipairs(got) do
      local which, k = l:match("^(%a+)%-(%d+)$")
      assert(which and seen[which], "not a line of lg: " .. l)
      seen[which][#seen[which] + 1] = tonumber(k)
    end
    assert.same({ 6, 7, 8, 9, 10 }, seen.out)
    assert.same({ 6, 7, 8, 9, 10 }, seen.err)
    assert.same({ "err-6", "err-7", "err-8", "err-9", "err-10" },
      payloads(H.pm("logs", "lg", "--lines", "5", "--nostream", "--err")))
    assert.same({ "out-6", "out-7", "out-8", "out-9", "out-10" },
      payloads(H.pm("logs", "lg", "--lines", "5", "--nostream", "--out")))
    assert.equal(20, #payloads(H.pm("logs", "lg", "--lines", "15", "--nostream")))
    local r = H.pm("logs", "nosuchapp", "--nostream")
    assert.are_not.equal(0, r.code)
  end)

  it("follows live lines of the target after the last ones (without --nostream)", function()
    local p = start(F .. "/lb_ticker.sh", "ticker")
    start(F .. "/lb_chatty.sh", "chatty")
    wait_contains(H.home .. "/logs/ticker-out.log", "tick 2")
    local r = H.sh("timeout -s INT 1.5 " .. H.shquote(H.bin) .. " logs ticker --lines 1")
    local got = lines_of(r.out)
    assert.is_true(#got >= 4, r.out .. r.err)
    for _, l in ipairs(got) do
      assert.truthy(l:match("^" .. p.pm_id .. "|ticker|tick %d+$"), l)
    end
    -- the last line, then live lines: in order, none missing among the live ones
    local first = tonumber(got[2]:match("(%d+)$"))
    assert.is_true(first > tonumber(got[1]:match("(%d+)$")), r.out)
    for i = 2, #got do
      assert.equal(first + i - 2, tonumber(got[i]:match("(%d+)$")), "live lines in order, none missing")
    end
  end)

  it("merges by time lines stamped with log_date_format 'YYYY-MM-DD HH:mm:ss.SSS'", function()
    local fmt = "YYYY-MM-DD HH:mm:ss.SSS"
    -- C1, then D1, then C2, 150 ms apart (flag files pace them)
    local flags = H.home .. "/tcd"
    local pc = api_start({ script = F .. "/lb_paced_first.sh", args = { flags, "0.15", "C1", "C2" }, name = "tc",
      log_date_format = fmt })
    local pd = api_start({ script = F .. "/lb_paced_second.sh", args = { flags, "0.15", "D1" }, name = "td",
      log_date_format = fmt })
    wait_contains(H.home .. "/logs/tc-out.log", "C2", 5000)
    wait_contains(H.home .. "/logs/td-out.log", "D1", 5000)
    local r = H.pm("logs", "--lines", "10", "--nostream")
    assert.equal(0, r.code, r.err)
    local got = lines_of(r.out)
    assert.equal(3, #got, r.out)
    local stamp = "%d%d%d%d%-%d%d%-%d%d %d%d:%d%d:%d%d%.%d%d%d: "
    assert.truthy(got[1]:match("^" .. pc.pm_id .. "|tc|" .. stamp .. "C1$"), r.out)
    assert.truthy(got[2]:match("^" .. pd.pm_id .. "|td|" .. stamp .. "D1$"), r.out)
    assert.truthy(got[3]:match("^" .. pc.pm_id .. "|tc|" .. stamp .. "C2$"), r.out)
  end)

  it("merges the lines of two apps by time when they carry timestamps", function()
    -- A1, then B1 1.2 s later, then A2 1.2 s after that (flag files pace them)
    local flags = H.home .. "/tab"
    local pa = start(F .. "/lb_paced_first.sh", "ta", "--time", "--", flags, "1.2", "A1", "A2")
    local pb = start(F .. "/lb_paced_second.sh", "tb", "--time", "--", flags, "1.2", "B1")
    wait_contains(H.home .. "/logs/ta-out.log", "A2", 6000)
    wait_contains(H.home .. "/logs/tb-out.log", "B1", 6000)
    local r = H.pm("logs", "--lines", "10", "--nostream")
    assert.equal(0, r.code, r.err)
    local got = lines_of(r.out)
    assert.equal(3, #got, r.out)
    local function is(l, p, name, text)
      local pat = "^" .. p.pm_id .. "|" .. name .. "|%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d: " .. text .. "$"
      return l:match(pat) ~= nil
    end
    assert.is_true(is(got[1], pa, "ta", "A1"), got[1])
    assert.is_true(is(got[2], pb, "tb", "B1"), got[2])
    assert.is_true(is(got[3], pa, "ta", "A2"), got[3])
  end)
end)
