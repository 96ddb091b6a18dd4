-- Starting an app's process: what it needs before its spawn (output
-- pipes, held listen sockets, the IPC channel's fd), its command line and
-- environment, the spawn (one, or a batch spawned by threads), and a
-- crash loop's plumbing kept from one process to the next. Decides
-- nothing about when a process starts (the supervisor, exits.lua and
-- rules.lua do) nor what its exit means.
local core = require "pm.core"
local util = require "pm.util"
local log = require "pm.log"
local sockets = require "pm.sockets"
local proc = require "pm.proc"
local lifecycle = require "pm.lifecycle"
local applogs = require "pm.applogs"
local pidfile = require "pm.pidfile"
local channel = require "pm.channel"
local fdcost = require "pm.fds"
local cgroup = require "pm.cgroup"
local readiness = require "pm.readiness"
local rules = require "pm.rules"
local appdecl = require "pm.app"
local keeper = require "pm.keeper"
local appconf = require "pm.appconf"

local M = {}

local ctx, by_pid, event = proc.ctx, proc.by_pid, proc.event

-- filter_env: true drops the caller's whole environment, a list drops the
-- variables that start with one of its entries (PM2's rule).
local function filtered(filter, k)
  if filter == true then return true end
  if type(filter) == "string" then filter = { filter } end
  if type(filter) ~= "table" then return false end
  for _, prefix in ipairs(filter) do
    if k:sub(1, #prefix) == prefix then return true end
  end
  return false
end

-- An app that runs as another user than the daemon's starts from that
-- user's login environment (HOME, USER, LOGNAME, SHELL from passwd, a
-- default PATH), as login(1) and systemd's User= give it, not from the
-- caller's (root's secrets, HOME=/root): -> that environment | nil (an app
-- of the daemon's own user).
local LOGIN_PATH = appdecl.LOGIN_PATH
local function login_env(d)
  local uid = tonumber(d.uid)
  if not uid or uid == core.getuid() then return nil end
  local pw = util.passwd(uid) or {}
  local name = pw.name or tostring(uid)
  return { HOME = pw.dir ~= "" and pw.dir or "/", USER = name, LOGNAME = name,
    SHELL = pw.shell ~= "" and pw.shell or "/bin/sh", PATH = LOGIN_PATH }
end

local function build_env(p)
  local home = ctx.home
  local d = p.decl
  local env = login_env(d)
  -- the caller's environment: always for an app of the daemon's user (PM2's
  -- rule); for one of another user only when it asks (filter_env = false,
  -- or PM2's prefixes to leave out), and never over who it is
  local pass = not env or (d.filter_env ~= nil and d.filter_env ~= true)
  local login = env or {}
  env = env or {}
  for k, v in pairs(pass and p.environ or {}) do
    if not filtered(d.filter_env, k) and not (login[k] and k ~= "PATH") then env[k] = v end
  end
  for _, k in ipairs(d.env_remove or {}) do env[k] = nil end
  env.PWD = d.cwd -- the app's own folder, as a shell started there says (PM2)
  for k, v in pairs(d.env) do env[k] = v end
  -- pm set APP.KEY VALUE: over the declared variables, as PM2's module
  -- config (each key, and the whole config as JSON under the app's name,
  -- unless a variable has that name already: an app named PATH keeps it)
  local conf = appconf.env_of(p.name)
  if conf then
    for k, v in pairs(conf) do
      if k ~= p.name or env[k] == nil then env[k] = v end
    end
  end
  local inc = d.increment_var
  if inc and p.instance > 0 then
    local base = tonumber(env[inc])
    if base then env[inc] = tostring(math.floor(base) + p.instance) end
  end
  env.pm_id = tostring(p.pm_id)
  env.name = p.name
  env[p.decl.instance_var or "NODE_APP_INSTANCE"] = tostring(p.instance)
  env.NODE_APP_INSTANCE = tostring(p.instance)
  env.PM_HOME = home
  if p.channel_fd then
    env.NODE_CHANNEL_FD = tostring(p.channel_fd)
    env.NODE_CHANNEL_SERIALIZATION_MODE = "json"
  end
  env.PM_APP_UID = p.uid_marker -- lets a new daemon recognise this app's processes
  local notify = readiness.notify_path(d)
  if notify then env.NOTIFY_SOCKET = notify end
  if p.decl.watchdog then env.WATCHDOG_USEC = tostring(math.floor(p.decl.watchdog * 1000)) end
  if p.listen then
    env.LISTEN_FDS = tostring(#p.listen.names)
    env.LISTEN_FDNAMES = table.concat(p.listen.names, ":")
    if p.listen.map then env.PM_LISTEN_MAP = p.listen.map end
  else
    env.LISTEN_FDS, env.LISTEN_FDNAMES, env.PM_LISTEN_MAP = nil, nil, nil
  end
  local list, n = {}, 0
  for k, v in pairs(env) do n = n + 1; list[n] = k .. "=" .. v end
  return list, env
end

-- The JSON of an app's environment in two parts: the members it shares
-- with the environment it was started from (one string for every app of
-- the same start that overrides the same names) and its own. 2,000 apps
-- keep 2,000 small strings and one large one instead of 2,000 large ones.
local shared_json = setmetatable({}, { __mode = "k" }) -- environ -> names -> text
local function inner(t) -- (descriptions': valid UTF-8)
  if next(t) == nil then return "" end
  return util.encode_text(t):sub(2, -2)
end
local function env_json(environ, env, d)
  environ = environ or {}
  local own, changed = {}, {}
  for k, v in pairs(env) do
    if environ[k] ~= v then own[k] = v end
  end
  appdecl.show_numbers(d, own)
  for k in pairs(environ) do
    if env[k] ~= environ[k] then changed[#changed + 1] = k end
  end
  table.sort(changed)
  local by_names = shared_json[environ]
  if not by_names then
    by_names = {}
    shared_json[environ] = by_names
  end
  local names = table.concat(changed, "\0")
  local text = by_names[names]
  if not text then -- (the shared members: environ's, but for the changed names)
    local shared = {}
    for k, v in pairs(env) do
      if environ[k] == v then shared[k] = v end
    end
    text = inner(shared)
    by_names[names] = text
  end
  return { text, inner(own) }
end

-- The environment of p's next process, as the "K=V" list spawn takes and
-- as the JSON its description shows. Built again only when something it
-- depends on changed: a crash loop reuses it restart after restart (kept
-- while the loop lasts only: 800 bytes an app that runs)
function M.env_of(p)
  local l = p.listen
  local key = l and (table.concat(l.names, ":") .. (l.map or "")) or ""
  local c = p.env_cache
  local notify = readiness.notify_path(p.decl)
  if c and c.environ == p.environ and c.decl == p.decl and c.key == key
    and c.channel_fd == p.channel_fd and c.notify == notify and c.conf == appconf.version then
    return c.list
  end
  local list, env = build_env(p)
  p.env_cache = { environ = p.environ, decl = p.decl, key = key, channel_fd = p.channel_fd,
    notify = notify, list = list, conf = appconf.version }
  p.env_json = env_json(p.environ, env, p.decl)
  return list
end

-- The program and argv of d's process -> file, argv
function M.command(d)
  local pm_bin = ctx.pm_bin
  local argv = {}
  local file
  if d.interpreter == "none" then
    file = d.script
    argv[1] = d.script
  elseif d.interpreter == "pm" then
    file = pm_bin
    argv[1] = pm_bin
    argv[2] = "run"
  else
    file = d.interpreter
    argv[1] = d.interpreter
    local preload = d.exec_mode == "cluster_mode" and appdecl.is_node(d.interpreter) and ctx.cluster_preload
    if preload and d.uid and tonumber(d.uid) ~= core.getuid() then
      -- (PM_HOME is not theirs to read)
      preload = readiness.shared_preload(require("pm.preload").CLUSTER)
    end
    if preload then
      -- server.listen(port) becomes listen on the socket the daemon holds
      argv[#argv + 1] = "-r"
      argv[#argv + 1] = preload
    end
    -- PM2's source map support, Node's own: on when asked, or when the
    -- script has its .map beside it, unless disabled
    if appdecl.is_node(d.interpreter) and d.disable_source_map_support ~= true
        and (d.source_map_support == true or core.stat(d.script .. ".map")) then
      argv[#argv + 1] = "--enable-source-maps"
    end
    for _, a in ipairs(d.interpreter_args or {}) do argv[#argv + 1] = a end
  end
  if d.interpreter ~= "none" then argv[#argv + 1] = d.script end
  for _, a in ipairs(d.args) do argv[#argv + 1] = a end
  return file, argv
end

-- In a crash loop (an immediate restart after a fast exit) the daemon
-- keeps the write ends of an app's output pipes, and its pid file, open:
-- the next process of the loop gets the same pipes (its logpipes, files
-- and watchers stay as they are) and the pid is written in place. What a
-- process of the loop wrote is read in order, before what the next one
-- writes. Released when the loop ends (a stable run, a stop, a delay, a
-- new declaration).
local function unkeep(p)
  local k = p.kept
  if not k then return end
  p.kept = nil
  core.close(k.out_w)
  core.close(k.err_w)
  if k.pid_fd then core.close(k.pid_fd) end
  if k.ipc_child then core.close(k.ipc_child) end
  if k.timer then k.timer:close() end
  cgroup.unhold(p)
  p.env_cache = nil
end

local end_channel = channel.close

-- p's stdin pipe (input = true) goes
local function close_stdin(p)
  if p.stdin_w then core.close(p.stdin_w); p.stdin_w = nil end
  keeper.release(p.stdin_held)
  p.stdin_held = nil
end

-- lifecycle's "release": p's channel, stdin and kept plumbing go
local function release(p)
  end_channel(p)
  close_stdin(p)
  unkeep(p)
end
M.release = release
M.unkeep = unkeep
M.end_channel = end_channel
proc.ACTIONS.release = release

-- p's declaration becomes decl, a copy with other instances (pm scale):
-- a crash loop's kept pipes stay good for it
function M.adopt(p, decl)
  local k = p.kept
  if k and k.of == p.decl then k.of = decl end
end

-- Whether p's next process can have the pipes of its last one. What that
-- one wrote is read now and its last line ended (logpipe:cut), whether
-- or not its pipes go on: pipes of its own end when the loop reads their
-- end, and a loop that reaped the next process too before it did wrote
-- that one's last line first. (Not while the log writer is behind: a
-- paused pipe is left as it is, and the next process gets pipes of its
-- own.)
local function reusable(p)
  local k = p.kept
  local cut = M.settle(p)
  return k ~= nil and k.of == p.decl and cut
end

-- Whether the log writer is behind on what p's last process wrote (its
-- pipes wait for it: a FIFO no one reads, a disk that hangs): its next
-- process waits too (exits.lua), instead of pipes of its own each run,
-- an fd more each and their lines out of order
function M.held_back(p)
  local pipes = p.pipes
  return pipes ~= nil and (pipes.out:paused() or pipes.err:paused())
end

-- What p's last process wrote is read and its last line ended, before
-- its next process starts -> whether both pipes were cut (and may go on)
function M.settle(p)
  local pipes = p.pipes
  if not pipes then return false end
  local out, err = pipes.out:cut(), pipes.err:cut()
  return out and err
end

-- Closes what a spec opened for nothing (a failed start); a crash loop's
-- kept pipes and channel go too.
local function drop_spec(p, spec)
  if spec.in_r then core.close(spec.in_r); core.close(spec.in_w) end
  if spec.reused then
    end_channel(p)
    unkeep(p)
    return
  end
  core.close(spec.out_r); core.close(spec.out_w)
  core.close(spec.err_r); core.close(spec.err_w)
end

-- What a running process of p costs the daemon in fds (fds.lua)
local function fds_needed(p)
  return fdcost.PER_APP + (channel.wanted(p) and 1 or 0)
end

-- Out of fds, many apps fail at once: said in pm.log once a second
local emfile_said = -math.huge
local function say_failure(p, err)
  if err:find("fd limit", 1, true) then
    if core.mono() - emfile_said < 1000 then return end
    emfile_said = core.mono()
  end
  log.error("app %s (%d) cannot start: %s", p.name, p.pm_id, err)
end

-- p cannot start: errored, with why (running out of fds said with the
-- arithmetic)
local function failed(p, err)
  err = fdcost.reason(err, fds_needed(p))
  lifecycle.fire(p, "failed")
  p.error = err
  say_failure(p, err)
  return nil, err
end

-- A start that cannot have its fds: errored, unless tentative (then
-- nil, err, "short" and p untouched: the caller frees fds and tries again)
local function short(p, err, tentative)
  if tentative and tostring(err):find("Too many open files", 1, true) then return nil, err, "short" end
  return failed(p, err)
end

-- The sockets p's app listens on (declared, or learned in cluster mode),
-- held by the daemon: p.listen says their names and ports to its process.
-- -> the sockets ({} for none) | nil, err
local NONE = {} -- (no sockets: a crash loop's restart makes no table)
local function hold_listen(p)
  local d = p.decl
  p.listen = nil
  local specs = readiness.listen_specs(d)
  if not specs then return NONE end
  local socks, serr = sockets.acquire(sockets.key(d), specs, d.cwd)
  if not socks then return nil, serr end
  local names, map = {}, {}
  for i, sk in ipairs(socks) do
    names[i] = sk.name
    if sk.port then map[#map + 1] = ('"%d":%d'):format(sk.port, i + 2) end
  end
  p.listen = { names = names, map = "{" .. table.concat(map, ",") .. "}" }
  -- (what the app learned since its declaration was made is saved with it)
  sockets.remember(d)
  return socks
end

-- What a process of p needs before its spawn -> spec | nil, err (p is
-- then errored): its pipes, sockets, channel and the spawn's options.
-- looping: in a crash loop (the last process's pipes may be taken over).
-- tentative: out of fds, nil, err, "short" and p as it was (see short).
local function prepare(p, looping, tentative)
  local d = p.decl
  if p.timer then p.timer:close(); p.timer = nil end
  applogs.paths(p) -- (the same on every restart of a declaration)
  local spec = { looping = looping }
  if looping and reusable(p) then
    spec.reused = true
    spec.out_w, spec.err_w = p.kept.out_w, p.kept.err_w
  else
    unkeep(p)
    local out_r, out_w = core.pipe(1048576)
    local err_r, err_w
    if out_r then err_r, err_w = core.pipe(1048576) end
    if not out_r or not err_r then
      -- the error of the pipe that failed ("pipe: <why>"; out_w is an fd
      -- when only the second failed)
      local why = out_r and err_w or out_w
      if out_r then core.close(out_r); core.close(out_w) end
      return short(p, tostring(why), tentative)
    end
    spec.out_r, spec.out_w, spec.err_r, spec.err_w = out_r, out_w, err_r, err_w
  end
  -- (a crash loop's next process: the kept command and tables of the
  -- spawn's options, filled again: a restart makes less garbage)
  local k = spec.reused and p.kept
  local file, argv
  if k and k.argv then
    file, argv = k.file, k.argv
  else
    file, argv = M.command(d)
    if k then k.file, k.argv = file, argv end
  end
  local fds = k and k.fds or {}
  if k then
    k.fds = fds
    for i = #fds, 4, -1 do fds[i] = nil end
  end
  fds[1], fds[2], fds[3] = -1, spec.out_w, spec.err_w
  if d.input then -- a stdin the daemon writes (pm send, pm attach)
    local in_r, in_w = core.input_pipe()
    if not in_r then
      drop_spec(p, spec)
      return short(p, tostring(in_w), tentative)
    end
    spec.in_r, spec.in_w, fds[1] = in_r, in_w, in_r
  end
  local socks, serr = hold_listen(p)
  if socks == nil then
    drop_spec(p, spec)
    return failed(p, serr)
  end
  for _, sk in ipairs(socks) do fds[#fds + 1] = sk.fd end
  if channel.wanted(p) then
    k = p.kept
    if spec.reused and k.ipc_child and p.channel and p.channel:cut() then
      -- the loop's channel: what the last process was sent and never read goes
      core.discard(k.ipc_child)
      fds[#fds + 1] = k.ipc_child
    else
      if k and k.ipc_child then core.close(k.ipc_child); k.ipc_child = nil end
      local ipc_parent, ipc_child = core.socketpair()
      if not ipc_parent then -- out of fds: the start fails, with why
        drop_spec(p, spec)
        return short(p, tostring(ipc_child), tentative) -- ("socketpair: <why>")
      end
      fds[#fds + 1] = ipc_child
      spec.ipc_parent, spec.ipc_child = ipc_parent, ipc_child
    end
    p.channel_fd = #fds - 1
  else
    p.channel_fd = nil
  end
  local cg, cg_fd = cgroup.procs_file(p)
  p.cgroup = cg ~= nil or nil
  local opts = spec.reused and p.kept.opts or {}
  if spec.reused then p.kept.opts = opts end
  opts.file, opts.args, opts.env, opts.cwd, opts.fds, opts.setsid = file, argv, M.env_of(p), d.cwd, fds, true
  opts.uid, opts.gid, opts.listen_pid, opts.cgroup, opts.cgroup_fd, opts.narrow = d.uid, d.gid, p.listen ~= nil,
    cg, cg_fd, fdcost.big_table()
  spec.opts = opts
  return spec
end

-- The process of p once spawned (pid), or its failure (nil, err).
-- Returns true, or nil, err (p is then errored).
local function finish(p, spec, pid, err)
  local d = p.decl
  if not pid and spec.opts.cgroup_fd and tostring(err):find("^join the cgroup") then
    -- (the group held through a crash loop went: made again, by its path)
    cgroup.unhold(p)
    spec.opts.cgroup, spec.opts.cgroup_fd = cgroup.procs_file(p)
    p.cgroup = spec.opts.cgroup ~= nil or nil
    pid, err = core.spawn(spec.opts)
  end
  if not pid and spec.opts.cgroup and tostring(err):find("^join the cgroup") and not cgroup.short(err) then
    -- a hierarchy that refuses it: cgroups off, and this spawn again without
    -- (not for want of fds or memory: that spawn fails, as any other would)
    cgroup.disable(err)
    spec.opts.cgroup = nil
    p.cgroup = nil
    pid, err = core.spawn(spec.opts)
  end
  local ipc_parent = spec.ipc_parent
  if not spec.reused then
    if pid and spec.looping then
      p.kept = { out_w = spec.out_w, err_w = spec.err_w, of = d }
      cgroup.hold(p)
      -- a run that lasts min_uptime ends the loop: the daemon's copies go
      -- (the process has its own), not kept for as long as it runs
      local min = math.max(d.min_uptime or 1000, 10)
      p.kept.timer = core.timer(min, min, function()
        if p.pid and p.pid > 0 and p.started and core.mono() - p.started >= min then unkeep(p) end
      end)
    else
      core.close(spec.out_w)
      core.close(spec.err_w)
      if not spec.looping then p.env_cache = nil end
    end
  end
  if spec.in_r then
    core.close(spec.in_r)
    close_stdin(p)
    if pid then
      p.stdin_w = spec.in_w
      p.stdin_held = keeper.hold(("i %d %d"):format(p.pm_id, pid), spec.in_w)
    else
      core.close(spec.in_w)
    end
  end
  if spec.ipc_child then
    if pid and p.kept then p.kept.ipc_child = spec.ipc_child else core.close(spec.ipc_child) end
  end
  if not pid then
    if not spec.reused then core.close(spec.out_r); core.close(spec.err_r) end
    unkeep(p)
    if ipc_parent then core.close(ipc_parent) end
    err = fdcost.reason(err, fds_needed(p))
    lifecycle.fire(p, "failed")
    p.error = err
    p.pid = 0
    say_failure(p, err)
    event(p, "exit", { code = 127, signal = util.null, reason = "exit" })
    return nil, err
  end
  p.pid = pid
  p.pgid = pid
  p.error = nil
  p.started = core.mono()
  p.pm_uptime = core.now()
  p.cpu_sample = nil
  by_pid[pid] = p
  -- what the process's life depends on goes to the keeper too (one packet
  -- for a batch: keeper.flush), so that it outlives a crash of the daemon
  if not spec.reused then
    applogs.open_pipes(p, spec.out_r, spec.err_r, {
      out = keeper.hold(("o %d %d"):format(p.pm_id, pid), spec.out_r),
      err = keeper.hold(("e %d %d"):format(p.pm_id, pid), spec.err_r) })
  end
  if ipc_parent then channel.open(p, ipc_parent, keeper.hold(("c %d %d"):format(p.pm_id, pid), ipc_parent)) end
  pidfile.write(p)
  event(p, "start")
  lifecycle.fire(p, "spawned")
  if d.max_memory_restart then rules.arm_memory(p) end
  readiness.await(p)
  return true
end

--[[ p's process is one a daemon before this one started, still running
(recovery.lua: the keeper handed it over). a: { pid, started (ms since
the epoch), out, err (fds), held = { out,
err, out_part, err_part }, ipc, ipc_held, stdin, stdin_held }. p (stopped,
new) becomes online with it: same pid, its pipes read again, its channel
and stdin the daemon's again. ]]
function M.take(p, a)
  local d = p.decl
  proc.act(p, lifecycle.fire(p, "adopt"))
  p.pid, p.pgid = a.pid, a.pid
  p.pm_uptime = a.started or core.now()
  p.started = core.mono() - math.max(0, core.now() - p.pm_uptime)
  require("pm.exits").note_start(p, a.start)
  p.ready = "start"
  p.error = nil
  by_pid[a.pid] = p
  p.cgroup = cgroup.adopt(p, a.pid, a.cgroup)
  applogs.paths(p)
  applogs.open_pipes(p, a.out, a.err, a.held, true)
  if a.ipc then
    channel.open(p, a.ipc, a.ipc_held)
    p.channel_fd = 3 -- (known to its process only; a number for "has one")
  end
  if a.stdin then p.stdin_w, p.stdin_held = a.stdin, a.stdin_held end
  -- its description shows the environment it was started with, made as
  -- its spawn made it (after a take-over jlist showed env {} and no
  -- flattened variables)
  M.env_of(p)
  p.env_cache = nil
  if d.max_memory_restart then rules.arm_memory(p) end
  readiness.arm_health(p)
  -- its sockets, held again (the last daemon's, handed over by the keeper:
  -- else a reload's new process could not listen where it does)
  local socks, serr = hold_listen(p)
  if not socks then log.warn("app %s (%d): its listen sockets are not held again: %s", p.name, p.pm_id, serr) end
end

-- Whether p may have a process now: not when a delete or the daemon's
-- exit overtook the start (no process that nothing would ever stop, nor
-- a crash loop's plumbing kept) -> true | nil, err (p is then stopped)
local function may_launch(p)
  if not ctx.closing and lifecycle.launchable(p) then
    local ok, err = lifecycle.fire(p, "launch")
    if ok then return true end
    return nil, err
  end
  proc.act(p, lifecycle.fire(p, "cancel"))
  return nil, ctx.closing and "the daemon is exiting" or ("%s is being deleted"):format(p.name)
end

-- Starts the process of p. Returns true, or nil, err (p is then errored).
-- looping: an immediate restart after a fast exit (a crash loop).
function M.launch(p, looping)
  local ok, err = may_launch(p)
  if not ok then return nil, err end
  local spec
  spec, err = prepare(p, looping)
  if not spec then return nil, err end
  local done, ferr = finish(p, spec, core.spawn(spec.opts))
  keeper.flush()
  return done, ferr
end

-- New processes start on the next turn of the loop, together: the apps a
-- request declares are written to the journal once, before any of them
-- runs (write-ahead: a daemon killed meanwhile leaves nothing unknown).
local queued, queue_timer = {}, nil
local function launch_queued()
  queue_timer = nil
  local list = queued
  queued = {}
  ctx.declared()
  -- Spawned by threads, a batch at a time, while this thread prepares the
  -- next batch and finishes the previous one (each spawn waits ~0.6 ms
  -- for its child's exec; a batch bounds the fds open at once). The loop
  -- does not run meanwhile.
  local prev, batch = nil, { procs = {}, specs = {} }
  -- spawns that found no fd for their child's set-up while other spawns
  -- held theirs: tried once more when none is in flight
  local again = {}
  local function finish_batch(b, outcomes)
    for i, p in ipairs(b.procs) do
      local o = outcomes[i]
      if not o[1] and tostring(o[2]):find("Too many open files", 1, true) and #b.procs > 1 then
        local spec = b.specs[i]
        drop_spec(p, spec)
        if spec.ipc_parent then core.close(spec.ipc_parent); core.close(spec.ipc_child) end
        again[#again + 1] = p
      else
        local ok, err = finish(p, b.specs[i], o[1], o[2])
        if not ok then readiness.fail_ready(p, err) end -- whoever waits for it hears why
      end
    end
    keeper.flush()
  end
  local function retry()
    local waiting = again
    again = {}
    for _, p in ipairs(waiting) do
      local spec, err = prepare(p)
      if spec then
        local ok
        ok, err = finish(p, spec, core.spawn(spec.opts))
        keeper.flush()
        if not ok then readiness.fail_ready(p, err) end
      else
        readiness.fail_ready(p, err)
      end
    end
  end
  local function submit()
    if #batch.procs == 0 then return end
    local opts = {}
    for i, spec in ipairs(batch.specs) do opts[i] = spec.opts end
    local done = prev and prev.spawning:wait()
    batch.spawning = core.spawn_start(opts)
    if prev then finish_batch(prev, done) end
    prev, batch = batch, { procs = {}, specs = {} }
  end
  -- what the apps' running processes may take: the fds free beyond those
  -- kept for connections and log files (pm ping's apps_fit), counted once
  local room = fdcost.room(#list * (fdcost.PER_APP + 1))
  for _, p in ipairs(list) do
    if not ctx.closing and not p.deleted and p.status == "launching" and (p.pid or 0) == 0 then
      local spec, err, lacking
      local need = fds_needed(p)
      if room < need then
        spec, err = failed(p, "Too many open files") -- (said with the arithmetic: fdcost.reason)
      else
        spec, err, lacking = prepare(p, nil, prev ~= nil or #batch.procs > 0)
        room = room - need
      end
      if lacking then
        -- out of fds while batches are in flight (each spawn holds its
        -- pipes' both ends, and the keeper's copies until the flush):
        -- finish them, then once more for good (a low limit starts as
        -- many apps as it has room for, one batch's fds at a time)
        submit()
        if prev then finish_batch(prev, prev.spawning:wait()); prev = nil end
        retry()
        spec, err = prepare(p)
      end
      if spec then
        batch.procs[#batch.procs + 1] = p
        batch.specs[#batch.specs + 1] = spec
        if #batch.procs >= M.SPAWN_BATCH then submit() end
      else
        readiness.fail_ready(p, err)
      end
    end
  end
  submit()
  if prev then finish_batch(prev, prev.spawning:wait()) end
  retry()
end
M.SPAWN_BATCH = 16

-- p (a new record, launching) starts with the next batch.
function M.queue(p)
  lifecycle.fire(p, "queue")
  queued[#queued + 1] = p
  if not queue_timer then queue_timer = core.timer(0, 0, launch_queued) end
end

return M
