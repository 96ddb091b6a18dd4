-- Soak: the control-socket fuzzer against a live daemon.
-- luajit tests/soak/fuzz.lua [frames (1000000)] [seed (1)]
-- A daemon in a fresh PM_HOME with three apps to act on; the seeded frames
-- of tests/fuzz/rpcfuzz.lua over many connections; then: the daemon is the
-- same process and answers, every request with an id got exactly one reply,
-- every frame owed an error with id null got it, no internal error, no
-- Lua error or traceback in pm.log. The daemon and its apps are stopped by
-- pid at the end.
local S = require "common"
local H, core, util = S.H, S.core, S.util

local frames = tonumber(arg[1]) or 1000000
local seed = tonumber(arg[2]) or 1
local F = dofile(H.src .. "/tests/fuzz/rpcfuzz.lua")

local home = H.new_home()
local ok, err = pcall(function()
  S.say("fuzz: %d frames, seed %d, PM_HOME %s", frames, seed, home)
  local sleeper = H.fixtures .. "/rel_sleep.sh"
  for i = 0, 2 do
    local r = H.pm("start", sleeper, "--name", "fz" .. i, "--namespace", "nsfz", "--kill-timeout", "300", "-s")
    assert(r.code == 0, r.err)
  end
  local dpid = H.daemon_pid()
  local fd0, rss0 = S.fd_count(dpid), S.rss(dpid)
  local stats = F.run({ sock = home .. "/rpc.sock", frames = frames, seed = seed, daemon_pid = dpid,
    corpus = H.src .. "/tests/fuzz/corpus/rpc", conns = 6, hang_ms = 20000,
    progress_every = math.max(10000, math.floor(frames / 10)),
    log = function(m) S.say("%s", m) end })
  S.say("  %s", F.summary(stats))
  for _, m in ipairs(stats.internal_list) do S.say("  internal error: %s", m) end
  for i = 1, math.min(10, #stats.bad) do S.say("  bad: %s", stats.bad[i]) end
  for _, m in ipairs(stats.inexact) do S.say("  inexact id: %s", m) end
  S.check(not stats.died, "the daemon (pid %d) is alive", dpid)
  S.check(stats.hang == nil, "the daemon never hung (%s)", tostring(stats.hang or "it answered throughout"))
  for _, l in ipairs(stats.unanswered_lines) do S.say("  no reply to: %s", l) end
  S.check(stats.unanswered == 0, "every batch answered (%d batches, %d replies missing)", stats.hangs,
    stats.unanswered)
  S.check(stats.frames == frames, "%d of %d frames sent", stats.frames, frames)
  S.check(stats.id_replies == stats.with_id, "replies with an id %d == requests with an id %d",
    stats.id_replies, stats.with_id)
  S.check(stats.null_replies == stats.expect_null, "errors with id null %d == frames owed one %d",
    stats.null_replies, stats.expect_null)
  S.check(stats.unexpected == 0 and stats.duplicates == 0 and stats.malformed_replies == 0,
    "no unexpected (%d), duplicate (%d) or malformed (%d) reply", stats.unexpected, stats.duplicates,
    stats.malformed_replies)
  S.check((stats.codes[-32603] or 0) == 0, "no internal error (-32603: %d)", stats.codes[-32603] or 0)
  S.check(stats.inexact_ids == 0, "every id echoed exactly (%d not)", stats.inexact_ids)
  local r = H.pm("ping")
  local pong = util.decode(r.out) or {}
  S.check(r.code == 0 and pong.pid == dpid, "pm ping answered by the same daemon (%s)", r.out:gsub("\n", ""))
  local log = util.read_file(home .. "/pm.log") or ""
  local lua_errors = select(2, log:gsub("lua error", ""))
  local tracebacks = select(2, log:gsub("stack traceback", ""))
  S.check(lua_errors == 0 and tracebacks == 0, "pm.log: %d lua errors, %d tracebacks", lua_errors, tracebacks)
  local fd1, rss1 = S.fd_count(dpid), S.rss(dpid)
  S.say("  daemon fds %d -> %d, VmRSS %d kB -> %d kB", fd0, fd1, rss0, rss1)
end)
if not ok then S.check(false, "fuzz run: %s", tostring(err)) end
if S.failures > 0 then
  S.say("the end of pm.log:")
  local p = io.popen("tail -n 40 " .. H.shquote(home .. "/pm.log"))
  S.say("%s", p:read("*a"))
  p:close()
end
H.home = home
if os.getenv("KEEP_HOME") then
  -- stop the daemon and its apps by pid, keep the files
  local dpid = H.daemon_pid(home)
  if dpid and H.alive(dpid) then core.kill(dpid, 15) end
  pcall(H.wait_for, function() return not H.alive(dpid) end, 5000)
  if dpid and H.alive(dpid) then core.kill(dpid, 9) end
  S.say("kept %s", home)
else
  H.cleanup(home)
end
-- processes the daemon lost track of (a start that raced a stop) survive
-- pm kill: by pid too
local strays = S.processes_of_home(home)
if #strays > 0 then S.say("  %d process(es) of this PM_HOME left after pm kill: killed by pid", #strays) end
for _, pid in ipairs(strays) do core.kill(pid, 9) end
S.finish()
