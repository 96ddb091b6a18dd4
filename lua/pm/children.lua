-- The daemon's helper processes, which are not apps: a health check's
-- `exec` command, the node that reads a .config.js. One runner: spawned,
-- their output captured when asked, ended at a timeout, their exit handed
-- back. Decides nothing about apps.
local core = require "pm.core"

local M = {}

local SIGKILL = core.signals.SIGKILL

-- pid -> fn(code, signum) for the exits of helper processes
local waiting = {}

-- The exit of a child: true when it was a helper's (its callback ran).
function M.on_exit(pid, code, signum)
  local fn = waiting[pid]
  if not fn then return false end
  waiting[pid] = nil
  fn(code, signum)
  return true
end

--[[ Runs argv[1] with argv -> done(code, signum, stdout, stderr) once.
opts: setsid (its own session, killed as a group at the timeout), timeout
(ms: SIGKILL then, and done(nil)), capture (stdout and stderr collected,
as lines joined by "\n"; stdout up to 64 MB). A spawn that fails gives
done(nil, nil, nil, err). ]]
function M.run(argv, opts, done)
  local out_r, out_w, err_r, err_w
  local fds = { -1, -1, -1 }
  if opts.capture then
    out_r, out_w = core.pipe()
    err_r, err_w = core.pipe()
    fds = { -1, out_w, err_w }
  end
  local pid, err = core.spawn({ file = argv[1], args = argv, fds = fds, setsid = opts.setsid })
  if opts.capture then
    core.close(out_w)
    core.close(err_w)
  end
  if not pid then
    if opts.capture then core.close(out_r); core.close(err_r) end
    return done(nil, nil, nil, err)
  end
  local finished, timer, code, signum = false, nil, nil, nil
  local out, errs, pending = {}, {}, opts.capture and 3 or 1
  local function step()
    pending = pending - 1
    if pending > 0 or finished then return end
    finished = true
    if timer then timer:close() end
    done(code, signum, opts.capture and table.concat(out, "\n") or nil,
      opts.capture and table.concat(errs, "\n") or nil)
  end
  if opts.capture then
    core.stream(out_r, function(line) if line then out[#out + 1] = line end end, step, 64 * 1024 * 1024)
    core.stream(err_r, function(line) if line then errs[#errs + 1] = line end end, step)
  end
  if opts.timeout then
    timer = core.timer(opts.timeout, 0, function()
      timer = nil
      if finished then return end
      finished = true
      if opts.setsid then core.killpg(pid, SIGKILL) else core.kill(pid, SIGKILL) end
      done(nil)
    end)
  end
  waiting[pid] = function(c, s)
    code, signum = c, s
    step()
  end
end

return M
