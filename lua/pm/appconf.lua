-- App configuration (PM2's `pm2 set APP.KEY VALUE`): the store
-- PM_HOME/module_conf.json (PM2's name; 0600, written atomically, bounded;
-- a bare KEY is a value of its own, as in PM2, no app's),
-- what a key may be, what an app's environment gets from it (each KEY of
-- its name, and its whole config as JSON under its name, as PM2's apps
-- get it), and pm2-logrotate's keys mapped onto pm's log settings (the
-- defaults of apps that set none themselves). Decides nothing about when
-- an app restarts (methods.lua restarts the apps a set names).
local util = require "pm.util"
local cjson = require "cjson"

local M = {}

-- bounds: a key, a value, keys of one app, the whole file
M.MAX_NAME, M.MAX_KEY, M.MAX_VALUE = 128, 128, 4096
M.MAX_KEYS, M.MAX_BYTES = 64, 256 * 1024

local home -- PM_HOME (M.load)
local conf = {} -- app name -> { key -> value (a string) }
M.version = 0 -- bumped at each change (launch.lua rebuilds environments)

local function path() return home .. "/module_conf.json" end

-- Ordered JSON of one app's config (keys sorted: the same text each time)
local function app_json(t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table.sort(keys)
  local parts = {}
  for i, k in ipairs(keys) do parts[i] = cjson.encode(k) .. ":" .. cjson.encode(t[k]) end
  return "{" .. table.concat(parts, ",") .. "}"
end

local function file_text(c)
  local names = {}
  for k in pairs(c) do names[#names + 1] = k end
  table.sort(names)
  local parts = {}
  for i, k in ipairs(names) do
    local v = c[k]
    parts[i] = "  " .. cjson.encode(k) .. ": " .. (type(v) == "table" and app_json(v) or cjson.encode(v))
  end
  if #parts == 0 then return "{}\n" end
  return "{\n" .. table.concat(parts, ",\n") .. "\n}\n"
end

local function bad_text(s, what, max)
  if type(s) ~= "string" or s == "" then return what .. " is empty" end
  if #s > max then return ("%s is longer than %d bytes"):format(what, max) end
  if s:find("[%z\1-\31\127]") then return what .. " holds a control character" end
end

-- "APP.KEY" or "APP:KEY" -> app, key | nil, err. ':' first when there is
-- one (an app name holding a dot: "my.app:key"), else the first '.'.
-- allow_app: a bare APP is fine (unset, get).
function M.split(key, allow_app)
  if type(key) ~= "string" or key == "" then return nil, "a key is required: APP.KEY (or APP:KEY)" end
  local app, k = key:match("^([^:]*):(.*)$")
  if not app then app, k = key:match("^([^.]*)%.(.*)$") end
  if not app then
    if allow_app then app = key else
      return nil, ("'%s': the key must be APP.KEY (or APP:KEY)"):format(key:sub(1, 200))
    end
  end
  local err = bad_text(app, "the app name", M.MAX_NAME)
  if err then return nil, ("'%s': %s"):format(key:sub(1, 200), err) end
  if k then
    err = bad_text(k, "the key", M.MAX_KEY)
    if not err and k:find("=", 1, true) then err = "the key holds '='" end
    if err then return nil, ("'%s': %s"):format(key:sub(1, 200), err) end
  end
  return app, k
end

local function scalar(v)
  local t = type(v)
  if t == "string" or t == "number" or t == "boolean" then return tostring(v) end
end

-- Reads the store (at the daemon's start) -> true | nil, err: a file that
-- is not a JSON object is kept as module_conf.json.broken (the store is
-- then empty); what pm does not keep (PM2's deeper objects) is left out.
function M.load(pm_home)
  home = pm_home
  conf = {}
  M.version = M.version + 1
  local text = util.read_file(path())
  if not text then return true end
  local t = #text <= M.MAX_BYTES and util.decode(text) or nil
  if type(t) ~= "table" or (next(t) == nil and text:match("^%s*%[")) then
    os.rename(path(), path() .. ".broken")
    return nil, "module_conf.json is not a JSON object: kept as module_conf.json.broken, ignored"
  end
  local left = 0
  for app, keys in pairs(t) do
    if type(app) == "string" and scalar(keys) then
      conf[app] = scalar(keys)
    elseif type(app) == "string" and type(keys) == "table" then
      local c = {}
      for k, v in pairs(keys) do
        if type(k) == "string" and scalar(v) then c[k] = scalar(v) else left = left + 1 end
      end
      conf[app] = c
    else
      left = left + 1
    end
  end
  if left > 0 then
    return nil, ("module_conf.json: %d values that are not text, numbers or booleans left out"):format(left)
  end
  return true
end

local function count(t)
  local n = 0
  for _ in pairs(t) do n = n + 1 end
  return n
end

-- Writes c as the store -> true | nil, err (nothing changes then)
local function commit(c)
  local text = file_text(c)
  if #text > M.MAX_BYTES then
    return nil, ("the app configuration would be larger than %d bytes: refused"):format(M.MAX_BYTES)
  end
  local ok, err = util.write_atomic(path(), text, { mode = 384 })
  if not ok then return nil, "module_conf.json: " .. tostring(err) end
  conf = c
  M.version = M.version + 1
  return true
end

local function copy()
  local c = {}
  for app, keys in pairs(conf) do c[app] = type(keys) == "table" and util.shallow_copy(keys) or keys end
  return c
end

-- pairs: { {key, value}, ... } set at once -> the apps named | nil, err
-- (one bad pair: nothing changes). A bare KEY is a value of its own.
function M.set(pairs_list)
  local c, apps, seen = copy(), {}, {}
  for _, kv in ipairs(pairs_list) do
    local app, k = M.split(kv[1], true)
    if not app then return nil, k end
    local v = kv[2]
    if type(v) == "number" or type(v) == "boolean" then v = tostring(v) end
    if type(v) ~= "string" then return nil, ("%s: a value is required"):format(kv[1]) end
    if #v > M.MAX_VALUE then return nil, ("%s: the value is longer than %d bytes"):format(kv[1], M.MAX_VALUE) end
    if v:find("%z") then return nil, ("%s: the value holds a NUL byte"):format(kv[1]) end
    if not k then
      c[app] = v
    else
      if type(c[app]) ~= "table" then c[app] = {} end
      c[app][k] = v
      if count(c[app]) > M.MAX_KEYS then
        return nil, ("%s: app '%s' would have more than %d keys"):format(kv[1], app, M.MAX_KEYS)
      end
      if not seen[app] then seen[app] = true; apps[#apps + 1] = app end
    end
  end
  local ok, err = commit(c)
  if not ok then return nil, err end
  return apps
end

-- "APP.KEY" removes a key, "APP" every key of the app, "all" everything
-- -> true | nil, err. (Nothing to remove is no error, as in PM2.)
function M.unset(key)
  if key == "all" then return commit({}) end
  local app, k = M.split(key, true)
  if not app then return nil, k end
  local c = copy()
  if k then
    if type(c[app]) == "table" then
      c[app][k] = nil
      if next(c[app]) == nil then c[app] = nil end
    end
  else
    c[app] = nil
  end
  return commit(c)
end

-- nil or "all": the whole store; "APP": its keys; "APP.KEY": the value
-- (nil when unset) -> value | nil, err
function M.get(key)
  if key == nil or key == "all" then return copy() end
  local app, k = M.split(key, true)
  if not app then return nil, k end
  local v = conf[app]
  if not k then return type(v) == "table" and util.shallow_copy(v) or v or {} end
  return type(v) == "table" and v[k] or nil
end

-- The variables an app named name gets (nil when it has no config): each
-- key, and the config as JSON under the app's name.
function M.env_of(name)
  local c = conf[name]
  if type(c) ~= "table" or next(c) == nil then return nil end
  local env = util.shallow_copy(c)
  env[name] = app_json(c)
  return env
end

-- pm2-logrotate's keys -> pm's log settings: { max_log_size = bytes,
-- retain = n, compress = bool, log_rotate = cron } (those set), and the
-- keys pm does not follow, with why.
M.LOGROTATE = "pm2-logrotate"
M.LOGROTATE_IGNORED = {
  dateFormat = "pm names rotated files <name>-out__YYYY-MM-DD_HH-mm-ss.log (pm2-logrotate's default format)",
  workerInterval = "pm checks a file's size at each write, not every N seconds",
  rotateModule = "pm's own log (pm.log) is rotated by size on its own",
  TZ = "rotation times are the daemon's local time",
}
function M.logrotate_setting(k, v)
  if k == "max_size" then
    local n, err = util.size(v, "pm2-logrotate:max_size")
    if not n or n < 1 then return nil, err or "pm2-logrotate:max_size must be above 0" end
    return "max_log_size", n
  elseif k == "retain" then
    local n = tonumber(v)
    if not n or n < 1 or n ~= math.floor(n) then return nil, "pm2-logrotate:retain must be a whole number above 0" end
    return "retain", n
  elseif k == "compress" then
    if v ~= "true" and v ~= "false" then return nil, "pm2-logrotate:compress must be true or false" end
    return "compress", v == "true"
  elseif k == "rotateInterval" then
    local expr = require("pm.app").rotate_cron(v)
    local spec, err = require("pm.cron").parse(expr)
    if not spec then return nil, "pm2-logrotate:rotateInterval: " .. tostring(err) end
    return "log_rotate", v
  end
  return false, M.LOGROTATE_IGNORED[k] or "pm2-logrotate has no such key"
end

-- The log settings the pm2-logrotate keys give every app that sets none
-- of its own -> { attr = value } (a bad stored value is left out)
function M.log_defaults()
  local out = {}
  local lr = conf[M.LOGROTATE]
  for k, v in pairs(type(lr) == "table" and lr or {}) do
    local attr, val = M.logrotate_setting(k, v)
    if attr then out[attr] = val end
  end
  return out
end

M.file_text = file_text
return M
