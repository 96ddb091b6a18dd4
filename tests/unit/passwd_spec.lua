-- The one reader of /etc/passwd and /etc/group (util.passwd, util.group),
-- fed files written here.
local util = require "pm.util"

local function file_with(text)
  local path = os.tmpname()
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
  return path
end

describe("util.passwd", function()
  local path
  setup(function()
    path = file_with(table.concat({
      "root:x:0:0:root:/root:/bin/bash",
      "# a comment",
      "+broken",
      "odd:x:notanumber:0::/:/bin/sh",
      "app:x:1001:1002:The App,,,:/srv/app:/usr/sbin/nologin",
      "toor:x:0:0:second root:/root:/bin/sh",
      "empty:x:1003:1003::/:",
    }, "\n") .. "\n")
  end)
  teardown(function() os.remove(path) end)

  it("finds a user by name, or by uid as a number or a string", function()
    local by_name = util.passwd("app", path)
    assert.same({ name = "app", passwd = "x", uid = 1001, gid = 1002, gecos = "The App,,,", dir = "/srv/app",
      shell = "/usr/sbin/nologin" }, by_name)
    assert.same(by_name, util.passwd(1001, path))
    assert.same(by_name, util.passwd("1001", path))
  end)

  it("takes the first entry of a uid, as getpwuid does", function()
    assert.equal("root", util.passwd(0, path).name)
    assert.equal("toor", util.passwd("toor", path).name)
  end)

  it("keeps empty fields, skips lines without a numeric uid, and gives nil for the unknown", function()
    assert.equal("", util.passwd("empty", path).shell)
    assert.is_nil(util.passwd("odd", path))
    assert.is_nil(util.passwd("+broken", path))
    assert.is_nil(util.passwd("nobody-here", path))
    assert.is_nil(util.passwd(4242, path))
    assert.is_nil(util.passwd("app", path .. ".missing"))
  end)

  it("reads /etc/passwd by default", function()
    local root = util.passwd(0)
    assert.is_table(root)
    assert.equal(0, root.uid)
  end)
end)

describe("util.group", function()
  local path
  setup(function()
    path = file_with("root:x:0:\nwww:x:33:app,deploy\n")
  end)
  teardown(function() os.remove(path) end)

  it("finds a group by name or gid", function()
    assert.same({ name = "www", passwd = "x", gid = 33, members = "app,deploy" }, util.group("www", path))
    assert.equal("www", util.group(33, path).name)
    assert.equal(0, util.group("root", path).gid)
    assert.is_nil(util.group("nogroup-here", path))
  end)
end)
