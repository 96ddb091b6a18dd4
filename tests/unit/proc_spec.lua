-- The process record (proc.lua): its fields are listed once, by owner,
-- and a test build seals records.
local proc = require "pm.proc"

describe("the process record", function()
  local strict
  before_each(function() strict = proc.strict end)
  after_each(function() proc.strict = strict end)

  it("lists every field once, each with what it holds", function()
    local seen = {}
    for owner, fields in pairs(proc.FIELDS) do
      for k, doc in pairs(fields) do
        assert.is_nil(seen[k], ("%s is listed by %s and %s"):format(k, tostring(seen[k]), owner))
        seen[k] = owner
        assert.is_string(doc)
        assert.is_true(#doc > 5, k)
      end
    end
    assert.equal("lifecycle", seen.status)
  end)

  it("in a test build, writing a field nobody owns raises; owned ones are written", function()
    proc.strict = true
    local p = proc.new({ pm_id = 1, status = "stopped" })
    p.pid = 42 -- (nil before: checked, and owned)
    p.status = "online"
    assert.equal(42, p.pid)
    assert.equal("online", p.status)
    local ok, err = pcall(function() p.stauts = "online" end)
    assert.is_false(ok)
    assert.matches('no field "stauts"', err)
    assert.is_nil(rawget(p, "stauts"))
    ok, err = pcall(proc.new, { pm_id = 2, nme = "x" })
    assert.is_false(ok)
    assert.matches('no field "nme"', err)
  end)

  it("outside a test build, a record is a plain table", function()
    proc.strict = false
    local p = proc.new({ pm_id = 3 })
    assert.is_nil(getmetatable(p))
  end)

  it("keeps the last ten events of a record, as JSON", function()
    local p = proc.new({ pm_id = 4, name = "e", decl = { namespace = "default" }, status = "online" })
    for i = 1, 12 do proc.event(p, i % 2 == 0 and "start" or "exit", { code = i }) end
    assert.equal(10, #p.history)
    assert.matches('"event":"start","code":12}$', p.history[10])
    assert.matches('"event":"exit","code":3}$', p.history[1])
  end)
end)
