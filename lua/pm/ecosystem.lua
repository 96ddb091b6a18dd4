-- Ecosystem files: ecosystem.lua (run in a sandbox by the daemon), PM2's
-- JSON files (JavaScript to PM2: through node when plain JSON does not
-- parse), .config.js (node), YAML (lua-yaml), turned into checked app
-- declarations. A bad file gives "file:line[:column]: message" and nothing
-- is started or changed.
local core = require "pm.core"
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

local function load_json(path)
  local s, err = util.read_file(path)
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

local function load_yaml(path)
  local st = core.stat(path)
  if st and st.size and st.size > M.YAML_MAX_BYTES then
    return nil, ("%s: a YAML file of %d bytes: at most %d"):format(path, st.size, M.YAML_MAX_BYTES)
  end
  local s, err = util.read_file(path)
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

-- Reads a file -> { apps = raw list, hooks = table|nil } or nil, err
function M.read(path)
  local res, err
  if path:match("%.lua$") then
    res, err = load_lua(path)
  elseif path:match("%.json$") then
    res, err = load_json(path)
  elseif M.is_yaml(path) then
    res, err = load_yaml(path)
  elseif path:match("%.c?js$") then
    return nil, path .. ": a .config.js file is read by node: use ecosystem.load with a callback"
  else
    return nil, path .. ": not an ecosystem file"
  end
  if not res then return nil, err end
  return M.shape(path, res)
end

-- The top-level keys of a file: apps and hooks; deploy (PM2's: pm does
-- not deploy) is let be.
M.TOP_KEYS = { "apps", "hooks", "deploy" }
local top_keys = { apps = true, hooks = true, deploy = true }

-- { apps = {...} } or a bare list -> { apps, hooks } | nil, err
function M.shape(path, res)
  if type(res) ~= "table" then return nil, path .. ": an object with \"apps\" or a list expected" end
  for k in pairs(res) do
    if type(k) == "string" and not top_keys[k] then
      local near = app.closest(k, M.TOP_KEYS)
      return nil, ("%s: unknown top-level key '%s'%s (a file declares apps, hooks)"):format(path, k,
        near and (" - did you mean '" .. near .. "'?") or "")
    end
  end
  local apps = res.apps
  if apps == nil and res[1] ~= nil then apps = res end
  if type(apps) ~= "table" then return nil, path .. ": no apps declared" end
  if next(apps) ~= nil and apps[1] == nil then
    return nil, path .. ": apps must be a list of apps, not an object"
  end
  for i, a in ipairs(apps) do
    if type(a) ~= "table" then return nil, ("%s: app #%d is not a table"):format(path, i) end
  end
  if res.hooks ~= nil and type(res.hooks) ~= "table" then
    return nil, path .. ": hooks must be a table of functions"
  end
  return { apps = apps, hooks = res.hooks }
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

-- Reads a file with node (mode "js" or "json") -> done(res | nil, err)
function M.read_node(path, mode, environ, done)
  local node = app.find_in_path("node", environ and environ.PATH or os.getenv("PATH"))
  if not node then
    return done(nil, path .. ": node is needed to read a .config.js file (install nodejs), "
      .. "or use ecosystem.lua or a JSON file")
  end
  if not M.capture then return done(nil, path .. ": cannot run node here") end
  M.capture({ node, "-e", NODE_READER, mode, path }, M.JS_LIMITS, function(code, out, err)
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
function M.read_js(path, environ, done) return M.read_node(path, "js", environ, done) end

--[[
Loads and checks every app of a file. opts: env_name, only (list of names),
environ, cwd (the caller's: the default working directory of the file's
apps, as in PM2; the file's folder when not given). Returns a list of
declarations or nil, err (nothing is half-loaded). With done, the answer
goes to done(decls | nil, err) (the only way for .config.js files, and for
.json files that are JavaScript rather than JSON, which node reads).
]]
function M.load(path, opts, done)
  opts = opts or {}
  if done then
    local function checked(res, err)
      if not res then return done(nil, err) end
      done(M.check(path, res, opts))
    end
    if path:match("%.c?js$") then return M.read_js(path, opts.environ, checked) end
    local res, err = M.read(path)
    if not res and path:match("%.json$") and util.decode(util.read_file(path) or "") == nil
        and app.find_in_path("node", opts.environ and opts.environ.PATH or os.getenv("PATH")) then
      -- PM2 evaluates a .json file as JavaScript: comments, trailing commas
      return M.read_node(path, "json", opts.environ, checked)
    end
    return checked(res, err)
  end
  local res, err = M.read(path)
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
      if type(k) == "string" and k:match("^env_.") and not seen[k] then
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
  local only
  if opts.only and #opts.only > 0 then
    only = {}
    for _, n in ipairs(opts.only) do only[n] = true end
  end
  local base = util.dirname(path)
  local decls, seen = {}, {}
  for i, raw in ipairs(res.apps) do
    if type(res.hooks) == "table" then
      for k, fn in pairs(res.hooks) do
        if raw[k] == nil then raw[k] = fn end
      end
    end
    local d, derr = app.normalize(raw, { base = base, cwd = opts.cwd, env_name = opts.env_name,
      environ = opts.environ })
    if not d then return nil, ("%s: app #%d: %s"):format(path, i, derr) end
    if seen[d.name] then
      return nil, ("%s: two apps are named '%s'"):format(path, d.name)
    end
    seen[d.name] = true
    if raw.cwd == nil then M.implicit_cwd[d] = true end
    if not only or only[d.name] then decls[#decls + 1] = d end
  end
  local ok, err = M.check_depends(path, decls, seen)
  if not ok then return nil, err end
  if only and #decls == 0 then
    return nil, path .. ": no app matches --only " .. table.concat(opts.only, ",")
  end
  -- --env NAME that no app declares is a typo (PM2 would go on without it)
  if opts.env_name and #decls > 0 then
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
