-- Issue 21's review, as an attacker and as a PM2 user: what an app's
-- cgroup, its IPC channel and running out of fds must not let happen.
local H = require "pmtest"
local util = require "pm.util"

local function ok(r) return H.ok(r) end

-- The folder of the apps' cgroups, or nil (none here: the test is pending)
local function cgroup_base()
  ok(H.pm("ping"))
  return (util.read_file(H.home .. "/cgroup") or ""):match("[^\n]+")
end

-- An app whose main process leaves a child behind it (its pid in a file)
local function leaver(name)
  local pidfile = H.home .. "/" .. name .. ".child"
  local app = H.script(name .. ".sh", ("#!/bin/sh\nsleep 600 &\necho $! > %s\nexec sleep 601\n")
    :format(H.shquote(pidfile)))
  return app, function()
    H.wait_for(function() return tonumber(util.read_file(pidfile) or "") end, 5000, name .. "'s child")
    return tonumber(util.read_file(pidfile))
  end
end

describe("issue 21 review", function()
  before_each(function() H.new_home() end)
  after_each(function() H.cleanup() end)

  it("an app's id used again does not put it in the cgroup of what an earlier app left running "
    .. "(kill_mode = process): the new app's stop leaves it alone", function()
    if not cgroup_base() then return pending("no cgroup for apps here") end
    local app, child_of = leaver("keeper")
    ok(H.pm("start", app, "--name", "keeper", "--no-treekill"))
    local child = child_of()
    ok(H.pm("delete", "keeper")) -- its child lives on, as asked
    assert.is_true(H.alive(child))
    local b = H.online(H.start("/bin/sleep", "other", "--", "600"))
    assert.equal(0, b.pm_id) -- (the id the first app had)
    ok(H.pm("stop", "other"))
    ok(H.pm("ping"))
    assert.is_true(H.alive(child), "the first app's child was stopped with the second app")
    ok(H.pm("delete", "other"))
    assert.is_true(H.alive(child))
    require("pm.core").kill(child, 9)
  end)

  it("a group a killed daemon's app left running is not joined by the next daemon's app", function()
    if not cgroup_base() then return pending("no cgroup for apps here") end
    local app, child_of = leaver("k2")
    ok(H.pm("start", app, "--name", "k2", "--no-treekill"))
    local child = child_of()
    ok(H.pm("kill"))
    assert.is_true(H.alive(child), "kill_mode = process: the child outlives the daemon")
    local b = H.online(H.start("/bin/sleep", "next", "--", "600"))
    assert.equal(0, b.pm_id)
    ok(H.pm("restart", "next"))
    ok(H.pm("stop", "next"))
    assert.is_true(H.alive(child), "the old daemon's app's child was stopped with the new app")
    require("pm.core").kill(child, 9)
  end)

  it("a second message to an app without a channel says the same (it runs; its next restart has one), "
    .. "not 'not running, or ipc = false'", function()
    local p = H.online(H.start("/bin/sleep", "plain", "--", "600"))
    local send = ("return pm.sendDataToProcessId(%d, { type = 'process:msg', data = 1, topic = true })")
      :format(p.pm_id)
    for i = 1, 2 do
      local r = H.pm("-e", send)
      assert.truthy(r.out:find("has no IPC channel: pm opens one for Node and Lua apps", 1, true),
        ("send %d: %s"):format(i, r.out .. r.err))
      assert.truthy(r.out:find("pm restart plain", 1, true), r.out)
    end
  end)

  it("an app a message was sent to without a channel keeps that through save and resurrect: "
    .. "its next process has one", function()
    local p = H.online(H.start("/bin/sleep", "asked", "--", "600"))
    local r = H.pm("-e", ("return pm.sendDataToProcessId(%d, { type = 'process:msg', data = 1, topic = true })")
      :format(p.pm_id))
    assert.truthy(r.out:find("has no IPC channel", 1, true), r.out .. r.err)
    ok(H.pm("save"))
    ok(H.pm("kill"))
    ok(H.pm("resurrect"))
    H.wait_for(function()
      local q = H.proc("asked")
      local env = q and q.pid > 0 and H.environ(q.pid)
      return env and env.NODE_CHANNEL_FD ~= nil
    end, 5000, "the resurrected app's process with a channel")
  end)

  -- a daemon with limit fds (200; soft = hard) that cannot raise them ->
  -- true, or false (a root daemon that could: running out is not reachable)
  local function small_daemon(limit)
    limit = limit or 200
    local drop = ""
    if os.execute("setpriv --bounding-set=-sys_resource true >/dev/null 2>&1") == 0 then
      drop = "setpriv --bounding-set=-sys_resource "
    end
    ok(H.sh(drop .. "sh -c " .. H.shquote("ulimit -n " .. limit .. " && exec " .. H.shquote(H.bin) .. " ping")))
    return util.decode(ok(H.pm("ping")).out).fds.limit == limit
  end

  it("pm scale past the fd limit says so in one line and fails; the instances that fit run", function()
    if not small_daemon() then return pending("the daemon raised its fd limit: running out is not reachable") end
    H.online(H.start("/bin/sleep", "many", "--", "600"))
    local r = H.pm("scale", "many", "150")
    assert.equal(1, r.code, r.out .. r.err)
    local line = r.err:gsub("\n$", "")
    assert.is_nil(line:find("\n"), "one line: " .. r.err)
    assert.truthy(line:find("apps not started: the daemon's fd limit (200) is reached: each app needs 2", 1, true),
      line)
    local online = 0
    for _, p in ipairs(H.jlist()) do
      if p.pm2_env.status == "online" then online = online + 1 end
    end
    assert.is_true(online > 1, online .. " online")
    H.ok(H.pm("ping")) -- the daemon goes on
  end)

  it("running out of fds at a spawn's join of its cgroup fails that start; cgroups stay on for the next", function()
    if not small_daemon(100) then return pending("the daemon raised its fd limit: running out is not reachable") end
    local base = (util.read_file(H.home .. "/cgroup") or ""):match("[^\n]+")
    if not base then return pending("no cgroup for apps here") end
    local dpid = H.daemon_pid()
    -- full: connections held until the daemon has to drop one
    local held = {}
    for i = 1, 200 do
      -- (a connect the backlog has no room for fails: the daemon is full too)
      local connected, c = pcall(H.connect)
      if not connected then break end
      -- (a connection the daemon had no fd for is told why and closed:
      -- the send may find it closed already)
      local sent = pcall(c.send, c, ('{"jsonrpc":"2.0","id":%d,"method":"ping","params":{}}\n'):format(i))
      if not sent or not c:reply(i) then c:close(); break end
      held[#held + 1] = c
    end
    -- one fd given back at a time, a start tried each time: each count of
    -- free fds is met, the one where the cgroup's file is the one missing too
    local started
    for i = #held, 1, -1 do
      local before = H.fd_count(dpid)
      held[i]:close()
      held[i] = nil
      H.wait_for(function() return H.fd_count(dpid) < before end, 3000, "the connection's fd closed")
      local name = "z" .. i
      if H.pm("start", "/bin/sleep", "--name", name, "--", "600").code == 0 then started = name; break end
    end
    for _, c in pairs(held) do c:close() end
    assert.truthy(started, "no start succeeded as fds came back")
    assert.is_nil(H.pm_log():find("cgroups off", 1, true), H.pm_log():match("[^\n]*cgroups off[^\n]*"))
    local pid = H.proc(started).pid
    local found = false
    for name in pairs(require("pm.core").listdir(base) or {}) do
      found = found or (util.read_file(base .. "/" .. name .. "/cgroup.procs") or ""):find("%f[%d]" .. pid .. "%f[%D]")
    end
    assert.truthy(found, started .. " (" .. pid .. ") is in no cgroup")
  end)

  it("a process an app (root's) moved into a cgroup it made inside its own is stopped with it, "
    .. "and the groups go at its delete", function()
    local base = cgroup_base()
    if not base then return pending("no cgroup for apps here") end
    local pidfile = H.home .. "/nested.child"
    -- the app's own group is the folder whose cgroup.procs holds it
    local app = H.script("nester.sh", ([[#!/bin/sh
for d in %s/*/; do grep -qx $$ "$d/cgroup.procs" && g=$d; done
mkdir "${g}sub" || exit 1
( setsid env -i sleep 600 & echo $! > "${g}sub/cgroup.procs"; echo $! > %s )
exec sleep 601
]]):format(H.shquote(base), H.shquote(pidfile)))
    ok(H.pm("start", app, "--name", "nester"))
    H.wait_for(function() return tonumber(util.read_file(pidfile) or "") end, 5000, "the nested child")
    local child = tonumber(util.read_file(pidfile))
    local id = H.proc("nester").pm_id
    H.wait_for(function()
      return (util.read_file(base .. "/" .. id .. "/sub/cgroup.procs") or ""):find("%f[%d]" .. child .. "%f[%D]")
    end, 5000, "the child in the nested group")
    ok(H.pm("stop", "nester"))
    local ok_gone = pcall(H.wait_for, function() return not H.alive(child) end, 3000)
    if not ok_gone then require("pm.core").kill(child, 9) end
    assert.is_true(ok_gone, "the child in the app's nested group outlived its stop")
    ok(H.pm("delete", "nester"))
    H.wait_for(function() return not H.exists(base .. "/" .. id) end, 3000, "its groups removed")
  end)

  -- Connections to the daemon held until it has to drop one (its fds all
  -- taken) -> the list (c:close() gives each back)
  local function fill_with_connections()
    local held = {}
    for i = 1, 400 do
      local c = H.connect()
      -- (a connection the daemon had no fd for is told why and closed:
      -- the send may find it closed already)
      local sent = pcall(c.send, c, ('{"jsonrpc":"2.0","id":%d,"method":"ping","params":{}}\n'):format(i))
      if not sent or not c:reply(i) then c:close(); break end
      held[#held + 1] = c
    end
    return held
  end

  it("an app restarting by itself while the daemon is out of fds starts again once they are back", function()
    if not small_daemon(100) then return pending("the daemon raised its fd limit: running out is not reachable") end
    local app = H.script("crasher.sh", "#!/bin/sh\nsleep 1.5\nexit 1\n")
    local first = H.online(H.start(app, "crasher"))
    local held = fill_with_connections()
    -- its next restart finds no fd (pm.log says so: no command gets through)
    local ok_said = pcall(H.wait_for, function()
      return H.pm_log():find("app crasher (" .. first.pm_id .. ") cannot start: the daemon's fd limit", 1, true)
    end, 8000, "the restart refused")
    for _, c in ipairs(held) do c:close() end
    assert.is_true(ok_said, "the restart did not run out of fds")
    H.wait_for(function()
      local p = H.proc("crasher")
      return p and p.pm2_env.status == "online" and p.pid ~= first.pid
    end, 8000, "crasher back online once fds are free")
  end)

  it("pm ping with every fd of the daemon taken says so (not 0 in use and apps that fit)", function()
    if not small_daemon(100) then return pending("the daemon raised its fd limit: running out is not reachable") end
    local held = fill_with_connections()
    -- one back, for the ping's own connection: then the daemon has none
    table.remove(held):close()
    local dpid = H.daemon_pid()
    H.wait_for(function() return H.fd_count(dpid) < 100 end, 3000, "one fd back")
    local c = H.connect()
    c:send('{"jsonrpc":"2.0","id":1,"method":"ping","params":{"fds":true}}\n')
    local r = c:reply(1)
    c:close()
    for _, h in ipairs(held) do h:close() end
    assert.truthy(r and r.result, util.encode(r))
    local fds = r.result.fds
    assert.equal(0, fds.apps_fit, util.encode(fds))
    assert.is_true(fds.in_use >= 99, util.encode(fds))
  end)

  it("a connection the daemon has no fd left for is told why before it is closed", function()
    if not small_daemon(100) then return pending("the daemon raised its fd limit: running out is not reachable") end
    local held = fill_with_connections()
    -- (a peer that sends nothing: one whose request came after the close
    -- gets EPIPE at its write, and the CLI then says only that it closed)
    local c = H.connect()
    H.wait_for(function() H.run_until(function() return c.closed end, 100); return c.closed end, 5000,
      "the daemon closes it")
    for _, h in ipairs(held) do h:close() end
    local said = c.msgs[1]
    assert.truthy(said and said.error, "nothing said before the close")
    assert.equal(util.null, said.id)
    local text = tostring(said.error.message)
    assert.truthy(text:find("the daemon has no fd left: its fd limit (100) is reached", 1, true), text)
    ok(H.pm("ping")) -- and it answers once fds are back
  end)

  it("the ping every command sends to check the version does not count the daemon's fds; pm ping does", function()
    ok(H.pm("ping"))
    local c = H.connect()
    c:send('{"jsonrpc":"2.0","id":1,"method":"ping"}\n')
    local plain = c:reply(1)
    c:close()
    assert.truthy(plain and plain.result and plain.result.msg == "pong", util.encode(plain))
    assert.is_nil(plain.result.fds, "a plain ping listed /proc/self/fd: " .. util.encode(plain.result))
    local pong = assert(util.decode(ok(H.pm("ping")).out))
    assert.equal(2, pong.fds.per_app)
    assert.is_true(pong.fds.in_use > 0 and pong.fds.limit > pong.fds.in_use, util.encode(pong.fds))
  end)

  it("an app's cgroup, empty between its processes, outlives the sweep of empty groups a second after "
    .. "the daemon's start (a crash loop joined a removed group, or a spawn found none)", function()
    -- (the first command starts the daemon: the app starts within its first second)
    ok(H.pm("start", "/bin/sh", "--name", "gap", "--restart-delay", "150", "--", "-c", "exit 3"))
    local base = (util.read_file(H.home .. "/cgroup") or ""):match("[^\n]+")
    if not base then return pending("no cgroup for apps here") end
    local function ino()
      local f = io.popen("stat -c %i " .. H.shquote(base .. "/0") .. " 2>/dev/null")
      local s = f:read("*a")
      f:close()
      return tonumber(s)
    end
    local first = ino()
    assert.truthy(first, "the app's group is not there")
    -- 12 restarts 150 ms apart: the sweep (a second after the start) ran
    -- while the group was empty, as it is most of the time
    H.wait_for(function() return (H.proc("gap").pm2_env.restart_time or 0) >= 12 end, 15000, "12 restarts")
    assert.equal(first, ino(), "the app's group was removed and made again")
    assert.is_nil(H.pm_log():find("cgroups off", 1, true), H.pm_log():match("[^\n]*cgroups off[^\n]*"))
    ok(H.pm("delete", "gap"))
  end)
end)
