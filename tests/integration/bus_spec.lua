-- The event bus and talking to apps against a real daemon (issue 5, DESIGN
-- §6-8): the seed's "Send message to process" example end to end, the
-- checks of sendDataToProcessId, ipc = false, shutdown_with_message,
-- process:event order (a crash, and a whole life cycle), "*" and prefix
-- handlers, bus:off, launchBus's callback form, process:exception, custom
-- event types, invalid JSON from an app, pm.child for Lua apps, a stuck
-- subscriber during a flood (bus:dropped), and signals.
local H = require "pmtest"
local core = require "pm.core"
local util = require "pm.util"
local client = require "pm.client"
local pm = require "pm"

local F = H.fixtures

local pump, holds, api_start = H.pump, H.holds, H.api_start

local function read(path) return util.read_file(path) or "" end

local count = H.count

local function wait_log(path, text, n, ms)
  return H.wait_for(function() return count(read(path), text) >= (n or 1) end, ms or 3000,
    ("%d× %q in %s"):format(n or 1, text, path))
end

local function is_null(v) return v == nil or v == util.null end

local environ = H.environ

local function msg_packet(data) return { type = "process:msg", data = data, topic = true } end

describe("talking to apps", function()
  before_each(function() H.new_home() end)
  after_each(function()
    pm.disconnect()
    H.cleanup()
  end)

  it("runs the seed's 'Send message to process' example: Lua caller, the seed's Node app", function()
    local p = api_start({ script = F .. "/lb_pm2-app.js", name = "seedapp" })
    local id = p.pm_id
    local got = {}
    local cb_err, cb_bus = "not called", nil
    pm.launchBus(function(err, bus)
      cb_err, cb_bus = err, bus
      bus:on("process:msg", function(packet) got[#got + 1] = packet end)
    end)
    -- (a callback runs from the loop, never inside the call given it)
    assert.equal("not called", cb_err)
    pump(function() return cb_err ~= "not called" end, 5000, "launchBus's callback")
    assert.is_nil(cb_err)
    assert.truthy(cb_bus)

    local called, sent_err, sent_res = false, "not called", nil
    local res, err = pm.sendDataToProcessId({
      id = id,
      type = "process:msg",
      data = { some = "data" },
      topic = true,
    }, function(e, r) called, sent_err, sent_res = true, e, r end)
    assert.is_nil(err)
    assert.truthy(res)
    assert.is_false(called)
    pump(function() return called end, 5000, "sendDataToProcessId's callback")
    assert.is_nil(sent_err)
    assert.truthy(sent_res)

    pump(function() return #got >= 1 end, 8000, "the app's process:msg")
    local packet = got[1]
    assert.equal("table", type(packet.data))
    assert.is_true(packet.data.success)
    assert.equal(id, packet.process.pm_id)
    assert.equal("seedapp", packet.process.name)
    assert.equal("number", type(packet.at))
    assert.equal("process:msg", packet.raw.type)

    -- PM2's other form: (id, packet)
    res, err = pm.sendDataToProcessId(id, msg_packet({ n = 2 }))
    assert.is_nil(err)
    assert.truthy(res)
    pump(function() return #got >= 2 end, 5000, "the second reply")
    assert.is_true(got[2].data.success)
    assert.equal(id, got[2].process.pm_id)
    cb_bus:close()
  end)

  it("refuses a packet without type, data, topic or id with an error naming it", function()
    local p = api_start({ script = F .. "/lb_pm2-app.js", name = "picky" })
    for _, field in ipairs({ "type", "data", "topic" }) do
      local packet = { id = p.pm_id, type = "process:msg", data = { a = 1 }, topic = true }
      packet[field] = nil
      local res, err = pm.sendDataToProcessId(packet)
      assert.is_nil(res)
      assert.truthy(err and err:find(field, 1, true), "error for a missing " .. field .. ": " .. tostring(err))
      res, err = pm.sendDataToProcessId(p.pm_id, (function()
        local q = msg_packet({ a = 1 })
        q[field] = nil
        return q
      end)())
      assert.is_nil(res)
      assert.truthy(err and err:find(field, 1, true), "(id, packet) form, missing " .. field .. ": " .. tostring(err))
    end
    local res, err = pm.sendDataToProcessId(msg_packet({ a = 1 }))
    assert.is_nil(res)
    assert.truthy(err and err:find("id", 1, true), tostring(err))
    -- an unknown id
    res, err = pm.sendDataToProcessId(4242, msg_packet({ a = 1 }))
    assert.is_nil(res)
    assert.truthy(err and err:find("4242", 1, true), tostring(err))
    res, err = pm.sendDataToProcessId({ id = 4242, type = "process:msg", data = {}, topic = true })
    assert.is_nil(res)
    assert.truthy(err)
    assert.truthy(pm.ping())
  end)

  it("gives an app with ipc = true NODE_CHANNEL_FD (json); ipc = false: none, a message to it is an error",
    function()
    local on = api_start({ script = F .. "/lb_trap.sh", name = "withipc", ipc = true })
    local off = api_start({ script = F .. "/lb_trap.sh", name = "noipc", ipc = false, force = true })
    local env_on = environ(on.pid)
    assert.truthy(env_on, "environment of " .. on.pid)
    assert.truthy(tonumber(env_on.NODE_CHANNEL_FD), "NODE_CHANNEL_FD")
    assert.equal("json", env_on.NODE_CHANNEL_SERIALIZATION_MODE)
    local env_off = environ(off.pid)
    assert.truthy(env_off)
    assert.is_nil(env_off.NODE_CHANNEL_FD)
    -- through a separate client with a time limit: a hang fails instead of blocking
    local code = ([[
local res, err = pm.sendDataToProcessId(%d, { type = "process:msg", data = { x = 1 }, topic = true })
io.write(tostring(res), "|", tostring(err))
]]):format(off.pm_id)
    local t0 = core.mono()
    local r = H.sh("timeout 10 " .. H.shquote(H.bin) .. " -e " .. H.shquote(code))
    assert.is_true(core.mono() - t0 < 5000, "took " .. (core.mono() - t0) .. " ms")
    assert.equal(0, r.code, r.err)
    local res, err = r.out:match("^(.-)|(.*)$")
    assert.equal("nil", res)
    assert.truthy(err ~= "nil" and err ~= "", r.out)
    assert.equal("online", H.status("noipc"))
    -- a stopped app has no channel either (lb_trap.sh's short-lived
    -- children hold the channel's fd a moment after the app is gone: tried
    -- a few times)
    for i = 1, 8 do
      assert(pm.stop("withipc"))
      local res2, err2 = pm.sendDataToProcessId(on.pm_id, msg_packet({ x = 1 }))
      assert.is_nil(res2, ("attempt %d: a message to a stopped app was accepted"):format(i))
      assert.truthy(err2)
      assert(pm.start("withipc"))
    end
  end)

  it("refuses a message to a stopped app even while a leftover descendant holds the channel's fd", function()
    -- a process the app started and left behind (its own session, ignores
    -- SIGINT) outlives the app by 1.5 s, keeping its copy of the channel open
    local s = H.script("lb_leftover.sh", [[
(setsid sh -c 'trap "" INT TERM; exec sleep 1.5' &)
exec sleep 1000
]])
    local p = api_start({ script = s, name = "leftover" })
    assert(pm.stop("leftover"))
    assert.equal("stopped", H.status("leftover"))
    local res, err = pm.sendDataToProcessId(p.pm_id, msg_packet({ x = 1 }))
    assert.is_nil(res, "a message to a stopped app was accepted")
    assert.truthy(err)
  end)

  it("publishes process:exception when an app reports one", function()
    local p = api_start({ script = F .. "/lb_exception.js", name = "thrower" })
    local bus = assert(pm.launchBus())
    local got = {}
    assert(bus:on("process:exception", function(packet) got[#got + 1] = packet end))
    assert(pm.sendDataToProcessId(p.pm_id, msg_packet({ go = true })))
    pump(function() return #got >= 1 end, 8000, "process:exception")
    assert.equal("boom", got[1].data.message)
    assert.equal(p.pm_id, got[1].process.pm_id)
    assert.equal("thrower", got[1].process.name)
  end)

  it("reads an app's channel at most 4 MB a second: a flood waits, and no message is lost", function()
    -- 12 messages of 1 MB: the first 4 MB at once, the rest at 4 MB/s
    local s = H.write(H.home .. "/flood.py", [[
import json, os, socket, sys, time
s = socket.socket(fileno=int(os.environ["NODE_CHANNEL_FD"]))
t0 = time.monotonic()
for i in range(12):
    s.sendall(json.dumps({"type": "blob", "data": {"seq": i, "pad": "x" * 1048576}}).encode() + b"\n")
print("sent in %.2f s" % (time.monotonic() - t0), flush=True)
time.sleep(1000)
]])
    local bus = assert(pm.launchBus())
    local got = {}
    assert(bus:on("blob", function(packet) got[#got + 1] = packet.data.seq end))
    api_start({ script = s, name = "flood", interpreter = "python3", ipc = true })
    pump(function() return #got >= 12 end, 15000, "the 12 messages")
    for i = 1, 12 do assert.equal(i - 1, got[i]) end
    local log = H.home .. "/logs/flood-out.log"
    local secs = H.wait_for(function() return tonumber((util.read_file(log) or ""):match("sent in ([%d.]+) s")) end,
      5000, "the app's time")
    -- (8 MB past the first 4 at 4 MB a second: the app's writes waited)
    assert.is_true(secs >= 1.5, ("12 MB taken in %.2f s"):format(secs))
  end)

  it("keeps no more than 4 MB of replies for an app that asks and never reads, and says it once", function()
    -- 200,000 listen requests of a fork-mode app (each refused): 26 MB of
    -- replies and as many pm.log lines before
    local s = H.write(H.home .. "/asker.py", [[
import os, time
fd = int(os.environ["NODE_CHANNEL_FD"])
os.set_blocking(fd, True)
for _ in range(50):
    os.write(fd, b'{"cmd":"NODE_PM_LISTEN","seq":1,"port":8080}\n' * 4000)
print("asked", flush=True)
time.sleep(1000)
]])
    local function rss_kb()
      local st = util.read_file("/proc/" .. H.daemon_pid() .. "/status") or ""
      return tonumber(st:match("VmRSS:%s*(%d+)")) or 0
    end
    H.ok(H.pm("ping"))
    local before = rss_kb()
    api_start({ script = s, name = "asker", interpreter = "python3", ipc = true })
    H.wait_for(function() return H.contains(H.home .. "/logs/asker-out.log", "asked") end, 30000,
      "the app's 200,000 requests taken")
    assert.equal(1, count(H.pm_log(), "app asker (0) listens on port"))
    -- (bin/pm-asan keeps what it freed in its quarantine: the plain build's figure)
    if os.getenv("PM_SANITIZED") then return end
    local grown = rss_kb() - before
    -- (4 MB of replies waiting and the rest: about 5 MB here; 26 MB of
    -- replies before)
    assert.is_true(grown < 16 * 1024, ("the daemon grew by %d KB"):format(grown))
  end)

  it("never lets an app's message pass for one of the daemon's events: it comes as process:msg", function()
    local go = H.home .. "/go"
    local s = H.script("fake.sh", "#!/bin/sh\n"
      .. "while [ ! -f " .. H.shquote(go) .. " ]; do sleep 0.05; done\n"
      .. "for t in daemon:error log:out process:event hook:error bus:dropped mine:ok; do\n"
      .. "  printf '{\"type\":\"%s\",\"data\":\"FAKE\"}\\n' \"$t\" >&$NODE_CHANNEL_FD\n"
      .. "done\nexec sleep 1000\n")
    local p = api_start({ script = s, name = "faker", ipc = true })
    local bus = assert(pm.launchBus())
    local daemons, msgs, mine = {}, {}, {}
    for _, e in ipairs({ "daemon:error", "log:out", "process:event", "hook:error", "bus:dropped" }) do
      assert(bus:on(e, function(packet) daemons[#daemons + 1] = e .. " " .. util.encode(packet.data) end))
    end
    assert(bus:on("process:msg", function(packet) msgs[#msgs + 1] = packet end))
    assert(bus:on("mine:ok", function(packet) mine[#mine + 1] = packet end))
    H.write(go, "")
    pump(function() return #msgs >= 5 and #mine >= 1 end, 5000, "the app's messages")
    for _, m in ipairs(msgs) do
      assert.equal(p.pm_id, m.process.pm_id)
      assert.equal("FAKE", m.data)
    end
    for _, d in ipairs(daemons) do assert.is_nil(d:find("FAKE", 1, true), d) end
    assert.equal("FAKE", mine[1].data) -- (a type of the app's own goes out as it is)
  end)

  it("survives an app that writes invalid JSON on its channel; later valid messages arrive", function()
    local p = api_start({ script = F .. "/lb_badjson.py", name = "garbler", ipc = true })
    wait_log(H.home .. "/logs/garbler-out.log", "sent garbage", 1, 5000)
    local dpid = H.daemon_pid()
    local pong = assert(pm.ping())
    assert.equal("pong", pong.msg)
    local bus = assert(pm.launchBus())
    local got = {}
    assert(bus:on("process:msg", function(packet) got[#got + 1] = packet end))
    for i = 1, 2 do
      assert(pm.sendDataToProcessId(p.pm_id, msg_packet({ n = i })))
      pump(function() return #got >= i end, 5000, "reply " .. i)
      assert.equal(i, got[i].data.echo.n)
      assert.is_true(got[i].data.py)
    end
    local r = H.pm("ping")
    assert.equal(0, r.code, r.err)
    assert.is_true(H.alive(dpid))
    assert.equal(dpid, H.daemon_pid())
    assert.equal("online", H.status("garbler"))
    assert.equal(p.pid, H.proc("garbler").pid)
  end)

  it("round-trips a message with a Lua app using require 'pm.child'", function()
    local p = api_start({ script = F .. "/lb_child.lua", name = "luachild" })
    wait_log(H.home .. "/logs/luachild-out.log", "child ready", 1, 5000)
    local bus = assert(pm.launchBus())
    local got = {}
    assert(bus:on("process:msg", function(packet) got[#got + 1] = packet end))
    assert(pm.sendDataToProcessId({ id = p.pm_id, type = "process:msg",
      data = { x = 42, s = "hé \"q\"" }, topic = true }))
    pump(function() return #got >= 1 end, 5000, "the Lua app's reply")
    assert.is_true(got[1].data.lua)
    assert.same({ x = 42, s = "hé \"q\"" }, got[1].data.echo)
    assert.equal("process:msg", got[1].data.packet.type)
    assert.equal(true, got[1].data.packet.topic)
    assert.equal(p.pm_id, got[1].process.pm_id)
    assert.equal("luachild", got[1].process.name)
    -- a value that is not {type, data} arrives as process:msg as it is
    assert(pm.sendDataToProcessId(p.pm_id, msg_packet({ bare = "just a string" })))
    pump(function() return #got >= 2 end, 5000, "the bare value")
    assert.equal("just a string", got[2].data)
    assert.equal(p.pm_id, got[2].process.pm_id)
    -- {type = T, data = ...} is published as event T
    local custom = {}
    assert(bus:on("lb:custom", function(packet) custom[#custom + 1] = packet end))
    assert(pm.sendDataToProcessId(p.pm_id, msg_packet({ custom = "lb:custom" })))
    pump(function() return #custom >= 1 end, 5000, "the lb:custom event")
    assert.same({ k = 1 }, custom[1].data)
    assert.equal(p.pm_id, custom[1].process.pm_id)
    assert.equal(2, #got)
  end)

  it("hands a crash loop's channel to the next process without what the last one was sent or cut off", function()
    -- each run says hello (with its channel's socket), reads what came
    -- within 150 ms, reports it, leaves half a message and exits fast
    local app = H.script("looper.py", [[
import json, os, socket, time
fd = int(os.environ["NODE_CHANNEL_FD"])
s = socket.socket(fileno=fd)
def say(kind, data):
    s.sendall((json.dumps({"type": kind, "data": data}) + "\n").encode())
say("hello", {"pid": os.getpid(), "sock": os.readlink("/proc/self/fd/%d" % fd)})
time.sleep(0.15)
s.setblocking(False)
try:
    got = s.recv(65536).decode()
except BlockingIOError:
    got = ""
say("got", {"pid": os.getpid(), "got": got})
time.sleep(0.3)
s.sendall(b'{"type": "cut-off", "data": ')
os._exit(1)
]])
    local hellos, gots, cut = {}, {}, 0
    local bus = assert(pm.launchBus())
    bus:on("hello", function(packet) hellos[#hellos + 1] = packet.data end)
    bus:on("got", function(packet) gots[#gots + 1] = packet.data end)
    bus:on("cut-off", function() cut = cut + 1 end)
    local p = api_start({ script = app, name = "looper", interpreter = "python3", min_uptime = 5000, ipc = true })
    local sent = 0
    for n = 1, 4 do
      pump(function() return #hellos >= n end, 5000, "hello number " .. n)
      -- sent once this run has read: it never reads it, the next run must not get it
      pump(function() return #gots >= n end, 5000, "got number " .. n)
      local res, err = pm.sendDataToProcessId(p.pm_id, msg_packet({ late_for = hellos[n].pid }))
      if res then sent = sent + 1 end
      assert.truthy(res or tostring(err):find("no IPC channel", 1, true), err)
    end
    pm.stop("looper")
    bus:close()
    assert.is_true(sent >= 3, "late messages sent: " .. sent)
    for i, g in ipairs(gots) do
      assert.equal("", g.got, ("run %d (pid %d) read what was sent to an earlier run"):format(i, g.pid))
    end
    -- from the second run on, the loop keeps one channel
    assert.equal(hellos[2].sock, hellos[3].sock)
    assert.equal(hellos[3].sock, hellos[4].sock)
    assert.equal(0, cut)
  end)

  it("shutdown_with_message: pm stop sends \"shutdown\" over the channel instead of a signal", function()
    local p = api_start({ script = F .. "/lb_child.lua", name = "polite", shutdown_with_message = true,
      kill_timeout = 8000 })
    local log = H.home .. "/logs/polite-out.log"
    wait_log(log, "child ready", 1, 5000)
    local t0 = core.mono()
    assert(pm.stop("polite"))
    assert.is_true(core.mono() - t0 < 5000, "stop took " .. (core.mono() - t0) .. " ms")
    wait_log(log, "got shutdown")
    assert.equal("stopped", H.status("polite"))
    assert.equal(0, H.proc("polite").pm2_env.exit_code)
    assert.is_false(H.alive(p.pid))
  end)
end)

describe("the bus", function()
  before_each(function() H.new_home() end)
  after_each(function()
    pm.disconnect()
    H.cleanup()
  end)

  local function names(events)
    local t = {}
    for i, e in ipairs(events) do t[i] = e.event end
    return table.concat(t, ",")
  end

  -- index of the first event named what at or after from
  local function find(events, what, from)
    for i = from or 1, #events do
      if events[i].event == what then return i end
    end
  end

  it("shows a crash as exit (code, signal name) then online on process:event, in order", function()
    local bus = assert(pm.launchBus())
    local events = {}
    assert(bus:on("process:event", function(packet)
      if packet.process and packet.process.name == "crashy" then events[#events + 1] = packet end
    end))
    -- the first run exits 3; later runs live until killed
    local s = H.script("lb_crashy.sh", [[
n=$(cat "$0.count" 2>/dev/null || echo 0)
n=$((n + 1))
echo $n > "$0.count"
if [ "$n" -eq 1 ]; then sleep 0.2; exit 3; fi
exec sleep 1000
]])
    api_start({ script = s, name = "crashy", min_uptime = 100 })
    local ex = pump(function()
      local i = find(events, "exit")
      return i and find(events, "online", i) and i
    end, 5000, "exit then online")
    local e = events[ex]
    assert.equal(3, e.code)
    assert.is_true(is_null(e.signal))
    assert.equal("exit", e.reason)
    assert.equal("number", type(e.at))
    local on = find(events, "online", ex)
    local st = find(events, "start", ex)
    if st then assert.is_true(st < on, names(events)) end
    assert.is_true(find(events, "online") < ex, "the first run was online before it exited: " .. names(events))
    -- killed by a signal: code null, the signal's name
    local pid = H.wait_for(function()
      local q = H.proc("crashy")
      return q and q.pm2_env.status == "online" and q.pid > 0 and q.pid
    end, 3000, "the second run")
    local from = #events + 1
    core.kill(pid, core.signals.SIGSEGV)
    local ex2 = pump(function()
      local i = find(events, "exit", from)
      return i and find(events, "online", i) and i
    end, 5000, "exit then online after SIGSEGV")
    assert.is_true(is_null(events[ex2].code))
    assert.equal("SIGSEGV", events[ex2].signal)
    assert.equal(2, events[find(events, "online", ex2)].process.restart_time)
  end)

  it("publishes start, online, exit, stop, restart, reload, delete and restart overlimit in order", function()
    local bus = assert(pm.launchBus())
    local events = {}
    assert(bus:on("process:event", function(packet)
      events[#events + 1] = packet
    end))
    local s = H.script("lb_life.sh", "exec sleep 1000\n")
    local p = api_start({ script = s, name = "life" })
    local function of(name)
      local t = {}
      for _, e in ipairs(events) do
        if e.process and e.process.name == name then t[#t + 1] = e end
      end
      return t
    end
    local function seq(list, want, from)
      local i = from or 1
      for _, w in ipairs(want) do
        i = find(list, w, i)
        if not i then return nil end
        i = i + 1
      end
      return i
    end
    local at = pump(function() return seq(of("life"), { "start", "online" }) end, 3000, "start, online")
    local online = of("life")[find(of("life"), "online")]
    assert.equal("online", online.process.status)
    assert.equal(p.pm_id, online.process.pm_id)
    assert(pm.restart("life"))
    at = pump(function() return seq(of("life"), { "exit", "restart", "online" }, at) end, 3000,
      "exit, restart, online")
    assert(pm.reload("life"))
    at = pump(function() return seq(of("life"), { "exit", "online" }, at) end, 3000, "a reload's exit, online")
    pump(function() return find(of("life"), "reload") end, 3000, "reload")
    assert(pm.stop("life"))
    at = pump(function() return seq(of("life"), { "exit", "stop" }, at) end, 3000, "exit, stop")
    local list = of("life")
    local stop_exit
    for i = at - 1, 1, -1 do
      if list[i].event == "exit" then stop_exit = list[i]; break end
    end
    assert.equal("stop", stop_exit.reason)
    assert(pm.delete("life"))
    pump(function() return seq(of("life"), { "delete" }, at) end, 3000, "delete")

    local f = H.script("lb_fast.sh", "exit 2\n")
    api_start({ script = f, name = "fastfail", max_restarts = 2 })
    pump(function() return find(of("fastfail"), "restart overlimit") end, 5000, "restart overlimit")
    local exits = 0
    for _, e in ipairs(of("fastfail")) do
      if e.event == "exit" then
        exits = exits + 1
        assert.equal(2, e.code)
      end
    end
    assert.equal(2, exits)
  end)

  it("gives a '*' handler (event, packet); bus:off stops delivery", function()
    local s = H.script("lb_star.sh", 'echo "up $$"\necho "warn $$" >&2\nexec sleep 1000\n')
    local bus = assert(pm.launchBus())
    local witness = assert(pm.launchBus())
    local star, typed, seen = {}, {}, {}
    local function on_star(event, packet) star[#star + 1] = { event = event, packet = packet } end
    local function on_typed(packet) typed[#typed + 1] = packet end
    local logs = {}
    assert(bus:on("*", on_star))
    assert(bus:on("process:event", on_typed))
    assert(witness:on("log:*", function(packet) logs[#logs + 1] = packet end))
    assert(witness:on("process:event", function(packet)
      if packet.event == "online" then seen[#seen + 1] = packet end
    end))
    api_start({ script = s, name = "star" })
    pump(function() return #seen >= 1 end, 5000, "online")
    pump(function()
      local n = 0
      for _, e in ipairs(star) do
        if e.event == "log:out" or e.event == "log:err" then n = n + 1 end
      end
      return n >= 2
    end, 5000, "log:out and log:err through '*'")
    pump(function() return #logs >= 2 end, 5000, "log:out and log:err through 'log:*'")
    for _, l in ipairs(logs) do
      assert.equal("star", l.process.name)
      assert.truthy(tostring(l.data):match("^up %d+\n?$") or tostring(l.data):match("^warn %d+\n?$"),
        tostring(l.data))
    end
    local kinds = {}
    for _, e in ipairs(star) do
      assert.equal("string", type(e.event))
      assert.equal("table", type(e.packet))
      kinds[e.event] = e.packet
    end
    assert.truthy(kinds["process:event"])
    assert.equal("star", kinds["process:event"].process.name)
    assert.truthy(tostring(kinds["log:out"].data):find("up ", 1, true))
    assert.equal("star", kinds["log:out"].process.name)
    assert.truthy(tostring(kinds["log:err"].data):find("warn ", 1, true))
    assert.is_true(#typed >= 1)

    -- off(event): the typed handler gets nothing more, '*' still does
    assert(bus:off("process:event"))
    local n_typed, n_star = #typed, #star
    assert(pm.restart("star"))
    pump(function() return #seen >= 2 end, 5000, "online after the restart")
    pump(function() return #star > n_star end, 2000, "'*' still delivered")
    holds(function() return #typed == n_typed end, 200, "no delivery after off")

    -- off(event, fn): that handler is gone too
    assert(bus:off("*", on_star))
    n_star = #star
    assert(pm.restart("star"))
    pump(function() return #seen >= 3 end, 5000, "online after the second restart")
    holds(function() return #star == n_star and #typed == n_typed end, 200, "nothing after off")
    bus:close()
    witness:close()
    -- nothing left to wait for: pm.wait() returns at once (pm.wait(ms)
    -- waits its ms whatever is left)
    local t0 = core.mono()
    pm.wait()
    assert.is_true(core.mono() - t0 < 1000, "pm.wait took " .. (core.mono() - t0) .. " ms")
  end)

  it("keeps the log complete and ping prompt while a subscriber never reads during a flood", function()
    local r = H.pm("ping")
    assert.equal(0, r.code, r.err)
    local fd = assert(core.connect_unix(H.home .. "/rpc.sock"))
    assert(core.write(fd, '{"jsonrpc":"2.0","id":1,"method":"subscribe","params":{"events":["*"]}}\n'))
    local n, width = 300000, 100
    local t0 = core.mono()
    r = H.pm("start", F .. "/lb_burst.py", "--name", "flood", "--no-autorestart", "--", tostring(n), tostring(width))
    assert.equal(0, r.code, r.err)
    local pings, worst = 0, 0
    repeat
      local t = core.mono()
      local pr = H.pm("ping")
      local dt = core.mono() - t
      assert.equal(0, pr.code, pr.err)
      pings = pings + 1
      worst = math.max(worst, dt)
      assert.is_true(dt < 1000, ("ping took %d ms"):format(dt))
    until (pings >= 3 and H.status("flood") == "stopped") or core.mono() - t0 > 20000
    assert.equal("stopped", H.status("flood"))
    local path = H.home .. "/logs/flood-out.log"
    pcall(H.wait_for, function() return (core.stat(path) or {}).size == n * width end, 10000)
    assert.equal(n * width, (core.stat(path) or {}).size)
    local s = read(path)
    local pad = string.rep("x", width - 10)
    local i = 0
    for line in s:gmatch("([^\n]*)\n") do
      i = i + 1
      if line ~= ("%08d %s"):format(i, pad) then
        error(("line %d is %q"):format(i, line:sub(1, 60)))
      end
    end
    assert.equal(n, i)
    -- the stuck subscriber, reading at last, is told how many events it lost
    local got = {}
    local stream = core.stream(fd, function(line)
      if not line then return end
      local msg = util.decode(line)
      if type(msg) == "table" and msg.method == "event" then got[#got + 1] = msg.params end
    end, function() end, 64 * 1024 * 1024)
    local function dropped()
      for _, e in ipairs(got) do
        if e.event == "bus:dropped" then return e end
      end
    end
    api_start({ script = H.script("lb_poke.sh", "exec sleep 1000\n"), name = "poke" })
    local deadline = core.mono() + 5000
    while not dropped() and core.mono() < deadline do
      assert(pm.restart("poke")) -- an event after the backlog
      client.run_until(function() return dropped() ~= nil end, 200)
    end
    stream:close()
    local d = dropped()
    assert.truthy(d, "no bus:dropped among " .. #got .. " events")
    assert.is_true(d.data.count > 0)
  end)
end)

describe("signals", function()
  before_each(function() H.new_home() end)
  after_each(function()
    pm.disconnect()
    H.cleanup()
  end)

  it("reach the app by name (every instance) and by id; names without SIG and numbers work", function()
    local list = assert(pm.start({ script = F .. "/lb_trap.sh", name = "trapper", instances = 2 }))
    assert.equal(2, #list)
    local a, b = list[1], list[2]
    local la = ("%s/logs/trapper-out-%d.log"):format(H.home, a.pm_id)
    local lb = ("%s/logs/trapper-out-%d.log"):format(H.home, b.pm_id)
    wait_log(la, "ready")
    wait_log(lb, "ready")

    local res, err = pm.sendSignalToProcessName("SIGUSR1", "trapper")
    assert.is_nil(err)
    assert.truthy(res)
    wait_log(la, "got USR1", 1)
    wait_log(lb, "got USR1", 1)

    assert(pm.sendSignalToProcessId("SIGUSR2", a.pm_id))
    wait_log(la, "got USR2", 1)
    assert(pm.sendSignalToProcessName("USR2", "trapper"))
    wait_log(la, "got USR2", 2)
    wait_log(lb, "got USR2", 1) -- the by-id signal did not reach b

    assert(pm.sendSignalToProcessId(core.signals.SIGUSR1, b.pm_id))
    wait_log(lb, "got USR1", 2)
    assert(pm.sendSignalToProcessId(tostring(core.signals.SIGUSR1), b.pm_id))
    wait_log(lb, "got USR1", 3)
    assert(pm.sendSignalToProcessId("USR1", b.pm_id))
    wait_log(lb, "got USR1", 4)
    assert.equal(1, count(read(la), "got USR1"))
    assert.equal(2, count(read(la), "got USR2"))
    assert.equal(1, count(read(lb), "got USR2"))
    assert.equal("online", H.status("trapper"))
  end)

  it("an unknown signal or target is an error", function()
    local p = api_start({ script = F .. "/lb_trap.sh", name = "trap1" })
    local cases = {
      { pm.sendSignalToProcessName, "SIGFOO", "trap1", "FOO" },
      { pm.sendSignalToProcessName, "FOO", "trap1", "FOO" },
      { pm.sendSignalToProcessId, "SIGNOPE", p.pm_id, "NOPE" },
      { pm.sendSignalToProcessId, 99, p.pm_id, "99" },
      { pm.sendSignalToProcessName, "SIGUSR1", "nosuchapp", "nosuchapp" },
      { pm.sendSignalToProcessId, "SIGUSR1", 4242, "4242" },
    }
    for _, c in ipairs(cases) do
      local res, err = c[1](c[2], c[3])
      assert.is_nil(res)
      assert.truthy(err and err:find(c[4], 1, true),
        ("signal %s to %s: %s"):format(tostring(c[2]), tostring(c[3]), tostring(err)))
    end
    assert.equal("online", H.status("trap1"))
  end)

  it("pm sendSignal <SIG> <TARGET> from the CLI", function()
    local p = api_start({ script = F .. "/lb_trap.sh", name = "clitrap" })
    local log = H.home .. "/logs/clitrap-out.log"
    wait_log(log, "ready")
    local r = H.pm("sendSignal", "USR1", "clitrap")
    assert.equal(0, r.code, r.err)
    wait_log(log, "got USR1", 1)
    r = H.pm("sendSignal", "SIGUSR2", tostring(p.pm_id))
    assert.equal(0, r.code, r.err)
    wait_log(log, "got USR2", 1)
    r = H.pm("sendSignal", tostring(core.signals.SIGUSR1), "clitrap")
    assert.equal(0, r.code, r.err)
    wait_log(log, "got USR1", 2)
    r = H.pm("sendSignal", "FOO", "clitrap")
    assert.are_not.equal(0, r.code)
    assert.truthy(r.err:find("FOO", 1, true), r.err)
    r = H.pm("sendSignal", "USR1", "nosuchapp")
    assert.are_not.equal(0, r.code)
    assert.truthy(r.err:find("nosuchapp", 1, true), r.err)
    assert.equal(2, count(read(log), "got USR1"))
  end)
end)
