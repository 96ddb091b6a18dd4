-- The dashboard of pm web in a real browser: headless Chromium (Debian's
-- chromium and chromium-driver, driven by python3-selenium: all in DEPS)
-- is refused without the token, logs in with it, sees the apps, restarts
-- one and sees its pid change, sees a line the app printed appear in the
-- log pane. The screenshot is kept in tests/tmp/web_browser/dashboard.png.
local H = require "pmtest"
local util = require "pm.util"
local core = require "pm.core"

local PY = "/usr/bin/python3" -- (Debian's, which has python3-selenium)

local function have_browser()
  return core.access("/usr/bin/chromium", "x") and core.access("/usr/bin/chromedriver", "x")
    and H.sh(PY .. " -c 'import selenium'").code == 0
end

describe("the dashboard in a browser", function()
  before_each(function() H.new_home() end)
  after_each(function() H.cleanup(H.home) end)

  it("needs the token, shows the apps live, restarts one, streams its log lines", function()
    if not have_browser() then
      print("SKIPPED: chromium, chromium-driver or python3-selenium missing (make deps installs them)")
      return
    end
    H.script("talker.sh", "while :; do printf 'line-from-%s \\033[32mgreen\\033[0m\\n' $$; sleep 0.3; done\n")
    H.ok(H.pm("start", H.home .. "/talker.sh", "--name", "talker"))
    H.ok(H.pm("start", "--name", "worker", "--", "sleep", "1000"))
    H.ok(H.pm("start", "-i", "2", "--name", "api", "--", "sleep", "1000"))
    local port = H.free_port()
    local r = H.ok(H.pm("web", "--listen", "127.0.0.1:" .. port))
    local token = r.out:match("%?token=(%x+)")
    local out = H.src .. "/tests/tmp/web_browser"
    os.execute("rm -rf " .. H.shquote(out) .. " && mkdir -p " .. H.shquote(out))
    local shot = out .. "/dashboard.png"
    local pid_before = H.proc("talker").pid
    local b = H.sh(("%s %s %s %s talker %s %s"):format(PY, H.shquote(H.fixtures .. "/web_browser.py"),
      H.shquote("http://127.0.0.1:" .. port), token, H.shquote(shot), H.shquote(H.home .. "/chromium")))
    local res = util.decode(b.out)
    assert(type(res) == "table", "web_browser.py: " .. b.out .. b.err)
    assert(not res.error, "the browser: " .. tostring(res.error) .. " (seen: " .. b.out .. ")")
    -- refused without the token, and with a wrong one
    assert.equal("pm: log in", res.refused_title)
    assert.is_false(res.refused_has_table)
    assert.is_false(res.wrong_token_has_table)
    -- the token became an HttpOnly cookie the page's script cannot read
    assert.equal("http://127.0.0.1:" .. port .. "/", res.url_after_login)
    assert.is_true(res.cookie_http_only)
    assert.equal("", res.cookie_js_visible)
    table.sort(res.names)
    assert.same({ "api", "api", "pm-web", "talker", "worker" }, res.names)
    assert.equal(tostring(pid_before), res.pid_before)
    assert.is_true(res.log_line_seen)
    assert.matches("^restart talker", res.confirm_text)
    assert.are_not.equal(res.pid_before, res.pid_after)
    assert.equal(tostring(H.proc("talker").pid), res.pid_after)
    assert.equal(1, H.proc("talker").pm2_env.restart_time)
    assert.is_true(res.ansi_spans > 0)
    assert.is_true(res.chart_points >= 1)
    assert.same({}, res.console_errors)
    assert.truthy(core.stat(shot))
    print(("browser: the pid changed %.2f s after the click; screenshot %s"):format(res.pid_change_seconds, shot))
  end)
end)
