-- An app's log files: where they are (PM_HOME/logs, PM_HOME/logs/<namespace>
-- for an app whose name another namespace's app took first, or what the app
-- declares, -ID for instances), the files shared by every pipe that writes
-- to the same path, when they are rotated by time (log_rotate's cron; the
-- renaming, gzip and retain are core/logs.c's and core/logrotate.c's),
-- what the daemon's log pipes add to each line (time prefix, with the
-- writer's id when merged instances share the file; JSON), the bus taps
-- of log:out/log:err, log:dropped, pm flush and pm reloadLogs; whose rights
-- open an app's files (M.owner). Decides nothing about a process's life.
local bit = require "bit"
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

-- The folder under PM_HOME/logs of the default files of an app: ""
-- (PM_HOME/logs/<name>-out.log, PM2's names and DESIGN's), unless an app
-- of the same name in another namespace writes there already: then
-- "<namespace>/", so that two apps never share a file by accident. The
-- first comes first: which namespace holds the plain names of each app
-- name, and how many records of it use them.
-- (two maps, not a table an app: 10,000 apps' 10,000 small tables)
local plain_ns, plain_n = {}, {} -- app name -> namespace, records

function M.ns_folder(ns)
  local safe = (ns or "default"):gsub("[/%z]", "_")
  if safe == "." or safe == ".." then safe = "_" .. safe end
  return safe .. "/"
end

-- p's folder: taken (counted) when take, else only looked at
local function folder_of(p, take)
  local d = p.decl
  local name = d.name
  local n = plain_n[name]
  if n and plain_ns[name] ~= d.namespace then return M.ns_folder(d.namespace) end
  if take then
    if not n then plain_ns[name] = d.namespace end
    plain_n[name] = (n or 0) + 1
  end
  return ""
end

-- p no longer uses the folder it had (deleted, or declared again)
local function let_go(p)
  if p.log_folder == "" then
    -- (the name those paths were taken for: a restart may have renamed p)
    local name = p.paths_of and p.paths_of.name or p.name
    local n = plain_n[name]
    if n then
      if n <= 1 then
        plain_n[name], plain_ns[name] = nil, nil
      else
        plain_n[name] = n - 1
      end
    end
  end
  p.log_folder = nil
end

-- which: "out", "err" or "log" (the combined log_file, nil when none)
function M.path(p, which)
  local d = p.decl
  if d.disable_logs then return which ~= "log" and "/dev/null" or nil end -- (PM2's: no file at all)
  local given
  if which == "out" then given = d.out_file
  elseif which == "err" then given = d.error_file
  else given = d.log_file end
  if given == "NULL" or given == "/dev/null" then return "/dev/null" end
  if given and given ~= true then return with_id(util.absolute(given, d.cwd), p) end
  if which == "log" and not given then return nil end
  local folder = p.paths_of == d and p.log_folder or folder_of(p, false)
  local file = ("%s/logs/%s%s%s.log"):format(proc.ctx.home, folder, d.name:gsub("/", "_"),
    which == "out" and "-out" or which == "err" and "-error" or "") -- (log_file = true: <name>.log, PM2's)
  return with_id(file, p)
end
local log_path = M.path

-- p's paths, worked out again only when its declaration changed
function M.paths(p)
  local d = p.decl
  if p.paths_of ~= d then
    let_go(p)
    p.log_folder = folder_of(p, true)
    p.paths_of = d
    p.out_path = log_path(p, "out")
    p.err_path = log_path(p, "err")
    p.log_path = log_path(p, "log")
  end
end
-- Log files are shared by every pipe that writes to the same path (merged
-- instances, the combined log_file), so one writer rotates each file.
-- path -> { [F_FILE] logfile, [F_REFS] n, [F_OWNER] owner or false, [F_P] the
-- first app's record, [F_ROTATE] timer or false } (an array: two per app)
local files = {}
local F_FILE, F_REFS, F_OWNER, F_P, F_ROTATE = 1, 2, 3, 4, 5

-- Whether only root (or the daemon's user) can change what dir names:
-- every folder on the way, as written and as resolved, is theirs and not
-- writable by others (a sticky one, /tmp, may be passed through).
local function trusted_dir(dir)
  local me = core.getuid()
  local function chain(path)
    local parts = {}
    for part in path:gmatch("[^/]+") do parts[#parts + 1] = part end
    local cur = "/"
    for i = 0, #parts do
      if i > 0 then cur = (cur == "/" and "" or cur) .. "/" .. parts[i] end
      local st = core.stat(cur)
      if not st or st.type ~= "dir" or (st.uid ~= 0 and st.uid ~= me) then return false end
      if bit.band(st.mode, 18) ~= 0 and (i == #parts or bit.band(st.mode, 512) == 0) then return false end -- 022, 01000
    end
    return true
  end
  local real = core.realpath(dir)
  return real ~= nil and chain(dir) and chain(real)
end

-- How a file of an app that runs as another user is opened (core.h's
-- pm_owner_t): never through a link, only a regular file of the app's
-- user. In a folder only root can change (PM_HOME/logs, /var/log/app of
-- root's) as the daemon, a new file then given to the user; anywhere else
-- with the user's own rights, so that nothing the user does to their
-- folders reaches another file. nil: an app of the daemon's user, whose
-- files are opened as they always were.
function M.owner(path, d)
  if d.uid and d.uid ~= core.getuid() then
    local dir, home = util.dirname(path), proc.ctx.home
    local own = dir == home .. "/logs" or dir == home .. "/pids" or trusted_dir(dir)
      or util.dirname(dir) == home .. "/logs" -- (a namespace's folder, the daemon's)
    return { uid = d.uid, gid = d.gid, as_user = not own }
  elseif d.gid then
    return { gid = d.gid }
  end
end

-- Lines a full disk (or a file that could not be opened) kept out of a
-- file: the file says so itself once it can; pm.log and the bus too.
local function on_dropped(path, lines, bytes, reason)
  if not lines then
    log.warn("log %s cannot be written: %s (its lines are dropped, and counted, until it can)", path, reason)
    return
  end
  log.warn("log %s: %d lines (%d bytes) dropped: %s", path, lines, bytes, reason)
  local f = files[path]
  bus.publish("log:dropped", { process = f and f[F_P] and proc.ref(f[F_P]) or nil, path = path, lines = lines,
    bytes = bytes, reason = reason, at = core.now() })
end
local dropped_set

-- How d's files rotate: its own settings, else pm set pm2-logrotate:KEY's
-- (the defaults of apps that set none) -> core.logfile's options, the
-- log_rotate time (or nil)
local function rotation_of(d)
  local ld = require("pm.appconf").log_defaults()
  local rotate = d.log_rotate or ld.log_rotate
  local compress = d.compress or (ld.compress and true) or false
  return { max_size = d.max_log_size or ld.max_log_size, retain = (d.retain == 30 and ld.retain) or d.retain,
    dated = rotate ~= nil or compress, compress = compress }, rotate
end

-- pm2-logrotate's settings changed: every open file takes them now (the
-- ones whose app sets its own keep those), its time rotation armed again
function M.apply_defaults()
  for _, f in pairs(files) do
    local p = f[F_P]
    if p and f[F_REFS] > 0 then
      local lopts, rotate = rotation_of(p.decl)
      f[F_FILE]:configure(lopts)
      if f[F_ROTATE] then f[F_ROTATE]:close(); f[F_ROTATE] = false end
      if rotate then M.arm_rotation(f, rotate) end
    end
  end
end

local function acquire_file(path, d, p, lazy)
  if not path or path == "/dev/null" then return nil end
  local f = files[path]
  if f then
    f[F_REFS] = f[F_REFS] + 1
    return f[F_FILE]
  end
  if not dropped_set then core.on_log_dropped(on_dropped); dropped_set = true end
  local owner = M.owner(path, d)
  local lopts, rotate = rotation_of(d)
  lopts.owner, lopts.lazy = owner, lazy
  local file, err = core.logfile(path, lopts)
  if not file and not core.stat(util.dirname(path)) then
    -- a directory that is not there yet (opened first: it nearly always is)
    util.mkdir_p(util.dirname(path), nil, owner)
    file, err = core.logfile(path, lopts)
  end
  if not file then
    log.warn("cannot open log %s of %s: %s", path, d.name, err)
    return nil, ("cannot open log %s: %s"):format(path, tostring(err))
  end
  files[path] = { file, 1, owner or false, p, false }
  if rotate then M.arm_rotation(files[path], rotate) end
  return file
end

-- What was written to each log file: each(pm_id of its first app, lines,
-- bytes) for every file (metrics.lua: pm_log_written_*). The counters of
-- every file are read in one call (core.logfile_stats), into lists kept
-- from one scrape to the next (the files' list emptied after it).
local w_files, w_ids, w_lines, w_bytes = {}, {}, {}, {}
function M.written(each)
  local n = 0
  for _, f in pairs(files) do
    if f[F_P] and f[F_REFS] > 0 then
      n = n + 1
      w_files[n], w_ids[n] = f[F_FILE], f[F_P].pm_id
    end
  end
  for i = #w_ids, n + 1, -1 do w_ids[i], w_lines[i], w_bytes[i] = nil, nil, nil end
  core.logfile_stats(w_files, w_lines, w_bytes)
  for i = 1, n do w_files[i] = nil end -- (a file closed meanwhile is not kept)
  for i = 1, n do each(w_ids[i], w_lines[i], w_bytes[i]) end
end

-- Time rotation: f (of files) rotated at each time of log_rotate's cron
-- expression (the writer thread renames it, logrotate.c gzips and prunes)
function M.arm_rotation(f, expr)
  local cron = require "pm.cron"
  local spec = cron.parse(require("pm.app").rotate_cron(expr))
  if not spec then return end
  local now_s = core.now() / 1000
  local at = cron.next(spec, now_s)
  if not at then return end
  f[F_ROTATE] = core.timer(math.max(0, (at - now_s) * 1000), 0, function()
    f[F_ROTATE] = false
    if f[F_REFS] <= 0 then return end
    f[F_FILE]:rotate()
    M.arm_rotation(f, expr)
  end)
end

local function release_file(path)
  local f = path and files[path]
  if not f then return end
  f[F_REFS] = f[F_REFS] - 1
  if f[F_REFS] <= 0 then
    if f[F_ROTATE] then f[F_ROTATE]:close(); f[F_ROTATE] = false end
    f[F_FILE]:close()
    files[path] = nil
  end
end

-- PM2's moment-style log_date_format -> strftime, %L for milliseconds
-- (core/logs.c's: strftime's, then %L the milliseconds and %Q the UTC
-- offset; a "%" meant literally is "%%" after strftime)
function M.time_format(fmt)
  local out = {}
  for i, piece in ipairs(util.moment_pieces(fmt)) do
    if type(piece) == "table" then
      out[i] = piece[1]:gsub("%%", "%%%%%%%%")
    else
      out[i] = piece == "SSS" and "%L" or piece == "Z" and "%%Q" or util.MOMENT[piece][1]
    end
  end
  return table.concat(out)
end

local function pipe_opts(p, which, lazy)
  local d = p.decl
  local opts = { files = {} }
  local main = which == "out" and p.out_path or p.err_path
  for _, path in ipairs({ main, p.log_path }) do
    if path and path ~= "/dev/null" then
      local f, why = acquire_file(path, d, p, lazy)
      if f then
        opts.files[#opts.files + 1] = f
        p.acquired[#p.acquired + 1] = path -- released with exactly these
      else
        p.logs_missing = why
      end
    end
  end
  if d.log_date_format then
    opts.time_format = M.time_format(d.log_date_format)
  elseif d.time then
    opts.time_format = "%Y-%m-%dT%H:%M:%S"
  end
  if opts.time_format and d.merge_logs and d.instances > 1 and d.log_type ~= "json" then
    -- several instances write the file: each line says whose it is
    opts.time_format = opts.time_format .. " [" .. p.pm_id .. "]"
  end
  if d.log_type == "json" then
    opts.json = { app_name = p.name, process_id = p.pm_id, type = which }
    -- (PM2's timestamp without log_date_format: JavaScript's toISOString,
    -- UTC: "!" says so to core.logpipe)
    if not d.log_date_format then opts.time_format = "!%Y-%m-%dT%H:%M:%S.%LZ" end
  end
  return opts
end

-- p is deleted: its folder is free for the next app of its name
function M.forget(p)
  if p.paths_of then
    let_go(p)
    p.paths_of = nil
  end
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
-- prefixed with the app's name; or, when on is a function (pm runtime
-- --json), to on(p, which, data).
local echo = false
function M.set_echo(on) echo = on end

local function echo_for(p, which, publish)
  if type(echo) == "function" then
    local fn = echo
    return function(data)
      fn(p, which, data)
      if publish then publish(data) end
    end
  end
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
-- held: what the keeper holds of them ({ out = id, err = id }: let go at
-- their end) and, taken over from a daemon before, the start of a line it
-- read without its end ({ out_part, err_part })
-- lazy (a take-over: the last daemon wrote them): a file is opened by the
-- writer when it first writes, a failure then said and its lines counted
-- (two opens an app less on the way to answering)
function M.open_pipes(p, out_r, err_r, held, lazy)
  held = held or {}
  local keeper = require "pm.keeper"
  local function opts(which)
    local o = pipe_opts(p, which, lazy)
    o.part = held[which .. "_part"]
    o.held = held[which] -- (its unfinished line in the log WAL: logwal.lua)
    return o
  end
  p.acquired = {}
  p.logs_missing = nil
  -- (keeper.release itself is called with the pipe's id at its end, not
  -- a closure each; the pipe keeps the id: logpipe:detach gives it)
  p.pipes = {
    out = core.logpipe(out_r, opts("out"), keeper.release),
    err = core.logpipe(err_r, opts("err"), keeper.release),
  }
  M.release(p)
  -- (acquired: only while they are built; a field less in every record)
  p.log_files, p.acquired = p.acquired, nil
  set_taps(p)
end

-- Reopens every log file (a deleted one, or its directory, comes back);
-- a file that could not be opened when its app started (of list) is
-- tried again. -> true | nil, err (the folders that could not be made)
function M.reload(list)
  local failed = {}
  for path, f in pairs(files) do
    local dir = util.dirname(path)
    local ok, err = util.mkdir_p(dir, nil, f[F_OWNER] or nil)
    local st = core.stat(dir)
    if not ok or not st or st.type ~= "dir" then
      failed[#failed + 1] = ok and (dir .. ": not a directory") or tostring(err)
    end
    f[F_FILE]:reopen()
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
      p.log_files, p.acquired = p.acquired, nil
    end
  end
  if #failed > 0 then
    table.sort(failed)
    return nil, "cannot reopen the logs in " .. table.concat(failed, "; ")
  end
  return true
end

-- The last n lines of p's out and error logs (pm.tail in hooks), once
-- the writer thread has written what it holds (100 ms at most) ->
-- { out = {...}, err = {...} }; a file of another user is read only when
-- it is a regular file of theirs (logtail.owner's rule).
function M.tail(p, n)
  core.log_drain(100)
  local logtail = require "pm.logtail"
  local d = p.decl
  local owner = d.uid and d.uid ~= core.getuid() and { uid = d.uid, gid = d.gid } or nil
  local res = {}
  for _, which in ipairs({ "out", "err" }) do
    local path = which == "out" and (p.out_path or M.path(p, "out")) or (p.err_path or M.path(p, "err"))
    res[which] = path ~= "/dev/null" and logtail.last_lines(path, n, owner) or {}
  end
  return res
end

-- Empties the log files of the procs; returns how many.
function M.flush(list)
  local n = 0
  for _, p in ipairs(list) do
    for _, path in ipairs({ p.out_path, p.err_path, p.log_path }) do
      if path ~= "/dev/null" then
        local f = files[path]
        if f then
          f[F_FILE]:truncate()
          n = n + 1
        elseif core.truncate(path, M.owner(path, p.decl)) then
          n = n + 1
        end
      end
    end
  end
  return n
end

return M
