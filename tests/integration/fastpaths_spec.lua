-- The paths made fast for the benchmarks, checked for what they must still
-- do: threaded spawning (core.spawn_many, core.spawn_start), pid files
-- rewritten in place and pooled in pids/.spare, descriptions assembled
-- from cached JSON (an app's environment split in an inherited and an own
-- part; the declaration's part refreshed by scale), and pm jlist streaming
-- a reply larger than a read.
local H = require "pmtest"
local core = require "pm.core"
local util = require "pm.util"

local function pids_of(outcomes)
  local pids = {}
  for _, o in ipairs(outcomes) do if o[1] then pids[#pids + 1] = o[1] end end
  return pids
end

-- Everything a pipe gives until its end; closes it.
local function read_all(r)
  local text = util.read_fd(r)
  core.close(r)
  return text
end

local function reap(pids)
  for _, pid in ipairs(pids) do
    core.kill(pid, 9)
    H.wait_for(function() return not H.alive(pid) end, 3000, "pid " .. pid .. " gone")
  end
end

describe("threaded spawning", function()
  -- this process reaps its own children while run_loop turns
  setup(function() core.on_child(function() end) end)
  local function run_loop(ms)
    local t = core.timer(ms, 0, function() end)
    while t:active() do core.run("once") end
    t:close()
  end

  it("spawn_many gives one outcome per entry, in order, with exec errors as messages", function()
    local list = {}
    for i = 1, 20 do
      list[i] = { file = "/bin/sleep", args = { "sleep", "30" }, env = { "N=" .. i } }
    end
    list[7] = { file = "/nonexistent/prog", args = { "prog" } }
    list[12] = { file = "/bin/true", args = { "true" }, cwd = "/nonexistent-dir" }
    local out = core.spawn_many(list)
    assert.equal(20, #out)
    assert.is_nil(out[7][1])
    assert.matches("^exec /nonexistent/prog: ", out[7][2])
    assert.is_nil(out[12][1])
    assert.matches("^chdir /nonexistent%-dir: ", out[12][2])
    local pids = pids_of(out)
    assert.equal(18, #pids)
    for i, o in ipairs(out) do
      if o[1] then
        -- (the kernel may still be setting up a just-exec'd process's environ)
        H.wait_for(function()
          return (core.proc_environ(o[1]) or ""):find("N=" .. i .. "\0", 1, true)
        end, 3000, "entry " .. i .. " has its own environment")
      end
    end
    reap(pids)
    run_loop(50)
  end)

  it("spawn_start runs while the caller goes on, and wait gives the outcomes", function()
    local r, w = core.pipe()
    local list = {}
    for i = 1, 8 do
      list[i] = { file = "/bin/sh", args = { "sh", "-c", "echo started " .. i }, fds = { -1, w, 2 } }
    end
    local sp = core.spawn_start(list)
    list = nil -- luacheck: ignore (dropped: the handle keeps what the children need)
    collectgarbage()
    collectgarbage()
    local out = sp:wait()
    core.close(w)
    assert.equal(8, #out)
    for _, o in ipairs(out) do assert.is_number(o[1]) end
    local text = read_all(r)
    for i = 1, 8 do assert.truthy(text:find("started " .. i .. "\n", 1, true), text) end
    assert.equal(0, #core.spawn_start({}):wait())
    run_loop(50)
  end)

  -- the fds of a child: what `ls` says of its sh's (sh forks ls: "; true")
  local function child_fds(extra_fds, narrow)
    local held = {}
    for i = 1, extra_fds do held[i] = assert(core.open("/dev/null", "r")) end
    local r, w = core.pipe()
    local out = core.spawn_many({ { file = "/bin/sh", args = { "sh", "-c", "ls /proc/$$/fd; true" },
      fds = { -1, w, -1 }, narrow = narrow } })
    core.close(w)
    for _, fd in ipairs(held) do core.close(fd) end
    assert.is_number(out[1][1], out[1][2])
    local text = read_all(r)
    run_loop(20)
    return text, w
  end

  it("gives a child only its own fds, from a small fd table or a big one (narrow spawns)", function()
    -- few fds: the child's copy of the table is closed down to 0-2
    local n0 = core.narrow_spawns()
    local small, w1 = child_fds(0)
    assert.equal("0\n1\n2\n", small)
    assert.is_true(w1 < 64, "the first pipe's write end is fd " .. w1)
    assert.equal(n0, core.narrow_spawns(), "a small table: the usual way")
    -- 300 more: the sources sit above 64 and go through the slots
    local big, w2 = child_fds(300)
    assert.is_true(w2 > 64, "the pipe's write end is fd " .. w2)
    assert.equal("0\n1\n2\n", big)
    assert.equal(n0 + 1, core.narrow_spawns(), "a big table: the narrow way")
    -- those 300 closed, a new pipe gets low fds back; the table stays big
    -- (the kernel's FDSize: fds.big_table) and the caller says so: narrow
    -- still (an app started after others were deleted copied the whole
    -- table of the daemon on each restart)
    assert.is_true(require("pm.fds").big_table(), "the table is big: " .. tostring(
      (util.read_file("/proc/self/status") or ""):match("FDSize:%s*%d+")))
    local again, w3 = child_fds(0, true)
    assert.is_true(w3 < 64, "the pipe's write end is fd " .. w3)
    assert.equal("0\n1\n2\n", again)
    assert.equal(n0 + 2, core.narrow_spawns(), "a big table with low sources: the narrow way")
  end)

  it("refuses bad options with an error, before spawning anything", function()
    assert.has_error(function() core.spawn_many({ { file = "/bin/true" } }) end)
    assert.has_error(function() core.spawn_many({ 5 }) end)
  end)
end)

describe("pid files", function()
  before_each(function() H.new_home() end)
  after_each(function() H.cleanup() end)

  local function pidfile(name) return H.home .. "/pids/" .. name .. "-0.pid" end
  local function spares()
    local n = 0
    for _ in pairs(core.listdir(H.home .. "/pids/.spare") or {}) do n = n + 1 end
    return n
  end

  it("never remove a directory that pid_file names", function()
    local dir = H.home .. "/piddir"
    assert(core.mkdir(dir))
    local app = H.script("piddir.sh", "exec sleep 1000\n")
    local eco = H.write(H.home .. "/piddir.config.lua",
      ("return { apps = { { name = 'piddir', script = %q, pid_file = %q } } }\n"):format(app, dir))
    H.ok(H.pm("start", eco, "-s"))
    H.ok(H.pm("stop", "piddir", "-s"))
    local st = core.stat(dir)
    assert.is_table(st, "the directory is gone")
    assert.equal("dir", st.type)
  end)

  it("hold the pid while the app runs, the new one after a crash, and go with a stop", function()
    local app = H.script("crashy.sh", "sleep 0.3; exit 3\n")
    H.ok(H.pm("start", app, "--name", "crashy", "-s"))
    local first = H.proc("crashy").pid
    assert.equal(first, tonumber((util.read_file(pidfile("crashy")) or ""):match("%d+")))
    local second = H.wait_for(function()
      local p = H.proc("crashy")
      return p and p.pid ~= 0 and p.pid ~= first and p.pid
    end, 5000, "a restart with a new pid")
    H.wait_for(function()
      return tonumber((util.read_file(pidfile("crashy")) or ""):match("%d+")) == H.proc("crashy").pid
    end, 3000, "the pid file follows the restarts")
    assert.is_true(second ~= first)
    H.ok(H.pm("stop", "crashy", "-s"))
    assert.is_nil(core.stat(pidfile("crashy")))
  end)

  it("of deleted apps are kept aside and reused by the next start", function()
    local app = H.script("sleeper.sh", "exec sleep 100\n")
    for i = 1, 3 do H.ok(H.pm("start", app, "--name", "s" .. i, "-s")) end
    for i = 1, 3 do assert.is_table(core.stat(H.home .. "/pids/s" .. i .. "-" .. (i - 1) .. ".pid")) end
    H.ok(H.pm("delete", "all", "-s"))
    assert.equal(3, spares())
    for i = 1, 3 do assert.is_nil(core.stat(H.home .. "/pids/s" .. i .. "-" .. (i - 1) .. ".pid")) end
    H.ok(H.pm("start", app, "--name", "again", "-s"))
    local p = H.proc("again")
    local text = util.read_file(H.home .. "/pids/again-" .. p.pm_id .. ".pid")
    assert.equal(p.pid .. "\n", text)
    assert.equal(2, spares())
  end)
end)

describe("crash loops", function()
  before_each(function() H.new_home() end)
  after_each(function() H.cleanup() end)

  -- "pipe:[inode]" of a process's stdout, or nil once it is gone
  local function stdout_of(pid)
    local f = io.popen("readlink /proc/" .. pid .. "/fd/1 2>/dev/null")
    local s = f:read("*l")
    f:close()
    return s
  end
  local function next_pid(name, after)
    return H.wait_for(function()
      local p = H.proc(name)
      return p and p.pid ~= 0 and p.pid ~= after and p.pm2_env.status == "online" and p.pid
    end, 5000, "a process of " .. name .. " after " .. tostring(after))
  end

  it("keep one pair of output pipes for the whole loop, with every run's lines whole", function()
    -- fast exits (min_uptime 5 s): each restart is part of the loop
    local app = H.script("loop.sh", "printf 'run %s' $$\nsleep 0.3\nexit 1\n")
    H.ok(H.pm("start", app, "--name", "loop", "--min-uptime", "5000", "-s"))
    local dpid = H.daemon_pid()
    local first = H.proc("loop").pid
    -- the loop starts at the first fast exit: the second run's pipes are kept
    local second = next_pid("loop", first)
    local pipe2 = stdout_of(second)
    assert.matches("^pipe:", pipe2)
    local third = next_pid("loop", second)
    local pipe3 = stdout_of(third)
    if pipe3 then assert.equal(pipe2, pipe3, "the third run writes into the second one's pipe") end
    H.ok(H.pm("stop", "loop", "-s"))
    local log = H.home .. "/logs/loop-out.log"
    H.wait_for(function()
      return (util.read_file(log) or ""):find("run " .. third .. "\n", 1, true)
    end, 3000, "the third run's line")
    local text = util.read_file(log)
    -- each run's last line (no newline of its own) is ended at its exit
    for _, pid in ipairs({ first, second, third }) do
      assert.truthy(text:find("run " .. pid .. "\n", 1, true), text)
    end
    for line in text:gmatch("[^\n]+") do assert.matches("^run %d+$", line) end
    -- stopped: the daemon holds nothing of the loop any more
    local base = H.fd_count(dpid)
    H.ok(H.pm("delete", "loop", "-s"))
    H.wait_for(function() return H.fd_count(dpid) <= base end, 3000, "the daemon's fds back")
  end)

  it("go on, the daemon answering, while a descendant that left the group floods the kept pipe", function()
    local flooder = H.home .. "/flooder.pid"
    -- the first run leaves a writer behind in a session of its own
    local app = H.script("flood.sh", ("if [ ! -e %s ]; then setsid sh -c 'echo $$ > %s; exec yes flood' &\n"
      .. "sleep 0.2; fi\nsleep 0.05\nexit 1\n"):format(flooder, flooder))
    local eco = H.script("flood.json", util.encode({ apps = { { name = "flood", script = app,
      min_uptime = 5000, max_restarts = 1000000, out_file = "/dev/null", error_file = "/dev/null" } } }), "644")
    H.ok(H.pm("start", eco, "-s"))
    local fpid = H.wait_for(function() return tonumber((util.read_file(flooder) or ""):match("%d+")) end,
      3000, "the flooder's pid")
    local ok, err = pcall(function()
      H.wait_for(function() return (H.proc("flood") or { pm2_env = {} }).pm2_env.restart_time >= 5 end,
        10000, "5 restarts while the flooder writes")
      local t0 = core.mono()
      H.ok(H.pm("ping"))
      assert.is_true(core.mono() - t0 < 2000, "ping took " .. (core.mono() - t0) .. " ms")
    end)
    core.kill(fpid, 9)
    H.ok(H.pm("delete", "flood", "-s"))
    assert(ok, err)
  end)

  it("end when a run lasts: the next process gets pipes of its own, and the kept ones close", function()
    -- the first run exits at once (a loop), the second one lasts until killed
    local mark = H.home .. "/ran-once"
    local app = H.script("once.sh", ("if [ -e %s ]; then exec sleep 100; fi\ntouch %s\nexit 1\n")
      :format(mark, mark))
    H.ok(H.pm("ping"))
    local dpid = H.daemon_pid()
    local idle = H.fd_count(dpid)
    H.ok(H.pm("start", app, "--name", "once", "--min-uptime", "300", "-s"))
    local lasting = H.wait_for(function()
      local p = H.proc("once")
      return p and p.pm2_env.restart_time >= 1 and p.pm2_env.status == "online" and p.pid ~= 0
        and stdout_of(p.pid) and p.pid
    end, 5000, "the lasting run")
    local pipe = stdout_of(lasting)
    -- past min_uptime the loop is over: the daemon lets go of its copies
    -- (two pipe ends, the channel's other end, the pid file) while the
    -- process runs on; it keeps what any running app has (its two read
    -- ends, its channel and two log files)
    H.wait_for(function() return H.fd_count(dpid) <= idle + 5 end, 3000,
      "the loop's extra fds let go of while the process runs (" .. idle .. " idle)")
    local t = core.mono() + 500
    H.wait_for(function() return core.mono() > t end, 2000)
    core.kill(lasting, 9)
    local after = next_pid("once", lasting)
    local pipe2 = H.wait_for(function() return stdout_of(after) end, 3000, "the next run's stdout")
    assert.are_not.equal(pipe, pipe2)
    -- one process, its own pipes: the daemon holds what any app does (not the loop's extra ends)
    H.ok(H.pm("stop", "once", "-s"))
    H.wait_for(function() return H.fd_count(dpid) <= idle + 2 end, 3000,
      "the daemon's fds back near " .. idle)
  end)
end)

describe("descriptions from cached JSON", function()
  before_each(function() H.new_home() end)
  after_each(function() H.cleanup() end)

  it("show an app's own variables over the inherited ones, each name once", function()
    local app = H.script("sleeper.sh", "exec sleep 100\n")
    local eco = H.script("eco.json", util.encode({ apps = {
      { name = "one", script = app, env = { PM_TEST_SHARED = "own value", PM_TEST_OWN = "x" } },
      { name = "two", script = app },
    } }), "644")
    H.ok(H.pm("start", eco, "-s", { env = { PM_TEST_SHARED = "inherited", PM_TEST_OTHER = "kept" } }))
    local r = H.ok(H.pm("jlist"))
    local list = assert(util.decode(r.out))
    local by = {}
    for _, p in ipairs(list) do by[p.name] = p.pm2_env.env end
    assert.equal("own value", by.one.PM_TEST_SHARED)
    assert.equal("x", by.one.PM_TEST_OWN)
    assert.equal("kept", by.one.PM_TEST_OTHER)
    assert.equal("inherited", by.two.PM_TEST_SHARED)
    assert.is_nil(by.two.PM_TEST_OWN)
    for _, n in ipairs({ "one", "two" }) do
      assert.equal(n, by[n].name)
      assert.is_string(by[n].PM_APP_UID)
    end
    -- once in each app's env, once flattened into its pm2_env (PM2's shape)
    local _, count = r.out:gsub('"PM_TEST_SHARED":', "")
    assert.equal(4, count, "one PM_TEST_SHARED per app, in env and in pm2_env")
    for _, p in ipairs(list) do assert.equal(p.pm2_env.env.PM_TEST_SHARED, p.pm2_env.PM_TEST_SHARED) end
  end)

  it("come brief: without the environment (brief true), or only the table's fields (brief \"table\")", function()
    local app = H.script("sleeper.sh", "exec sleep 100\n")
    H.ok(H.pm("start", app, "--name", "web", "-i", "2", "--watch", "-s"))
    local pm = require "pm"
    local conn = assert(pm._conn())
    local full = assert(conn:call("list", {}))
    local brief = assert(conn:call("list", { brief = true }))
    local rows = assert(conn:call("list", { brief = "table" }))
    pm.disconnect()
    assert.equal(2, #full)
    assert.equal(2, #brief)
    assert.equal(2, #rows)
    assert.is_table(full[1].pm2_env.env)
    assert.is_nil(brief[1].pm2_env.env)
    assert.equal(full[1].pm2_env.pm_exec_path, brief[1].pm2_env.pm_exec_path)
    local shown = { namespace = true, exec_mode = true, instances = true, status = true, pm_uptime = true,
      restart_time = true, uid = true, watch = true, notify = true }
    for i, row in ipairs(rows) do
      assert.equal(full[i].name, row.name)
      assert.equal(full[i].pid, row.pid)
      assert.equal(full[i].pm_id, row.pm_id)
      assert.is_number(row.monit.memory)
      for k, v in pairs(row.pm2_env) do
        assert.is_true(shown[k] or false, "an extra field: " .. k)
        assert.same(full[i].pm2_env[k], v, k)
      end
      assert.equal(2, row.pm2_env.instances)
      assert.equal("online", row.pm2_env.status)
      assert.truthy(row.pm2_env.watch)
    end
    -- the CLI's table from it, as before
    local out = H.ok(H.pm("list")).out
    assert.truthy(out:find("web", 1, true) and out:find("enabled", 1, true), out)
  end)

  it("come cut to the fields a client names (list's fields); a bad list is refused with -32602", function()
    local app = H.script("sleeper.sh", "exec sleep 100\n")
    H.ok(H.pm("start", app, "--name", "web", "-s"))
    local pm = require "pm"
    local conn = assert(pm._conn())
    local rows = assert(conn:call("list", { fields = { "name", "pm2_env.status", "pm2_env.kill_timeout" } }))
    -- a variable of its own environment (kept as text, decoded when asked)
    -- and one of the environment it shares with the apps started with it
    local vars = assert(conn:call("list", { fields = { "pm2_env.PM_APP_UID", "pm2_env.PM_HOME" } }))
    local full = assert(conn:call("list", {}))
    local bad, err = conn:call("list", { fields = { "pm2_env.env" } })
    local bad2, err2 = conn:call("list", { fields = "name" })
    pm.disconnect()
    assert.same({ { name = "web", pm2_env = { status = "online", kill_timeout = 1600 } } }, rows)
    assert.is_string(full[1].pm2_env.env.PM_APP_UID)
    assert.same({ { pm2_env = { PM_APP_UID = full[1].pm2_env.env.PM_APP_UID, PM_HOME = H.home } } }, vars)
    assert.is_nil(bad)
    assert.matches("no such field: pm2_env.env", tostring(err))
    assert.is_nil(bad2)
    assert.matches("fields must be a list", tostring(err2))
  end)

  it("follow scale: every instance describes the new instance count", function()
    local app = H.script("sleeper.sh", "exec sleep 100\n")
    H.ok(H.pm("start", app, "--name", "web", "-s"))
    assert.equal(1, H.proc("web").pm2_env.instances)
    H.ok(H.pm("scale", "web", "3"))
    H.wait_for(function() return #H.jlist() == 3 end, 5000, "3 instances")
    for _, p in ipairs(H.jlist()) do assert.equal(3, p.pm2_env.instances, p.name .. " " .. p.pm_id) end
  end)

  it("are left out of pm start's reply, which says what an ecosystem file changed", function()
    local eco = H.home .. "/eco.json"
    local function write(arg)
      util.write_atomic(eco, util.encode({ apps = { { name = "e1", script = "/bin/sleep", args = { arg },
        interpreter = "none" } } }))
    end
    write("100")
    H.ok(H.pm("start", eco, "-s"))
    local r = H.ok(H.pm("start", eco))
    assert.truthy(r.out:find("e1 (0): restarted, nothing changed", 1, true), r.out)
    write("200")
    r = H.ok(H.pm("start", eco))
    assert.truthy(r.out:find("e1 (0): applied args", 1, true), r.out)
    assert.equal("200", H.proc("e1").pm2_env.args[1])
  end)

  it("stream through pm jlist whole when the list spans many reads", function()
    local app = H.script("sleeper.sh", "exec sleep 100\n")
    local apps = {}
    for i = 1, 60 do apps[i] = { name = "a" .. i, script = app, env = { BLOB = string.rep("z", 2000) } } end
    H.ok(H.pm("start", H.script("many.json", util.encode({ apps = apps }), "644"), "-s"))
    local r = H.ok(H.pm("jlist"))
    assert.is_true(#r.out > 200000, "a reply of " .. #r.out .. " bytes")
    local list = assert(util.decode(r.out))
    assert.equal(60, #list)
    assert.equal(string.rep("z", 2000), list[60].pm2_env.env.BLOB)
  end)
end)
