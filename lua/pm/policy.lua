-- The built-in restart policy: pure. Given an app's declaration and restart
-- state, an exit and a clock, it returns a decision and changes nothing.
local M = {}

-- Constants of exp_backoff_restart_delay (overridable per app:
-- exp_backoff_max, exp_backoff_factor, exp_backoff_reset).
M.BACKOFF_FACTOR = 1.5
M.BACKOFF_MAX = 15000
M.BACKOFF_RESET = 30000

local function member(list, v)
  for _, x in ipairs(list or {}) do
    if x == v then return true end
  end
  return false
end

--[[
decide(decl, state, exit) -> decision
decl:  autorestart, min_uptime, max_restarts, restart_delay,
       exp_backoff_restart_delay, stop_exit_codes
state: unstable_restarts (consecutive fast exits so far), prev_restart_delay,
       unstable_since (with exp_backoff_restart_delay: when the first of them
       started, ms of the clock `now` reads)
exit:  code (nil when killed), signal (name or nil), uptime (ms), reason
now:   the clock (ms; only read with exp_backoff_restart_delay)
decision: action "restart" | "stop" | "errored", delay (ms, for restart),
          unstable_restarts, prev_restart_delay, unstable_since (the new state)

With exp_backoff_restart_delay, fast exits count toward max_restarts only
within min_uptime x max_restarts (16 s by default) of the first of them:
past that the app goes on retrying at the back-off's delay until a run
lasts min_uptime. Back-off is for a dependency that is down for a while
(PM2 counts inside the same window, from the app's creation).
]]
function M.decide(decl, state, exit, now)
  local unstable = state.unstable_restarts or 0
  local prev = state.prev_restart_delay or 0
  local d = { unstable_restarts = unstable, prev_restart_delay = prev, unstable_since = state.unstable_since }
  if exit.reason == "stop" then
    d.action = "stop"
    return d
  end
  -- a restart asked for by a rule (memory, cron, watch, health) is not a crash
  if exit.reason ~= "exit" and exit.reason ~= nil then
    d.action, d.delay = "restart", 0
    return d
  end
  if decl.autorestart == false then
    d.action = "stop"
    return d
  end
  if exit.code ~= nil and member(decl.stop_exit_codes, exit.code) then
    d.action = "stop"
    return d
  end
  local min_uptime, max_restarts = decl.min_uptime or 1000, decl.max_restarts or 16
  local fast = (exit.uptime or 0) < min_uptime
  local base = decl.exp_backoff_restart_delay or 0
  if not fast then
    unstable, d.unstable_since = 0, nil
  elseif base <= 0 then
    unstable = unstable + 1
  else
    local since = unstable > 0 and d.unstable_since or (now or 0) - (exit.uptime or 0)
    d.unstable_since = since
    if (now or 0) - since < min_uptime * max_restarts then unstable = unstable + 1 end
  end
  d.unstable_restarts = unstable
  if unstable >= max_restarts then
    d.action = "errored"
    return d
  end
  if base > 0 then
    local reset = decl.exp_backoff_reset or M.BACKOFF_RESET
    local cap = decl.exp_backoff_max or M.BACKOFF_MAX
    local factor = decl.exp_backoff_factor or M.BACKOFF_FACTOR
    local delay
    if prev <= 0 or (exit.uptime or 0) >= reset then
      delay = base
    else
      delay = math.min(math.floor(prev * factor), cap)
    end
    d.prev_restart_delay = delay
    d.action, d.delay = "restart", delay
    return d
  end
  d.action, d.delay = "restart", decl.restart_delay or 0
  return d
end

return M
