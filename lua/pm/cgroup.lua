-- Each app's processes in a cgroup of their own (cgroup v2), where the
-- daemon may make one (root, a cgroup2 hierarchy it may write): what
-- systemd does for its services. A process leaves its process group and
-- its session freely, never its cgroup: an app's whole tree is read from
-- one small file when its main process exits (the escapees kill_mode =
-- "tree" stops), instead of the daemon's list of children, which holds
-- every app and costs its length at each exit (10,000 apps: milliseconds
-- a crash). Where none can be made, exits.lua finds orphans by the
-- marker in their environment, as before.
--
-- <cgroup2 mount><the daemon's own cgroup>/pm-<hash of PM_HOME>/<pm_id>
-- (<pm_id>.<n> when that one still holds what an earlier app of that id
-- left running, kill_mode = "process", of this daemon or a killed one:
-- whatever is in an app's group is stopped with it, so an app never joins
-- a group it did not make); the folder's path is kept in PM_HOME/cgroup
-- (a test's clean-up; no daemon reads it). No controller is enabled:
-- membership only.
local core = require "pm.core"
local util = require "pm.util"
local log = require "pm.log"

local M = {}

M.base = nil -- the folder of this daemon's app cgroups, or nil: off

-- The mount point of the cgroup2 hierarchy (/sys/fs/cgroup, or
-- /sys/fs/cgroup/unified beside v1 controllers) -> path | nil
local function mount_point()
  local text = util.read_file("/proc/self/mountinfo") or ""
  for line in text:gmatch("[^\n]+") do
    local mnt, fstype = line:match("^%S+ %S+ %S+ %S+ (%S+) .- %- (%S+) ")
    if fstype == "cgroup2" then return (mnt:gsub("\\040", " ")) end
  end
end

-- FNV-1a of s, 8 hex digits
local function hash(s)
  local h = 2166136261
  for i = 1, #s do
    h = bit.bxor(h, s:byte(i))
    h = bit.tobit(h * 16777619)
  end
  return bit.tohex(h)
end

-- an app's group's name: <pm_id> or <pm_id>.<n>
local function group_name(name) return name:match("^%d+$") or name:match("^%d+%.%d+$") end

-- dir and the groups inside it, deepest first (each once empty) -> whether
-- dir went
local function rmdir_tree(dir, depth)
  if depth < 8 then
    for name, kind in pairs(core.listdir(dir) or {}) do
      if kind == "dir" then rmdir_tree(dir .. "/" .. name, depth + 1) end
    end
  end
  return os.remove(dir) and true or false
end

-- p -> the folder of its group, made by this daemon for it
local dirs = setmetatable({}, { __mode = "k" })

-- The empty app groups in dir go, but for the apps' own (a group is
-- empty between two processes of a crash loop: removed then, the loop's
-- held cgroup.procs joined a dead group, ENODEV, and a spawn about to
-- join one by its path would find none). all: theirs too (the daemon's
-- exit)
local function rmdir_empty(dir, all)
  local mine = {}
  if not all then
    for _, d in pairs(dirs) do mine[d] = true end
  end
  for name, kind in pairs(core.listdir(dir) or {}) do
    local path = dir .. "/" .. name
    if kind == "dir" and group_name(name) and not mine[path] then rmdir_tree(path, 0) end
  end
end

-- At the daemon's start: the folder, made (the empty app groups of an
-- earlier daemon of this home removed a second later). -> the folder | nil
function M.init(home)
  M.base = nil
  local mnt = mount_point()
  if not mnt then return nil end
  local own = (util.read_file("/proc/self/cgroup") or ""):match("0::([^\n]*)")
  if not own then return nil end
  local parent = mnt .. (own == "/" and "" or own)
  local base = parent .. "/pm-" .. hash(home)
  local st = core.stat(base)
  if not st then
    local ok = core.mkdir(base, 493)
    if not ok then return nil end -- (not root, or not delegated: off)
  elseif st.type ~= "dir" then
    return nil
  end
  -- a cgroup it may join: the procs file must be writable
  if not core.access(base .. "/cgroup.procs", "w") then return nil end
  -- (a second later: housekeeping, kept out of a take-over's way; a
  -- group an app needs first is emptied then, procs_file)
  M.sweep_timer = core.timer(1000, 0, function()
    M.sweep_timer = nil
    rmdir_empty(base)
  end)
  M.base = base
  util.write_atomic(home .. "/cgroup", base .. "\n", { durable = false })
  log.info("apps' cgroups in %s", base)
  return base
end

-- A crash loop's: p's cgroup.procs kept open (read and write) while it
-- loops: each next process joins through it and the exit's look at what
-- is left in the group reads it in place (6 system calls a restart less)
local held = setmetatable({}, { __mode = "k" })

function M.hold(p)
  if held[p] or not M.base or not dirs[p] then return end
  held[p] = core.open(dirs[p] .. "/cgroup.procs", "+")
end

function M.unhold(p)
  local fd = held[p]
  if fd then
    held[p] = nil
    core.close(fd)
  end
end

-- The cgroup.procs p's next process joins (its group made if need be),
-- and the fd it may join through (held), or nil (off)
function M.procs_file(p)
  if not M.base then return nil end
  local dir = dirs[p]
  if dir and held[p] then return dir .. "/cgroup.procs", held[p] end
  if dir and core.stat(dir) then return dir .. "/cgroup.procs" end
  dirs[p] = nil
  -- a folder of that id still there holds what an earlier app left (not
  -- empty: rmdir refused it), or is empty (then it goes and is made anew)
  for n = 0, 1000 do
    dir = M.base .. "/" .. p.pm_id .. (n > 0 and "." .. n or "")
    if core.stat(dir) then rmdir_tree(dir, 0) end
    if not core.stat(dir) then
      if not core.mkdir(dir, 493) then return nil end
      dirs[p] = dir
      return dir .. "/cgroup.procs"
    end
  end
  return nil
end

-- p's process pid is one a daemon before this one started (the keeper
-- handed it over): its group, when it is one of this home's, is p's
-- (name: the group the journal noted for that very process, taken as
-- it is; else read from /proc) -> true | nil
function M.adopt(p, pid, name)
  if not M.base then return nil end
  if type(name) == "string" and group_name(name) then
    local st = core.stat(M.base .. "/" .. name) -- (a base moved since: read from /proc)
    if st and st.type == "dir" then
      dirs[p] = M.base .. "/" .. name
      return true
    end
  end
  local path = (util.read_file("/proc/" .. pid .. "/cgroup") or ""):match("0::([^\n]*)")
  M.mnt = M.mnt or mount_point()
  local dir = path and M.mnt and M.mnt .. path
  if not dir or dir:sub(1, #M.base + 1) ~= M.base .. "/" or not group_name(dir:sub(#M.base + 2)) then
    return nil
  end
  dirs[p] = dir
  return true
end

-- The cgroup.procs of the group p's process is in, when it has one (not
-- made): a helper run for p (its health check) joins it, so that what it
-- leaves goes with the app -> path | nil
function M.joined(p)
  local dir = M.base and p.cgroup and dirs[p]
  return dir and dir .. "/cgroup.procs" or nil
end

-- The name of p's group in the folder (journal) | nil
function M.group(p)
  local dir = M.base and dirs[p]
  return dir and dir:sub(#M.base + 2) or nil
end

-- Whether a failure to join a group is the daemon's shortage of the
-- moment (fds, memory), not the hierarchy's refusal
function M.short(err)
  err = tostring(err)
  return err:find("Too many open files", 1, true) or err:find("Cannot allocate memory", 1, true)
    or err:find("Resource temporarily unavailable", 1, true) or false
end

-- After a spawn could not join the group (a hierarchy that refuses it):
-- off for the daemon's life, said once.
function M.disable(why)
  if not M.base then return end
  log.warn("apps' cgroups off: %s (escapees are found by their environment's marker)", tostring(why))
  M.base = nil
end

-- The pids in p's group (its processes and every descendant left) -> list
-- | nil (no group).
-- deep: and those of the groups an app of root's made inside its own (a
-- container runtime's, systemd-run's; a few levels at most), for a stop
-- (not at each exit: a crash loop's cost stays one read)
local function collect(dir, out, depth, deep, fd)
  local text
  if fd then -- (held: read from its start, in place)
    local parts, at = {}, 0
    repeat
      local s = core.read(fd, 65536, at)
      if not s then return nil end
      parts[#parts + 1] = s
      at = at + #s
    until s == ""
    text = table.concat(parts)
  else
    text = util.read_file(dir .. "/cgroup.procs")
  end
  if not text then return nil end
  for pid in text:gmatch("%d+") do out[#out + 1] = tonumber(pid) end
  if deep and depth < 8 then
    for name, kind in pairs(core.listdir(dir) or {}) do
      if kind == "dir" then collect(dir .. "/" .. name, out, depth + 1, true) end
    end
  end
  return out
end

-- (what an empty held group has: a crash loop's exits make no table;
-- read only)
local NONE = setmetatable({}, { __newindex = function() error("cgroup: the empty list is read only", 2) end })

function M.members(p, deep)
  if not M.base or not dirs[p] then return nil end
  local fd = held[p]
  if fd and not deep then
    local text = core.read(fd, 64, 0)
    if text == "" then return NONE end
  end
  return collect(dirs[p], {}, 0, deep, fd)
end

-- p's group goes (once empty; a group not yet empty stays, for the
-- daemon's exit)
function M.remove(p)
  M.unhold(p)
  if M.base and dirs[p] and rmdir_tree(dirs[p], 0) then dirs[p] = nil end
end

-- At the daemon's exit: the empty groups and the folder go.
function M.shutdown(home)
  if not M.base then return end
  rmdir_empty(M.base, true)
  if os.remove(M.base) then os.remove(home .. "/cgroup") end
end

return M
