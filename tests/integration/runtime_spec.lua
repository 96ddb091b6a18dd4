-- pm runtime inside a scheduler (lua/pm/runtime.lua): --health answers
-- 200 only while every app is online (503 while one waits to restart),
-- SIGTERM stops apps dependents first and kills what outlives --grace,
-- the exit codes (0 stopped, 1 errored, 2 no app left, 2 usage), and
-- --json's lines in PM2's shape.
local H = require "pmtest"
local util = require "pm.util"
local core = require "pm.core"

local shq = H.shquote

-- Starts `pm runtime args...` in the background -> { pid, out, err, rc }
local function runtime(...)
  local dir = H.home
  local words = { shq(H.bin), "runtime" }
  for _, a in ipairs({ ... }) do words[#words + 1] = shq(a) end
  local r = { out = dir .. "/rt.out", err = dir .. "/rt.err", rc = dir .. "/rt.rc", pidf = dir .. "/rt.pid" }
  os.remove(r.rc)
  os.remove(r.pidf)
  local inner = ("%s >%s 2>%s </dev/null & echo $! >%s; wait $!; echo $? >%s"):format(table.concat(words, " "),
    shq(r.out), shq(r.err), shq(r.pidf), shq(r.rc))
  os.execute(("PM_HOME=%s /bin/sh -c %s >/dev/null 2>&1 &"):format(shq(dir), shq(inner)))
  r.pid = H.wait_for(function() return tonumber(util.read_file(r.pidf) or "") end, 5000, "runtime's pid")
  return r
end

local function exit_code(r, ms)
  return H.wait_for(function() return tonumber(util.read_file(r.rc) or "") end, ms or 10000,
    "pm runtime's exit: " .. (util.read_file(r.err) or ""))
end

-- GET / on the health port -> the status code (nil when nothing answers)
local function probe(port)
  local p = io.popen(("bash -c %s 2>/dev/null"):format(shq(("exec 3<>/dev/tcp/127.0.0.1/%d && "
    .. "printf 'GET / HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n' >&3 && head -c 4096 <&3"):format(port))))
  local text = p:read("*a")
  p:close()
  return tonumber(text:match("^HTTP/1%.1 (%d+)")), text
end

local function eco(apps)
  return H.write(H.home .. "/ecosystem.lua", "return { apps = " .. apps .. " }\n")
end

-- a shell app that says when it starts and when it is told to stop
local function app(name, extra)
  return ([[{ name = %q, script = "/bin/sh", args = { "-c",
    "echo %s up; trap 'echo %s term >> %s/order; exit 0' INT TERM; while :; do sleep 0.05; done" }%s }]])
    :format(name, name, name, H.home, extra and (", " .. extra) or "")
end

describe("pm runtime", function()
  local rt
  before_each(function() H.new_home(); rt = nil end)
  after_each(function()
    if rt and H.alive(rt.pid) then core.kill(rt.pid, 9) end
    H.cleanup()
  end)

  it("--health answers 200 while every app is online, 503 while one waits to restart", function()
    local port = H.free_port()
    local flag = H.home .. "/crash"
    eco(("{ %s, { name = 'flaky', script = '/bin/sh', args = { '-c', %q }, restart_delay = 1500, min_uptime = 100 } }")
      :format(app("steady"), ("while :; do [ -e %s ] && rm -f %s && exit 3; sleep 0.05; done"):format(flag, flag)))
    rt = runtime(H.home .. "/ecosystem.lua", "--health", "127.0.0.1:" .. port)
    H.wait_for(function() return probe(port) == 200 end, 5000, "200 while both are online")
    local _, text = probe(port)
    local body = util.decode(text:match("\r\n\r\n(.*)$"))
    assert.equal("ok", body.status)
    assert.equal(2, #body.apps)
    H.write(flag, "")
    H.wait_for(function() return probe(port) == 503 end, 5000, "503 while flaky waits to restart")
    H.wait_for(function() return probe(port) == 200 end, 5000, "200 again once flaky is back online")
    -- a request that is no HTTP gets no answer but a 400 or the end of the
    -- connection (libmicrohttpd closes it), and the responder goes on
    local p = io.popen(("bash -c %s"):format(shq(("exec 3<>/dev/tcp/127.0.0.1/%d && "
      .. "printf 'hello\\r\\n\\r\\n' >&3 && timeout 5 head -c 100 <&3"):format(port))))
    local said = p:read("*a")
    p:close()
    assert.truthy(said == "" or said:match("^HTTP/1%.1 400"), said)
    assert.equal(200, (probe(port)))
    core.kill(rt.pid, 15)
    assert.equal(0, exit_code(rt))
  end)

  it("SIGTERM stops the apps dependents first; what outlives --grace is killed", function()
    eco(("{ %s, %s, %s }"):format(app("db"), app("api", "depends_on = { 'db' }"),
      app("web", "depends_on = { 'api' }")))
    rt = runtime(H.home .. "/ecosystem.lua")
    H.wait_for(function()
      local s = util.read_file(rt.out) or ""
      return s:find("db| db up", 1, true) and s:find("api| api up", 1, true) and s:find("web| web up", 1, true)
    end, 5000, "the three apps up")
    core.kill(rt.pid, 15)
    assert.equal(0, exit_code(rt))
    assert.equal("web term\napi term\ndb term\n", util.read_file(H.home .. "/order"))

    -- an app that ignores its stop signal, with a kill_timeout past the grace
    os.remove(H.home .. "/order")
    eco([[{ { name = "stubborn", script = "/bin/sh", kill_timeout = 60000,
      args = { "-c", "trap '' INT TERM; echo $$ > ]] .. H.home
      .. [[/stubborn.pid; while :; do sleep 0.05; done" } } }]])
    rt = runtime(H.home .. "/ecosystem.lua", "--grace", "300")
    local pid = H.wait_for(function() return tonumber(util.read_file(H.home .. "/stubborn.pid") or "") end, 5000)
    core.kill(rt.pid, 15)
    assert.equal(0, exit_code(rt))
    H.wait_for(function() return not H.alive(pid) end, 5000, "the stubborn app killed")
    assert.truthy(util.read_file(rt.err):find("grace period (300 ms) is over", 1, true))
  end)

  it("exits 1 when an app ends errored, 2 when no app is left running, 2 on a usage error", function()
    eco([[{ { name = "crash", script = "/bin/sh", args = { "-c", "exit 7" }, max_restarts = 1, min_uptime = 5000 } }]])
    rt = runtime(H.home .. "/ecosystem.lua")
    assert.equal(1, exit_code(rt))
    assert.truthy(util.read_file(rt.err):find("errored", 1, true))

    eco([[{ { name = "once", script = "/bin/sh", args = { "-c", "echo done" }, autorestart = false } }]])
    rt = runtime(H.home .. "/ecosystem.lua")
    assert.equal(2, exit_code(rt))
    assert.truthy(util.read_file(rt.err):find("no app left running", 1, true))

    rt = runtime(H.home .. "/ecosystem.lua", "--no-auto-exit")
    H.wait_for(function() return (util.read_file(rt.out) or ""):find("once| done", 1, true) end, 5000)
    H.holds(function() return H.alive(rt.pid) end, 1000, "pm runtime --no-auto-exit stays")
    core.kill(rt.pid, 15)
    assert.equal(0, exit_code(rt))

    local r = H.pm("runtime", H.home .. "/ecosystem.lua", "--health", "nope")
    assert.equal(2, r.code)
    H.fails(r, "--health nope")
  end)

  it("--json writes PM2's JSON lines: output and process events", function()
    eco(("{ %s }"):format(app("db")))
    rt = runtime(H.home .. "/ecosystem.lua", "--json")
    H.wait_for(function() return (util.read_file(rt.out) or ""):find('"db up"', 1, true) end, 5000)
    core.kill(rt.pid, 15)
    assert.equal(0, exit_code(rt))
    local logs, events = {}, {}
    for line in util.read_file(rt.out):gmatch("[^\n]+") do
      local j = assert(util.decode(line), line)
      if j.type == "process_event" then events[#events + 1] = j else logs[#logs + 1] = j end
      assert.truthy(j.timestamp:match("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%dZ$"), j.timestamp)
    end
    assert.same({ message = "db up", timestamp = logs[1].timestamp, type = "out", process_id = 0, app_name = "db" },
      logs[1])
    local seen = {}
    for _, e in ipairs(events) do
      assert.equal("db", e.app_name)
      seen[#seen + 1] = e.status
    end
    assert.same({ "start", "online", "exit", "stop" }, seen)
  end)
end)
