-- Soak: the daemon under valgrind --leak-check=full.
-- luajit tests/soak/valgrind.lua [apps (100)] [crash restarts (200)]
-- `pm daemon --stdio` under valgrind in a fresh PM_HOME; 100 apps started,
-- listed, restarted and deleted; a crash loop of N restarts; a burst of
-- malformed frames; then `pm kill` (a clean exit, so that valgrind sees
-- everything freed or not). Prints the LEAK SUMMARY; fails on any
-- "definitely lost" or "indirectly lost" byte and on any memory error.
-- (LuaJIT allocates Lua objects with its own mmap-based allocator, so what
-- valgrind sees is the C core's malloc: streams, log sinks, spawn stacks.)
local S = require "common"
local H, core, util = S.H, S.core, S.util

local APPS = tonumber(arg[1]) or 100
local CRASHES = tonumber(arg[2]) or 200
local home = H.new_home()
local vlog = home .. "/valgrind.log"
local vpid

local ok, err = pcall(function()
  S.say("valgrind: %d apps, a crash loop of %d restarts, PM_HOME %s", APPS, CRASHES, home)
  -- the daemon in the foreground, in the background of a shell that says its pid
  local r = H.sh(("valgrind --leak-check=full --errors-for-leak-kinds=definite,indirect --error-exitcode=99 "
    .. "--log-file=%s %s daemon --stdio >%s 2>&1 & echo $!"):format(H.shquote(vlog), H.shquote(H.bin),
    H.shquote(home .. "/daemon.out")))
  vpid = tonumber(r.out:match("%d+"))
  assert(vpid, "no pid for valgrind: " .. r.err)
  H.wait_for(function() return core.stat(home .. "/rpc.sock") end, 60000, "the daemon under valgrind to listen")
  local t0 = core.mono()
  local function pm(...)
    local res = H.pm(...)
    assert(res.code == 0, table.concat({ ... }, " ") .. ": " .. res.err)
    return res
  end
  -- 100 apps, in one ecosystem file
  local lines = { "return { apps = {" }
  for i = 1, APPS do
    lines[#lines + 1] = ('{ name = "v%d", script = %q, kill_timeout = 3000 },'):format(i, H.fixtures .. "/rel_sleep.sh")
  end
  lines[#lines + 1] = "} }"
  local f = assert(io.open(home .. "/ecosystem.config.lua", "w"))
  f:write(table.concat(lines, "\n"), "\n")
  f:close()
  pm("start", home .. "/ecosystem.config.lua", "-s")
  local list = H.jlist()
  local online = 0
  for _, p in ipairs(list) do if p.pm2_env.status == "online" then online = online + 1 end end
  S.check(online == APPS, "%d of %d apps online", online, APPS)
  pm("restart", "all", "-s")
  pm("describe", "v1")
  pm("save")
  pm("reloadLogs")
  pm("flush")
  -- a crash loop
  pm("start", H.fixtures .. "/rel_crash.sh", "--name", "crash", "--interpreter", "none", "--max-restarts",
    "100000000", "--min-uptime", "0", "-s")
  H.wait_for(function()
    local p = H.proc("crash")
    return p and p.pm2_env.restart_time >= CRASHES
  end, 600000, CRASHES .. " crash restarts")
  pm("stop", "crash", "-s")
  -- malformed frames, a subscriber, a connection dropped mid-line
  local F = dofile(H.src .. "/tests/fuzz/rpcfuzz.lua")
  local stats = F.run({ sock = home .. "/rpc.sock", frames = 1000, seed = 99, daemon_pid = vpid, conns = 2,
    appops = 0, corpus = H.src .. "/tests/fuzz/corpus/rpc", hang_ms = 15000 })
  -- (here only to run the parsing and error paths under valgrind: the counts
  -- are the fuzz part's business)
  S.say("  frames (not counted here): %s", F.summary(stats))
  pm("delete", "all", "-s")
  S.say("  workload done in %.1f s; pm kill", (core.mono() - t0) / 1000)
  pm("kill")
  H.wait_for(function() return not H.alive(vpid) end, 120000, "valgrind to exit")
end)
if not ok then S.check(false, "valgrind run: %s", tostring(err)) end
if vpid and H.alive(vpid) then
  core.kill(vpid, 9)
  pcall(H.wait_for, function() return not H.alive(vpid) end, 5000)
end
local log = util.read_file(vlog) or ""
local summary = log:match("(==%d+== LEAK SUMMARY:.-)\n==%d+== *\n") or log:match("==%d+== LEAK SUMMARY:.*") or ""
S.say("%s", summary ~= "" and summary or "(no LEAK SUMMARY in " .. vlog .. ")")
S.say("%s", log:match("==%d+== ERROR SUMMARY:[^\n]*") or "(no ERROR SUMMARY)")
local definite = tonumber((log:match("definitely lost: ([%d,]+) bytes") or "x"):gsub(",", ""), 10)
local indirect = tonumber((log:match("indirectly lost: ([%d,]+) bytes") or "x"):gsub(",", ""), 10)
local errors = tonumber(log:match("ERROR SUMMARY: (%d+) errors") or "")
S.check(summary ~= "", "valgrind printed a LEAK SUMMARY")
S.check(definite == 0, "no definite leak (%s bytes)", tostring(definite))
S.check(indirect == 0, "no indirect leak (%s bytes)", tostring(indirect))
-- memory errors other than leaks (invalid reads/writes, uninitialised values)
local invalid = select(2, log:gsub("Invalid read", "")) + select(2, log:gsub("Invalid write", ""))
  + select(2, log:gsub("uninitialised", "")) + select(2, log:gsub("Invalid free", ""))
S.check(invalid == 0, "no invalid read, write, free or uninitialised use (%d reports; errors %s)", invalid,
  tostring(errors))
if invalid > 0 or (definite or 1) > 0 then
  S.say("valgrind log (first 120 lines):")
  local n = 0
  for l in log:gmatch("[^\n]*") do
    n = n + 1
    if n > 120 then break end
    S.say("%s", l)
  end
end
H.home = home
H.cleanup(home)
for _, pid in ipairs(S.processes_of_home(home)) do core.kill(pid, 9) end
S.finish()
