-- Issue 23 (PM2's e2e suite: cli/app-configuration.sh, its probes half):
-- an app using @pm2/io sends {type = "axm:monitor", data = {name = {value,
-- unit, type, historic}}} over its IPC channel; pm keeps them as PM2 does
-- (pm2_env.axm_monitor in jlist and prettylist, "code metrics" in pm
-- describe), bounded, and a new process starts with none.
local H = require "pmtest"

local ok = H.ok

-- A shell app with a channel that sends the JSON lines of file lines_path
-- (one message a line), then sleeps
local function sender(lines_path)
  return H.script("axm.sh", "#!/bin/sh\nwhile read -r l; do eval \"printf '%s\\n' \\\"\\$l\\\" >&$NODE_CHANNEL_FD\"; "
    .. "done < " .. H.shquote(lines_path) .. "\nexec sleep 1000\n")
end

local function monitor_of(name)
  local p = H.proc(name)
  return p and p.pm2_env.axm_monitor
end

describe("@pm2/io's metrics (axm:monitor)", function()
  before_each(function() H.new_home() end)
  after_each(function() H.cleanup() end)

  it("are kept per process, merged, shown by jlist, prettylist and describe", function()
    local lines = H.home .. "/lines"
    H.write(lines, table.concat({
      '{"type":"axm:monitor","data":{"test-probe":{"value":7,"historic":true,"type":"metric"}}}',
      '{"type":"axm:monitor","data":{"Event Loop Latency p95":{"value":"1.50","unit":"ms",'
        .. '"type":"internal/libuv/latency/p95","historic":true}}}',
      '{"type":"axm:monitor","data":{"test-probe":{"value":9,"historic":true,"type":"metric"}}}',
    }, "\n") .. "\n")
    ok(H.pm("start", sender(lines), "--name", "probe", "--ipc", "-s"))
    local m = H.wait_for(function()
      local t = monitor_of("probe")
      return t and t["Event Loop Latency p95"] and t["test-probe"] and t["test-probe"].value == 9 and t
    end, 5000, "the metrics")
    assert.same({ value = "1.50", unit = "ms", type = "internal/libuv/latency/p95", historic = true },
      m["Event Loop Latency p95"])
    local pretty = ok(H.pm("prettylist")).out
    assert.truthy(pretty:find("'Event Loop Latency p95': {", 1, true), pretty)
    assert.truthy(pretty:find("test-probe", 1, true))
    local card = ok(H.pm("describe", "probe")).out
    assert.truthy(card:find("code metrics:\n", 1, true), card)
    assert.truthy(card:find("Event Loop Latency p95 1.50 ms", 1, true), card)
    -- /metrics (the metrics method, written by the web process): the numbers
    local c = H.connect()
    c:send('{"jsonrpc":"2.0","id":1,"method":"metrics"}\n')
    local res = assert(c:reply(1, 5000), "no reply to metrics")
    c:close()
    local text = require("pm.metrics").text(res.result)
    local id = H.proc("probe").pm_id
    assert.truthy(text:find(('pm_app_metric{id="%d",name="probe",namespace="default",instance="0",interpreter="[^"]*",'
      .. 'metric="Event Loop Latency p95",unit="ms"} 1.5\n'):format(id)), text)
    assert.truthy(text:find('metric="test-probe",unit=""} 9\n', 1, true), text)
    -- a new process starts with none (until it sends them again)
    H.write(lines, "")
    local pid = H.proc("probe").pid
    ok(H.pm("restart", "probe", "-s"))
    H.wait_for(function() local p = H.proc("probe"); return p.pid ~= pid and p.pid > 0 end, 5000, "a new process")
    assert.same({}, monitor_of("probe"))
  end)

  it("are bounded: 64 names a process, text cut at 256 bytes, bad entries left out", function()
    local lines = H.home .. "/lines"
    local out = {}
    for i = 1, 70 do
      out[#out + 1] = ('{"type":"axm:monitor","data":{"m%02d":{"value":%d}}}'):format(i, i)
    end
    out[#out + 1] = '{"type":"axm:monitor","data":{"m01":{"value":"' .. ("x"):rep(1000) .. '"}}}'
    out[#out + 1] = '{"type":"axm:monitor","data":"not a table"}'
    out[#out + 1] = '{"type":"axm:monitor","data":{"m02":"not a table","m03":{"value":{"a":1}}}}'
    out[#out + 1] = '{"type":"axm:monitor","data":{"last":{"value":1}}}'
    out[#out + 1] = '{"type":"axm:monitor","data":{"m64":{"value":"done"}}}'
    H.write(lines, table.concat(out, "\n") .. "\n")
    ok(H.pm("start", sender(lines), "--name", "many", "--ipc", "-s"))
    local m = H.wait_for(function()
      local t = monitor_of("many")
      return t and t.m64 and t.m64.value == "done" and t
    end, 5000, "the metrics")
    local n = 0
    for _ in pairs(m) do n = n + 1 end
    assert.equal(64, n)
    assert.is_nil(m.m65)
    assert.is_nil(m.last)
    assert.equal(256, #m.m01.value)
    assert.equal(2, m.m02.value) -- (a bad entry changes nothing)
    assert.is_nil(m.m03.value) -- (a value that is not text or a number: none)
    assert.equal("online", H.proc("many").pm2_env.status)
  end)
end)
