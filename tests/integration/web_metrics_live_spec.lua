-- /metrics stays true (issue 18): a scrape takes the daemon's last sample
-- of each app (history takes one every second while pm web runs; a
-- scrape never reads /proc for every app again) and the web process
-- copies the numbers the daemon wrote. An app's memory that grows is seen
-- in the next seconds; a restart at once; a text longer than one piece
-- (metrics.PIECE) comes whole, with its length.
local H = require "pmtest"
local http = require "httpc"
local metrics = require "pm.metrics"

local function value(text, family, name)
  return tonumber(text:match("\n" .. family .. '{id="%d+",name="' .. name .. '",[^}]*} (%S+)\n'))
end

describe("pm web's /metrics", function()
  local port
  before_each(function()
    H.new_home()
    port = H.free_port()
  end)
  after_each(function() H.cleanup() end)

  it("follows an app's memory as it grows, and its restart", function()
    local flag = H.home .. "/grow"
    H.ok(H.pm("start", "/bin/sh", "--name", "grower", "--", "-c",
      ("while [ ! -e %s ]; do sleep 0.05; done; x=$(head -c 40000000 /dev/zero | tr '\\0' a); sleep 600")
        :format(H.shquote(flag))))
    H.online(H.proc("grower"))
    H.ok(H.pm("web", "--listen", "127.0.0.1:" .. port))
    local function scrape()
      local r = http.get(port, "/metrics", nil, { ms = 10000 })
      assert.equal(200, r.status)
      return r.body
    end
    local small
    H.wait_for(function()
      small = value(scrape(), "pm2_memory", "grower")
      return small and small > 0
    end, 10000, "a first sample of grower")
    assert.is_true(small < 20e6, "grower uses " .. small .. " bytes before it grows")
    H.write(flag, "")
    H.wait_for(function() return (value(scrape(), "pm2_memory", "grower") or 0) > 40e6 end, 15000,
      "grower's 40 MB in pm2_memory")
    assert.equal(0, value(scrape(), "pm2_restarts", "grower"))
    H.ok(H.pm("restart", "grower"))
    H.online(H.proc("grower"))
    local text = scrape()
    assert.equal(1, value(text, "pm2_restarts", "grower"))
    assert.equal(1, value(text, "pm2_up", "grower"))
    assert.is_true(value(text, "pm2_uptime", "grower") <= 5)
    -- (the new process has not grown: its own sample, not the old one's)
    H.wait_for(function()
      local m = value(scrape(), "pm2_memory", "grower")
      return m and m > 0 and m < 20e6
    end, 15000, "the restarted grower's own memory")
  end)

  it("sends a text longer than one piece whole, with its length", function()
    H.ok(H.pm("start", "--name", "s", "-i", "150", "--", "sleep", "1000"))
    H.wait_for(function()
      local n = 0
      for _, p in ipairs(H.jlist()) do if p.pm2_env.status == "online" then n = n + 1 end end
      return n == 150
    end, 30000, "150 apps online")
    H.ok(H.pm("web", "--listen", "127.0.0.1:" .. port))
    local r = http.get(port, "/metrics", nil, { ms = 10000 })
    assert.equal(200, r.status)
    assert.is_true(#r.body > 2 * metrics.PIECE, #r.body .. " bytes")
    assert.equal(#r.body, tonumber(r.headers["content-length"]))
    assert.truthy(r.body:find("\npm_apps 151\n$"), r.body:sub(-200))
    local ups = 0
    for _ in r.body:gmatch('\npm2_up{id="%d+",name="s",') do ups = ups + 1 end
    assert.equal(150, ups)
  end)
end)
