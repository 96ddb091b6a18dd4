-- The CLI's verbs that look: list, jlist, describe, pid, ping.
local core = require "pm.core"
local util = require "pm.util"
local cli = require "pm.cli"

local api, check, warn_unsaved, show_list = cli.api, cli.check, cli.warn_unsaved, cli.show_list
local target_of, described, no_args = cli.target_of, cli.described, cli.no_args

local V = {}

local function list_verb(args)
  if #args > 0 then
    local p = cli.parser("list")
    p:flag("--watch", "refresh every second (Ctrl-C leaves)")
    local a = p:parse(args)
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
        client.wait(1000)
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
  check(conn:call_streamed("list", nil, function(piece) io.stdout:write(piece) end))
  io.stdout:write("\n")
  return 0
end

function V.describe(args)
  local p = cli.parser("describe")
  p:argument("target", "name, id, 'all' or namespace")
  p:flag("--json", "print JSON")
  local a = p:parse(args)
  local list = described(target_of(a.target), a.target)
  if a.json then
    io.stdout:write(util.encode(list), "\n")
  else
    local view = require "pm.view"
    for i, d in ipairs(list) do
      if i > 1 then io.stdout:write("\n") end
      io.stdout:write(view.card(d))
    end
  end
  return 0
end

function V.pid(args)
  local p = cli.parser("pid")
  p:argument("name"):args("?")
  local a = p:parse(args)
  local list = a.name and described(a.name) or check(api().list())
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
