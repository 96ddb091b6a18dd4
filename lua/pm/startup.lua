-- pm startup: a systemd unit that runs the daemon at boot and resurrects the
-- saved apps; a system unit for root, a user unit (with lingering) otherwise.
local core = require "pm.core"
local util = require "pm.util"

local M = {}

local function user_name()
  local uid = core.getuid()
  local pw = util.passwd(uid)
  return pw and pw.name or os.getenv("USER") or tostring(uid)
end

local function unit_dir()
  local dir = os.getenv("PM_SYSTEMD_DIR") -- for tests and unusual layouts
  if dir and dir ~= "" then return dir end
  if core.getuid() == 0 then return "/etc/systemd/system" end
  local config = os.getenv("XDG_CONFIG_HOME") or ((os.getenv("HOME") or "") .. "/.config")
  return config .. "/systemd/user"
end

-- The platforms PM2's startup names that run systemd here
M.SYSTEMD = { systemd = true, ubuntu = true, ubuntu14 = true, ubuntu16 = true, ubuntu18 = true,
  debian = true, centos = true, centos7 = true, redhat = true, rhel = true, fedora = true, amazon = true,
  suse = true, opensuse = true, arch = true }

--[[ -> unit text, path | nil, err. opts (PM2's `pm2 startup systemd -u www
--hp /home/www`, the line PM2 prints for root to run): user (a system
unit that runs as that user), hp (that user's home: PM_HOME is hp/.pm),
service_name (the unit's name without .service). ]]
function M.unit(opts)
  opts = opts or {}
  local bin = util.pm_binary()
  local home = util.home()
  local user = user_name()
  local root = core.getuid() == 0
  if opts.user then
    local pw = util.passwd(opts.user)
    if not pw then return nil, "unknown user " .. tostring(opts.user) end
    if not root and pw.uid ~= core.getuid() then
      return nil, ("a unit that runs as %s is root's to write: run it with sudo"):format(pw.name)
    end
    user = pw.name
    home = (opts.hp or (pw.dir ~= "" and pw.dir or "/")):gsub("/+$", "") .. "/.pm"
  elseif opts.hp then
    home = opts.hp:gsub("/+$", "") .. "/.pm"
  end
  -- (a unit's line: an absolute path, no space, control character or %)
  if not home:match("^/[^%s%c%%]*$") then
    return nil, ("PM_HOME '%s': an absolute path without spaces, control characters or %% expected")
      :format((home:gsub("%c", "?")))
  end
  if opts.service_name and not opts.service_name:match("^[%w@._-]+$") then
    return nil, "--service-name: letters, digits and @ . _ - only"
  end
  local name = opts.service_name and (opts.service_name:gsub("%.service$", "") .. ".service")
    or (root and ("pm-" .. user .. ".service") or "pm.service")
  local lines = {
    "[Unit]",
    "Description=pm process manager (" .. user .. ")",
    "After=network.target",
    "",
    "[Service]",
    "Type=simple",
    "Environment=PM_HOME=" .. home,
    -- (a unit of another user: that user's login PATH, not root's; a PATH
    -- a unit's line cannot hold as it is: the login PATH too)
    "Environment=PATH=" .. ((not opts.user and (os.getenv("PATH") or ""):match("^[^%s%c%%]+$"))
      or require("pm.app").LOGIN_PATH),
    "LimitNOFILE=infinity",
    "ExecStart=" .. bin .. " daemon --stdio",
    -- ("-": an app that cannot come back is said, the others run)
    "ExecStartPost=-" .. bin .. " resurrect",
    "ExecStop=" .. bin .. " kill",
    "Restart=on-failure",
    "",
    "[Install]",
    "WantedBy=" .. (root and "multi-user.target" or "default.target"),
    "",
  }
  if root and user ~= "root" then table.insert(lines, 6, "User=" .. user) end
  return table.concat(lines, "\n"), unit_dir() .. "/" .. name
end

local function systemctl(args)
  if not core.access("/bin/systemctl", "x") and not core.access("/usr/bin/systemctl", "x") then
    return false
  end
  local cmd = "systemctl " .. (core.getuid() == 0 and "" or "--user ") .. args .. " >/dev/null 2>&1"
  local rc = os.execute(cmd)
  return rc == 0 or rc == true
end

function M.install(unit, path)
  local ok, err = util.mkdir_p(util.dirname(path))
  if not ok then return nil, err end
  ok, err = util.write_atomic(path, unit)
  if not ok then return nil, "cannot write " .. path .. ": " .. tostring(err) end
  local name = util.basename(path)
  local msg = { "wrote " .. path }
  if systemctl("daemon-reload") and systemctl("enable " .. name) then
    msg[#msg + 1] = "enabled " .. name
  else
    msg[#msg + 1] = "now run: systemctl " .. (core.getuid() == 0 and "" or "--user ") ..
      "daemon-reload && systemctl " .. (core.getuid() == 0 and "" or "--user ") .. "enable " .. name
  end
  if core.getuid() ~= 0 then
    msg[#msg + 1] = "to start it at boot without a login: loginctl enable-linger " .. user_name()
  end
  msg[#msg + 1] = "save the apps to bring back at boot with: pm save"
  return table.concat(msg, "\n")
end

function M.remove(opts)
  local unit, path = M.unit(opts)
  if not unit then return nil, path end
  if not core.stat(path) then return nil, "no unit at " .. path end
  local name = util.basename(path)
  systemctl("disable " .. name)
  os.remove(path)
  systemctl("daemon-reload")
  return "removed " .. path
end

return M
