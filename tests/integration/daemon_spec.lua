-- The daemon's own life: the private daemon of pm.connect(true), one daemon
-- for two first calls at once, shutdown on SIGTERM, and no zombie or fd
-- leak after many crash-restarts.
local H = require "pmtest"
local core = require "pm.core"
local util = require "pm.util"

local exists = H.exists

local fd_count = H.fd_count

local zombies_of = H.zombies_of

-- Live `pm daemon` processes whose PM_HOME is home.
local function daemons_of(home)
  local found = {}
  for _, pid in ipairs(H.processes_of_home(home)) do
    local cmd = util.read_file("/proc/" .. pid .. "/cmdline")
    -- (the daemon, not its keeper: "pm-keeper <fd> <stdio> pm daemon")
    if cmd and cmd:find("\0daemon\0", 1, true) and not cmd:match("^[^%z]*pm%-keeper[^%z/]*%z") then
      found[#found + 1] = pid
    end
  end
  return found
end

local SLEEPER = "exec sleep 1000\n"

describe("the daemon", function()
  before_each(function() H.new_home() end)
  after_each(function() H.cleanup() end)

  it("of pm.connect(true) is private: it ends with its apps when the script ends", function()
    assert.is_nil(H.daemon_pid())
    local app = H.script("rb_priv_app.sh", SLEEPER)
    local r = H.pm("run", H.fixtures .. "/rb_private.lua", app)
    assert.equal(0, r.code, r.err)
    local seen = util.decode(r.out)
    assert.is_table(seen, "script output: " .. r.out)
    assert.equal("online", seen.status)
    assert.is_true(seen.daemon > 0 and seen.app > 0)
    H.wait_for(function() return not H.alive(seen.app) end, 5000, "the private daemon's app to end")
    H.wait_for(function() return not H.alive(seen.daemon) end, 5000, "the private daemon to end")
    assert.is_false(exists(H.home .. "/rpc.sock"))
    assert.is_false(exists(H.home .. "/pm.pid"))
    -- and the next call finds no daemon: it starts a new one
    local p = H.pm("ping")
    assert.equal(0, p.code, p.err)
    assert.are_not.equal(seen.daemon, util.decode(p.out).pid)
  end)

  it("of pm.connect(true) is joined when one already runs, and left running", function()
    local r0 = H.pm("ping")
    assert.equal(0, r0.code, r0.err)
    local dpid = H.daemon_pid()
    local app = H.script("rb_priv_app2.sh", SLEEPER)
    local r = H.pm("run", H.fixtures .. "/rb_private.lua", app)
    assert.equal(0, r.code, r.err)
    local seen = util.decode(r.out)
    assert.equal(dpid, seen.daemon)
    local p = H.proc("priv")
    assert.equal("online", p.pm2_env.status)
    assert.equal(seen.app, p.pid)
    assert.is_true(H.alive(seen.app))
    assert.is_true(H.alive(dpid))
    assert.equal(dpid, H.daemon_pid())
  end)

  it("closes the stderr it was started with once it serves requests (what a first call waits for)", function()
    -- spawned as the client does: stderr is a pipe whose end of file
    -- means "listening" (or "ended"): then the socket answers at once
    local r, w = assert(core.pipe())
    local env = {}
    for k, v in pairs(core.environ()) do env[#env + 1] = k .. "=" .. v end
    local pid = assert(core.spawn({ file = H.bin, args = { H.bin, "daemon" }, fds = { -1, -1, w },
      setsid = true, env = env }))
    finally(function() -- (a daemon that failed early may have written no pm.pid for cleanup)
      if H.alive(pid) then core.kill(pid, core.signals.SIGTERM) end
      pcall(H.wait_for, function() return not H.alive(pid) end, 5000)
      if H.alive(pid) then core.kill(pid, core.signals.SIGKILL) end
    end)
    core.close(w)
    local said = false
    local watch = core.watch_read(r, function() said = true end)
    local t = core.timer(10000, 0, function() end)
    local deadline = core.mono() + 10000
    while not said and core.mono() < deadline do core.run("once") end
    watch:close()
    t:close()
    assert.is_true(said, "the daemon never closed its stderr")
    local fd, err = core.connect_unix(H.home .. "/rpc.sock")
    assert.is_number(fd, "connect right after the end of file: " .. tostring(err))
    core.close(fd)
    assert.equal("", util.read_fd(r), "the daemon wrote to the pipe")
    core.close(r)
    -- (the process started is the keeper: the daemon is its child)
    assert.equal(pid, H.keeper_pid())
    assert.equal(pid, core.proc_stat(H.daemon_pid()).ppid)
    assert.equal(0, H.pm("ping").code)
  end)

  it("is started once for first calls made at once", function()
    local function round(n)
      local home = H.home
      local parts = {}
      for i = 1, n do
        parts[#parts + 1] = ("%s ping >%s/o%d 2>%s/e%d & p%d=$!"):format(H.shquote(H.bin),
          H.shquote(home), i, H.shquote(home), i, i)
      end
      for i = 1, n do
        parts[#parts + 1] = ("wait $p%d; echo $? >%s/r%d"):format(i, H.shquote(home), i)
      end
      local r = H.sh("/bin/sh -c " .. H.shquote(table.concat(parts, "\n")))
      assert.equal(0, r.code, r.err)
      local dpid = H.daemon_pid()
      assert.is_truthy(dpid, "no pm.pid")
      for i = 1, n do
        local rc = tonumber(util.read_file(("%s/r%d"):format(home, i)))
        local out = util.read_file(("%s/o%d"):format(home, i)) or ""
        local err = util.read_file(("%s/e%d"):format(home, i)) or ""
        assert.equal(0, rc, ("call %d of %d failed: %s"):format(i, n, err))
        local pong = util.decode(out)
        assert.is_table(pong, ("call %d: %s"):format(i, out))
        assert.equal("pong", pong.msg)
        assert.equal(dpid, pong.pid, ("call %d was answered by another daemon"):format(i))
      end
      local list = H.wait_for(function()
        local l = daemons_of(home)
        return #l == 1 and l
      end, 3000, "exactly one daemon for " .. home)
      assert.same({ dpid }, list)
    end
    round(2)
    for _ = 1, 4 do
      H.cleanup()
      H.new_home()
      round(2)
    end
    H.cleanup()
    H.new_home()
    round(8)
  end)

  it("stops its apps, then itself, on SIGTERM", function()
    local bye = H.home .. "/bye"
    local a = H.script("rb_term_a.sh", SLEEPER)
    local b = H.script("rb_term_b.sh", ("trap 'echo bye > %s; exit 0' INT\necho ready\n"
      .. "while :; do sleep 0.05; done\n"):format(H.shquote(bye)))
    assert.equal(0, H.pm("start", a, "--name", "a").code)
    assert.equal(0, H.pm("start", b, "--name", "b").code)
    H.wait_for(function()
      return (util.read_file(H.home .. "/logs/b-out.log") or ""):find("ready")
    end, 3000, "app b to set its trap")
    local dpid = H.daemon_pid()
    local pa, pb = H.proc("a").pid, H.proc("b").pid
    assert.is_true(H.alive(pa) and H.alive(pb))
    core.kill(dpid, core.signals.SIGTERM)
    H.wait_for(function() return not H.alive(dpid) end, 5000, "the daemon to exit")
    assert.is_false(H.alive(pa))
    assert.is_false(H.alive(pb))
    assert.is_truthy((util.read_file(bye) or ""):find("bye"), "app b was not stopped by its signal")
    assert.is_false(exists(H.home .. "/rpc.sock"))
    assert.is_false(exists(H.home .. "/pm.pid"))
  end)

  it("leaves no zombie and no fd behind after 200 crash-restarts", function()
    local r = H.pm("ping")
    assert.equal(0, r.code, r.err)
    local dpid = H.daemon_pid()
    local before
    H.wait_for(function()
      before = fd_count(dpid)
      return before > 0 and before
    end, 2000)
    local s = H.script("rb_crash_now.sh", "exit 1\n")
    r = H.pm("start", s, "--name", "crasher", "--max-restarts", "1000", "--min-uptime", "0")
    assert.equal(0, r.code, r.err)
    local p = H.wait_for(function()
      local q = H.proc("crasher")
      return q and q.pm2_env.restart_time >= 200 and q
    end, 15000, "200 restarts")
    assert.are_not.equal("errored", p.pm2_env.status)
    local running = fd_count(dpid)
    assert.is_true(running <= before + 16,
      ("the daemon holds %d fds after 200 restarts, %d before"):format(running, before))
    local z = zombies_of(dpid)
    assert.is_true(#z <= 1, ("%d zombie children while restarting"):format(#z))
    assert.equal(0, H.pm("stop", "crasher").code)
    assert.equal("stopped", H.status("crasher"))
    local after = H.wait_for(function()
      local n = fd_count(dpid)
      return n <= before + 2 and n
    end, 3000, "the daemon's fds to come back near " .. before)
    assert.is_true(after <= before + 2)
    H.wait_for(function() return #zombies_of(dpid) == 0 end, 2000, "no zombie children")
    assert.is_true(H.alive(dpid))
    assert.equal(dpid, H.daemon_pid())
  end)
end)
