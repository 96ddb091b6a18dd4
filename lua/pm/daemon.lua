-- The daemon: PM_HOME, the one-daemon lock, the control socket and who
-- may use it, signals, its Lua errors, the daemon-side API of hooks, and
-- its stop (every app first, dependents before what they depend on). The
-- wire's methods are methods.lua's; bringing apps back, recovery.lua's.
local core = require "pm.core"
local util = require "pm.util"
local log = require "pm.log"
local rpc = require "pm.rpc"
local bus = require "pm.bus"
local sup = require "pm.supervisor"
local persist = require "pm.persist"
local recovery = require "pm.recovery"
local wire = require "pm.methods"

local methods = wire.methods

local M = {}

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
      os.remove(home .. "/notify.sock")
      require("pm.readiness").close_notify() -- (those of other users' apps)
      log.info("daemon %d exits", core.getpid())
      M.exit_code = code
      core.stop_loop()
    end
    if before_exit then before_exit(finish) else finish() end
  end)
end

-- ---- the API hooks see as `pm` (actions run after the hook returns) ----

local function hook_api()
  local api = require("pm.hooks").api
  local function later(fn)
    core.timer(0, 0, function()
      local ok, err = pcall(fn)
      if not ok then log.error("hook action failed: %s", err) end
    end)
  end
  local function act(op)
    return function(target)
      local list, err = sup.resolve(target)
      if not list then return nil, err end
      later(function()
        for _, p in ipairs(list) do
          op(p, function(e) if e then log.warn("hook action on %s: %s", p.name, e) end end)
        end
      end)
      return true
    end
  end
  api.restart = act(function(p, cb) sup.restart(p, {}, cb) end)
  api.stop = act(sup.stop)
  api.start = act(sup.start)
  api.list = function() return sup.describe_tables(sup.all()) end
  api.describe = function(target)
    local list = sup.resolve(target)
    return sup.describe_tables(list or {})
  end
  api.publish = function(event, data)
    if type(event) ~= "string" then return nil, "publish: an event name expected" end
    local copy = util.deep_copy(data)
    later(function() bus.publish(event, copy) end)
    return true
  end
  api.log = function(...)
    local t = {}
    for i = 1, select("#", ...) do t[i] = tostring((select(i, ...))) end
    log.info("hook: %s", table.concat(t, " "))
    return true
  end
end

-- ---- set-up ----

local function on_accept(lfd)
  while true do
    local fd, uid = core.accept(lfd)
    if not fd then
      if uid ~= "again" then log.warn("%s", uid) end
      return
    end
    if uid ~= my_uid and uid ~= 0 then
      log.warn("refused a client with uid %d", uid)
      core.close(fd)
    else
      rpc.serve(fd, uid, methods, function(c) bus.unsubscribe(c) end)
    end
  end
end

--[[
Runs the daemon until it is told to stop. opts: foreground (keep stdio),
private_fd (an fd whose end of file means the owner is gone: stop
everything and exit), runtime (an ecosystem file: the container mode, in
the foreground, apps' output on stdout/stderr, exit 1 when an app ends
errored). Returns the exit status.
]]
function M.run(opts)
  opts = opts or {}
  jit.on() -- off for the short CLI calls (main.c); the daemon lives long
  collectgarbage("restart") -- (stopped by main.c for short verbs)
  -- collect garbage sooner than Lua's default (heap x2): a small daemon
  collectgarbage("setpause", 110)
  collectgarbage("setstepmul", 400)
  -- The incremental collector only advances while the daemon allocates:
  -- the garbage of a burst (2,000 apps started, a long list sent) would
  -- stay until the next one. Half a second after the last reply, when the
  -- heap has grown by a quarter since the last full collection, one full
  -- collection gives it back. Nothing happens while nothing is asked.
  local settled, gc_timer = collectgarbage("count"), nil
  rpc.on_reply = function()
    if gc_timer then return end
    gc_timer = core.timer(500, 0, function()
      gc_timer = nil
      if collectgarbage("count") > settled * 1.25 then
        collectgarbage()
        settled = collectgarbage("count")
      end
    end)
  end
  home = util.home()
  local ok, err = util.mkdir_p(home, 448) -- 0700
  if not ok then io.stderr:write("pm: ", err, "\n"); return 1 end
  local st = core.stat(home)
  if not st or st.type ~= "dir" then
    io.stderr:write("pm: PM_HOME is not a directory: ", home, "\n")
    return 1
  end
  core.chmod(home, 448)
  local lock, lerr = core.lock(home .. "/pm.lock")
  if not lock then
    if lerr == "locked" then
      io.stderr:write("pm: a daemon already runs for ", home, "\n")
      return opts.runtime and 1 or 0 -- a lost race is fine; a runtime that runs nothing is not
    end
    io.stderr:write("pm: ", lerr, "\n")
    return 1
  end
  -- The client that started this daemon waits for the end of the pipe it
  -- gave as stderr: a copy of it is closed once requests are served
  -- (daemon_init puts pm.log in its place), instead of polling the socket.
  local announce = core.dup(2)
  ok, err = core.daemon_init(not opts.foreground and (home .. "/pm.log") or nil)
  if not ok then io.stderr:write("pm: ", err, "\n"); return 1 end
  core.mkdir(home .. "/logs", 493) -- 0755
  core.mkdir(home .. "/pids", 493) -- 0755
  local old_pid = tonumber((util.read_file(home .. "/pm.pid") or ""):match("%d+"))
  util.write_atomic(home .. "/pm.pid", tostring(core.getpid()) .. "\n")

  wire.ctx.home = home
  wire.ctx.shutdown = shutdown
  wire.ctx.errors = function() return M.errors or 0 end
  sup.init({ home = home, pm_bin = util.pm_binary(), changed = function(kind)
    if not shutting_down and not opts.runtime then persist.journal(home, sup.all, kind) end
  end, declared = function()
    -- new apps are in the journal before their processes start
    if not shutting_down and not opts.runtime then persist.journal_now(home, sup.all()) end
  end, errored = opts.runtime and function(p)
    log.error("app %s is errored: pm runtime stops", p.name)
    shutdown(1)
  end })
  sup.set_echo(opts.runtime ~= nil)
  -- sd_notify: one datagram socket for every app, NOTIFY_SOCKET
  local nfd = core.dgram_unix(home .. "/notify.sock")
  if nfd then
    sup.set_notify_path(home .. "/notify.sock")
    M.notify_watch = core.watch_read(nfd, function()
      while true do
        local data, pid = core.recv_cred(nfd)
        if not data then break end
        sup.on_notify(pid, data)
      end
    end)
  end
  -- the preload that lets Node apps in cluster mode listen on held sockets
  local preload = home .. "/cluster-preload.js"
  if util.write_atomic(preload, require("pm.preload").CLUSTER) then sup.set_cluster_preload(preload) end
  -- a Lua error the core caught in a callback (the daemon goes on): counted
  -- (ping's errors), written to pm.log and published as daemon:error
  M.errors = 0
  core.on_error(function(msg)
    M.errors = M.errors + 1
    log.error("lua error: %s", msg)
    bus.publish("daemon:error", { at = core.now(), data = msg, count = M.errors })
  end)
  hook_api()
  core.on_child(sup.on_child)
  -- requests are served once what the journal holds runs again
  recovery.recover(home, old_pid, function()
    os.remove(home .. "/rpc.sock")
    local lfd, serr = core.listen_unix(home .. "/rpc.sock")
    if not lfd then
      log.error("cannot listen: %s", serr)
      M.exit_code = 1
      return core.stop_loop()
    end
    M.listener = core.watch_read(lfd, function() on_accept(lfd) end)
    if announce then core.close(announce); announce = nil end
    log.info("daemon %d ready (pm %s, PM_HOME %s)", core.getpid(), util.VERSION, home)
    if opts.runtime then
      methods.start({ path = opts.runtime, env = opts.env, only = opts.only }, nil, function(rerr)
        if rerr then
          log.error("pm runtime: %s", type(rerr) == "table" and rerr.message or rerr)
          shutdown(1)
        end
      end)
    end
  end)
  local S = core.signals
  M.signals = {
    core.signal(S.SIGTERM, function() shutdown(0) end),
    core.signal(S.SIGINT, function() shutdown(0) end),
    core.signal(S.SIGHUP, function() sup.reload_logs() end),
    core.signal(S.SIGUSR2, function() sup.reload_logs() end),
  }
  if opts.private_fd then
    M.owner = core.stream(opts.private_fd, function() end, function()
      log.info("the script that owns this private daemon ended")
      shutdown(0)
    end)
  end
  if M.exit_code then return M.exit_code end
  M.exit_code = 0
  -- PM_PROFILE=<file> [PM_PROFILE_MODE=Fli1]: LuaJIT's sampling profiler
  -- over the daemon's life (with LUA_PATH reaching LuaJIT's jit/p.lua)
  local prof = os.getenv("PM_PROFILE")
  if prof then require("jit.p").start(os.getenv("PM_PROFILE_MODE") or "Fl", prof) end
  core.run()
  if prof then require("jit.p").stop() end
  return M.exit_code
end

M.methods = methods
return M
