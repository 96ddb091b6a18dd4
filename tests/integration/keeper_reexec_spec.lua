-- The keeper replaced by re-exec (issue 17 item 3, DESIGN §11): on `pm
-- update` the keeper becomes the new build's pm-keeper in place (the same
-- pid), its state (the fds it holds and their tags, the exits not yet
-- acknowledged, the blob, its counters) carried in a memfd across the
-- exec; one that cannot goes on as it was and says so; a state that is
-- not one is refused.
local H = require "pmtest"
local util = require "pm.util"
local core = require "pm.core"

local ok, online, q = H.ok, H.online, H.shquote
local PY = core.access("/usr/bin/python3", "x") and "/usr/bin/python3" or "python3"
local F = H.fixtures

-- the keeper program beside H.bin (bin/pm-asan's: pm-keeper-asan)
local BIN_DIR = H.bin:match("^(.*)/[^/]*$") or "."
local KEEPER_NAME = (os.getenv("PM_SANITIZED") and core.access(BIN_DIR .. "/pm-keeper-asan", "x"))
  and "pm-keeper-asan" or "pm-keeper"
local KEEPER = BIN_DIR .. "/" .. KEEPER_NAME

--[[ A "new build" in dir: these sources with version 9.9.9-test, run by
a wrapper dir/pm, and keeper (a function writing dir's keeper program,
or nil: none) -> the wrapper's path ]]
local function new_build(dir, keeper)
  core.mkdir(dir, 493)
  local lua = dir .. "/lua"
  os.execute(("cp -r %s %s"):format(q(H.src .. "/lua"), q(lua)))
  local utilsrc = util.read_file(lua .. "/pm/util.lua")
  H.write(lua .. "/pm/util.lua", (utilsrc:gsub('M%.VERSION = "[^"]*"', 'M.VERSION = "9.9.9-test"', 1)))
  local wrapper = H.write(dir .. "/pm", ("#!/bin/sh\nPM_LUA_DIR=%s exec %s \"$@\"\n"):format(q(lua), q(H.bin)))
  core.chmod(wrapper, 493)
  if keeper then keeper(dir .. "/" .. KEEPER_NAME) end
  return wrapper
end

local function update(wrapper)
  return ok(H.sh(("PM_BIN=%s %s update"):format(q(wrapper), q(H.bin))))
end

-- SIGKILL of the daemon; the next one (the keeper starts it) answers
local function kill9(k)
  local old = H.daemon_pid()
  core.kill(old, 9)
  H.wait_for(function() return not H.alive(old) end, 5000, "the daemon's end")
  local pong = util.decode(ok(H.pm("ping")).out)
  assert.are_not.equal(old, pong.pid)
  assert.equal(k, pong.keeper, "the same keeper")
  return pong
end

-- The highest "n <i>" line of a log
local function last_number(path)
  local last = 0
  for line in io.lines(path) do
    local n = tonumber(line:match("^n (%d+)$"))
    if n and n > last then last = n end
  end
  return last
end

local function get(port)
  local r = H.sh(("%s -c %s"):format(PY, q(("import urllib.request; "
    .. "print(urllib.request.urlopen('http://127.0.0.1:%d/', timeout=5).read().decode())"):format(port))))
  return r.code == 0 and r.out or nil, r.err
end

describe("the keeper's re-exec", function()
  before_each(function() H.new_home() end)
  after_each(function() H.cleanup() end)

  it("pm update: the keeper becomes the new build's, same pid, and what it held still works after a SIGKILL",
    function()
    local wrapper = new_build(H.home .. "/newbuild", function(path)
      os.execute(("cp %s %s"):format(q(KEEPER), q(path)))
    end)
    local lines = H.script("lines.py", "import sys, time\ni = 0\nwhile True:\n    i += 1\n"
      .. "    sys.stdout.write('n %d\\n' % i)\n    sys.stdout.flush()\n    time.sleep(0.005)\n")
    online(H.start(lines, "lines", "--interpreter", PY, "-s"))
    local port = H.free_port()
    ok(H.pm("start", H.write(H.home .. "/eco.json", util.encode({ apps = { { name = "web",
      script = F .. "/rl_server.py", interpreter = PY, listen = { "tcp://127.0.0.1:" .. port } } } })), "-s"))
    online(H.proc("web"))
    local before = {}
    for _, p in ipairs(H.jlist()) do before[p.name] = p.pid end
    local k = assert(H.keeper_pid())
    assert.equal(core.realpath(KEEPER), core.realpath("/proc/" .. k .. "/exe"))
    local r = update(wrapper)
    assert.is_truthy(r.out:find("pm daemon updated 0.1.0 -> 9.9.9-test, 2 apps kept", 1, true), r.out)
    assert.is_nil(r.err:find("keeper stays", 1, true), r.err)
    -- the same keeper process, running the new build's program
    assert.equal(k, H.keeper_pid())
    assert.equal(core.realpath(H.home .. "/newbuild/" .. KEEPER_NAME), core.realpath("/proc/" .. k .. "/exe"))
    local cmd = util.read_file("/proc/" .. k .. "/cmdline")
    assert.is_truthy(cmd:find("\0--resume\0", 1, true), "resumed")
    -- only what it holds crossed: not the state's memfd
    local fds = ok(H.sh("ls -l /proc/" .. k .. "/fd")).out
    assert.is_nil(fds:find("pm-keeper-state", 1, true), fds)
    for _, p in ipairs(H.jlist()) do assert.equal(before[p.name], p.pid, p.name .. " kept its pid") end
    -- then a SIGKILL of the daemon is taken over with what the new keeper holds
    local log = H.out_log("lines")
    H.wait_for(function() return last_number(log) > 0 end, 5000, "lines")
    kill9(k)
    local n0 = last_number(log)
    for _, p in ipairs(H.jlist()) do assert.equal(before[p.name], p.pid, p.name .. " kept its pid") end
    H.wait_for(function() return last_number(log) > n0 + 20 end, 10000,
      "lines written after the SIGKILL in the log (the pipe the keeper held)")
    assert.equal("9.9.9-test", util.decode(ok(H.pm("ping")).out).version, "the new build starts next")
    -- the held socket: a restarted instance is given it by the daemon, which had it from the keeper
    local body = assert(get(port))
    assert.is_truthy(body:find("pid " .. before.web, 1, true), body)
    ok(H.pm("restart", "web", "-s"))
    local now = online(H.proc("web"))
    assert.are_not.equal(before.web, now.pid)
    H.wait_for(function()
      local b = get(port)
      return b and b:find("pid " .. now.pid, 1, true)
    end, 10000, "the restarted instance answers on the held socket")
    -- and the keeper goes on: an exit it reaps after the re-exec reaches the daemon
    local lp = H.proc("lines").pid
    core.kill(lp, 9)
    H.wait_for(function() local p = H.proc("lines"); return p and p.pid ~= lp and p.pm2_env.status == "online" end,
      10000, "lines restarted after its SIGKILL")
    ok(H.pm("stop", "all", "-s"))
  end)

  it("pm update to a build whose keeper cannot be run or reads another state: the keeper goes on, says so",
    function()
    online(H.start(F .. "/ep_app.sh", "idle", "-s"))
    local pid = H.proc("idle").pid
    local k = assert(H.keeper_pid())
    local exe = core.realpath("/proc/" .. k .. "/exe")
    local builds = {
      { "nokeeper", function(path) H.write(path, "not a program\n") end, "Permission denied" }, -- (not executable)
      { "otherstate", function(path)
        H.write(path, "#!/bin/sh\necho pmkeep0 1 2 3\n")
        core.chmod(path, 493)
      end, "it reads another state (pmkeep0 1 2 3)" },
    }
    for _, b in ipairs(builds) do
      local r = update(new_build(H.home .. "/" .. b[1], b[2]))
      assert.is_truthy(r.out:find("-> 9.9.9-test, 1 apps kept", 1, true), r.out)
      local line = ("pm: the keeper stays the old build's: %s/%s/%s: %s\n"):format(H.home, b[1], KEEPER_NAME, b[3])
      assert.is_truthy(r.err:find(line, 1, true), r.err)
      assert.equal(k, H.keeper_pid())
      assert.equal(exe, core.realpath("/proc/" .. k .. "/exe"))
      assert.equal(pid, H.proc("idle").pid)
    end
    assert.is_truthy(util.read_file(H.home .. "/pm.log"):find("the keeper stays the old build's", 1, true))
    -- it still holds and takes over; the next daemon is the new build's
    local pong = kill9(k)
    assert.equal("9.9.9-test", pong.version)
    assert.equal(pid, H.proc("idle").pid)
    ok(H.pm("stop", "all", "-s"))
  end)

  it("a state that is not a keeper's (corrupt, short, empty, its fds not open): refused in one line, nothing starts",
    function()
    -- a real state: the new build's keeper is a script that keeps a copy
    -- of it (/proc/self/fd opens the memfd anew) and execs the program
    local saved = H.home .. "/state"
    local wrapper = new_build(H.home .. "/saving", function(path)
      H.write(path, ("#!/bin/sh\n[ \"$1\" = --resume ] && cp /proc/self/fd/$2 %s\nexec %s \"$@\"\n")
        :format(q(saved), q(KEEPER)))
      core.chmod(path, 493)
    end)
    online(H.start(F .. "/ep_app.sh", "idle", "-s"))
    update(wrapper)
    local k = assert(H.keeper_pid())
    assert.equal(core.realpath(KEEPER), core.realpath("/proc/" .. k .. "/exe"), "the script exec'd the program")
    kill9(k)
    local good = assert(util.read_file(saved))
    assert.is_true(#good > 64)
    local flipped = good:sub(1, 70) .. string.char((good:byte(71) + 1) % 256) .. good:sub(72)
    local lock = H.write(H.home .. "/lockfile", "")
    local mark = H.home .. "/started"
    local cases = {
      { good:sub(1, #good - 5), "short" },
      { flipped, "its checksum does not match" },
      { good .. "x", "longer than it says" },
      { "", "short" },
      { ("garbage"):rep(50), "not a keeper's state" },
    }
    -- (fds 90 and 91: none of the fds the state names is open here)
    cases[#cases + 1] = { good, "a held fd is not open" }
    for i, c in ipairs(cases) do
      local state = H.write(H.home .. "/state" .. i, c[1])
      local r = H.sh(("bash -c %s"):format(q(("exec %s --resume 90 91 null /bin/sh -c %s 90<%s 91<%s"):format(
        q(KEEPER), q("touch " .. q(mark)), q(state), q(lock)))))
      assert.equal(111, r.code, c[2])
      assert.is_truthy(r.err:find("the state in fd 90 cannot be read (" .. c[2] .. "): not resumed\n", 1, true),
        r.err)
      assert.equal(1, select(2, r.err:gsub("\n", "")), "one line")
      assert.is_nil(core.stat(mark), "a daemon was started")
    end
    ok(H.pm("stop", "all", "-s"))
  end)
end)
