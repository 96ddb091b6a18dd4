-- Issue 16, item 14: the card of `pm describe` shows the variables of an
-- app's environment that differ from the daemon's (base), all of them
-- without a base (`pm describe --env`); item 7: its version, user and
-- node.js version rows, and a last exit by a signal (exit_code null).
local view = require "pm.view"
local util = require "pm.util"

local function desc(env)
  return { name = "api", pm_id = 0, pid = 1234, monit = { cpu = 0, memory = 0 },
    pm2_env = { status = "online", namespace = "default", pm_uptime = 0, restart_time = 0,
      instances = 1, version = "1.4.0", username = "www", node_version = "20.1.0",
      exit_code = util.null, exit_signal = "SIGKILL", env = env } }
end

local function env_lines(card)
  return card:match("\nenv:\n(.*)$")
end

describe("the card's env rows", function()
  local env = { PATH = "/usr/bin", HOME = "/root", NODE_ENV = "production", pm_id = "0" }

  it("show only what differs from the base environment, and say how many are left out", function()
    local base = { PATH = "/usr/bin", HOME = "/home/other", TERM = "xterm" }
    assert.equal("  HOME=/root\n  NODE_ENV=production\n  pm_id=0\n"
      .. "  (and 1 as in the daemon's environment: --env shows them)\n",
      env_lines(view.card(desc(env), 0, base)))
  end)

  it("show every variable without a base", function()
    assert.equal("  HOME=/root\n  NODE_ENV=production\n  PATH=/usr/bin\n  pm_id=0\n",
      env_lines(view.card(desc(env), 0)))
  end)

  it("come after version, user and node.js version rows; a signal's exit shows no exit code", function()
    local card = view.card(desc({}), 0)
    assert.truthy(card:find("\nversion%s+1%.4%.0\n"), card)
    assert.truthy(card:find("\nuser%s+www\n"), card)
    assert.truthy(card:find("\nnode%.js version%s+20%.1%.0\n"), card)
    assert.truthy(card:find("\nlast exit signal%s+SIGKILL\n"), card)
    assert.falsy(card:find("last exit code", 1, true), card)
    local _, details = view.monit_details(desc({}))
    local _, _, more = view.monit_details(desc({}))
    assert.is_string(details)
    assert.truthy(more:find("last exit SIGKILL", 1, true), more)
  end)
end)
