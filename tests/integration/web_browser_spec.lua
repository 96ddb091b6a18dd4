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

  it("shows the table a page at a time, with a filter (thousands of apps)", function()
    if not have_browser() then
      print("SKIPPED: chromium, chromium-driver or python3-selenium missing (make deps installs them)")
      return
    end
    local apps = {}
    for i = 1, 150 do apps[i] = { name = "app-" .. i, script = "/bin/sleep", args = "1000", interpreter = "none" } end
    H.write(H.home .. "/many.json", util.encode({ apps = apps }))
    H.ok(H.pm("start", H.home .. "/many.json"))
    local port = H.free_port()
    local token = H.ok(H.pm("web", "--listen", "127.0.0.1:" .. port)).out:match("%?token=(%x+)")
    local b = H.sh(("%s %s %s %s 151 %s"):format(PY, H.shquote(H.fixtures .. "/web_browser_pages.py"),
      H.shquote("http://127.0.0.1:" .. port), token, H.shquote(H.home .. "/chromium")))
    local res = util.decode(b.out)
    assert(type(res) == "table", "web_browser_pages.py: " .. b.out .. b.err)
    assert(not res.error, "the browser: " .. tostring(res.error) .. " (seen: " .. b.out .. ")")
    assert.equal("151 process(es), 151 online", res.summary)
    assert.equal("1\u{2013}100 of 151", res.first_page)
    assert.equal(100, res.first_rows)
    assert.is_true(res.prev_disabled)
    assert.equal("101\u{2013}151 of 151", res.second_page)
    assert.equal(51, #res.second_names)
    assert.equal("app-101", res.second_names[1])
    assert.is_true(res.next_disabled)
    assert.equal(res.second_page, res.second_page_later)
    assert.equal("1\u{2013}11 of 11", res.filtered_page)
    assert.same({ "app-14", "app-140", "app-141", "app-142", "app-143", "app-144", "app-145", "app-146", "app-147",
      "app-148", "app-149" }, res.filtered_names)
    assert.same({}, res.console_errors)
  end)
end)
