-- Issue 18, through the daemon's metrics method that /metrics is written
-- from: pm_restarts_total counts a restart an on_exit hook decided under
-- reason "hook" (the built-in policy's under "exit"); pm_log_written_*
-- count what an app's log files took.
local H = require "pmtest"
local util = require "pm.util"

-- the metrics method's restart rows -> pm_id -> reason -> n, the rows
local function restarts()
  local c = H.connect()
  c:send('{"jsonrpc":"2.0","id":1,"method":"metrics"}\n')
  local m = assert(c:reply(1, 5000), "no reply to metrics")
  c:close()
  local by = {}
  for _, row in ipairs(m.result.restarts or {}) do
    by[row[1]] = by[row[1]] or {}
    by[row[1]][row[2]] = row[3]
  end
  return by, util.encode(m.result.restarts)
end

describe("pm_restarts_total's reason", function()
  before_each(function() H.new_home() end)
  after_each(function() H.cleanup() end)

  it("is hook for a restart an on_exit hook decided, exit for the built-in policy's", function()
    local function crasher(name)
      local flag = H.home .. "/crash-" .. name
      return ("{ name = %q, script = '/bin/sh', min_uptime = 100, args = { '-c', %q }%s }"):format(name,
        ("while :; do [ -e %s ] && rm -f %s && exit 3; sleep 0.05; done"):format(flag, flag),
        name == "hooked" and ", on_exit = function(ctx) return 'restart' end" or "")
    end
    H.lua_eco("{ " .. crasher("hooked") .. ", " .. crasher("plain") .. " }")
    H.ok(H.pm("start", H.home .. "/ecosystem.config.lua"))
    H.wait_for(function() return H.status("hooked") == "online" and H.status("plain") == "online" end, 5000)
    for _, name in ipairs({ "hooked", "plain" }) do
      H.write(H.home .. "/crash-" .. name, "")
      H.wait_for(function() return H.proc(name).pm2_env.restart_time == 1 end, 5000, name .. "'s restart")
    end
    local ids = {}
    for _, p in ipairs(H.jlist()) do ids[p.name] = p.pm_id end
    local by, text = restarts()
    assert.same({ hook = 1 }, by[ids.hooked], text)
    assert.same({ exit = 1 }, by[ids.plain], text)
  end)
end)

describe("pm_log_written_lines_total and _bytes_total", function()
  before_each(function() H.new_home() end)
  after_each(function() H.cleanup() end)

  it("count the lines and bytes written to an app's files, across its restarts", function()
    H.ok(H.pm("start", "/bin/sh", "--name", "talker", "--", "-c",
      "printf 'one\\ntwo\\n'; printf 'oops\\n' >&2; sleep 600"))
    local p = H.online(H.proc("talker"))
    local function written()
      local c = H.connect()
      c:send('{"jsonrpc":"2.0","id":1,"method":"metrics"}\n')
      local m = assert(c:reply(1, 5000), "no reply to metrics")
      c:close()
      for _, row in ipairs(m.result.written or {}) do
        if row[1] == p.pm_id then return row[2], row[3] end
      end
    end
    H.wait_for(function() local l = written(); return l == 3 end, 5000, "3 lines written")
    assert.equal(3, select(1, written()))
    assert.equal(#"one\ntwo\noops\n", select(2, written()))
    H.ok(H.pm("restart", "talker"))
    H.wait_for(function() local l = written(); return l == 6 end, 5000, "6 lines after its restart")
  end)
end)
