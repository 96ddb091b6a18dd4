-- What `pm logs` shows before it follows the bus: the last lines of the
-- apps' log files, merged in the order they were written when every line
-- carries a time stamp (`--time`, JSON lines), else file after file, the
-- least recently written first. It reads the files the descriptions name;
-- how a line is printed is view.lua's.
local core = require "pm.core"

local M = {}

-- The last n lines of a file (a line cut by the start of the file is dropped).
function M.last_lines(path, n)
  local f = io.open(path, "rb")
  if not f then return {} end
  local pos = f:seek("end")
  local buf = ""
  while pos > 0 do
    local len = math.min(65536, pos)
    pos = pos - len
    f:seek("set", pos)
    buf = f:read(len) .. buf
    local _, count = buf:gsub("\n", "")
    if count > n then break end
  end
  f:close()
  local lines = {}
  for line in buf:gmatch("([^\n]*)\n") do lines[#lines + 1] = line end
  local rest = buf:match("[^\n]+$")
  if rest then lines[#lines + 1] = rest end
  if pos > 0 and #lines > n then table.remove(lines, 1) end
  local out = {}
  for i = math.max(1, #lines - n + 1), #lines do out[#out + 1] = lines[i] end
  return out
end

-- A line's time stamp, comparable as text: a leading date, or JSON's "timestamp".
local function stamp_of(line)
  local d, t = line:match("^(%d%d%d%d%-%d%d%-%d%d)[T ](%d%d:%d%d:%d%d[%.%d]*)")
  if not d then d, t = line:match('"timestamp":"(%d%d%d%d%-%d%d%-%d%d)[T ](%d%d:%d%d:%d%d[%.%d]*)') end
  return d and (d .. "T" .. t) or nil
end

-- The last n lines in all of the log files of a list of descriptions, a
-- file shared by several (merge_logs) read once. skip.out, skip.err: leave
-- out those files. -> a list of { d = description, which = "out"|"err", line }
function M.last(list, n, skip)
  skip = skip or {}
  local entries, seen, all_stamped = {}, {}, true
  local files = {}
  for _, d in ipairs(list) do
    local e = d.pm2_env
    for _, which in ipairs({ "out", "err" }) do
      local path = which == "out" and e.pm_out_log_path or e.pm_err_log_path
      if not skip[which] and path and path ~= "/dev/null" and not seen[path] then
        seen[path] = true
        local st = core.stat(path)
        files[#files + 1] = { path = path, d = d, which = which, mtime = st and st.mtime or 0 }
      end
    end
  end
  table.sort(files, function(x, y) return x.mtime < y.mtime end)
  for _, f in ipairs(files) do
    for _, line in ipairs(M.last_lines(f.path, n)) do
      local ts = stamp_of(line)
      if not ts then all_stamped = false end
      entries[#entries + 1] = { d = f.d, which = f.which, line = line, ts = ts, order = #entries }
    end
  end
  if all_stamped then
    table.sort(entries, function(x, y)
      if x.ts ~= y.ts then return x.ts < y.ts end
      return x.order < y.order
    end)
  end
  local out = {}
  for i = math.max(1, #entries - n + 1), #entries do out[#out + 1] = entries[i] end
  return out
end

return M
