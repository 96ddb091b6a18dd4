-- Issue 16 item 6: the script forms PM2 accepts. A script with spaces is a
-- command line for the shell; a .json ecosystem file is JavaScript to PM2
-- (comments, trailing commas: read through node when it is installed,
-- refused with line:column when not); process.yml / .yaml files.
local H = require "pmtest"
local util = require "pm.util"
local core = require "pm.core"

local ok, fails, write = H.ok, H.fails, H.write

local NODE = core.access("/usr/bin/node", "x") or core.access("/usr/local/bin/node", "x")

local function env_of(pid)
  return H.wait_for(function()
    local e = H.environ(pid)
    return e and e.PM_APP_UID and e
  end, 5000, "the environment of " .. tostring(pid))
end

local function log_holds(name, text)
  return H.wait_for(function()
    local s = util.read_file(H.out_log(name))
    return s and s:find(text, 1, true)
  end, 5000, text .. " in the log of " .. name)
end

describe("a script with spaces", function()
  before_each(function() H.new_home() end)
  after_each(function() H.cleanup() end)

  it('pm start "npm run start" --name x runs the line through the shell', function()
    if not core.access("/usr/bin/npm", "x") and not core.access("/usr/local/bin/npm", "x") then
      pending("npm is not installed")
      return
    end
    write(H.home .. "/package.json", util.encode({ name = "x", version = "1.0.0",
      scripts = { start = "echo started-by-npm && exec sleep 1000" } }))
    ok(H.pm("start", "npm run start", "--name", "x", { cwd = H.home }))
    local p = H.online(H.proc("x"))
    assert.equal(0, p.pm2_env.restart_time)
    log_holds("x", "started-by-npm")
    assert.equal("x", p.name)
  end)

  it("without --name the app is named after the line; the shell's words work", function()
    ok(H.pm("start", "echo one; echo two && exec sleep 1000", "-s", { cwd = H.home }))
    local p = H.online(H.proc("echo one; echo two && exec sleep 1000"))
    log_holds(p.name, "one\ntwo\n")
    assert.equal(0, p.pm2_env.restart_time)
    -- a known name again: started, not a second app
    ok(H.pm("stop", "echo one; echo two && exec sleep 1000", "-s"))
    ok(H.pm("start", "echo one; echo two && exec sleep 1000", "-s"))
    assert.equal(1, #H.jlist())
    H.online(H.proc(p.name))
  end)

  it("arguments after -- follow the line's words", function()
    ok(H.pm("start", 'printf "%s|" "$@"; echo; exec sleep 1000', "--name", "args", "-s", "--", "a b", "c"))
    log_holds("args", "a b|c|\n")
  end)

  it("a script path with a space that exists is the script itself", function()
    local dir = H.home .. "/my app"
    assert(core.mkdir(dir, 493))
    write(dir .. "/run me.sh", "#!/bin/sh\necho i-am-the-file\nexec sleep 1000\n")
    os.execute("chmod 755 " .. H.shquote(dir .. "/run me.sh"))
    ok(H.pm("start", dir .. "/run me.sh", "-s"))
    local p = H.online(H.proc("run me"))
    assert.equal(dir .. "/run me.sh", p.pm2_env.pm_exec_path)
    log_holds("run me", "i-am-the-file")
  end)
end)

describe("a .json ecosystem file with comments and trailing commas", function()
  before_each(function() H.new_home() end)
  after_each(function() H.cleanup() end)

  local TEXT = [[
{
  // PM2 reads this as JavaScript
  "apps": [
    {
      "name": "commented",
      "script": "/bin/sleep",
      "args": ["1000"],
      /* a block comment */
      "env": { "FROM": "json5ish", },
    },
  ],
}
]]

  it("append_env_to_name: --env production names the app <name>-production (PM2's); without --env, <name>",
    function()
    write(H.home .. "/ecosystem.json", [[{ "apps": [{ "name": "job", "script": "/bin/sleep", "args": "1000",
      "append_env_to_name": true, "env_production": { "X": "1" } }] }]])
    -- (--only names the file's name, as PM2's)
    ok(H.pm("start", "ecosystem.json", "--env", "production", "--only", "job", "-s", { cwd = H.home }))
    H.online(H.proc("job-production"))
    ok(H.pm("start", "ecosystem.json", "-s", { cwd = H.home }))
    H.online(H.proc("job"))
    -- stop and delete take PM2's --env too
    ok(H.pm("stop", "ecosystem.json", "--env", "production", "-s", { cwd = H.home }))
    assert.equal("stopped", H.proc("job").pm2_env.status)
  end)

  it("pm start ecosystem.json: read through node, as PM2 does", function()
    if not NODE then pending("node is not installed") return end
    write(H.home .. "/ecosystem.json", TEXT)
    ok(H.pm("start", "ecosystem.json", "-s", { cwd = H.home }))
    local p = H.online(H.proc("commented"))
    assert.equal("json5ish", env_of(p.pid).FROM)
  end)

  it("without node: refused with line:column, nothing started", function()
    write(H.home .. "/ecosystem.json", TEXT)
    ok(H.pm("ping")) -- the daemon, with the usual PATH
    local r = fails(H.pm("start", "ecosystem.json", { cwd = H.home, env = { PATH = "/nonexistent-pm-path" } }),
      H.home .. "/ecosystem.json:2:3: ", "node")
    assert.is_truthy(r.err:find("comments and trailing commas", 1, true), r.err)
    assert.equal(0, #H.jlist())
  end)

  it("a plain JSON error gives line:column", function()
    write(H.home .. "/bad.json", '{\n  "apps": [\n    { "name": "a", "script": "/bin/sleep" "args": ["1"] }\n  ]\n}\n')
    fails(H.pm("start", "bad.json", { cwd = H.home }), H.home .. "/bad.json:3:")
    ok(H.pm("ping"))
    fails(H.pm("start", "bad.json", { cwd = H.home, env = { PATH = "/nonexistent-pm-path" } }),
      H.home .. "/bad.json:3:43: ")
    assert.equal(0, #H.jlist())
  end)
end)

describe("a YAML ecosystem file", function()
  before_each(function() H.new_home() end)
  after_each(function() H.cleanup() end)

  it("pm start process.yml starts its apps (PM2's keys, env, --env)", function()
    write(H.home .. "/process.yml", [[
apps:
  - name: yapp
    script: /bin/sleep
    args: ["1000"]
    instances: 2
    max_restarts: 3
    env:
      MODE: dev
      ANSWER: 42
      FLAG: yes
    env_production:
      MODE: production
  - name: other
    script: /bin/sleep
    args: "1000"
]])
    ok(H.pm("start", "process.yml", "--env", "production", "-s", { cwd = H.home }))
    local list = H.jlist()
    assert.equal(3, #list)
    local a = H.by_name(list)
    H.online(a.yapp)
    H.online(a.other)
    assert.equal(3, a.yapp.pm2_env.max_restarts)
    local e = env_of(a.yapp.pid)
    assert.equal("production", e.MODE)
    assert.equal("42", e.ANSWER)
    assert.equal("yes", e.FLAG, "YAML 1.2 (js-yaml's, PM2's): yes is a string")
    -- the file is a target
    ok(H.pm("stop", "process.yml", "-s", { cwd = H.home }))
    assert.equal("stopped", H.status("yapp"))
  end)

  it("a .yaml file too; a syntax error gives line:column and leaves no errored app", function()
    write(H.home .. "/apps.yaml", "- name: ylist\n  script: /bin/sleep\n  args: [\"1000\"]\n")
    ok(H.pm("start", "apps.yaml", "-s", { cwd = H.home }))
    H.online(H.proc("ylist"))
    write(H.home .. "/process.yml", "apps:\n  - name: bad\n   script: /bin/sleep\n")
    fails(H.pm("start", "process.yml", { cwd = H.home }), H.home .. "/process.yml:3:")
    assert.equal(1, #H.jlist())
    assert.is_nil(H.proc("bad"))
    assert.is_nil(H.proc("process"))
  end)

  it("aliases that repeat a node a billion times are refused, the daemon answers", function()
    local lines = { "a: &a [x, x, x, x, x, x, x, x, x, x]" }
    local prev = "a"
    for i = 1, 9 do
      local name = "l" .. i
      lines[#lines + 1] = ("%s: &%s [*%s, *%s, *%s, *%s, *%s, *%s, *%s, *%s, *%s, *%s]"):format(name, name,
        prev, prev, prev, prev, prev, prev, prev, prev, prev, prev)
      prev = name
    end
    lines[#lines + 1] = "apps: []"
    write(H.home .. "/bomb.yml", table.concat(lines, "\n") .. "\n")
    fails(H.pm("start", "bomb.yml", { cwd = H.home }), "bomb.yml", "more than")
    ok(H.pm("ping"))
  end)
end)
