-- The CLI's verbs that change processes: start, stop, restart, reload, delete,
-- reset, scale, startOrRestart, startOrReload, startOrGracefulReload.
local core = require "pm.core"
local util = require "pm.util"
local cli = require "pm.cli"

local api, with_progress, check = cli.api, cli.with_progress, cli.check
local show_list, names_of, target_of = cli.show_list, cli.names_of, cli.target_of

local V = {}

-- start's flags and what they declare (defined with start below): restart
-- and reload take them too (PM2 applies them to the app)
local start_options, app_of, pm2_words, ext_ignores

-- An ecosystem file the CLI names (it exists) -> its absolute path, or nil
local function file_of(what)
  local st = core.stat(what)
  if st and st.type == "file" and util.is_ecosystem(what) then return util.absolute(what, core.getcwd()) end
end

-- What a start could not do for its apps, said on stderr (exit 0: the
-- apps run): a log file that could not be opened -> list
local function warn_logs(list)
  local view = require "pm.view"
  for _, d in ipairs(type(list) == "table" and list or {}) do
    local e = type(d) == "table" and d.pm2_env
    if type(e) == "table" and type(e.log_error) == "string" then
      io.stderr:write(("pm: warning: %s (%s): %s\n"):format(view.printable(d.name), tostring(d.pm_id),
        view.printable(e.log_error)))
    end
  end
  return list
end

-- Starts, restarts or reloads (method) the apps of an ecosystem file, read
-- again: what it changed of each known app is printed, then the table.
local function apply_file(label, method, path, a)
  local res = with_progress(label, function()
    return check(api()[method](path, { env = a.env, only = names_of(a.only), reply = "changes" }))
  end)
  warn_logs(res)
  if not a.silent then
    local view = require "pm.view"
    -- what the file's print showed while the daemon loaded it
    for _, line in ipairs(type(res[1]) == "table" and type(res[1].load_output) == "table"
      and res[1].load_output or {}) do
      io.stdout:write(tostring(line), "\n")
    end
    local done = method:lower():find("reload", 1, true) and "reloaded" or nil
    for _, d in ipairs(res) do
      local line = view.changes(d, done)
      if line then io.stdout:write(line) end
    end
  end
  show_list(a.silent)
  return 0
end

-- PM2's `-` target: an ecosystem (JSON: a list of apps, { apps }, or one
-- app) read from stdin -> its apps (relative paths are the caller's)
local function stdin_apps()
  local text = io.stdin:read("*a") or ""
  local v, err = util.decode(text)
  if type(v) ~= "table" then
    error({ msg = "stdin: a JSON ecosystem expected" .. (err and (": " .. err) or "") }, 0)
  end
  local shaped, serr = require("pm.ecosystem").shape("stdin", v)
  if not shaped then error({ msg = serr }, 0) end
  return shaped.apps
end

local function simple_target(name, method, extra)
  V[name] = function(args)
    local p = cli.parser(name)
    p:argument("target", "names, ids, 'all', namespaces, /regex/ or an ecosystem file"):args("+")
    p:flag("-s --silent", "print nothing on success")
    if extra then extra(p) end
    local with_attrs = name == "restart" or name == "reload"
    local a = p:parse(with_attrs and pm2_words(args) or args)
    if a.no_color then core.setenv("NO_COLOR", "1") end
    if a.parallel and not tonumber(a.parallel) then
      error({ msg = "--parallel: a number expected, got " .. a.parallel, code = 2 }, 0)
    end
    if #a.target == 1 and a.target[1] == "-" then
      a.target = {}
      for _, app in ipairs(stdin_apps()) do
        if type(app.name) == "string" then a.target[#a.target + 1] = app.name end
      end
      if #a.target == 0 then error({ msg = "stdin: no app with a name" }, 0) end
    end
    local file = (name == "restart" or name == "reload") and #a.target == 1 and file_of(a.target[1])
    if file then return apply_file(name .. " " .. a.target[1], method, file, a) end
    local opts = { brief = true } -- the reply's environments are not shown
    if a.update_env then opts.updateEnv = true end
    opts.only = names_of(a.only)
    opts.env = a.env -- (refused but for a file: PM2's rule)
    if with_attrs then
      for k, v in pairs((app_of(a))) do opts[k] = v end
      -- PM2: --watch alone turns a watched app's watch off, else on
      if opts.watch == true and #a.target == 1 then
        local list = api().describe(target_of(a.target[1]))
        local d = type(list) == "table" and list[1] and list[1].pm2_env
        if d and d.watch and d.watch ~= util.null then opts.watch = false end
      end
    end
    -- (a target named twice is acted on once: a second delete of it would
    -- find nothing)
    local seen, targets = {}, {}
    for _, t in ipairs(a.target) do
      if not seen[t] then seen[t] = true; targets[#targets + 1] = t end
    end
    a.target = targets
    local failures, done
    -- PM2: `all` with no process is an error exit too
    local function none_found(t, res)
      if t == "all" and type(res) == "table" and #res == 0 then error({ msg = "no process found" }, 0) end
    end
    with_progress(name .. " " .. table.concat(a.target, " "), function()
      if #a.target > 1 then
        local pm = api()
        failures, done = cli.each_target_at_once(a.target, method, function(t)
          return pm._target_params(target_of(t), opts, method == "restart" or method == "reload")
        end, none_found)
        return
      end
      failures, done = cli.each_target(a.target, function(t)
        none_found(t, check(api()[method](target_of(t), opts)))
      end)
    end)
    for _, msg in ipairs(failures) do io.stderr:write("pm: ", msg, "\n") end
    -- what was done is shown, even when a target was not found
    if done > 0 then show_list(a.silent) end
    return #failures > 0 and 1 or 0
  end
end

-- start's flags of app attributes on parser p (their values go to
-- o<index> of start_options, app_of reads them)
local function start_flags(p)
  for i, o in ipairs(start_options) do
    local kind = o[3]
    local opt
    if kind == "b" or kind == "off" then
      opt = p:flag(o[1], o[4])
    else
      opt = p:option(o[1], o[4]):argname(o[5])
      if kind == "paths" or kind == "envs" then opt:args("?"):count("*") end
      if kind == "opt" then opt:args("?") end
    end
    opt:target("o" .. i)
  end
end

-- restart and reload of an ecosystem file read it again: its new apps
-- start, its known apps take what changed (--env NAME: env_NAME merged)
local function file_flags(p)
  p:flag("-a --update-env", "take the current environment (PM2's -a; a file's apps always do)")
  p:option("--parallel", "PM2's number of apps restarted at once: pm restarts them together"):argname("<n>")
  p:flag("--no-color", "no colour (as NO_COLOR=1)"):target("no_color")
  p:option("--only", "apps of the file")
  p:option("--env", "environment of the file (env_<name>)")
  -- (an app's attributes, as start's flags say them; --name renames it,
  -- PM2's; an attribute given as null goes back to its default)
  start_flags(p)
end

local function stop_flags(p)
  p:option("--only", "apps of the file")
  p:option("--env", "PM2's: taken, and nothing to do for a stop or a delete"):argname("<name>"):target("stop_env")
end
simple_target("stop", "stop", function(p)
  stop_flags(p)
  p:flag("--watch", "PM2's: stop watching (a stop turns the watch off: restart --watch turns it on)")
    :target("stop_watch")
end)
simple_target("restart", "restart", file_flags)
simple_target("reload", "reload", file_flags)

-- PM2's startOrRestart / startOrReload / startOrGracefulReload <file>:
-- what `restart` and `reload` of the file do
local function start_or(name, method)
  V[name] = function(args)
    local p = cli.parser(name)
    p:argument("file", "ecosystem file")
    p:flag("-s --silent", "print nothing on success")
    file_flags(p)
    local a = p:parse(args)
    local file = file_of(a.file)
    if not file then
      error({ msg = (core.stat(a.file) and "not an ecosystem file: " or "file not found: ") .. a.file }, 0)
    end
    return apply_file(name .. " " .. a.file, method, file, a)
  end
end
start_or("startOrRestart", "restart")
start_or("startOrReload", "reload")
start_or("startOrGracefulReload", "reload")
simple_target("delete", "delete", stop_flags)
simple_target("reset", "reset")

-- PM2's start flags: names, the app attribute, kind, help, argument.
-- Kinds: s string, n number, b flag (true), off flag (false), list (a,b),
-- codes (exit codes a,b), paths (--watch [path], repeatable: true or the
-- paths), envs (--filter-env [prefix], repeatable: true or the prefixes).
start_options = {
  { "-n --name", "name", "s", "app name", "<name>" },
  { "-i --instances", "instances", "s", "N, max, 0 (one per CPU) or -N (the CPUs less N)", "<n>" },
  { "-x --exec-mode", "exec_mode", "mode", "fork or cluster (-x alone: fork, as PM2's -x)", "<mode>" },
  { "--interpreter", "interpreter", "s", "interpreter (none: execute directly)", "<path>" },
  { "--interpreter-args", "interpreter_args", "s", "arguments for the interpreter", "<args>" },
  { "--node-args", "interpreter_args", "s", "the same as --interpreter-args (PM2)", "<args>" },
  { "--cwd", "cwd", "s", "working directory", "<dir>" },
  { "--namespace", "namespace", "s", "namespace", "<ns>" },
  { "--watch", "watch", "paths", "restart on file change (in these paths: repeat it)", "<path>" },
  { "--ignore-watch", "ignore_watch", "words", "paths or globs the watch ignores (\"a b\" or a,b)", "<paths>" },
  { "--watch-delay", "watch_delay", "secs", "seconds to gather changes before a restart (PM2's; 500ms: ms)", "<s>" },
  { "--max-memory-restart", "max_memory_restart", "s", "restart above this memory (200M)", "<size>" },
  { "--restart-delay", "restart_delay", "n", "ms before a restart", "<ms>" },
  { "--exp-backoff-restart-delay", "exp_backoff_restart_delay", "n", "exponential backoff base (ms)", "<ms>" },
  { "--max-restarts", "max_restarts", "n", "fast restarts before errored", "<n>" },
  { "--min-uptime", "min_uptime", "s", "uptime under which an exit is unstable (ms)", "<ms>" },
  { "-k --kill-timeout", "kill_timeout", "n", "ms from the stop signal to SIGKILL", "<ms>" },
  { "--kill-signal", "kill_signal", "s", "the stop signal (SIGINT)", "<signal>" },
  { "--shutdown-with-message", "shutdown_with_message", "b", "stop with the message 'shutdown' on the IPC channel" },
  { "--stop-exit-codes", "stop_exit_codes", "codes", "exit codes that are not restarted (0,42)", "<codes>" },
  { "--no-autorestart", "autorestart", "off", "do not restart on exit" },
  { "--no-autostart", "autostart", "off", "add the app without starting it" },
  { "--no-treekill", "treekill", "off", "stop the main process only, not its children" },
  { "-c --cron --cron-restart", "cron_restart", "s", "restart on a cron schedule", "<cron>" },
  { "--wait-ready", "wait_ready", "b", "wait for the app's ready signal" },
  { "--ipc", "ipc", "b", "give the app an IPC channel (Node and Lua apps have one)" },
  { "--no-ipc", "ipc", "off", "no IPC channel, even for a Node or Lua app" },
  { "--listen-timeout", "listen_timeout", "n", "ms to wait for ready", "<ms>" },
  { "-u --user", "user", "s", "run as this user (a root daemon)", "<user>" },
  { "--uid", "uid", "s", "run with this user id (name or number)", "<uid>" },
  { "--gid", "gid", "s", "run with this group id (name or number)", "<gid>" },
  { "--env-file", "env_file", "s", "variables from a dotenv file (KEY=value lines; -path: optional)", "<path>" },
  { "--filter-env", "filter_env", "envs", "leave out the caller's variables (with a prefix: those)", "<prefix>" },
  { "--instance-var", "instance_var", "s", "the variable holding the instance number", "<name>" },
  { "-p --pid", "pid_file", "s", "pid file", "<path>" },
  { "--time", "time", "b", "prefix log lines with the time" },
  { "--log-date-format", "log_date_format", "s", "prefix log lines with the time in this format", "<format>" },
  { "--log-type", "log_type", "s", "json: log lines as JSON objects", "<type>" },
  { "--merge-logs", "merge_logs", "b", "one log file for all instances" },
  { "--disable-logs", "disable_logs", "b", "keep no log file" },
  { "-o --output", "out_file", "s", "stdout log file", "<path>" },
  { "-e --error", "error_file", "s", "stderr log file", "<path>" },
  { "-l --log", "log_file", "opt", "combined log file (without a path: logs/<name>.log)", "<path>" },
  { "--source-map-support", "source_map_support", "b", "Node's source maps (--enable-source-maps)" },
  { "--disable-source-map-support", "disable_source_map_support", "b",
    "no source maps even when the script has its .map" },
}

local MODES = { fork = true, cluster = true, fork_mode = true, cluster_mode = true }

-- The names of the start options that take a value
local VALUED = {}
for _, o in ipairs(start_options) do
  local k = o[3]
  if k ~= "b" and k ~= "off" and k ~= "opt" and k ~= "paths" and k ~= "envs" and k ~= "mode" then
    for name in o[1]:gmatch("%S+") do VALUED[name] = true end
  end
end

-- PM2's words argparse would read otherwise: a value that starts with a
-- dash (`-i -1`, `--node-args "--harmony"`: commander takes the next word
-- whatever it is) and `-x` (PM2: fork mode; here also `-x cluster`).
function pm2_words(args)
  local out, i = {}, 1
  while i <= #args do
    local w, nxt = args[i], args[i + 1]
    if w == "--" then
      for j = i, #args do out[#out + 1] = args[j] end
      break
    end
    if VALUED[w] and nxt and nxt:sub(1, 1) == "-" and nxt ~= "--" then
      out[#out + 1], i = (w:sub(2, 2) == "-" and w .. "=" or w) .. nxt, i + 2 -- (-i-1, --name=-x)
    elseif w == "-x" then
      local mode = nxt and MODES[nxt] and nxt
      out[#out + 1], i = "--exec-mode=" .. (mode or "fork"), i + (mode and 2 or 1)
    else
      out[#out + 1], i = w, i + 1
    end
  end
  return out
end

-- The app declaration the flags of a start say -> app, whether any was given
function app_of(a)
  local app, given = {}, false
  for i, o in ipairs(start_options) do
    local v, key, kind = a["o" .. i], o[2], o[3]
    if kind == "paths" or kind == "envs" then
      if #v > 0 then
        local list = {}
        for _, one in ipairs(v) do list[#list + 1] = one[1] end
        app[key] = #list > 0 and list or true
      else
        v = nil
      end
    elseif v == nil or v == false then
      v = nil
    elseif kind == "off" then app[key] = false
    elseif kind == "list" then app[key] = names_of(v)
    elseif kind == "words" then -- (PM2 splits --ignore-watch="logs tmp" at spaces)
      local list = {}
      for w in tostring(v):gmatch("[^%s,]+") do list[#list + 1] = w end
      app[key] = list
    elseif kind == "codes" then
      app[key] = {}
      for c in v:gmatch("[^,%s]+") do
        app[key][#app[key] + 1] = tonumber(c)
          or error({ msg = "--stop-exit-codes: numbers expected, got " .. c, code = 2 }, 0)
      end
    elseif kind == "n" then
      app[key] = tonumber(v) or error({ msg = o[1]:match("%-%-[%w-]+") .. ": a number expected", code = 2 }, 0)
    elseif kind == "secs" then -- (PM2's: seconds, or ms with "ms")
      local n, unit = tostring(v):match("^%s*([%d.]+)%s*(m?s?)%s*$")
      n = tonumber(n)
      if not n or (unit ~= "" and unit ~= "s" and unit ~= "ms") then
        error({ msg = o[1]:match("%-%-[%w-]+") .. ": seconds expected (2, 0.5, or 500ms), got " .. tostring(v),
          code = 2 }, 0)
      end
      app[key] = unit == "ms" and math.floor(n) or math.floor(n * 1000 + 0.5)
    elseif kind == "opt" then -- (a value, or true when none was given)
      app[key] = v[1] or true
    elseif kind == "mode" then
      if not MODES[v] then error({ msg = "--exec-mode: fork or cluster, not " .. v, code = 2 }, 0) end
      app[key] = v
    else
      app[key] = v
    end
    given = given or v ~= nil
  end
  return app, given
end

-- --ext js,json (PM2's): the files under dir whose name has none of those
-- extensions are ignored by the watch, as PM2 lists them at the start
-- (node_modules and dot-folders are ignored anyway; at most MAX_EXT_FILES
-- files are looked at; a name with *, ?, [ or ] is not listed: ignore_watch
-- would take it for a glob) -> ignore_watch (relative paths, beside base's)
local MAX_EXT_FILES = 10000
function ext_ignores(exts, dir, base)
  local want = {}
  for e in tostring(exts):gmatch("[^,%s]+") do want[#want + 1] = "." .. e:gsub("^%.", "") end
  if #want == 0 then error({ msg = "--ext: extensions expected (js,json)", code = 2 }, 0) end
  local list, seen = {}, 0
  if type(base) == "string" then base = { base } end
  for _, g in ipairs(base or require("pm.watch").IGNORE_DEFAULT) do list[#list + 1] = g end
  local function walk(rel, depth)
    local names = core.listdir(rel == "" and dir or (dir .. "/" .. rel)) or {}
    for name, kind in pairs(names) do
      seen = seen + 1
      if seen > MAX_EXT_FILES then
        error({ msg = ("--ext: over %d files under %s: name what the watch ignores (ignore_watch)")
          :format(MAX_EXT_FILES, dir), code = 2 }, 0)
      end
      local path = rel == "" and name or (rel .. "/" .. name)
      if kind == "dir" then
        if name ~= "node_modules" and name:sub(1, 1) ~= "." and depth < 32 then walk(path, depth + 1) end
      elseif name:sub(1, 1) ~= "." and not path:find("[%*%?%[%]]") then
        -- (a name with a glob's characters would be a pattern: one the
        -- folder's user wrote to cost the daemon's every match)
        local keep = false
        for _, e in ipairs(want) do keep = keep or name:sub(-#e) == e end
        if not keep then list[#list + 1] = path end
      end
    end
  end
  walk("", 0)
  return list
end

-- `pm start ... --no-daemon` when no daemon runs (PM2): this process holds
-- a daemon of its own and stays in the foreground until SIGINT or SIGTERM
-- (or the daemon ends); its apps end with it. -> whether it does
local function foreground_daemon()
  local c = require("pm.client").connect({ spawn = false })
  if c then c:close(); return false end
  check(require("pm").connect(true))
  io.stderr:write("pm: no daemon ran: this one runs in the foreground, its apps with it (Ctrl-C ends them)\n")
  return true
end

local function stay_in_foreground()
  collectgarbage("restart") -- it runs until a signal: collect as usual
  cli.quick_exit = false
  local conn = check(api()._conn())
  local stop = false
  local sigs = {}
  for _, s in ipairs({ "SIGINT", "SIGTERM" }) do
    sigs[#sigs + 1] = core.signal(core.signals[s], function() stop = true end)
  end
  local tick = core.timer(500, 500, function() end) -- (to see the daemon go)
  while not stop and not conn.closed do core.run("once") end
  tick:close()
  for _, s in ipairs(sigs) do s:close() end
  return 0
end

local start_one

-- Whether a target names apps pm has
local function known_app(client, what)
  local list = client.describe(what)
  return type(list) == "table" and #list > 0
end

function V.start(args)
  local p = cli.parser("start")
  p:argument("what", "script, ecosystem file, name or id"):args("?")
  p:argument("args", "arguments for the script (after --)"):args("*")
  start_flags(p)
  p:option("--env", "environment of the file (env_<name>)"):argname("<name>")
  p:option("--only", "start only these apps of the file (a,b)"):argname("<apps>")
  p:flag("-a --update-env", "a known app: restart it with the current environment")
  p:flag("--no-daemon", "no daemon runs: run one in the foreground, until Ctrl-C"):target("no_daemon")
  p:flag("--no-automation --no-vizion --no-pmx --trace --disable-trace --v8 --event-loop-inspector --deep-monitoring",
    "PM2's (PM2 Plus, git metadata, its metrics): accepted, nothing to do"):target("pm2_noop")
  p:flag("--no-color", "no colour (as NO_COLOR=1)"):target("no_color")
  p:option("--ext", "with --watch: watch only files with these extensions (js,json: PM2's)"):argname("<exts>")
  p:flag("-f --force", "start a script that already runs")
  p:flag("-s --silent", "print nothing on success")
  p:flag("--attach", "then follow the started apps' logs (pm logs), until Ctrl-C")
  local a = p:parse(pm2_words(args))
  if a.no_color then core.setenv("NO_COLOR", "1") end
  -- PM2: words before `--` are more things to start, one after another,
  -- each with the same flags; the script's arguments come after `--`
  local after = 0
  for i, w in ipairs(args) do
    if w == "--" then after = #args - i; break end
  end
  if #a.args > after then
    local more = {}
    for i = 1, #a.args - after do more[i] = a.args[i] end
    local rest = {}
    for i = #a.args - after + 1, #a.args do rest[#rest + 1] = a.args[i] end
    local code = 0
    for _, what in ipairs({ a.what, unpack(more) }) do
      a.what, a.args = what, rest
      code = math.max(code, start_one(a))
    end
    return code
  end
  return start_one(a)
end

function start_one(a)
  if not a.what then
    -- `pm start --watch app.sh`: the path --watch took is the script
    for i, o in ipairs(start_options) do
      local given = o[2] == "watch" and a["o" .. i]
      local last = given and given[#given]
      if last and last[1] then a.what, given[#given] = last[1], {} end
    end
    -- PM2: a bare `start` starts the ecosystem file of the directory
    for _, f in ipairs(a.what and {} or { "ecosystem.lua", "ecosystem.config.js", "ecosystem.config.cjs",
      "ecosystem.json", "ecosystem.yml", "ecosystem.yaml" }) do
      if core.stat(f) then a.what = f break end
    end
    if not a.what then
      error({ msg = "nothing to start: no script given and no ecosystem.lua or ecosystem.config.js here "
        .. "(pm help start)", code = 2 }, 0)
    end
  end
  local what = a.what
  local cwd = core.getcwd()
  local foreground = a.no_daemon and foreground_daemon()
  local client = api()
  if what == "-" and not core.stat(what) then
    for _, app in ipairs(stdin_apps()) do warn_logs(check(client.start(app, { env = a.env, brief = true }))) end
    show_list(a.silent)
    return foreground and stay_in_foreground() or 0
  end
  local st = core.stat(what)
  if st and st.type == "file" and util.is_ecosystem(what) then
    apply_file("start " .. what, "start", util.absolute(what, cwd), a)
    return foreground and stay_in_foreground() or 0
  end
  local app, given = app_of(a)
  if a.ext then
    app.ignore_watch = ext_ignores(a.ext, app.cwd and util.absolute(app.cwd, cwd) or cwd, app.ignore_watch)
  end
  local started
  app.script, app.args = what, #a.args > 0 and a.args or nil
  if not st and not given and #a.args == 0 then
    -- a known name or id is (re)started; PM2: with --update-env, restarted
    -- with the current environment
    if not (a.update_env and client.restart(what, { updateEnv = true, brief = true })) then
      started = warn_logs(check(client.start(what, { brief = true, env = a.env })))
    end
  elseif not st and #a.args == 0 and not util.is_ecosystem(what) and known_app(client, what) then
    -- PM2: a known app started with flags is restarted with what they say
    -- (--name renames it)
    local opts = { brief = true, updateEnv = a.update_env or nil }
    for k, v in pairs(app) do
      if k ~= "script" and k ~= "args" then opts[k] = v end
    end
    check(client.restart(what, opts))
  else
    started = warn_logs(check(client.start(app, { force = a.force or nil, env = a.env, brief = true })))
  end
  show_list(a.silent)
  if a.attach and not foreground then
    -- PM2's --attach: the started app's logs, followed (all when several)
    local names = {}
    for _, d in ipairs(type(started) == "table" and started or {}) do names[d.name] = true end
    local name = next(names)
    return require("pm.cli_logs").logs({ (name and next(names, name) == nil) and name or what })
  end
  return foreground and stay_in_foreground() or 0
end

function V.scale(args)
  local p = cli.parser("scale")
  p:argument("name", "app name")
  p:argument("instances", "N, +N or -N")
  p:flag("-s --silent", "print nothing on success")
  -- "-2" is a count, not a flag
  local fixed, count = {}, nil
  for _, x in ipairs(args) do
    if x:match("^%-%d+$") then count = x else fixed[#fixed + 1] = x end
  end
  if count then
    fixed[#fixed + 1] = "--"
    fixed[#fixed + 1] = count
  end
  local a = p:parse(fixed)
  local conn = check(api()._conn())
  check(conn:call("scale", { name = a.name, instances = a.instances }))
  show_list(a.silent)
  return 0
end

return V
