-- The HTTP server of the web process (core.http_server: libmicrohttpd).
-- lib/pm/core.so, what plain luajit loads, has it in pm.core. bin/pm does
-- not link libmicrohttpd (every exec would map it and its TLS libraries):
-- the web process loads it here from the C module pm.http, lib/pm/http.so,
-- looked for where term.lua looks for term.so (beside the binary's
-- lib/pm/, then lib/lua/5.1/pm/, then package.cpath).
local core = require "pm.core"

local M = {}

local lib

-- -> a table with http_server | nil, a one-line message (term.native's)
function M.load()
  if core.http_server then return core end
  if lib then return lib end
  local t, err = require("pm.term").native("http", "http_server", "the web server", "libmicrohttpd")
  lib = t
  return t, err
end

return M
