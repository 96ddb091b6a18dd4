-- Issue 23 (PM2's e2e suite: cli/serve.sh): `pm serve [path] [port]`,
-- PM2's static file server, as an app (script "serve", serve.lua): files
-- under its folder only (no "..", no link out of it), index.html, the
-- folder's 404.html, --spa, basic auth, --name, and an ecosystem file's
-- PM2 `static` entries and `script: "serve"`.
local H = require "pmtest"
local core = require "pm.core"
local http = require "httpc"

local ok = H.ok

describe("pm serve", function()
  local dir, port
  before_each(function()
    H.new_home()
    dir = H.home .. "/site"
    assert(core.mkdir(dir, 493))
    assert(core.mkdir(dir .. "/sub", 493))
    H.write(dir .. "/index.html", "the index\n")
    H.write(dir .. "/other.html", "another file\n")
    H.write(dir .. "/404.html", "no such page here\n")
    H.write(dir .. "/sub/index.html", "the sub index\n")
    H.write(H.home .. "/secret.txt", "outside the root\n")
    assert(os.execute(("ln -s %s %s"):format(H.shquote(H.home .. "/secret.txt"), H.shquote(dir .. "/out.txt"))))
    assert(os.execute(("ln -s other.html %s"):format(H.shquote(dir .. "/in.html"))))
    port = H.free_port()
  end)
  after_each(function() H.cleanup() end)

  local function get(path, headers)
    return http.get(port, path, headers)
  end
  local function serving()
    H.wait_for(function() return get("/").status ~= 0 end, 5000, "the server to listen")
  end

  it("serves the folder's files, index.html and 404.html, never what is outside it", function()
    ok(H.pm("serve", dir, tostring(port), "-s"))
    local p = H.online(H.proc("static-page-server-" .. port))
    serving()
    local r = get("/")
    assert.equal(200, r.status)
    assert.equal("the index\n", r.body)
    assert.equal("text/html; charset=utf-8", r.headers["content-type"])
    assert.equal("another file\n", get("/other.html").body)
    assert.equal("the sub index\n", get("/sub/").body)
    assert.equal("another file\n", get("/in.html").body, "a link inside the folder is followed")
    r = get("/nothing.html")
    assert.equal(404, r.status)
    assert.equal("no such page here\n", r.body)
    assert.equal(403, get("/out.txt").status, "a link out of the folder")
    for _, path in ipairs({ "/../secret.txt", "/sub/../../secret.txt", "/%2e%2e/secret.txt" }) do
      local raw = "GET " .. path .. " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
      r = http.request(port, "GET", path, { raw = raw })
      assert.is_falsy((r.body or ""):find("outside the root", 1, true), path)
      assert.is_true(r.status == 403 or r.status == 404, path .. ": " .. tostring(r.status))
    end
    assert.equal(405, http.post(port, "/index.html", "x").status)
    assert.equal("online", H.status("static-page-server-" .. port))
    assert.is_true(p.pid > 0)
    ok(H.pm("delete", "all", "-s"))
    H.wait_for(function() return get("/").status == 0 end, 5000, "the port closed")
  end)

  it("--spa gives the homepage (or the path's last part) for unknown paths; basic auth; --name", function()
    ok(H.pm("serve", dir, tostring(port), "--spa", "--name", "front", "-s"))
    H.online(H.proc("front"))
    serving()
    assert.equal("the index\n", get("/some/route").body)
    assert.equal("another file\n", get("/some/route/other.html").body)
    ok(H.pm("delete", "front", "-s"))
    H.wait_for(function() return get("/").status == 0 end, 5000, "the port closed")
    ok(H.pm("serve", dir, "--port", tostring(port), "--basic-auth-username", "user",
      "--basic-auth-password", "pass", "-s"))
    H.wait_for(function() return get("/").status == 401 end, 5000, "the server to ask for credentials")
    assert.is_truthy(get("/index.html").headers["www-authenticate"])
    assert.equal(401, get("/index.html", { Authorization = "Basic dXNlcjpwYXNz0" }).status)
    local r = get("/index.html", { Authorization = "Basic dXNlcjpwYXNz" }) -- user:pass
    assert.equal(200, r.status)
    assert.equal("the index\n", r.body)
  end)

  it("runs an ecosystem file's static entries and apps whose script is serve", function()
    local port2 = H.free_port()
    H.write(dir .. "/eco.json", ([[
{ "apps": [ { "name": "front", "script": "serve", "env": { "PM2_SERVE_PORT": %d, "PM2_SERVE_PATH": "." } } ],
  "static": [ { "path": ".", "port": %d, "spa": true, "basic_auth": { "username": "u", "password": "p" } } ] }
]]):format(port, port2))
    ok(H.pm("start", dir .. "/eco.json", "-s", { cwd = dir }))
    H.online(H.proc("front"))
    H.online(H.proc("static-page-server-" .. port2))
    serving()
    assert.equal("the index\n", get("/index.html").body)
    H.wait_for(function() return http.get(port2, "/").status == 401 end, 5000, "the static entry")
    assert.equal("the index\n", http.get(port2, "/a/route", { Authorization = "Basic dTpw" }).body)
    -- a bad static entry: one line, nothing started
    H.write(dir .. "/bad.json", '{ "static": { "port": 1 } }\n')
    local r = H.fails(H.pm("start", dir .. "/bad.json", { cwd = dir }), "static must be a list")
    assert.is_truthy(r)
  end)

  it("refuses a port that is no port, and a path that is no folder, with one line", function()
    H.fails(H.pm("serve", dir, "http"), "port must be a whole number")
    H.fails(H.pm("serve", dir .. "/index.html", tostring(port)), "is not a folder")
    H.fails(H.pm("serve", dir, tostring(port), "--basic-auth-username", "u"), "go together")
    assert.equal(0, #H.jlist())
  end)
end)
