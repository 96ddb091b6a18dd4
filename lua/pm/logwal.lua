-- The log WAL from the daemon's side (core/logs.c, DESIGN §11): with a
-- keeper, what the daemon has read from the apps' pipes and not yet
-- written to their files lives in a memfd the keeper holds (tag "w 0 0"),
-- so that a daemon killed with SIGKILL loses no line: the next one is
-- handed the same memfd, writes what is left in it, and gives each pipe
-- back the line it had started, before it reads any pipe.
local core = require "pm.core"
local log = require "pm.log"

local M = {}

-- Files named one a line, at most (then how many more)
M.SAY_FILES = 20

--[[ What a replay did (core.logwal_adopt's answer), said in pm.log: what
was written; for each file that refused the lines (a link, another user's
file, a FIFO, a folder, a full disk...) one line with why, and the
replay goes on; the lines the last daemon held outside the buffer (the ring
was full, no slot for an unfinished line), lost and counted. ]]
function M.say(got)
  if got.records > 0 or got.lost > 0 or got.outside > 0 then
    log.info("the last daemon's unwritten output: %d chunk(s) (%d bytes) written%s", got.records, got.bytes,
      got.lost > 0 and (", " .. got.lost .. " line(s) could not be") or "")
  end
  for i, f in ipairs(got.failed or {}) do
    if i > M.SAY_FILES then
      log.warn("... and %d more log file(s) the last daemon's output could not be written to", #got.failed - i + 1)
      break
    end
    log.warn("log %s: %d line(s) of the last daemon's output not written: %s", f.path or "(a file not recorded)",
      f.lines, f.reason)
  end
  if got.outside > 0 then
    log.warn("%d line(s) the last daemon held outside its log buffer (full) are lost", got.outside)
  end
end

--[[ Right after keeper.takeover (tk: its take-over, or nil), before any
log file or pipe is made: the WAL a previous daemon left is taken (and
taken out of tk.held: it is no app's), or a new one is made and given to
the keeper. Without a keeper: nothing (logs.c keeps the same buffer in
ordinary memory). ]]
function M.start(tk)
  local keeper = require "pm.keeper"
  if not keeper.active() then return end
  -- (daemons that died young in a row while taking over: the buffer is
  -- let go with the rest, in case it is what kills them)
  local young = tk and (tk.young or 0) >= require("pm.recovery").ADOPT_TRIES
  for i, h in ipairs(tk and tk.held or {}) do
    if h.kind == "w" and h.fd then
      table.remove(tk.held, i)
      local got, err
      if young then err = "daemons died young in a row" else got, err = core.logwal_adopt(h.fd) end
      core.close(h.fd)
      if got then
        M.adopted = got
        M.say(got)
        return
      end
      -- (another layout: pm update to a build whose buffer differs; its
      -- half lines come in the hand-over's blob)
      log.warn("the last daemon's log buffer is not taken (%s)", tostring(err))
      keeper.release(h.id)
      break
    end
  end
  local fd, err = core.logwal_create()
  if not fd then
    log.error("no log buffer for the keeper (%s): a crash of this daemon loses the output it had read", tostring(err))
    return
  end
  keeper.hold("w 0 0", fd)
  core.close(fd)
end

-- Once the apps are taken over: the lines started by pipes no app took
-- are let go
function M.settle()
  if M.adopted then
    M.adopted = nil
    core.logwal_settle()
  end
end

return M
