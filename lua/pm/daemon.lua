-- The daemon: PM_HOME, the one-daemon lock, the control socket and who
-- may use it, signals, its Lua errors, the daemon-side API of hooks, and
-- its stop (every app first, dependents before what they depend on). The
-- wire's methods are methods.lua's; bringing apps back, recovery.lua's.
local core = require "pm.core"
local util = require "pm.util"
local log = require "pm.log"

local M = {}
-- (loaded by M.run once this process is the daemon: the first `pm daemon`
-- only becomes the keeper, which starts the daemon; loading them cost a
-- first call 5 ms)
local rpc, bus, sup, persist, recovery, wire, watch, proc, applogs, methods
local function load_modules()
  rpc = require "pm.rpc"
  bus = require "pm.bus"
  sup = require "pm.supervisor"
  persist = require "pm.persist"
  recovery = require "pm.recovery"
  wire = require "pm.methods"
  watch = require "pm.watch"
  proc = require "pm.proc"
  applogs = require "pm.applogs"
  methods = wire.methods
  M.methods = methods
end

local home
local my_uid = core.getuid()
local shutting_down = false

local function shutdown(code, before_exit)
  if shutting_down then return end
  shutting_down = true
  log.info("stopping every app, then the daemon")
  wire.each_dependents_first(sup.all(), function(p, cb) sup.stop(p, cb) end, function()
    sup.kill_leftovers()
    persist.drop_journal(home) -- a clean stop: nothing to recover
    core.log_drain(5000) -- every line the apps wrote is on disk
    local function finish()
      os.remove(home .. "/rpc.sock")
      os.remove(home .. "/pm.pid")
      os.remove(home .. "/keeper.pid")
      require("pm.pidfile").drop_daemon_copy(M.extra_pid_file)
      require("pm.pidfile").drop_pm2_name(home)
      os.remove(home .. "/notify.sock")
      require("pm.cgroup").shutdown(home)
      require("pm.readiness").close_notify() -- (those of other users' apps)
      require("pm.keeper").quit()
      log.info("daemon %d exits", core.getpid())
      M.exit_code = code
      core.stop_loop()
    end
    if before_exit then before_exit(finish) else finish() end
  end)
end

-- ---- the API hooks see as `pm` (actions run after the hook returns) ----

local function hook_api(runtime)
  load_modules()
  local hooks = require "pm.hooks"
  local api = hooks.api
  -- the apps a hook may reach: a user's file's hooks, that user's only
  local function mine(list)
    local uid = hooks.scope()
    if not uid or not list then return list end
    local out = {}
    for _, p in ipairs(list) do
      if p.decl.uid == uid then out[#out + 1] = p end
    end
    return out
  end
  local function resolve(target)
    local list, err = sup.resolve(target)
    list = mine(list)
    if list and #list == 0 and hooks.scope() then
      return nil, ("process or namespace not found: %s"):format(tostring(target))
    end
    return list, err
  end
  local function later(fn)
    core.timer(0, 0, function()
      local ok, err = pcall(fn)
      if not ok then log.error("hook action failed: %s", err) end
    end)
  end
  local function act(name, op)
    return function(target)
      local list, err = resolve(target)
      if not list then
        -- (said in pm.log too: a hook seldom checks what an action returns)
        log.warn("hook pm.%s(%s): %s", name, util.encode_text(target), err)
        return nil, err
      end
      later(function()
        for _, p in ipairs(list) do
          op(p, function(e) if e then log.warn("hook action on %s: %s", p.name, e) end end)
        end
      end)
      return true
    end
  end
  api.restart = act("restart", function(p, cb) sup.restart(p, {}, cb) end)
  api.stop = act("stop", sup.stop)
  api.start = act("start", sup.start)
  api.reload = act("reload", function(p, cb) sup.reload(p, {}, cb) end)
  api.reset = act("reset", function(p, cb) sup.reset(p); cb() end)
  -- (descriptions without a fresh /proc sample: a hook of 500 apps' list)
  api.list = function() return sup.describe_tables(mine(sup.all()), true) end
  api.describe = function(target)
    local list = resolve(target)
    return sup.describe_tables(list or {}, true)
  end
  api.tail = function(target, n)
    n = n == nil and 20 or tonumber(n)
    if not n or n < 0 then return nil, "tail: a number of lines expected" end
    local list, err = resolve(target)
    if not list then return nil, err end
    return applogs.tail(list[1], math.min(math.floor(n), 1000))
  end
  api.signal = function(signal, target)
    local sig, serr = util.signum(signal)
    if not sig then return nil, serr end
    local list, err = resolve(target)
    if not list then return nil, err end
    later(function()
      for _, p in ipairs(list) do
        if p.pid and p.pid > 0 then core.kill(p.pid, sig) end
      end
    end)
    return true
  end
  api.send = function(target, packet)
    if type(packet) ~= "table" then packet = { data = packet } end
    local list, err = resolve(target)
    if not list then return nil, err end
    local copy = util.deep_copy(packet)
    copy.type = copy.type or "process:msg"
    copy.topic = copy.topic or "pm"
    later(function()
      for _, p in ipairs(list) do
        copy.id = p.pm_id
        local ok, serr = sup.send(p, copy)
        if not ok then log.warn("hook pm.send to %s: %s", p.name, serr) end
      end
    end)
    return true
  end
  api.scale = function(name, n)
    if type(name) ~= "string" then return nil, "scale: an app name expected" end
    if type(n) ~= "number" and type(n) ~= "string" then return nil, "scale: a number (N, \"+N\", \"-N\") expected" end
    if #(mine(sup.by_name(name))) == 0 then return nil, "process not found: " .. name end
    later(function()
      sup.scale(name, tostring(n), function(e) if e then log.warn("hook pm.scale %s: %s", name, e) end end)
    end)
    return true
  end
  api.publish = function(event, data)
    if type(event) ~= "string" then return nil, "publish: an event name expected" end
    if require("pm.channel").reserved(event) then
      return nil, ("publish: %s is the daemon's own event"):format(event)
    end
    -- shaped as an app's message: { process, at, data }
    local p = require("pm.hooks").current_app()
    local packet = { process = p and proc.ref(p) or nil, at = core.now(), data = util.deep_copy(data) }
    later(function() bus.publish(event, packet) end)
    return true
  end
  hooks.describe = function(p) return sup.describe_tables({ p }, true)[1] end
  hooks.on_error = function(p, name, msg)
    p.last_hook_error = { hook = name, message = msg, at = core.now() }
    bus.publish("hook:error", { process = proc.ref(p), at = p.last_hook_error.at,
      data = { hook = name, message = msg } })
  end
  -- a changed pm.state is in the journal within JOURNAL_DELAY (20 ms; 4x
  -- a write's CPU when that is more: persist.DECL_SHARE)
  hooks.on_state = function()
    if not shutting_down and home and not runtime then persist.journal(home, sup.all) end
  end
end

-- ---- set-up ----

-- ssh's StrictModes for PM_HOME and its logs/ and pids/: a folder someone
-- else owns, or may write, could hold links to files the daemon would then
-- write as itself -> true | nil, one line saying why and how to fix it
local function trusted_dir(path, what)
  local st = core.stat(path)
  if not st then return true end -- (made by the daemon, as it wants it)
  if st.type ~= "dir" then return nil, ("%s is not a directory: %s"):format(what, path) end
  if st.uid ~= my_uid then
    return nil, ("%s %s is owned by uid %d, not by the daemon's uid %d: refused "
      .. "(chown %d %s, or use a PM_HOME of your own)"):format(what, path, st.uid, my_uid, my_uid, path)
  end
  if bit.band(st.mode, 18) ~= 0 then -- 022
    return nil, ("%s %s is writable by group or others (mode %o): refused (chmod go-w %s)")
      :format(what, path, st.mode, path)
  end
  return true
end

-- A peer of another uid gets one line that says why, then the close. What
-- it sends meanwhile is read and dropped (a close with unread data would
-- reset the connection before it read the line); the connection is held
-- for a second at most, and at most 32 such at once.
local refused = 0
local function refuse(fd, line)
  if refused >= 32 then
    core.discard(fd)
    core.write(fd, line)
    return core.close(fd)
  end
  refused = refused + 1
  local st, timer
  local function gone()
    if not st then return end
    st:close()
    st = nil
    timer:close()
    refused = refused - 1
  end
  st = core.stream(fd, function() end, gone, 4096)
  timer = core.timer(1000, 0, gone)
  st:write(line)
end

local function on_accept(lfd)
  while true do
    local fd, uid = core.accept(lfd)
    if not fd then
      if uid ~= "again" then log.warn("%s", uid) end
      return
    end
    if uid ~= my_uid and uid ~= 0 then
      log.warn("refused a client with uid %d", uid)
      refuse(fd, ('{"jsonrpc":"2.0","id":null,"error":{"code":%d,"message":"refused: this pm daemon '
        .. 'serves uid %d and root only, not uid %d"}}\n'):format(rpc.SERVER_ERROR, my_uid, uid))
    else
      rpc.serve(fd, uid, methods, function(c) bus.unsubscribe(c) end)
    end
  end
end

-- ---- the control socket and the lock, kept ----
-- A tmp cleaner may delete rpc.sock (or pm.lock, or PM_HOME itself), or
-- another file may take its path. Twice a second the daemon checks that
-- the path is still the socket it bound and pm.lock the file it locked, and
-- binds (locks) them again if not: clients never find a daemon that runs
-- but cannot be reached, nor start a second one for the same PM_HOME.
local sock = {} -- lfd, id (core.file_id), watch, lock, lock_id, failing

local function bind_socket()
  local path = home .. "/rpc.sock"
  os.remove(path)
  local lfd, id = core.listen_unix(path)
  if not lfd then return nil, id end
  if sock.watch then -- who queued on the old one is served, then it goes
    on_accept(sock.lfd)
    sock.watch:close()
    core.close(sock.lfd)
  end
  sock.lfd, sock.id = lfd, id
  sock.watch = core.watch_read(lfd, function() on_accept(lfd) end)
  return true
end

local watch_home -- forward

-- pm.pid says this daemon: replaced atomically, else (a full disk has no
-- room for a new file) written over in place, padded to the old length
-- (spaces: a reader takes the number). -> whether it says so
local function write_pid()
  local path, text = home .. "/pm.pid", core.getpid() .. "\n"
  if util.write_atomic(path, text, { durable = false }) then return true end
  local old = util.read_file(path) or ""
  if #old > #text then text = core.getpid() .. (" "):rep(#old - #text) .. "\n" end
  local fd = core.open(path, "u", 420)
  if not fd then return false end
  local ok = core.write(fd, text)
  core.close(fd)
  return ok == true
end

local function keep_socket()
  if shutting_down then return end
  local lock_path, path = home .. "/pm.lock", home .. "/rpc.sock"
  if core.file_id(lock_path) == sock.lock_id and core.file_id(path) == sock.id and M.pid_written then return end
  util.mkdir_p(home, 448) -- (0700: PM_HOME itself may be gone)
  if core.file_id(lock_path) ~= sock.lock_id then
    local fd, lerr = core.lock(lock_path)
    if fd then
      core.close(sock.lock)
      sock.lock, sock.lock_id = fd, core.file_id(fd)
      log.warn("%s was removed or replaced: locked again", lock_path)
    elseif not sock.lock_failing then
      sock.lock_failing = true
      log.error("%s was removed or replaced and cannot be locked again: %s", lock_path, lerr)
    end
  end
  if not M.pid_written or not core.stat(home .. "/pm.pid") then M.pid_written = write_pid() end
  if core.file_id(path) ~= sock.id then
    local ok, err = bind_socket()
    if ok then
      sock.failing = nil
      log.warn("%s was removed or replaced: listening on it again", path)
    elseif not sock.failing then
      sock.failing = true -- (said once, tried again and again)
      log.error("%s was removed or replaced and cannot be bound again: %s", path, err)
    end
  end
  if M.home_watched == false then watch_home() end -- (PM_HOME itself was made again)
end

-- Watches PM_HOME for its socket, lock and pid file going or being
-- replaced (and for PM_HOME itself going): keep_socket runs at once
-- -> true | nil when inotify cannot watch it
watch_home = function()
  local names = { [home] = true, [home .. "/rpc.sock"] = true, [home .. "/pm.lock"] = true,
    [home .. "/pm.pid"] = true }
  local ok = watch.watch("pm:home", { home }, function(path) return not names[path] end, function(path)
    if path == home and not core.stat(home) then M.home_watched = false end -- (watched again once made)
    if M.repair then return end
    M.repair = core.timer(10, 0, function()
      M.repair = nil
      keep_socket()
    end)
  end)
  M.home_watched = ok and true or false
  return ok
end

--[[
Runs the daemon until it is told to stop. opts: foreground (keep stdio),
private_fd (an fd whose end of file means the owner is gone: stop
everything and exit), runtime (an ecosystem file: the container mode, in
the foreground, apps' output on stdout/stderr, exit 1 when an app ends
errored). Returns the exit status.
]]
-- A heap larger than this when requests begin to be served (a restore
-- of many apps) is collected then
M.SETTLE_KB = 8192

function M.run(opts)
  opts = opts or {}
  -- The JIT (off for the short CLI calls, main.c) and the collector's
  -- short pause (a small daemon: garbage collected sooner than Lua's
  -- default, heap x2) from when requests are served: until then the
  -- daemon runs each path once per app (a take-over's 100 apps spent
  -- half their CPU compiling traces run once, and a tenth collecting)
  collectgarbage("restart") -- (stopped by main.c for short verbs)
  collectgarbage("setpause", 200)
  collectgarbage("setstepmul", 400)
  home = util.home()
  if #home + #"/rpc.sock" > 107 then -- (a unix socket's path: 107 bytes at most)
    io.stderr:write(("pm: PM_HOME is too long for its socket (%d bytes; at most %d): %s\n")
      :format(#home, 107 - #"/rpc.sock", home))
    return 1
  end
  local ok, err = util.mkdir_p(home, 448) -- 0700
  if not ok then io.stderr:write("pm: ", err, "\n"); return 1 end
  local st = core.stat(home)
  if not st or st.type ~= "dir" then
    io.stderr:write("pm: PM_HOME is not a directory: ", home, "\n")
    return 1
  end
  ok, err = trusted_dir(home, "PM_HOME")
  if ok then
    core.mkdir(home .. "/logs", 493) -- 0755
    core.mkdir(home .. "/pids", 493) -- 0755
    ok, err = trusted_dir(home .. "/logs", "PM_HOME's logs/")
    if ok then ok, err = trusted_dir(home .. "/pids", "PM_HOME's pids/") end
  end
  if not ok then io.stderr:write("pm: ", err, "\n"); return 1 end
  core.chmod(home, 448)
  local keeper = require "pm.keeper"
  -- started by a keeper: its lock (held by the keeper across daemons)
  local lock, lerr = keeper.from_env(), nil
  if not lock then lock, lerr = core.lock(home .. "/pm.lock") end
  sock.lock, sock.lock_id = lock, lock and core.file_id(lock)
  if not lock then
    if lerr == "locked" then
      io.stderr:write("pm: a daemon already runs for ", home, "\n")
      return opts.runtime and 1 or 0 -- a lost race is fine; a runtime that runs nothing is not
    end
    io.stderr:write("pm: ", lerr, "\n")
    return 1
  end
  if not keeper.active() and keeper.wanted(opts) then
    -- this process becomes the keeper, which starts the daemon as its child
    local bin = util.pm_binary()
    local _, kerr = keeper.become(bin or "", { "daemon", opts.foreground and "--stdio" or nil }, lock,
      opts.foreground and true or false)
    io.stderr:write("pm: cannot start the keeper (", tostring(kerr), "): the daemon runs without one\n")
  end
  load_modules()
  -- The incremental collector only advances while the daemon allocates:
  -- the garbage of a burst (2,000 apps started, a long list sent) would
  -- stay until the next one (the next cycle begins at twice the heap).
  -- Half a second after the last reply, when the heap has grown by a
  -- sixteenth since the last full collection (2 MB at least), one full
  -- collection gives it back: a quiet daemon holds what it uses (a full
  -- collection of 10,000 apps' heap costs about 100 ms of CPU, once a
  -- burst). Nothing happens while nothing is asked.
  -- Deleted apps are let go of the same way once many went (a quarter of
  -- those there were, 64 at least): the JIT's compiled traces keep the
  -- objects they were made with (a closure of a request, and through it
  -- its list of records) until they are flushed, so after `pm delete all`
  -- of 2,000 apps a full collection alone left all their records and
  -- declarations in the heap (6 MB; 180 MB with 9,500 apps). Flushed, the
  -- traces are made again as the paths run.
  -- A journal's write is such a burst too, with no reply after it (the one
  -- a take-over or a start of 10,000 apps makes a second later: 24 MB of
  -- garbage kept until the collector's next cycle, at twice the heap).
  local settled, gc_timer, busy_at = collectgarbage("count"), nil, 0
  local gone_seen = 0
  local function when_quiet()
    -- (half a second after the last reply or write, not the first: the
    -- garbage of a list still being sent is not garbage yet)
    local quiet = core.mono() - busy_at
    if quiet < 500 then
      gc_timer = core.timer(500 - quiet, 0, when_quiet)
      return
    end
    gc_timer = nil
    local gone = sup.deleted - gone_seen
    local flush = gone >= 64 and gone * 3 >= sup.count()
    if flush then
      gone_seen = sup.deleted
      jit.flush()
    end
    if flush or collectgarbage("count") > settled + math.max(settled / 16, 2048) then
      collectgarbage()
      settled = collectgarbage("count")
    end
  end
  rpc.on_reply = function()
    busy_at = core.mono()
    if not gc_timer then gc_timer = core.timer(500, 0, when_quiet) end
  end
  require("pm.persist").on_written = rpc.on_reply
  -- The client that started this daemon waits for the end of the pipe it
  -- gave as stderr: a copy of it is closed once requests are served
  -- (daemon_init puts pm.log in its place), instead of polling the socket.
  local announce = core.dup(2)
  ok, err = core.daemon_init(not opts.foreground and (home .. "/pm.log") or nil)
  if not ok then io.stderr:write("pm: ", err, "\n"); return 1 end
  require("pm.fds").init()
  require("pm.cgroup").init(home)
  local takeover = keeper.takeover() -- (what a keeper hands this daemon, first)
  require("pm.logwal").start(takeover) -- (the last daemon's unwritten output, before any pipe is read)
  local old_pid = tonumber((util.read_file(home .. "/pm.pid") or ""):match("%d+"))
  M.pid_written = write_pid() -- (else tried again with the socket's checks)
  if keeper.pid then
    util.write_atomic(home .. "/keeper.pid", tostring(keeper.pid) .. "\n", { durable = false })
  else
    os.remove(home .. "/keeper.pid")
  end
  M.extra_pid_file = require("pm.pidfile").daemon_copy(os.getenv("PM2_PID_FILE_PATH"))
  require("pm.pidfile").pm2_name(home)
  if not opts.foreground then log.rotate_at(home .. "/pm.log") end -- (daemon_init made it stderr)
  -- how long the log writer waits for a FIFO's reader that reads nothing
  -- (its lines are dropped after, until it reads): PM_LOG_FIFO_WAIT_MS
  local fifo_wait = tonumber(os.getenv("PM_LOG_FIFO_WAIT_MS"))
  if fifo_wait and fifo_wait == fifo_wait then -- (not NaN; 0 .. 10 minutes)
    core.log_fifo_wait(math.floor(math.max(0, math.min(600000, fifo_wait))))
  end

  wire.ctx.home = home
  local cok, cerr = require("pm.appconf").load(home) -- (pm set's app configuration)
  if not cok then log.warn("%s", cerr) end
  wire.ctx.shutdown = shutdown
  wire.ctx.hand_over_exit = function() -- (methods.handover: the apps stay)
    shutting_down = true
    log.info("daemon %d exits; the keeper starts the next one", core.getpid())
    M.exit_code = 0
    core.stop_loop()
  end
  wire.ctx.errors = function() return M.errors or 0 end
  sup.init({ home = home, pm_bin = util.pm_binary(), changed = function(kind)
    if not shutting_down and not opts.runtime then persist.journal(home, sup.all, kind) end
  end, declared = function()
    -- new apps are in the journal before their processes start
    if not shutting_down and not opts.runtime then persist.journal_now(home, sup.all) end
  end, errored = opts.runtime and function(p)
    log.error("app %s is errored: pm runtime stops", p.name)
    shutdown(1)
  end })
  sup.set_echo(opts.runtime ~= nil)
  if opts.runtime then
    -- --health, --json, the grace period, the exit when no app is left (runtime.lua)
    local rok, rerr = require("pm.runtime").setup(opts, { all = sup.all, shutdown = shutdown,
      kill_leftovers = sup.kill_leftovers, closing = function() return shutting_down end })
    if not rok then io.stderr:write("pm: ", rerr, "\n"); return 1 end
  end
  -- sd_notify: one datagram socket for every app, NOTIFY_SOCKET
  local nfd = core.dgram_unix(home .. "/notify.sock")
  if nfd then
    sup.set_notify_path(home .. "/notify.sock")
    M.notify_watch = require("pm.readiness").watch_notify(nfd, "the daemon's user's apps")
  end
  -- the preload that lets Node apps in cluster mode listen on held sockets
  local preload = home .. "/cluster-preload.js"
  if util.write_atomic(preload, require("pm.preload").CLUSTER, { durable = false }) then
    sup.set_cluster_preload(preload)
  end
  -- a Lua error the core caught in a callback (the daemon goes on): counted
  -- (ping's errors), written to pm.log and published as daemon:error
  M.errors = 0
  core.on_error(function(msg)
    M.errors = M.errors + 1
    log.error("lua error: %s", msg)
    bus.publish("daemon:error", { at = core.now(), data = msg, count = M.errors })
  end)
  hook_api(opts.runtime)
  core.on_child(sup.on_child)
  -- requests are served once what the journal holds runs again
  recovery.recover(home, old_pid, takeover, function()
    local bound, serr = bind_socket()
    if not bound then
      log.error("cannot listen: %s", serr)
      M.exit_code = 1
      return core.stop_loop()
    end
    -- PM_HOME, the socket and the lock are watched by inotify (nothing to
    -- do, no wake-up, while nothing happens there); a slow timer catches
    -- what inotify cannot see (a parent folder renamed), a fast one stands
    -- in when inotify cannot be had
    local every = watch_home() and 10000 or 500
    M.keeper = core.timer(every, every, keep_socket)
    if announce then core.close(announce); announce = nil end
    keeper.listen(sup.on_child)
    require("pm.logwal").settle()
    keeper.ready()
    jit.on() -- the daemon lives long
    collectgarbage("setpause", 110)
    -- (the next collection starts where the last one said, with the pause
    -- of 200 until now: after thousands of apps were taken over, twice
    -- their heap. The first list of 9,800 kept apps grew the heap from 58
    -- to 103 MB before a collection began, VmRSS 85 -> 128 MB; collected
    -- now, the next one starts at 110 %.)
    if collectgarbage("count") > M.SETTLE_KB then collectgarbage() end
    log.info("daemon %d ready (pm %s, PM_HOME %s%s)", core.getpid(), util.VERSION, home,
      keeper.active() and (", keeper " .. tostring(keeper.pid)) or "")
    if opts.runtime then
      methods.start({ path = opts.runtime, env = opts.env, only = opts.only }, nil, function(rerr)
        if rerr then
          log.error("pm runtime: %s", type(rerr) == "table" and rerr.message or rerr)
          return shutdown(1)
        end
        require("pm.runtime").started()
      end)
    end
  end)
  local S = core.signals
  local function reload_logs()
    local reopened, rerr = sup.reload_logs()
    if not reopened then log.error("%s", rerr) end
  end
  M.signals = {
    core.signal(S.SIGTERM, function()
      if opts.runtime then require("pm.runtime").on_term() end
      shutdown(0)
    end),
    core.signal(S.SIGINT, function()
      if opts.runtime then require("pm.runtime").on_term() end
      shutdown(0)
    end),
    core.signal(S.SIGHUP, reload_logs),
    core.signal(S.SIGUSR2, reload_logs),
  }
  if opts.private_fd then
    M.owner = core.stream(opts.private_fd, function() end, function()
      log.info("the script that owns this private daemon ended")
      shutdown(0)
    end)
  end
  if M.exit_code then return M.exit_code end
  M.exit_code = 0
  -- PM_PROFILE=<file> [PM_PROFILE_MODE=Fli1] [PM_PROFILE_DELAY=ms]:
  -- LuaJIT's sampling profiler over the daemon's life, or from DELAY ms
  -- after its start (a bench's set-up left out); LUA_PATH must reach
  -- LuaJIT's jit/p.lua
  local prof = os.getenv("PM_PROFILE")
  if prof then
    local function start() require("jit.p").start(os.getenv("PM_PROFILE_MODE") or "Fl", prof) end
    local delay = tonumber(os.getenv("PM_PROFILE_DELAY") or "")
    if delay then M.profile_timer = core.timer(delay, 0, start) else start() end
  end
  core.run()
  if prof then require("jit.p").stop() end
  return M.exit_code
end

M.hook_api = hook_api -- (the Lua reference's coverage test lists what hooks get)
return M
