-- Issue 23 (PM2's e2e suite, cli/reload.sh): a process that is stopped
-- gets its stop signal once. Its process group is signalled as a whole,
-- and the main process again only when it left that group: a handler that
-- logs each SIGINT (Node runs one per delivery) logs one line. And PM2's
-- PM2_KILL_USE_MESSAGE: the message "shutdown" instead of a signal.
local H = require "pmtest"
local util = require "pm.util"

local ok = H.ok

-- Counts the SIGINTs it is delivered (Python's wakeup fd gets a byte per
-- delivery), says how many 0.5 s after the first, and exits.
local COUNTER = [[
import os, signal, sys, time
r, w = os.pipe()
os.set_blocking(w, False)
signal.set_wakeup_fd(w)
signal.signal(signal.SIGINT, lambda *a: None)
print("ready", flush=True)
n, deadline = 0, None
while deadline is None or time.time() < deadline:
    try:
        n += len(os.read(r, 64))
        if deadline is None:
            deadline = time.time() + 0.5
            os.set_blocking(r, False)
    except BlockingIOError:
        time.sleep(0.02)
print("SIGINT x%d" % n, flush=True)
]]

describe("the stop signal", function()
  before_each(function() H.new_home() end)
  after_each(function() H.cleanup() end)

  it("reaches a process once on stop, restart and reload, however many processes an app has", function()
    local script = H.script("count.py", COUNTER)
    ok(H.pm("start", script, "--name", "c", "-i", "3", "--interpreter", "/usr/bin/python3", "-s"))
    local logs = {}
    for i = 0, 2 do logs[i] = H.home .. "/logs/c-out-" .. i .. ".log" end
    local function said(what, n)
      H.wait_for(function()
        for i = 0, 2 do
          local _, c = (util.read_file(logs[i]) or ""):gsub(what, "")
          if c < n then return false end
        end
        return true
      end, 10000, what .. " in every log")
    end
    said("ready", 1)
    ok(H.pm("restart", "c", "-s"))
    said("ready", 2)
    ok(H.pm("reload", "c", "-s"))
    said("ready", 3)
    ok(H.pm("stop", "c", "-s"))
    said("SIGINT x", 3)
    for i = 0, 2 do
      local text = util.read_file(logs[i])
      local _, once = text:gsub("SIGINT x1\n", "")
      assert.equal(3, once, text)
    end
  end)

  it("PM2_KILL_USE_MESSAGE=true in the daemon's environment: every app is stopped with the message", function()
    local app = H.script("ipc.sh", "#!/bin/sh\necho ready\n"
      .. "while read -r line <&$NODE_CHANNEL_FD; do echo \"got $line\"; done\n")
    local r = H.sh(H.shquote(H.bin) .. " start " .. H.shquote(app) .. " -s",
      { env = { PM2_KILL_USE_MESSAGE = "true" } })
    assert.equal(0, r.code, r.err)
    H.wait_for(function() return H.contains(H.out_log("ipc"), "ready") end, 5000, "ipc ready")
    ok(H.pm("reload", "ipc", "-s"))
    ok(H.pm("stop", "ipc", "-s"))
    local _, n = util.read_file(H.out_log("ipc")):gsub('got "shutdown"', "")
    assert.equal(2, n)
  end)
end)
