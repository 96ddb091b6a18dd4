-- The daemon's file descriptors: its limit (raised at start as systemd's
-- LimitNOFILE= would), how many a running app costs, what `pm ping` says
-- of them, and the one reason given when they run out.
--
-- A running app costs the daemon 2 fds (its stdout and stderr pipes), one
-- more with an IPC channel (channel.wanted), one per held socket it alone
-- holds; its log files are opened by the writer when it writes, at most
-- LOG_FILES at once (core.log_files_max), and a crash loop keeps its pipes'
-- write ends, its pid file and its cgroup.procs for the next process (4
-- more, for as long as it loops).
local core = require "pm.core"
local util = require "pm.util"

local M = {}

M.PER_APP = 2
M.LOG_FILES = 256 -- log files open at once, at most
M.SPARE = 32      -- for connections, health checks, ecosystem files (at
                  -- most an eighth of the limit: a low one runs apps too)
-- The hard limit a root daemon raises its own to (systemd's default hard
-- limit), when the kernel allows that many (fs.nr_open).
M.ROOT_HARD = 524288

-- At the daemon's start (after core.daemon_init raised the soft limit to
-- the hard one): a root daemon raises the hard limit too.
function M.init()
  M.raise()
  -- the log files open at once: a sixteenth of the limit, 4 to LOG_FILES
  local soft = core.nofile() or 1024
  core.log_files_max(math.max(4, math.min(M.LOG_FILES, math.floor(soft / 16))))
end

function M.raise()
  local soft, hard = core.nofile()
  if not soft or core.getuid() ~= 0 or hard >= M.ROOT_HARD then return end
  local nr_open = tonumber(util.read_file("/proc/sys/fs/nr_open") or "") or 1048576
  local want = math.min(M.ROOT_HARD, nr_open)
  if want > hard then
    local ok, err = core.nofile(want, want)
    if not ok then
      require("pm.log").info("the fd limit stays %d (raising it to %d: %s)", hard, want, tostring(err))
    end
  end
end

-- The fds the daemon has open now, or nil when they cannot be counted (the
-- count itself needs one: none is left)
local function in_use()
  local n = core.listdir("/proc/self/fd", true)
  return n and n - 1 -- (the fd that reads the folder is one of them)
end
M.in_use = in_use

-- The size of the daemon's fd table (FDSize of /proc/self/status: above
-- every fd open; it never shrinks), or nil
local function table_size()
  return tonumber((util.read_file("/proc/self/status") or ""):match("\nFDSize:%s*(%d+)") or "")
end

-- The fds free now beyond what is kept for connections and log files
-- (SPARE, and the log files not open yet), used (the count), limit.
-- want: when that many are surely free (the fd table's size, FDSize, is
-- above every fd open), math.huge without counting them.
function M.room(want)
  local limit = core.nofile()
  local spare = math.min(M.SPARE, math.floor((limit or 0) / 8))
  if want and limit then
    local size = table_size()
    local lmax, lopen = core.log_files_max()
    if size and limit - size - (lmax - lopen) - spare >= want then return math.huge end
  end
  local used = in_use() or limit or 0 -- (uncountable: every fd is taken)
  local lmax, lopen = core.log_files_max()
  return (limit or 0) - used - (lmax - lopen) - spare, used, limit, lmax, lopen
end

-- Whether the daemon's fd table is big (FDSize of /proc/self/status, the
-- table's size: it never shrinks): a child then takes only its own fds
-- (spawn's narrow) instead of a copy of them all, whatever its fds'
-- numbers. Read at most once a second until it is big.
M.BIG_TABLE = 512
local big, big_read = false, nil
function M.big_table()
  if big then return true end
  local now = core.mono()
  if big_read and now - big_read < 1000 then return false end
  big_read = now
  local size = table_size()
  big = size ~= nil and size >= M.BIG_TABLE
  return big
end

-- -> { in_use, limit, per_app, apps_fit, log_files = { open, max } } for ping
function M.status()
  local free, used, limit, lmax, lopen = M.room()
  return { in_use = used, limit = limit, per_app = M.PER_APP,
    apps_fit = math.max(0, math.floor(free / M.PER_APP)), log_files = { open = lopen, max = lmax } }
end

-- The reason an app could not start for want of fds (EMFILE), with the
-- arithmetic; other errors as they are
function M.reason(err, needs)
  err = tostring(err)
  if not err:find("Too many open files", 1, true) then return err end
  local limit = core.nofile()
  return ("the daemon's fd limit (%s) is reached: each app needs %d; raise LimitNOFILE (or ulimit -n)")
    :format(tostring(limit and math.floor(limit)), needs or M.PER_APP)
end

-- Whether reason (an app's error) is M.reason's: the daemon out of fds
function M.is_short(reason)
  return type(reason) == "string" and reason:find("the daemon's fd limit (", 1, true) ~= nil
end

-- "1,012": a count as the reason lines say it
function M.count(n)
  local s = tostring(math.floor(n))
  repeat
    local k
    s, k = s:gsub("^(%d+)(%d%d%d)", "%1,%2")
  until k == 0
  return s
end

--[[ The failures of a batch as one line: the apps sharing a reason said
together -- "a: reason", "a, b: reason", or past three apps
"1,012 apps not started: reason (a, b, c, ...)" -- list of { name, err } ]]
function M.summary(failures)
  local order, by = {}, {}
  for _, f in ipairs(failures) do
    if not by[f.err] then
      by[f.err] = {}
      order[#order + 1] = f.err
    end
    local names = by[f.err]
    names[#names + 1] = f.name
  end
  local parts = {}
  for _, err in ipairs(order) do
    local names = by[err]
    if #names <= 3 then
      parts[#parts + 1] = table.concat(names, ", ") .. ": " .. err
    else
      parts[#parts + 1] = ("%s apps not started: %s (%s, ...)"):format(M.count(#names), err,
        table.concat(names, ", ", 1, 3))
    end
  end
  return table.concat(parts, "; ")
end

return M
