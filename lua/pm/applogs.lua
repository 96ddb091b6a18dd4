-- An app's log files: where they are (PM_HOME/logs or what the app
-- declares, -ID for instances), the files shared by every pipe that writes
-- to the same path, what the daemon's log pipes add to each line (time
-- prefix, JSON), the bus taps of log:out/log:err, pm flush and pm
-- reloadLogs. Decides nothing about a process's life.
local core = require "pm.core"
local util = require "pm.util"
local log = require "pm.log"
local bus = require "pm.bus"
local proc = require "pm.proc"

local M = {}

-- path with the instance's pm_id before its extension, for the instances
-- of an app that do not merge their logs
function M.with_id(path, p)
  if p.decl.instances > 1 and not p.decl.merge_logs then
    local stem, ext = path:match("^(.*)(%.[^./]*)$")
    if stem then return stem .. "-" .. p.pm_id .. ext end
    return path .. "-" .. p.pm_id
  end
  return path
end
local with_id = M.with_id

-- which: "out", "err" or "log" (the combined log_file, nil when none)
function M.path(p, which)
  local d = p.decl
  local given
  if which == "out" then given = d.out_file
  elseif which == "err" then given = d.error_file
  else given = d.log_file end
  if given == "NULL" or given == "/dev/null" then return "/dev/null" end
  if given then return with_id(util.absolute(given, d.cwd), p) end
  if which == "log" then return nil end
  local file = ("%s/logs/%s-%s.log"):format(proc.ctx.home, d.name:gsub("/", "_"),
    which == "out" and "out" or "error")
  return with_id(file, p)
end
local log_path = M.path

-- p's paths, worked out again only when its declaration changed
function M.paths(p)
  local d = p.decl
  if p.paths_of ~= d then
    p.out_path = log_path(p, "out")
    p.err_path = log_path(p, "err")
    p.log_path = log_path(p, "log")
    p.paths_of = d
  end
end
-- Log files are shared by every pipe that writes to the same path (merged
-- instances, the combined log_file), so one writer rotates each file.
local files = {} -- path -> { file = logfile, refs = n }

local function acquire_file(path, d)
  if not path or path == "/dev/null" then return nil end
  local f = files[path]
  if f then
    f.refs = f.refs + 1
    return f.file
  end
  if d.uid then
    -- the daemon runs as root here: a file the app's user planted (a
    -- symlink, or a file of someone else's) is not written or handed over
    local st = core.stat(path, true)
    if st and (st.type == "link" or st.uid ~= d.uid) then
      log.warn("log %s of %s: refused, it is %s", path, d.name,
        st.type == "link" and "a symbolic link" or ("owned by uid " .. st.uid))
      return nil
    end
  end
  local lopts = { max_size = d.max_log_size, retain = d.retain }
  local file, err = core.logfile(path, lopts)
  if not file and not core.stat(util.dirname(path)) then
    -- a directory that is not there yet (opened first: it nearly always is)
    util.mkdir_p(util.dirname(path))
    file, err = core.logfile(path, lopts)
  end
  if not file then
    log.warn("cannot open log %s: %s", path, err)
    return nil
  end
  if d.uid or d.gid then core.chown(path, d.uid or -1, d.gid or -1) end
  files[path] = { file = file, refs = 1 }
  return file
end

local function release_file(path)
  local f = path and files[path]
  if not f then return end
  f.refs = f.refs - 1
  if f.refs <= 0 then
    f.file:close()
    files[path] = nil
  end
end

-- PM2's moment-style log_date_format -> strftime, %L for milliseconds
local moment = { YYYY = "%Y", YY = "%y", MM = "%m", DD = "%d", HH = "%H", mm = "%M",
  ss = "%S", SSS = "%L", Z = "%%Q", ZZ = "%z", A = "%p" }
function M.time_format(fmt)
  local out, i = {}, 1
  while i <= #fmt do
    local matched
    for _, len in ipairs({ 4, 3, 2, 1 }) do
      local tok = fmt:sub(i, i + len - 1)
      if moment[tok] then
        out[#out + 1] = moment[tok]
        i = i + len
        matched = true
        break
      end
    end
    if not matched then
      local c = fmt:sub(i, i)
      out[#out + 1] = c == "%" and "%%%%" or c
      i = i + 1
    end
  end
  return table.concat(out)
end

local function pipe_opts(p, which)
  local d = p.decl
  local opts = { files = {} }
  local main = which == "out" and p.out_path or p.err_path
  for _, path in ipairs({ main, p.log_path }) do
    if path and path ~= "/dev/null" then
      local f = acquire_file(path, d)
      if f then
        opts.files[#opts.files + 1] = f
        p.acquired[#p.acquired + 1] = path -- released with exactly these
      else
        p.logs_missing = true
      end
    end
  end
  if d.log_date_format then
    opts.time_format = M.time_format(d.log_date_format)
  elseif d.time then
    opts.time_format = "%Y-%m-%dT%H:%M:%S"
  end
  if d.log_type == "json" then
    opts.json = { app_name = p.name, process_id = p.pm_id, type = which }
  end
  return opts
end

-- p's files are let go (a file shared by other pipes stays open for them)
function M.release(p)
  if not p.log_files then return end
  for _, path in ipairs(p.log_files) do release_file(path) end
  p.log_files = nil
end

local function tap_for(p, which)
  local event_name = which == "out" and "log:out" or "log:err"
  return function(data)
    bus.publish(event_name, { process = proc.ref(p), at = core.now(), data = data })
  end
end

-- pm runtime: every line also goes to the daemon's own stdout/stderr,
-- prefixed with the app's name.
local echo = false
function M.set_echo(on) echo = on end

local function echo_for(p, which, publish)
  local out = which == "out" and io.stdout or io.stderr
  return function(data)
    local prefix = p.name .. "| "
    out:write(prefix, (data:gsub("\n(.)", "\n" .. prefix:gsub("%%", "%%%%") .. "%1")))
    if data:sub(-1) ~= "\n" then out:write("\n") end
    out:flush()
    if publish then publish(data) end
  end
end

local function set_taps(p)
  for _, which in ipairs({ "out", "err" }) do
    local lp = p.pipes and p.pipes[which]
    if lp and not lp:closed() then
      local name = which == "out" and "log:out" or "log:err"
      local publish = bus.wants(name) and tap_for(p, which) or nil
      if echo then lp:set_tap(echo_for(p, which, publish)) else lp:set_tap(publish) end
    end
  end
end

-- (again for every record when who listens to log events changes)
function M.update_taps(list)
  for _, p in ipairs(list) do set_taps(p) end
end

-- The log pipes of p's new process: its output read from out_r and err_r
-- into its files (which stay open for p: its pipes may outlive the process)
function M.open_pipes(p, out_r, err_r)
  p.acquired = {}
  p.logs_missing = nil
  p.pipes = {
    out = core.logpipe(out_r, pipe_opts(p, "out"), function() end),
    err = core.logpipe(err_r, pipe_opts(p, "err"), function() end),
  }
  M.release(p)
  p.log_files = p.acquired
  set_taps(p)
end

-- Reopens every log file (a deleted one, or its directory, comes back);
-- a file that could not be opened when its app started (of list) is
-- tried again. -> true | nil, err (the folders that could not be made)
function M.reload(list)
  local failed = {}
  for path, f in pairs(files) do
    local dir = util.dirname(path)
    local ok, err = util.mkdir_p(dir)
    local st = core.stat(dir)
    if not ok or not st or st.type ~= "dir" then
      failed[#failed + 1] = ok and (dir .. ": not a directory") or tostring(err)
    end
    f.file:reopen()
  end
  for _, p in ipairs(list) do
    if p.logs_missing and p.pipes then
      p.logs_missing = nil
      local old = p.log_files
      p.acquired = {}
      for _, which in ipairs({ "out", "err" }) do
        local lp = p.pipes[which]
        if lp and not lp:closed() then lp:set_files(pipe_opts(p, which).files) end
      end
      p.log_files = old
      M.release(p)
      p.log_files = p.acquired
    end
  end
  if #failed > 0 then
    table.sort(failed)
    return nil, "cannot reopen the logs in " .. table.concat(failed, "; ")
  end
  return true
end

-- Empties the log files of the procs; returns how many.
function M.flush(list)
  local n = 0
  for _, p in ipairs(list) do
    for _, path in ipairs({ p.out_path, p.err_path, p.log_path }) do
      if path ~= "/dev/null" then
        local f = files[path]
        if f then
          f.file:truncate()
          n = n + 1
        elseif core.truncate(path) then
          n = n + 1
        end
      end
    end
  end
  return n
end

return M
