-- What `pm logs` shows before it follows the bus: the last N lines of each
-- of the apps' log files (PM2: N per file, not in total), newest last.
-- When every line read carries a time stamp (`--time`, log_date_format,
-- JSON lines) the files' lines are merged in the order they were written;
-- else file after file, the least recently written first (PM2's order), so
-- that the newest line is the last one shown. A file several instances
-- write (merge_logs) is read once, and each line goes to the instance the
-- line names (its JSON process_id, or the " [id]" after a time stamp),
-- lines of instances not asked for left out. It reads the files the
-- descriptions name; how a line is printed is view.lua's.
local core = require "pm.core"
local util = require "pm.util"

local M = {}

-- How the log files of the app of description d are opened (core.open's
-- owner): an app of another user writes into folders it may own, so its
-- files are read only when they are regular files of that user, never
-- through a link (root's `pm logs` and `pm report` would print whatever a
-- link named); nil for an app of the caller's user.
function M.owner(d)
  local e = d and d.pm2_env or {}
  local uid = tonumber(e.uid)
  if uid and uid ~= core.getuid() then return { uid = uid, gid = tonumber(e.gid) } end
end

-- A file to read: opened by core.open as owner says, then read through
-- /proc/self/fd (the file that was checked, whatever the path names now);
-- a path that is not a regular file is not opened (a FIFO would block).
local function open(path, owner)
  if not owner then
    local st = core.stat(path)
    return st and st.type == "file" and io.open(path, "rb")
  end
  local fd = core.open(path, "r", nil, owner)
  if not fd then return nil end
  local f = io.open("/proc/self/fd/" .. fd, "rb")
  core.close(fd)
  return f
end

M.MAX_TAIL = 4 * 1024 * 1024 -- bytes read from the end of one file, at most

-- The last n lines of a file (a line cut by the start of what is read is
-- dropped); owner: M.owner's.
function M.last_lines(path, n, owner)
  if n <= 0 then return {} end
  local f = open(path, owner)
  if not f then return {} end
  -- chunks from the end, newlines counted per chunk, at most MAX_TAIL
  -- bytes in all (a file of 256 MB with no newline is read as its end)
  local pos = f:seek("end")
  local chunks, count, read = {}, 0, 0
  while pos > 0 and count <= n and read < M.MAX_TAIL do
    local len = math.min(65536, pos, M.MAX_TAIL - read)
    pos = pos - len
    f:seek("set", pos)
    local s = f:read(len) or ""
    read = read + #s
    chunks[#chunks + 1] = s
    local _, k = s:gsub("\n", "")
    count = count + k
  end
  f:close()
  local rev = {}
  for i = #chunks, 1, -1 do rev[#rev + 1] = chunks[i] end
  local buf = table.concat(rev)
  local lines, after = {}, 1
  for line, e in buf:gmatch("([^\n]*)\n()") do
    lines[#lines + 1] = line
    after = e
  end
  -- (the last line without its newline; a pattern anchored at the end
  -- would be tried from every position: quadratic on a long line)
  if after <= #buf then lines[#lines + 1] = buf:sub(after) end
  if pos > 0 and #lines > n then table.remove(lines, 1) end
  local out = {}
  for i = math.max(1, #lines - n + 1), #lines do out[#out + 1] = lines[i] end
  return out
end

-- The local offset from UTC of time t (seconds), in seconds
local function utc_offset(t)
  local l, u = os.date("*t", t), os.date("!*t", t)
  l.isdst = false
  return os.time(l) - os.time(u)
end

-- "YYYY-MM-DD?HH:MM:SS[.mmm]" (local time, or with zone "Z" / "+HH:MM")
-- -> ms since the epoch, or nil
function M.epoch_ms(date, time, zone)
  local y, mo, d = date:match("^(%d+)%-(%d+)%-(%d+)$")
  local h, mi, s, frac = time:match("^(%d+):(%d+):(%d+)%.?(%d*)$")
  if not y or not h then return nil end
  local t = os.time({ year = tonumber(y), month = tonumber(mo), day = tonumber(d), hour = tonumber(h),
    min = tonumber(mi), sec = tonumber(s), isdst = nil })
  if not t then return nil end
  local sign, zh, zm = (zone or ""):match("^([+-])(%d%d):?(%d%d)$")
  if sign or zone == "Z" then
    local off = sign and (tonumber(zh) * 3600 + tonumber(zm) * 60) * (sign == "-" and -1 or 1) or 0
    t = t + utc_offset(t) - off -- os.time read it as local time
  end
  local ms = frac ~= "" and math.floor(tonumber("0." .. frac) * 1000 + 0.5) or 0
  return t * 1000 + ms
end

-- What a line of a log file says of itself -> { at = ms | nil, id = pm_id |
-- nil, message = the line without its stamp, json = the decoded object | nil }
function M.parse(line)
  if line:sub(1, 1) == "{" then
    local o = util.decode(line)
    if type(o) == "table" and o.message ~= nil and o.type ~= nil and o.app_name ~= nil then -- (log_type json)
      local at
      if type(o.timestamp) == "string" then
        local d, t, z = o.timestamp:match("^(%d%d%d%d%-%d%d%-%d%d)[T ](%d%d:%d%d:%d%d[%.%d]*)(.*)$")
        if d then at = M.epoch_ms(d, t, z) end
      end
      return { at = at, id = tonumber(o.process_id), message = tostring(o.message), json = o }
    end
  end
  local d, t, rest = line:match("^(%d%d%d%d%-%d%d%-%d%d)[T ](%d%d:%d%d:%d%d[%.%d]*)(.*)$")
  if d then
    local z = rest:match("^Z") or rest:match("^[+%-]%d%d:?%d%d") or ""
    rest = rest:sub(#z + 1)
    local at = M.epoch_ms(d, t, z)
    local id, msg = rest:match("^ %[(%d+)%]: (.*)$")
    if not id then msg = rest:match("^: (.*)$") end
    if at and msg then return { at = at, id = tonumber(id), message = msg } end
  end
  return { message = line }
end

-- The last n lines of each of the log files of a list of descriptions
-- (n per file, PM2's --lines), a file shared by several (merge_logs) read
-- once. skip.out, skip.err: leave out those files. -> a list of
-- { d = description, which = "out"|"err", line, at, message, json }, and
-- whether they are merged by time (else: by file, with f = the file's path
-- on each entry)
function M.last(list, n, skip)
  skip = skip or {}
  local seen, files, by_id = {}, {}, {}
  for _, d in ipairs(list) do by_id[d.pm_id] = d end
  for _, d in ipairs(list) do
    local e = d.pm2_env
    for _, which in ipairs({ "out", "err" }) do
      local path = which == "out" and e.pm_out_log_path or e.pm_err_log_path
      if not skip[which] and path and path ~= "/dev/null" and not seen[path] then
        seen[path] = true
        local st = core.stat(path)
        files[#files + 1] = { path = path, d = d, which = which, mtime = st and st.mtime or 0,
          ns = st and st.mtime_ns or 0 }
      end
    end
  end
  table.sort(files, function(x, y)
    if x.mtime ~= y.mtime then return x.mtime < y.mtime end
    if x.ns ~= y.ns then return x.ns < y.ns end
    return x.path < y.path
  end)
  local entries, all_stamped = {}, true
  for _, f in ipairs(files) do
    for _, line in ipairs(M.last_lines(f.path, n, M.owner(f.d))) do
      local en = M.parse(line)
      local d = f.d
      if en.id and en.id ~= d.pm_id then d = by_id[en.id] end
      if d then
        if not en.at then all_stamped = false end
        en.d, en.which, en.line, en.f, en.order = d, f.which, line, f.path, #entries
        entries[#entries + 1] = en
      end
    end
  end
  if all_stamped and #entries > 0 then
    table.sort(entries, function(x, y)
      if x.at ~= y.at then return x.at < y.at end
      return x.order < y.order
    end)
  end
  return entries, all_stamped and #entries > 0, files
end

return M
