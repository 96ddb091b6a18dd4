-- Issue 23 (PM2's e2e suite: cli/piped-config.sh): `pm start -` starts
-- the apps of a JSON ecosystem read from stdin, their relative scripts
-- the caller's; `pm delete -` (stop, restart, reload) names its apps.
local H = require "pmtest"

local ok, fails = H.ok, H.fails

describe("an ecosystem on stdin", function()
  before_each(function() H.new_home() end)
  after_each(function() H.cleanup() end)

  local function pm_in(stdin, ...)
    local words = {}
    for _, w in ipairs({ ... }) do words[#words + 1] = H.shquote(w) end
    return H.sh(H.shquote(H.bin) .. " " .. table.concat(words, " "), { stdin = stdin, cwd = H.home })
  end

  it("pm start - starts its apps, relative to the caller's folder; pm delete - removes them", function()
    H.script("a.sh", "#!/bin/sh\nexec sleep 1000\n")
    local json = '[ { "name": "one", "script": "./a.sh" }, { "name": "two", "script": "./a.sh", "instances": 2 } ]'
    ok(pm_in(json, "start", "-", "-s"))
    local list = H.jlist()
    assert.equal(3, #list)
    for _, p in ipairs(list) do
      assert.equal("online", p.pm2_env.status)
      assert.equal(H.real(H.home .. "/a.sh"), H.real(p.pm2_env.pm_exec_path))
    end
    ok(pm_in(json, "stop", "-", "-s"))
    assert.equal("stopped", H.proc("two").pm2_env.status)
    ok(pm_in('{ "apps": [ { "name": "one" }, { "name": "two" } ] }', "delete", "-", "-s"))
    assert.same({}, H.jlist())
  end)

  it("what is not a JSON ecosystem is one line, and nothing starts", function()
    fails(pm_in("not json", "start", "-"), "stdin")
    fails(pm_in('{ "aps": [] }', "start", "-"), "aps")
    fails(pm_in("[]", "delete", "-"), "stdin")
    assert.same({}, H.jlist())
  end)
end)
