-- A health check's address (health.check_spec): an IP address or
-- localhost, never a name the daemon would look up; ":PORT" (loopback)
-- as before, since journals and dumps hold such checks.
local health = require "pm.health"

describe("a health check's address", function()
  it("takes IPv4, [IPv6], localhost and :PORT; refuses a name with one line", function()
    for _, h in ipairs({
      { tcp = "127.0.0.1:80" }, { tcp = "localhost:80" }, { tcp = ":3000" }, { tcp = "[::1]:80" },
      { http = "http://127.0.0.1:8080/health" }, { http = "http://localhost/" }, { http = "http://[::1]:8080/x" },
    }) do
      local ok, err = health.check_spec(h)
      assert.is_true(ok, (h.tcp or h.http) .. ": " .. tostring(err))
    end
    local ok, err = health.check_spec({ tcp = "db:5432" })
    assert.is_nil(ok)
    assert.equal("health.tcp: db is not an IP address nor localhost (the daemon looks up no names)", err)
    ok, err = health.check_spec({ http = "http://db.internal/health" })
    assert.is_nil(ok)
    assert.truthy(err:find("db.internal is not an IP address", 1, true), err)
    assert.is_nil((health.check_spec({ http = "https://127.0.0.1/" })))
  end)
end)
