-- Issue 20, item 3: env_file (a path or a list, relative to the ecosystem
-- file; "-path" optional, systemd's rule) in the dotenv syntax of docker
-- compose and systemd's EnvironmentFile=; its variables sit under env and
-- env_<name>, which override them; read again when the file is started,
-- restarted or reloaded; a bad line is refused with path:line and changes
-- nothing; `pm start app.js --env-file .env` on the command line.
local H = require "pmtest"
local core = require "pm.core"

local ok, fails, write = H.ok, H.fails, H.write

local function env_of(name)
  local p = H.online(H.proc(name))
  return H.wait_for(function()
    local e = H.environ(p.pid)
    return e and e.PM_APP_UID and e
  end, 5000, "the environment of " .. name), p.pid
end

local DOTENV = [[
# the database
export DB_HOST=db.internal
DB_PASS='s3cr$t # not a comment'
GREETING="hello \"world\"\nsecond line"
PLAIN=some value   # a comment
  INDENTED = yes
EMPTY=
OVERRIDDEN=from-the-file
STAGED=from-the-file
]]

local FILE = [[
return { apps = { { name = "web", script = "/bin/sleep", args = { "1000" },
  env_file = { "conf/.env", "-conf/.env.local" },
  env = { OVERRIDDEN = "from-env" },
  env_production = { STAGED = "from-env_production" } } } }
]]

describe("env_file", function()
  before_each(function() H.new_home() end)
  after_each(function() H.cleanup() end)

  it("quotes, comments and export read as docker compose does; env and env_<name> override the file", function()
    core.mkdir(H.home .. "/conf", 493)
    write(H.home .. "/conf/.env", DOTENV)
    local file = write(H.home .. "/ecosystem.lua", FILE)
    ok(H.pm("start", file, "--env", "production", "-s", { cwd = "/" }))
    local env = env_of("web")
    assert.equal("db.internal", env.DB_HOST)
    assert.equal("s3cr$t # not a comment", env.DB_PASS)
    assert.equal('hello "world"\nsecond line', env.GREETING)
    assert.equal("some value", env.PLAIN)
    assert.equal("yes", env.INDENTED)
    assert.equal("", env.EMPTY)
    assert.equal("from-env", env.OVERRIDDEN)
    assert.equal("from-env_production", env.STAGED)
    assert.is_nil(env["# the database"])

    -- read again on reload: a new value, and the optional file now there
    write(H.home .. "/conf/.env", DOTENV:gsub("db%.internal", "db2.internal"))
    write(H.home .. "/conf/.env.local", "LOCAL=1\nDB_HOST=local-db\n")
    ok(H.pm("reload", file, "-s"))
    H.wait_for(function() return env_of("web").DB_HOST == "local-db" end, 5000, "DB_HOST from .env.local")
    assert.equal("1", env_of("web").LOCAL)
  end)

  it("a bad line is refused with path:line, and what runs is left as it was", function()
    core.mkdir(H.home .. "/conf", 493)
    write(H.home .. "/conf/.env", DOTENV)
    local file = write(H.home .. "/ecosystem.lua", FILE)
    ok(H.pm("start", file, "-s"))
    local _, pid = env_of("web")
    write(H.home .. "/conf/.env", "A=1\n# fine\nthis line has no equals sign TOPSECRET\nB=2\n")
    for _, verb in ipairs({ "restart", "reload", "start" }) do
      local r = fails(H.pm(verb, file, "-s"), H.home .. "/conf/.env:3: ")
      assert.is_nil(r.err:find("TOPSECRET", 1, true), "the line itself is not shown")
    end
    write(H.home .. "/conf/.env", "A=\"never closed\nB=2\n")
    fails(H.pm("reload", file, "-s"), H.home .. "/conf/.env:1: ")
    local p = H.proc("web")
    assert.equal(pid, p.pid)
    assert.equal("online", p.pm2_env.status)
    assert.equal(0, p.pm2_env.restart_time)
    assert.equal("db.internal", env_of("web").DB_HOST)
  end)

  it("a missing file is an error unless its path starts with '-'", function()
    local file = write(H.home .. "/ecosystem.lua", [[
return { apps = { { name = "web", script = "/bin/sleep", args = { "1000" }, env_file = "missing.env" } } }
]])
    fails(H.pm("start", file, "-s"), H.home .. "/missing.env: no such file")
    write(file, [[
return { apps = { { name = "web", script = "/bin/sleep", args = { "1000" }, env_file = "-missing.env" } } }
]])
    ok(H.pm("start", file, "-s"))
  end)

  it("works in JSON files too (envFile)", function()
    write(H.home .. "/app.env", "FROM_JSON=1\n")
    local file = write(H.home .. "/ecosystem.json",
      '{"apps":[{"name":"j","script":"/bin/sleep","args":["1000"],"envFile":"app.env"}]}\n')
    ok(H.pm("start", file, "-s"))
    assert.equal("1", env_of("j").FROM_JSON)
  end)

  it("pm start app --env-file .env (relative to the caller's cwd)", function()
    local dir = H.home .. "/svc"
    core.mkdir(dir, 493)
    write(dir .. "/.env", "export TOKEN='t o k'\nMODE=cli\n")
    ok(H.pm("start", "/bin/sleep", "--name", "cli", "--env-file", ".env", "-s", "--", "1000", { cwd = dir }))
    local env = env_of("cli")
    assert.equal("t o k", env.TOKEN)
    assert.equal("cli", env.MODE)
    write(dir .. "/bad.env", "1BAD=x\n")
    fails(H.pm("start", "/bin/sleep", "--name", "cli2", "--env-file", "bad.env", "-s", "--", "1000", { cwd = dir }),
      dir .. "/bad.env:1: ")
    assert.is_nil(H.proc("cli2"))
  end)
end)
