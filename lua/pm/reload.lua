-- pm reload and pm scale. A reload replaces an app's process: with
-- daemon-held sockets the new process starts first and the old one stops
-- once the new one is ready (no moment without a process on the
-- sockets); otherwise it is a restart that waits for readiness. Scale
-- gives an app a new declaration with N instances, then adds or deletes
-- records. Decides the order of a replacement, nothing about a process's
-- life (lifecycle.lua does).
local core = require "pm.core"
local util = require "pm.util"
local log = require "pm.log"
local proc = require "pm.proc"
local lifecycle = require "pm.lifecycle"
local launch = require "pm.launch"
local readiness = require "pm.readiness"
local exits = require "pm.exits"
local channel = require "pm.channel"

local M = {}

local SIGKILL = core.signals.SIGKILL
local ctx, by_pid, event = proc.ctx, proc.by_pid, proc.event

-- (required when first used: the supervisor requires this module)
local function supervisor() return require "pm.supervisor" end

M.MAX_INSTANCES = 4096

local function restart_ready(p, opts, done)
  supervisor().restart(p, opts, function(err)
    if err then return done(err) end
    readiness.when_ready(p, function(ok, why) done(not ok and why or nil) end)
  end)
end

-- Stops a process a reload replaced: gracefully, SIGKILL after kill_timeout.
local function retire(old, d, done)
  if old.gone then return done() end
  local timer
  old.waiter = function()
    if timer then timer:close() end
    done()
  end
  if (d.shutdown_with_message or ctx.kill_use_message) and old.channel and not old.channel:closed() then
    old.channel:write('"shutdown"\n')
  else
    exits.signal_tree(old, util.signum(d.kill_signal))
  end
  timer = core.timer(d.kill_timeout, 0, function()
    timer = nil
    if not old.gone then exits.signal_tree(old, SIGKILL) end
  end)
end

--[[ Replaces p's process (see above). opts: environ, decl (a new
declaration, an ecosystem file's read again). If the replacement dies
before it is ready, the old process keeps serving (with its old
declaration) and done(err) says why. ]]
function M.reload(p, opts, done)
  opts = opts or {}
  if p.status ~= "online" or not readiness.listen_specs(p.decl) then
    return restart_ready(p, opts, function(err)
      if not err then event(p, "reload", nil, true) end
      done(err)
    end)
  end
  local old_decl, old_environ = p.decl, p.environ
  if opts.environ then p.environ = opts.environ end
  if opts.decl then supervisor().redeclare(p, opts.decl) end
  -- the old process, from now on a record of its own (not an app's)
  local old = { pid = p.pid, pgid = p.pgid, channel = p.channel, name = p.name }
  old.on_exit = function()
    old.gone = true
    require("pm.hooks").process_ended(p, old.pid) -- (the timers its on_start set)
    core.killpg(old.pgid, SIGKILL)
    exits.kill_leftovers(old)
    if old.channel then old.channel:close() end
    if old.waiter then old.waiter() end
  end
  local saved = { pid = p.pid, pgid = p.pgid, pipes = p.pipes, started = p.started,
    pm_uptime = p.pm_uptime, listen = p.listen, env_json = p.env_json, env_cache = p.env_cache,
    tree = p.tree }
  by_pid[p.pid] = nil
  exits.retirees[p.pid] = old
  p.channel = nil
  p.tree = nil
  p.pid = 0
  local function back(why)
    -- the replacement failed: the old process is p's again
    p.await_listen = nil
    if p.ready_timer then p.ready_timer:close(); p.ready_timer = nil end
    p.ready_waiters = nil
    exits.replacing[p] = nil
    for k, v in pairs(saved) do p[k] = v end
    channel.close(p)
    p.channel = old.channel
    exits.retirees[p.pid] = nil
    by_pid[p.pid] = p
    p.environ = old_environ
    if p.decl ~= old_decl then supervisor().redeclare(p, old_decl) end
    lifecycle.fire(p, "abort")
    if p.status == "stopping" then
      -- a stop killed the replacement: the stop under way ends the old one
      exits.signal_tree(p, util.signum(p.decl.kill_signal))
      log.warn("app %s (%d): reload aborted by a stop", p.name, p.pm_id)
      return done(("reload of %s (%d) aborted: it is being stopped"):format(p.name, p.pm_id))
    end
    p.ready = "reload aborted"
    readiness.arm_health(p)
    log.warn("app %s (%d): reload aborted, the old process %d keeps serving: %s", p.name, p.pm_id,
      p.pid, why)
    ctx.changed()
    done(("reload of %s (%d) aborted: the new process %s; the old one keeps serving")
      :format(p.name, p.pm_id, why))
  end
  -- a Node app in cluster mode that says nothing of its readiness: the old
  -- process stops once the new one listens (or after listen_timeout), and
  -- a new one that dies first aborts the reload (PM2 waits for 'listening')
  local d = p.decl
  p.await_listen = d.exec_mode == "cluster_mode" and require("pm.app").is_node(d.interpreter)
    and not (d.wait_ready or d.health) or nil
  local ok, err = launch.launch(p)
  if not ok then return back("could not start: " .. tostring(err)) end
  exits.replacing[p] = back
  readiness.when_ready(p, function(ready)
    p.await_listen = nil
    if not ready or not exits.replacing[p] then return end
    exits.replacing[p] = nil
    p.restart_time = p.restart_time + 1
    event(p, "reload", nil, true)
    ctx.changed()
    retire(old, p.decl, function() done() end)
  end)
end

-- pm scale: N, "+N" or "-N" instances of an app. New instances take the
-- lowest free instance numbers; fewer instances: the lowest ones go (PM2). done(err, records, kind): kind "params"
-- when the arguments are wrong.
function M.scale(name, spec, done)
  local sup = supervisor()
  local list = sup.by_name(name)
  if #list == 0 then return done("process not found: " .. tostring(name)) end
  table.sort(list, function(a, b) return a.instance < b.instance end)
  local n = #list
  local target
  spec = tostring(spec)
  if spec:match("^[+-]%d+$") then
    target = n + tonumber(spec)
  elseif spec:match("^%d+$") then
    target = tonumber(spec)
  end
  if not target or target ~= math.floor(target) or target < 1 then
    return done("scale: instances must be N, +N or -N, and leave at least one", nil, "params")
  end
  if target > M.MAX_INSTANCES then
    return done(("scale: at most %d instances"):format(M.MAX_INSTANCES), nil, "params")
  end
  -- a new declaration for the instances of the first one's (the old one
  -- stays as it was for whoever holds it; another app of the same name
  -- keeps its own)
  local old = list[1].decl
  local decl = require("pm.app").copy(old)
  decl.instances = target
  for _, q in ipairs(list) do
    if q.decl == old then sup.adopt(q, decl) end
  end
  if target == n then return done(nil, list) end
  if target < n then
    -- PM2 deletes the first ones: the lowest instance numbers go (and
    -- are the first taken again)
    local victims = {}
    for i = 1, n - target do victims[#victims + 1] = list[i] end
    local left = #victims
    for _, p in ipairs(victims) do
      sup.delete(p, function()
        left = left - 1
        if left == 0 then done(nil, sup.by_name(name)) end
      end)
    end
    return
  end
  local used = {}
  for _, p in ipairs(list) do used[p.instance] = true end
  local added, k = {}, 0
  while #added < target - n do
    if not used[k] then
      added[#added + 1] = sup.new_record(decl, list[1].environ, list[1].origin, k)
    end
    k = k + 1
  end
  local left = #added
  ctx.declared()
  for _, p in ipairs(added) do
    launch.launch(p)
    readiness.when_ready(p, function()
      left = left - 1
      if left == 0 then
        ctx.changed()
        -- instances that could not start (the daemon out of fds): said as
        -- a start says them, in one line; they stay errored
        local errs = {}
        for _, q in ipairs(added) do
          if q.status == "errored" and q.error then errs[#errs + 1] = { name = q.name, err = q.error } end
        end
        if #errs > 0 then return done(require("pm.fds").summary(errs)) end
        done(nil, sup.by_name(name))
      end
    end)
  end
end

return M
