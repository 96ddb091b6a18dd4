-- Issue 22, items 4 and 5 without a daemon: coroutines in the sandbox
-- cannot escape a cut-off (an error coroutine.wrap rethrows, or one a hook
-- raises again, runs pm's handler with the hook live), bit is there, a
-- hook's fingerprint (what a re-applied file compares) and the plain copy
-- of a file's value (__index tables kept, functions never run).
local hooks = require "pm.hooks"
local ecosystem = require "pm.ecosystem"

local function hook(body)
  local path = os.tmpname()
  local f = assert(io.open(path, "w"))
  f:write("return function(...)\n" .. body .. "\nend\n")
  f:close()
  local ok, fn = hooks.run(assert(hooks.loadfile(path)))
  os.remove(path)
  assert(ok, fn)
  return fn
end

describe("the sandbox", function()
  it("cuts off a loop in a coroutine.wrap, and one whose cut-off the hook raises again", function()
    local ok, err = hooks.run(hook("local co = coroutine.wrap(function() while true do end end)\nco()"))
    assert.is_false(ok)
    assert.truthy(err:find("^cut off: ran over 10 ms at .*:2$"), err)
    ok, err = hooks.run(hook([[
local co = coroutine.create(function() while true do end end)
local _, e = coroutine.resume(co)
error(e)]]))
    assert.is_false(ok)
    assert.truthy(err:find("^cut off: ran over"), err)
    ok, err = hooks.run(hook([[
local co = coroutine.create(function() while true do end end)
for _ = 1, 1e9 do coroutine.resume(co) end
return "escaped"]]))
    assert.is_false(ok)
    assert.truthy(err:find("^cut off"), err)
    assert.same({ true, "ok" }, { hooks.run(hook("return 'ok'")) }) -- (and the next runs)
  end)

  it("has bit and coroutine", function()
    assert.same({ true, 2, 3 }, { hooks.run(hook([[
local co = coroutine.wrap(function(a) local b = coroutine.yield(bit.band(a, 3)) return bit.bor(b, 1) end)
return co(6), co(2)]])) })
  end)

  it("fingerprints a hook by its code and plain upvalues, not its line", function()
    local a = hook("return 'stop'")
    local b = hook("return 'stop'")
    local c = hook("return 'restart'")
    assert.equal(hooks.fingerprint(a), hooks.fingerprint(b))
    assert.are_not.equal(hooks.fingerprint(a), hooks.fingerprint(c))
    assert.is_nil(hooks.fingerprint(nil))
  end)
end)

describe("ecosystem.plain_copy", function()
  it("keeps __index tables as defaults, through a chain, and never runs an __index function", function()
    local defaults = { script = "a.sh", max_restarts = 7 }
    local base = setmetatable({ kill_timeout = 3000 }, { __index = defaults })
    local app = setmetatable({ name = "x", max_restarts = 2 }, { __index = base })
    assert.same({ name = "x", max_restarts = 2, kill_timeout = 3000, script = "a.sh" }, ecosystem.plain_copy(app))
    local ran = false
    local odd = setmetatable({ name = "y" }, { __index = function() ran = true end })
    assert.same({ name = "y" }, ecosystem.plain_copy(odd))
    assert.is_false(ran)
    local loop = {}
    setmetatable(loop, { __index = loop })
    loop.a = 1
    assert.same({ a = 1 }, ecosystem.plain_copy(loop))
  end)
end)
