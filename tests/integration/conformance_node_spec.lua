-- Issue 23 (PM2's e2e suite: internals/source_map.sh, cli/cli-actions-2.sh):
-- PM2's source map support for Node apps (Node's --enable-source-maps: on
-- when the script has its .map beside it or --source-map-support says so,
-- off with --disable-source-map-support), and PM2's flags that have
-- nothing to do here (--no-automation, --no-vizion...) accepted.
local H = require "pmtest"
local appdecl = require "pm.app"

local ok = H.ok

local node = appdecl.find_in_path("node", os.getenv("PATH"))

describe("Node apps", function()
  before_each(function() H.new_home() end)
  after_each(function() H.cleanup() end)

  -- a script whose whole first line maps to orig.ts
  local function mapped()
    H.write(H.home .. "/app.js", "throw new Error('boom')\n//# sourceMappingURL=app.js.map\n")
    H.write(H.home .. "/app.js.map", '{"version":3,"file":"app.js","sources":["orig.ts"],"names":[],"mappings":"AAAA"}')
  end

  local function stack_of(name, ...)
    ok(H.pm("start", H.home .. "/app.js", "--name", name, "--no-autorestart", "-s", ...))
    local path = H.home .. "/logs/" .. name .. "-error.log"
    return H.wait_for(function()
      local s = require("pm.util").read_file(path)
      return s and s:find("boom", 1, true) and s:find("\n    at ", 1, true) and s
    end, 10000, "the stack in " .. path)
  end

  it("a stack names the source a .map beside the script points to; not with --disable-source-map-support", function()
    if not node then return pending("needs node") end
    mapped()
    assert.is_truthy(stack_of("on"):find("orig.ts", 1, true))
    assert.is_falsy(stack_of("off", "--disable-source-map-support", "--no-automation", "--no-vizion")
      :find("orig.ts", 1, true))
    local p = H.proc("off")
    assert.is_true(p.pm2_env.disable_source_map_support)
  end)
end)
