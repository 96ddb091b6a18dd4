-- Integration-test harness: a real daemon in a temporary PM_HOME, the real
-- `pm` binary, polling against deadlines, and clean-up by pid only. The
-- helpers specs share live here, not in copies: the CLI (H.pm, H.start,
-- H.ok, H.fails), the Lua API and its loop (H.api_start, H.pump, H.holds),
-- raw connections to rpc.sock (H.connect), what runs (H.jlist, H.online,
-- H.environ) and files (H.write, H.script, H.contains).
-- bench/reload.lua loads it too (H.free_port): nothing here needs busted.
local core = require "pm.core"
local util = require "pm.util"

local H = {}

H.bin = os.getenv("PM_BIN") or ((os.getenv("PM_SRC") or ".") .. "/bin/pm")
H.src = os.getenv("PM_SRC") or core.getcwd()
H.fixtures = H.src .. "/tests/fixtures"

local function shquote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end
H.shquote = shquote

-- A user other than root for tests of apps of another user (the machine's
-- cloudsdk, else nobody) -> its passwd entry | nil
function H.other_user() return util.passwd("cloudsdk") or util.passwd("nobody") end

-- A fresh PM_HOME; also set in this process, so `require "pm"` uses it.
function H.new_home()
  local base = H.src .. "/tests/tmp"
  core.mkdir(base, 493)
  local p = io.popen("mktemp -d " .. shquote(base .. "/home.XXXXXX"))
  local home = p:read("*l")
  p:close()
  H.home = home
  core.setenv("PM_HOME", home)
  return home
end

local function slurp(path)
  local s = util.read_file(path) or ""
  return s
end

--[[ Runs `pm args...` (or a shell string with opts.shell) in H.home.
Returns { code, out, err }. opts.env: extra environment, opts.stdin: text. ]]
function H.pm(...)
  local args = { ... }
  local opts = {}
  if type(args[#args]) == "table" then opts = table.remove(args) end
  return H.sh(H.command(unpack(args)), opts)
end

-- The shell words of `pm args...`, each quoted.
function H.command(...)
  local words = { shquote(H.bin) }
  for _, a in ipairs({ ... }) do words[#words + 1] = shquote(a) end
  return table.concat(words, " ")
end

-- Under the sanitizer pass (make asan sets PM_SAN_DIR) every report is
-- kept there: ASan writes its own files, but GCC's UBSan prints "runtime
-- error" on stderr whatever log_path says, so the CLI's stderr and each
-- daemon's pm.log are searched too.
local SAN_DIR = os.getenv("PM_SAN_DIR")
local san_seq = 0
local function san_keep(text, where)
  if not SAN_DIR or not text then return end
  if text:find("runtime error: ", 1, true) or text:find("ERROR: AddressSanitizer", 1, true)
    or text:find("ERROR: LeakSanitizer", 1, true) then
    san_seq = san_seq + 1
    local f = io.open(("%s/found.%d.%d"):format(SAN_DIR, core.getpid(), san_seq), "w")
    if f then
      f:write(where, ":\n", text, "\n")
      f:close()
    end
  end
end
H.san_keep = san_keep

-- H.cmd_dir: where a command's output is caught (H.home by default; a
-- spec whose PM_HOME is a full disk puts it elsewhere)
function H.sh(cmd, opts)
  opts = opts or {}
  local tmp = (H.cmd_dir or H.home) .. "/.cmd"
  local env = "PM_HOME=" .. shquote(H.home) .. " "
  for k, v in pairs(opts.env or {}) do env = env .. k .. "=" .. shquote(v) .. " " end
  local input = "/dev/null"
  if opts.stdin then
    local f = io.open(tmp .. ".in", "w")
    f:write(opts.stdin)
    f:close()
    input = tmp .. ".in"
  end
  local full = ("cd %s && %s %s <%s >%s 2>%s; echo $? >%s"):format(shquote(opts.cwd or H.src),
    env, cmd, shquote(input), shquote(tmp .. ".out"), shquote(tmp .. ".err"), shquote(tmp .. ".rc"))
  os.execute("/bin/sh -c " .. shquote(full))
  local r = { code = tonumber(slurp(tmp .. ".rc")), out = slurp(tmp .. ".out"), err = slurp(tmp .. ".err") }
  san_keep(r.err, "stderr of " .. cmd)
  return r
end

-- Polls fn() until it returns a truthy value or ms pass; returns its value.
function H.wait_for(fn, ms, what)
  local deadline = core.mono() + (ms or 5000)
  local delay = 5
  repeat
    local v = fn()
    if v then return v end
    core.sleep(delay)
    delay = math.min(delay * 2, 50)
  until core.mono() > deadline
  error("timed out waiting for " .. (what or "a condition"), 2)
end

function H.jlist()
  local r = H.pm("jlist")
  assert(r.code == 0, "jlist failed: " .. r.err)
  return assert(util.decode(r.out))
end

function H.proc(name)
  for _, p in ipairs(H.jlist()) do
    if p.name == name or p.pm_id == name then return p end
  end
end

function H.status(name)
  local p = H.proc(name)
  return p and p.pm2_env.status
end

-- `pm start script --name name ...`, which must succeed; returns the app's
-- description (its first instance's).
function H.start(script, name, ...)
  H.ok(H.pm("start", script, "--name", name, ...), "pm start " .. name)
  return assert(H.proc(name), "no process " .. name)
end

-- Starts one app through the Lua API (for attributes the CLI has no flag
-- for); returns its first instance's description.
function H.api_start(app)
  local list, err = require("pm").start(app)
  assert(list, "pm.start failed: " .. tostring(err))
  return list[1]
end

-- Asserts that p (a description) is online with a live pid; returns it.
function H.online(p, what)
  assert(p, (what or "the app") .. " is not in jlist")
  local status = p.pm2_env.status
  assert(status == "online", ("%s should be online, is %s"):format(what or p.name, tostring(status)))
  assert(H.alive(p.pid), (what or p.name) .. ": its pid " .. tostring(p.pid) .. " should be alive")
  return p
end

-- The names of the apps of list (jlist by default), sorted, comma-separated.
-- The records named name, by pm_id
function H.named(name)
  local out = {}
  for _, p in ipairs(H.jlist()) do
    if p.name == name then out[#out + 1] = p end
  end
  table.sort(out, function(a, b) return a.pm_id < b.pm_id end)
  return out
end

function H.names(list)
  local t = {}
  for _, p in ipairs(list or H.jlist()) do t[#t + 1] = p.name end
  table.sort(t)
  return table.concat(t, ",")
end

-- The apps of list (jlist by default) by name (the last instance of each).
function H.by_name(list)
  local t = {}
  for _, p in ipairs(list or H.jlist()) do t[p.name] = p end
  return t
end

function H.alive(pid)
  if not pid or pid <= 0 then return false end
  local st = core.proc_stat(pid)
  if st == nil then return false end
  if st.state ~= "Z" then return true end
  -- a zombie leader whose other threads still exit holds the process's
  -- fds (a daemon's socket, after SIGKILL, on a fast machine): alive
  -- until every thread is gone
  for tid in pairs(core.listdir("/proc/" .. pid .. "/task") or {}) do
    local t = util.read_file("/proc/" .. pid .. "/task/" .. tid .. "/stat")
    local state = t and t:match(".*%) (%a)") -- (after the last ")": a name may hold one)
    if state and state ~= "Z" and state ~= "X" then return true end
  end
  return false
end

-- The environment of a running process (/proc/PID/environ) as a table, or
-- nil when it is gone.
function H.environ(pid)
  local raw = core.proc_environ(pid)
  if not raw then return nil end
  local t = {}
  for k, v in raw:gmatch("([^%z=]+)=([^%z]*)") do t[k] = v end
  return t
end

function H.daemon_pid(home)
  local s = util.read_file((home or H.home) .. "/pm.pid")
  return s and tonumber(s:match("%d+"))
end

-- The pid of home's keeper (PM_HOME/keeper.pid), while a keeper runs there
function H.keeper_pid(home)
  local s = util.read_file((home or H.home) .. "/keeper.pid")
  local pid = s and tonumber(s:match("%d+"))
  local comm = pid and util.read_file("/proc/" .. pid .. "/comm")
  return comm and comm:match("^pm keeper") and pid or nil
end

-- A crash with no keeper to take over: SIGKILL of home's keeper, then of
-- the daemon dpid (the journal's recovery follows, DESIGN §2)
function H.crash_daemon(dpid, home)
  local k = H.keeper_pid(home)
  if k then
    core.kill(k, 9)
    H.wait_for(function() return not H.alive(k) end, 5000, "the keeper gone")
  end
  core.kill(dpid, 9)
  -- (until its last thread is gone its socket still takes a call, and cuts it)
  H.wait_for(function() return not H.alive(dpid) end, 5000, "the daemon gone")
  -- and until a child it was starting has exec'd: that child's copy of
  -- the daemon's fds holds the socket a moment longer (no keeper is left
  -- to start another daemon: whatever answers is that copy)
  local sock = (home or H.home) .. "/rpc.sock"
  H.wait_for(function()
    local fd = core.connect_unix(sock)
    if fd then core.close(fd) end
    return not fd
  end, 5000, "the dead daemon's socket closed")
end

-- Stops the daemon of home (H.home by default), if one runs: `pm kill`,
-- then SIGKILL by its pid (its keeper's first) if it is still alive 5 s later.
function H.stop_daemon(home)
  home = home or H.home
  local dpid, kpid = H.daemon_pid(home), H.keeper_pid(home)
  if (dpid and H.alive(dpid)) or kpid then
    H.sh(shquote(H.bin) .. " kill", { env = { PM_HOME = home } })
    pcall(H.wait_for, function() return not (dpid and H.alive(dpid)) and not H.keeper_pid(home) end, 5000)
    kpid = H.keeper_pid(home)
    if kpid then core.kill(kpid, 9) end
    if dpid and H.alive(dpid) then core.kill(dpid, 9) end
    -- (a daemon the keeper started meanwhile)
    local again = H.daemon_pid(home)
    if again and again ~= dpid and H.alive(again) then core.kill(again, 9) end
  end
end

-- Stops the daemon of the home and everything it ran: `pm kill`, then, for
-- what is still alive, SIGKILL by the pids recorded in that PM_HOME.
function H.cleanup(home)
  home = home or H.home
  if not home then return end
  local app_pids = {}
  local p = io.popen("cat " .. shquote(home) .. "/pids/*.pid 2>/dev/null")
  for l in p:lines() do app_pids[#app_pids + 1] = tonumber(l) end
  p:close()
  local cg = (util.read_file(home .. "/cgroup") or ""):match("[^\n]+")
  H.stop_daemon(home)
  for _, pid in ipairs(app_pids) do
    if H.alive(pid) then core.kill(pid, 9) end
  end
  -- the apps' cgroups of a daemon that did not remove them (killed): what
  -- is still in them is this home's, then the empty folders go
  if cg and cg:match("/pm%-%x+$") and core.stat(cg) then
    for name in pairs(core.listdir(cg) or {}) do
      if name:match("^%d+$") or name:match("^%d+%.%d+$") then -- (<pm_id>[.<n>])
        for pid in (util.read_file(cg .. "/" .. name .. "/cgroup.procs") or ""):gmatch("%d+") do
          core.kill(tonumber(pid), 9)
        end
        pcall(H.wait_for, function()
          return (util.read_file(cg .. "/" .. name .. "/cgroup.procs") or "") == ""
        end, 2000)
        os.remove(cg .. "/" .. name)
      end
    end
    os.remove(cg)
  end
  san_keep(util.read_file(home .. "/pm.log"), home .. "/pm.log")
  os.execute("rm -rf " .. shquote(home))
  if H.home == home then H.home = nil end
end

-- Writes text to path (created or replaced) and returns the path.
function H.write(path, text)
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
  return path
end

-- The JSON a file holds, decoded (nil when it is missing or not JSON).
function H.read_json(path)
  local s = util.read_file(path)
  return s and util.decode(s)
end

-- An ecosystem.config.lua in the home whose apps are the Lua text `apps`
-- -> its path
function H.lua_eco(apps)
  return H.write(H.home .. "/ecosystem.config.lua", "return { apps = " .. apps .. " }\n")
end

-- Writes a fixture script into the home and returns its path.
function H.script(name, body, mode)
  local path = H.home .. "/" .. name
  local f = assert(io.open(path, "w"))
  f:write(body)
  f:close()
  os.execute("chmod " .. (mode or "755") .. " " .. shquote(path))
  return path
end

function H.count_lines(path)
  local n = 0
  local f = io.open(path)
  if not f then return 0 end
  for _ in f:lines() do n = n + 1 end
  f:close()
  return n
end

function H.exists(path) return core.stat(path) ~= nil end

-- Whether the file at path holds the plain text.
function H.contains(path, text)
  local s = util.read_file(path)
  return s ~= nil and s:find(text, 1, true) ~= nil
end

-- How many times the plain text occurs in s.
function H.count(s, plain)
  local n, pos = 0, 1
  while true do
    local a, b = s:find(plain, pos, true)
    if not a then return n end
    n, pos = n + 1, b + 1
  end
end

-- path with its links resolved (as the app sees its cwd), or path itself.
function H.real(path) return core.realpath(path) or path end

-- The default out log of a one-instance app.
function H.out_log(name) return H.home .. "/logs/" .. name .. "-out.log" end

-- The daemon's own log, "" before it has one.
function H.pm_log() return util.read_file(H.home .. "/pm.log") or "" end

-- Asserts that a command succeeded, saying what it printed otherwise.
function H.ok(r, what)
  assert(r.code == 0, ("%s: exit %s, stdout: %s, stderr: %s"):format(what or "pm", tostring(r.code), r.out, r.err))
  return r
end

-- Asserts that a command was refused: a non-zero exit and exactly one line
-- on stderr, which holds every plain string given.
function H.fails(r, ...)
  assert(r.code ~= 0, "expected a failure, got exit 0, stdout: " .. r.out)
  assert(r.err:match("^[^\n]+\n$"), "expected one line on stderr, got: [" .. r.err .. "]")
  for _, plain in ipairs({ ... }) do
    assert(r.err:find(plain, 1, true), ("stderr [%s] should mention [%s]"):format(r.err, plain))
  end
  return r
end

-- ---- the event loop: bus callbacks, raw connections, timers ----

--[[ Runs the loop until cond() is truthy or ms pass; returns cond()'s last
value. cond() is looked at after every event and at least every 20 ms. ]]
function H.run_until(cond, ms)
  -- libev's timers count from the loop's cached time, which is stale when
  -- the loop has not run for a while: one turn first updates it
  core.run("nowait")
  local v = cond()
  if v then return v end
  local over = false
  local deadline = core.timer(ms, 0, function() over = true end)
  local tick = core.timer(20, 20, function() end)
  local ok, res = pcall(function()
    repeat
      core.run("once")
      v = cond()
    until v or over
    return v
  end)
  deadline:close()
  tick:close()
  if not ok then error(res, 0) end -- (cond's own error, as it was)
  return res
end

-- H.run_until, failing the test when ms (5000) pass first.
function H.pump(cond, ms, what)
  local v = H.run_until(cond, ms or 5000)
  if v then return v end
  error("timed out waiting for " .. (what or "a condition"), 2)
end

-- Something that must NOT happen can only be watched for a while: runs the
-- loop for ms and fails at the first time cond() is false.
function H.holds(cond, ms, what)
  local deadline = core.mono() + ms
  repeat
    if not cond() then error("no longer true: " .. (what or "a condition"), 2) end
    H.run_until(function() return false end, 20)
  until core.mono() > deadline
  if not cond() then error("no longer true: " .. (what or "a condition"), 2) end
end

--[[ A raw connection to rpc.sock (sock, or the home's). Every line that
comes is kept in c.lines and, decoded, in c.msgs ({ undecodable = line } if
it is not JSON); c.closed once the daemon has closed it. c:send(text);
c:next(ms): the next message not yet taken (waits up to ms, 3000), or nil;
c:reply(id, ms): the message with that id (waits), or nil; c:close(). ]]
function H.connect(sock)
  local fd, err = core.connect_unix(sock or (H.home .. "/rpc.sock"))
  assert(fd, err)
  local c = { msgs = {}, lines = {}, closed = false }
  c.stream = core.stream(fd, function(line)
    if not line then return end
    c.lines[#c.lines + 1] = line
    c.msgs[#c.msgs + 1] = util.decode(line) or { undecodable = line }
  end, function() c.closed = true end, 64 * 1024 * 1024)
  function c:send(s) assert(self.stream:write(s)) end
  function c:next(ms)
    local n = self.taken or 0
    if not H.run_until(function() return #self.msgs > n or self.closed end, ms or 3000) then return nil end
    if #self.msgs > n then
      self.taken = n + 1
      return self.msgs[n + 1]
    end
  end
  function c:reply(id, ms)
    local found
    H.run_until(function()
      for _, m in ipairs(self.msgs) do
        if m.id == id then found = m; return true end
      end
      return self.closed
    end, ms or 3000)
    return found
  end
  function c:close() self.stream:close() end
  return c
end

-- A TCP port of 127.0.0.1 nobody listens on (20000 + a random offset).
function H.free_port()
  for _ = 1, 500 do
    local port = 20000 + math.random(0, 29999)
    local fd = core.listen_tcp("127.0.0.1", tostring(port))
    if fd then
      core.close(fd)
      return port
    end
  end
  error("no free port")
end

-- Open fds of pid
function H.fd_count(pid)
  local p = io.popen("ls /proc/" .. pid .. "/fd 2>/dev/null | wc -l")
  local n = tonumber(p:read("*a"))
  p:close()
  return n
end

-- Live processes whose environment has PM_HOME=home (a daemon, its apps).
-- /proc is read in process: this script has PM_HOME=home in its own
-- environment (H.new_home sets it), so the `sh -c ls` and `ls` of a popen
-- would be found too while they run.
function H.processes_of_home(home)
  local list = {}
  for name in pairs(core.listdir("/proc") or {}) do
    local pid = tonumber(name)
    if pid and H.alive(pid) then
      local env = core.proc_environ(pid)
      if env and ("\0" .. env):find("\0PM_HOME=" .. home .. "\0", 1, true) then list[#list + 1] = pid end
    end
  end
  table.sort(list)
  return list
end

-- Children of pid that are zombies (state Z in /proc/*/stat)
function H.zombies_of(pid)
  local list = {}
  for name in pairs(core.listdir("/proc") or {}) do
    local cpid = tonumber(name)
    if cpid then
      local st = core.proc_stat(cpid)
      if st and st.ppid == pid and st.state == "Z" then list[#list + 1] = cpid end
    end
  end
  table.sort(list)
  return list
end

return H
