-- The supervisor: the process table (one record per instance of an app,
-- keyed by pm_id), and the operations on it: add, start, stop, restart,
-- delete, reset, redeclare, reload, scale; which records a target names.
-- The only API daemon.lua uses. What a status becomes is lifecycle.lua's;
-- starting a process is launch.lua's, its exit exits.lua's; the record's
-- fields are listed in proc.lua.
local core = require "pm.core"
local util = require "pm.util"
local log = require "pm.log"
local bus = require "pm.bus"
local sockets = require "pm.sockets"
local proc = require "pm.proc"
local lifecycle = require "pm.lifecycle"
local applogs = require "pm.applogs"
local cgroup = require "pm.cgroup"
local pidfile = require "pm.pidfile"
local launch = require "pm.launch"
local channel = require "pm.channel"
local readiness = require "pm.readiness"
local rules = require "pm.rules"
local exits = require "pm.exits"
local reload = require "pm.reload"
local describe = require "pm.describe"
local policy = require "pm.policy"

local M = {}

local procs = {}      -- pm_id -> record
local by_id           -- M.all's order, nil once a record came or went
local by_pid = proc.by_pid
local next_id = 0
local ctx, event = proc.ctx, proc.event

local SIGKILL = core.signals.SIGKILL

M.MAX_INSTANCES = reload.MAX_INSTANCES

--[[ opts: home (PM_HOME), pm_bin, and the daemon's callbacks: changed(kind)
after every change ("runtime": only counters and pids), declared() once
new records exist (before their processes start), errored(p) when one
ends errored; notify_path (NOTIFY_SOCKET), cluster_preload (the preload
of Node apps in cluster mode), echo (pm runtime: apps' output on the
daemon's own stdout/stderr). ]]
function M.init(opts)
  ctx.home = opts.home
  ctx.pm_bin = opts.pm_bin
  ctx.changed = opts.changed or function() end
  ctx.errored = opts.errored
  ctx.declared = opts.declared or function() end
  bus.on_change(function() applogs.update_taps(M.all()) end)
  pidfile.init_spares()
end

function M.set_notify_path(path) ctx.notify_path = path end
function M.set_cluster_preload(path) ctx.cluster_preload = path end
M.set_echo = applogs.set_echo

-- ---- operations ----

local function finish_waiters(p, err)
  local w = p.waiters
  p.waiters = nil
  for _, fn in ipairs(w or {}) do fn(err) end
end

local function cancel_timer(p)
  if p.timer then p.timer:close(); p.timer = nil end
end

-- SIGKILL sent SURVIVE_MS ago and no exit came: a process that is gone
-- (or a zombie nobody reaps) had its exit lost on the way (a keeper's
-- report): it is taken as killed; one that is there survived (then the
-- stop says so, and the next stop signals it again).
M.SURVIVE_MS = 5000
local function after_sigkill(p)
  p.kill_timer = core.timer(M.SURVIVE_MS, 0, function()
    p.kill_timer = nil
    if p.status ~= "stopping" then return end
    if not exits.ours(p) then
      log.warn("app %s (%d): pid %d is gone but no exit of it came: taken as killed", p.name, p.pm_id, p.pid)
      return exits.lost_exit(p)
    end
    log.error("app %s (%d) pid %d survived SIGKILL", p.name, p.pm_id, p.pid)
    finish_waiters(p, ("process %d of %s survived SIGKILL"):format(p.pid, p.name))
  end)
end

-- Stops p; done(err) once its process is gone. reason: "stop" (a stop
-- asked for: it stays down) or the rule restarting it ("memory", ...).
function M.stop(p, done, reason)
  done = done or function() end
  reason = reason or "stop"
  if reason == "stop" then lifecycle.hold(p) end
  cancel_timer(p)
  if p.status == "stopping" then
    p.waiters = p.waiters or {}
    p.waiters[#p.waiters + 1] = done
    if not p.kill_timer then -- (an earlier stop's process survived SIGKILL: again)
      exits.signal_tree(p, SIGKILL)
      after_sigkill(p)
    end
    return
  end
  if not p.pid or p.pid == 0 then
    local cell = lifecycle.fire(p, "halt")
    if cell ~= lifecycle.IGNORE then
      proc.act(p, cell, nil, true)
      ctx.changed()
    end
    return done()
  end
  proc.act(p, lifecycle.fire(p, "stop"))
  p.stop_reason = reason
  p.waiters = { done }
  if (p.decl.shutdown_with_message or ctx.kill_use_message) and channel.send(p, "shutdown", true) then
    log.info("app %s (%d): sent \"shutdown\"", p.name, p.pm_id)
  else
    exits.signal_tree(p, util.signum(p.decl.kill_signal))
  end
  p.kill_timer = core.timer(p.decl.kill_timeout, 0, function()
    p.kill_timer = nil
    if p.status ~= "stopping" then return end
    log.warn("app %s (%d) still running %d ms after %s: SIGKILL", p.name, p.pm_id,
      p.decl.kill_timeout, p.decl.kill_signal)
    exits.signal_tree(p, SIGKILL)
    after_sigkill(p)
  end)
  ctx.changed()
end

-- (a start asked for of a stopped or errored app: a change of its
-- desired state, which the reply's journal write must hold: a SIGKILL of
-- the daemon right after the reply left it stopped, its process killed)
local function start_stopped(p)
  p.unstable_restarts = 0
  p.prev_restart_delay = 0
  p.unstable_since = policy.waits(p.decl) and core.mono() or nil
  local ok, err = launch.launch(p)
  ctx.changed()
  return ok, err
end

-- A restart that finds the daemon out of fds waits for them, where a first
-- start is errored at once: `pm restart all` of 9,500 apps under a limit
-- of 20,000 left 9,000 of them errored, each new process asking for its
-- pipes while other apps' last processes still held theirs. It is tried
-- again ("waiting restart", its error says why) after FD_RETRY_MS, twice
-- that, and so on up to a second apart, for FD_WAIT_MS at most; done()
-- when it runs, or with the last error. p.fd_wait: the wait under way.
M.FD_RETRY_MS, M.FD_WAIT_MS = 50, 30000
local fds_mod = require "pm.fds"
local function start_waiting(p, done, deadline, delay)
  deadline = deadline or core.mono() + M.FD_WAIT_MS
  local ok, err = start_stopped(p)
  if ok or p.status ~= "errored" or not fds_mod.is_short(p.error) or core.mono() >= deadline then
    p.fd_wait = nil
    return done(not ok and err or nil)
  end
  proc.act(p, lifecycle.fire(p, "delay"))
  local token = {}
  p.fd_wait = token
  delay = math.min((delay or M.FD_RETRY_MS / 2) * 2, 1000)
  core.timer(delay, 0, function()
    if p.fd_wait ~= token then return done() end -- (another restart's wait took it over)
    -- a stop, a delete, a start or a restart delay of its own ended the
    -- wait: a stop or a delete is said (the restart did not happen)
    if p.deleted or p.status ~= "waiting restart" or p.timer then
      p.fd_wait = nil
      if p.deleted then return done("deleted meanwhile: " .. p.name) end
      if p.status == "stopped" or p.status == "stopping" then return done("stopped meanwhile: " .. p.name) end
      return done(p.status == "errored" and p.error or nil)
    end
    start_waiting(p, done, deadline, delay)
  end)
end

-- Restarts p (stop, then start); opts.environ replaces its environment,
-- opts.decl its declaration; opts.reason: a rule's restart.
function M.restart(p, opts, done)
  opts = opts or {}
  -- PM2 counts the restart of a running process only: one of a stopped or
  -- errored app is its start
  local running = p.status == "online" or p.status == "launching"
  M.stop(p, function(err)
    if err then return done(err) end
    if not lifecycle.launchable(p) then return done("deleted meanwhile: " .. p.name) end
    if p.status ~= "stopped" and p.status ~= "errored" then return done() end -- another call started it
    if opts.environ then p.environ = opts.environ end
    if opts.decl then M.redeclare(p, opts.decl) end
    if running then p.restart_time = p.restart_time + 1 end
    event(p, "restart", opts.reason and { reason = opts.reason } or nil, opts.reason == nil)
    if opts.reason then
      -- a rule's restart is not a crash: the crash counters stay as they are
      local ok, serr = launch.launch(p)
      return done(not ok and serr or nil)
    end
    start_waiting(p, done)
  end, opts.reason or "restart")
end

-- Starts p if it does not run (start of a known name or id).
function M.start(p, done)
  if p.status == "stopping" then
    -- start once the stop it follows is done: never two processes
    p.waiters = p.waiters or {}
    p.waiters[#p.waiters + 1] = function(err)
      if err then return done(err) end
      M.start(p, done)
    end
    return
  end
  if p.status == "online" or p.status == "launching" then return M.restart(p, {}, done) end
  cancel_timer(p)
  local ok, err = start_stopped(p)
  done(not ok and err or nil)
end

-- The daemon's last act: SIGKILL to whatever it still tracks once every
-- app was stopped (a process a reload was replacing when the stop came,
-- or one put back when its replacement died) -> how many.
function M.kill_leftovers()
  ctx.closing = true -- what it kills is not restarted by on_child while the daemon finishes
  local n = 0
  local function kill(pid, q)
    if util.same_process(pid) then
      n = n + 1
      log.warn("app %s: pid %d still runs at the daemon's exit: SIGKILL", tostring(q.name), pid)
      if q.pgid and q.pgid > 1 then core.killpg(q.pgid, SIGKILL) end
      core.kill(pid, SIGKILL)
    end
  end
  for pid, q in pairs(by_pid) do kill(pid, q) end
  for pid, q in pairs(exits.retirees) do kill(pid, q) end
  exits.kill_escaping() -- (what exited processes left, still in its kill_timeout)
  return n
end

function M.delete(p, done)
  -- from now on nothing starts p again: a restart or start whose stop
  -- callback runs before this one would launch a process of a deleted app
  lifecycle.deleting(p)
  M.stop(p, function(err)
    if err then
      lifecycle.undelete(p)
      return done(err)
    end
    if p.deleted then return done() end
    lifecycle.deleted(p)
    launch.unkeep(p)
    procs[p.pm_id] = nil
    by_id = nil
    M.deleted = M.deleted + 1
    if next(procs) == nil then next_id = 0 end -- PM2's: ids start again once none is left
    rules.disarm(p)
    applogs.release(p)
    applogs.forget(p)
    cgroup.remove(p)
    local key, left = sockets.key(p.decl), false
    for _, o in ipairs(M.by_name(p.name)) do left = left or sockets.key(o.decl) == key end
    if not left then sockets.release(key) end
    event(p, "delete", nil, true)
    ctx.changed()
    done()
  end)
end

function M.reset(p)
  p.restart_time = 0
  p.unstable_restarts = 0
  p.prev_restart_delay = 0
  p.unstable_since = policy.waits(p.decl) and core.mono() or nil
  ctx.changed("runtime") -- counters only: batched
end

-- Whether declaration b's hooks are other code than a's
local HOOK_NAMES = { "on_exit", "on_start", "on_stop" }
local function hooks_changed(a, b)
  local same = require("pm.hooks").same_code
  for _, k in ipairs(HOOK_NAMES) do
    if not same(a[k], b[k]) then return true end
  end
  return false
end

-- p takes decl (its own rules and pid file follow; the timers of hooks
-- that are other code now end)
function M.redeclare(p, decl)
  if p.decl and p.decl ~= decl and p.hook_timers and hooks_changed(p.decl, decl) then
    local n = require("pm.hooks").drop_app(p)
    if n > 0 then log.info("app %s (%d): its hooks changed: the %d timers they set end", p.name, p.pm_id, n) end
  end
  p.decl = decl
  p.name = decl.name
  pidfile.assign(p)
  rules.arm_cron(p)
  rules.arm_watch(p)
end

-- p takes decl, a copy of its own with other instances (pm scale): the
-- same rules and files, and a crash loop keeps its pipes
function M.adopt(p, decl)
  launch.adopt(p, decl)
  p.decl = decl
end

-- The ids of records a failed start forgot were never seen by anyone:
-- the next app takes the lowest free one above every app left (PM2 gives
-- a start that fails no id at all).
function M.rewind_ids()
  local top = -1
  for id in pairs(procs) do top = math.max(top, id) end
  next_id = top + 1
end

--[[ A new record of decl's instance `instance`. saved (restore): { pm_id,
status, restart_time, created_at, keep_errored, hook_state, ipc_asked }; one saved as stopped
stays stopped; with keep_errored (crash recovery), one errored stays so. ]]
function M.new_record(decl, environ, origin, instance, saved)
  saved = saved or {}
  local id = tonumber(saved.pm_id)
  if not id or procs[id] then id = next_id end
  local p = proc.new({
    pm_id = id, instance = instance, created_at = tonumber(saved.created_at) or core.now(),
    restart_time = tonumber(saved.restart_time) or 0,
    unstable_restarts = 0, prev_restart_delay = 0, pid = 0,
    environ = environ, origin = origin,
  })
  lifecycle.init(p, saved.status == "stopped", saved.keep_errored)
  if policy.waits(decl) then p.unstable_since = core.mono() end -- (policy.decide's window)
  if type(saved.hook_state) == "string" then p.hook_state_text = saved.hook_state end -- (pm.state)
  if saved.ipc_asked == true then p.ipc_asked = true end -- (its processes get a channel)
  p.uid_marker = ("%d-%d-%d"):format(core.getpid(), p.pm_id, math.floor(core.now()))
  -- a process taken over carries its marker: the record keeps it
  if saved.adopt and type(saved.marker) == "string" then p.uid_marker = saved.marker end
  next_id = math.max(next_id, id + 1)
  M.redeclare(p, decl)
  procs[p.pm_id] = p
  by_id = nil
  return p
end

-- The records of a declaration (one per instance); those that autostart
-- start on the next turn of the loop, together: the apps a request
-- declares are written to the journal once, before any of them runs
-- (write-ahead: a daemon killed meanwhile leaves nothing unknown).
-- saved: per instance, as new_record takes it.
function M.add(decl, environ, origin, saved)
  local list = {}
  for i = 0, decl.instances - 1 do
    list[#list + 1] = M.new_record(decl, environ, origin, i, saved and saved[i + 1])
  end
  for i, p in ipairs(list) do
    local sv = saved and saved[i]
    local start = decl.autostart ~= false
    if sv then start = sv.status ~= "stopped" and not sv.keep_errored end
    if sv and type(sv.adopt) == "table" then
      -- its process still runs (a daemon before this one started it)
      launch.take(p, sv.adopt)
      if sv.status == "stopped" then M.stop(p, function() end) end -- (it was being stopped)
    elseif start then
      launch.queue(p)
    end
  end
  ctx.changed()
  return list
end

M.reload = reload.reload
M.scale = reload.scale

-- ---- the daemon's other entry points ----

M.on_child = exits.on_child
M.on_notify = readiness.on_notify
M.when_ready = readiness.when_ready
M.send = channel.send
M.describe_list = describe.describe_list
M.describe_tables = describe.describe_tables
M.selection = describe.selection

function M.flush(list) return applogs.flush(list) end
function M.reload_logs() return applogs.reload(M.all()) end

-- ---- queries ----

-- Every record by pm_id: a copy of the order kept since the last record
-- came or went (a list of 10,000 apps sorted them each time)
local function by_pm_id(a, b) return a.pm_id < b.pm_id end
function M.all()
  if not by_id then
    by_id = {}
    for _, p in pairs(procs) do by_id[#by_id + 1] = p end
    table.sort(by_id, by_pm_id)
  end
  local list = {}
  for i = 1, #by_id do list[i] = by_id[i] end
  return list
end

function M.get(id) return procs[id] end

function M.by_path(path)
  local list = {}
  for _, p in ipairs(M.all()) do
    if p.decl.script == path then list[#list + 1] = p end
  end
  return list
end

function M.by_name(name)
  local list = {}
  for _, p in pairs(procs) do
    if p.name == name then list[#list + 1] = p end
  end
  if #list > 1 then table.sort(list, function(a, b) return a.pm_id < b.pm_id end) end
  return list
end

-- PM2's regex targets are JavaScript's: \d and \D, which POSIX extended
-- expressions lack, become classes (outside brackets); the rest is ERE
-- (glibc's also knows \w, \s, \b).
local function ere(js)
  local out, i, in_class = {}, 1, false
  while i <= #js do
    local c = js:sub(i, i)
    if c == "\\" and i < #js then
      local n = js:sub(i + 1, i + 1)
      if not in_class and n == "d" then out[#out + 1] = "[0-9]"
      elseif not in_class and n == "D" then out[#out + 1] = "[^0-9]"
      else out[#out + 1] = c .. n end
      i = i + 2
    else
      if c == "[" and not in_class then in_class = true
      elseif c == "]" and in_class then in_class = false end
      out[#out + 1] = c
      i = i + 1
    end
  end
  return table.concat(out)
end

-- "/re/" (PM2: a target between slashes) -> the records whose name the
-- regex matches, by pm_id | nil, message, "params" (not a regex)
M.REGEX_MAX, M.REGEX_MAX_BOUND = 256, 20
function M.by_regex(target)
  -- a pattern is compiled into the daemon's memory: counted repetitions
  -- nest into sizes that multiply ("((a{1,100}){1,100}){1,100}" took 1 GB)
  if #target > M.REGEX_MAX then
    return nil, ("bad regex: longer than %d characters"):format(M.REGEX_MAX), "params"
  end
  local braces = 0
  for lo, hi in target:gmatch("{(%d*),?(%d*)}") do
    braces = braces + 1
    if (tonumber(lo) or 0) > M.REGEX_MAX_BOUND or (tonumber(hi) or 0) > M.REGEX_MAX_BOUND or braces > 2 then
      return nil, ("bad regex %s: at most 2 counted repetitions {n,m}, each up to %d")
        :format(target, M.REGEX_MAX_BOUND), "params"
    end
  end
  local all = M.all()
  local names = {}
  for i, p in ipairs(all) do names[i] = p.name end
  local hits, err = core.regex_match(ere(target:sub(2, -2)), names)
  if not hits then return nil, ("bad regex %s: %s"):format(target, err), "params" end
  local list = {}
  for i, k in ipairs(hits) do list[i] = all[k] end
  return list
end

-- A target: pm_id, name, "all", a namespace, a /regex/ on names, an app's
-- script (an absolute path, when no name or namespace is that), or a
-- list of those (the records of each, once) -> list of records | nil,
-- message, kind ("params": not a target at all)
function M.resolve(target)
  if target == nil then return nil, "a target is required" end
  if type(target) == "table" and #target > 0 then
    local list, seen = {}, {}
    for _, t in ipairs(target) do
      local some, err, kind = M.resolve(t)
      if not some then return nil, err, kind end
      for _, p in ipairs(some) do
        if not seen[p] then seen[p] = true; list[#list + 1] = p end
      end
    end
    return list
  end
  if type(target) ~= "string" and type(target) ~= "number" then
    return nil, "a target is a name, an id, \"all\", a namespace, a /regex/ or a list of them", "params"
  end
  local list = {}
  local id = tonumber(target)
  if id and type(target) == "string" and #M.by_name(target) > 0 then
    list = M.by_name(target) -- (PM2: an app named "455" before id 455)
  elseif id then
    if procs[id] then list[1] = procs[id] end
  elseif target == "all" then
    list = M.all()
  elseif #target > 2 and target:match("^/.*/$") then
    local err, kind
    list, err, kind = M.by_regex(target)
    if not list then return nil, err, kind end
    if #list == 0 then return nil, "no process name matches " .. target end
  else
    target = tostring(target)
    list = M.by_name(target)
    if #list == 0 then
      for _, p in ipairs(M.all()) do
        if p.decl.namespace == target then list[#list + 1] = p end
      end
    end
    if #list == 0 and target:sub(1, 1) == "/" then -- (PM2: the apps of a script)
      for _, p in ipairs(M.all()) do
        if p.decl.script == target then list[#list + 1] = p end
      end
    end
  end
  if #list == 0 and target ~= "all" then
    return nil, "process or namespace not found: " .. tostring(target)
  end
  return list
end

function M.count() local n = 0; for _ in pairs(procs) do n = n + 1 end; return n end
-- records deleted since the daemon started (daemon.lua lets go of what
-- they held after many)
M.deleted = 0

return M
