-- The methods of the wire protocol (DESIGN §6): a request's parameters
-- checked and turned into operations of the supervisor (targets resolved,
-- ecosystem files loaded, apps started in their dependency order, stops in
-- the reverse one), and its reply. Decides what a request means; how a
-- process lives is the supervisor's, the connection rpc.lua's.
local core = require "pm.core"
local util = require "pm.util"
local hooks = require "pm.hooks"
local log = require "pm.log"
local rpc = require "pm.rpc"
local bus = require "pm.bus"
local sup = require "pm.supervisor"
local channel = require "pm.channel"
local sockets = require "pm.sockets"
local readiness = require "pm.readiness"
local ecosystem = require "pm.ecosystem"
local appdecl = require "pm.app"
local persist = require "pm.persist"
local children = require "pm.children"
local recovery = require "pm.recovery"
local applogs = require "pm.applogs"

local M = {}
M.FILE_CONCURRENCY = 64 -- a file's apps applied at once (start_decls)

-- Set by the daemon: home (PM_HOME), shutdown(code, before_exit), the
-- daemon's errors count (ping)
M.ctx = { home = nil, shutdown = nil, errors = function() return 0 end }
local ctx = M.ctx

-- The descriptions of list as the reply's JSON; params.fields: only
-- those (a client names what it shows); params.brief: true, without each
-- app's environment; "table", the fields pm list showed before it named
-- them.
local function descriptions(list, params, sampled, changes)
  local brief = false
  if type(params) == "table" then
    if params.fields ~= nil then
      brief = sup.selection(params.fields) or false -- (checked by the method)
    elseif params.brief == true or params.brief == "table" then
      brief = params.brief
    end
  end
  return sup.describe_list(list, brief, not sampled, changes)
end

-- Runs op(p, cb) on each proc of list; done(err, descriptions) at the end.
local function each(list, op, done, params)
  local left, first_err = #list, nil
  if left == 0 then return done(nil, descriptions(list, params)) end
  for _, p in ipairs(list) do
    op(p, function(err)
      if err and not first_err then first_err = err end
      left = left - 1
      if left == 0 then
        if first_err then return done(first_err) end
        done(nil, descriptions(list, params))
      end
    end)
  end
end

-- Runs a helper (node reading a .config.js) in its own session, within
-- limits {timeout, max_output} -> done(code, stdout, stderr)
ecosystem.capture = function(argv, limits, done)
  local opts = { capture = true, setsid = true, timeout = limits.timeout, max_output = limits.max_output,
    env = limits.env, cwd = limits.cwd, uid = limits.uid, gid = limits.gid }
  children.run(argv, opts, function(code, signum, out, err)
    if not out then return done(nil, nil, err) end -- (not spawned, or killed at a limit)
    done(code or (128 + (signum or 0)), out, err)
  end)
end

-- A supervisor's refusal (nil, message, kind) as the wire's error
local function wire_error(message, kind)
  if kind == "params" then return { code = rpc.INVALID_PARAMS, message = message } end
  return message
end

-- The uid of the peer of a connection (SO_PEERCRED), when there is one
local function uid_of(conn)
  return type(conn) == "table" and tonumber(conn.uid) or nil
end

-- A target of the wire: pm_id, name, "all", namespace or an ecosystem file
-- -> done(list | nil, err). conn: the caller's connection (whose rights
-- what a file reads is read with).
local function resolve(params, done, conn)
  local target = params.target
  if target == nil or target == util.null then target = params.name or params.id end
  if type(target) == "string" and util.is_ecosystem(target) and core.stat(target) then
    return ecosystem.load(target, { only = params.only, environ = M.environ_of(params),
      cwd = type(params.cwd) == "string" and params.cwd or nil, uid = uid_of(conn) }, function(decls, err)
      if not decls then return done(nil, err) end
      local list = {}
      for _, d in ipairs(decls) do
        for _, p in ipairs(sup.by_name(d.name)) do list[#list + 1] = p end
      end
      done(list)
    end)
  end
  if target == nil then return done(nil, { code = rpc.INVALID_PARAMS, message = "params.target is required" }) end
  local list, err, kind = sup.resolve(target)
  done(list, err and wire_error(err, kind))
end

-- The caller's environment: names and values as strings, nothing else.
local function environ_of(params)
  if type(params.environ) ~= "table" then return core.environ() end
  local env = {}
  for k, v in pairs(params.environ) do
    if type(k) == "string" and k ~= "" and not k:find("[=%z]") then
      if type(v) == "string" then
        if not v:find("%z") then env[k] = v end
      elseif type(v) == "number" or type(v) == "boolean" then
        env[k] = tostring(v)
      end
    end
  end
  return env
end

local methods = {}

function methods.ping(params, _, done)
  -- heap_kb: the daemon's Lua heap (bench/ reports it beside RSS)
  -- unsaved: why the daemon cannot write its journal (it keeps trying)
  -- fds: only when asked ({"fds": true}: pm ping): counting them reads
  -- /proc/self/fd, 20,000 entries with 10,000 apps, and every command's
  -- version check is a ping
  done(nil, { msg = "pong", version = util.VERSION, pid = core.getpid(),
    heap_kb = math.floor(collectgarbage("count")), errors = ctx.errors(), unsaved = persist.unsaved,
    fds = type(params) == "table" and params.fds and require("pm.fds").status() or nil,
    keeper = require("pm.keeper").pid, took_over = require("pm.keeper").took_over })
end

-- {"brief": true}: without each app's environment; {"brief": "table"}:
-- what pm list's table showed; {"fields": [...]}: those fields only
function methods.list(params, _, done)
  if params.fields ~= nil then
    local ok, err = sup.selection(params.fields)
    if not ok then return done({ code = rpc.INVALID_PARAMS, message = err }) end
  end
  local list, limit = sup.all(), params.limit
  if limit ~= nil then -- the first `limit` apps (pm prettylist shows 100)
    if type(limit) ~= "number" or limit < 0 or limit % 1 ~= 0 then
      return done({ code = rpc.INVALID_PARAMS, message = "params.limit: a whole number of apps, 0 or more" })
    end
    if limit < #list then
      local first = {}
      for i = 1, limit do first[i] = list[i] end
      list = first
    end
  end
  done(nil, descriptions(list, params, true))
end

function methods.describe(params, conn, done)
  resolve(params, function(list, err)
    if not list and type(err) == "table" then return done(err) end -- a bad target, not an unknown one
    done(nil, descriptions(list or {}, params, true))
  end, conn)
end

-- The declarations of the apps a target names, as pm export reads them:
-- each app once (its instances share one), with its own environment; a
-- Lua hook as its name mapped to true (functions do not cross the wire).
function methods.declarations(params, conn, done)
  resolve(params, function(list, err)
    if not list then return done(err) end
    local out, seen = {}, {}
    for _, p in ipairs(list) do
      local d = p.decl
      if not seen[d] then
        seen[d] = true
        local e = util.decode("{" .. appdecl.members_text(d) .. "}") or {}
        e.env, e.env_remove = d.env or {}, d.env_remove
        for k, v in pairs(d) do if type(v) == "function" then e[k] = true end end
        out[#out + 1] = e
      end
    end
    done(nil, out)
  end, conn)
end

-- What differs between two declarations: { "max_restarts", "env.PORT", ... }
local function changes(old, new)
  local out = {}
  local keys = {}
  for k in pairs(old) do keys[k] = true end
  for k in pairs(new) do keys[k] = true end
  keys.learned_listen = nil -- (pm's, carried over: sockets.lua)
  for k in pairs(keys) do
    local a, b = old[k], new[k]
    if k == "env" and type(a) == "table" and type(b) == "table" then
      local ek = {}
      for e in pairs(a) do ek[e] = true end
      for e in pairs(b) do ek[e] = true end
      for e in pairs(ek) do
        if a[e] ~= b[e] then out[#out + 1] = "env." .. e end
      end
    elseif type(a) == "table" and type(b) == "table" then
      if util.encode(a) ~= util.encode(b) then out[#out + 1] = k end
    elseif type(a) == "function" or type(b) == "function" then
      -- a hook: its code (and plain upvalues), not the function's identity
      if not hooks.same_code(a, b) then out[#out + 1] = k end
    elseif a ~= b then
      out[#out + 1] = k
    end
  end
  table.sort(out)
  return out
end

-- Waits until every proc of the named apps is ready -> done(err)
local function wait_for_apps(names, done)
  local list = {}
  for _, n in ipairs(names or {}) do
    for _, p in ipairs(sup.by_name(n)) do list[#list + 1] = p end
  end
  local left, failed = #list, nil
  if left == 0 then return done() end
  for _, p in ipairs(list) do
    sup.when_ready(p, function(ok, why)
      if not ok and not failed then failed = ("%s is not ready: %s"):format(p.name, tostring(why)) end
      left = left - 1
      if left == 0 then done(failed) end
    end)
  end
end

-- The records a start added that could not even be launched because of
-- what they declare (a script missing or not executable, a log that
-- cannot be opened) are deleted: a failed `pm start` leaves no errored
-- entry behind (PM2). One the machine could not launch for now (no fd,
-- no memory, no process left) stays, errored, for a restart once it can.
-- -> done()
local TRANSIENT = { "Too many open files", "the daemon's fd limit", "Cannot allocate memory",
  "Resource temporarily unavailable",
  "No space left on device" }
local function transient(err)
  for _, t in ipairs(TRANSIENT) do
    if err:find(t, 1, true) then return true end
  end
  return false
end

local function forget_failed(list, added, done)
  local gone = {}
  for _, p in ipairs(list) do
    if added[p] and p.status == "errored" and p.error and not transient(p.error) then gone[#gone + 1] = p end
  end
  local left = #gone
  if left == 0 then return done() end
  for _, p in ipairs(gone) do
    sup.delete(p, function()
      left = left - 1
      if left == 0 then
        sup.rewind_ids()
        done()
      end
    end)
  end
end

-- The names of apps whose reload rolls (pm reload: a second one is refused)
local reloading = {}

-- Replaces the processes of ops (the records of a known app of a file)
-- with d: restarted together, or reloaded one at a time (action "reload").
local function apply_decl(ops, d, environ, action, done)
  local opts = { decl = d, environ = environ }
  if action ~= "reload" then
    local left, first_err = #ops, nil
    if left == 0 then return done() end
    for _, p in ipairs(ops) do
      sup.restart(p, opts, function(err)
        first_err = first_err or err
        left = left - 1
        if left == 0 then done(first_err) end
      end)
    end
    return
  end
  local i = 0
  local function step(err)
    if err then return done(err) end
    i = i + 1
    local p = ops[i]
    if not p then return done() end
    if p.deleted then return step() end
    sup.reload(p, opts, step)
  end
  step()
end

-- Starts declarations in order (dependencies first, each waiting for the
-- apps it depends on to be ready); replies once every app is launched
-- (ready, for wait_ready apps). An app of a file that is known already
-- takes the file's declaration and is restarted (action "restart", PM2's
-- start and restart of a file) or reloaded ("reload").
-- printed: what the file's print showed while it loaded (the CLI shows it).
local function start_decls(decls, params, origin, done, action, printed)
  if action == "reload" then
    for _, d in ipairs(decls) do
      if reloading[d.name] then
        return done(("a reload of %s is under way: wait for it to finish"):format(d.name))
      end
    end
    for _, d in ipairs(decls) do reloading[d.name] = true end
    local reply = done
    done = function(...)
      for _, d in ipairs(decls) do reloading[d.name] = nil end
      return reply(...)
    end
  end
  local environ = environ_of(params)
  local started = {}
  local changed = {} -- record -> what the file changed of its declaration
  local added = {} -- record -> true: new with this call
  local finish
  -- one declaration: applied, then next(err)
  local function one(d, after)
    wait_for_apps(d.depends_on, function(derr)
      if derr then return after(("cannot start %s: %s"):format(d.name, derr)) end
      local existing = sup.by_name(d.name)
      local force = params.force or d.force
      local ops = {}
      if origin and #existing > 0 then
        -- an app of a file that is known already: apply the file's settings
        -- and restart it (PM2's behaviour); without a cwd in the file it
        -- keeps its own, whoever reads the file from where
        if ecosystem.implicit_cwd[d] then d.cwd = existing[1].decl.cwd end
        -- (nor, without instances in the file, its count)
        if not appdecl.instances_given[d] then d.instances = existing[1].decl.instances end
        for _, p in ipairs(existing) do
          changed[p] = changes(p.decl, d)
          ops[#ops + 1] = p
        end
      else
        -- PM2's rule: the same script under the same name is restarted when
        -- it is down, refused when it runs (unless forced)
        local same = {}
        if not origin and not force then
          for _, p in ipairs(existing) do
            if p.decl.script == d.script then same[#same + 1] = p end
          end
        end
        for _, p in ipairs(same) do
          if p.status ~= "stopped" and p.status ~= "errored" then
            return after(("script already launched: %s (as '%s', id %d; add -f to run another)")
              :format(d.script, p.name, p.pm_id))
          end
        end
        if #same > 0 then
          ops = same
        else
          for _, p in ipairs(sup.add(d, environ, origin)) do started[#started + 1] = p; added[p] = true end
          return after()
        end
      end
      for _, p in ipairs(ops) do started[#started + 1] = p end
      apply_decl(ops, d, environ, origin and action, function(err)
        if err then return after(err) end
        -- a file that says how many instances run: as many as it says now
        -- (a count changed in the file, or by pm scale since), as pm scale
        -- would make them; one that says nothing keeps the count
        if not (origin and #existing > 0 and appdecl.instances_given[d])
            or #sup.by_name(d.name) == d.instances then
          return after()
        end
        sup.scale(d.name, d.instances, function(serr, list)
          if serr then return after(serr) end
          local known = {}
          for _, p in ipairs(started) do known[p] = true end
          for _, p in ipairs(list or {}) do
            if not known[p] then started[#started + 1] = p; added[p] = true end
          end
          after()
        end)
      end)
    end)
  end
  -- The declarations in order, FILE_CONCURRENCY at once (a file of
  -- thousands of apps, or of apps slow to stop, was restarted one app at a
  -- time: 9,500 apps took a minute); one that depends on others waits
  -- for every one before it (what it depends on comes first). The first
  -- error starts nothing more, and is the reply once the others are done.
  local i, running, first_err, pumping, again, over = 0, 0, nil, false, false, false
  local function pump()
    if pumping then again = true; return end
    pumping = true
    repeat
      again = false
      while running < M.FILE_CONCURRENCY and not first_err and i < #decls do
        local d = decls[i + 1]
        if d.depends_on and #d.depends_on > 0 and running > 0 then break end
        i = i + 1
        running = running + 1
        one(d, function(err)
          running = running - 1
          first_err = first_err or err
          pump()
        end)
      end
    until not again
    pumping = false
    if running == 0 and (first_err or i >= #decls) and not over then
      over = true
      if first_err then return done(first_err) end
      finish()
    end
  end
  finish = function()
    -- (the instances a smaller count took away are not in the reply)
    local kept = {}
    for _, p in ipairs(started) do if not p.deleted then kept[#kept + 1] = p end end
    started = kept
    local left = #started
    local function reply()
      local errs = {}
      for _, p in ipairs(started) do
        if p.status == "errored" and p.error then errs[#errs + 1] = { name = p.name, err = p.error } end
      end
      if #errs > 0 then
        local line = require("pm.fds").summary(errs)
        return forget_failed(started, added, function() done(line) end)
      end
      local result
      if params.reply == "changes" then
        -- what the CLI prints of a start: the changes an ecosystem file made
        result = {}
        for k, p in ipairs(started) do
          result[k] = { name = p.name, pm_id = p.pm_id,
            pm2_env = { changes = changed[p] and util.array(changed[p]) or nil,
              log_error = p.logs_missing } }
        end
        if printed and result[1] then result[1].load_output = util.array(printed) end
        result = util.array(result)
      else
        result = descriptions(started, params, false, changed)
      end
      done(nil, result)
    end
    if left == 0 then return reply() end
    for _, p in ipairs(started) do
      sup.when_ready(p, function()
        left = left - 1
        if left == 0 then reply() end
      end)
    end
  end
  pump()
end

-- Runs op on procs so that an app stops before the apps it depends on:
-- rounds of the procs no remaining proc depends on.
local function each_dependents_first(list, op, done, params)
  local remaining = {}
  for _, p in ipairs(list) do remaining[#remaining + 1] = p end
  local first_err
  local function round()
    if #remaining == 0 then
      if first_err then return done(first_err) end
      return done(nil, descriptions(list, params))
    end
    local needed = {}
    for _, p in ipairs(remaining) do
      for _, dep in ipairs(p.decl.depends_on or {}) do needed[dep] = true end
    end
    local batch, rest = {}, {}
    for _, p in ipairs(remaining) do
      if needed[p.name] then rest[#rest + 1] = p else batch[#batch + 1] = p end
    end
    if #batch == 0 then batch, rest = rest, {} end -- a cycle: all at once
    remaining = rest
    local left = #batch
    for _, p in ipairs(batch) do
      op(p, function(err)
        if err and not first_err then first_err = err end
        left = left - 1
        if left == 0 then round() end
      end)
    end
  end
  round()
end

-- --env NAME (a string; a table is an app's own env) -> NAME | nil, err
local function env_name_of(params)
  local e = params.env
  if e == nil or e == util.null or type(e) == "table" then return nil end
  if type(e) ~= "string" or e == "" or e:find("[%c/]") then
    return nil, { code = rpc.INVALID_PARAMS, message = "env: the name of an env_<name> section expected" }
  end
  return e
end

-- --env on what is not an ecosystem file: PM2 refuses it too
local function env_needs_file(name, what)
  return ("--env %s takes the env_%s sections of an ecosystem file's apps: '%s' is not an ecosystem file")
    :format(name, name, what)
end

-- Reads an ecosystem file again and applies it: its known apps take
-- their new declarations (the --env section merged) and are restarted or
-- reloaded (action), the others are started; apps no longer in the file
-- are left as they are (PM2). A file with an error changes nothing. It is
-- evaluated with the caller's environment and cwd, and what it reads is
-- read with the rights of the caller (conn's uid).
local function apply_file(path, params, action, done, conn)
  local cwd = type(params.cwd) == "string" and params.cwd or core.getcwd()
  path = util.absolute(path, cwd)
  if not core.stat(path) then return done("file not found: " .. path) end
  local env_name, eerr = env_name_of(params)
  if eerr then return done(eerr) end
  local only = type(params.only) == "table" and params.only or nil
  ecosystem.load(path, { env_name = env_name, only = only, environ = environ_of(params), cwd = cwd,
    uid = uid_of(conn) },
    function(decls, err)
      if not decls then return done(err) end
      -- (a user's file: its apps run as that user, and take no name of an
      -- app of someone else's: applied, that app would be the user's)
      local owner = decls.owner -- (decided before the file was read)
      for _, d in ipairs(owner and decls or {}) do
        for _, p in ipairs(sup.by_name(d.name)) do
          if p.decl.uid ~= owner then
            local pw = util.passwd(owner)
            return done(("%s: app '%s': the name of an app that runs as %s, and the file is %s's: refused")
              :format(path, d.name, p.decl.uid and ("uid " .. p.decl.uid) or "the daemon's user",
              pw and pw.name or ("uid " .. owner)))
          end
        end
      end
      start_decls(decls, params, { path = path, env = env_name }, done, action, decls.printed)
    end)
end

function methods.start(params, conn, done)
  local cwd = type(params.cwd) == "string" and params.cwd or core.getcwd()
  if type(params.path) == "string" then return apply_file(params.path, params, "restart", done, conn) end
  local env_name, eerr = env_name_of(params)
  if eerr then return done(eerr) end
  if type(params.app) == "table" then
    -- --env-file: read now, relative to the caller's cwd, with its rights
    local fok, ferr = ecosystem.apply_env_file(params.app, cwd, { uid = uid_of(conn) })
    if not fok then return done(ferr) end
    local d, err = appdecl.normalize(params.app, { base = cwd, cwd = cwd, environ = environ_of(params),
      env_name = env_name })
    if not d then return done(err) end
    if env_name and d["env_" .. env_name] == nil then
      local have = ecosystem.env_sections({ d })
      if not have then return done(env_needs_file(env_name, tostring(params.app.script))) end
      return done(("--env %s: app '%s' has no env_%s (it has %s)"):format(env_name, d.name, env_name, have))
    end
    return start_decls({ d }, params, nil, done)
  end
  if params.target ~= nil then
    if env_name then return done(env_needs_file(env_name, tostring(params.target))) end
    local list, err, kind = sup.resolve(params.target)
    if not list then return done(wire_error(err, kind)) end
    return each(list, sup.start, done, params)
  end
  done({ code = rpc.INVALID_PARAMS, message = "start needs params.app, params.path or params.target" })
end

-- A restart or reload whose target is an ecosystem file reads it again
-- (apply_file); --env on any other target is refused. -> true when it
-- took the request
local function of_file(params, action, done, conn)
  local target = params.target
  if type(target) == "string" and util.is_ecosystem(target) and core.stat(target) then
    apply_file(target, params, action, done, conn)
    return true
  end
  local env_name, eerr = env_name_of(params)
  if eerr or env_name then
    done(eerr or env_needs_file(env_name, tostring(target or params.name or params.id)))
    return true
  end
  return false
end

local function target_op(op)
  return function(params, conn, done)
    resolve(params, function(list, err)
      if not list then return done(err) end
      each(list, function(p, cb) op(p, params, cb) end, done, params)
    end, conn)
  end
end

local function ordered_op(op)
  return function(params, conn, done)
    resolve(params, function(list, err)
      if not list then return done(err) end
      each_dependents_first(list, function(p, cb) op(p, params, cb) end, done, params)
    end, conn)
  end
end

-- PM2: a stop turns the app's watch off (restart --watch, or its file
-- read again, turns it on): its declaration without it, one per
-- declaration (instances keep sharing theirs)
local unwatched = setmetatable({}, { __mode = "k" })
methods.stop = ordered_op(function(p, _, cb)
  sup.stop(p, function(...)
    local d = p.decl
    -- the ports its instances listened on (cluster mode) are free while
    -- none of them runs, as PM2's stop frees them (a client is refused,
    -- not left in a backlog nobody reads); a declared listen stays held
    if readiness.listen_specs(d) and not p.deleted then
      local key, running = sockets.key(d), false
      for _, o in ipairs(sup.by_name(p.name)) do
        if sockets.key(o.decl) == key and o.status ~= "stopped" and o.status ~= "errored" then running = true end
      end
      if not running then sockets.close_learned(key) end
    end
    if d.watch and not p.deleted then
      local copy = unwatched[d]
      if not copy then
        copy = appdecl.copy(d)
        copy.watch = false
        unwatched[d] = copy
      end
      sup.redeclare(p, copy)
    end
    cb(...)
  end)
end)
methods.delete = ordered_op(function(p, _, cb) sup.delete(p, cb) end)

-- PM2's restart(target, options): options are app attributes
-- (params.attrs), applied to the app's declaration; env merged into the
-- app's own; an attribute given as "null" goes back to its default (PM2
-- deletes it). What a restart cannot change is kept: script, exec_mode,
-- instances (pm scale). A new name renames the app (PM2's `restart 0
-- --name x`), unless another app has it or the app holds listen sockets
-- (kept by name). -> the new declaration | nil, err (one per
-- declaration: the instances of an app keep sharing theirs)
local FIXED = { script = true, exec_mode = true, instances = true }
local function renamed(p, name, made)
  if type(name) ~= "string" or name == p.decl.name then return true end
  made.names = made.names or {}
  local by = made.names[name]
  if by and by ~= p.decl then return nil, ("--name %s: it would name several apps"):format(name) end
  made.names[name] = p.decl
  for _, o in ipairs(sup.by_name(name)) do
    if o.decl ~= p.decl then return nil, ("--name %s: an app of that name exists"):format(name) end
  end
  local d = p.decl
  if (d.listen and #d.listen > 0) or (d.learned_listen and #d.learned_listen > 0) or d.port then
    return nil, ("--name %s: %s holds listen sockets: delete it and start it under the new name")
      :format(name, p.name)
  end
  return true
end
local function redeclared(p, attrs, made)
  if type(attrs) ~= "table" or next(attrs) == nil then return p.decl end
  if made[p.decl] then return made[p.decl] end
  local raw = {}
  for k, v in appdecl.members(p.decl) do raw[k] = v end
  raw.env_remove = nil
  local env = util.shallow_copy(p.decl.env or {})
  for _, k in ipairs(p.decl.env_remove or {}) do env[k] = false end
  local nulled = {}
  for k, v in pairs(attrs) do
    local key = appdecl.attribute(k) or k
    if key == "env" and type(v) == "table" then
      for ek, ev in pairs(v) do env[ek] = ev end
    elseif not FIXED[key] then
      if v == "null" and key ~= "name" then
        v = nil
        nulled[key] = true
      end
      raw[key] = v
    end
  end
  raw.env = env
  local ok, rerr = renamed(p, raw.name, made)
  if not ok then return nil, rerr end
  local d, err = appdecl.normalize(raw, { base = p.decl.cwd, environ = p.environ, unset = nulled })
  if not d then return nil, err end
  made[p.decl] = d
  return d
end

-- --update-env: the caller's environment over the app's declared one too,
-- for the names both have (PM2's: NODE_ENV=staging pm2 restart app
-- --update-env beats the file's env_production) -> attrs to redeclare with
local function env_over(p, attrs, environ)
  -- (an app of another user gets no caller's environment unless it takes it)
  local d = p.decl
  if d.uid and d.uid ~= core.getuid() and (d.filter_env == nil or d.filter_env == true) then return attrs end
  local over
  for k, v in pairs(d.env or {}) do
    local now = environ[k]
    if type(now) == "string" and now ~= v then
      over = over or {}
      over[k] = now
    end
  end
  if not over then return attrs end
  local out = util.shallow_copy(type(attrs) == "table" and attrs or {})
  local env = util.shallow_copy(type(out.env) == "table" and out.env or {})
  for k, v in pairs(over) do if env[k] == nil then env[k] = v end end
  out.env = env
  return out
end

local function restart(p, params, cb, made)
  local opts = {}
  if params.updateEnv or params.update_env then opts.environ = environ_of(params) end
  local d, err = redeclared(p, opts.environ and env_over(p, params.attrs, opts.environ) or params.attrs, made)
  if not d then return cb(err) end
  if d ~= p.decl then opts.decl = d end
  sup.restart(p, opts, cb)
end
function methods.restart(params, conn, done)
  if of_file(params, "restart", done, conn) then return end
  local made = {}
  local op = target_op(function(p, prm, cb) restart(p, prm, cb, made) end)
  local name = type(params.attrs) == "table" and params.attrs.name
  if not name then return op(params, conn, done) end
  -- a rename: refused before anything restarts when the target names
  -- several apps
  resolve(params, function(list, err)
    if not list then return done(err) end
    for _, p in ipairs(list) do
      if p.decl ~= list[1].decl then
        return done(("--name %s: it would name several apps"):format(tostring(name)))
      end
    end
    op(params, conn, done)
  end, conn)
end
-- pm reload: one process at a time (see supervisor.reload); a second
-- reload of an app while one rolls is refused.
function methods.reload(params, conn, done)
  if of_file(params, "reload", done, conn) then return end
  resolve(params, function(list, err)
    if not list then return done(err) end
    for _, p in ipairs(list) do
      if reloading[p.name] then
        return done(("a reload of %s is under way: wait for it to finish"):format(p.name))
      end
    end
    local names = {}
    for _, p in ipairs(list) do
      reloading[p.name] = true
      names[#names + 1] = p.name
    end
    local opts = {}
    if params.updateEnv or params.update_env then opts.environ = environ_of(params) end
    -- the attributes given (as restart's) are the declaration the new
    -- processes start from
    local made, decls = {}, {}
    for k, p in ipairs(list) do
      local d, derr = redeclared(p, opts.environ and env_over(p, params.attrs, opts.environ) or params.attrs, made)
      if not d then
        for _, n in ipairs(names) do reloading[n] = nil end
        return done(derr)
      end
      decls[k] = d
    end
    local i = 0
    local function finish(rerr)
      for _, n in ipairs(names) do reloading[n] = nil end
      if rerr then return done(rerr) end
      done(nil, descriptions(list, params))
    end
    local function step()
      i = i + 1
      local p = list[i]
      if not p then return finish() end
      if p.deleted then return step() end
      -- (the new declaration goes with the reload, which puts the old one
      -- back when the replacement fails)
      local o = { environ = opts.environ, decl = decls[i] ~= p.decl and decls[i] or nil }
      sup.reload(p, o, function(rerr)
        if rerr then return finish(rerr) end
        step()
      end)
    end
    step()
  end, conn)
end

function methods.scale(params, _, done)
  local name = params.name or params.target
  if type(name) ~= "string" then
    return done({ code = rpc.INVALID_PARAMS, message = "scale: params.name is required" })
  end
  if params.instances == nil then
    return done({ code = rpc.INVALID_PARAMS, message = "scale: params.instances is required (N, +N or -N)" })
  end
  sup.scale(name, params.instances, function(err, list, kind)
    if err then return done(wire_error(err, kind)) end
    done(nil, descriptions(list, params))
  end)
end

methods.reset = target_op(function(p, _, cb) sup.reset(p); cb() end)

local function signal_op(params, done, list)
  local sig, err = util.signum(params.signal)
  if not sig then return done(err) end
  local sent = 0
  for _, p in ipairs(list) do
    if p.pid and p.pid > 0 and core.kill(p.pid, sig) then sent = sent + 1 end
  end
  -- a stopped app has no process to signal: said, not "sent"
  if sent == 0 then return done(("%s is %s: no process to signal"):format(list[1].name, list[1].status)) end
  done(nil, descriptions(list, params))
end

function methods.sendSignalToProcessName(params, _, done)
  if params.target == nil and params.name == nil then
    return done({ code = rpc.INVALID_PARAMS, message = "params.target is required" })
  end
  local list = sup.by_name(tostring(params.target or params.name))
  if #list == 0 then return done("process not found: " .. tostring(params.target or params.name)) end
  signal_op(params, done, list)
end

function methods.sendSignalToProcessId(params, _, done)
  local id = tonumber(params.target or params.id)
  local p = id and sup.get(id)
  if not p then return done("process not found: " .. tostring(params.target or params.id)) end
  signal_op(params, done, { p })
end

--[[ {target, action, params}: PM2's trigger. Each running process of
target that registered the action (@pm2/io's io.action) is sent it, as
PM2 sends it: the action's name, or {msg = name, opts = params}; its
answer comes on the bus as axm:reply. -> {process_count, ids} ]]
function methods.trigger(params, conn, done)
  local action = params.action
  if type(action) ~= "string" or action == "" then
    return done({ code = rpc.INVALID_PARAMS, message = "trigger: params.action is required" })
  end
  resolve(params, function(list, err)
    if not list then return done(err) end
    local ids, offline, without = {}, 0, 0
    local packet = action
    if params.params ~= nil and params.params ~= util.null then packet = { msg = action, opts = params.params } end
    for _, p in ipairs(list) do
      local has = false
      for _, n in ipairs(channel.actions(p)) do if n == action then has = true end end
      if p.status ~= "online" and p.status ~= "launching" then
        offline = offline + 1
      elseif not has then
        without = without + 1
      else
        local ok, serr = sup.send(p, packet)
        if not ok then return done(serr) end
        ids[#ids + 1] = p.pm_id
      end
    end
    if #ids == 0 then
      return done(("no process of %s has the action %s (%d not running, %d without it: @pm2/io's io.action "
        .. "registers one)"):format(tostring(params.target), action, offline, without))
    end
    done(nil, { process_count = #ids, ids = util.array(ids) })
  end, conn)
end

function methods.sendDataToProcessId(params, _, done)
  local packet = params.packet
  if type(packet) ~= "table" then
    return done({ code = rpc.INVALID_PARAMS, message = "sendDataToProcessId: packet must be an object" })
  end
  local id = tonumber(params.id or packet.id)
  if not id then return done({ code = rpc.INVALID_PARAMS, message = "sendDataToProcessId: packet.id is required" }) end
  for _, field in ipairs({ "type", "data", "topic" }) do
    if packet[field] == nil or packet[field] == util.null then
      return done({ code = rpc.INVALID_PARAMS, message = "sendDataToProcessId: packet." .. field .. " is required" })
    end
  end
  local p = sup.get(id)
  if not p then return done("process not found: " .. tostring(id)) end
  packet.id = id
  local ok, err = sup.send(p, packet)
  if not ok then return done(err) end
  done(nil, true)
end

-- ---- an app's stdin (input = true): pm send, pm attach ----

-- PM2's sendLineToStdin: {pm_id | id | target, line} -> {pm_id, line}. The
-- daemon never waits for the app: a line goes whole into the pipe, or the
-- request fails (the pipe is full: the app does not read its stdin).
function methods.sendLineToStdin(params, _, done)
  local id = tonumber(params.pm_id or params.id or params.target)
  local line = params.line
  if not id or type(line) ~= "string" then
    return done({ code = rpc.INVALID_PARAMS,
      message = "sendLineToStdin: pm_id (a number) and line (a string) expected" })
  end
  local p = sup.get(id)
  if not p then return done("process not found: " .. tostring(id)) end
  if not p.decl.input then
    return done(("%s (%d) has no stdin to write to: declare it with input = true")
      :format(p.name, id))
  end
  if not p.stdin_w or (p.pid or 0) == 0 then return done(("%s (%d) is not running"):format(p.name, id)) end
  local ok, err = core.input_write(p.stdin_w, line)
  if not ok then
    if err == "full" then
      err = ("the stdin of %s (%d) is full (64 KB it has not read): the line was not sent"):format(p.name, id)
    elseif err == "too long" then
      err = "a line of more than 4096 bytes cannot be sent"
    elseif err == "closed" then
      err = ("%s (%d) closed its stdin"):format(p.name, id)
    end
    return done(err)
  end
  done(nil, { pm_id = id, line = line })
end

function methods.flush(params, conn, done)
  if params.target == nil or params.target == util.null then return done(nil, sup.flush(sup.all())) end
  resolve(params, function(list, err)
    if not list then return done(err) end
    done(nil, sup.flush(list))
  end, conn)
end

function methods.reloadLogs(_, _, done)
  local ok, err = sup.reload_logs()
  done(not ok and err or nil, ok)
end

local function events_of(params)
  local ev = params.events
  if type(ev) == "string" then ev = { ev } end
  if type(ev) ~= "table" then ev = { "*" } end
  for _, e in ipairs(ev) do
    if type(e) ~= "string" then return nil end
  end
  return ev
end

function methods.subscribe(params, conn, done)
  local ev = events_of(params)
  if not ev then return done({ code = rpc.INVALID_PARAMS, message = "events must be strings" }) end
  done(nil, true) -- the reply goes before the first event
  bus.subscribe(conn, ev)
end

function methods.unsubscribe(params, conn, done)
  bus.unsubscribe(conn, params.events and events_of(params) or nil)
  done(nil, true)
end

function methods.save(params, _, done)
  local list = sup.all()
  if #list == 0 and not params.force then
    return done("no app to save: pm save --force writes an empty list")
  end
  local ok, err = persist.save(ctx.home, list)
  if not ok then return done("cannot write dump.json: " .. tostring(err)) end
  done(nil, #list)
end

function methods.resurrect(_, _, done)
  recovery.tidy(true)
  local entries, warn = persist.load(ctx.home)
  if not entries then return done(warn) end
  if warn then log.warn("%s", warn) end
  -- (PM2: what a resurrect starts counts its restarts from 0)
  for _, e in ipairs(entries) do
    for _, rec in ipairs(type(e.pm_procs) == "table" and e.pm_procs or {}) do
      if type(rec) == "table" then rec.restart_time = nil end
    end
  end
  recovery.restore(entries, function(started, failed)
    if #failed == 0 then return done(nil, descriptions(started)) end
    -- what could not come back is said (the others run): one line, and
    -- dump.json keeps it until the next save
    local parts = {}
    for k, f in ipairs(failed) do
      if k > 3 then parts[#parts + 1] = "..."; break end
      parts[#parts + 1] = f.err:find(f.name, 1, true) and f.err or (f.name .. ": " .. f.err)
    end
    done(("%d app%s not resurrected (dump.json keeps %s until the next pm save): %s"):format(#failed,
      #failed > 1 and "s" or "", #failed > 1 and "them" or "it", table.concat(parts, "; ")))
  end)
end

function methods.killDaemon(_, conn, done)
  local list = descriptions(sup.all())
  ctx.shutdown(0, function(finish)
    done(nil, list)
    -- the reply reaches the caller before the daemon ends (at most 2 s)
    local deadline = core.mono() + 2000
    local function wait()
      if conn.stream:closed() or conn.stream:pending() == 0 or core.mono() > deadline then return finish() end
      core.timer(5, 0, wait)
    end
    wait()
  end)
end
methods.kill = methods.killDaemon

--[[ {bin}: pm update with a keeper. The journal is written, every log
pipe stops being read (the lines read are written; a line read without
its end goes to the next daemon), and the daemon exits without stopping
an app: the keeper starts bin as the next daemon, which takes every app
over (recovery.lua). ]]
function methods.handover(params, conn, done)
  local keeper = require "pm.keeper"
  if not keeper.active() then
    return done({ code = rpc.SERVER_ERROR,
      message = "this daemon runs without a keeper: nothing to hand over to" })
  end
  local bin = params.bin
  -- (a control character would make its own line to the keeper)
  local st = type(bin) == "string" and bin:sub(1, 1) == "/" and not bin:find("%c") and core.stat(bin)
  if not st or st.type ~= "file" or not core.access(bin, "x") then
    return done({ code = rpc.INVALID_PARAMS, message = "handover: bin must be the absolute path of an executable" })
  end
  local ok, err = persist.sync(ctx.home, sup.all)
  if not ok then
    return done({ code = rpc.SERVER_ERROR, message = "the journal cannot be written: " .. tostring(err) })
  end
  local parts = { version = util.VERSION }
  for _, p in ipairs(sup.all()) do
    local pipes = p.pipes
    for _, which in ipairs(pipes and { "out", "err" } or {}) do
      local lp = pipes[which]
      if lp and not lp:closed() then
        local part, id = lp:detach()
        if part ~= "" and id then parts[tostring(id)] = part end
      end
    end
  end
  core.log_drain(5000) -- every line read is on disk
  ok, err = keeper.hand_over(bin, parts)
  if not ok then log.error("hand-over: %s: this daemon exits and the keeper starts the next one", err) end
  log.info("handing the apps over to %s", bin)
  done(nil, { handed_over = true, version = util.VERSION, pid = core.getpid() })
  local deadline = core.mono() + 2000
  local function wait()
    if conn.stream:closed() or conn.stream:pending() == 0 or core.mono() > deadline then
      return ctx.hand_over_exit()
    end
    core.timer(5, 0, wait)
  end
  wait()
end

-- A reply that acknowledges a change of the declared set or of a desired
-- state goes once the journal holding the change is on disk (one write
-- per request, whatever the number of apps, and one for the requests
-- done in the same turn of the loop); when it cannot be written, the
-- reply is an error saying so (the change is made, and the daemon keeps
-- trying to write it).
local function durable(method)
  return function(params, conn, done)
    method(params, conn, function(err, result)
      persist.sync_soon(ctx.home, sup.all, function(ok, serr)
        if not ok and not err then
          err = ("%s: the change is made but not on disk (a crash of the daemon now would undo it; "
            .. "it keeps trying)"):format(serr)
        end
        done(err, result)
      end)
    end)
  end
end
for _, name in ipairs({ "start", "stop", "restart", "reload", "delete", "scale", "resurrect" }) do
  methods[name] = durable(methods[name])
end

-- ---- pm set/unset/get (PM2's app configuration: appconf.lua) ----

local appconf = require "pm.appconf"

-- {pairs = [[key, value], ...]}: stored at once (one bad pair: nothing
-- changes), then the apps of the names given restarted (their processes
-- get the keys; a bare KEY names no app) -> {apps = names restarted,
-- notices = [...], conf = {app -> keys}}
function methods.conf_set(params, _, done)
  local list = params.pairs
  if type(list) ~= "table" or #list == 0 or #list > appconf.MAX_KEYS then
    return done({ code = rpc.INVALID_PARAMS, message = ("pairs: 1 to %d [key, value] pairs"):format(appconf.MAX_KEYS) })
  end
  local notices = {}
  for _, kv in ipairs(list) do
    if type(kv) ~= "table" then return done({ code = rpc.INVALID_PARAMS, message = "pairs: [key, value] pairs" }) end
    local app, k = appconf.split(kv[1], true)
    if not app then return done({ code = rpc.INVALID_PARAMS, message = k }) end
    if app == appconf.LOGROTATE and k then
      local attr, why = appconf.logrotate_setting(k, tostring(kv[2]))
      if attr == nil then return done({ code = rpc.INVALID_PARAMS, message = why }) end
      if attr == false then
        notices[#notices + 1] = ("%s:%s is stored but pm does not follow it: %s"):format(app, k, why)
      end
    end
  end
  local apps, err = appconf.set(list)
  if not apps then return done({ code = rpc.INVALID_PARAMS, message = err }) end
  for _, app in ipairs(apps) do
    if app == appconf.LOGROTATE then applogs.apply_defaults() end -- (the open files too, now)
  end
  local procs, names, conf = {}, {}, {}
  for _, app in ipairs(apps) do
    conf[app] = appconf.get(app)
    local these = sup.by_name(app)
    if #these > 0 then names[#names + 1] = app end
    for _, p in ipairs(these) do procs[#procs + 1] = p end
  end
  local function reply(rerr)
    done(rerr, { apps = util.array(names), notices = util.array(notices), conf = conf })
  end
  if #procs == 0 then return reply() end
  local left, first = #procs, nil
  for _, p in ipairs(procs) do
    sup.restart(p, {}, function(rerr)
      if rerr and not first then first = rerr end
      left = left - 1
      if left == 0 then reply(first) end
    end)
  end
end

-- {key}: "APP.KEY", "APP" or "all" removed (nothing restarts, as in PM2:
-- the apps' processes keep what they got until their next start)
function methods.conf_unset(params, _, done)
  local ok, err = appconf.unset(params.key)
  if not ok then return done({ code = rpc.INVALID_PARAMS, message = err }) end
  -- (pm2-logrotate's: the open files go back to their apps' own settings)
  if type(params.key) == "string" and (params.key == "all" or params.key:match("^pm2%-logrotate")) then
    applogs.apply_defaults()
  end
  done(nil, appconf.get())
end

-- {key?}: the whole store, an app's keys, or a key's value (null when unset)
function methods.conf_get(params, _, done)
  local v, err = appconf.get(params.key)
  if v == nil and err then return done({ code = rpc.INVALID_PARAMS, message = err }) end
  if v == nil then return done(nil, util.null) end
  done(nil, v)
end

-- ---- issue 18: metrics and history (pm web) ----

local metrics = require "pm.metrics"
local history = require "pm.history"
local describe = require "pm.describe"
bus.tap = function(event, data) if event == "log:dropped" then metrics.on_dropped(data) end end
require("pm.proc").on_event = metrics.on_event
history.sample = function(p) return describe.sample(p, false) end
history.list = sup.all

-- A scrape takes the last sample while it is younger than describe's
-- STALE_MS (history, on while the web runs, takes one every second): a
-- scrape never makes the daemon read /proc for every app again.
-- (mono: core.mono() of the scrape, read once for all its apps)
local function scrape_sample(p, mono)
  local rss, cpu = describe.last_sample(p, mono, describe.STALE_MS)
  if rss then return rss, cpu end
  return describe.sample(p, false)
end

-- The numbers of every app and of the daemon that /metrics shows (the web
-- process writes Prometheus' text: lua/pm/metrics.lua).
function methods.metrics(_, _, done)
  done(nil, metrics.collect({ list = sup.all(), sample = scrape_sample, bus = bus, requests = rpc.requests }))
end

-- reply(list) with the processes params.target names, every one without
-- a target; a bad target is done(err)
local function targets_or_all(params, conn, done, reply)
  if params.target == nil then return reply(sup.all()) end
  resolve(params, function(list, err)
    if not list then return done(err) end
    reply(list)
  end, conn)
end

-- {target, span (seconds, default 600; at most 86400)}: the CPU and memory
-- history of the processes target names (every one without a target);
-- asking turns sampling on for the next minutes (history.lua).
function methods.history(params, conn, done)
  local span = params.span == nil and 600 or tonumber(params.span)
  if not span or span ~= span or span < 1 or span > 86400 then
    return done({ code = rpc.INVALID_PARAMS, message = "span must be a number of seconds from 1 to 86400" })
  end
  local function reply(list)
    history.ask(list)
    local out = {}
    for i, p in ipairs(list) do
      local h = history.of(p, span)
      h.pm_id, h.name = p.pm_id, p.name
      out[i] = h
    end
    done(nil, util.array(out))
  end
  targets_or_all(params, conn, done, reply)
end

-- {target?, lines?}: the last lines (default 20, at most 200) of the
-- apps' out and error logs (applogs.tail: read with the app's user's
-- rights, at most 4 MB from a file's end), for at most MAX_TAIL_APPS
-- apps -> [{pm_id, name, out = [...], err = [...]}]
M.MAX_TAIL_LINES, M.MAX_TAIL_APPS = 200, 100
function methods.tail(params, conn, done)
  local n = params.lines == nil and 20 or tonumber(params.lines)
  if not n or n < 0 or n ~= math.floor(n) then
    return done({ code = rpc.INVALID_PARAMS, message = "tail: lines must be a whole number" })
  end
  n = math.min(n, M.MAX_TAIL_LINES)
  local function reply(list)
    local out = {}
    for i = 1, math.min(#list, M.MAX_TAIL_APPS) do
      local p = list[i]
      local t = applogs.tail(p, n)
      out[i] = { pm_id = p.pm_id, name = p.name, out = util.array(t.out), err = util.array(t.err) }
    end
    done(nil, util.array(out))
  end
  targets_or_all(params, conn, done, reply)
end

-- What a connection restricted to the profile "web" may do (pm web --user:
-- the web process restricts its connection, then runs as another user):
-- look, and start, stop, restart, reload, scale or flush apps that exist
-- as they are declared. Nothing that declares an app, changes its
-- environment, reads a file on its behalf, deletes, signals or stops the
-- daemon. method -> check(params) -> nil | why refused.
local function only_target(params)
  for k in pairs(params) do
    if k ~= "target" then return "only a target is allowed on this connection, not " .. tostring(k) end
  end
  local t = params.target
  if type(t) == "string" and util.is_ecosystem(t) then return "no ecosystem file on this connection" end
end
local function none() end
local PROFILES = {
  web = { ping = none, list = none, describe = only_target, metrics = none, history = none, subscribe = none,
    tail = function(params)
      for k in pairs(params) do
        if k ~= "target" and k ~= "lines" then return "only target and lines are allowed, not " .. tostring(k) end
      end
    end,
    unsubscribe = none, start = only_target, stop = only_target, restart = only_target, reload = only_target,
    flush = only_target, restrict = none,
    scale = function(params)
      for k in pairs(params) do
        if k ~= "name" and k ~= "instances" then return "only name and instances are allowed, not " .. tostring(k) end
      end
    end },
}

-- {profile}: this connection may from now on do only what the profile
-- allows (a second restriction can only narrow it).
function methods.restrict(params, conn, done)
  local p = PROFILES[params.profile]
  if not p then
    return done({ code = rpc.INVALID_PARAMS, message = "unknown profile: " .. tostring(params.profile) })
  end
  local allowed = {}
  for k, check in pairs(p) do
    if not conn.allowed or conn.allowed[k] then allowed[k] = check end
  end
  conn.allowed = allowed
  done(nil, true)
end

M.methods = methods
M.descriptions = descriptions
M.each_dependents_first = each_dependents_first
M.environ_of = environ_of
return M
