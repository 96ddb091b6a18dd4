-- The rules that restart a running app: max_memory_restart, cron_restart,
-- watch (and, through readiness.lua, health checks and the watchdog).
-- Decides when such a rule fires; the restart itself is the supervisor's.
local core = require "pm.core"
local util = require "pm.util"
local log = require "pm.log"
local cron = require "pm.cron"
local watch = require "pm.watch"
local proc = require "pm.proc"
local applogs = require "pm.applogs"

local M = {}

-- (required when first used: both need this module)
local function supervisor() return require "pm.supervisor" end
local function launch() return require "pm.launch" end

-- A rule restarts p (reason: "memory", "cron", "watch", "health"); cron
-- also starts an app that is down, unless a user stopped it.
function M.restart(p, reason)
  if p.status ~= "online" and p.status ~= "launching" then
    if reason == "cron" and not p.manual_stop and (p.status == "stopped" or p.status == "errored") then
      log.info("app %s (%d): cron start", p.name, p.pm_id)
      p.restart_time = p.restart_time + 1
      proc.event(p, "restart", { reason = reason }, false)
      launch().launch(p)
    end
    return
  end
  log.info("app %s (%d): restart (%s)", p.name, p.pm_id, reason)
  supervisor().restart(p, { reason = reason }, function(err)
    if err then log.warn("app %s (%d): %s restart failed: %s", p.name, p.pm_id, reason, err) end
  end)
end

-- ---- memory: one timer for every app with a limit, while one runs ----

local memory_timer
local limited = setmetatable({}, { __mode = "k" }) -- records that had a limit

local function check_memory()
  local any = false
  for p in pairs(limited) do
    local limit = p.decl.max_memory_restart
    if not limit or p.deleted then
      limited[p] = nil
    elseif p.pid > 0 and p.status == "launching" then
      any = true -- (checked once online: it may be slow to say it is ready)
    elseif p.status == "online" and p.pid > 0 then
      any = true
      local rss = core.proc_usage(p.pid)
      if rss > limit then
        log.warn("app %s (%d) uses %d bytes, over max_memory_restart %d", p.name, p.pm_id, rss, limit)
        M.restart(p, "memory")
      end
    end
  end
  if not any and memory_timer then
    memory_timer:close()
    memory_timer = nil
  end
end

-- p's new process has a memory limit
function M.arm_memory(p)
  limited[p] = true
  if not memory_timer then memory_timer = core.timer(1000, 1000, check_memory) end
end

-- ---- cron ----

function M.arm_cron(p)
  if p.cron_timer then p.cron_timer:close(); p.cron_timer = nil end
  local expr = p.decl.cron_restart
  if not expr or p.deleted then return end
  local spec = cron.parse(expr)
  if not spec then return end
  local now_s = core.now() / 1000
  local at = cron.next(spec, now_s)
  if not at then return end
  p.cron_timer = core.timer((at - now_s) * 1000, 0, function()
    p.cron_timer = nil
    M.restart(p, "cron")
    M.arm_cron(p)
  end)
end

-- ---- watch ----

function M.arm_watch(p)
  local d = p.decl
  if not d.watch or d.watch == false or p.deleted then
    watch.unwatch(p.pm_id)
    return
  end
  local roots = {}
  if type(d.watch) == "table" then
    for _, w in ipairs(d.watch) do roots[#roots + 1] = util.absolute(tostring(w), d.cwd) end
  elseif type(d.watch) == "string" then
    roots[1] = util.absolute(d.watch, d.cwd)
  else
    roots[1] = d.cwd
  end
  local exact = { [applogs.path(p, "out")] = true, [applogs.path(p, "err")] = true }
  local ignore = watch.ignorer(d.cwd, d.ignore_watch, exact, roots)
  local ok, err = watch.watch(p.pm_id, roots, ignore, function(path)
    if p.watch_timer or p.manual_stop then return end
    p.watch_timer = core.timer(d.watch_delay or 1000, 0, function()
      p.watch_timer = nil
      log.info("app %s (%d): change in %s", p.name, p.pm_id, path)
      M.restart(p, "watch")
    end)
  end)
  if not ok then log.warn("app %s: watch: %s", p.name, err) end
end

-- p is deleted: its rules stop
function M.disarm(p)
  require("pm.hooks").drop_app(p) -- (its hooks' timers)
  limited[p] = nil
  if p.cron_timer then p.cron_timer:close(); p.cron_timer = nil end
  if p.watch_timer then p.watch_timer:close(); p.watch_timer = nil end
  watch.unwatch(p.pm_id)
end

return M
