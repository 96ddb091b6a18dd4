-- The HTTP server of the web process (core.http_server: libmicrohttpd).
-- lib/pm/core.so, what plain luajit loads, has it in pm.core. bin/pm does
-- not link libmicrohttpd (every exec would map it and its TLS libraries):
-- the web process loads it here from the C module pm.http, lib/pm/http.so,
-- looked for where term.lua looks for term.so (beside the binary's
-- lib/pm/, then lib/lua/5.1/pm/, then package.cpath).
local core = require "pm.core"

local M = {}

local lib

-- -> a table with http_server | nil, a one-line message
function M.load()
  if core.http_server then return core end
  if lib then return lib end
  local names = core.sanitized and { "http-asan.so", "http.so" } or { "http.so" }
  local list = {}
  local exe = core.realpath("/proc/self/exe")
  local root = exe and exe:match("^(.*)/[^/]*/[^/]*$")
  if root then
    for _, name in ipairs(names) do
      list[#list + 1] = root .. "/lib/pm/" .. name
      list[#list + 1] = root .. "/lib/lua/5.1/pm/" .. name
    end
  end
  local found = package.searchpath and package.searchpath("pm.http", package.cpath)
  if found then list[#list + 1] = found end
  local err
  for _, path in ipairs(list) do
    if core.access(path, "r") then
      local open, lerr = package.loadlib(path, "luaopen_pm_http")
      if open then
        local ok, t = pcall(open)
        if ok and type(t) == "table" and t.http_server then
          lib = t
          return lib
        end
        lerr = ok and "luaopen_pm_http gave no http_server" or tostring(t)
      end
      err = err or (path .. ": " .. tostring(lerr):gsub("\n", " "))
    end
  end
  if err then return nil, "pm: the web server needs lib/pm/http.so, which does not load: " .. err end
  return nil, ("pm: the web server needs lib/pm/http.so (libmicrohttpd), found neither in %s/lib/pm/ "
    .. "nor in %s/lib/lua/5.1/pm/ nor on package.cpath: build it with make (or make install)")
    :format(root or "?", root or "?")
end

return M
