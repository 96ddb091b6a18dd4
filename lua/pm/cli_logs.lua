-- The CLI's verbs of logs: logs, flush, reloadLogs.
local cli = require "pm.cli"

local api, check, target_of, described, no_args = cli.api, cli.check, cli.target_of, cli.described, cli.no_args

local V = {}

function V.logs(args)
  local p = cli.parser("logs")
  p:argument("target", "name, id, namespace or all"):args("?")
  p:option("--lines", "how many lines in total", "15"):convert(tonumber)
  p:flag("--err", "only the error logs")
  p:flag("--out", "only the output logs")
  p:flag("--nostream", "print and exit")
  p:flag("--json", "one JSON object per line")
  p:flag("--raw", "lines as they are, no prefix")
  local a = p:parse(args)
  local client = api()
  local all = not a.target or a.target == "all"
  local list = all and check(client.list()) or described(target_of(a.target), a.target)
  local view = require "pm.view"
  local function show(d, which, line)
    io.stdout:write(view.log_line(d, which, line, a.raw and "raw" or a.json and "json" or nil))
  end
  for _, en in ipairs(require("pm.logtail").last(list, a.lines or 15, { out = a.err, err = a.out })) do
    show(en.d, en.which, en.line)
  end
  io.stdout:flush()
  if a.nostream then return 0 end
  local ids = {}
  for _, d in ipairs(list) do ids[d.pm_id] = d end
  local bus = check(client.launchBus())
  local function follow(which)
    return function(packet)
      local pr = packet.process or {}
      if not all and not ids[pr.pm_id] then return end
      for line in tostring(packet.data):gmatch("([^\n]*)\n?") do
        if line ~= "" then show({ pm_id = pr.pm_id, name = pr.name }, which, line) end
      end
      io.stdout:flush()
    end
  end
  if not a.err then check(bus:on("log:out", follow("out"))) end
  if not a.out then check(bus:on("log:err", follow("err"))) end
  client.wait()
  return 0
end

function V.flush(args)
  local p = cli.parser("flush")
  p:argument("target"):args("?")
  local a = p:parse(args)
  check(api().flush(a.target))
  io.stdout:write("logs flushed\n")
  return 0
end

function V.reloadLogs(args)
  no_args("reloadLogs", args)
  check(api().reloadLogs())
  io.stdout:write("logs reopened\n")
  return 0
end

return V
