-- When a launched process counts as online: at once, or when it says so
-- (wait_ready's "ready" over IPC, sd_notify's READY=1, a health check
-- that passes), or when listen_timeout runs out; and while it runs, its
-- health checks and its sd_notify watchdog; the NOTIFY_SOCKET of apps of
-- other users than the daemon's. Decides nothing about what a failed
-- check leads to beyond asking rules.lua for a restart.
local core = require "pm.core"
local util = require "pm.util"
local log = require "pm.log"
local health = require "pm.health"
local proc = require "pm.proc"
local lifecycle = require "pm.lifecycle"
local describe = require "pm.describe"
local children = require "pm.children"

local bit = require "bit"

local M = {}

local event = proc.event

-- (required when first used: rules.lua needs this module)
local function restart_rule(p, reason) require("pm.rules").restart(p, reason) end

-- The listen addresses of an app: `listen`, or for a Node app in cluster
-- mode its port (PM2 files run unchanged: the preload maps listen(port)),
-- and the ports its instances listened on (sockets.learned_specs).
function M.listen_specs(d)
  local specs
  if d.listen and #d.listen > 0 then specs = d.listen end
  if d.exec_mode ~= "cluster_mode" or not require("pm.app").is_node(d.interpreter) then return specs end
  local port = d.port or (d.env and d.env.PORT)
  if not specs and port then specs = { "tcp://:" .. tostring(port) } end
  local learned = require("pm.sockets").learned_specs(d)
  if not learned or #learned == 0 then return specs end
  local out, seen = {}, {}
  for _, list in ipairs({ specs or {}, learned }) do
    for _, spec in ipairs(list) do
      if not seen[spec] then seen[spec] = true; out[#out + 1] = spec end
    end
  end
  return out
end

-- p's process is ready (how: "start", "ipc", "notify", "health", ...)
-- how -> the event's extra ({ ready = how }: read only, one per how)
local READY = setmetatable({}, { __index = function(t, how)
  local e = { ready = how }
  t[how] = e
  return e
end })

function M.mark_ready(p, how)
  p.ready = how
  local cell = lifecycle.fire(p, "ready")
  if cell == lifecycle.IGNORE then return end
  if p.ready_timer then p.ready_timer:close(); p.ready_timer = nil end
  proc.act(p, cell, READY[how])
  describe.hook(p, "on_start")
  proc.ctx.changed("runtime")
  local w = p.ready_waiters
  if not w then return end
  p.ready_waiters = nil
  for _, fn in ipairs(w) do fn(true) end
end

-- p's process will not be ready: it exited, or could not start. why: a
-- text, or a function of p giving it (made only when someone waits)
function M.fail_ready(p, why)
  lifecycle.fire(p, "unready")
  if p.ready_timer then p.ready_timer:close(); p.ready_timer = nil end
  local w = p.ready_waiters
  if not w then return end
  p.ready_waiters = nil
  if type(why) == "function" then why = why(p) end
  for _, fn in ipairs(w) do fn(false, why) end
end

function M.exited_early(p) return ("%s exited before it was ready"):format(p.name) end

-- done(ok, err) once p is online, or failed to get there.
function M.when_ready(p, done)
  if p.status == "online" then return done(true) end
  if p.status ~= "launching" then
    return done(false, p.error or ("%s is %s"):format(p.name, p.status))
  end
  p.ready_waiters = p.ready_waiters or {}
  p.ready_waiters[#p.ready_waiters + 1] = done
end

-- A Node app's process in cluster mode listens (the preload says so): it is
-- ready when a reload waits for that (p.await_listen), as PM2's reload
-- waits for a worker's 'listening'
function M.listening(p)
  if p.await_listen and p.status == "launching" then M.mark_ready(p, "listen") end
end

-- After a spawn: online at once, or when the app says so (at the latest
-- after listen_timeout); p.await_listen: when it listens.
function M.await(p)
  local d = p.decl
  p.ready = nil
  p.notify = nil
  p.health_failures = nil -- (none: 0; a field less in the records of apps without health checks)
  M.arm_health(p)
  if d.wait_ready or d.health or p.await_listen then
    -- launching until the app says it is ready (IPC, sd_notify, health)
    p.ready_timer = core.timer(d.listen_timeout or 3000, 0, function()
      p.ready_timer = nil
      if p.status == "launching" then
        log.warn("app %s (%d) did not say it is ready within listen_timeout %d ms: counted as ready",
          p.name, p.pm_id, d.listen_timeout or 3000)
        M.mark_ready(p, "listen_timeout")
      end
    end)
    proc.ctx.changed()
  else
    M.mark_ready(p, "start")
  end
end

-- ---- NOTIFY_SOCKET ----
-- An app of the daemon's user gets the daemon's socket (PM_HOME/notify.sock,
-- proc.ctx.notify_path). One running as another user cannot reach it (PM_HOME
-- is 0700): it gets a socket of its user's, made on first use and kept for
-- the daemon's life, <run>/pm-notify.<daemon pid>.<n>/<uid>.sock, where
-- <run> is /run (or /tmp) and the folder is made fresh by the daemon, its
-- (0711: no one else can list it or put anything in it). The socket is
-- made 0600 and given to that user as it is bound (core.dgram_unix): that
-- user, and no other, can send to it. Datagrams are read like the shared
-- one's: the sender is known by its pid (SO_PASSCRED), never by the socket.
-- The folder also holds the cluster preload those apps read.
local user_socks = {} -- uid -> { path, fd, watch } | false (could not be made)
local user_dir -- the daemon's folder of them, once made

local function make_user_dir()
  if user_dir ~= nil then return user_dir end
  user_dir = false
  local run = (core.stat("/run") or {}).type == "dir" and "/run" or "/tmp"
  local me = core.getuid()
  for n = 0, 99 do -- a fresh folder, never one found (a stale one, or another user's)
    local dir = ("%s/pm-notify.%d.%d"):format(run, core.getpid(), n)
    if not core.stat(dir, true) and core.mkdir(dir, 448) then
      local st = core.stat(dir, true)
      if st and st.type == "dir" and st.uid == me and core.chmod(dir, 457) then -- 0711
        user_dir = dir
        break
      end
    end
  end
  if not user_dir then log.error("sd_notify: no folder for the sockets of apps of other users in %s", run) end
  return user_dir
end

-- The cluster preload, for the Node apps of other users (PM_HOME is 0700):
-- a copy in that folder, 0644 (any app can read it, none change it)
local PRELOAD = "cluster-preload.js"
local preload_path -- once written, or false
function M.shared_preload(text)
  if preload_path ~= nil then return preload_path or nil end
  preload_path = false
  local base = make_user_dir()
  if not base then return nil end
  local path = base .. "/" .. PRELOAD
  local ok, err = util.write_atomic(path, text, { durable = false, mode = 420 })
  if ok then ok, err = core.chmod(path, 420) end
  if not ok then
    log.error("cluster mode: no preload for the apps of other users: %s", tostring(err))
    return nil
  end
  preload_path = path
  return path
end

--[[ The sd_notify datagrams of one socket (fd), for M.on_notify: at most
M.NOTIFY_BATCH a turn of the loop and M.NOTIFY_RATE a second. Past that
the socket is left unread until the second is over: its senders' writes
wait, or fail with EAGAIN, as a full socket's do (16 processes of a
user's sending in a tight loop kept the daemon from answering for 14 s).
what: whose socket, for pm.log. -> a handle with :close() ]]
M.NOTIFY_BATCH, M.NOTIFY_RATE = 64, 1000
function M.watch_notify(fd, what)
  local s = { count = 0, window = -1e9, said = -1e9 }
  local on_readable
  local function resume()
    s.timer = nil
    if not s.closed then s.watch = core.watch_read(fd, on_readable) end
  end
  on_readable = function()
    local now = core.mono()
    if now - s.window >= 1000 then s.window, s.count = now, 0 end
    for _ = 1, M.NOTIFY_BATCH do
      if s.count >= M.NOTIFY_RATE then
        s.watch:close()
        s.watch = nil
        if now - s.said >= 60000 then -- (once a minute)
          s.said = now
          log.warn("sd_notify: %s sent over %d datagrams in a second: the socket is unread until the next",
            what, M.NOTIFY_RATE)
        end
        s.timer = core.timer(math.max(1, 1000 - (now - s.window)), 0, resume)
        return
      end
      local data, pid, uid = core.recv_cred(fd)
      if not data then return end
      s.count = s.count + 1
      M.on_notify(pid, data, uid)
    end
  end
  s.watch = core.watch_read(fd, on_readable)
  function s.close()
    s.closed = true
    if s.watch then s.watch:close(); s.watch = nil end
    if s.timer then s.timer:close(); s.timer = nil end
  end
  return s
end

local function watch_user_socket(uid, path, fd, held)
  local s = { path = path, fd = fd, held = held }
  s.watch = M.watch_notify(fd, ("the apps of uid %d"):format(uid))
  user_socks[uid] = s
  return s
end

local function user_socket(uid)
  local s = user_socks[uid]
  if s ~= nil then return s end
  user_socks[uid] = false
  local base = make_user_dir()
  if not base then return false end
  local path = ("%s/%d.sock"):format(base, uid)
  local fd, err = core.dgram_unix(path, uid, 384) -- 0600, uid's
  if not fd then
    log.error("sd_notify: no socket for the apps of uid %d: %s", uid, tostring(err))
    return false
  end
  -- (held by the keeper: the apps' NOTIFY_SOCKET outlives this daemon)
  return watch_user_socket(uid, path, fd, require("pm.keeper").hold("n " .. uid, fd))
end

--[[ The sockets of other users' apps a daemon before this one made, handed
over by the keeper ({ {fd, id, pm_id = uid} }): the apps it took over
have their paths in NOTIFY_SOCKET, so they stay (and their folder), for
the new apps of those users too. ]]
function M.take_notify(list)
  for _, h in ipairs(list) do
    local kind, path = core.sockname(h.fd)
    local uid = h.pm_id
    if kind == "unix" and uid and user_socks[uid] == nil then
      watch_user_socket(uid, path, h.fd, h.id)
      local dir = util.dirname(path)
      if not user_dir then
        user_dir = dir
        -- (its name has a dead daemon's pid: this one says it uses it)
        util.write_atomic(dir .. "/owner", core.getpid() .. "\n", { durable = false, mode = 420 })
      end
    else
      require("pm.keeper").release(h.id)
      core.close(h.fd)
    end
  end
end

-- The NOTIFY_SOCKET of d's processes, or nil (none).
function M.notify_path(d)
  local uid = tonumber(d.uid)
  if uid and uid ~= core.getuid() and proc.ctx.notify_path then
    local s = user_socket(uid)
    return s and s.path or nil
  end
  return proc.ctx.notify_path
end

-- At the daemon's exit: the sockets of other users' apps and their folder go.
function M.close_notify()
  for uid, s in pairs(user_socks) do
    if s then
      require("pm.keeper").release(s.held)
      s.watch:close()
      core.close(s.fd)
      os.remove(s.path)
    end
    user_socks[uid] = nil
  end
  if preload_path then os.remove(preload_path) end
  preload_path = nil
  if user_dir then os.remove(user_dir .. "/owner"); os.remove(user_dir) end
  user_dir = nil
end

-- Whether st (an lstat) is a folder of the daemon's user none other may
-- write in, or a file of that user's: what is in it or what it says is then
-- the daemon's (in /tmp, anybody may make a pm-notify.* of their own)
local function mine(st, kind)
  return st and st.type == kind and st.uid == core.getuid() and bit.band(st.mode, 18) == 0 -- 022
end

-- What daemons that died (their pid runs no more) left of their folders of
-- sockets, after a crash.
function M.clean_notify()
  for _, run in ipairs({ "/run", "/tmp" }) do
    for name in pairs(core.listdir(run, "dirs") or {}) do -- (/tmp: anyone's files, not read into tables)
      local base = run .. "/" .. name
      local pid = tonumber(name:match("^pm%-notify%.(%d+)%.%d+$"))
      local ps = pid and core.proc_stat(pid)
      local st = pid and (not ps or ps.state == "Z") and core.stat(base, true)
      if not mine(st, "dir") then st = nil end
      -- (a folder a daemon took over from a dead one says so: a small file)
      local ost = st and core.stat(base .. "/owner", true)
      local owner = mine(ost, "file") and ost.size < 64
        and tonumber((util.read_file(base .. "/owner") or ""):match("%d+"))
      local ops = owner and core.proc_stat(owner)
      if ops and ops.state ~= "Z" then st = nil end
      if st then
        for sock in pairs(core.listdir(base) or {}) do
          if sock:match("^%d+%.sock$") or sock == PRELOAD or sock == "owner" then os.remove(base .. "/" .. sock) end
        end
        os.remove(base)
      end
    end
  end
end

-- sd_notify datagrams on NOTIFY_SOCKET, from an app's process or one of
-- its descendants.
function M.on_notify(pid, data, uid)
  local p
  for _ = 1, 16 do
    if not pid or pid <= 1 then break end
    p = proc.by_pid[pid]
    if p then break end
    local st = core.proc_stat(pid)
    pid = st and st.ppid
  end
  if not p then return end
  -- (only its own user, or root, speaks for an app: a process of another
  -- user under it, or a pid that came back as someone else's, does not)
  if uid and uid ~= 0 and uid ~= (tonumber(p.decl.uid) or core.getuid()) then return end
  p.notify = p.notify or {}
  for line in data:gmatch("[^\n]+") do
    local k, v = line:match("^([%w_]+)=(.*)$")
    if k == "READY" and v == "1" then
      M.mark_ready(p, "notify")
    elseif k == "STATUS" then
      p.notify.status = v
    elseif k == "RELOADING" then
      p.notify.reloading = v == "1"
    elseif k == "STOPPING" then
      p.notify.stopping = v == "1"
    elseif k == "WATCHDOG" and v == "1" then
      p.watchdog_last = core.mono()
    elseif k == "MAINPID" then
      p.notify.mainpid = tonumber(v)
    end
  end
end

-- ---- health checks and the watchdog ----

-- An exec check of p runs as its process does: its user and group, its
-- folder, its environment, its cgroup (never as the daemon's user: an app's user may
-- edit the command it names)
local function check_runner(p)
  return function(argv, timeout, done)
    local d = p.decl
    -- (in the app's cgroup: what it leaves goes with the app)
    children.run(argv, { setsid = true, timeout = timeout, uid = d.uid, gid = d.gid, cwd = d.cwd,
      env = require("pm.launch").env_of(p), cgroup = require("pm.cgroup").joined(p) }, function(code) done(code) end)
  end
end

function M.disarm(p)
  if p.health_timer then p.health_timer:close(); p.health_timer = nil end
  if p.watchdog_timer then p.watchdog_timer:close(); p.watchdog_timer = nil end
end

function M.arm_health(p)
  M.disarm(p)
  local d = p.decl
  if d.health then
    local h = d.health
    local interval = h.interval or health.DEFAULTS.interval
    local retries = h.retries or health.DEFAULTS.retries
    local busy = false
    local function tick()
      if busy or p.pid == 0 or p.status == "stopping" then return end
      busy = true
      health.probe(h, check_runner(p), function(ok, err)
        busy = false
        if p.pid == 0 or p.status == "stopping" then return end
        if ok then
          p.health_failures = 0
          if p.status == "launching" then M.mark_ready(p, "health") end
          return
        end
        if p.status ~= "online" then return end
        p.health_failures = (p.health_failures or 0) + 1
        log.warn("app %s (%d): health check failed (%d/%d): %s", p.name, p.pm_id,
          p.health_failures, retries, tostring(err))
        if p.health_failures >= retries then
          event(p, "health", { failures = p.health_failures, error = tostring(err) })
          p.health_failures = 0
          restart_rule(p, "health")
        end
      end)
    end
    -- probe soon after start (readiness), then every interval
    p.health_timer = core.timer(math.min(interval, 200), interval, tick)
  end
  if d.watchdog then
    p.watchdog_last = nil
    p.watchdog_timer = core.timer(d.watchdog, math.max(50, d.watchdog / 4), function()
      if p.status ~= "online" or not p.watchdog_last then return end
      if core.mono() - p.watchdog_last > d.watchdog then
        log.warn("app %s (%d): no WATCHDOG=1 for %d ms", p.name, p.pm_id, d.watchdog)
        p.watchdog_last = nil
        restart_rule(p, "health")
      end
    end)
  end
end

return M
