-- Issue 23 (PM2's e2e suite: internals/increment-var.sh): a variable an
-- ecosystem file gives a number is shown as a number (pm2_env.PORT and
-- pm2_env.env.PORT: 3000, as PM2 shows it), increment_var's sums too, and
-- after a resurrect still; the process gets text, as always.
local H = require "pmtest"

local ok = H.ok

describe("env values given as numbers", function()
  before_each(function() H.new_home() end)
  after_each(function() H.cleanup() end)

  it("are numbers in jlist and prettylist, strings in the process, and stay so after a resurrect", function()
    local s = H.script("app.sh", "#!/bin/sh\nexec sleep 1000\n")
    local eco = H.write(H.home .. "/eco.json", ([[
{ "apps": [ { "name": "inc", "script": %q, "instances": 2, "increment_var": "PORT",
              "env": { "PORT": 3000, "TEXT": "3000", "RATIO": 0.5 } } ] }
]]):format(s))
    ok(H.pm("start", eco, "-s"))
    local function check()
      local seen = {}
      for _, p in ipairs(H.jlist()) do
        local e = p.pm2_env
        H.online(p)
        seen[e.PORT] = true
        assert.equal("number", type(e.PORT))
        assert.equal(e.PORT, e.env.PORT)
        assert.equal(3000 + p.pm2_env.NODE_APP_INSTANCE, e.PORT)
        assert.equal("3000", e.env.TEXT, "a string stays a string")
        assert.equal(0.5, e.env.RATIO)
        assert.equal(tostring(e.PORT), H.environ(p.pid).PORT)
      end
      assert.is_true(seen[3000] and seen[3001])
      local pretty = ok(H.pm("prettylist")).out
      assert.equal(2, H.count(pretty, "PORT: 3000"))
      assert.equal(2, H.count(pretty, "PORT: 3001"))
      assert.equal(4, H.count(pretty, "TEXT: '3000'")) -- (pm2_env's and env's, each)
    end
    check()
    ok(H.pm("save"))
    ok(H.pm("kill"))
    ok(H.pm("resurrect"))
    check()
  end)
end)
