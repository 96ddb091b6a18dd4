-- The CLI's verbs that look: list, jlist, prettylist, describe, env, id, pid, ping.
local core = require "pm.core"
local util = require "pm.util"
local cli = require "pm.cli"

local api, check, warn_unsaved, show_list = cli.api, cli.check, cli.warn_unsaved, cli.show_list
local target_of, described, no_args = cli.target_of, cli.described, cli.no_args

local V = {}

-- PM2's `ls --sort FIELD[:asc|desc]` fields -> the value a description sorts by
local SORT = {
  name = function(d) return d.name end, id = function(d) return d.pm_id end,
  pid = function(d) return d.pid or 0 end,
  status = function(d) return d.pm2_env and d.pm2_env.status or "" end,
  cpu = function(d) return d.monit and d.monit.cpu or 0 end,
  mem = function(d) return d.monit and d.monit.memory or 0 end,
  uptime = function(d) return d.pm2_env and d.pm2_env.pm_uptime or 0 end,
  restarts = function(d) return d.pm2_env and d.pm2_env.restart_time or 0 end,
}
SORT.memory, SORT.restart = SORT.mem, SORT.restarts

-- PM2's `ls -m`: a block of a few lines an app, no table
local function mini(list)
  local view = require "pm.view"
  local out = {}
  for _, d in ipairs(list) do
    local e = d.pm2_env or {}
    out[#out + 1] = ("+--- %s\nnamespace : %s\npm id : %d\npid : %d\nstatus : %s\nmode : %s\nrestarted : %d\n"
      .. "memory : %s\nwatching : %s\n"):format(view.printable(d.name), view.printable(e.namespace or "default"),
      d.pm_id, d.pid or 0, tostring(e.status), tostring(e.exec_mode or "fork_mode"):gsub("_mode$", ""),
      e.restart_time or 0, view.bytes(d.monit and d.monit.memory), (e.watch and e.watch ~= false) and "enabled"
      or "disabled")
  end
  return table.concat(out)
end

local function list_verb(args)
  if #args > 0 then
    local p = cli.parser("list")
    p:flag("--watch", "refresh every second (Ctrl-C leaves)")
    p:option("--sort", "sort by name, id, pid, status, cpu, mem, uptime or restarts (:asc or :desc)")
      :argname("<field[:order]>")
    p:flag("-m --mini-list", "a few lines an app instead of the table")
    p:flag("--no-color", "no colour (as NO_COLOR=1)")
    local a = p:parse(args)
    if a.sort or a.mini_list or a.no_color then
      local field, order = tostring(a.sort or "id"):match("^(%w+):?(%a*)$")
      local key = field and SORT[field]
      if not key or (order ~= "" and order ~= "asc" and order ~= "desc") then
        error({ msg = ("--sort: a field of name, id, pid, status, cpu, mem, uptime, restarts, "
          .. "then :asc or :desc, not %s"):format(tostring(a.sort)), code = 2 }, 0)
      end
      local view = require "pm.view"
      local list = check(api()._conn():call("list", { fields = view.TABLE_FIELDS }))
      table.sort(list, function(x, y)
        local u, v = key(x), key(y)
        if u == v then return x.pm_id < y.pm_id end
        if order == "desc" then return u > v end
        return u < v
      end)
      if a.mini_list then io.stdout:write(mini(list)); return 0 end
      local out = view.stdout()
      if a.no_color then out.color = false end
      io.stdout:write(view.table(list, out))
      return 0
    end
    if a.watch then
      local view = require "pm.view"
      collectgarbage("restart") -- it runs until Ctrl-C: collect as usual
      cli.quick_exit = false
      local client = api()
      local stop = false
      local sig = core.signal(core.signals.SIGINT, function() stop = true end)
      while not stop do
        local list = check(client.list())
        local out = view.stdout()
        io.stdout:write(out.color and "\27[H\27[2J" or "", os.date("%H:%M:%S"), "\n", view.table(list, out))
        io.stdout:flush()
        local t = core.timer(1000, 0, function() end)
        while t:active() and not stop do core.run("once") end
        t:close()
      end
      sig:close()
      return 0
    end
  end
  show_list(false)
  return 0
end
V.list = list_verb

function V.jlist(args)
  no_args("jlist", args)
  local conn = check(api()._conn())
  io.stdout:flush()
  local ok, err = conn:call_relayed("list", nil, 1)
  if not ok and err == "output closed" then return 0 end -- (pm jlist | head: as cat does)
  check(ok, err)
  io.stdout:write("\n")
  return 0
end

-- The daemon's environment, as it was started (what `pm describe` compares
-- an app's with); the CLI's own when it cannot be read (PM2 compares with
-- the CLI's).
local function daemon_environ()
  local home = util.home()
  local s = util.read_file(home .. "/pm.pid")
  local raw = s and s:match("%d+") and core.proc_environ(tonumber(s:match("%d+")))
  if raw then
    local env = {}
    for k, v in raw:gmatch("([^%z=]+)=([^%z]*)") do env[k] = v end
    if env.PM_HOME == home then return env end -- (not a pid used again since)
  end
  return core.environ()
end

function V.describe(args)
  local p = cli.parser("describe")
  p:argument("target", "name, id, 'all' or namespace")
  p:flag("--json", "print JSON")
  p:flag("--env", "the whole environment (else what differs from the daemon's)")
  local a = p:parse(args)
  if a.json then
    -- the daemon's text as it is: decoded and encoded again, an empty
    -- list would come out as {} (cjson)
    local pieces = {}
    local conn = check(api()._conn())
    check(conn:call_streamed("describe", { target = target_of(a.target) },
      function(piece) pieces[#pieces + 1] = piece end))
    local text = table.concat(pieces)
    if text == "[]" then error({ msg = "process or namespace not found: " .. a.target }, 0) end
    io.stdout:write(text, "\n")
    return 0
  end
  local list = described(target_of(a.target), a.target)
  local view = require "pm.view"
  local base = not a.env and daemon_environ() or nil
  -- min/avg/max of the last hour, from the daemon's history (asking for
  -- it keeps sampling on for a few minutes: lua/pm/history.lua)
  local hist = {}
  local hres = api()._conn():call("history", { target = target_of(a.target), span = 3600 })
  for _, h in ipairs(type(hres) == "table" and hres or {}) do hist[h.pm_id] = h end
  local history = require "pm.history"
  for i, d in ipairs(list) do
    if i > 1 then io.stdout:write("\n") end
    io.stdout:write(view.card(d, nil, base))
    local s = hist[d.pm_id] and history.summary(hist[d.pm_id])
    if s then
      io.stdout:write(("history (last hour, %d min): cpu min %s%% avg %s%% max %s%%, memory min %s avg %s max %s\n")
        :format(s.cpu.samples, s.cpu.min, ("%.1f"):format(s.cpu.avg), s.cpu.max, view.bytes(s.memory.min),
          view.bytes(s.memory.avg), view.bytes(s.memory.max)))
    end
  end
  return 0
end

-- JSON text indented by two spaces, as it is otherwise (key order, [] and
-- {}, numbers): compact JSON's structure re-laid, strings left alone.
local function indent_json(text)
  local out, depth, i, n = {}, 0, 1, #text
  local function nl() out[#out + 1] = "\n" .. ("  "):rep(depth) end
  while i <= n do
    local c = text:sub(i, i)
    if c == '"' then
      local j = i + 1
      while true do
        local q = text:find('["\\]', j)
        if not q then j = n; break end
        if text:sub(q, q) == "\\" then j = q + 2 else j = q; break end
      end
      out[#out + 1] = text:sub(i, j)
      i = j + 1
    else
      local close = c == "{" and "}" or c == "[" and "]"
      if close and text:sub(i + 1, i + 1) == close then
        out[#out + 1], i = c .. close, i + 2
      else
        if c == "}" or c == "]" then depth = depth - 1; nl() end
        out[#out + 1] = c == ":" and ": " or c
        if close then depth = depth + 1; nl() elseif c == "," then nl() end
        i = i + 1
      end
    end
  end
  return table.concat(out)
end
V.indent_json = indent_json

-- PM2's prettylist: the list in Node's util.inspect notation, in PM2's
-- shape (pm's own members under `pm`, its event history left out:
-- pm.inspect)
function V.prettylist(args)
  no_args("prettylist", args)
  local conn = check(api()._conn())
  local inspect = require "pm.inspect"
  -- (util.inspect shows an array's first 100 entries: those are described,
  -- the others counted)
  local all = check(conn:call("list", { fields = { "pm_id" } }))
  local pieces = {}
  check(conn:call_streamed("list", { limit = inspect.MAX_ARRAY }, function(piece) pieces[#pieces + 1] = piece end))
  local text = check(inspect.prettylist(table.concat(pieces), #all))
  io.stdout:write(text, "\n")
  return 0
end

-- PM2's `env <id>`: the environment variables a process got, one
-- `NAME: value` a line, sorted
function V.env(args)
  local p = cli.parser("env")
  p:argument("id", "pm_id (or a name: each of its processes)")
  local a = p:parse(args)
  for i, d in ipairs(described(a.id)) do
    local env = type(d.pm2_env) == "table" and type(d.pm2_env.env) == "table" and d.pm2_env.env or {}
    local names = {}
    for k in pairs(env) do names[#names + 1] = k end
    table.sort(names)
    if i > 1 then io.stdout:write("\n") end
    local view = require "pm.view" -- (an env_file is its app's user's: no escape sequence reaches the terminal)
    for _, k in ipairs(names) do io.stdout:write(view.printable(k), ": ", view.printable(env[k]), "\n") end
  end
  return 0
end

-- PM2's `id <name>`: the pm_ids of the app's processes, [] when none
function V.id(args)
  local p = cli.parser("id")
  p:argument("name", "app name")
  local a = p:parse(args)
  local conn = check(api()._conn())
  local ids = {}
  for _, d in ipairs(check(conn:call("list", { fields = { "name", "pm_id" } }))) do
    if d.name == a.name then ids[#ids + 1] = d.pm_id end
  end
  io.stdout:write(util.encode(util.array(ids)), "\n")
  return 0
end

function V.pid(args)
  local p = cli.parser("pid")
  p:argument("name"):args("?")
  local a = p:parse(args)
  local list = a.name and described(a.name) or check(check(api()._conn()):call("list", { fields = { "pid" } }))
  for _, d in ipairs(list) do io.stdout:write(tostring(d.pid), "\n") end
  return 0
end

function V.ping(args)
  no_args("ping", args)
  local res = check(api().ping())
  io.stdout:write(util.encode(res), "\n")
  warn_unsaved(res)
  return 0
end

return V
