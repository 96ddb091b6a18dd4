-- Shared by the soak scripts (run by plain luajit from tests/soak/run):
-- module paths, the integration harness (tests/helpers/pmtest.lua) and a
-- few measures of the daemon.
local src = os.getenv("PM_SRC") or "."
package.path = src .. "/lua/?.lua;" .. src .. "/lua/?/init.lua;" .. src .. "/tests/helpers/?.lua;"
  .. package.path
package.cpath = src .. "/lib/?.so;" .. package.cpath

local core = require "pm.core"
local util = require "pm.util"
local H = require "pmtest"

local S = { H = H, core = core, util = util }

S.failures = 0

function S.say(fmt, ...)
  io.stdout:write((select("#", ...) > 0 and fmt:format(...) or fmt), "\n")
  io.stdout:flush()
end

-- A check: prints ok/FAIL with the message; failures make the script exit 1.
function S.check(cond, fmt, ...)
  local msg = select("#", ...) > 0 and fmt:format(...) or fmt
  if cond then
    S.say("  ok    %s", msg)
  else
    S.failures = S.failures + 1
    S.say("  FAIL  %s", msg)
  end
  return cond
end

S.fd_count = H.fd_count

-- VmRSS and RssAnon of pid in kB
function S.rss(pid)
  local s = util.read_file("/proc/" .. pid .. "/status") or ""
  return tonumber(s:match("VmRSS:%s*(%d+)")), tonumber(s:match("RssAnon:%s*(%d+)"))
end

S.zombies_of = H.zombies_of

S.processes_of_home = H.processes_of_home

function S.finish()
  if S.failures > 0 then
    S.say("%d check(s) failed", S.failures)
    os.exit(1)
  end
  os.exit(0)
end

return S
