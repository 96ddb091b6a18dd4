-- The CLI's verbs of app configuration (PM2's pm2 set/unset/multiset/get/
-- conf): APP.KEY VALUE pairs the daemon keeps (appconf.lua) and gives the
-- app's processes as variables; what they print.
local cli = require "pm.cli"

local V = {}

local function call(method, params)
  local conn = cli.check(cli.api()._conn())
  return cli.check(conn:call(method, params))
end

-- A value as a shell word (what `pm get` prints can be pasted back)
local function shell_word(s)
  if s ~= "" and not s:find("[^%w%%+,./:=@_-]") then return s end
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

-- The lines `pm set APP.KEY VALUE` of conf (app -> keys), sorted
local function conf_lines(conf)
  local apps, out = {}, {}
  for app in pairs(conf) do apps[#apps + 1] = app end
  table.sort(apps)
  for _, app in ipairs(apps) do
    if type(conf[app]) ~= "table" then
      out[#out + 1] = ("pm set %s %s"):format(shell_word(app), shell_word(tostring(conf[app])))
      goto next_app
    end
    local keys = {}
    for k in pairs(conf[app]) do keys[#keys + 1] = k end
    table.sort(keys)
    local sep = (app:find(".", 1, true) or app == "pm2-logrotate") and ":" or "."
    for _, k in ipairs(keys) do
      out[#out + 1] = ("pm set %s %s"):format(shell_word(app .. sep .. k), shell_word(conf[app][k]))
    end
    ::next_app::
  end
  return out
end

local function show_set(res)
  for _, n in ipairs(res.notices or {}) do io.stderr:write("pm: notice: ", n, "\n") end
  for _, line in ipairs(conf_lines(res.conf or {})) do print(line) end
  for _, app in ipairs(res.apps or {}) do print(("app %s restarted with its configuration"):format(app)) end
  return 0
end

-- pm set APP.KEY VALUE
function V.set(args)
  local p = cli.parser("set")
  p:argument("key", "APP.KEY (or APP:KEY, PM2's module form: pm2-logrotate:max_size); a bare KEY is no app's")
  p:argument("value", "its value (a string)")
  local a = p:parse(args)
  return show_set(call("conf_set", { pairs = { { a.key, a.value } } }))
end

-- PM2's serial "KEY VALUE KEY VALUE" (a word may be quoted) -> pairs
local function serial_pairs(text)
  local words, err = require("pm.app").split_args(text)
  if not words then error({ msg = "multiset: " .. err, code = 2 }, 0) end
  if #words == 0 or #words % 2 == 1 then
    error({ msg = "multiset: \"KEY VALUE [KEY VALUE ...]\" expected (an even number of words)", code = 2 }, 0)
  end
  local out = {}
  for j = 1, #words, 2 do out[#out + 1] = { words[j], words[j + 1] } end
  return out
end

-- pm multiset "APP.KEY VALUE APP.KEY2 VALUE2" (one restart)
function V.multiset(args)
  local p = cli.parser("multiset")
  p:argument("pairs", "\"APP.KEY VALUE ...\" (one or several words)"):args("+")
  local a = p:parse(args)
  return show_set(call("conf_set", { pairs = serial_pairs(table.concat(a.pairs, " ")) }))
end

-- pm unset APP.KEY | APP | all
function V.unset(args)
  local p = cli.parser("unset")
  p:argument("key", "APP.KEY, APP (all its keys) or all")
  local a = p:parse(args)
  call("conf_unset", { key = a.key })
  return 0
end

local function get(key)
  local res = call("conf_get", { key = key })
  if key and key ~= "all" and (key:find(":", 1, true) or key:find(".", 1, true)) then
    if res == nil or type(res) ~= "string" then
      io.stderr:write(("pm: %s is not set\n"):format(key))
      return 1
    end
    print(res)
    return 0
  end
  if type(res) == "string" then print(res); return 0 end -- (a bare KEY's value)
  if key and key ~= "all" then res = { [key] = res } end
  for _, line in ipairs(conf_lines(res)) do print(line) end
  return 0
end

-- pm get [APP.KEY | APP]
function V.get(args)
  local p = cli.parser("get")
  p:argument("key", "APP.KEY (its value), APP (its keys) or nothing (every key)"):args("?")
  return get(p:parse(args).key)
end

-- pm conf [KEY [VALUE]]: set with both, get with one, every key without
function V.conf(args)
  local p = cli.parser("conf")
  p:argument("key", "APP.KEY (or APP)"):args("?")
  p:argument("value", "a value: set it"):args("?")
  local a = p:parse(args)
  if a.key and a.value then return show_set(call("conf_set", { pairs = { { a.key, a.value } } })) end
  return get(a.key)
end

-- PM2's pm2-logrotate module's defaults (the keys pm follows)
local LOGROTATE_DEFAULTS = { { "max_size", "10M" }, { "retain", "30" }, { "compress", "false" },
  { "rotateInterval", "0 0 * * *" } }

-- pm install MODULE (PM2's modules are Node packages its daemon runs): pm
-- has pm2-logrotate built in, and no others
function V.install(args)
  local p = cli.parser("install")
  p:argument("module", "a PM2 module's name (pm2-logrotate)")
  local name = p:parse(args).module
  if name == "pm2-logrotate" or name:match("^pm2%-logrotate@") then
    -- as PM2's module: rotation from now on, with its defaults (the keys
    -- set before stay as they are)
    local have = call("conf_get", { key = "pm2-logrotate" })
    have = type(have) == "table" and have or {}
    local pairs_ = {}
    for _, kv in ipairs(LOGROTATE_DEFAULTS) do
      if have[kv[1]] == nil then pairs_[#pairs_ + 1] = { "pm2-logrotate:" .. kv[1], kv[2] } end
    end
    if #pairs_ > 0 then call("conf_set", { pairs = pairs_ }) end
    local shown = {}
    for _, kv in ipairs(LOGROTATE_DEFAULTS) do shown[#shown + 1] = kv[1] .. " " .. tostring(have[kv[1]] or kv[2]) end
    io.stdout:write("pm2-logrotate is built into pm: every app's logs rotate (", table.concat(shown, ", "),
      "); pm set pm2-logrotate:KEY VALUE changes it, pm uninstall pm2-logrotate turns it off\n")
    return 0
  end
  error({ msg = ("%s: pm runs no PM2 modules (Node packages in PM2's daemon); pm2-logrotate is built in, "
    .. "a hook (on_exit, pm.every) does in Lua what a module would"):format(name) }, 0)
end

-- pm uninstall pm2-logrotate: its settings go (the apps' own stay)
function V.uninstall(args)
  local p = cli.parser("uninstall")
  p:argument("module", "a PM2 module's name (pm2-logrotate)")
  local name = p:parse(args).module
  if name == "pm2-logrotate" or name:match("^pm2%-logrotate@") then
    call("conf_unset", { key = "pm2-logrotate" })
    io.stdout:write("pm2-logrotate's settings are removed: logs rotate only as their apps say (max_log_size, "
      .. "log_rotate)\n")
    return 0
  end
  error({ msg = ("%s: pm runs no PM2 modules: nothing to uninstall"):format(name) }, 0)
end

return V
