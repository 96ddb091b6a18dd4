-- Ecosystem files: ecosystem.lua (run in a sandbox by the daemon) and PM2's
-- JSON files, turned into checked app declarations. A bad file gives
-- "file:line: message" and nothing is started.
local util = require "pm.util"
local app = require "pm.app"
local hooks = require "pm.hooks"

local M = {}

local function load_lua(path)
  local chunk, err = hooks.loadfile(path)
  if not chunk then return nil, err end
  -- the file's top level runs under a hook's limits: a loop cannot hang the daemon
  local ok, res = hooks.run(chunk)
  if not ok then
    local msg = tostring(res):match("^[^\n]*")
    if not msg:find(path, 1, true) then msg = path .. ": " .. msg end
    return nil, msg
  end
  if type(res) ~= "table" then
    return nil, path .. ": the file must return { apps = {...} } or a list of apps"
  end
  -- as plain data: a metatable of the file's (an __index, a __tostring)
  -- would run later, outside the limits its top level ran under
  local pok, copy = pcall(util.deep_copy, res)
  if not pok then return nil, path .. ": " .. tostring(copy) end
  return copy
end

local function load_json(path)
  local s, err = util.read_file(path)
  if not s then return nil, err end
  local v, derr = util.decode(s)
  if v == nil then return nil, path .. ": invalid JSON: " .. derr end
  if type(v) ~= "table" then return nil, path .. ": an object with \"apps\" or a list expected" end
  return v
end

-- Reads a file -> { apps = raw list, hooks = table|nil } or nil, err
function M.read(path)
  local res, err
  if path:match("%.lua$") then
    res, err = load_lua(path)
  elseif path:match("%.json$") then
    res, err = load_json(path)
  elseif path:match("%.c?js$") then
    return nil, path .. ": a .config.js file is read by node: use ecosystem.load with a callback"
  else
    return nil, path .. ": not an ecosystem file"
  end
  if not res then return nil, err end
  return M.shape(path, res)
end

-- { apps = {...} } or a bare list -> { apps, hooks } | nil, err
function M.shape(path, res)
  if type(res) ~= "table" then return nil, path .. ": an object with \"apps\" or a list expected" end
  local apps = res.apps
  if apps == nil and res[1] ~= nil then apps = res end
  if type(apps) ~= "table" then return nil, path .. ": no apps declared" end
  if next(apps) ~= nil and apps[1] == nil then
    return nil, path .. ": apps must be a list of apps, not an object"
  end
  for i, a in ipairs(apps) do
    if type(a) ~= "table" then return nil, ("%s: app #%d is not a table"):format(path, i) end
  end
  return { apps = apps, hooks = res.hooks }
end

-- Set by the daemon: capture(argv, limits, done(code, stdout, stderr))
-- runs a helper process through the core's spawn (the loop reaps every
-- child); past a limit it is killed, with its process group, and code is nil.
M.capture = nil

-- What node may take to read a .config.js: time (ms), output (bytes)
M.JS_LIMITS = { timeout = 10000, max_output = 16 * 1024 * 1024 }

local NODE_READER = [[
let c = require(require('path').resolve(process.argv[1]));
if (c && c.__esModule && c.default) c = c.default;
Promise.resolve(typeof c === 'function' ? c() : c).then(
  (v) => process.stdout.write(JSON.stringify(v) + '\n'),
  (e) => { process.stderr.write(String(e && e.stack || e) + '\n'); process.exit(1); });
]]

-- Reads a .config.js / .config.cjs file with node -> done(res | nil, err)
function M.read_js(path, environ, done)
  local node = app.find_in_path("node", environ and environ.PATH or os.getenv("PATH"))
  if not node then
    return done(nil, path .. ": node is needed to read a .config.js file (install nodejs), "
      .. "or use ecosystem.lua or a JSON file")
  end
  if not M.capture then return done(nil, path .. ": cannot run node here") end
  M.capture({ node, "-e", NODE_READER, path }, M.JS_LIMITS, function(code, out, err)
    if code == nil then return done(nil, ("%s: node %s"):format(path, tostring(err))) end
    if code ~= 0 then
      local first = tostring(err or ""):match("[^\n]*[Ee]rror[^\n]*") or tostring(err):match("^[^\n]*")
      return done(nil, ("%s: node could not load it: %s"):format(path, first or ("exit " .. tostring(code))))
    end
    local v, derr = util.decode(out or "")
    if v == nil then return done(nil, path .. ": node gave no JSON: " .. tostring(derr)) end
    done(M.shape(path, v))
  end)
end

--[[
Loads and checks every app of a file. opts: env_name, only (list of names),
environ. Returns a list of declarations or nil, err (nothing is half-loaded).
With done, the answer goes to done(decls | nil, err) (the only way for
.config.js files, which node reads).
]]
function M.load(path, opts, done)
  opts = opts or {}
  if done then
    if path:match("%.c?js$") then
      return M.read_js(path, opts.environ, function(res, err)
        if not res then return done(nil, err) end
        done(M.check(path, res, opts))
      end)
    end
    return done(M.load(path, opts))
  end
  local res, err = M.read(path)
  if not res then return nil, err end
  return M.check(path, res, opts)
end

function M.check(path, res, opts)
  local only
  if opts.only and #opts.only > 0 then
    only = {}
    for _, n in ipairs(opts.only) do only[n] = true end
  end
  local decls, seen = {}, {}
  for i, raw in ipairs(res.apps) do
    if type(res.hooks) == "table" then
      for k, fn in pairs(res.hooks) do
        if raw[k] == nil then raw[k] = fn end
      end
    end
    local d, derr = app.normalize(raw, { base = util.dirname(path), env_name = opts.env_name,
      environ = opts.environ })
    if not d then return nil, ("%s: app #%d: %s"):format(path, i, derr) end
    if seen[d.name] then
      return nil, ("%s: two apps are named '%s'"):format(path, d.name)
    end
    seen[d.name] = true
    if not only or only[d.name] then decls[#decls + 1] = d end
  end
  local ok, err = M.check_depends(path, decls, seen)
  if not ok then return nil, err end
  if only and #decls == 0 then
    return nil, path .. ": no app matches --only " .. table.concat(opts.only, ",")
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
