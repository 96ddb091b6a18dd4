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

local M = {}

local SIGKILL = core.signals.SIGKILL
local ctx, by_pid, event = proc.ctx, proc.by_pid, proc.event

-- pid -> the process a reload replaced (reload.lua): its exit is its own
M.retirees = {}
-- record -> fn(why): a reload's replacement is starting (reload.lua); if
-- it dies before it is ready, fn puts the old process back
M.replacing = setmetatable({}, { __mode = "k" })

-- Signals the process group and every descendant that left it.
-- (The tree is remembered: what outlives the main process is killed when
-- it exits.)
function M.signal_tree(p, sig)
  if not p.pid or p.pid == 0 then return end
  local tree = core.proc_tree(p.pid)
  p.tree = p.tree or {}
  for _, pid in ipairs(tree) do
    if pid ~= p.pid then p.tree[pid] = (core.proc_stat(pid) or {}).start end
  end
  core.killpg(p.pgid, sig)
  for _, pid in ipairs(tree) do core.kill(pid, sig) end
end

-- Kills what is left of a stopped app's tree (descendants that left its
-- process group and ignored the stop signal).
function M.kill_leftovers(p)
  for pid, start in pairs(p.tree or {}) do
    if util.same_process(pid, start) then core.kill(pid, SIGKILL) end
  end
  p.tree = nil
end

local function apply_decision(p, decision, exit)
  p.unstable_restarts = decision.unstable_restarts
  p.prev_restart_delay = decision.prev_restart_delay
  if decision.action == "stop" then
    proc.act(p, lifecycle.fire(p, "rest"), nil, false)
  elseif decision.action == "errored" then
    log.warn("app %s (%d) exited too fast %d times in a row: errored", p.name, p.pm_id,
      p.unstable_restarts)
    proc.act(p, lifecycle.fire(p, "give_up"), { code = exit.code, signal = exit.signal })
    if ctx.errored then ctx.errored(p) end
  else
    local delay = decision.delay or 0
    local function go(looping)
      p.timer = nil
      p.restart_time = p.restart_time + 1
      event(p, "restart", nil, false)
      if not launch.launch(p, looping) then proc.ACTIONS.unpid(p) end
    end
    if delay > 0 then
      proc.act(p, lifecycle.fire(p, "delay"))
      p.timer = core.timer(delay, 0, go)
    else
      lifecycle.fire(p, "restart")
      -- after a fast exit: a crash loop (see launch.lua), where the
      -- channel too goes to the next process once the loop keeps its pipes
      local fast = (decision.unstable_restarts or 0) > 0
      if not (fast and p.kept) then launch.end_channel(p) end
      if not fast then launch.unkeep(p) end
      go(fast or nil)
    end
  end
  -- an immediate restart changes only the counters and the pid
  ctx.changed(decision.action == "restart" and "runtime" or nil)
end

-- The exit of a child of the daemon: an app's process, a helper's, or an
-- orphan adopted as subreaper.
function M.on_child(pid, code, signum)
  if children.on_exit(pid, code, signum) then return end
  local old = M.retirees[pid]
  if old then -- replaced by a reload
    M.retirees[pid] = nil
    return old.on_exit(code, signum)
  end
  local p = by_pid[pid]
  if not p then return end -- an orphan adopted as subreaper, or a failed spawn
  by_pid[pid] = nil
  -- the channel ends with the process (descendants may still hold it),
  -- unless the next process of a crash loop takes it (apply_decision)
  readiness.disarm(p)
  local back = M.replacing[p]
  if back then
    -- a reload's replacement died before it was ready: the old one stays
    M.replacing[p] = nil
    launch.release(p)
    core.killpg(p.pgid, SIGKILL)
    return back(("exited with %s before it was ready"):format(
      code ~= nil and ("code " .. code) or util.signame(signum)))
  end
  local uptime = core.mono() - (p.started or core.mono())
  -- what is left of the group goes with its leader: no duplicates on restart
  core.killpg(p.pgid, SIGKILL)
  M.kill_leftovers(p)
  p.pid = 0
  p.ready = nil
  p.exit_code = code ~= nil and code or (128 + (signum or 0))
  p.exit_signal = util.signame(signum)
  local stopping = p.status == "stopping"
  local exit = { code = code, signal = p.exit_signal, uptime = uptime,
    reason = stopping and (p.stop_reason == "restart" and "stop" or p.stop_reason) or "exit" }
  event(p, "exit", { code = code == nil and util.null or code,
    signal = exit.signal or util.null, reason = exit.reason })
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
  local decision = policy.decide(p.decl, p, exit)
  if p.decl.on_exit then
    local v = describe.hook(p, "on_exit", util.shallow_copy(exit))
    local hd, herr = hooks.decision(v)
    if herr then
      log.error("hook on_exit of %s: %s; the built-in policy decides", p.name, herr)
    elseif hd then
      decision.action, decision.delay = hd.action, hd.delay
    end
  end
  apply_decision(p, decision, exit)
end

return M
