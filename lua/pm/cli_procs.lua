-- The CLI's verbs that change processes: start, stop, restart, reload, delete,
-- reset, scale, startOrRestart, startOrReload, startOrGracefulReload.
local core = require "pm.core"
local util = require "pm.util"
local cli = require "pm.cli"

local api, with_progress, check = cli.api, cli.with_progress, cli.check
local show_list, names_of, target_of = cli.show_list, cli.names_of, cli.target_of

local V = {}

-- An ecosystem file the CLI names (it exists) -> its absolute path, or nil
local function file_of(what)
  local st = core.stat(what)
  if st and st.type == "file" and util.is_ecosystem(what) then return util.absolute(what, core.getcwd()) end
end

-- Starts, restarts or reloads (method) the apps of an ecosystem file, read
-- again: what it changed of each known app is printed, then the table.
local function apply_file(label, method, path, a)
  local res = with_progress(label, function()
    return check(api()[method](path, { env = a.env, only = names_of(a.only), reply = "changes" }))
  end)
  if not a.silent then
    local view = require "pm.view"
    for _, d in ipairs(res) do
      local line = view.changes(d)
      if line then io.stdout:write(line) end
    end
  end
  show_list(a.silent)
  return 0
end

local function simple_target(name, method, extra)
  V[name] = function(args)
    local p = cli.parser(name)
    p:argument("target", "name, id, 'all', a namespace or an ecosystem file")
    p:flag("-s --silent", "print nothing on success")
    if extra then extra(p) end
    local a = p:parse(args)
    local file = (name == "restart" or name == "reload") and file_of(a.target)
    if file then return apply_file(name .. " " .. a.target, method, file, a) end
    local opts = { brief = true } -- the reply's environments are not shown
    if a.update_env then opts.updateEnv = true end
    opts.only = names_of(a.only)
    opts.env = a.env -- (refused but for a file: PM2's rule)
    with_progress(name .. " " .. a.target, function() check(api()[method](target_of(a.target), opts)) end)
    show_list(a.silent)
    return 0
  end
end

-- restart and reload of an ecosystem file read it again: its new apps
-- start, its known apps take what changed (--env NAME: env_NAME merged)
local function file_flags(p)
  p:flag("--update-env", "take the current environment (a file's apps always do)")
  p:option("--only", "apps of the file")
  p:option("--env", "environment of the file (env_<name>)")
end

simple_target("stop", "stop", function(p) p:option("--only", "apps of the file") end)
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
simple_target("delete", "delete", function(p) p:option("--only", "apps of the file") end)
simple_target("reset", "reset")

local start_options = {
  -- flag, key, kind ("s" string, "n" number, "b" flag)
  { "-n --name", "name", "s", "app name" },
  { "-i --instances", "instances", "s", "number of instances (or max)" },
  { "--interpreter", "interpreter", "s", "interpreter (none: execute directly)" },
  { "--interpreter-args", "interpreter_args", "s", "arguments for the interpreter" },
  { "--cwd", "cwd", "s", "working directory" },
  { "--namespace", "namespace", "s", "namespace" },
  { "--watch", "watch", "b", "restart on file change" },
  { "--ignore-watch", "ignore_watch", "s", "paths or globs the watch ignores (a,b)" },
  { "--watch-delay", "watch_delay", "n", "ms to gather changes before a restart" },
  { "--max-memory-restart", "max_memory_restart", "s", "restart above this memory (200M)" },
  { "--restart-delay", "restart_delay", "n", "ms before a restart" },
  { "--exp-backoff-restart-delay", "exp_backoff_restart_delay", "n", "exponential backoff base (ms)" },
  { "--max-restarts", "max_restarts", "n", "fast restarts before errored" },
  { "--min-uptime", "min_uptime", "s", "uptime under which an exit is unstable (ms)" },
  { "--kill-timeout", "kill_timeout", "n", "ms from the stop signal to SIGKILL" },
  { "--kill-signal", "kill_signal", "s", "the stop signal (SIGINT)" },
  { "--stop-exit-codes", "stop_exit_codes", "s", "exit codes that are not restarted (0,42)" },
  { "--no-autorestart", "no_autorestart", "b", "do not restart on exit" },
  { "--cron-restart", "cron_restart", "s", "restart on a cron schedule" },
  { "--wait-ready", "wait_ready", "b", "wait for the app's ready signal" },
  { "--listen-timeout", "listen_timeout", "n", "ms to wait for ready" },
  { "--time", "time", "b", "prefix log lines with the time" },
  { "--merge-logs", "merge_logs", "b", "one log file for all instances" },
  { "-o --output", "out_file", "s", "stdout log file" },
  { "-e --error", "error_file", "s", "stderr log file" },
  { "-l --log", "log_file", "s", "combined log file" },
}

function V.start(args)
  local p = cli.parser("start")
  p:argument("what", "script, ecosystem file, name or id")
  p:argument("args", "arguments for the script (after --)"):args("*")
  for _, o in ipairs(start_options) do
    local key = o[1]:match("%-%-([%w-]+)"):gsub("-", "_")
    if o[3] == "b" then p:flag(o[1], o[4]) else p:option(o[1], o[4]) end
    o.argkey = key
  end
  p:option("--env", "environment of the file (env_<name>)")
  p:option("--only", "start only these apps of the file (a,b)")
  p:flag("-f --force", "start a script that already runs")
  p:flag("-s --silent", "print nothing on success")
  local a = p:parse(args)
  local what = a.what
  local cwd = core.getcwd()
  local client = api()
  local st = core.stat(what)
  if st and st.type == "file" and util.is_ecosystem(what) then
    return apply_file("start " .. what, "start", util.absolute(what, cwd), a)
  end
  local app = { script = what, args = #a.args > 0 and a.args or nil }
  local given = false
  for _, o in ipairs(start_options) do
    local v = a[o.argkey]
    if v ~= nil and v ~= false then
      given = true
      if o[2] == "no_autorestart" then app.autorestart = false
      elseif o[2] == "ignore_watch" then app.ignore_watch = names_of(v)
      elseif o[2] == "stop_exit_codes" then
        app.stop_exit_codes = {}
        for c in v:gmatch("[^,%s]+") do
          app.stop_exit_codes[#app.stop_exit_codes + 1] = tonumber(c)
            or error({ msg = "--stop-exit-codes: numbers expected, got " .. c, code = 2 }, 0)
        end
      elseif o[3] == "n" then
        app[o[2]] = tonumber(v) or error({ msg = o[1] .. ": a number expected" }, 0)
      else app[o[2]] = v end
    end
  end
  if not st and not given and #a.args == 0 then
    check(client.start(what, { brief = true, env = a.env })) -- a known name or id is (re)started
  else
    check(client.start(app, { force = a.force or nil, env = a.env, brief = true }))
  end
  show_list(a.silent)
  return 0
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
