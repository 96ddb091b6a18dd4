-- The daemon's own log (pm.log: the daemon's stderr), and when it is
-- rotated: past MAX_SIZE it becomes pm.log.1 (.1 -> .2 ...; RETAIN files
-- kept, as an app's log is rotated) and a new pm.log takes fds 1 and 2,
-- so that what the core writes to stderr goes to the new file too.
local core = require "pm.core"

local M = {}

M.MAX_SIZE = 10 * 1024 * 1024 -- bytes
M.RETAIN = 3

local path, size -- pm.log and what it holds (set by M.rotate_at)

-- Rotates pm.log when the daemon's stderr is it (daemon.lua, once
-- core.daemon_init has put it there); the size is what is there now.
-- PM_LOG_MAX_SIZE (bytes) in the daemon's environment changes MAX_SIZE.
function M.rotate_at(log_path)
  local max = tonumber(os.getenv("PM_LOG_MAX_SIZE"))
  if max and max >= 4096 then M.MAX_SIZE = max end
  path = log_path
  local st = core.stat(log_path)
  size = st and st.size or 0
end

local function rotate()
  io.stderr:flush()
  for i = M.RETAIN - 1, 1, -1 do os.rename(("%s.%d"):format(path, i), ("%s.%d"):format(path, i + 1)) end
  os.rename(path, path .. ".1")
  size = 0
  local fd = core.open(path, "a", 384) -- 0600
  if not fd then return end -- (stderr stays the renamed file until the next rotation)
  core.dup(fd, 1)
  core.dup(fd, 2)
  core.close(fd)
end

-- What a message may carry into pm.log: an app's words (a port it asked
-- for, a name) pass through here too. Control characters are escaped (no
-- escape sequence reaches a terminal that shows the log) and a line break
-- indents what follows, so that every line starting at its first column
-- is one the daemon wrote.
-- (the string library's own functions, held from the start: while a hook
-- runs, a string's methods are the sandbox's bounded ones, and what a hook
-- logs must not count against it)
local gsub, format, byte = string.gsub, string.format, string.byte
local function escape(c) return format("\\x%02x", byte(c)) end
local function clean(msg)
  return (gsub(gsub(msg, "[%z\1-\8\11-\31\127]", escape), "\n", "\n    "))
end

local function emit(level, fmt, ...)
  local ok, msg = pcall(string.format, fmt, ...)
  if not ok then msg = tostring(fmt) end
  msg = clean(msg)
  local line = os.date("%Y-%m-%dT%H:%M:%S ") .. level .. ": " .. msg .. "\n"
  if path then
    if size + #line > M.MAX_SIZE and size > 0 then rotate() end
    size = size + #line
  end
  io.stderr:write(line)
  io.stderr:flush()
end

function M.info(fmt, ...) emit("info", fmt, ...) end
function M.warn(fmt, ...) emit("warn", fmt, ...) end
function M.error(fmt, ...) emit("error", fmt, ...) end

return M
