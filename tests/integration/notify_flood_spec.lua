-- sd_notify under a flood: an app's processes sending datagrams in a tight
-- loop get at most readiness.NOTIFY_RATE read a second (the socket is left
-- unread for the rest of it, once said in pm.log); the daemon answers
-- meanwhile, and reads the socket again after.
local H = require "pmtest"

local ok = H.ok

describe("sd_notify", function()
  before_each(function() H.new_home() end)
  after_each(function() H.cleanup() end)

  it("reads at most a rate of datagrams a second from a flooding app, answers meanwhile, and reads again after",
    function()
    local script = H.write(H.home .. "/flood.py", [[
import os, socket, time, sys
path = os.environ["NOTIFY_SOCKET"]
def flood(seconds):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.setblocking(False)
    end = time.time() + seconds
    while time.time() < end:
        try:
            s.sendto(b"STATUS=flooding", path)
        except OSError:
            pass
kids = []
for _ in range(4):
    pid = os.fork()
    if pid == 0:
        flood(3)
        os._exit(0)
    kids.append(pid)
for k in kids:
    os.waitpid(k, 0)
time.sleep(1.5)
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.sendto(b"STATUS=calm", path)
time.sleep(1000)
]])
    ok(H.pm("start", script, "--name", "flood", "--interpreter", "python3", "-s"))
    H.wait_for(function() return H.pm_log():find("datagrams in a second", 1, true) end, 10000,
      "the flood said in pm.log")
    ok(H.pm("ping")) -- (answered while it floods)
    H.wait_for(function()
      local p = H.proc("flood")
      return p and p.pm2_env.notify and p.pm2_env.notify.status == "calm"
    end, 15000, "the socket read again after the flood")
    assert.equal(1, H.count(H.pm_log(), "datagrams in a second")) -- (said once)
  end)
end)
