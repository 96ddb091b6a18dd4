-- The pure pieces of pm export and pm deploy: cron_restart as systemd's
-- OnCalendar= (checked by `systemd-analyze calendar` when it is there),
-- unit names, the YAML printer's quoting read back by a YAML 1.1 reader
-- (PyYAML, docker-compose's) and a 1.2 one (lua-yaml), deploy sections
-- refused with one line.
local export = require "pm.export"
local systemd = require "pm.export_systemd"
local deploy = require "pm.deploy"
local util = require "pm.util"
local core = require "pm.core"

local function sh(cmd)
  local p = io.popen(cmd .. " 2>&1; echo \"rc=$?\"")
  local out = p:read("*a")
  p:close()
  return tonumber(out:match("rc=(%d+)\n$")), out
end

describe("pm export: systemd", function()
  it("turns cron_restart into OnCalendar= (both day fields: two of them, as cron fires on either)", function()
    assert.same({ "Mon..Fri *-*-* 03:00:00" }, systemd.calendar("0 3 * * 1-5"))
    assert.same({ "*-*-01,15 *:00,15,30,45:00" }, systemd.calendar("*/15 * 1,15 * *"))
    assert.same({ "*-*-13 12:00:00", "Fri *-*-* 12:00:00" }, systemd.calendar("0 12 13 * fri"))
    assert.same({ "*-01,07-01 00:00:30" }, systemd.calendar("30 0 0 1 jan,jul *"))
    assert.same({ "Sun,Sat *-*-* 00:00:00" }, systemd.calendar("0 0 * * 0,6"))
    assert.is_nil(systemd.calendar("61 * * * *"))
    local code = sh("command -v systemd-analyze >/dev/null")
    if code ~= 0 then return pending("systemd-analyze is not installed (make deps)") end
    for _, expr in ipairs({ "0 3 * * 1-5", "*/15 * 1,15 * *", "0 12 13 * fri", "30 0 0 1 jan,jul *" }) do
      for _, cal in ipairs(systemd.calendar(expr)) do
        local rc, out = sh("systemd-analyze calendar " .. deploy.quote(cal))
        assert.equal(0, rc, cal .. ": " .. out)
      end
    end
  end)

  it("names units as systemd-escape does, and keeps % and $ out of expansion", function()
    assert.equal("api", systemd.unit_name("api"))
    assert.equal("my\\x20app", systemd.unit_name("my app"))
    assert.equal("a\\x2fb", systemd.unit_name("a/b"))
    assert.equal("\\x2ehidden", systemd.unit_name(".hidden"))
    assert.equal("100%%", systemd.word("100%"))
    assert.equal("$$HOME", systemd.word("$HOME"))
    assert.equal('"a b"', systemd.word("a b"))
  end)

  it("refuses an app whose path would end a unit's line", function()
    local d = assert(require("pm.app").normalize({ name = "x", script = "/bin/sleep", out_file = "/tmp/a\n[Service]" },
      { base = "/tmp" }))
    local files, err = export.export({ d }, { to = "systemd", source = "test" })
    assert.is_nil(files)
    assert.equal("app 'x': out_file holds a control character: a unit cannot hold it", err)
  end)
end)

describe("pm export: systemd lines", function()
  local function units(d)
    d = assert(require("pm.app").normalize(d, { base = "/tmp" }))
    return export.export({ d }, { to = "systemd", source = "test" })
  end

  it("refuses an instance_var that would end the line (a unit injected), quotes one that would not", function()
    local files, err = units({ name = "x", script = "/bin/sleep", instances = 2,
      instance_var = "X\n[Service]\nExecStartPre=/bin/touch /tmp/pwned" })
    assert.is_nil(files)
    assert.equal("app 'x': instance_var holds a control character: a unit cannot hold it", err)
    files = assert(units({ name = "x", script = "/bin/sleep", instances = 2, instance_var = "A 100%" }))
    assert.truthy(files[1].text:find('\nEnvironment="A 100%%%%=%%i"\n'), files[1].text)
  end)

  it("writes a WorkingDirectory= with a space or a $ as it is (it is neither unquoted nor expanded)", function()
    local dir = os.tmpname()
    os.remove(dir)
    dir = dir .. " my app$x"
    core.mkdir(dir, 448)
    local files = assert(units({ name = "x", script = "/bin/sleep", args = { "1" }, cwd = dir }))
    local line = files[1].text:match("\nWorkingDirectory=([^\n]*)\n")
    local code, out = 0, ""
    if sh("command -v systemd-analyze >/dev/null") == 0 then
      local f = assert(io.open(dir .. "/x.service", "w"))
      f:write(files[1].text)
      f:close()
      code, out = sh("systemd-analyze verify " .. deploy.quote(dir .. "/x.service"))
    end
    os.execute("rm -rf " .. deploy.quote(dir))
    assert.equal(dir, line)
    assert.equal(0, code, out)
  end)

  it("runs an app of a user's pm as that user (a system unit runs as root without User=)", function()
    local d = assert(require("pm.app").normalize({ name = "x", script = "/bin/sleep" }, { base = "/tmp" }))
    local files = assert(export.export({ d }, { to = "systemd", source = "test", caller_user = "alice" }))
    assert.truthy(files[1].text:find("\nUser=alice\n", 1, true), files[1].text)
    files = assert(export.export({ d }, { to = "systemd", source = "test" })) -- (root's pm: root's apps)
    assert.is_nil(files[1].text:find("\nUser=", 1, true))
  end)

  it("warns that wait_ready needs sd_notify's READY=1 (PM2's process.send('ready') does not reach systemd)", function()
    local d = assert(require("pm.app").normalize({ name = "x", script = "/bin/sleep", wait_ready = true },
      { base = "/tmp" }))
    local _, _, warnings = assert(export.export({ d }, { to = "systemd", source = "test" }))
    assert.same({ "app 'x': wait_ready is Type=notify: the app must send READY=1 to $NOTIFY_SOCKET (sd_notify); "
      .. "PM2's process.send('ready') does not reach systemd (or --keep-pm)" }, warnings)
    _, _, warnings = assert(export.export({ d }, { to = "systemd", source = "test", keep_pm = true, file = "/e.lua" }))
    assert.same({}, warnings)
  end)

  it("keeps a cron_restart's line breaks out of the timer's Description=", function()
    local files = assert(units({ name = "x", script = "/bin/sleep", cron_restart = "0 3 * * *\n" }))
    for _, f in ipairs(files) do
      for line in f.text:gmatch("[^\n]+") do
        assert.truthy(line:match("^#") or line:match("^%[%u%a+%]$") or line:match("^%u%a+="), f.name .. ": " .. line)
      end
    end
  end)
end)

describe("pm export: names and values the targets would change", function()
  local function decl(d) return assert(require("pm.app").normalize(d, { base = "/tmp" })) end

  it("refuses two apps that one DNS name stands for (a file or service written over the other's)", function()
    local decls = { decl({ name = "a_b", script = "/bin/sleep" }), decl({ name = "A-b", script = "/bin/sleep" }) }
    for _, to in ipairs({ "kubernetes", "nomad", "compose" }) do
      local files, err = export.export(decls, { to = to, source = "test", image = "x:1" })
      assert.is_nil(files)
      assert.equal(("apps 'a_b' and 'A-b' would both be named 'a-b' in %s (lower case letters, digits and '-'): "
        .. "rename one"):format(to), err)
    end
    assert.equal(2, #assert(export.export(decls, { to = "systemd", source = "test" })))
  end)

  it("says the containers run the apps at this host's paths", function()
    local d = decl({ name = "a", script = "/bin/sleep", cwd = "/tmp" })
    for _, to in ipairs({ "kubernetes", "compose" }) do
      local _, _, warnings = assert(export.export({ d }, { to = to, source = "test", image = "x:1" }))
      assert.same({ "the containers run the apps at this host's paths (/tmp): the image must hold them "
        .. "there (or --keep-pm with the ecosystem folder in /app, as ecosystem/Dockerfile)" }, warnings)
    end
  end)

  it("keeps a file's path in the head comment (a \\r in it would end the comment in YAML)", function()
    local d = decl({ name = "a", script = "/bin/sleep" })
    local files = assert(export.export({ d }, { to = "kubernetes", image = "x:1",
      source = "/srv/x\rkind: Secret\nb/ecosystem.lua" }))
    local doc = require("lyaml").load(files[1].text)
    assert.equal("Deployment", doc.kind)
    assert.is_nil(files[1].text:find("\r", 1, true))
  end)

  it("kubernetes: an app's $ stays a $ (Kubernetes expands $(VAR) in command, args and env values)", function()
    local d = decl({ name = "a", script = "/bin/sleep", args = { "$(HOME)" }, health = { exec = "test $X" },
      env = { PASS = "pa$$word", REF = "$(HOME)" } })
    local files = assert(export.export({ d }, { to = "kubernetes", source = "test", image = "x:1" }))
    local c = require("lyaml").load(files[1].text).spec.template.spec.containers[1]
    assert.same({ "$$(HOME)" }, c.args)
    assert.same({ { name = "PASS", value = "pa$$$$word" }, { name = "REF", value = "$$(HOME)" } }, c.env)
    assert.same({ "/bin/sh", "-c", "test $X" }, c.livenessProbe.exec.command) -- (a probe's is not expanded)
  end)

  it("nomad --keep-pm: pm runtime's health on a port Nomad picks, where Nomad's check reaches it", function()
    local decls = { decl({ name = "a", script = "/bin/sleep" }), decl({ name = "b", script = "/bin/sleep" }) }
    local files = assert(export.export(decls, { to = "nomad", source = "test", keep_pm = true, file = "/srv/e.lua" }))
    local job = util.decode(files[1].text)
    for _, g in ipairs(job.Job.TaskGroups) do
      local t = g.Tasks[1]
      local args = t.Config.args
      assert.equal("${NOMAD_ADDR_health}", args[#args]) -- (not 127.0.0.1: a raw_exec task is on the node's network)
      assert.equal("--health", args[#args - 1])
      assert.same({ { DynamicPorts = { { Label = "health" } } } }, g.Networks) -- (two apps on one node: no clash)
      assert.equal("health", t.Services[1].Checks[1].PortLabel)
    end
    package.path = "tests/helpers/?.lua;" .. package.path
    assert.same({}, require("nomad_job").check(job))
  end)

  it("compose: an app's $ stays a $ (Compose interpolates the file's values)", function()
    local d = decl({ name = "a", script = "/bin/sleep", args = { "$1" }, health = { exec = 'test -n "$PASS"' },
      env = { PASS = "pa$word", PRICE = "cost $5", HOME_REF = "${HOME}" } })
    local files = assert(export.export({ d }, { to = "compose", source = "test", image = "x:1" }))
    local text = files[1].text
    local svc = require("lyaml").load(text).services.a
    assert.same({ PASS = "pa$$word", PRICE = "cost $$5", HOME_REF = "$${HOME}" }, svc.environment)
    assert.same({ "$$1" }, svc.command)
    assert.same({ "CMD-SHELL", 'test -n "$$PASS"' }, svc.healthcheck.test)
    if sh("command -v docker-compose >/dev/null") ~= 0 then return pending("docker-compose is not installed") end
    local path = os.tmpname()
    local f = assert(io.open(path, "w"))
    f:write(text)
    f:close()
    local code, out = sh("HOME=/nowhere-r19 docker-compose -f " .. deploy.quote(path) .. " config")
    os.remove(path)
    assert.equal(0, code, out)
    assert.is_nil(out:find("/nowhere-r19", 1, true), out)
  end)
end)

describe("pm export: printers", function()
  local tricky = { "on", "off", "yes", "No", "y", "n", "true", "False", "null", "~", "", "0x10", "1e3", "08",
    "1_000", "12:30", "a: b", "- x", "#c", "x #y", "[a]", "{b}", "'q'", '"d"', "*ref", "&anchor", "!tag",
    "%d", "@at", "`tick", "line\nbreak", "tab\there", "é", "2026-01-01", ".5", "+1", "-", "?", "|", ">" }

  it("quotes every string a YAML reader would take for something else", function()
    local doc = { list = export.list(tricky), map = {} }
    for i, s in ipairs(tricky) do doc.map["k" .. i] = s end
    doc.n, doc.f, doc.t = 8080, 1.5, true
    local text = assert(export.yaml({ doc }))
    -- YAML 1.2 (lua-yaml)
    local back = require("lyaml").load(text)
    assert.same(tricky, back.list)
    assert.equal(8080, back.n)
    assert.equal(true, back.t)
    -- YAML 1.1 (PyYAML, as docker-compose reads)
    local f = os.tmpname()
    local fh = io.open(f, "w"); fh:write(text); fh:close()
    local rc, out = sh("python3 -c 'import json,sys,yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))' " .. f)
    os.remove(f)
    if rc ~= 0 and out:find("No module named", 1, true) then
      return pending("python3-yaml is not installed (docker-compose brings it: make deps)")
    end
    assert.equal(0, rc, out)
    local py = util.decode((out:gsub("rc=%d+\n$", "")))
    assert.same(tricky, py.list)
    for i, s in ipairs(tricky) do assert.equal(s, py.map["k" .. i]) end
    assert.equal(8080, py.n)
  end)

  it("prints JSON in a fixed key order, / unescaped, empty lists as []", function()
    local text = export.json({ Job = { TaskGroups = export.list(), ID = "a/b", Name = "x" } })
    assert.equal('{\n  "Job": {\n    "ID": "a/b",\n    "Name": "x",\n    "TaskGroups": []\n  }\n}\n', text)
    assert.same({ Job = { ID = "a/b", Name = "x", TaskGroups = {} } }, util.decode(text))
  end)
end)

describe("pm deploy: a section", function()
  local dir
  before_each(function()
    dir = os.tmpname()
    os.remove(dir)
    core.mkdir(dir, 448)
  end)
  after_each(function() os.execute("rm -rf " .. deploy.quote(dir)) end)

  local function section(text)
    local path = dir .. "/ecosystem.lua"
    local f = io.open(path, "w")
    f:write("return { apps = {}, deploy = { production = " .. text .. " } }")
    f:close()
    return deploy.config(path, "production")
  end

  it("takes PM2's section: hosts as a list, ssh_options as -o, env upper-cased, the default post-deploy", function()
    local cfg = assert(section([[{ user = "u", host = { "a", "b" }, ref = "origin/main", repo = "r",
      path = "/srv/app", ssh_options = "StrictHostKeyChecking=no", key = "/k", port = 2222,
      env = { node_env = "production" } }]]))
    assert.same({ "a", "b" }, cfg.hosts)
    assert.same({ "ssh", "-o", "StrictHostKeyChecking=no", "-p", "2222", "-i", "/k", "u@a" }, deploy.ssh_argv(cfg, "a"))
    assert.same({ { "NODE_ENV", "production" } }, cfg.env)
    assert.equal("pm startOrRestart 'ecosystem.lua' --env 'production'", cfg["post-deploy"])
    assert.equal('"$HOME"/\'app/current\'', deploy.path_of({ path = "~/app" }, "current"))
  end)

  it("reads PM2's ecosystem.config.js (through node)", function()
    if sh("command -v node >/dev/null") ~= 0 then return pending("node is not installed") end
    local path = dir .. "/ecosystem.config.js"
    local f = io.open(path, "w")
    f:write([[module.exports = { apps: [{ name: 'api', script: 'app.js' }],
  deploy: { production: { user: 'u', host: ['a', 'b'], ref: 'origin/main', repo: 'git@x:r.git',
    path: '/srv/' + 'app', 'post-deploy': 'npm ci && pm reload ecosystem.config.js --env production' } } };
]])
    f:close()
    local cfg = assert(deploy.config(path, "production"))
    assert.same({ "a", "b" }, cfg.hosts)
    assert.equal("/srv/app", cfg.path)
    assert.equal("npm ci && pm reload ecosystem.config.js --env production", cfg["post-deploy"])
    f = io.open(path, "w")
    f:write("module.exports = { apps: [], deploy: { production: { host: 'h', repo: 'r', path: '/p' } } ")
    f:close()
    local _, err = deploy.config(path, "production")
    assert.truthy(err:find("ecosystem.config.js", 1, true), err)
    assert.is_nil(err:find("\n", 1, true))
  end)

  it("refuses what it cannot use, with one line", function()
    local function refused(text, plain)
      local cfg, err = section(text)
      assert.is_nil(cfg)
      assert.truthy(err:find(plain, 1, true), err)
      assert.is_nil(err:find("\n", 1, true))
    end
    refused([[{ host = "h", ref = "r", path = "/p" }]], "deploy.production.repo is required")
    refused([[{ host = "h", repo = "x", ref = "r", path = "rel/p" }]], "must be an absolute path")
    refused([[{ host = "-oProxyCommand=x", repo = "x", ref = "r", path = "/p" }]], "bad host")
    refused([[{ host = {}, repo = "x", ref = "r", path = "/p" }]], "host must be")
    refused([[{ host = "h", user = "a b", repo = "x", ref = "r", path = "/p" }]], "bad user name")
    -- what git would take for an option, what a shell of ssh's would read
    refused([[{ host = "h", repo = "--upload-pack=touch /tmp/pwned", ref = "r", path = "/p" }]],
      "deploy.production.repo: bad value")
    refused([[{ host = "h", repo = "x", ref = "--output=/etc/passwd", path = "/p" }]],
      "deploy.production.ref: bad value")
    refused([[{ host = "h$(touch${IFS}/tmp/pwned)", repo = "x", ref = "r", path = "/p" }]], "bad host")
    refused([[{ host = "h;id", repo = "x", ref = "r", path = "/p" }]], "bad host")
    refused([[{ host = "h", user = "u$(id)", repo = "x", ref = "r", path = "/p" }]], "bad user name")
    refused([[{ host = "h", repo = "x", ref = "r", path = "/p", port = "ssh" }]], "port must be a port")
    refused([[{ host = "h", repo = "x", ref = "r", path = "/p", env = { ["A-B"] = 1 } }]], "not a variable name")
    local _, err = deploy.config(dir .. "/ecosystem.lua", "staging")
    assert.truthy(err:find("no deploy.staging (the file deploys to production)", 1, true), err)
  end)
end)
