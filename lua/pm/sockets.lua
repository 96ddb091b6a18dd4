-- Daemon-held listening sockets (socket activation): bound once per app and
-- passed to every instance at fd 3.. (systemd's LISTEN_FDS protocol). They
-- live as long as the app is declared, so connections that arrive while no
-- instance accepts wait in the backlog instead of being refused.
local core = require "pm.core"
local util = require "pm.util"

local M = {}

local held = {} -- app name -> { key, socks = { { fd, name, port, path } } }

-- "tcp://127.0.0.1:8080", "tcp://[::1]:8080", "tcp://:8080", "unix:/path"
function M.parse(spec)
  if type(spec) ~= "string" then return nil, "a listen address must be a string" end
  local host, port = spec:match("^tcp://%[([^%]]*)%]:(%d+)$")
  if not host then host, port = spec:match("^tcp://([^:/]*):(%d+)$") end
  if host then
    port = tonumber(port)
    if port < 1 or port > 65535 then return nil, "bad port in " .. spec end
    return { kind = "tcp", host = host, port = port }
  end
  local path = spec:match("^unix:(.+)$")
  if path then return { kind = "unix", path = path } end
  return nil, ("bad listen address '%s' (tcp://HOST:PORT, tcp://[IPv6]:PORT or unix:PATH)"):format(spec)
end

local function close_all(entry)
  for _, s in ipairs(entry.socks) do
    core.close(s.fd)
    if s.path then os.remove(s.path) end
  end
end

-- The sockets of an app, bound on first use -> socks | nil, err
function M.acquire(name, specs, cwd)
  local key = table.concat(specs, "\n") .. "\n" .. tostring(cwd)
  local entry = held[name]
  if entry and entry.key == key then return entry.socks end
  local socks = {}
  for i, spec in ipairs(specs) do
    local a, err = M.parse(spec)
    local fd
    if a and a.kind == "tcp" then
      -- the old sockets of this app go first when it is re-declared on the same port
      if entry then close_all(entry); held[name] = nil; entry = nil end
      fd, err = core.listen_tcp(a.host, tostring(a.port))
      if fd then socks[#socks + 1] = { fd = fd, port = a.port, name = ("tcp_%s_%d"):format(a.host, a.port) } end
    elseif a then
      if entry then close_all(entry); held[name] = nil; entry = nil end
      local path = util.absolute(a.path, cwd)
      local st = core.stat(path)
      if st and st.type == "socket" then os.remove(path) end
      fd, err = core.listen_unix(path, 438, true) -- 0666
      if fd then socks[#socks + 1] = { fd = fd, path = path, name = "unix_" .. i } end
    end
    if not fd then
      close_all({ socks = socks })
      return nil, ("listen %s: %s"):format(spec, tostring(err))
    end
  end
  if entry then close_all(entry) end
  held[name] = { key = key, socks = socks }
  return socks
end

function M.release(name)
  local entry = held[name]
  if entry then
    close_all(entry)
    held[name] = nil
  end
end

function M.held(name) return held[name] and held[name].socks end

return M
