-- pm deploy (lua/pm/deploy.lua) against an sshd this spec starts on
-- 127.0.0.1 (Debian's openssh-server: a throw-away host key, user key and
-- authorized_keys) and a local bare git repository: setup, update twice,
-- curr/prev/list, revert, exec; the post-deploy really runs `pm
-- startOrReload` on the "remote" PM_HOME. sshd needs root (its privilege
-- separation); without root or sshd the spec says so and skips.
local H = require "pmtest"
local util = require "pm.util"
local core = require "pm.core"

local shq = H.shquote
local SSHD = "/usr/sbin/sshd"

local function sh_ok(cmd, what)
  local r = H.sh(cmd)
  assert(r.code == 0, ("%s: exit %s: %s %s"):format(what or cmd, tostring(r.code), r.out, r.err))
  return r.out
end

describe("pm deploy", function()
  local dir, remote_home, sshd_pid, port, why_not, file, work
  local me = (util.passwd(core.getuid()) or {}).name

  setup(function()
    if core.getuid() ~= 0 then why_not = "sshd needs root here (privilege separation)"; return end
    if not core.access(SSHD, "x") then why_not = "sshd is not installed (make deps: openssh-server)"; return end
    if not me then why_not = "no passwd entry for this uid"; return end
    dir = H.new_home()
    remote_home = dir .. "/remote-home"
    port = H.free_port()
    core.mkdir("/run/sshd", 493) -- (Debian's sshd wants its privilege separation folder)
    sh_ok(("ssh-keygen -q -t ed25519 -N '' -f %s/hostkey && ssh-keygen -q -t ed25519 -N '' -f %s/userkey "
      .. "&& cp %s/userkey.pub %s/authorized_keys"):format(shq(dir), shq(dir), shq(dir), shq(dir)), "ssh-keygen")
    H.write(dir .. "/known_hosts", ("[127.0.0.1]:%d %s"):format(port, util.read_file(dir .. "/hostkey.pub")))
    H.write(dir .. "/sshd_config", table.concat({
      "Port " .. port, "ListenAddress 127.0.0.1", "HostKey " .. dir .. "/hostkey",
      "AuthorizedKeysFile " .. dir .. "/authorized_keys", "PasswordAuthentication no",
      "KbdInteractiveAuthentication no", "UsePAM no", "StrictModes no", "PidFile none",
      "PermitRootLogin prohibit-password", "AllowUsers " .. me,
      -- a HOME of the spec's: the login user's own shell profile is not read
      -- (root's here ran pyenv's init, seconds a command)
      "SetEnv HOME=" .. dir .. "/sshhome", "" }, "\n"))
    core.mkdir(dir .. "/sshhome", 448)
    local out = sh_ok(("%s -D -e -f %s >%s/sshd.log 2>&1 </dev/null & echo $!"):format(SSHD,
      shq(dir .. "/sshd_config"), shq(dir)), "sshd")
    sshd_pid = tonumber(out:match("%d+"))
    -- the bare repository and a work tree that pushes to it
    work = dir .. "/work"
    sh_ok(("git init -q --bare -b main %s/app.git && git init -q -b main %s && cd %s "
      .. "&& git config user.email t@example.invalid && git config user.name t "
      .. "&& git remote add origin %s/app.git"):format(shq(dir), shq(work), shq(work), shq(dir)), "git init")
    H.write(work .. "/app.sh", "#!/bin/sh\necho \"version $VERSION\"\nexec sleep 1000\n")
    file = H.write(dir .. "/ecosystem.lua", ([[
return {
  apps = {},
  deploy = {
    production = {
      user = %q, host = "127.0.0.1", port = %d, key = %q,
      ssh_options = { "UserKnownHostsFile=%s", "StrictHostKeyChecking=yes", "BatchMode=yes",
        "IdentitiesOnly=yes", "LogLevel=ERROR", "ControlMaster=auto", "ControlPath=%s/cm-%%C",
        "ControlPersist=60" },
      ref = "origin/main", repo = %q, path = %q,
      env = { pm_home = %q },
      ["post-setup"] = "echo set up > \"$SHARED/setup.txt\"",
      ["pre-deploy-local"] = "echo local >> %s/pre-deploy-local.txt",
      ["post-deploy"] = "%s startOrReload ecosystem.lua --env production",
    },
  },
}
]]):format(me, port, dir .. "/userkey", dir .. "/known_hosts", dir, dir .. "/app.git", dir .. "/remote", remote_home,
      dir, H.bin))
    -- sshd answers
    H.wait_for(function()
      return H.sh(("ssh -p %d -i %s -o UserKnownHostsFile=%s -o StrictHostKeyChecking=yes -o BatchMode=yes "
        .. "-o IdentitiesOnly=yes %s@127.0.0.1 true"):format(port, shq(dir .. "/userkey"), shq(dir .. "/known_hosts"),
        me)).code == 0
    end, 5000, "sshd on 127.0.0.1:" .. port)
  end)

  teardown(function()
    if remote_home then H.cleanup(remote_home) end
    if dir and port then -- the shared connection (ControlMaster) ends
      H.sh(("ssh -o ControlPath=%s/cm-%%C -p %d -O exit %s@127.0.0.1 2>/dev/null"):format(shq(dir), port, me))
    end
    if sshd_pid and H.alive(sshd_pid) then core.kill(sshd_pid, 15) end
    if dir then H.cleanup(dir) end
  end)

  local function commit(version)
    H.write(work .. "/ecosystem.lua", ([[
return { apps = { { name = "web", script = "app.sh", env = { VERSION = %q },
  env_production = { STAGE = "production" } } } }
]]):format(version))
    sh_ok(("cd %s && chmod +x app.sh && git add -A && git commit -q -m v%s && git push -q origin main 2>&1")
      :format(shq(work), version), "git commit")
    return (sh_ok(("cd %s && git rev-parse HEAD"):format(shq(work))):gsub("%s+$", ""))
  end

  local function deploy(...)
    -- (dir is no git work tree: tests/tmp's parents are not looked at)
    local args = { "deploy", file, "production", ... }
    args[#args + 1] = { cwd = dir, env = { GIT_CEILING_DIRECTORIES = util.dirname(dir) } }
    return H.pm(unpack(args))
  end

  -- the app of the "remote" PM_HOME
  local function remote_web()
    local r = H.sh(H.command("jlist"), { env = { PM_HOME = remote_home } })
    for _, p in ipairs(util.decode(r.out) or {}) do
      if p.name == "web" then return p end
    end
  end

  local function deploys()
    local out = {}
    for l in (util.read_file(dir .. "/remote/.deploys") or ""):gmatch("[^\n]+") do out[#out + 1] = l end
    return out
  end

  it("setup, update twice, curr/prev/list, revert and exec over ssh", function()
    if why_not then return pending(why_not) end
    local c1 = commit("1")
    H.ok(deploy("setup"), "setup")
    assert.equal("dir", core.stat(dir .. "/remote/source/.git").type)
    assert.equal(dir .. "/remote/source", (sh_ok("readlink " .. shq(dir .. "/remote/current")):gsub("\n$", "")))
    assert.equal("dir", core.stat(dir .. "/remote/shared/logs").type)
    assert.equal("dir", core.stat(dir .. "/remote/shared/pids").type)
    assert.equal("set up\n", util.read_file(dir .. "/remote/shared/setup.txt"))

    local r = H.ok(deploy("update"), "update 1")
    assert.truthy(r.out:find("--> Success", 1, true))
    assert.same({ c1 }, deploys())
    assert.equal("local\n", util.read_file(dir .. "/pre-deploy-local.txt"))
    local web = H.wait_for(function()
      local p = remote_web()
      return p and p.pm2_env.status == "online" and p
    end, 5000, "web online in the remote PM_HOME")
    assert.equal("1", web.pm2_env.VERSION)
    assert.equal("production", web.pm2_env.STAGE)
    assert.equal(dir .. "/remote/source", web.pm2_env.pm_cwd) -- (current, resolved)

    local c2 = commit("2")
    H.ok(deploy("update"), "update 2")
    assert.same({ c1, c2 }, deploys())
    H.wait_for(function() local p = remote_web(); return p and p.pm2_env.VERSION == "2" end, 5000, "web reloaded at v2")

    assert.equal(c2:sub(1, 7), H.ok(deploy("curr")).out:match("\n(%x+)\n"):sub(1, 7))
    assert.truthy(H.ok(deploy("prev")).out:find("\n" .. c1 .. "\n", 1, true))
    assert.truthy(H.ok(deploy("list")).out:find("0\t" .. c2 .. "\n1\t" .. c1 .. "\n", 1, true))

    H.ok(deploy("revert"), "revert")
    assert.same({ c1, c2, c1 }, deploys())
    H.wait_for(function() local p = remote_web(); return p and p.pm2_env.VERSION == "1" end, 5000, "web back at v1")

    r = H.ok(deploy("exec", "grep", "-c", "VERSION", "ecosystem.lua"), "exec")
    assert.truthy(r.out:find("\n1\n", 1, true), r.out)
    local failed = deploy("exec", "false")
    assert.are_not.equal(0, failed.code)
    assert.truthy(failed.err:find("exec failed", 1, true))
  end)

  it("ref <ref> deploys that ref (PM2's `deploy production ref origin/v2`)", function()
    if why_not then return pending(why_not) end
    local before = deploys()
    local c3 = commit("3")
    H.ok(deploy("ref", c3), "ref")
    local after = deploys()
    assert.equal(#before + 1, #after)
    assert.equal(c3, after[#after])
    H.wait_for(function() local p = remote_web(); return p and p.pm2_env.VERSION == "3" end, 5000, "web at v3")
    H.fails(deploy("ref"), "ref: a ref expected")
    H.fails(deploy("ref", "--upload-pack=touch " .. dir .. "/pwned"), "bad ref")
    assert.is_nil(core.stat(dir .. "/pwned"))
  end)

  it("refuses commits not pushed to the branch's upstream without --force, as PM2 does", function()
    if why_not then return pending(why_not) end
    sh_ok(("cd %s && git branch -q --set-upstream-to=origin/main main"):format(shq(work)), "upstream")
    H.write(work .. "/later.txt", "x")
    sh_ok(("cd %s && git add later.txt && git commit -q -m later"):format(shq(work)), "commit")
    local before = deploys()
    local env = { GIT_CEILING_DIRECTORIES = util.dirname(dir) }
    H.fails(H.pm("deploy", file, "production", "update", { cwd = work, env = env }), "push your changes")
    assert.same(before, deploys())
    sh_ok(("cd %s && git push -q origin main 2>&1"):format(shq(work)), "push")
  end)

  it("refuses a missing section, a bad command, and local changes without --force", function()
    if why_not then return pending(why_not) end
    H.fails(H.pm("deploy", file, "staging", "setup", { cwd = dir }), "no deploy.staging", "production")
    H.fails(H.pm("deploy", file, "production", "rollback", { cwd = dir }), "unknown deploy command 'rollback'")
    H.fails(H.pm("deploy", file, "production", "revert", "zero", { cwd = dir }), "revert")
    H.write(work .. "/dirty.txt", "x")
    sh_ok(("cd %s && git add dirty.txt"):format(shq(work)))
    H.fails(H.pm("deploy", file, "production", "update", { cwd = work }), "commit your staged changes")
  end)
end)
