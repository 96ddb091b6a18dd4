-- Issue 16 item 15 (its stdin part): an app declared with input = true
-- gets a stdin pipe the daemon holds; `pm send <id> <line>` writes a line
-- to it, `pm attach <id>` shows its output and sends the lines typed, as
-- PM2's. Bounded: the daemon never waits for the app; a line goes whole
-- or not at all (a full pipe is an error, the daemon answers on).
local H = require "pmtest"
local util = require "pm.util"
local pm = require "pm"

local ECHO = "#!/bin/sh\nwhile read -r line; do echo \"got: $line\"; done\necho \"stdin closed\"\nexec sleep 1000\n"

local function wait_contains(path, text)
  return H.wait_for(function()
    local s = util.read_file(path)
    return s and s:find(text, 1, true) and s
  end, 5000, ("%q in %s"):format(text, path))
end

-- Starts app `name` (script body) from an ecosystem file, input = true
-- unless said -> its description
local function start(name, body, input)
  local s = H.script(name .. ".sh", body)
  H.lua_eco(('{ { name = %q, script = %q, input = %s } }'):format(name, s, tostring(input ~= false)))
  H.ok(H.pm("start", "ecosystem.config.lua", { cwd = H.home }))
  return H.online(H.proc(name))
end

describe("an app's stdin: pm send, pm attach (issue 16 item 15)", function()
  before_each(function() H.new_home() end)
  after_each(function()
    pm.disconnect()
    H.cleanup()
  end)

  it("pm send <id> <line> writes the line to the app's stdin", function()
    local p = start("ech", ECHO)
    assert.is_true(p.pm2_env.input)
    H.ok(H.pm("send", tostring(p.pm_id), "hello there"))
    H.ok(H.pm("send", tostring(p.pm_id), "second line"))
    wait_contains(H.out_log("ech"), "got: second line")
    assert.equal("got: hello there\ngot: second line\n", util.read_file(H.out_log("ech")))
    -- PM2's API too
    assert.truthy(pm.sendLineToStdin(p.pm_id, "from the api"))
    wait_contains(H.out_log("ech"), "got: from the api")
    -- a restarted app's new process gets a stdin of its own
    H.ok(H.pm("restart", "ech"))
    H.wait_for(function() return H.status("ech") == "online" end, 5000, "online again")
    H.ok(H.pm("send", tostring(p.pm_id), "after restart"))
    wait_contains(H.out_log("ech"), "got: after restart")
  end)

  it("pm send: without input = true, a stopped app, an unknown id or a name are one-line errors", function()
    local p = start("noin", ECHO, false)
    H.fails(H.pm("send", tostring(p.pm_id), "x"), "input = true")
    local q = start("ech", ECHO)
    H.ok(H.pm("stop", "ech"))
    H.fails(H.pm("send", tostring(q.pm_id), "x"), "not running")
    H.fails(H.pm("send", "99", "x"), "not found")
    H.fails(H.pm("send", "ech", "x"), "pm_id must be a process number")
    H.fails(H.pm("attach", tostring(p.pm_id)), "input = true")
  end)

  it("a full stdin (an app that does not read) refuses the line; the daemon answers on", function()
    local p = start("deaf", "#!/bin/sh\nexec sleep 1000\n")
    local line = string.rep("x", 4000)
    local sent, r = 0, nil
    for _ = 1, 40 do
      r = H.pm("send", tostring(p.pm_id), line)
      if r.code ~= 0 then break end
      sent = sent + 1
    end
    H.fails(r, "is full", "not sent")
    assert.is_true(sent >= 1 and sent <= 17, "lines taken: " .. sent) -- a 64 KB pipe
    H.ok(H.pm("ping"))
    -- a line longer than one atomic write is refused whole
    local q = start("ech", ECHO)
    H.fails(H.pm("send", tostring(q.pm_id), string.rep("y", 5000)), "more than 4096 bytes")
  end)

  it("pm attach <id> shows the app's output and sends the lines typed, until the input ends", function()
    local p = start("ech", ECHO)
    -- (the lines typed a moment apart, the input's end a moment after)
    local r = H.sh("sh -c " .. H.shquote("(sleep 0.3; echo one; sleep 0.3; echo two; sleep 0.5) | "
      .. H.command("attach", tostring(p.pm_id))))
    assert.equal(0, r.code, r.err)
    assert.truthy(r.out:find("got: one\n", 1, true), r.out)
    assert.truthy(r.out:find("got: two\n", 1, true), r.out)
    assert.equal("got: one\ngot: two\n", util.read_file(H.out_log("ech")))
  end)
end)
