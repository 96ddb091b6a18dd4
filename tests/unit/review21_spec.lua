-- Issue 21's review: what a Lua app without an IPC channel is told.
describe("pm.child without a channel", function()
  it("says how to get one (ipc = true), not only ipc = false", function()
    assert.is_nil(os.getenv("NODE_CHANNEL_FD"))
    package.loaded["pm.child"] = nil
    local child = require "pm.child"
    for _, call in ipairs({ function() return child.send(1) end, function() return child.on_message(print) end,
      function() return child.fd() end }) do
      local ok, err = call()
      assert.is_nil(ok)
      assert.truthy(tostring(err):find("declare the app with ipc = true", 1, true), tostring(err))
    end
    package.loaded["pm.child"] = nil
  end)
end)
