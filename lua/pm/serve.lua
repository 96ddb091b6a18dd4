--[[ The static file server of `pm serve` (PM2's `pm2 serve`): the process
of an app whose script is "serve", configured by PM2's variables
(PM2_SERVE_PATH, PM2_SERVE_PORT, PM2_SERVE_HOST, PM2_SERVE_SPA,
PM2_SERVE_HOMEPAGE, PM2_SERVE_BASIC_AUTH{,_USERNAME,_PASSWORD}). Built on
core.http_server (libmicrohttpd in pm's loop, httplib.lua).

What it serves: regular files under the root only. A path with a ".."
segment is refused (403), and so is a file whose real path (links
resolved, and again for what was opened) is outside the root's real
path: a link inside the folder never leads out of it. A folder gives
its index.html; the root the homepage. Not found: with spa, the path's
last segment at the root, then the homepage; else the root's 404.html
(status 404), or a line. GET and HEAD only; files up to MAX_FILE bytes
(larger: 413); MHD's limits on connections and request heads. Basic
auth, when set, is checked on every request (in a time that does not say
where the secret differs). Pure but for the files it reads. ]]
local core = require "pm.core"
local util = require "pm.util"

local M = {}

M.MAX_FILE = 16 * 1024 * 1024
M.LIMITS = { connections = 64, per_ip = 16, timeout = 10, memory = 32768, max_body = 1024 }

local TYPES = {
  html = "text/html; charset=utf-8", htm = "text/html; charset=utf-8", css = "text/css; charset=utf-8",
  js = "text/javascript; charset=utf-8", mjs = "text/javascript; charset=utf-8",
  json = "application/json", map = "application/json", txt = "text/plain; charset=utf-8",
  md = "text/markdown; charset=utf-8", csv = "text/csv; charset=utf-8", xml = "application/xml",
  svg = "image/svg+xml", png = "image/png", jpg = "image/jpeg", jpeg = "image/jpeg", gif = "image/gif",
  webp = "image/webp", avif = "image/avif", ico = "image/x-icon", bmp = "image/bmp",
  woff = "font/woff", woff2 = "font/woff2", ttf = "font/ttf", otf = "font/otf", wasm = "application/wasm",
  pdf = "application/pdf", zip = "application/zip", gz = "application/gzip", mp3 = "audio/mpeg",
  ogg = "audio/ogg", wav = "audio/wav", mp4 = "video/mp4", webm = "video/webm",
  webmanifest = "application/manifest+json",
}

function M.content_type(path)
  local ext = path:match("%.([%w]+)$")
  return ext and TYPES[ext:lower()] or "application/octet-stream"
end

local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
function M.base64(s)
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = s:byte(i, i + 2)
    local n = a * 65536 + (b or 0) * 256 + (c or 0)
    local q = {}
    for j = 1, 4 do
      local k = math.floor(n / 2 ^ (6 * (4 - j))) % 64
      q[j] = B64:sub(k + 1, k + 1)
    end
    if not b then q[3] = "=" end
    if not c then q[4] = "=" end
    out[#out + 1] = table.concat(q)
  end
  return table.concat(out)
end

local same = util.same_secret

-- A URL path -> its segments (no "", no ".") | nil (a ".." or a NUL)
function M.segments(url)
  local segs = {}
  for s in tostring(url):gmatch("[^/]+") do
    if s == ".." or s:find("%z") or s:find("\\", 1, true) then return nil end
    if s ~= "." then segs[#segs + 1] = s end
  end
  return segs
end

-- Whether path is root or under it (both real paths)
local function inside(root, path)
  return path == root or (path:sub(1, #root + 1) == (root == "/" and "/" or root .. "/"))
end

-- The configuration from PM2's variables -> opts | nil, err
function M.config(env)
  env = env or {}
  local root = env.PM2_SERVE_PATH or "."
  local real = core.realpath(util.absolute(root, core.getcwd()))
  if not real then return nil, ("serve: %s: no such folder"):format(root) end
  local st = core.stat(real)
  if not st or st.type ~= "dir" then return nil, ("serve: %s is not a folder"):format(root) end
  local port = tonumber(env.PM2_SERVE_PORT or 8080)
  if not port or port % 1 ~= 0 or port < 0 or port > 65535 then
    return nil, ("serve: port must be a whole number from 0 to 65535, not %s"):format(tostring(env.PM2_SERVE_PORT))
  end
  local o = { root = real, port = port, host = env.PM2_SERVE_HOST or "0.0.0.0",
    spa = env.PM2_SERVE_SPA == "true", homepage = env.PM2_SERVE_HOMEPAGE or "/index.html" }
  if env.PM2_SERVE_BASIC_AUTH == "true" then
    local u, p = env.PM2_SERVE_BASIC_AUTH_USERNAME, env.PM2_SERVE_BASIC_AUTH_PASSWORD
    if not u or u == "" or not p or p == "" or u:find(":", 1, true) then
      return nil, "serve: basic auth needs a username (without ':') and a password"
    end
    o.auth = "Basic " .. M.base64(u .. ":" .. p)
  end
  return o
end

-- A regular file under root, read -> body | nil, status (404, 403, 413, 500)
local function read_under(root, path)
  local real = core.realpath(path)
  if not real then return nil, 404 end
  if not inside(root, real) then return nil, 403 end
  local st = core.stat(real)
  if not st then return nil, 404 end
  if st.type == "dir" then
    return read_under(root, real .. "/index.html")
  end
  if st.type ~= "file" then return nil, 403 end
  if st.size > M.MAX_FILE then return nil, 413 end
  local fd = core.open(real, "r")
  if not fd then return nil, 404 end
  -- what was opened is what was checked (a link swapped in meanwhile is seen)
  local opened = core.realpath("/proc/self/fd/" .. fd)
  if not opened or not inside(root, opened) then
    core.close(fd)
    return nil, 403
  end
  local parts, total = {}, 0
  while true do
    local s = core.read(fd, 65536)
    if not s then core.close(fd); return nil, 500 end
    if s == "" then break end
    total = total + #s
    if total > M.MAX_FILE then core.close(fd); return nil, 413 end
    parts[#parts + 1] = s
  end
  core.close(fd)
  return table.concat(parts), real
end

--[[ A request's answer -> status, headers, body. o: M.config's. ]]
function M.answer(o, method, url, headers)
  local h = { ["X-Content-Type-Options"] = "nosniff" }
  local function text(status, line)
    h["Content-Type"] = "text/plain; charset=utf-8"
    return status, h, line .. "\n"
  end
  if o.auth and not same(headers and headers.authorization, o.auth) then
    h["WWW-Authenticate"] = 'Basic realm="pm serve", charset="UTF-8"'
    return text(401, "401 Unauthorized")
  end
  if method ~= "GET" and method ~= "HEAD" then
    h.Allow = "GET, HEAD"
    return text(405, "405 Method Not Allowed")
  end
  local segs = M.segments(url)
  if not segs then return text(403, "403 Forbidden") end
  local function try(list)
    local body, how = read_under(o.root, o.root .. (#list > 0 and ("/" .. table.concat(list, "/")) or ""))
    if body then
      h["Content-Type"] = M.content_type(how)
      return 200, h, body
    end
    return nil, how
  end
  local home = M.segments(o.homepage) or {}
  local status, hh, body = try(#segs > 0 and segs or home)
  if status then return status, hh, body end
  local why = hh
  if why == 404 and o.spa then
    if #segs > 1 then
      status, hh, body = try({ segs[#segs] })
      if status then return status, hh, body end
    end
    status, hh, body = try(home)
    if status then return status, hh, body end
  end
  if why == 404 then
    body = read_under(o.root, o.root .. "/404.html")
    if body then
      h["Content-Type"] = TYPES.html
      return 404, h, body
    end
    return text(404, "404 Not Found")
  end
  if why == 413 then return text(413, "413 Payload Too Large: pm serve sends files up to 16 MB") end
  if why == 403 then return text(403, "403 Forbidden") end
  return text(500, "500 Internal Server Error")
end

-- The process: serves until SIGTERM or SIGINT -> exit code | nil, err
function M.run(env)
  local o, err = M.config(env)
  if not o then return nil, err end
  local http, herr = require("pm.httplib").load()
  if not http then return nil, herr end
  local srv
  local function on_request(id, method, url, headers)
    local status, h, body = M.answer(o, method, url, headers)
    srv:respond(id, status, h, body)
  end
  local lim = {}
  for k, v in pairs(M.LIMITS) do lim[k] = v end
  lim.host, lim.port = o.host, o.port
  srv, err = http.http_server(lim, on_request, function() end)
  if not srv then return nil, ("serve: %s:%d: %s"):format(o.host, o.port, tostring(err)) end
  io.stdout:write(("pm serve: %s on %s:%d%s%s\n"):format(o.root, o.host, srv:port(),
    o.spa and " (spa)" or "", o.auth and " (basic auth)" or ""))
  io.stdout:flush()
  local done
  local term = core.signal(core.signals.SIGTERM, function() done = 0 end)
  local int = core.signal(core.signals.SIGINT, function() done = 0 end)
  while not done do core.run("once") end
  term:close(); int:close()
  srv:close()
  return done
end

return M
