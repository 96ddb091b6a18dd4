-- The exit of an app's process: what is left of its tree is killed, the
-- policy (policy.lua, then the app's on_exit hook) decides what follows,
-- and that decision is carried out (restart now, after a delay, stay
-- down, errored). Also the stop signal sent to a process tree. Decides
-- nothing itself: policy.lua and the hooks do.
local core = require "pm.core"
local util = require "pm.util"
local log = require "pm.log"
local policy = require "pm.policy"
local hooks = require "pm.hooks"
local proc = require "pm.proc"
local lifecycle = require "pm.lifecycle"
local launch = require "pm.launch"
local readiness = require "pm.readiness"
local describe = require "pm.describe"
local children = require "pm.children"
local cgroup = require "pm.cgroup"
local fdcost = require "pm.fds"

local M = {}

local SIGKILL = core.signals.SIGKILL
local ctx, by_pid, event = proc.ctx, proc.by_pid, proc.event

-- pid -> the process a reload replaced (reload.lua): its exit is its own
M.retirees = {}
-- record -> fn(why): a reload's replacement is starting (reload.lua); if
-- it dies before it is ready, fn puts the old process back
M.replacing = setmetatable({}, { __mode = "k" })

--[[ What belongs to an app's process (kill_mode, systemd's KillMode):
  "tree" (the default; systemd's control-group): its process group, every
    descendant, and what left both: a descendant whose parent died is
    adopted by the daemon (a child subreaper), and is the app's when its
    environment carries the app's PM_APP_UID;
  "group": its process group only (what left it lives on);
  "process": the process only (PM2's treekill = false).
The stop signal goes to all of it; SIGKILL after kill_timeout; and when
the main process exits, what is left of it is killed before anything else
happens (a restart, the end of a stop, delete or kill). ]]
local function kill_mode(p)
  local d = p.decl or {} -- (a process a reload replaced has none: "tree")
  return d.kill_mode or (d.treekill == false and "process") or "tree"
end

-- The daemon's children it did not start: an orphan goes to the first
-- live thread of its subreaper, the daemon's main thread, whose list is
-- read at every exit (parsed and filtered in C: with 10,000 apps the list
-- is 60 KB, and none of them is an orphan).
-- An exit of an app being stopped may use a list read in the last
-- STOP_SHARE_MS: the stop put its tree of the time in p.tree already (all
-- of it is killed), so the list only adds the orphans it had before, and
-- a mass stop (pm delete all, the daemon's own stop) reads the list a few
-- times instead of once an app (the read is O(number of children) in the
-- kernel: 2,000 apps' delete spent half its CPU there).
local STOP_SHARE_MS = 20
local shared_list, shared_at = nil, -math.huge
local function unknown_children(stopping)
  local now = core.mono()
  if stopping and shared_list and now - shared_at < STOP_SHARE_MS then return shared_list end
  shared_list, shared_at = core.children(nil, by_pid, M.retirees), now
  return shared_list
end

-- The daemon's children it did not start (adopted orphans) that carry p's
-- marker, and their descendants: pid -> start time, added to into. Costs
-- a read of the daemon's list of children and one of /proc/PID/environ
-- per child it does not know (none, but for the helpers running).
local function adopted(p, into, stopping)
  -- in a cgroup of its own: its members, every process of its tree
  -- wherever it went (no read of the daemon's children, no marker)
  local members = p.cgroup and cgroup.members(p, stopping)
  if members then
    for _, pid in ipairs(members) do
      -- (a process a reload replaced is in the group until it is gone:
      -- its own retirement signals it, once)
      if pid ~= p.pid and not into[pid] and not M.retirees[pid] then
        into[pid] = (core.proc_stat(pid) or {}).start
      end
    end
    return into
  end
  local needle = p.uid_marker and ("PM_APP_UID=" .. p.uid_marker .. "\0")
  if not needle then return into end
  for _, pid in ipairs(unknown_children(stopping)) do
    local env = core.proc_environ(pid)
    if env and (env:find("\0" .. needle, 1, true) or env:sub(1, #needle) == needle) then
      for _, q in ipairs(core.proc_tree(pid)) do into[q] = (core.proc_stat(q) or {}).start end
    end
  end
  return into
end

-- Escapees of a process that exited by itself (pid -> start) get its stop
-- signal, SIGKILL after kill_timeout. -> a function that says whether
-- they are all gone. (escaping: the sets not yet killed, for the daemon's
-- exit)
M.escaping = {}
local function stop_escapees(p, set)
  local sig = util.signum(p.decl.kill_signal) or core.signals.SIGINT
  for pid in pairs(set) do core.kill(pid, sig) end
  local function alive()
    for pid, start in pairs(set) do
      if util.same_process(pid, start) then return true end
    end
    return false
  end
  M.escaping[set] = true
  core.timer(p.decl.kill_timeout, 0, function()
    if M.escaping[set] and alive() then
      log.warn("app %s (%d): what its exited process left still runs %d ms after %s: SIGKILL",
        p.name, p.pm_id, p.decl.kill_timeout, p.decl.kill_signal)
    end
    M.kill_escaping(set)
  end)
  return function() return not alive() end
end

-- SIGKILL to the escapees not yet gone (of set, or all of them).
function M.kill_escaping(set)
  for s in pairs(set and { [set] = true } or M.escaping) do
    M.escaping[s] = nil
    for pid, start in pairs(s) do
      if util.same_process(pid, start) then core.kill(pid, SIGKILL) end
    end
  end
end

-- The start time (/proc's) of a process taken over, as the take-over
-- found it: record -> { pid, start, started } (weak; of that process only)
local taken_start = setmetatable({}, { __mode = "k" })
function M.note_start(p, start) taken_start[p] = start and { p.pid, start, p.started } or nil end

-- p's process's start time, where it is known: the take-over's, or what
-- the journal noted at its first write after the spawn -> start | nil
local function start_of(p)
  local t = taken_start[p]
  if t and t[1] == p.pid and t[3] == p.started then return t[2] end
  return require("pm.persist").start_of(p)
end

-- p's process's /proc stat when the process is still p's: not gone, and
-- of the start time known (a process the keeper reaped may be gone before
-- its exit reaches the daemon, thousands of apps stopping, and its pid
-- another process's already) -> st | nil
local function still(p)
  local st = p.pid and p.pid > 0 and core.proc_stat(p.pid)
  if not st then return nil end
  local start = start_of(p)
  if start and st.start ~= start then return nil end
  return st
end

-- Whether p's process is still there and running (a zombie is not)
function M.ours(p)
  local st = still(p)
  return st ~= nil and st.state ~= "Z"
end

-- Signals what belongs to p's process (kill_mode above). What outlives
-- the main process is remembered and killed when it exits. A process
-- gone (reaped, its exit not come yet) is not signalled: its pid and
-- group may be another's now (its leftovers go when its exit comes).
function M.signal_tree(p, sig)
  if not still(p) then return end
  local mode = kill_mode(p)
  if mode == "process" then return core.kill(p.pid, sig) end
  core.killpg(p.pgid, sig)
  if mode == "group" then return end
  p.tree = p.tree or {}
  for _, pid in ipairs(core.proc_tree(p.pid)) do
    if pid ~= p.pid then p.tree[pid] = (core.proc_stat(pid) or {}).start end
  end
  adopted(p, p.tree, true)
  -- the group had it: again only to what left the group (a second
  -- SIGINT is a second handler call in Node)
  local function outside(pid)
    local st = core.proc_stat(pid)
    return st and st.pgrp ~= p.pgid
  end
  if outside(p.pid) then core.kill(p.pid, sig) end
  for pid in pairs(p.tree) do
    if outside(pid) then core.kill(pid, sig) end
  end
end

-- Kills what is left of a stopped app's tree (descendants that left its
-- process group and ignored the stop signal).
function M.kill_leftovers(p)
  local tree = p.tree
  if not tree then return end
  for pid, start in pairs(tree) do
    if util.same_process(pid, start) then core.kill(pid, SIGKILL) end
  end
  p.tree = nil
end

-- A restart that found the daemon out of fds (a burst of connections, a
-- moment of many spawns): the app waits for a restart and tries again
-- once a second until it can (a stop, a delete or a restart of it ends
-- the wait), as a restart would have; its error says why meanwhile.
M.SHORT_RETRY_MS = 1000
-- a restart held back while the log writer is behind looks again this often
M.HELD_BACK_MS = 50
local function retry_short(p)
  if ctx.closing or p.deleted or p.status ~= "errored" or not fdcost.is_short(p.error) then return end
  proc.act(p, lifecycle.fire(p, "delay"))
  p.timer = core.timer(M.SHORT_RETRY_MS, 0, function()
    p.timer = nil
    if ctx.closing or p.deleted or p.status ~= "waiting restart" then return end
    if not launch.launch(p) then
      proc.ACTIONS.unpid(p)
      retry_short(p)
    end
  end)
end

-- The restart an exit decided, now (by_hook: its on_exit hook decided
-- it; looping: in a crash loop)
local HOOK_REASON = { reason = "hook" } -- (read only)
local restart
local function restarter(p, by_hook) return function() return restart(p, by_hook) end end
restart = function(p, by_hook, looping)
  p.timer = nil
  if p.status == "waiting restart" then
    if launch.held_back(p) then -- (see apply_decision)
      p.timer = core.timer(M.HELD_BACK_MS, 0, restarter(p, by_hook))
      return
    end
    launch.settle(p)
  end
  p.restart_time = p.restart_time + 1
  -- (one its on_exit hook decided says so: pm_restarts_total{reason="hook"})
  event(p, "restart", by_hook and HOOK_REASON or nil, false)
  if not launch.launch(p, looping) then
    proc.ACTIONS.unpid(p)
    retry_short(p)
  end
end

-- gone: nil, or a function that says whether the escapees of the exited
-- process are gone (a restart waits for it, at most kill_timeout)
local function apply_decision(p, decision, exit, gone)
  p.unstable_restarts = decision.unstable_restarts
  p.prev_restart_delay = decision.prev_restart_delay
  if decision.action == "stop" then
    proc.act(p, lifecycle.fire(p, "rest"), nil, false)
  elseif decision.action == "errored" then
    if decision.reason then -- (its on_exit said so: pm2_env.error says why)
      log.warn("app %s (%d) is errored by its on_exit: %s", p.name, p.pm_id, decision.reason)
      p.error = decision.reason
    else
      log.warn("app %s (%d) exited too fast %d times in a row: errored", p.name, p.pm_id,
        p.unstable_restarts)
    end
    proc.act(p, lifecycle.fire(p, "give_up"), { code = exit.code, signal = exit.signal })
    if ctx.errored then ctx.errored(p) end
  else
    local delay = decision.delay or 0
    local by_hook = decision.by_hook
    if gone then
      -- what the last process left (escapees) ends first (systemd's
      -- control-group: a restart never runs beside them)
      proc.act(p, lifecycle.fire(p, "delay"))
      local t0, last = core.mono(), delay + p.decl.kill_timeout + 20
      local function poll()
        local waited = core.mono() - t0
        if waited >= delay and (waited >= last or gone()) then return restart(p, by_hook) end
        p.timer = core.timer(20, 0, poll)
      end
      poll()
    elseif delay > 0 then
      proc.act(p, lifecycle.fire(p, "delay"))
      p.timer = core.timer(delay, 0, restarter(p, by_hook))
    elseif launch.held_back(p) then
      -- the log writer is behind on what the last process wrote: the next
      -- one waits for it (restart), not a pipe more each run beside the paused
      -- ones (an app's FIFO that no one read made the daemon run out of fds)
      log.warn("app %s (%d): its restart waits for the log writer, which is behind on what its last run "
        .. "wrote (a log file that does not take it: a FIFO no one reads, a disk that hangs?)", p.name, p.pm_id)
      proc.act(p, lifecycle.fire(p, "delay"))
      p.timer = core.timer(M.HELD_BACK_MS, 0, restarter(p, by_hook))
    else
      lifecycle.fire(p, "restart")
      -- after a fast exit: a crash loop (see launch.lua), where the
      -- channel too goes to the next process once the loop keeps its pipes
      local fast = (decision.unstable_restarts or 0) > 0
      if not (fast and p.kept) then launch.end_channel(p) end
      if not fast then launch.unkeep(p) end
      restart(p, by_hook, fast or nil)
    end
  end
  -- an immediate restart changes only the counters and the pid
  ctx.changed(decision.action == "restart" and "runtime" or nil)
end

-- The exit of a child of the daemon: an app's process, a helper's, or an
-- orphan adopted as subreaper.
local handle_exit
-- start: the ended process's start time, when the keeper says it: an exit
-- it reports late may be of a pid that is another process of an app's by
-- now (known by its start time): that one is not taken as ended
function M.on_child(pid, code, signum, start)
  if children.on_exit(pid, code, signum) then return end
  local old = M.retirees[pid]
  if old then -- replaced by a reload
    M.retirees[pid] = nil
    return old.on_exit(code, signum)
  end
  local p = by_pid[pid]
  if not p then return end -- an orphan adopted as subreaper, or a failed spawn
  local known = start and start_of(p)
  if known and known ~= start then
    log.warn("app %s (%d): an exit of an earlier process %d came late: not its process's", p.name, p.pm_id, pid)
    return
  end
  by_pid[pid] = nil
  return handle_exit(p, pid, code, signum)
end

-- p's process is gone and its exit never came (lost on the way: a
-- keeper's report): handled as a SIGKILL's, without signalling its pid or
-- its group, another process's now maybe (what is left of its tree goes
-- by identity)
function M.lost_exit(p)
  local pid = p.pid
  if by_pid[pid] == p then by_pid[pid] = nil end
  return handle_exit(p, pid, nil, SIGKILL, true)
end

-- (an exit's set of escapees, empty until one has some: a crash loop's
-- exits make no table)
local spare = {}
local EXIT_EXTRA = {}
handle_exit = function(p, pid, code, signum, lost)
  -- the channel ends with the process (descendants may still hold it),
  -- unless the next process of a crash loop takes it (apply_decision)
  readiness.disarm(p)
  local back = M.replacing[p]
  if back then
    -- a reload's replacement died before it was ready: the old one stays
    M.replacing[p] = nil
    launch.release(p)
    if not lost then core.killpg(p.pgid, SIGKILL) end
    return back(("exited with %s before it was ready"):format(
      code ~= nil and ("code " .. code) or util.signame(signum)))
  end
  local uptime = core.mono() - (p.started or core.mono())
  -- what is left of its tree goes with it (kill_mode): no duplicates on
  -- restart, nothing left running by a stop, delete or kill
  local mode = kill_mode(p)
  local stopping = p.status == "stopping"
  local escaped
  if mode ~= "process" then
    -- (before the group dies: its members orphaned now are adopted already)
    if mode == "tree" then
      if stopping then
        p.tree = adopted(p, p.tree or {}, true) -- they had the stop signal: SIGKILL now
      else
        escaped = adopted(p, spare) -- the stop signal first (below)
        if next(escaped) == nil then escaped = nil else spare = {} end
      end
    end
    if not lost then core.killpg(p.pgid, SIGKILL) end
  end
  M.kill_leftovers(p)
  local gone = escaped and stop_escapees(p, escaped)
  hooks.process_ended(p, pid) -- (the timers its on_start set)
  p.pid = 0
  p.ready = nil
  p.exit_code = code -- (nil when a signal ended it: Node's, and so PM2's)
  p.exit_signal = util.signame(signum)
  local exit = { code = code, signal = p.exit_signal, uptime = uptime,
    reason = stopping and (p.stop_reason == "restart" and "stop" or p.stop_reason) or "exit" }
  local x = EXIT_EXTRA -- (read by event before it returns; a table less an exit)
  x.code, x.signal, x.reason, x.pid = code == nil and util.null or code, exit.signal or util.null, exit.reason, pid
  event(p, "exit", x)
  readiness.fail_ready(p, readiness.exited_early)
  if stopping then
    if p.kill_timer then p.kill_timer:close(); p.kill_timer = nil end
    proc.act(p, lifecycle.fire(p, "stopped"), nil, exit.reason == "stop")
    if p.stop_reason == "stop" then describe.hook(p, "on_stop") end
    ctx.changed()
    local w = p.waiters
    p.waiters = nil
    for _, fn in ipairs(w or {}) do fn() end
    return
  end
  local decision = policy.decide(p.decl, p, exit, core.mono())
  local stopped_by_hook = false
  if p.decl.on_exit then
    local v = describe.hook(p, "on_exit", util.shallow_copy(exit))
    local hd, herr = hooks.decision(v)
    if herr then
      local at = hooks.where(p.decl.on_exit) -- (what it returned has no line of its own: the hook's)
      if at then herr = at .. ": " .. herr end
      log.error("hook on_exit of %s: %s; the built-in policy decides", p.name, herr)
      -- (an answer that means nothing is a failure as an error is: seen
      -- on the bus and in the description too)
      local ok, err = pcall(hooks.on_error, p, "on_exit of " .. p.name, herr)
      if not ok then log.error("hook:error of on_exit: %s", err) end
    elseif hd then
      decision.action, decision.delay, decision.reason = hd.action, hd.delay, hd.reason
      decision.by_hook = true
      stopped_by_hook = hd.action == "stop"
    end
  end
  apply_decision(p, decision, exit, gone)
  -- on_exit's "stop" is a stop the app asked for: on_stop runs as after
  -- `pm stop` (a stop of the built-in policy, autorestart off or a
  -- stop_exit_code, is not: the app ended, nobody stopped it)
  if stopped_by_hook and p.status == "stopped" then describe.hook(p, "on_stop") end
end

return M
