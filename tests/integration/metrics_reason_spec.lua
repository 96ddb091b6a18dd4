-- Issue 18: pm_restarts_total counts a restart an on_exit hook decided
-- under reason "hook" (the built-in policy's under "exit"), through the
-- daemon's metrics method that /metrics is written from.
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
