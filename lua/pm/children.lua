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
(ms: SIGKILL then), capture (stdout and stderr collected, as lines joined
by "\n"), max_output (bytes of stdout and stderr together, 64 MB by
default: past it, SIGKILL), env (a list of "K=V": its environment; the
daemon's when nil), cwd, uid and gid, cgroup (a cgroup.procs it joins). A spawn that fails, a timeout or too much
output gives done(nil, nil, nil, err). ]]
function M.run(argv, opts, done)
  local out_r, out_w, err_r, err_w
  local fds = { -1, -1, -1 }
  if opts.capture then
    out_r, out_w = core.pipe()
    err_r, err_w = core.pipe()
    fds = { -1, out_w, err_w }
  end
  local pid, err = core.spawn({ file = argv[1], args = argv, fds = fds, setsid = opts.setsid,
    env = opts.env, cwd = opts.cwd, uid = opts.uid, gid = opts.gid, cgroup = opts.cgroup })
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
  local streams = {}
  local function step()
    pending = pending - 1
    if pending > 0 or finished then return end
    finished = true
    if timer then timer:close() end
    done(code, signum, opts.capture and table.concat(out, "\n") or nil,
      opts.capture and table.concat(errs, "\n") or nil)
  end
  -- ends it now: killed (its group with setsid), done(nil, nil, nil, why)
  local function abort(why)
    if finished then return end
    finished = true
    if timer then timer:close(); timer = nil end
    if opts.setsid then core.killpg(pid, SIGKILL) else core.kill(pid, SIGKILL) end
    for _, s in ipairs(streams) do s:close() end
    out, errs = {}, {}
    done(nil, nil, nil, why)
  end
  if opts.capture then
    local max, size = opts.max_output or 64 * 1024 * 1024, 0
    local function collect(into)
      return function(line, lerr)
        if finished or (not line and lerr ~= "line too long") then return end
        size = size + (line and #line + 1 or max + 1)
        if size > max then
          return abort((max % 1048576 == 0 and ("wrote over %d MB"):format(max / 1048576)
            or ("wrote over %d bytes"):format(max)) .. ": killed")
        end
        into[#into + 1] = line
      end
    end
    streams[1] = core.stream(out_r, collect(out), step, max)
    streams[2] = core.stream(err_r, collect(errs), step, max)
  end
  if opts.timeout then
    timer = core.timer(opts.timeout, 0, function()
      timer = nil
      abort(("ran over %g s: killed"):format(opts.timeout / 1000))
    end)
  end
  waiting[pid] = function(c, s)
    code, signum = c, s
    step()
  end
end

return M
