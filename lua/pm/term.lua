-- The terminal of `pm console` (core.rl_*: libedit) and `pm monit`
-- (core.scr_*: ncurses). lib/pm/core.so, what plain luajit loads, has them
-- in pm.core. bin/pm does not link libedit and ncurses (every exec would pay
-- for them): it loads them here, when asked, from the C module pm.term,
-- lib/pm/term.so, which uses the binary's own symbols (pm_L, pm_pcall).
-- Where term.so is looked for: M.native.
local core = require "pm.core"

local M = {}

local lib -- the loaded functions

--[[ A C module of pm's beside the binary (lib/pm/term.so, lib/pm/http.so):
looked for from the real path of the running binary, <bin>/../lib/pm/ (the
build tree), <bin>/../lib/lua/5.1/pm/ (make install), then package.cpath
as "pm.<name>"; bin/pm-asan takes <name>-asan.so first. field: a function
its table must have. what: who needs it ("the console"), libs: what it
links ("libedit, ncurses") -> the module's table | nil, a one-line message
naming what was looked for. ]]
function M.native(name, field, what, libs)
  local files = core.sanitized and { name .. "-asan.so", name .. ".so" } or { name .. ".so" }
  local list = {}
  local exe = core.realpath("/proc/self/exe")
  local root = exe and exe:match("^(.*)/[^/]*/[^/]*$")
  if root then
    for _, file in ipairs(files) do
      list[#list + 1] = root .. "/lib/pm/" .. file
      list[#list + 1] = root .. "/lib/lua/5.1/pm/" .. file
    end
  end
  local found = package.searchpath and package.searchpath("pm." .. name, package.cpath)
  if found then list[#list + 1] = found end
  local err
  local entry = "luaopen_pm_" .. name
  for _, path in ipairs(list) do
    if core.access(path, "r") then
      local open, lerr = package.loadlib(path, entry)
      if open then
        local ok, t = pcall(open)
        if ok and type(t) == "table" and t[field] then return t end
        lerr = ok and (entry .. " gave no " .. field) or tostring(t)
      end
      lerr = tostring(lerr):gsub("\n", " ")
      err = err or (lerr:find(path, 1, true) and lerr or (path .. ": " .. lerr))
    end
  end
  if err then
    return nil, ("pm: %s needs lib/pm/%s.so, which does not load: %s"):format(what, name, err)
  end
  root = root or "?"
  return nil, ("pm: %s needs lib/pm/%s.so (%s), found neither in %s/lib/pm/ "
    .. "nor in %s/lib/lua/5.1/pm/ nor on package.cpath: build it with make (or make install)")
    :format(what, name, libs, root, root)
end

-- The functions rl_* and scr_* for `what` ("the console", "monit") ->
-- a table | nil, a one-line message naming what was looked for.
function M.load(what)
  if core.rl_readline then return core end
  if lib then return lib end
  local t, err = M.native("term", "rl_readline", what, "libedit, ncurses")
  lib = t
  return t, err
end

return M
