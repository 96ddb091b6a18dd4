-- Apps that run as another user than the daemon's (issue 15, items 4 and
-- 5): the environment they start with (that user's login environment, not
-- the caller's: no secret of root's), and sd_notify, which must work for
-- them through a socket of their user's that no other user can reach.
local H = require "pmtest"
local core = require "pm.core"
local util = require "pm.util"

local ok = H.ok

local function is_root() return core.getuid() == 0 end
local function have(cmd) return os.execute("command -v " .. cmd .. " >/dev/null 2>&1") == 0 end

-- A folder nobody can read and search (tests/tmp/home.* are 0700), with
-- the apps' scripts; removed after each test.
local open_dir
local function script(name, body)
  local path = open_dir .. "/" .. name
  H.write(path, body)
  core.chmod(path, 493)
  return path
end

local eco = H.lua_eco

describe("an app with user", function()
  before_each(function()
    H.new_home()
    local p = io.popen("mktemp -d " .. H.shquote(H.src .. "/tests/tmp/open.XXXXXX"))
    open_dir = p:read("*l")
    p:close()
    core.chmod(open_dir, 493) -- 0755
  end)
  after_each(function()
    H.cleanup()
    os.execute("rm -rf " .. H.shquote(open_dir))
  end)

  it("starts from its user's login environment, not the caller's (no secret, no HOME=/root)", function()
    if not is_root() then
      pending("needs root: only a daemon running as root runs apps as another user")
      return
    end
    local pw = assert(util.passwd("nobody"), "no user nobody")
    local app = script("env_app.sh", "#!/bin/sh\nexec sleep 1000\n")
    local file = eco(([[{
      { name = "plain", script = %q, user = "nobody", cwd = %q, env = { DECLARED = "yes" } },
      { name = "asks", script = %q, user = "nobody", cwd = %q, filter_env = false },
      { name = "prefixes", script = %q, user = "nobody", cwd = %q, filter_env = { "AWS_" } },
      { name = "mine", script = %q, cwd = %q },
    }]]):format(app, open_dir, app, open_dir, app, open_dir, app, open_dir))
    ok(H.pm("start", file, "-s", { env = { AWS_SECRET_ACCESS_KEY = "s3cr3t-of-root",
      PM_TEST_CALLER = "caller", HOME = "/root", USER = "root" } }))
    local envs = {}
    for _, name in ipairs({ "plain", "asks", "prefixes", "mine" }) do
      local p = H.online(H.proc(name))
      envs[name] = assert(H.environ(p.pid), "no environ of " .. name)
    end
    local e = envs.plain
    assert.is_nil(e.AWS_SECRET_ACCESS_KEY, "the caller's secret reached an app of nobody")
    assert.is_nil(e.PM_TEST_CALLER, "the caller's environment reached an app of nobody")
    assert.equal(pw.dir, e.HOME)
    assert.equal("nobody", e.USER)
    assert.equal("nobody", e.LOGNAME)
    assert.equal(pw.shell, e.SHELL)
    assert.equal("/usr/local/bin:/usr/bin:/bin", e.PATH)
    assert.equal("yes", e.DECLARED)
    assert.is_truthy(e.PM_APP_UID, "the marker crash recovery needs")
    -- filter_env = false: the caller's environment, but who it is stays nobody's
    e = envs.asks
    assert.equal("s3cr3t-of-root", e.AWS_SECRET_ACCESS_KEY)
    assert.equal("caller", e.PM_TEST_CALLER)
    assert.equal(pw.dir, e.HOME)
    assert.equal("nobody", e.USER)
    -- a list: the caller's environment but the variables it names (PM2's prefixes)
    e = envs.prefixes
    assert.is_nil(e.AWS_SECRET_ACCESS_KEY)
    assert.equal("caller", e.PM_TEST_CALLER)
    assert.equal("nobody", e.USER)
    -- an app of the daemon's own user: PM2's rule, the caller's environment
    e = envs.mine
    assert.equal("s3cr3t-of-root", e.AWS_SECRET_ACCESS_KEY)
    assert.equal("/root", e.HOME)
  end)

  it("finds its interpreter and its command on its own PATH, not on a root-only folder of the caller's", function()
    if not is_root() then
      pending("needs root: only a daemon running as root runs apps as another user")
      return
    end
    -- the caller's PATH starts with a folder of root's (0700 PM_HOME) that
    -- has a python3 and a sleep nobody may run (pyenv's shims under /root)
    local shims = H.home .. "/shims"
    assert(core.mkdir(shims, 448))
    for _, name in ipairs({ "python3", "sleep" }) do
      H.write(shims .. "/" .. name, "#!/bin/sh\nexit 9\n")
      core.chmod(shims .. "/" .. name, 448)
    end
    local py = script("app.py", "import time\ntime.sleep(1000)\n")
    local env = { PATH = shims .. ":/usr/local/bin:/usr/bin:/bin" }
    ok(H.pm("start", py, "--user", "nobody", "-s", { env = env }))
    ok(H.pm("start", "sleep", "--name", "cmd", "--user", "nobody", "-s", "--", "1000", { env = env }))
    local a, c = H.online(H.proc("app")), H.online(H.proc("cmd"))
    assert.is_nil(a.pm2_env.exec_interpreter:find(shims, 1, true), a.pm2_env.exec_interpreter)
    assert.is_nil(c.pm2_env.pm_exec_path:find(shims, 1, true), c.pm2_env.pm_exec_path)
    -- a PATH it declares is where its command is found (nvm under the user's home)
    local mine = script("mycmd", "#!/bin/sh\nexec sleep 1000\n")
    local file = eco(([[{ { name = "decl", script = "mycmd", user = "nobody", cwd = %q,
      env = { PATH = %q } } }]]):format(open_dir, open_dir .. ":/usr/bin:/bin"))
    ok(H.pm("start", file, "-s"))
    assert.equal(mine, H.online(H.proc("decl")).pm2_env.pm_exec_path)
    -- an app of the daemon's own user takes the caller's PATH (PM2's rule)
    ok(H.pm("start", "sleep", "--name", "mine", "--", "1000", { env = env }))
    assert.truthy(H.proc("mine").pm2_env.pm_exec_path:find(shims, 1, true))
  end)

  it("a log file it may not write is said by pm start (exit 0), pm describe and jlist, not only in pm.log",
    function()
    if not is_root() then
      pending("needs root: only a daemon running as root runs apps as another user")
      return
    end
    local taken = open_dir .. "/root.log"
    H.write(taken, "root's\n") -- (root's file: an app of nobody may not write it)
    local app = script("l.sh", "#!/bin/sh\necho hi\nexec sleep 1000\n")
    local r = ok(H.pm("start", app, "--user", "nobody", "-o", taken, "--name", "lg"))
    assert.truthy(r.err:match("^pm: warning: lg %(%d+%): cannot open log " .. taken:gsub("%p", "%%%0")
      .. ": [^\n]*not owned by the app's user[^\n]*\n$"), r.err)
    local e = H.proc("lg").pm2_env
    assert.truthy(tostring(e.log_error):find("cannot open log " .. taken, 1, true), tostring(e.log_error))
    assert.truthy(ok(H.pm("describe", "lg")).out:find("log error", 1, true))
    assert.equal("root's\n", util.read_file(taken))
  end)

  it("can say READY=1 over sd_notify, through a socket of its user's that no other user reaches", function()
    if not is_root() or not have("socat") or not have("setpriv") then
      pending("needs root, socat and setpriv")
      return
    end
    local app = script("notify_app.sh", "#!/bin/sh\n"
      .. "printf 'STATUS=nobody serving' | socat - \"UNIX-SENDTO:$NOTIFY_SOCKET\"\n"
      .. "printf 'READY=1' | socat - \"UNIX-SENDTO:$NOTIFY_SOCKET\"\n"
      .. "exec sleep 1000\n")
    local file = eco(([[{
      { name = "shy", script = %q, user = "nobody", cwd = %q, wait_ready = true, listen_timeout = 8000 },
    }]]):format(app, open_dir))
    local t0 = core.mono()
    ok(H.pm("start", file, "-s"))
    local p = H.wait_for(function()
      local q = H.proc("shy")
      if q and q.pm2_env.status ~= "launching" then return q end
    end, 10000, "shy out of launching")
    local took = core.mono() - t0
    assert.equal("online", p.pm2_env.status)
    assert.equal("notify", p.pm2_env.ready, "ready by " .. tostring(p.pm2_env.ready) .. " after " .. took .. " ms")
    assert.is_true(took < 6000, "ready after " .. took .. " ms")
    assert.equal("nobody serving", p.pm2_env.notify and p.pm2_env.notify.status)
    -- the socket is nobody's, 0600, in a folder of root's no one else can
    -- list or write to; no other user reaches it
    local sock = assert(H.environ(p.pid)).NOTIFY_SOCKET
    assert.is_nil(sock:find(H.home, 1, true), "NOTIFY_SOCKET is in the 0700 PM_HOME: " .. sock)
    local nobody = util.passwd("nobody").uid
    local st, dst = core.stat(sock, true), core.stat(util.dirname(sock), true)
    assert.equal("socket", st.type)
    assert.equal(nobody, st.uid)
    assert.equal(384, st.mode, "the socket is 0600") -- 0600
    assert.equal(0, dst.uid)
    assert.equal(457, dst.mode, "its folder is 0711") -- 0711
    local r = H.sh("setpriv --reuid=daemon --regid=daemon --clear-groups socat - "
      .. H.shquote("UNIX-SENDTO:" .. sock), { stdin = "STATUS=forged" })
    assert.are_not.equal(0, r.code, "another user could send to it")
    assert.equal("nobody serving", H.proc("shy").pm2_env.notify.status)
    -- a daemon killed, its keeper alive: the next one takes the app and
    -- its socket over (the app's NOTIFY_SOCKET still reaches a daemon)
    local d0 = H.daemon_pid()
    core.kill(d0, 9)
    H.wait_for(function() return not H.alive(d0) end, 3000, "the daemon's end")
    ok(H.pm("ping"))
    assert.equal(p.pid, H.proc("shy").pid)
    r = H.sh("setpriv --reuid=nobody --regid=nogroup --clear-groups socat - "
      .. H.shquote("UNIX-SENDTO:" .. sock), { stdin = "STATUS=still here" })
    assert.equal(0, r.code, "the socket is not served after the take-over: " .. r.err)
    -- a daemon killed with its keeper leaves it: the next one removes it
    local d1 = H.daemon_pid()
    H.crash_daemon(d1)
    H.wait_for(function() return not H.alive(d1) end, 3000, "the daemon's end")
    ok(H.pm("ping"))
    assert.is_nil(core.stat(util.dirname(sock), true), "a dead daemon's folder was left")
    -- gone with the daemon that stops
    p = H.wait_for(function()
      local q = H.proc("shy")
      if q and q.pm2_env.status == "online" then return q end
    end, 10000, "shy back")
    assert.equal("notify", p.pm2_env.ready)
    local sock2 = assert(H.environ(p.pid)).NOTIFY_SOCKET
    H.stop_daemon()
    assert.is_nil(core.stat(util.dirname(sock2), true), "its folder outlived the daemon")
  end)
end)
