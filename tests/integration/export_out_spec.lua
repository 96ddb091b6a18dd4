-- pm export --out as root: the folder written into, and every folder or
-- link on the way to it, must be one no other user can change (a link they
-- put there would choose where root writes: /etc/systemd/system).
local H = require "pmtest"
local core = require "pm.core"
local util = require "pm.util"

local NOBODY = 65534

local function sh(cmd) return os.execute(cmd) == 0 end
local function q(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

local function empty(dir)
  local p = io.popen("ls -A " .. q(dir))
  local out = p:read("*a")
  p:close()
  return out == ""
end

describe("pm export --out", function()
  local home, file, victim
  setup(function()
    home = H.new_home()
    file = H.write(home .. "/eco.lua", "return { apps = { { name = 'api', script = '/bin/sleep', args = { '60' } } } }")
    victim = home .. "/victim" -- root's, 0755: a folder like /etc/systemd/system
    core.mkdir(victim, 493)
  end)
  before_each(function() H.home = home end)
  teardown(function() H.cleanup(home) end)

  local function as_root()
    if core.getuid() ~= 0 then
      pending("needs root (another user's folders and links)")
      return false
    end
    return true
  end

  it("refuses a link of another user's on the way, and writes nothing through it", function()
    if not as_root() then return end
    local alice = home .. "/alice"
    core.mkdir(alice, 493)
    assert(sh("chown " .. NOBODY .. " " .. q(alice)))
    assert(sh("ln -s " .. q(victim) .. " " .. q(alice .. "/units")))
    assert(sh("chown -h " .. NOBODY .. " " .. q(alice .. "/units")))
    H.fails(H.pm("export", file, "--to", "systemd", "--out", alice .. "/units"), "another user's")
    assert.is_true(empty(victim))
    -- the link itself another user's, in root's folder
    assert(sh("ln -s " .. q(victim) .. " " .. q(home .. "/theirs")))
    assert(sh("chown -h " .. NOBODY .. " " .. q(home .. "/theirs")))
    H.fails(H.pm("export", file, "--to", "systemd", "--out", home .. "/theirs"), "another user's")
    assert.is_true(empty(victim))
  end)

  it("refuses a folder others may write to on the way, takes a sticky one", function()
    if not as_root() then return end
    local shared = home .. "/shared"
    core.mkdir(shared, 509)
    core.chmod(shared, 509) -- 0775, not sticky: the group may rename what is in it
    H.fails(H.pm("export", file, "--to", "systemd", "--out", shared .. "/new"), "others may write")
    assert.is_nil(core.stat(shared .. "/new"))
    local sticky = home .. "/sticky"
    core.mkdir(sticky, 1023)
    core.chmod(sticky, 1023) -- 01777, as /tmp
    local r = H.ok(H.pm("export", file, "--to", "systemd", "--out", sticky .. "/mine"))
    assert.equal(sticky .. "/mine/api.service\n", r.out)
    assert.truthy(util.read_file(sticky .. "/mine/api.service"):find("ExecStart=/bin/sleep 60", 1, true))
  end)

  it("follows root's own link to root's folder", function()
    if not as_root() then return end
    assert(sh("ln -s " .. q(victim) .. " " .. q(home .. "/mine")))
    H.ok(H.pm("export", file, "--to", "systemd", "--out", home .. "/mine"))
    assert.truthy(core.stat(victim .. "/api.service"))
  end)
end)
