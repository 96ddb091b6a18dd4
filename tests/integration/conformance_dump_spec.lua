-- Issue 23 (PM2's e2e suite: cli/dump.sh, cli/resurrect.sh): PM2's names
-- of the saved list, dump.pm2 and dump.pm2.bak, are links to dump.json and
-- dump.json.bak; a broken dump a resurrect skipped for its backup is put
-- aside, as PM2 drops it.
local H = require "pmtest"
local core = require "pm.core"
local util = require "pm.util"

local ok = H.ok

describe("dump.pm2", function()
  before_each(function() H.new_home() end)
  after_each(function() H.cleanup() end)

  local function link(name) return core.stat(H.home .. "/" .. name, true) end

  it("pm save makes dump.pm2, and dump.pm2.bak once there is a backup", function()
    ok(H.pm("start", H.script("a.sh", "#!/bin/sh\nexec sleep 1000\n"), "-s"))
    ok(H.pm("save"))
    assert.equal("link", link("dump.pm2").type)
    assert.is_nil(link("dump.pm2.bak"))
    assert.equal(util.read_file(H.home .. "/dump.json"), util.read_file(H.home .. "/dump.pm2"))
    ok(H.pm("save"))
    assert.equal("link", link("dump.pm2.bak").type)
    assert.equal(util.read_file(H.home .. "/dump.json.bak"), util.read_file(H.home .. "/dump.pm2.bak"))
  end)

  it("a dump broken through dump.pm2: resurrect takes the backup and puts the broken one aside", function()
    ok(H.pm("start", H.script("a.sh", "#!/bin/sh\nexec sleep 1000\n"), "-s"))
    ok(H.pm("save"))
    ok(H.pm("save"))
    ok(H.pm("delete", "all", "-s"))
    H.write(H.home .. "/dump.pm2", "[{")
    ok(H.pm("resurrect"))
    assert.equal("a", H.names())
    assert.is_nil(link("dump.pm2"))
    assert.is_false(H.exists(H.home .. "/dump.json"))
    assert.equal("[{", util.read_file(H.home .. "/dump.json.broken"))
    -- the backup still serves
    ok(H.pm("delete", "all", "-s"))
    ok(H.pm("resurrect"))
    assert.equal("a", H.names())
  end)

  it("a dump.pm2 that is no link is someone's: left alone", function()
    H.write(H.home .. "/dump.pm2", "mine")
    ok(H.pm("start", H.script("a.sh", "#!/bin/sh\nexec sleep 1000\n"), "-s"))
    ok(H.pm("save"))
    assert.equal("mine", util.read_file(H.home .. "/dump.pm2"))
  end)
end)
