-- Entry of the pm binary: argv -> the CLI (the daemon is the verb "daemon").
local M = {}

function M.main(argv)
  local cli = require "pm.cli"
  local ok, code = xpcall(cli.main, debug.traceback, argv)
  if not ok then
    io.stderr:write("pm: internal error: ", tostring(code), "\n")
    return 70
  end
  io.stdout:flush()
  io.stderr:flush()
  return code, cli.quick_exit == true
end

return M
