-- watch: restart on file change. One inotify fd for the daemon, a watch per
-- directory (several apps may share one), new directories picked up, an
-- overflow handled by a rescan. Running out of watches is a warning.
local core = require "pm.core"
local log = require "pm.log"

local M = {}

local dirs = {}     -- wd -> { path, owners = { key = true } }
local by_path = {}  -- path -> wd
local watchers = {} -- key -> { roots, ignore, on_change, wds = { wd = true } }
local started = false

local add_tree -- forward

-- Whether something under w's folders changed since w last saw a change
-- (w.since, ms since the epoch): an entry, not ignored, whose mtime is
-- that late (a file written, or a folder whose entries came, went or were
-- renamed). What the events lost in an overflow were is not known: this
-- tells, per app, whether they could have been its.
local function changed_since(w)
  local since = w.since - 1000 -- (a second's margin: clocks and mtimes' rounding)
  local budget = M.MAX_ENTRIES -- (entries looked at, in all: past it, a change is assumed)
  for wd in pairs(w.wds) do
    local d = dirs[wd]
    local st = d and core.stat(d.path, true)
    if st and st.mtime * 1000 + st.mtime_ns / 1e6 >= since then return true end
    local list, more = nil, nil
    if d then list, more = core.listdir(d.path, nil, budget) end
    if more then return true end
    for name in pairs(list or {}) do
      budget = budget - 1
      local full = d.path .. "/" .. name
      if not w.ignore(full) then
        local e = core.stat(full, true)
        if e and e.mtime * 1000 + e.mtime_ns / 1e6 >= since then return true end
      end
    end
  end
  return false
end

local function on_event(wd, name, isdir, kind)
  if kind == "overflow" then
    -- events were lost (the queue overflowed): each app's folders looked
    -- at again; only an app whose files changed since its last change is
    -- told (another user filling the queue restarts no one else's app)
    local told = 0
    for _, w in pairs(watchers) do
      for _, root in ipairs(w.roots) do add_tree(w, root) end
      if changed_since(w) then
        w.since = core.now()
        told = told + 1
        w.on_change("(events lost: rescanned)")
      end
    end
    log.info("watch: the kernel's queue of file events overflowed; %d watcher(s) saw changes since", told)
    return
  end
  local d = dirs[wd]
  if not d then return end
  if kind == "ignored" then
    by_path[d.path] = nil
    dirs[wd] = nil
    for key in pairs(d.owners) do
      local w = watchers[key]
      if w and w.wds[wd] then
        w.wds[wd] = nil
        w.count = w.count - 1
      end
    end
    return
  end
  local full = name and (d.path .. "/" .. name) or d.path
  for key in pairs(d.owners) do
    local w = watchers[key]
    if w and not w.ignore(full) then
      if isdir and (kind == "create" or kind == "move") then add_tree(w, full) end
      w.since = core.now()
      w.on_change(full)
    end
  end
end

-- Folders one app watches at most: each is one of the inotify watches all
-- of the daemon's user's processes share (fs.inotify.max_user_watches),
-- and an app's user may make as many folders as it likes in its own
M.MAX_DIRS = 2000
-- Entries of one folder read at most when its subfolders are looked for,
-- and of all an app's folders when an overflow makes them looked at again:
-- the reads are on the daemon's loop, and a user may move a folder of a
-- million files into the one its app watches (3.8 s each move)
M.MAX_ENTRIES = 20000

local function add_dir(w, path)
  local wd = by_path[path]
  if not (wd and w.wds[wd]) and w.count >= M.MAX_DIRS then
    if not w.capped then
      log.warn("watch %s: more than %d folders: the others are not watched (watch a narrower path, "
        .. "or ignore_watch)", w.key, M.MAX_DIRS)
      w.capped = true
    end
    return false
  end
  if not wd then
    local err
    wd, err = core.inotify_add(path)
    if not wd then
      if not w.warned then
        log.warn("watch %s: %s", w.key, err)
        w.warned = true
      end
      return false
    end
    by_path[path] = wd
    dirs[wd] = dirs[wd] or { path = path, owners = {} }
  end
  dirs[wd].owners[w.key] = true
  if not w.wds[wd] then
    w.wds[wd] = true
    w.count = w.count + 1
  end
  return true
end

add_tree = function(w, path, depth)
  depth = depth or 0
  if depth > 64 or w.ignore(path) then return end
  local st = core.stat(path)
  if not st then return end
  if st.type ~= "dir" then
    -- a file to watch: its directory is watched, changes elsewhere there ignored
    return add_dir(w, path:match("^(.*)/[^/]*$") or ".")
  end
  if not add_dir(w, path) then return end
  local list, more = core.listdir(path, "dirs", M.MAX_ENTRIES)
  if more and not w.crowded then
    log.warn("watch %s: %s has over %d entries: the folders past them are not watched", w.key, path, M.MAX_ENTRIES)
    w.crowded = true
  end
  for name, kind in pairs(list or {}) do
    if kind == "dir" or kind == "unknown" then
      local sub = path .. "/" .. name
      if kind == "dir" or (core.stat(sub) or {}).type == "dir" then add_tree(w, sub, depth + 1) end
    end
  end
end

--[[ Watches roots (absolute paths) for key. ignore(path) -> true skips a
path; on_change(path) is called for every change that is not ignored. ]]
function M.watch(key, roots, ignore, on_change)
  if not started then
    local ok, err = core.inotify(on_event)
    if not ok then return nil, err end
    started = true
  end
  M.unwatch(key)
  local w = { key = key, roots = roots, ignore = ignore, on_change = on_change, wds = {}, count = 0,
    since = core.now() }
  watchers[key] = w
  for _, root in ipairs(roots) do add_tree(w, root) end
  return true
end

function M.unwatch(key)
  local w = watchers[key]
  if not w then return end
  watchers[key] = nil
  for wd in pairs(w.wds) do
    local d = dirs[wd]
    if d then
      d.owners[key] = nil
      if next(d.owners) == nil then
        core.inotify_rm(wd)
        by_path[d.path] = nil
        dirs[wd] = nil
      end
    end
  end
end

-- "*.log", "tmp/**" -> a Lua pattern anchored on both ends
local function glob(g)
  local p = g:gsub("[%^%$%(%)%%%.%[%]%+%-]", "%%%0"):gsub("%*%*", "\1"):gsub("%*", "[^/]*")
    :gsub("\1", ".*"):gsub("%?", "[^/]")
  return "^" .. p .. "$"
end

--[[ An ignore function for an app: dot-directories and node_modules by
default (or the app's ignore_watch: names, relative paths or globs), and
exact paths (the app's own logs). Only the part of a path below the app's
cwd (or below the watched root it is in) counts: a cwd inside a
dot-directory is watched all the same. ]]
M.IGNORE_DEFAULT = { "node_modules", ".*" } -- (what an app without ignore_watch ignores)
function M.ignorer(cwd, ignore_watch, exact, roots)
  local names, pats = {}, {}
  local list = ignore_watch
  if type(list) == "string" then list = { list } end
  if not list then list = M.IGNORE_DEFAULT end
  for _, g in ipairs(list) do
    if g:find("[%*%?]") then
      pats[#pats + 1] = glob(g)
      -- "**/" also stands for no directory at all
      local short = g:gsub("%*%*/", "")
      if short ~= g and short ~= "" then pats[#pats + 1] = glob(short) end
    else
      names[g] = true
    end
  end
  local bases = { cwd }
  for _, r in ipairs(roots or {}) do bases[#bases + 1] = r end
  return function(path)
    if exact[path] then return true end
    local rel
    for _, base in ipairs(bases) do
      if path == base then return false end
      if path:sub(1, #base + 1) == base .. "/" then
        rel = path:sub(#base + 2)
        break
      end
    end
    rel = rel or path
    if names[rel] then return true end
    for seg in rel:gmatch("[^/]+") do
      if names[seg] then return true end
      for _, p in ipairs(pats) do
        if seg:match(p) then return true end
      end
    end
    for _, p in ipairs(pats) do
      if rel:match(p) then return true end
    end
    return false
  end
end

M.glob = glob
return M
