-- Daemon-held listening sockets (socket activation): bound once per app and
-- passed to every instance at fd 3.. (systemd's LISTEN_FDS protocol). They
-- live as long as the app is declared, so connections that arrive while no
-- instance accepts wait in the backlog instead of being refused.
--
-- Declared sockets come from `listen` (or the port of a Node app in cluster
-- mode). Learned ones are the ports an instance of a Node app in cluster
-- mode asked for when it called listen() on a port pm did not know (the
-- preload asks over the IPC channel): bound here for that app alone, TCP
-- only, a privileged port only for an app that runs as root, never a port
-- another app holds; remembered by app (namespace and name) until the app
-- is deleted (a new declaration of the app keeps them, unless it runs as
-- another user: they are closed then), and in its declaration
-- (`learned_listen`) for a resurrect.
local core = require "pm.core"
local util = require "pm.util"

local M = {}

-- app key (M.key) -> { name, by = { [id] = sock }, learned = { spec, ... },
-- uid = the uid the learned sockets were bound for };
-- sock: { fd, id, name, port, path }
local held = {}

-- The key of d's app: its namespace and name (two apps of one name in two
-- namespaces hold sockets of their own)
function M.key(d)
  return (d.namespace or "default") .. "\0" .. d.name
end

-- The uid d's processes run as (the daemon's when it names none)
local function uid_of(d)
  return tonumber(d.uid) or core.getuid()
end

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

-- What tells one socket from another: its address (a unix path resolved)
local function sock_id(a, cwd)
  if a.kind == "tcp" then return ("tcp %s %d"):format(a.host, a.port) end
  return "unix " .. util.absolute(a.path, cwd)
end

local function close_sock(s)
  require("pm.keeper").release(s.held)
  core.close(s.fd)
  if s.path then os.remove(s.path) end
end

-- Sockets a daemon before this one held, handed over by the keeper:
-- { fd, held (the keeper's id) }, taken by the first acquire of their
-- address; what none takes goes once the apps are back (M.drop_handed)
local handed = {}

function M.take_handed(list)
  for _, h in ipairs(list) do
    local kind, host, port = core.sockname(h.fd)
    if kind == "tcp" then
      handed[#handed + 1] = { fd = h.fd, held = h.id, kind = kind, host = host, port = port }
    elseif kind == "unix" then
      handed[#handed + 1] = { fd = h.fd, held = h.id, kind = kind, path = host }
    else
      require("pm.keeper").release(h.id)
      core.close(h.fd)
    end
  end
end

-- A handed-over socket bound where a is -> its fd and keeper id | nil
local function from_handed(a, id)
  for i, h in ipairs(handed) do
    local same
    if a.kind == "tcp" and h.kind == "tcp" and h.port == a.port then
      same = a.host == h.host or (a.host == "" and (h.host == "::" or h.host == "0.0.0.0"))
        or (a.host == "localhost" and (h.host == "127.0.0.1" or h.host == "::1"))
    elseif a.kind == "unix" and h.kind == "unix" then
      same = "unix " .. h.path == id
    end
    if same then
      table.remove(handed, i)
      return h.fd, h.held
    end
  end
end

function M.drop_handed()
  for _, h in ipairs(handed) do
    require("pm.keeper").release(h.held)
    core.close(h.fd)
  end
  handed = {}
end

-- "" is any address: of both families where the machine has IPv6, as
-- Node's listen(port) listens
local has_ipv6
-- (nonblock: a socket a running Node process gets over its channel, which
-- Node listens on as it is: a blocking one would block its whole loop in
-- accept when another instance took the connection)
local function listen_tcp(host, port, nonblock)
  if host == "" then
    if has_ipv6 == nil then has_ipv6 = core.stat("/proc/net/if_inet6") ~= nil end
    if has_ipv6 then return core.listen_tcp("::", tostring(port), nil, true, nonblock) end
  end
  return core.listen_tcp(host, tostring(port), nil, false, nonblock)
end

-- A held TCP socket's name in LISTEN_FDNAMES (systemd's names: no ':',
-- which separates them there): "tcp_127.0.0.1_8080", "tcp___1_8080" for ::1
function M.fd_name(host, port)
  return ("tcp_%s_%d"):format((tostring(host):gsub("[^%w%.%-]", "_")), port)
end

local bind_new -- (below)
local function bind(a, id, i, nonblock)
  local keeper = require "pm.keeper"
  local fd, kid = from_handed(a, id)
  if fd then
    if a.kind == "tcp" then
      return { fd = fd, id = id, port = a.port, name = M.fd_name(a.host, a.port), held = kid }
    end
    return { fd = fd, id = id, path = id:sub(6), name = "unix_" .. i, held = kid }
  end
  local s, berr = bind_new(a, id, i, nonblock)
  if s then s.held = keeper.hold("s", s.fd) end
  return s, berr
end

bind_new = function(a, id, i, nonblock)
  local fd, err
  if a.kind == "tcp" then
    fd, err = listen_tcp(a.host, a.port, nonblock)
    if fd then return { fd = fd, id = id, port = a.port, name = M.fd_name(a.host, a.port) } end
    return nil, err
  end
  local path = id:sub(6)
  local st = core.stat(path)
  if st and st.type == "socket" then os.remove(path) end
  fd, err = core.listen_unix(path, 438, true) -- 0666
  if fd then return { fd = fd, id = id, path = path, name = "unix_" .. i } end
  return nil, err
end

--[[ The sockets of an app for these specs, in their order -> socks | nil,
err. A socket already held for the same address is the same socket (a
process a reload replaces keeps serving on it meanwhile); what the app no
longer declares is closed first (the same port may be declared again with
another address), but for what its instances learned. ]]
function M.acquire(key, specs, cwd)
  local entry = held[key] or { name = key:match("%z(.*)$"), by = {}, learned = {} }
  held[key] = entry
  local parsed, wanted = {}, {}
  for i, spec in ipairs(specs) do
    local a, err = M.parse(spec)
    if not a then return nil, ("listen %s: %s"):format(tostring(spec), err) end
    parsed[i] = { a = a, id = sock_id(a, cwd), spec = spec }
    wanted[parsed[i].id] = true
  end
  for _, spec in ipairs(entry.learned) do
    local a = M.parse(spec)
    if a then wanted[sock_id(a)] = true end
  end
  for id, s in pairs(entry.by) do
    if not wanted[id] then
      close_sock(s)
      entry.by[id] = nil
    end
  end
  local socks, new = {}, {}
  for i, x in ipairs(parsed) do
    local s = entry.by[x.id]
    if not s then
      local err
      s, err = bind(x.a, x.id, i)
      if not s then
        for _, n in ipairs(new) do close_sock(n); entry.by[n.id] = nil end
        if next(entry.by) == nil and #entry.learned == 0 then held[key] = nil end
        return nil, ("listen %s: %s"):format(x.spec, tostring(err))
      end
      entry.by[x.id] = s
      new[#new + 1] = s
    end
    socks[i] = s
  end
  return socks
end

-- The sockets of the ports key's apps learned (cluster mode's listen())
-- closed while none of them runs (pm stop, as PM2's frees its ports): the
-- ports stay learned, and the next start binds them again. A declared
-- listen stays held (a connection waits in its backlog for the start).
local function close_learned(entry)
  for _, spec in ipairs(entry.learned) do
    local a = M.parse(spec)
    local id = a and sock_id(a)
    if id and entry.by[id] then
      close_sock(entry.by[id])
      entry.by[id] = nil
    end
  end
end

function M.close_learned(key)
  if held[key] then close_learned(held[key]) end
end

function M.release(key)
  local entry = held[key]
  if entry then
    for _, s in pairs(entry.by) do close_sock(s) end
    held[key] = nil
  end
end

-- An app now declared to run as another user than the one its learned
-- sockets were bound for loses them: a socket bound for root is never
-- handed to a process of another user.
local function forget_learned(entry, d)
  if not entry.uid or entry.uid == uid_of(d) then return end
  close_learned(entry)
  entry.learned, entry.uid = {}, nil
end

-- ---- learned ports ----

-- The first port a user other than root may bind
-- (read once: it was read for every learned port at every start)
local first_unprivileged
local function unprivileged_start()
  if not first_unprivileged then
    local s = util.read_file("/proc/sys/net/ipv4/ip_unprivileged_port_start")
    first_unprivileged = tonumber(s and s:match("%d+")) or 1024
  end
  return first_unprivileged
end

-- Whether pm may bind port for d because one of its instances asked: a
-- daemon running as root binds a privileged port only for an app that runs
-- as root too -> true | nil, err
local function may_bind(name, d, port)
  local uid = tonumber(d.uid)
  if core.getuid() == 0 and uid and uid ~= 0 and port < unprivileged_start() then
    return nil, ("port %d is privileged and app '%s' runs as uid %d: pm binds it for the app only when"
      .. " it is declared (listen = \"tcp://:%d\", or port = %d)"):format(port, name, uid, port, port)
  end
  return true
end

-- The specs the app of d's name learned, d's own (a saved declaration's)
-- joined to them, that pm may bind for d -> list | nil (none)
function M.learned_specs(d)
  local key = M.key(d)
  local own, entry = d.learned_listen, held[key]
  if entry then forget_learned(entry, d) end
  if (not own or #own == 0) and (not entry or #entry.learned == 0) then return nil end
  if not entry then
    entry = { name = d.name, by = {}, learned = {} }
    held[key] = entry
  end
  local seen = {}
  for _, spec in ipairs(entry.learned) do seen[spec] = true end
  for _, spec in ipairs(own or {}) do
    local a = not seen[spec] and M.parse(spec)
    if a and a.kind == "tcp" then
      seen[spec] = true
      entry.learned[#entry.learned + 1] = spec
    end
  end
  local out = {}
  for _, spec in ipairs(entry.learned) do
    if may_bind(d.name, d, M.parse(spec).port) then out[#out + 1] = spec end
  end
  if #out > 0 then entry.uid = entry.uid or uid_of(d) end -- (bound for d's user)
  return out
end

-- d's declaration says what its app learned (what a journal, a dump and
-- so a resurrect keep) -> true when that changed (a new list: a cached
-- encoding of d sees it)
function M.remember(d)
  M.learned_specs(d)
  local entry = held[M.key(d)]
  local live, own = entry and entry.learned or {}, d.learned_listen or {}
  if #live == #own then
    local same = true
    for i = 1, #live do same = same and live[i] == own[i] end
    if same then return false end
  end
  d.learned_listen = #live > 0 and util.shallow_copy(live) or nil
  return true
end

-- (a process gets at most 64 fds: app.lua's MAX_LISTEN sockets in all)
M.MAX_LEARNED, M.MAX_HELD = 16, 60

--[[ An instance of the app `name` (declaration d) asked for a socket on
host:port (host: a numeric address, "" or "::" for any). Returns the
socket the app holds for that port (one it has, or a new one bound for
it), and the spec of a new one | nil, err, code (the errno name the app's
listen() fails with). ]]
function M.learn(name, d, host, port)
  port = tonumber(port)
  if not port or port % 1 ~= 0 or port < 1 or port > 65535 then
    return nil, "a port is a whole number from 1 to 65535", "EINVAL"
  end
  host = host == nil and "" or host
  if type(host) ~= "string" or #host > 64 or not (host:match("^[%d.]*$") or host:match("^[%x:.]+$")) then
    return nil, "a listen address for pm to bind is a numeric IPv4 or IPv6 address", "EINVAL"
  end
  if host == "::" then host = "" end
  local key = M.key(d)
  local entry = held[key]
  if entry then forget_learned(entry, d) end
  -- (checked before the app's own socket is handed back too: a socket is
  -- never handed to a user who could not have bound it)
  local ok, why = may_bind(name, d, port)
  if not ok then return nil, why, "EACCES" end
  for _, s in pairs(entry and entry.by or {}) do
    if s.port == port then return s end -- the app's own: one socket per port
  end
  for other, e in pairs(held) do
    if other ~= key then
      for _, s in pairs(e.by) do
        if s.port == port then
          return nil, ("port %d is held by pm for app '%s'"):format(port, e.name or "?"), "EADDRINUSE"
        end
      end
    end
  end
  local count = 0
  for _ in pairs(entry and entry.by or {}) do count = count + 1 end
  if entry and (#entry.learned >= M.MAX_LEARNED or count >= M.MAX_HELD) then
    return nil, ("app '%s' has %d ports pm learned already: at most %d (declare the others with listen)")
      :format(name, #entry.learned, M.MAX_LEARNED), "EMFILE"
  end
  local spec = host:find(":", 1, true) and ("tcp://[%s]:%d"):format(host, port) or ("tcp://%s:%d"):format(host, port)
  local a = assert(M.parse(spec))
  local id = sock_id(a)
  local s, err = bind(a, id, nil, true) -- (handed to a running Node process: non-blocking)
  if not s then
    err = tostring(err)
    local code = err:find("in use", 1, true) and "EADDRINUSE" or err:find("denied", 1, true) and "EACCES"
      or err:find("assign", 1, true) and "EADDRNOTAVAIL" or "EINVAL"
    return nil, ("listen %s: %s"):format(spec, err), code
  end
  entry = held[key] or { name = name, by = {}, learned = {} }
  held[key] = entry
  entry.uid = uid_of(d)
  entry.by[id] = s
  entry.learned[#entry.learned + 1] = spec
  return s, spec
end

return M
