-- Issue 16, items 12 and 2 (its flags): the start flags a PM2 user types,
-- each as PM2 means it, checked on what the daemon then does: `--watch src`
-- (paths, not a script argument), `-i -1`/`-i 0`/`-i max`, `-x` and
-- `--exec-mode`, `--node-args`, `--log-date-format`, `--cron`, `-u`,
-- `--uid`/`--gid`, `--no-daemon`, `--update-env`, `--log-type`,
-- `--shutdown-with-message`, `--filter-env`, `--instance-var`,
-- `--disable-logs`, `--merge-logs`, `--time`, `--source-map-support`.
local H = require "pmtest"
local core = require "pm.core"
local util = require "pm.util"

local ok, online = H.ok, H.online

local APP_SH = H.fixtures .. "/cli_app.sh" -- prints its args, cwd and a few variables, then sleeps

local function sleeper() return H.script("app.sh", "#!/bin/sh\necho hello\nexec sleep 1000\n") end

-- `pm start args...` run in H.home (as a user would, from the app's folder)
local function start(...)
  local args = { ... }
  args[#args + 1] = { cwd = H.home }
  return H.pm("start", unpack(args))
end

local function env_of(name) return H.proc(name).pm2_env end

local function cpus() return require("pm.app").cpu_count() end

local function count(name)
  local n = 0
  for _, p in ipairs(H.jlist()) do if p.name == name then n = n + 1 end end
  return n
end

describe("pm start --watch [paths]", function()
  before_each(function() H.new_home() end)
  after_each(function() H.cleanup() end)

  it("pm start app.sh --watch src watches src (not a script argument), and restarts on a change there", function()
    sleeper()
    core.mkdir(H.home .. "/src", 493)
    ok(start("app.sh", "--watch", "src", "-s"))
    local e = env_of("app")
    assert.same({}, e.args)
    assert.same({ "src" }, e.watch)
    online(H.proc("app"))
    H.write(H.home .. "/src/x.js", "changed")
    H.wait_for(function() return env_of("app").restart_time >= 1 end, 5000, "a restart after src/x.js changed")
  end)

  it("--ignore-watch=\"logs tmp\" is two paths (PM2 splits at spaces), and a change in them restarts nothing",
    function()
    -- (its own folder: PM_HOME, where pm.log changes, is watched by none)
    local dir = H.home .. "/w"
    core.mkdir(dir, 493)
    core.mkdir(dir .. "/logs", 493)
    H.script("w/app.sh", "#!/bin/sh\nexec sleep 1000\n")
    ok(H.pm("start", "app.sh", "--name", "iw", "--watch", "--watch-delay", "100ms", "--ignore-watch=logs tmp", "-s",
      { cwd = dir }))
    assert.same({ "logs", "tmp" }, env_of("iw").ignore_watch)
    online(H.proc("iw"))
    H.write(dir .. "/logs/a.log", "x")
    H.holds(function() return env_of("iw").restart_time == 0 end, 600, "no restart for logs/a.log")
  end)

  it("pm stop APP --watch (PM2's) stops it and its watch", function()
    local dir = H.home .. "/sw"
    core.mkdir(dir, 493)
    H.script("sw/app.sh", "#!/bin/sh\nexec sleep 1000\n")
    ok(H.pm("start", "app.sh", "--name", "sw", "--watch", "-s", { cwd = dir }))
    online(H.proc("sw"))
    ok(H.pm("stop", "sw", "--watch", "-s"))
    local e = env_of("sw")
    assert.equal("stopped", e.status)
    assert.is_false(e.watch)
  end)

  it("--watch-delay is in seconds as in PM2 (2, 0.5), or in ms with ms; anything else is refused", function()
    sleeper()
    ok(start("app.sh", "--name", "a", "--watch", "--watch-delay", "2", "-s"))
    assert.equal(2000, env_of("a").watch_delay)
    ok(start("app.sh", "--name", "b", "--watch", "--watch-delay", "0.5", "-s"))
    assert.equal(500, env_of("b").watch_delay)
    ok(start("app.sh", "--name", "c", "--watch", "--watch-delay", "250ms", "-s"))
    assert.equal(250, env_of("c").watch_delay)
    H.fails(start("app.sh", "--name", "d", "--watch", "--watch-delay", "soon"), "--watch-delay", "seconds expected")
    assert.equal(0, count("d"))
  end)

  it("takes PM2's --no-color, --v8, --event-loop-inspector, --deep-monitoring, and restart's --parallel N", function()
    sleeper()
    local r = ok(start("app.sh", "--no-color", "--v8", "--event-loop-inspector", "--deep-monitoring"))
    assert.is_falsy(r.out:find("\27[", 1, true), r.out)
    ok(H.pm("restart", "all", "--parallel", "2", "--no-color", "-s"))
    assert.equal(1, env_of("app").restart_time)
    H.fails(H.pm("restart", "all", "--parallel", "x"), "--parallel", "a number expected")
  end)

  it("--ext js,json watches only files with those extensions (PM2's: the others are ignored)", function()
    sleeper()
    local dir = H.home .. "/proj"
    core.mkdir(dir, 493)
    core.mkdir(dir .. "/lib", 493)
    H.write(dir .. "/a.js", "1")
    H.write(dir .. "/notes.txt", "1")
    H.write(dir .. "/lib/b.txt", "1")
    -- (a name with a glob's characters is no pattern the folder's user wrote)
    H.write(dir .. "/" .. ("**a"):rep(12) .. "**b", "1")
    ok(start(H.home .. "/app.sh", "--name", "app", "--cwd", dir, "--watch", "--ext", "js,json", "-s"))
    local e = env_of("app")
    local ignored = {}
    for _, g in ipairs(e.ignore_watch) do
      ignored[g] = true
      assert.is_falsy(g:find("**a", 1, true), g)
    end
    assert.is_true(ignored["notes.txt"] and ignored["lib/b.txt"] and ignored["node_modules"] or false)
    assert.is_nil(ignored["a.js"])
    online(H.proc("app"))
    H.write(dir .. "/notes.txt", "2")
    H.holds(function() return env_of("app").restart_time == 0 end, 1500, "no restart for notes.txt")
    H.write(dir .. "/a.js", "2")
    H.wait_for(function() return env_of("app").restart_time >= 1 end, 5000, "a restart for a.js")
  end)

  it("pm start app.sh --watch (no path) watches the app folder, as before; so does pm start --watch app.sh", function()
    sleeper()
    ok(start("app.sh", "--watch", "-s"))
    assert.equal(true, env_of("app").watch)
    assert.same({}, env_of("app").args)
    ok(start("--watch", "app.sh", "--name", "w2", "-f", "-s"))
    assert.equal(true, env_of("w2").watch)
    H.fails(start("--watch"), "nothing to start") -- (and no ecosystem file here)
  end)
end)

describe("pm start -i", function()
  before_each(function() H.new_home() end)
  after_each(function() H.cleanup() end)

  it("pm start app.sh -i -1 runs one instance per CPU but one (at least one); -i max and -i 0, one per CPU", function()
    sleeper()
    ok(start("app.sh", "-i", "-1", "-s"))
    assert.equal(math.max(1, cpus() - 1), count("app"))
    ok(start("app.sh", "--name", "max", "-i", "max", "-f", "-s"))
    assert.equal(cpus(), count("max"))
    ok(start("app.sh", "--name", "zero", "-i", "0", "-f", "-s"))
    assert.equal(cpus(), count("zero"))
  end)

  it("-x is PM2's fork mode; --exec-mode (and -x MODE) say which", function()
    sleeper()
    ok(start("app.sh", "-x", "-s"))
    assert.equal("fork_mode", env_of("app").exec_mode)
    ok(start("app.sh", "--name", "c", "--exec-mode", "cluster", "-f", "-s"))
    assert.equal("cluster_mode", env_of("c").exec_mode)
    ok(start("app.sh", "--name", "c2", "-x", "cluster", "-f", "-s"))
    assert.equal("cluster_mode", env_of("c2").exec_mode)
    H.fails(start("app.sh", "--name", "bad", "--exec-mode", "threads", "-f"), "fork or cluster")
  end)
end)

describe("pm start with PM2's other flags", function()
  before_each(function() H.new_home() end)
  after_each(function() H.cleanup() end)

  it("-l without a path (log_file = true) is the combined logs/<name>.log, as in PM2; -l then a flag too", function()
    H.script("both.sh", "#!/bin/sh\necho out; echo err >&2; exec sleep 1000\n")
    ok(start("both.sh", "--name", "lg", "-l", "--time", "-s"))
    local e = env_of("lg")
    assert.equal(H.home .. "/logs/lg.log", e.pm_log_path)
    assert.is_true(e.time)
    H.wait_for(function()
      local t = util.read_file(H.home .. "/logs/lg.log") or ""
      return t:find(": out\n", 1, true) and t:find(": err\n", 1, true)
    end, 5000, "both streams in logs/lg.log")
  end)

  it("--node-args gives the interpreter its arguments (as --interpreter-args)", function()
    H.script("app.sh", "#!/bin/sh\nsleep 1000\n") -- (bash stays: its command line is seen)
    ok(start("app.sh", "--node-args", "-e", "-s"))
    local p = online(H.proc("app"))
    assert.same({ "-e" }, p.pm2_env.interpreter_args)
    assert.same({ "-e" }, p.pm2_env.node_args) -- (PM2's name of them)
    local cmd = util.read_file("/proc/" .. p.pid .. "/cmdline") or ""
    assert.is_truthy(cmd:find("%z%-e%z"), "bash -e in the process's command line: " .. cmd:gsub("%z", " "))
  end)

  it("--log-date-format prefixes each log line; --time too; --log-type json writes JSON lines", function()
    sleeper()
    ok(start("app.sh", "--log-date-format", "YYYY-MM-DD HH:mm", "-s"))
    H.wait_for(function()
      return (util.read_file(H.out_log("app")) or ""):match("^%d%d%d%d%-%d%d%-%d%d %d%d:%d%d: hello\n")
    end, 5000, "a dated hello in the out log")
    ok(start("app.sh", "--name", "t", "--time", "-f", "-s"))
    H.wait_for(function()
      return (util.read_file(H.out_log("t")) or ""):match("^%d%d%d%d%-%d%d%-%d%dT[%d:]+: hello\n")
    end, 5000, "a timed hello in t's out log")
    ok(start("app.sh", "--name", "j", "--log-type", "json", "-f", "-s"))
    local line = H.wait_for(function() return (util.read_file(H.out_log("j")) or ""):match("^[^\n]+\n") end, 5000)
    local obj = util.decode(line)
    assert.equal("hello", obj and obj.message, line)
  end)

  it("--cron (and -c) are --cron-restart", function()
    sleeper()
    ok(start("app.sh", "--cron", "0 3 * * *", "-s"))
    assert.equal("0 3 * * *", env_of("app").cron_restart)
    ok(start("app.sh", "--name", "c", "-c", "0 4 * * *", "-f", "-s"))
    assert.equal("0 4 * * *", env_of("c").cron_restart)
  end)

  it("-u nobody, and --uid/--gid, run the app as that user and group", function()
    if core.getuid() ~= 0 then return pending("needs a daemon running as root") end
    if not util.passwd("nobody") then return pending("no user nobody") end
    local nobody = util.passwd("nobody")
    ok(H.pm("start", "sleep", "--name", "u", "-u", "nobody", "--cwd", "/tmp", "-s", "--", "1000"))
    local p = online(H.proc("u"))
    local st = util.read_file("/proc/" .. p.pid .. "/status")
    assert.is_truthy(st:find("\nUid:%s+" .. nobody.uid .. "%s"), st)
    ok(H.pm("start", "sleep", "--name", "g", "--uid", "nobody", "--gid", tostring(nobody.gid), "--cwd", "/tmp",
      "-f", "-s", "--", "1000"))
    p = online(H.proc("g"))
    st = util.read_file("/proc/" .. p.pid .. "/status")
    assert.is_truthy(st:find("\nUid:%s+" .. nobody.uid .. "%s"), st)
    assert.is_truthy(st:find("\nGid:%s+" .. nobody.gid .. "%s"), st)
  end)

  it("pm start <known app> --update-env restarts it with the caller's environment", function()
    ok(H.pm("start", APP_SH, "--name", "api", "-s", { env = { GREETING = "old" } }))
    H.wait_for(function() return H.contains(H.out_log("api"), "env.GREETING=old") end, 5000)
    ok(H.pm("start", "api", "--update-env", "-s", { env = { GREETING = "new" } }))
    H.wait_for(function() return H.contains(H.out_log("api"), "env.GREETING=new") end, 5000,
      "api restarted with GREETING=new")
    assert.equal(1, env_of("api").restart_time)
  end)

  it("--shutdown-with-message, --source-map-support and --instance-var are taken", function()
    ok(H.pm("start", APP_SH, "--name", "api", "--shutdown-with-message", "--source-map-support",
      "--instance-var", "INSTANCE_ID", "-s"))
    local p = online(H.proc("api"))
    assert.is_true(p.pm2_env.shutdown_with_message)
    assert.equal("INSTANCE_ID", p.pm2_env.instance_var)
    assert.equal("0", H.environ(p.pid).INSTANCE_ID)
  end)

  it("--filter-env PREFIX leaves out the caller's variables that start with it; --filter-env alone, all", function()
    ok(H.pm("start", APP_SH, "--name", "f", "--filter-env", "GREET", "-s",
      { env = { GREETING = "x", KEPT_ONE = "y" } }))
    local env = H.environ(online(H.proc("f")).pid)
    assert.is_nil(env.GREETING)
    assert.equal("y", env.KEPT_ONE)
    ok(H.pm("start", APP_SH, "--name", "bare", "--filter-env", "-f", "-s", { env = { KEPT_ONE = "y" } }))
    env = H.environ(online(H.proc("bare")).pid)
    assert.is_nil(env.KEPT_ONE)
  end)

  it("--disable-logs keeps no log file; --merge-logs one for all instances", function()
    sleeper()
    ok(start("app.sh", "--disable-logs", "-s"))
    local e = env_of("app")
    assert.equal("/dev/null", e.pm_out_log_path)
    online(H.proc("app"))
    assert.is_false(H.exists(H.out_log("app")))
    ok(start("app.sh", "--name", "m", "-i", "2", "--merge-logs", "-f", "-s"))
    H.wait_for(function() return H.count(util.read_file(H.out_log("m")) or "", "hello") == 2 end, 5000,
      "both instances' hello in m-out.log")
  end)
end)

describe("pm start --no-daemon", function()
  before_each(function() H.new_home() end)
  after_each(function() H.cleanup() end)

  it("with no daemon running, stays in the foreground holding one, until SIGTERM ends it and its apps", function()
    sleeper()
    local pidfile = H.home .. "/cli.pid"
    os.execute(("cd %s && PM_HOME=%s %s >%s/fg.out 2>&1 & echo $! > %s"):format(H.shquote(H.home),
      H.shquote(H.home), H.command("start", "app.sh", "--no-daemon"), H.shquote(H.home), H.shquote(pidfile)))
    local cli = tonumber(util.read_file(pidfile))
    local p = H.wait_for(function()
      local q = H.daemon_pid() and H.proc("app")
      return q and q.pm2_env.status == "online" and q
    end, 10000, "app online under the foreground pm")
    assert.is_true(H.alive(cli), "pm start --no-daemon is still there")
    local daemon = H.daemon_pid()
    core.kill(cli, core.signals.SIGTERM)
    H.wait_for(function() return not H.alive(cli) end, 5000, "the foreground pm ends")
    H.wait_for(function() return not H.alive(daemon) end, 5000, "its daemon ends with it")
    H.wait_for(function() return not H.alive(p.pid) end, 5000, "and its app")
  end)

  it("with a daemon running, starts the app there and returns", function()
    sleeper()
    ok(H.pm("ping"))
    ok(start("app.sh", "--no-daemon", "-s"))
    online(H.proc("app"))
  end)
end)

describe("pm start --attach (PM2's)", function()
  before_each(function() H.new_home() end)
  after_each(function() H.cleanup() end)

  it("starts the app, then follows its logs until stopped", function()
    local s = H.script("tick.sh", "#!/bin/sh\nwhile :; do echo tick-$$; sleep 0.1; done\n")
    local r = H.sh("timeout 3 " .. H.command("start", s, "--attach", "-s"))
    assert.equal(124, r.code, r.err) -- (it follows until stopped)
    local p = H.online(H.proc("tick"))
    assert.truthy(r.out:find("|tick|tick-" .. p.pid, 1, true), r.out)
  end)
end)
