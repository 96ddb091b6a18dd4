-- The daemon's own log (pm.log: the daemon's stderr).
local M = {}

local function emit(level, fmt, ...)
  local ok, msg = pcall(string.format, fmt, ...)
  if not ok then msg = tostring(fmt) end
  io.stderr:write(os.date("%Y-%m-%dT%H:%M:%S "), level, ": ", msg, "\n")
  io.stderr:flush()
end

function M.info(fmt, ...) emit("info", fmt, ...) end
function M.warn(fmt, ...) emit("warn", fmt, ...) end
function M.error(fmt, ...) emit("error", fmt, ...) end

return M
