-- Integration-test harness: a real daemon in a temporary PM_HOME, the real
-- `pm` binary, polling against deadlines, and clean-up by pid only.
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
  local words = { shquote(H.bin) }
  for _, a in ipairs(args) do words[#words + 1] = shquote(a) end
  return H.sh(table.concat(words, " "), opts)
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

function H.sh(cmd, opts)
  opts = opts or {}
  local tmp = H.home .. "/.cmd"
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

function H.alive(pid)
  if not pid or pid <= 0 then return false end
  local st = core.proc_stat(pid)
  return st ~= nil and st.state ~= "Z"
end

function H.daemon_pid(home)
  local s = util.read_file((home or H.home) .. "/pm.pid")
  return s and tonumber(s:match("%d+"))
end

-- Stops the daemon of the home and everything it ran: `pm kill`, then, for
-- what is still alive, SIGKILL by the pids recorded in that PM_HOME.
function H.cleanup(home)
  home = home or H.home
  if not home then return end
  local dpid = H.daemon_pid(home)
  local app_pids = {}
  local p = io.popen("cat " .. shquote(home) .. "/pids/*.pid 2>/dev/null")
  for l in p:lines() do app_pids[#app_pids + 1] = tonumber(l) end
  p:close()
  if dpid and H.alive(dpid) then
    H.sh(shquote(H.bin) .. " kill")
    pcall(H.wait_for, function() return not H.alive(dpid) end, 5000)
    if H.alive(dpid) then core.kill(dpid, 9) end
  end
  for _, pid in ipairs(app_pids) do
    if H.alive(pid) then core.kill(pid, 9) end
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

-- Asserts that a command succeeded, saying what it printed otherwise.
function H.ok(r, what)
  assert(r.code == 0, ("%s: exit %s, stdout: %s, stderr: %s"):format(what or "pm", tostring(r.code), r.out, r.err))
  return r
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
