-- The terminal of `pm console` (core.rl_*: libedit) and `pm monit`
-- (core.scr_*: ncurses). lib/pm/core.so, what plain luajit loads, has them
-- in pm.core. bin/pm does not link libedit and ncurses (every exec would pay
-- for them): it loads them here, when asked, from the C module pm.term,
-- lib/pm/term.so, which uses the binary's own symbols (pm_L, pm_pcall).
-- Where term.so is looked for, in order, from the real path of the running
-- binary: <bin>/../lib/pm/ (the build tree), <bin>/../lib/lua/5.1/pm/ (make
-- install puts it beside core.so), then package.cpath as "pm.term".
local core = require "pm.core"

local M = {}

local lib -- the loaded functions

-- bin/pm-asan (core.sanitized) takes the instrumented build when there is one.
local function names()
  if core.sanitized then return { "term-asan.so", "term.so" } end
  return { "term.so" }
end

-- -> the paths to try, the directory above the binary's (or nil)
local function candidates()
  local list = {}
  local exe = core.realpath("/proc/self/exe")
  local root = exe and exe:match("^(.*)/[^/]*/[^/]*$")
  if root then
    for _, name in ipairs(names()) do
      list[#list + 1] = root .. "/lib/pm/" .. name
      list[#list + 1] = root .. "/lib/lua/5.1/pm/" .. name
    end
  end
  local found = package.searchpath and package.searchpath("pm.term", package.cpath)
  if found then list[#list + 1] = found end
  return list, root
end

-- The functions rl_* and scr_* for `what` ("the console", "monit") ->
-- a table | nil, a one-line message naming what was looked for.
function M.load(what)
  if core.rl_readline then return core end
  if lib then return lib end
  local list, root = candidates()
  local err
  for _, path in ipairs(list) do
    if core.access(path, "r") then
      local open, lerr = package.loadlib(path, "luaopen_pm_term")
      if open then
        local ok, t = pcall(open)
        if ok and type(t) == "table" and t.rl_readline then
          lib = t
          return lib
        end
        lerr = ok and "luaopen_pm_term gave no terminal functions" or tostring(t)
      end
      lerr = tostring(lerr):gsub("\n", " ")
      err = err or (lerr:find(path, 1, true) and lerr or (path .. ": " .. lerr))
    end
  end
  if err then
    return nil, ("pm: %s needs lib/pm/term.so, which does not load: %s"):format(what, err)
  end
  root = root or "?"
  return nil, ("pm: %s needs lib/pm/term.so (libedit, ncurses), found neither in %s/lib/pm/ "
    .. "nor in %s/lib/lua/5.1/pm/ nor on package.cpath: build it with make (or make install)")
    :format(what, root, root)
end

return M
