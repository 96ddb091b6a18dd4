-- The life of a process record, as one table read top to bottom: status x
-- event -> the next status and the actions the caller then does (the model
-- is s6-supervise's actions[state][event]). This module is the only writer
-- of p.status and of the three flags beside it: manual_stop (a user stopped
-- it: no rule starts it again), deleting (a delete waits for its stop) and
-- deleted. Pure: no clock, no I/O, no other module; it decides what the
-- status becomes, never how a process is started, stopped or published.
local M = {}

-- A test build (proc.lua sets it from PM_STRICT=1): a refused event raises.
M.strict = false

-- The statuses (DESIGN §5: pm2_env.status)
M.STATUSES = { "stopped", "launching", "online", "stopping", "waiting restart", "errored" }

--[[ The events:
  queue     a new record will be launched with the next batch (autostart)
  launch    a process is to be started (start, restart, cron, the end of a
            restart delay, an immediate restart, a reload's replacement)
  spawned   its spawn succeeded
  failed    its spawn, or what it needs before (pipes, sockets), failed
  ready     it said it is ready (IPC, sd_notify, health), or needs not say
  unready   it exited, or could not start, before it was ready
  stop      a stop is asked for while a process runs
  halt      a stop is asked for while no process runs
  stopped   the process of a stop exited
  rest      it exited by itself and the policy keeps it down
  give_up   it exited too fast too often: errored
  delay     it exited and restarts after a delay
  restart   it exited and restarts now (launch follows)
  abort     a reload's replacement died: the old process is the app's again
  cancel    a launch that a delete or the daemon's exit overtook
  adopt     a process that still runs, of a daemon before this one, is
            the record's (the keeper handed it over)

A cell is { next status (false: the status stays), actions... }. IGNORE: the
event changes nothing (a late "ready" of a process being stopped). A
missing cell is refused: fire returns nil and why.
The actions, done by the caller in the order given:
  unpid     the pid file goes (the app is down, not between an exit and
            its immediate restart)
  release   its channel and a crash loop's kept pipes go
  say:NAME  the process event NAME is published (pm describe's history) ]]
local IGNORE = {}
M.IGNORE = IGNORE

local T = {
  ["stopped"] = {
    adopt = { "online" },
    queue = { "launching" },
    launch = { "launching" },
    halt = IGNORE,
    cancel = { "stopped", "release" },
    ready = IGNORE, unready = IGNORE,
  },
  ["launching"] = {
    launch = { "launching" },
    spawned = { "launching" },
    failed = { "errored" },
    ready = { "online", "say:online" },
    unready = { "errored" },
    stop = { "stopping" },
    halt = { "stopped", "say:stop" }, -- queued, not yet spawned
    rest = { "stopped", "unpid", "say:stop", "release" },
    give_up = { "errored", "unpid", "say:restart overlimit", "release" },
    delay = { "waiting restart", "release", "unpid" },
    restart = { false },
    abort = { "online" },
    cancel = { "stopped", "release" },
  },
  ["online"] = {
    launch = { "launching" },
    ready = IGNORE, unready = IGNORE,
    stop = { "stopping" },
    halt = { "stopped", "say:stop" }, -- a reload between its two processes
    rest = { "stopped", "unpid", "say:stop", "release" },
    give_up = { "errored", "unpid", "say:restart overlimit", "release" },
    delay = { "waiting restart", "release", "unpid" },
    restart = { false },
    cancel = { "stopped", "release" },
  },
  ["stopping"] = {
    stop = IGNORE, -- the stop under way is joined
    ready = IGNORE, unready = IGNORE,
    stopped = { "stopped", "release", "unpid", "say:stop" },
    -- a stop killed a reload's replacement: the old process is the app's
    -- again, and the stop under way stops it
    abort = IGNORE,
    cancel = { "stopped", "release" },
  },
  ["waiting restart"] = {
    launch = { "launching" },
    halt = { "stopped", "say:stop" },
    ready = IGNORE, unready = IGNORE,
    cancel = { "stopped", "release" },
  },
  ["errored"] = {
    adopt = { "online" },
    launch = { "launching" },
    halt = { "stopped", "say:stop" },
    ready = IGNORE, unready = IGNORE,
    -- (exited before it was ready: unready made it errored, then the
    -- policy decides as for any exit)
    rest = { "stopped", "unpid", "say:stop", "release" },
    give_up = { "errored", "unpid", "say:restart overlimit", "release" },
    delay = { "waiting restart", "release", "unpid" },
    restart = { false },
    abort = { "online" }, -- a reload's replacement could not even start
    cancel = { "stopped", "release" },
  },
}
M.TABLE = T

M.EVENTS = { "queue", "launch", "spawned", "failed", "ready", "unready", "stop", "halt",
  "stopped", "rest", "give_up", "delay", "restart", "abort", "cancel", "adopt" }

local REFUSED = {
  launch = "a process of it is still stopping",
}

--[[ Moves p by event ev -> the cell's actions (a list, maybe empty) | nil,
why (refused: p is untouched). ]]
function M.fire(p, ev)
  local row = T[p.status]
  local cell = row and row[ev]
  if not cell then
    local why = ("%s: %s while %s"):format(p.name or "?", REFUSED[ev] or ("no " .. ev),
      tostring(p.status))
    if M.strict then error("lifecycle: refused " .. why, 2) end -- (a test build: a bug)
    return nil, why
  end
  if cell[1] then p.status = cell[1] end
  if ev == "spawned" then p.manual_stop = nil end
  return cell
end

-- A new record: down, and held down when it was saved stopped by a user;
-- errored: it comes back errored (crash recovery does not run its loop again).
function M.init(p, held, errored)
  p.status = errored and "errored" or "stopped"
  p.manual_stop = held or nil
end

-- A stop a user asked for: no rule (cron) starts it again until a start.
function M.hold(p) p.manual_stop = true end

-- A delete: nothing starts p again while it waits for its stop ...
function M.deleting(p) p.deleting = true end
-- ... and the stop failed (the process survived SIGKILL): p stays.
function M.undelete(p) p.deleting = nil end
-- ... and p is gone from the table.
function M.deleted(p)
  p.deleting = nil
  p.deleted = true
end

-- Whether a process of p may be launched at all (not when deleted).
function M.launchable(p) return not p.deleting and not p.deleted end

-- The status a record is saved with (dump.json, the journal): a user's
-- stop is kept as stopped whatever happened since.
function M.saved_status(p)
  return (p.status == "stopped" or p.manual_stop) and "stopped" or p.status
end

return M
