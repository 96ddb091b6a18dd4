-- Issue 16 item 8: `pm logs` as a PM2 user reads it. --lines N is per
-- file (N lines of each), the newest last; stamped lines interleave by
-- time; --json prints PM2's objects (message, timestamp, type, process_id,
-- app_name); --timestamp [format], --format, --highlight [value]; each
-- app its colour on a terminal, none when piped.
local H = require "pmtest"
local util = require "pm.util"
local pm = require "pm"

local F = H.fixtures

local function lines_of(s)
  local t = {}
  for l in (s or ""):gmatch("([^\n]*)\n") do t[#t + 1] = l end
  return t
end

-- out-1..10 on stdout, then (a moment later: the error file is the one
-- written last) err-1..10 on stderr
local function ten()
  return H.script("ten.sh", "#!/bin/sh\nfor i in 1 2 3 4 5 6 7 8 9 10; do echo out-$i; done\nsleep 0.2\n"
    .. "for i in 1 2 3 4 5 6 7 8 9 10; do echo err-$i >&2; done\nexec sleep 1000\n")
end

local function wait_contains(path, text)
  return H.wait_for(function()
    local s = util.read_file(path)
    return s and s:find(text, 1, true) and s
  end, 5000, ("%q in %s"):format(text, path))
end

describe("pm logs (issue 16 item 8)", function()
  before_each(function() H.new_home() end)
  after_each(function()
    pm.disconnect()
    H.cleanup()
  end)

  it("pm logs app --lines 3 --nostream: 3 lines of each file, the newest file last", function()
    local p = H.start(ten(), "lg")
    wait_contains(H.home .. "/logs/lg-out.log", "out-10\n")
    wait_contains(H.home .. "/logs/lg-error.log", "err-10\n")
    local r = H.ok(H.pm("logs", "lg", "--lines", "3", "--nostream"))
    local pre = p.pm_id .. "|lg|"
    assert.same({ pre .. "out-8", pre .. "out-9", pre .. "out-10", pre .. "err-8", pre .. "err-9", pre .. "err-10" },
      lines_of(r.out))
  end)

  it("pm logs --lines 2 --nostream: the stdout line written last is the last line shown", function()
    local s = H.script("late_out.sh", "#!/bin/sh\necho e1 >&2; echo e2 >&2; echo e3 >&2\n"
      .. "sleep 0.3; echo o-last\nexec sleep 1000\n")
    local p = H.start(s, "late")
    wait_contains(H.home .. "/logs/late-out.log", "o-last")
    local got = lines_of(H.ok(H.pm("logs", "--lines", "2", "--nostream")).out)
    local pre = p.pm_id .. "|late|"
    assert.same({ pre .. "e2", pre .. "e3", pre .. "o-last" }, got)
  end)

  it("interleaves stdout and stderr by time when the lines are stamped (log_date_format with ms)", function()
    local s = H.script("alt.sh", "#!/bin/sh\necho o1; sleep 0.05; echo e1 >&2; sleep 0.05; echo o2; "
      .. "sleep 0.05; echo e2 >&2; sleep 0.05; echo o3\nexec sleep 1000\n")
    H.lua_eco(('{ { name = "alt", script = %q, log_date_format = "YYYY-MM-DD HH:mm:ss.SSS" } }'):format(s))
    H.ok(H.pm("start", "ecosystem.config.lua", { cwd = H.home }))
    wait_contains(H.home .. "/logs/alt-out.log", "o3")
    wait_contains(H.home .. "/logs/alt-error.log", "e2")
    local got = {}
    for _, l in ipairs(lines_of(H.ok(H.pm("logs", "alt", "--lines", "3", "--nostream")).out)) do
      got[#got + 1] = l:match("^0|alt|%d%d%d%d%-%d%d%-%d%d %d%d:%d%d:%d%d%.%d%d%d: (.*)$") or l
    end
    assert.same({ "o1", "e1", "o2", "e2", "o3" }, got)
  end)

  it("pm logs --json --nostream prints PM2's objects, in their order of keys", function()
    local p = H.start(ten(), "js")
    wait_contains(H.home .. "/logs/js-error.log", "err-10\n")
    local r = H.ok(H.pm("logs", "--json", "--nostream", "--lines", "1"))
    local got = lines_of(r.out)
    assert.equal(2, #got, r.out)
    assert.equal(('{"message":"out-10","timestamp":null,"type":"out","process_id":%d,"app_name":"js"}'):format(p.pm_id),
      got[1])
    local o = util.decode(got[2])
    assert.same({ message = "err-10", type = "err", process_id = p.pm_id, app_name = "js" },
      { message = o.message, type = o.type, process_id = o.process_id, app_name = o.app_name })
  end)

  it("pm logs --json: a stamped line's timestamp is its time, as JSON's Date (UTC)", function()
    -- the daemon and the CLI 5:30 east of UTC
    local tz = { env = { TZ = "Asia/Kolkata" } }
    local s = H.script("one.sh", "#!/bin/sh\necho stamped\nexec sleep 1000\n")
    H.lua_eco(('{ { name = "st", script = %q, log_date_format = "YYYY-MM-DDTHH:mm:ss.SSSZ" } }'):format(s))
    H.ok(H.pm("start", "ecosystem.config.lua", { cwd = H.home, env = tz.env }))
    local text = wait_contains(H.home .. "/logs/st-out.log", "stamped")
    local o = util.decode(lines_of(H.ok(H.pm("logs", "st", "--json", "--nostream", "--out", tz)).out)[1])
    assert.equal("stamped", o.message)
    local h, mi, sec, ms = text:match("^%d+%-%d+%-%d+T(%d+):(%d+):(%d+)%.(%d+)%+05:30: stamped")
    assert.truthy(h, text)
    local H2, MI, S, MS = tostring(o.timestamp):match("^%d%d%d%d%-%d%d%-%d%dT(%d%d):(%d%d):(%d%d)%.(%d%d%d)Z$")
    assert.truthy(H2, o.timestamp)
    local function minutes(hh, mm) return tonumber(hh) * 60 + tonumber(mm) end
    assert.equal((minutes(h, mi) - 330) % 1440, minutes(H2, MI))
    assert.same({ sec, ms }, { S, MS })
  end)

  it("pm logs --json follows as PM2's objects (and process events)", function()
    local p = H.start(F .. "/lb_ticker.sh", "jt")
    wait_contains(H.home .. "/logs/jt-out.log", "tick 2")
    local r = H.sh("timeout -s INT 1.5 " .. H.command("logs", "jt", "--json", "--lines", "0"))
    local got = lines_of(r.out)
    assert.is_true(#got >= 2, r.out .. r.err)
    for _, l in ipairs(got) do
      local o = util.decode(l)
      assert.equal("table", type(o), l)
      assert.equal("out", o.type)
      assert.equal(p.pm_id, o.process_id)
      assert.equal("jt", o.app_name)
      assert.truthy(o.message:match("^tick %d+$"), l)
      assert.truthy(o.timestamp:match("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%dZ$"), l)
    end
  end)

  it("pm logs --timestamp [format] puts each line's time first", function()
    local p = H.start(F .. "/lb_ticker.sh", "ts")
    wait_contains(H.home .. "/logs/ts-out.log", "tick 2")
    local r = H.sh("timeout -s INT 1.5 " .. H.command("logs", "ts", "--lines", "0", "--timestamp"))
    local got = lines_of(r.out)
    assert.is_true(#got >= 2, r.out .. r.err)
    for _, l in ipairs(got) do
      assert.truthy(l:match("^%d%d%d%d%-%d%d%-%d%d%-%d%d:%d%d:%d%d " .. p.pm_id .. "|ts|tick %d+$"), l)
    end
    r = H.sh("timeout -s INT 1.5 " .. H.command("logs", "ts", "--lines", "0", "--timestamp", "HH:mm"))
    got = lines_of(r.out)
    assert.is_true(#got >= 2, r.out .. r.err)
    for _, l in ipairs(got) do
      assert.truthy(l:match("^%d%d:%d%d " .. p.pm_id .. "|ts|tick %d+$"), l)
    end
  end)

  it("pm logs --format --nostream prints PM2's key=value lines", function()
    local p = H.start(ten(), "fm")
    wait_contains(H.home .. "/logs/fm-error.log", "err-10\n")
    local got = lines_of(H.ok(H.pm("logs", "fm", "--format", "--nostream", "--lines", "1")).out)
    assert.same({ ("app=fm id=%d type=out message=out-10"):format(p.pm_id),
      ("app=fm id=%d type=error message=err-10"):format(p.pm_id) }, got)
  end)

  it("pm logs --highlight <value> marks it on a terminal; colours per app, none when piped", function()
    local a = H.start(F .. "/lb_ten.sh", "ca")
    local b = H.start(F .. "/lb_ten.sh", "cb", "-f")
    wait_contains(H.home .. "/logs/ca-error.log", "err-10\n")
    wait_contains(H.home .. "/logs/cb-error.log", "err-10\n")
    -- piped: plain text
    local plain = H.ok(H.pm("logs", "--lines", "1", "--nostream", "--highlight", "10")).out
    assert.is_nil(plain:find("\27", 1, true), plain)
    -- a terminal (script(1) gives the command a pty)
    local r = H.sh("script -qec " .. H.shquote(H.command("logs", "--lines", "1", "--nostream", "--highlight", "10"))
      .. " /dev/null")
    local out = r.out:gsub("\r", "")
    assert.truthy(out:find("\27[100m10\27[0m", 1, true), out)
    local function color_of(id, name)
      return out:match("\27%[(%d+)m" .. id .. "|" .. name .. "\27%[0m")
    end
    local ca, cb = color_of(a.pm_id, "ca"), color_of(b.pm_id, "cb")
    assert.truthy(ca, out)
    assert.truthy(cb, out)
    assert.are_not.equal(ca, cb)
    -- out after the name in green, err in red (PM2's)
    assert.truthy(out:find(a.pm_id .. "|ca\27[0m\27[32m|\27[0mout-\27[100m10", 1, true), out)
    assert.truthy(out:find(a.pm_id .. "|ca\27[0m\27[31m|\27[0merr-\27[100m10", 1, true), out)
    -- FORCE_COLOR as PM2's colour library reads it; NO_COLOR wins
    local forced = H.ok(H.pm("logs", "ca", "--lines", "1", "--nostream", { env = { FORCE_COLOR = "1" } })).out
    assert.truthy(forced:find("\27[", 1, true), forced)
    local both = { env = { FORCE_COLOR = "1", NO_COLOR = "1" } }
    local none = H.ok(H.pm("logs", "ca", "--lines", "1", "--nostream", both)).out
    assert.is_nil(none:find("\27", 1, true), none)
  end)

  it("on a terminal names each file of an app asked for, an empty one too (PM2's)", function()
    H.ok(H.pm("start", "--name", "quiet", "--", "sleep", "1000"))
    H.ok(H.pm("start", "--name", "talker", "--", "sh", "-c", "echo said; exec sleep 1000"))
    wait_contains(H.home .. "/logs/talker-out.log", "said\n")
    local color = { env = { FORCE_COLOR = "1" } }
    local out = H.ok(H.pm("logs", "quiet", "--nostream", color)).out
    local heads = {}
    for path in out:gmatch("\27%[90m(%S+) last 15 lines:\27%[0m\n") do heads[#heads + 1] = path end
    table.sort(heads)
    assert.same({ H.home .. "/logs/quiet-error.log", H.home .. "/logs/quiet-out.log" }, heads)
    assert.equal(#out, #table.concat(heads) + 2 * #"\27[90m last 15 lines:\27[0m\n" + 1, out) -- (and a blank line)
    -- all apps: the files with lines
    local all = H.ok(H.pm("logs", "--nostream", color)).out
    assert.truthy(all:find(H.home .. "/logs/talker-out.log last 15 lines:", 1, true), all)
    assert.is_nil(all:find("quiet", 1, true), all)
    -- piped: the lines alone, nothing for an empty file
    assert.equal("", H.ok(H.pm("logs", "quiet", "--nostream")).out)
  end)
end)
