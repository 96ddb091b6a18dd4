-- The CLI's verbs that change processes: start, stop, restart, reload, delete,
-- reset, scale.
local core = require "pm.core"
local util = require "pm.util"
local cli = require "pm.cli"

local api, with_progress, check = cli.api, cli.with_progress, cli.check
local show_list, names_of, target_of = cli.show_list, cli.names_of, cli.target_of

local V = {}

local function simple_target(name, method, extra)
  V[name] = function(args)
    local p = cli.parser(name)
    p:argument("target", "name, id, 'all', a namespace or an ecosystem file")
    p:flag("-s --silent", "print nothing on success")
    if extra then extra(p) end
    local a = p:parse(args)
    local opts = { brief = true } -- the reply's environments are not shown
    if a.update_env then opts.updateEnv = true end
    opts.only = names_of(a.only)
    with_progress(name .. " " .. a.target, function() check(api()[method](target_of(a.target), opts)) end)
    show_list(a.silent)
    return 0
  end
end

simple_target("stop", "stop", function(p) p:option("--only", "apps of the file") end)
simple_target("restart", "restart", function(p)
  p:flag("--update-env", "take the current environment")
  p:option("--only", "apps of the file")
end)
simple_target("reload", "reload", function(p)
  p:flag("--update-env", "take the current environment")
  p:option("--only", "apps of the file")
end)
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
  local only = names_of(a.only)
  local client = api()
  local st = core.stat(what)
  if st and st.type == "file" and util.is_ecosystem(what) then
    local res = with_progress("start " .. what, function()
      return check(client.start(util.absolute(what, cwd), { env = a.env, only = only, reply = "changes" }))
    end)
    for _, d in ipairs(res) do
      local line = not a.silent and require("pm.view").changes(d)
      if line then io.stdout:write(line) end
    end
    return show_list(a.silent) or 0
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
    check(client.start(what, { brief = true })) -- a known name or id is (re)started
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
