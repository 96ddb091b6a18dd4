-- Ecosystem files: ecosystem.lua (run in a sandbox by the daemon), PM2's
-- JSON files (JavaScript to PM2: through node when plain JSON does not
-- parse), .config.js (node), YAML (lua-yaml), turned into checked app
-- declarations. A bad file gives "file:line[:column]: message" and nothing
-- is started or changed.
local core = require "pm.core"
local util = require "pm.util"
local app = require "pm.app"
local hooks = require "pm.hooks"

local dotenv = require "pm.dotenv"

local M = {}

-- ---- what a file reads: its modules, env files, pm.read ----

-- At most this many bytes a file reads with one call (a module, an env
-- file, pm.read/json/dotenv)
M.READ_LIMIT = 1024 * 1024

-- The non-root owners of what path's resolution passes, as the kernel
-- walks it: every folder, every link and the folder each link leads into,
-- and the file itself, added to into: each could have put a link there,
-- or chosen what it holds (a root's link into a user's folder is that
-- user's word, whatever the user's own links there say later). A folder
-- or the file writable by group or others (a folder that is not sticky,
-- as /tmp is) is refused. -> into | nil, why
local function folder_owners(path, into, must_exist)
  local comps = {}
  for c in path:gmatch("[^/]+") do comps[#comps + 1] = c end
  local function writable(st)
    return bit.band(st.mode, 18) ~= 0 and not (st.type == "dir" and bit.band(st.mode, 512) ~= 0)
  end
  local root = core.stat("/")
  if root and writable(root) then return nil, "/ is writable by group or others" end
  local cur, i, links = "", 1, 0
  while i <= #comps do
    local c = comps[i]
    i = i + 1
    if c == ".." then
      cur = cur:match("^(.*)/[^/]*$") or ""
    elseif c ~= "." then
      local p = cur .. "/" .. c
      local st = core.stat(p, true)
      if not st then -- (what does not exist opens as nothing; a file to run must be there)
        if must_exist then return nil, p .. " is not there" end
        return into
      end
      if st.uid ~= 0 then into[st.uid] = true end
      if st.type == "link" then
        links = links + 1
        local target = links <= 40 and core.readlink(p)
        if not target then return nil, p .. ": a link that cannot be followed" end
        local rest = {}
        for t in target:gmatch("[^/]+") do rest[#rest + 1] = t end
        for j = i, #comps do rest[#rest + 1] = comps[j] end
        comps, i = rest, 1
        if target:sub(1, 1) == "/" then cur = "" end
      else
        if (st.type == "dir" or st.type == "file") and writable(st) then
          return nil, p .. " is writable by group or others"
        end
        cur = p
      end
    end
  end
  return into
end

--[[ Whose rights a read on a file's behalf is made with -> uid (nil: the
daemon's own) | nil, false, why. who: uid (the caller's, SO_PEERCRED),
file (the ecosystem file). A daemon of a user reads with its own rights,
no more than its callers' (it serves that user and root). A root daemon
reads with the caller's; a folder another user may change, on the way to
the ecosystem file or to what it reads, narrows that to the rights of the
user who owns it (the file is that user's word, and a link there is too). ]]
local function reader_uid(path, who)
  if core.getuid() ~= 0 then return nil end
  local users = {}
  if who and who.uid and who.uid ~= 0 then users[who.uid] = true end
  local ok, why = folder_owners(path, users, who and who.file == path)
  if ok and who and who.file then ok, why = folder_owners(who.file, users, true) end
  if not ok then return nil, false, why end
  local uid = next(users)
  if uid and next(users, uid) then
    return nil, false, "folders of more than one user on the way"
  end
  return uid
end

-- Reads a text file on an ecosystem file's behalf (who: reader_uid's) ->
-- text | nil, err. A regular file only (a FIFO would block the daemon),
-- at most READ_LIMIT bytes.
function M.read_text(path, who, limit)
  local uid, refused, why = reader_uid(path, who)
  if refused == false then return nil, ("%s: refused (%s)"):format(path, why) end
  local st = core.stat(path)
  if not st then return nil, path .. ": no such file" end
  if st.type ~= "file" then return nil, path .. ": not a regular file" end
  limit = limit or M.READ_LIMIT
  local too_big = ("%s: over %d KB: refused"):format(path, math.floor(limit / 1024))
  if uid then
    local pw = util.passwd(uid)
    if not pw then return nil, ("%s: refused (uid %d has no passwd entry)"):format(path, uid) end
    local fd, err = core.open(path, "r", nil, { uid = uid, gid = pw.gid, as_user = true })
    if not fd then return nil, ("%s (read as %s)"):format(tostring(err), pw.name or uid) end
    local out, size = {}, 0
    while true do
      local s, rerr = core.read(fd, 65536)
      if not s then core.close(fd); return nil, path .. ": " .. tostring(rerr) end
      if s == "" then break end
      size = size + #s
      if size > limit then core.close(fd); return nil, too_big end
      out[#out + 1] = s
    end
    core.close(fd)
    return table.concat(out)
  end
  if st.size and st.size > limit then return nil, too_big end
  local f, err = io.open(path, "r")
  if not f then return nil, tostring(err) end
  local s = f:read(limit + 1) or ""
  f:close()
  if #s > limit then return nil, too_big end
  return s
end

-- A path an ecosystem file names, relative to its folder
local function beside(base, p) return util.absolute(p, base) end

-- env_file (a path or a list; "-path": optional, systemd's rule) ->
-- { KEY = value } of them all in order, the later over the earlier |
-- nil, err. Paths relative to base.
function M.env_files(list, base, who)
  if type(list) == "string" then list = { list } end
  if type(list) ~= "table" then return nil, "env_file must be a path or a list of paths" end
  local vars = {}
  for _, p in ipairs(list) do
    if type(p) ~= "string" or p == "" or p == "-" then
      return nil, "env_file must be a path or a list of paths"
    end
    local optional = p:sub(1, 1) == "-"
    local path = beside(base, optional and p:sub(2) or p)
    if not (optional and not core.stat(path)) then
      local text, err = M.read_text(path, who)
      if not text then return nil, "env_file " .. err end
      local got, perr = dotenv.parse(text, path)
      if not got then return nil, perr end
      for k, v in pairs(got) do vars[k] = v end
    end
  end
  return vars
end

-- raw (an app's raw declaration) with its env_file read: the variables
-- under its env (which overrides them), env_file as absolute paths ->
-- true | nil, err
function M.apply_env_file(raw, base, who)
  local key
  for k in pairs(raw) do
    if k == "env_file" or k == "envFile" then key = k end
  end
  if not key or raw[key] == util.null then return true end
  local list = raw[key]
  local vars, err = M.env_files(list, base, who)
  if not vars then return nil, err end
  local abs = {}
  for i, p in ipairs(type(list) == "table" and list or { list }) do
    local opt = p:sub(1, 1) == "-" and "-" or ""
    abs[i] = opt .. beside(base, opt == "-" and p:sub(2) or p)
  end
  raw[key] = abs
  if type(raw.env) == "table" then
    for k, v in pairs(raw.env) do vars[k] = v end
  elseif raw.env ~= nil and raw.env ~= util.null then
    return true -- (app.normalize says what is wrong with it)
  end
  raw.env = vars
  return true
end

-- A module name ("lib.util") -> its file in the folder of the file that
-- requires it or under it (links resolved) -> path | nil, err
local function module_path(dir, name)
  local rel = name:gsub("%.", "/")
  local path = dir .. "/" .. rel .. ".lua"
  if not core.stat(path) then
    local init = dir .. "/" .. rel .. "/init.lua"
    if not core.stat(init) then
      return nil, ("require '%s': no %s in %s"):format(name, rel .. ".lua", dir)
    end
    path = init
  end
  local real, rdir = core.realpath(path), core.realpath(dir)
  if not real or not rdir or real:sub(1, #rdir + 1) ~= (rdir == "/" and "/" or rdir .. "/") then
    return nil, ("require '%s': %s leads outside the file's folder"):format(name, path)
  end
  return path
end

-- Would the daemon run what path holds unasked? Only what no one but root
-- or the daemon's user may change (the file, every folder and link its
-- resolution passes) -> true | nil, why
function M.trusted(path)
  if not core.realpath(path) then return nil, path .. " cannot be resolved" end
  local owners, why = folder_owners(path, {})
  if not owners then return nil, why end
  local me = core.getuid()
  for uid in pairs(owners) do
    if uid ~= me then return nil, ("%s: a folder, link or file on the way is owned by uid %d"):format(path, uid) end
  end
  return true
end

local function hostname()
  local s = util.read_file("/proc/sys/kernel/hostname")
  return s and s:match("^%s*(.-)%s*$") or "localhost"
end

-- The helpers a file's top level has (pm.read, pm.json, pm.dotenv,
-- pm.hostname, pm.cpus): read-only, paths relative to its folder
local function helpers(dir, who)
  local function text(p, what)
    if type(p) ~= "string" or p == "" then error(what .. ": a path expected", 3) end
    local s, err = M.read_text(beside(dir, p), who)
    if not s then error(what .. ": " .. err, 3) end
    return s, beside(dir, p)
  end
  return {
    read = function(p) return (text(p, "pm.read")) end,
    json = function(p)
      local s, path = text(p, "pm.json")
      local v, err = util.decode(s)
      if v == nil then error(("pm.json: %s:%s"):format(path, M.json_error(s, err)), 2) end
      return v
    end,
    dotenv = function(p)
      local s, path = text(p, "pm.dotenv")
      local v, err = dotenv.parse(s, path)
      if not v then error("pm.dotenv: " .. err, 2) end
      return v
    end,
    hostname = hostname,
    cpus = function() return app.cpu_count() end,
  }
end

-- The text of an ecosystem file: as its owner when it is a user's word
-- (root's rights would read, through the user's link, a file of root's)
local function file_text(path, owner)
  if owner then
    -- (its links resolved first: read_text follows none; the user's rights
    -- then reach no more than the user could read)
    local real = core.realpath(path)
    if not real then return nil, path .. ": cannot be resolved" end
    return M.read_text(real, { file = path }, M.FILE_LIMIT)
  end
  return util.read_file(path)
end

--[[ Runs an ecosystem.lua. opts: environ (what os.getenv sees: the
caller's), uid (the caller's: whose rights what it reads is read with),
trusted_only (resurrect: a module it requires must be trusted too). ]]
local function load_lua(path, opts, owner)
  opts = opts or {}
  local dir = util.dirname(path)
  local who = { uid = opts.uid, file = path }
  local environ = opts.environ or {}
  local printed = {}
  -- what `return function(ctx) ... end` is called with; a file that reads
  -- ctx.env picks its own --env (it needs no env_<name> section)
  local env_read = false
  local ctx = setmetatable({ environ = util.deep_copy(environ), hostname = hostname(), cpus = app.cpu_count() },
    { __index = function(_, k)
      if k == "env" then
        env_read = true
        return opts.env_name
      end
    end })
  local text
  if owner then -- (read as its user: root's rights would read, through the user's link, a file of root's)
    local terr
    text, terr = file_text(path, owner)
    if not text then return nil, terr end
  end
  local chunk, state = hooks.loadfile(path, { -- (state: the sandbox's, or the error)
    -- (a user's file: its hooks' pm.* reach that user's apps only)
    owner_uid = owner,
    text = text,
    printed = printed,
    ctx = ctx,
    environ = environ,
    helpers = helpers(dir, who),
    require = function(name)
      local mpath, merr = module_path(dir, name)
      if not mpath then return nil, merr end
      if opts.trusted_only then
        local ok, why = M.trusted(mpath)
        if not ok then return nil, ("require '%s': %s is not trusted (%s)"):format(name, mpath, why) end
      end
      -- (a module's code runs as the file's, hooks and all: one another
      -- user may change would be that user's code in the file's place)
      local mowner, mwhy = M.file_owner(mpath)
      if mwhy then return nil, ("require '%s': %s: refused (%s)"):format(name, mpath, mwhy) end
      if mowner and mowner ~= owner then
        local pw = util.passwd(mowner)
        return nil, ("require '%s': %s: refused (only %s may change it, and the file is %s)"):format(name, mpath,
          pw and pw.name or ("uid " .. mowner), owner and ("uid " .. owner .. "'s") or "root's")
      end
      return mpath
    end,
    read = function(p) return M.read_text(p, who) end,
  })
  if not chunk then return nil, state end
  -- the file's top level runs under limits (larger than a hook's): a loop
  -- cannot hang the daemon
  local ok, res = hooks.run_limited(hooks.LOAD_LIMITS, chunk)
  if not ok then
    local msg = tostring(res):match("^[^\n]*")
    -- (an error of a module it required names the module's file and line)
    if not msg:find(path, 1, true) and not msg:match("^/[^:]*%.lua:%d+:") then msg = path .. ": " .. msg end
    return nil, msg, printed
  end
  if type(res) ~= "table" then
    return nil, path .. ": the file must return { apps = {...} }, a list of apps or function(ctx)", printed
  end
  -- hook_limits: the file's hooks may run longer (up to hooks.CEILING)
  local lok, lerr = hooks.set_limits(state, rawget(res, "hook_limits"))
  if not lok then return nil, path .. ": " .. lerr, printed end
  -- as plain data: a metatable of the file's would run later, outside the
  -- limits its top level ran under. An __index table (defaults) is kept:
  -- its fields are copied where the table has none; an __index function
  -- is not run.
  local pok, copy = pcall(M.plain_copy, res)
  if not pok then return nil, path .. ": " .. tostring(copy), printed end
  return copy, nil, printed, env_read
end

-- A copy of t as plain data, without running any metamethod: the fields
-- of an __index table (and its own __index table...) fill in what a table
-- lacks; functions (hooks) are kept as they are.
function M.plain_copy(t, seen)
  if type(t) ~= "table" then return t end
  seen = seen or {}
  if seen[t] then return seen[t] end
  local c = {}
  seen[t] = c
  local src, depth = t, 0
  while type(src) == "table" and depth < 16 do
    local k, v = next(src)
    while k ~= nil do
      if rawget(c, k) == nil then c[M.plain_copy(k, seen)] = M.plain_copy(v, seen) end
      k, v = next(src, k)
    end
    local mt = debug.getmetatable(src)
    src = type(mt) == "table" and rawget(mt, "__index") or nil
    depth = depth + 1
  end
  return c
end

-- "... at character N" of cjson -> "LINE:COL: ..." with its tokens named
local TOKENS = { T_OBJ_BEGIN = "'{'", T_OBJ_END = "'}'", T_ARR_BEGIN = "'['", T_ARR_END = "']'",
  T_STRING = "a string", T_NUMBER = "a number", T_BOOLEAN = "a boolean", T_NULL = "null",
  T_COLON = "':'", T_COMMA = "','", T_END = "the end of the file" }
function M.json_error(text, err)
  err = tostring(err)
  local at = tonumber(err:match("at character (%d+)"))
  err = err:gsub(" at character %d+", ""):gsub("T_[%u_]+", TOKENS)
  if not at then return err end
  local line, col = 1, at
  local before = text:sub(1, at - 1)
  for _ in before:gmatch("\n") do line = line + 1 end
  local last = before:match(".*\n()")
  if last then col = at - last + 1 end
  return ("%d:%d: %s"):format(line, col, err)
end

local function load_json(path, owner)
  local s, err = file_text(path, owner)
  if not s then return nil, err end
  local v, derr = util.decode(s)
  if v == nil then
    local hint = ""
    if s:find("//", 1, true) or s:find("/*", 1, true) or s:find(",%s*[%]}]") then
      hint = " (PM2 reads a .json file as JavaScript: comments and trailing commas need node, "
        .. "which is not installed)"
    end
    return nil, path .. ":" .. M.json_error(s, derr) .. hint
  end
  if type(v) ~= "table" then return nil, path .. ": an object with \"apps\" or a list expected" end
  return v
end

-- ---- YAML (process.yml): Debian's lua-yaml (lyaml, on libyaml) ----

-- Plain scalars as YAML 1.2's core schema reads them (js-yaml's, PM2's):
-- "yes", "on" and 010 stay a string, a string and 10, as in PM2.
local YAML_NULL = { [""] = true, ["~"] = true, null = true, Null = true, NULL = true }
local YAML_BOOL = { ["true"] = true, True = true, TRUE = true, ["false"] = false, False = false, FALSE = false }
local function yaml_scalar(s)
  if YAML_NULL[s] then return util.null end
  local b = YAML_BOOL[s]
  if b ~= nil then return b end
  if s:match("^[-+]?%d+$") or s:match("^[-+]?%d*%.%d+$") or s:match("^[-+]?%d+%.?%d*[eE][-+]?%d+$")
      or s:match("^[-+]?%.%d+[eE][-+]?%d+$") then
    return tonumber(s)
  end
  if s:match("^0x%x+$") then return tonumber(s:sub(3), 16) end
  if s:match("^0o[0-7]+$") then return tonumber(s:sub(3), 8) end
  local inf = s:match("^([-+]?)%.[Ii][Nn][Ff]$") or s:match("^([-+]?)%.INF$")
  if inf then return inf == "-" and -math.huge or math.huge end
  if s == ".nan" or s == ".NaN" or s == ".NAN" then return 0 / 0 end
  return s
end

-- How much of a YAML file's tree is walked (aliases repeat nodes: a few
-- lines can name billions of them), how deep, and how big a file is read
-- (the daemon parses it).
M.YAML_MAX_NODES, M.YAML_MAX_DEPTH, M.YAML_MAX_BYTES = 100000, 64, 16 * 1024 * 1024

local function load_yaml(path, owner)
  local st = core.stat(path)
  if st and st.size and st.size > M.YAML_MAX_BYTES then
    return nil, ("%s: a YAML file of %d bytes: at most %d"):format(path, st.size, M.YAML_MAX_BYTES)
  end
  local s, err = file_text(path, owner)
  if not s then return nil, err end
  local ok, lyaml = pcall(require, "lyaml")
  if not ok then
    return nil, path .. ": a YAML file needs Debian's lua-yaml (apt-get install lua-yaml), "
      .. "or use ecosystem.lua or a JSON file"
  end
  local lok, v = pcall(lyaml.load, s, { implicit_scalar = yaml_scalar })
  if not lok then
    local msg = tostring(v):gsub("^[^\n]-%.lua:%d+: ", ""):match("^[^\n]*")
    return nil, path .. ":" .. (msg:match("^%d+:%d+:") and "" or " ") .. msg
  end
  -- a plain tree of tables: each node once, null as JSON's
  local nodes = 0
  local function plain(x, depth)
    nodes = nodes + 1
    if nodes > M.YAML_MAX_NODES then error(("more than %d values (aliases included)"):format(M.YAML_MAX_NODES), 0) end
    if depth > M.YAML_MAX_DEPTH then error(("nested deeper than %d"):format(M.YAML_MAX_DEPTH), 0) end
    if x == lyaml.null then return util.null end
    if type(x) ~= "table" then return x end
    local out = {}
    for k, e in pairs(x) do out[plain(k, depth + 1)] = plain(e, depth + 1) end
    return out
  end
  local pok, tree = pcall(plain, v, 0)
  if not pok then return nil, path .. ": " .. tostring(tree) end
  if type(tree) ~= "table" then return nil, path .. ": an object with \"apps\" or a list expected" end
  return tree
end

M.is_yaml = function(path) return path:match("%.ya?ml$") ~= nil end

-- Reads a file -> { apps = raw list, hooks = table|nil } or nil, err.
-- opts (an ecosystem.lua's): environ, uid, trusted_only (load_lua)
-- (an ecosystem file itself: a regular file, at most this many bytes; a
-- FIFO in a user's folder would hold the daemon, a huge file its memory)
M.FILE_LIMIT = 16 * 1024 * 1024

function M.read(path, opts)
  local st = core.stat(path)
  if not st then return nil, path .. ": no such file" end
  if st.type ~= "file" then return nil, path .. ": not a regular file" end
  if (st.size or 0) > M.FILE_LIMIT then
    return nil, ("%s: over %d MB: refused"):format(path, M.FILE_LIMIT / 1048576)
  end
  opts = opts or {}
  -- whose word it is, decided before it is read (a user's folder renamed
  -- meanwhile made it root's) and read as that user
  local owner = opts.owner
  if owner == nil then
    local oerr
    owner, oerr = M.file_owner(path)
    if oerr then return nil, ("%s: refused: a root daemon runs no app of it (%s)"):format(path, oerr) end
  end
  owner = owner or nil
  local res, err
  local printed, env_read
  if path:match("%.lua$") then
    res, err, printed, env_read = load_lua(path, opts, owner)
  elseif path:match("%.json$") then
    res, err = load_json(path, owner)
  elseif M.is_yaml(path) then
    res, err = load_yaml(path, owner)
  elseif path:match("%.c?js$") then
    return nil, path .. ": a .config.js file is read by node: use ecosystem.load with a callback"
  else
    return nil, path .. ": not an ecosystem file"
  end
  -- what its print showed: after an error, and for the CLI (res.printed)
  if printed and #printed > 0 and not res then
    err = err .. "\n" .. path .. " printed while it loaded:\n" .. table.concat(printed, "\n")
  end
  if not res then return nil, err end
  local shaped, serr = M.shape(path, res)
  if shaped and printed and #printed > 0 then shaped.printed = { unpack(printed) } end
  if shaped then shaped.env_read, shaped.owner = env_read, owner or false end
  return shaped, serr
end

-- The top-level keys of a file: apps and hooks; deploy (PM2's section,
-- read by pm deploy: deploy.lua) is passed on as it is.
M.TOP_KEYS = { "apps", "hooks", "hook_limits", "deploy", "static" }
local top_keys = { apps = true, hooks = true, hook_limits = true, deploy = true, static = true }

-- PM2's `static` entries ({ path, port, host, spa, homepage, name,
-- basic_auth = { username, password } }): apps of the built-in file
-- server (script "serve", serve.lua) -> list | nil, err
local function static_apps(path, list)
  if type(list) ~= "table" or (next(list) ~= nil and list[1] == nil) then
    return nil, path .. ": static must be a list"
  end
  local out = {}
  for i, st in ipairs(list) do
    if type(st) ~= "table" then return nil, ("%s: static #%d is not a table"):format(path, i) end
    local auth = st.basic_auth
    if auth ~= nil and type(auth) ~= "table" then
      return nil, ("%s: static #%d: basic_auth must be { username, password }"):format(path, i)
    end
    local port = st.port or 8080
    out[i] = { name = st.name or ("static-page-server-" .. tostring(port)), script = "serve",
      env = { PM2_SERVE_PATH = st.path, PM2_SERVE_PORT = port, PM2_SERVE_HOST = st.host,
        PM2_SERVE_SPA = st.spa, PM2_SERVE_HOMEPAGE = st.homepage,
        PM2_SERVE_BASIC_AUTH = auth and "true" or nil,
        PM2_SERVE_BASIC_AUTH_USERNAME = auth and auth.username or nil,
        PM2_SERVE_BASIC_AUTH_PASSWORD = auth and auth.password or nil } }
  end
  return out
end

-- { apps = {...} }, a bare list, PM2's { pm2 = {...} } or one app's
-- object -> { apps, hooks } | nil, err
function M.shape(path, res)
  if type(res) ~= "table" then return nil, path .. ": an object with \"apps\" or a list expected" end
  -- PM2's other forms: one app's object alone, and "pm2" for "apps"
  if res.apps == nil and res[1] == nil then
    if type(res.pm2) == "table" then
      res = { apps = res.pm2, deploy = res.deploy }
    elseif res.script ~= nil or res.cmd ~= nil or res.command ~= nil then
      res = { res }
    end
  end
  for k in pairs(res) do
    if type(k) == "string" and not top_keys[k] then
      local near = app.closest(k, M.TOP_KEYS)
      return nil, ("%s: unknown top-level key '%s'%s (a file declares apps, hooks)"):format(path, k,
        near and (" - did you mean '" .. near .. "'?") or "")
    end
  end
  local apps = res.apps
  if apps == nil and res[1] ~= nil then apps = res end
  if res.static ~= nil and res[1] == nil then
    local extra, err = static_apps(path, res.static)
    if not extra then return nil, err end
    apps = apps or {}
    if type(apps) == "table" then
      for _, a in ipairs(extra) do apps[#apps + 1] = a end
    end
  end
  if type(apps) ~= "table" then return nil, path .. ": no apps declared" end
  if next(apps) ~= nil and apps[1] == nil then
    return nil, path .. ": apps must be a list of apps, not an object"
  end
  -- (a PM2 file's env value false or null is the text "false" or "null":
  -- Node's spawn writes what it is given; in a Lua file, false removes a
  -- variable)
  local function env_texts(a)
    for k, env in pairs(a) do
      if type(k) == "string" and (k == "env" or k:match("^env_.")) and k ~= "env_file" and k ~= "env_remove"
          and type(env) == "table" then
        for name, v in pairs(env) do
          if v == false then env[name] = "false" elseif v == util.null then env[name] = "null" end
        end
      end
    end
  end
  local pm2_file = not path:match("%.lua$")
  for i, a in ipairs(apps) do
    if type(a) ~= "table" then return nil, ("%s: app #%d is not a table"):format(path, i) end
    -- PM2: cmd and command are other names of script
    for _, alias in ipairs({ "cmd", "command" }) do
      if a[alias] ~= nil and a.script == nil then a.script, a[alias] = a[alias], nil end
    end
    if pm2_file then env_texts(a) end
  end
  if res.hooks ~= nil and type(res.hooks) ~= "table" then
    return nil, path .. ": hooks must be a table of functions"
  end
  return { apps = apps, hooks = res.hooks, deploy = type(res.deploy) == "table" and res.deploy or nil }
end

-- Set by the daemon: capture(argv, limits, done(code, stdout, stderr))
-- runs a helper process through the core's spawn (the loop reaps every
-- child); past a limit it is killed, with its process group, and code is nil.
M.capture = nil

-- What node may take to read a .config.js or a .json file: time (ms),
-- output (bytes)
M.JS_LIMITS = { timeout = 10000, max_output = 16 * 1024 * 1024 }

-- node -e NODE_READER <mode> <file>: mode "js" requires the file (a
-- .config.js: module.exports, a default export, a function, a promise),
-- "json" evaluates it as PM2 does a .json file (as a JavaScript
-- expression: comments and trailing commas pass). Prints the value as
-- JSON; on stderr, one line: "pm-error LINE:COL: message" (exit 1) or
-- "pm-functions PATH..." when the value holds functions (exit 3: hooks are
-- Lua, JSON would drop them silently).
local NODE_READER = [[
const [mode, file] = process.argv.slice(1);
const esc = file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
function where(e) {
  const s = String(e && e.stack || '');
  let m = s.match(new RegExp('^' + esc + ':(\\d+)\\n[^\\n]*\\n( *)\\^'));
  if (m) return m[1] + ':' + (m[2].length + (mode === 'json' && m[1] === '1' ? 0 : 1)) + ': ';
  m = s.match(new RegExp(esc + ':(\\d+):(\\d+)'));
  return m ? m[1] + ':' + m[2] + ': ' : '';
}
function fail(e) {
  const what = e && e.name && e.message !== undefined ? e.name + ': ' + e.message : String(e);
  process.stderr.write('pm-error ' + where(e) + what.split('\n')[0] + '\n');
  process.exit(1);
}
function functions(v) {
  const out = [], seen = new Set();
  function walk(x, p) {
    if (typeof x === 'function') { out.push(p || 'the file'); return; }
    if (!x || typeof x !== 'object' || seen.has(x)) return;
    seen.add(x);
    for (const k of Object.keys(x)) walk(x[k], Array.isArray(x) ? p + '[' + k + ']' : (p ? p + '.' : '') + k);
  }
  const apps = Array.isArray(v) ? v : v && Array.isArray(v.apps) ? v.apps : [];
  apps.forEach((a, i) => {
    if (a && typeof a === 'object' && !seen.has(a)) {
      seen.add(a);
      const label = "app '" + (typeof a.name === 'string' ? a.name : '#' + (i + 1)) + "': ";
      for (const k of Object.keys(a)) walk(a[k], label + k);
    }
  });
  walk(v, '');
  return out;
}
function done(v) {
  const fns = functions(v);
  if (fns.length) { process.stderr.write('pm-functions ' + JSON.stringify(fns) + '\n'); process.exit(3); }
  process.stdout.write(JSON.stringify(v === undefined ? null : v) + '\n');
}
try {
  let c;
  if (mode === 'json') {
    const text = require('fs').readFileSync(file, 'utf8');
    c = require('vm').runInNewContext('(' + text + '\n)', Object.create(null), { filename: file, timeout: 5000 });
  } else {
    c = require(require('path').resolve(file));
    if (c && c.__esModule && c.default) c = c.default;
    if (typeof c === 'function') c = c();
  }
  Promise.resolve(c).then(done, fail);
} catch (e) { fail(e); }
]]

-- The functions node found (["app 'api': on_exit", ...]) -> the error
local function functions_error(path, json)
  local list = util.decode(json)
  if type(list) ~= "table" or #list == 0 then list = { "a value" } end
  return ("%s: %s %s a JavaScript function: pm's hooks (on_exit, on_start, on_stop) are Lua, "
    .. "declared in an ecosystem.lua"):format(path, table.concat(list, ", "), #list > 1 and "are" or "is")
end

-- Whether the user uid may open the folder dir (and so enter it)
local function may_open_dir(dir, uid, gid)
  local fd, err = core.open(dir, "r", nil, { uid = uid, gid = gid, as_user = true })
  if fd then core.close(fd); return true end
  return tostring(err):find("not a regular file", 1, true) ~= nil
end

-- Reads a file with node (mode "js" or "json") -> done(res | nil, err).
-- node runs with the caller's environment (process.env) and cwd
-- (process.cwd()) when given, as PM2's CLI evaluates it; with the rights
-- its reads would have (caller: the caller's uid, reader_uid).
function M.read_node(path, mode, environ, done, cwd, caller)
  local node = app.find_in_path("node", environ and environ.PATH or os.getenv("PATH"))
  if not node then
    return done(nil, path .. ": node is needed to read a .config.js file (install nodejs), "
      .. "or use ecosystem.lua or a JSON file")
  end
  if not M.capture then return done(nil, path .. ": cannot run node here") end
  local limits = M.JS_LIMITS
  local uid, refused, why = reader_uid(path, { uid = caller, file = path })
  if refused == false then return done(nil, ("%s: refused (%s)"):format(path, why)) end
  if environ or cwd or uid then
    limits = { timeout = limits.timeout, max_output = limits.max_output, cwd = cwd }
    if uid then
      local pw = util.passwd(uid)
      if not pw then return done(nil, ("%s: refused (uid %d has no passwd entry)"):format(path, uid)) end
      limits.uid, limits.gid = uid, pw.gid
      -- (the child enters its cwd before it takes the user's ids: a cwd
      -- that user could not open would let it read what lies there)
      if not cwd or not may_open_dir(cwd, uid, pw.gid) then limits.cwd = util.dirname(path) end
    end
    if environ then
      local list = {}
      for k, v in pairs(environ) do list[#list + 1] = k .. "=" .. v end
      table.sort(list)
      limits.env = list
    end
  end
  M.capture({ node, "-e", NODE_READER, mode, path }, limits, function(code, out, err)
    if code == nil then return done(nil, ("%s: node %s"):format(path, tostring(err))) end
    err = tostring(err or "")
    if code == 3 and err:match("^pm%-functions ") then
      return done(nil, functions_error(path, err:match("^pm%-functions ([^\n]*)")))
    end
    if code ~= 0 then
      local msg = err:match("^pm%-error ([^\n]*)")
      if msg then
        return done(nil, ("%s:%s%s"):format(path, msg:match("^%d+:%d+: ") and "" or " ", msg))
      end
      local first = err:match("[^\n]*[Ee]rror[^\n]*") or err:match("^[^\n]*")
      return done(nil, ("%s: node could not load it: %s"):format(path,
        first ~= "" and first or ("exit " .. tostring(code))))
    end
    local v, derr = util.decode(out or "")
    if v == nil then return done(nil, path .. ": node gave no JSON: " .. tostring(derr)) end
    done(M.shape(path, v))
  end)
end

-- Reads a .config.js / .config.cjs file with node -> done(res | nil, err)
function M.read_js(path, environ, done, cwd, caller)
  return M.read_node(path, "js", environ, done, cwd, caller)
end

--[[
Loads and checks every app of a file. opts: env_name, only (list of names),
environ (the caller's: what the file sees of its environment, os.getenv
and process.env; none when not given), cwd (the caller's: the default
working directory of the file's apps, as in PM2, and node's; the file's
folder when not given), uid (the caller's: what the file reads, it reads
with that user's rights), trusted_only (what it requires must be trusted:
resurrect). Returns a list of
declarations or nil, err (nothing is half-loaded). With done, the answer
goes to done(decls | nil, err) (the only way for .config.js files, and for
.json files that are JavaScript rather than JSON, which node reads).
]]
function M.load(path, opts, done)
  opts = util.shallow_copy(opts or {})
  local owner, oerr = M.file_owner(path)
  if oerr then
    local e = ("%s: refused: a root daemon runs no app of it (%s)"):format(path, oerr)
    if done then return done(nil, e) end
    return nil, e
  end
  opts.owner = owner or false
  -- (a user's file sees that user's login environment, not the caller's:
  -- os.getenv, ctx.environ, node's process.env would copy root's secrets)
  if owner then opts.environ = M.login_environ(owner) end
  if done then
    local function checked(res, err)
      if not res then return done(nil, err) end
      res.owner = owner or false
      done(M.check(path, res, opts))
    end
    if path:match("%.c?js$") then return M.read_js(path, opts.environ, checked, opts.cwd, opts.uid) end
    local res, err = M.read(path, opts)
    if not res and path:match("%.json$") and util.decode(util.read_file(path) or "") == nil
        and app.find_in_path("node", opts.environ and opts.environ.PATH or os.getenv("PATH")) then
      -- PM2 evaluates a .json file as JavaScript: comments, trailing commas
      return M.read_node(path, "json", opts.environ, checked, opts.cwd, opts.uid)
    end
    return checked(res, err)
  end
  local res, err = M.read(path, opts)
  if not res then return nil, err end
  return M.check(path, res, opts)
end

-- Declarations whose file gave no cwd (weak keys): a known app the file
-- is read again for keeps its own cwd, as with PM2, whoever reads it.
M.implicit_cwd = setmetatable({}, { __mode = "k" })

-- The env_<name> sections the apps declare -> "env_a, env_b" or nil
local function env_sections(decls)
  local names, seen = {}, {}
  for _, d in ipairs(decls) do
    for k in pairs(d) do
      if type(k) == "string" and k:match("^env_.") and k ~= "env_file" and not seen[k] then
        seen[k] = true
        names[#names + 1] = k
      end
    end
  end
  table.sort(names)
  return #names > 0 and table.concat(names, ", ") or nil
end
M.env_sections = env_sections

function M.check(path, res, opts)
  local decls, err = M.check_apps(path, res, opts)
  if decls then decls.printed, decls.owner = res.printed, res.owner end
  return decls, err
end

-- The login environment of uid (HOME, USER, LOGNAME, SHELL, a PATH), what
-- a file that is that user's word sees of its environment
function M.login_environ(uid)
  local pw = util.passwd(uid) or {}
  local name = pw.name or tostring(uid)
  return { HOME = pw.dir ~= "" and pw.dir or "/", USER = name, LOGNAME = name,
    SHELL = pw.shell ~= "" and pw.shell or "/bin/sh", PATH = app.LOGIN_PATH }
end

--[[ Whose word a file is, for a root daemon: nil when only root may change
it (the file and every folder on the way), else the one user who may (its
apps run as that user: root runs nothing as root, nor as a third user, on
a user's word) -> uid | nil | nil, why (more than one user may change it,
or a folder of root's anyone may). ]]
function M.file_owner(path)
  if core.getuid() ~= 0 then return nil end
  local uid, refused, why = reader_uid(path, { file = path })
  if refused == false then return nil, why end
  return uid
end

-- Whether a user belongs to a group (its primary one, or a member of it)
local function in_group(pw, gid)
  if pw.gid == gid then return true end
  local gr = util.group(gid)
  for name in tostring(gr and gr.members or ""):gmatch("[^,%s]+") do
    if name == pw.name then return true end
  end
  return false
end

-- An app of a file that is uid's word: it runs as uid (none named), or the
-- file is refused -> true | nil, why
local function owned_app(raw, d, uid)
  local pw = util.passwd(uid)
  if not pw then return nil, ("the file is uid %d's, which has no passwd entry"):format(uid) end
  if d.uid ~= uid then
    return nil, ("the file is %s's (only %s may change it): its apps run as %s, not as %s"):format(pw.name,
      pw.name, pw.name, tostring(raw.user or raw.uid or "root"))
  end
  if d.gid and not in_group(pw, d.gid) then
    return nil, ("the file is %s's: its apps run in %s's groups, not in gid %d"):format(pw.name, pw.name, d.gid)
  end
  -- (its processes start from the user's login environment: the caller's,
  -- root's, would hand the user root's secrets)
  if d.filter_env ~= nil and d.filter_env ~= true then
    return nil, ("the file is %s's: filter_env: its apps start from %s's login environment, never the "
      .. "caller's"):format(pw.name, pw.name)
  end
  -- (a unix socket is made by the daemon, as root, where the path says,
  -- one there before removed: a user's word may not choose that path)
  for _, spec in ipairs(type(d.listen) == "table" and d.listen or {}) do
    if type(spec) == "string" and spec:match("^unix:") then
      return nil, ("the file is %s's: listen %s: a unix socket is made by the daemon as root; its apps "
        .. "may listen on TCP (the app itself may bind its own socket)"):format(pw.name, spec)
    end
  end
  return true
end

function M.check_apps(path, res, opts)
  local owner, owner_err = res.owner, nil -- (decided before the file was read: M.read, M.load)
  if owner == nil then owner, owner_err = M.file_owner(path) end
  if owner_err then return nil, ("%s: refused: a root daemon runs no app of it (%s)"):format(path, owner_err) end
  owner = owner or nil
  local only
  if opts.only and #opts.only > 0 then
    only = {}
    for _, n in ipairs(opts.only) do only[n] = true end
  end
  local base = util.dirname(path)
  local decls, seen = {}, {}
  -- PM2: --env NAME also takes deploy.NAME.env, over each app's env (and
  -- under its env_NAME)
  local deploy = opts.env_name and type(res.deploy) == "table" and res.deploy[opts.env_name]
  local deploy_env = type(deploy) == "table" and type(deploy.env) == "table" and deploy.env or nil
  for i, raw in ipairs(res.apps) do
    if deploy_env then
      local env = {}
      for k, v in pairs(type(raw.env) == "table" and raw.env or {}) do env[k] = v end
      for k, v in pairs(deploy_env) do env[k] = v end
      raw.env = env
    end
    if type(res.hooks) == "table" then
      for k, fn in pairs(res.hooks) do
        if raw[k] == nil then raw[k] = fn end
      end
    end
    local eok, eerr = M.apply_env_file(raw, base, { uid = opts.uid, file = path })
    if not eok then return nil, ("%s: app #%d: %s"):format(path, i, eerr) end
    if owner and raw.user == nil and raw.uid == nil then raw.uid = owner end -- (a user's file: its user)
    local d, derr = app.normalize(raw, { base = base, cwd = opts.cwd, env_name = opts.env_name,
      environ = opts.environ })
    if not d then return nil, ("%s: app #%d: %s"):format(path, i, derr) end
    if owner then
      local ook, oerr = owned_app(raw, d, owner)
      if not ook then return nil, ("%s: app '%s': %s"):format(path, d.name, oerr) end
    end
    if seen[d.name] then
      return nil, ("%s: two apps are named '%s'"):format(path, d.name)
    end
    seen[d.name] = true
    if raw.cwd == nil then M.implicit_cwd[d] = true end
    -- (--only names the file's name, before append_env_to_name's suffix:
    -- PM2's; the suffixed one too)
    if not only or only[d.name] or (type(raw.name) == "string" and only[raw.name]) then decls[#decls + 1] = d end
  end
  local ok, err = M.check_depends(path, decls, seen)
  if not ok then return nil, err end
  if only and #decls == 0 then
    return nil, path .. ": no app matches --only " .. table.concat(opts.only, ",")
  end
  -- --env NAME that no app declares is a typo (PM2 would go on without it)
  if opts.env_name and #decls > 0 and not res.env_read and not deploy_env then
    local key = "env_" .. opts.env_name
    local found = false
    for _, d in ipairs(decls) do found = found or d[key] ~= nil end
    if not found then
      local have = env_sections(decls)
      return nil, ("%s: --env %s: no app declares %s (%s)"):format(path, opts.env_name, key,
        have and ("the file has " .. have) or "the file has no env_<name> section")
    end
  end
  return M.order(decls)
end

-- depends_on names apps of the same file, without a cycle.
function M.check_depends(path, decls, names)
  local by = {}
  for _, d in ipairs(decls) do by[d.name] = d end
  for _, d in ipairs(decls) do
    for _, dep in ipairs(d.depends_on or {}) do
      if not names[dep] then
        return nil, ("%s: app '%s' depends on '%s', which the file does not declare"):format(path, d.name, dep)
      end
    end
  end
  local state = {}
  local function visit(d, trail)
    if state[d.name] == "done" then return true end
    if state[d.name] == "open" then
      return nil, ("%s: depends_on has a cycle: %s"):format(path, table.concat(trail, " -> ") .. " -> " .. d.name)
    end
    state[d.name] = "open"
    trail[#trail + 1] = d.name
    for _, dep in ipairs(d.depends_on or {}) do
      if by[dep] then
        local ok, err = visit(by[dep], trail)
        if not ok then return nil, err end
      end
    end
    trail[#trail] = nil
    state[d.name] = "done"
    return true
  end
  for _, d in ipairs(decls) do
    local ok, err = visit(d, {})
    if not ok then return nil, err end
  end
  return true
end

-- Dependencies first (the file's order otherwise).
function M.order(decls)
  local by, out, seen = {}, {}, {}
  for _, d in ipairs(decls) do by[d.name] = d end
  local function add(d)
    if seen[d.name] then return end
    seen[d.name] = true
    for _, dep in ipairs(d.depends_on or {}) do
      if by[dep] then add(by[dep]) end
    end
    out[#out + 1] = d
  end
  for _, d in ipairs(decls) do add(d) end
  return out
end

return M
