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
decide(decl, state, exit, now) -> decision
decl:  autorestart, min_uptime, max_restarts, restart_delay,
       exp_backoff_restart_delay, stop_exit_codes
state: unstable_restarts (fast exits so far), prev_restart_delay,
       unstable_since (a restart that waits: when the app was last started
       by a command, ms of the clock `now` reads; nil: long ago)
exit:  code (nil when killed), signal (name or nil), uptime (ms), reason
now:   the clock (ms; only read for a restart that waits)
decision: action "restart" | "stop" | "errored", delay (ms, for restart),
          unstable_restarts, prev_restart_delay (the new state)

A restart at once (no restart_delay, no exp_backoff_restart_delay) counts
fast exits in a row: a crash loop that lasts is errored. One that waits
counts them as PM2 does: only within min_uptime x max_restarts (16 s by
default) of the app's start (a start, restart or reset by a command), so
that an app waiting for a dependency that is down goes on retrying at its
delay until a run lasts min_uptime.
]]
-- Whether d's restarts wait (policy.decide's window; supervisor.lua notes
-- the start it counts from)
function M.waits(d)
  return (d.exp_backoff_restart_delay or 0) > 0 or (d.restart_delay or 0) > 0
end

function M.decide(decl, state, exit, now)
  local unstable = state.unstable_restarts or 0
  local prev = state.prev_restart_delay or 0
  local d = { unstable_restarts = unstable, prev_restart_delay = prev }
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
    unstable = 0
  elseif not M.waits(decl) then
    unstable = unstable + 1
  elseif state.unstable_since and (now or 0) - state.unstable_since < min_uptime * max_restarts then
    unstable = unstable + 1
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
