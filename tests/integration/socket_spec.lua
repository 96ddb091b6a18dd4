-- The control socket deleted or replaced under a running daemon (a tmp
-- cleaner; issue 15, item 15): the daemon binds it again within a second,
-- commands keep working, `pm kill` stops it for real or says it could not,
-- and no second daemon starts for the same PM_HOME.
local H = require "pmtest"
local core = require "pm.core"

describe("rpc.sock deleted under a running daemon", function()
  local daemons -- stopped by pid too: pm.pid may be gone
  before_each(function()
    H.new_home()
    daemons = {}
  end)
  after_each(function()
    H.cleanup()
    for _, pid in ipairs(daemons) do
      if H.alive(pid) then core.kill(pid, 9) end
    end
  end)

  local function sock() return H.home .. "/rpc.sock" end
  local function is_socket()
    local st = core.stat(sock(), true)
    return st and st.type == "socket"
  end

  it("is bound again within a second, and commands answer at once", function()
    local app = H.start("/bin/sleep", "sleeper", "--", "1000")
    local dpid = H.daemon_pid()
    assert.is_true(os.remove(sock()))
    local t0 = core.mono()
    H.wait_for(is_socket, 1500, "rpc.sock bound again")
    local r = H.ok(H.pm("list"))
    assert.is_true(core.mono() - t0 < 3000, "pm list took " .. (core.mono() - t0) .. " ms")
    assert.is_truthy(r.out:find("sleeper", 1, true))
    assert.equal(dpid, H.daemon_pid())
    assert.equal(app.pid, H.online(H.proc("sleeper")).pid)
    assert.is_truthy(H.pm_log():find("listening on it again", 1, true))
  end)

  it("is bound again when another file took its path", function()
    local dpid = H.daemon_pid() or (H.ok(H.pm("ping")) and H.daemon_pid())
    os.remove(sock())
    H.write(sock(), "not a socket")
    H.wait_for(is_socket, 1500, "rpc.sock bound again over the file")
    H.ok(H.pm("ping"))
    assert.equal(dpid, H.daemon_pid())
  end)

  it("with pm.lock and pm.pid gone too: locked again, and no second daemon starts", function()
    H.ok(H.pm("ping"))
    local dpid = H.daemon_pid()
    daemons[1] = dpid
    os.remove(sock())
    os.remove(H.home .. "/pm.lock")
    os.remove(H.home .. "/pm.pid")
    H.wait_for(is_socket, 1500, "rpc.sock bound again")
    local fd, err = core.lock(H.home .. "/pm.lock")
    if fd then core.close(fd) end
    assert.equal("locked", err)
    H.ok(H.pm("ping"))
    assert.equal(dpid, H.daemon_pid())
  end)

  it("pm kill stops the daemon and its apps for real", function()
    local app = H.start("/bin/sleep", "victim", "--", "1000")
    local dpid = H.daemon_pid()
    os.remove(sock())
    local r = H.pm("kill")
    if r.code == 0 then
      -- it said it stopped them: it did
      H.wait_for(function() return not H.alive(dpid) end, 5000, "the daemon gone after pm kill said so")
      assert.is_false(H.alive(app.pid), "the app outlived pm kill")
    else
      H.fails(r, "does not answer")
    end
    assert.equal(0, r.code, r.err)
  end)

  it("pm kill says so when the daemon runs and cannot be reached", function()
    H.ok(H.pm("ping"))
    local dpid = H.daemon_pid()
    core.kill(dpid, core.signals.SIGSTOP) -- it cannot bind its socket again
    local ok, err = pcall(function()
      os.remove(sock())
      local r = H.pm("kill")
      H.fails(r, "runs but does not answer", tostring(dpid))
      assert.is_true(H.alive(dpid))
    end)
    core.kill(dpid, core.signals.SIGCONT)
    assert(ok, err)
    H.wait_for(is_socket, 1500, "rpc.sock bound again")
  end)
end)
