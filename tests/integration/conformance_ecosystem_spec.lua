-- Issue 23 (PM2's e2e suite: process-file/json-file.sh, json-reload.sh,
-- app-config-update.sh, cli/start-app.sh): the forms of a JSON ecosystem
-- file PM2 reads besides { "apps": [...] } and a list: one app's object
-- alone, "pm2" for "apps", cmd or command for script; and an env value
-- that is an object and deploy.NAME.env with --env NAME (cli/env-refresh.sh).
local H = require "pmtest"

local ok, fails = H.ok, H.fails

describe("PM2's forms of an ecosystem file", function()
  before_each(function() H.new_home() end)
  after_each(function() H.cleanup() end)

  local function sleeper() return H.script("s.sh", "#!/bin/sh\nexec sleep 1000\n") end

  it("one app's object alone is that app", function()
    local f = H.write(H.home .. "/one.json", ('{ "name": "solo", "script": %q, "max_memory_restart": "300M" }')
      :format(sleeper()))
    ok(H.pm("start", f, "-s"))
    local p = H.proc("solo")
    assert.equal("online", p.pm2_env.status)
    assert.equal(300 * 1024 * 1024, p.pm2_env.max_memory_restart)
    ok(H.pm("delete", f, "-s"))
    assert.same({}, H.jlist())
  end)

  it("\"pm2\" is another name of \"apps\"", function()
    local s = sleeper()
    local f = H.write(H.home .. "/old.json",
      ('{ "pm2": [ { "name": "a", "script": %q }, { "name": "b", "script": %q } ] }'):format(s, s))
    ok(H.pm("start", f, "-s"))
    assert.equal("a,b", H.names())
  end)

  it("cmd and command are other names of script (beside a script, cmd is an unknown attribute)", function()
    local f = H.write(H.home .. "/cmd.json", ([[
{ "apps": [ { "name": "c1", "cmd": "sleep 1000" },
            { "name": "c2", "command": "sleep 1001" } ] }]]))
    ok(H.pm("start", f, "-s"))
    H.wait_for(function()
      local list = H.jlist()
      return #list == 2 and list[1].pm2_env.status == "online" and list[2].pm2_env.status == "online"
    end, 5000, "c1 and c2 online")
    assert.equal("c1,c2", H.names())
    local both = H.write(H.home .. "/both.json", ('{ "apps": [ { "name": "d", "script": %q, "cmd": "x" } ] }')
      :format(sleeper()))
    fails(H.pm("start", both), "cmd")
  end)

  it("an object that is neither apps nor an app is still refused, with the key named", function()
    local f = H.write(H.home .. "/typo.json", '{ "aps": [] }')
    fails(H.pm("start", f), "unknown top-level key 'aps'")
  end)

  it("an env value that is an object reaches the app as its JSON text", function()
    local s = H.script("env.sh", "#!/bin/sh\necho \"V=$V\"\nexec sleep 1000\n")
    local f = H.write(H.home .. "/env.json",
      ('{ "apps": [ { "name": "e", "script": %q, "env": { "V": { "HEY": true } } } ] }'):format(s))
    ok(H.pm("start", f, "-s"))
    H.wait_for(function() return H.contains(H.out_log("e"), 'V={"HEY":true}') end, 5000, "V in e's log")
  end)

  it("--env NAME takes deploy.NAME.env over each app's env, under its env_NAME", function()
    local s = H.script("env2.sh", "#!/bin/sh\necho \"A=$A B=$B C=$C\"\nexec sleep 1000\n")
    local f = H.write(H.home .. "/deploy.json", ([[
{ "apps": [ { "name": "d", "script": %q, "env": { "A": "env", "B": "env", "C": "env" },
              "env_production": { "C": "env_production" } } ],
  "deploy": { "production": { "user": "x", "env": { "B": "deploy", "C": "deploy" } } } }]]):format(s))
    ok(H.pm("start", f, "--env", "production", "-s"))
    H.wait_for(function() return H.contains(H.out_log("d"), "A=env B=deploy C=env_production") end, 5000,
      "the environment in d's log")
  end)
end)
