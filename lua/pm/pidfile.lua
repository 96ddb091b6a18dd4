-- Pid files: where an app's is (pid_file, NAME.pid there as NAME-ID.pid,
-- or PM_HOME/pids/NAME-ID.pid),
-- when it is written and when it goes (the app is down; not between an
-- exit and its immediate restart), and the spares that keep creating
-- them cheap; a pid file of an app of another user in a folder that user
-- can change is written and removed with their rights (applogs.owner). Decides
-- nothing about a process's life.
local core = require "pm.core"
local util = require "pm.util"
local proc = require "pm.proc"
local applogs = require "pm.applogs"
local log = require "pm.log"

local M = {}

-- p's pid file path, for its declaration
function M.assign(p)
  local decl = p.decl
  p.pid_pooled, p.pid_owner = nil, nil
  if decl.pid_file then
    local path = util.absolute(decl.pid_file, decl.cwd)
    -- PM2's rule: a name ending in .pid ends in -<pm_id>.pid (a -N it has
    -- already is replaced: echo.pid and echo-3.pid give echo-0.pid for app
    -- 0), whatever the instances; another name gets the id only with
    -- several instances
    local stem = path:match("^(.*/[^/]-)%-%d+%.pid$") or path:match("^(.*/[^/]+)%.pid$")
    if stem then p.pid_path = ("%s-%d.pid"):format(stem, p.pm_id)
    else p.pid_path = applogs.with_id(path, p) end
  else
    p.pid_path = ("%s/pids/%s-%d.pid"):format(proc.ctx.home, decl.name:gsub("/", "_"), p.pm_id)
  end
end

-- Pid files. One is rewritten in place on each start (a crash loop
-- costs no new file), and removed when the app stops running, not
-- between an exit and its immediate restart. A removed pid file of
-- PM_HOME/pids is kept aside in pids/.spare and renamed into place for
-- the next one: creating files right after deleting as many costs ext4
-- a scan of every recently freed inode per new file (starting 100 apps
-- after deleting 100 spent a third of its time there).
local SPARE_MAX = 4096
local spare_dir, spares, spare_seq = nil, {}, 0

local function pool_of(p)
  if not spare_dir then return false end
  local v = p.pid_pooled -- reset when the declaration changes
  if v == nil then
    local dir, path = proc.ctx.home .. "/pids/", p.pid_path
    v = path:sub(1, #dir) == dir and not path:find("/", #dir + 1, true)
    p.pid_pooled = v
  end
  return v
end

function M.init_spares()
  spare_dir = proc.ctx.home .. "/pids/.spare"
  if not core.mkdir(spare_dir, 448) then spare_dir = nil; return end -- 0700
  for name, kind in pairs(core.listdir(spare_dir) or {}) do
    local n = tonumber(name)
    if kind == "file" and n then
      spares[#spares + 1] = spare_dir .. "/" .. name
      spare_seq = math.max(spare_seq, n)
    end
  end
end

local function owner_of(p)
  local v = p.pid_owner -- reset when the declaration changes
  if v == nil then
    v = applogs.owner(p.pid_path, p.decl) or false -- (in a folder only root can change: root's, as before)
    if v and not v.as_user then v = false end
    p.pid_owner = v
  end
  return v or nil
end

local function write_pidfile(p)
  local path = p.pid_path
  if not path then return end
  if not p.pidfile_live and #spares > 0 and pool_of(p) then
    local spare = table.remove(spares)
    if not os.rename(spare, path) then os.remove(spare) end
  end
  local text, k, owner = p.pid .. "\n", p.kept, owner_of(p)
  local ok, err = true, nil
  if k and k.pid_fd then -- a crash loop: the pid is written in place
    core.put_file(k.pid_fd, text, k.pid_len)
    k.pid_len = #text
  elseif k then
    k.pid_fd = core.open(path, "u", nil, owner)
    if k.pid_fd then
      core.put_file(k.pid_fd, text)
      k.pid_len = #text
    else
      ok, err = core.put_file(path, text, nil, owner)
    end
  else
    ok, err = core.put_file(path, text, nil, owner)
  end
  if not ok and owner then log.warn("pid file of %s not written: %s", p.name, err) end
  p.pidfile_live = true
end

local function drop_pidfile(p)
  local path = p.pid_path
  if not path then return end
  p.pidfile_live = nil
  local k = p.kept
  if k and k.pid_fd then core.close(k.pid_fd); k.pid_fd = nil end
  if #spares < SPARE_MAX and pool_of(p) and core.stat(path) then
    spare_seq = spare_seq + 1
    local spare = ("%s/%d"):format(spare_dir, spare_seq)
    if os.rename(path, spare) then
      spares[#spares + 1] = spare
      return
    end
  end
  local owner = owner_of(p)
  if owner then
    core.unlink(path, owner) -- (only a regular file of the app's user)
    return
  end
  local st = core.stat(path)
  if st and st.type == "file" then os.remove(path) end -- (never a directory pid_file names)
end

-- PM2_PID_FILE_PATH (PM2's): a copy of the daemon's pid where it says,
-- as the daemon's user, never through a link nor over a file of anyone
-- else's (a shared /tmp). -> its path | nil (none asked, or refused:
-- logged)
local DAEMON_OWNER = { uid = core.getuid(), gid = -1 }
function M.daemon_copy(path)
  if type(path) ~= "string" or path == "" then return nil end
  path = util.absolute(path)
  local fd, err = core.open(path, "w", 420, DAEMON_OWNER)
  if not fd then
    log.warn("PM2_PID_FILE_PATH: %s", err)
    return nil
  end
  local ok, werr = core.write(fd, core.getpid() .. "\n")
  core.close(fd)
  if not ok then log.warn("PM2_PID_FILE_PATH %s: %s", path, werr) end
  return path
end

-- Removes that copy, when it still holds the daemon's pid.
function M.drop_daemon_copy(path)
  if not path then return end
  local s = util.read_file(path)
  if s and tonumber(s:match("%d+")) == core.getpid() then core.unlink(path, DAEMON_OWNER) end
end

-- PM2's name of the daemon's pid file, PM_HOME/pm2.pid: a link to pm.pid
-- (none is made over a file of that name that is no link)
function M.pm2_name(home)
  local link = home .. "/pm2.pid"
  local st = core.stat(link, true)
  if not st then core.symlink("pm.pid", link) end
end

function M.drop_pm2_name(home)
  local link = home .. "/pm2.pid"
  local st = core.stat(link, true)
  if st and st.type == "link" then os.remove(link) end
end

M.write = write_pidfile
M.drop = drop_pidfile
proc.ACTIONS.unpid = drop_pidfile

return M
