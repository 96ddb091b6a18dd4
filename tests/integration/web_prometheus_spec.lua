-- pm web's /metrics scraped by a real Prometheus (Debian's prometheus, in
-- DEPS): started on loopback with a temporary storage folder and a 1 s
-- scrape interval, asked through its HTTP query API.
local H = require "pmtest"
local util = require "pm.util"
local core = require "pm.core"
local http = require "httpc"

local function have(cmd) return os.execute("command -v " .. cmd .. " >/dev/null 2>&1") == 0 end

describe("pm web and Prometheus", function()
  local prom
  before_each(function() H.new_home() end)
  after_each(function()
    if prom and H.alive(prom) then
      core.kill(prom, core.signals.SIGTERM)
      H.wait_for(function() core.reap(prom); return not H.alive(prom) end, 10000, "prometheus to end")
    end
    prom = nil
    H.cleanup(H.home)
  end)

  it("scrapes pm2_up{name=\"a\"}: 1 while a runs, 0 once pm stop a", function()
    if not have("prometheus") then
      print("SKIPPED: prometheus is not installed (make deps installs the Debian package prometheus)")
      return
    end
    H.ok(H.pm("start", "--name", "a", "--", "sleep", "1000"))
    local port = H.free_port()
    H.ok(H.pm("web", "--listen", "127.0.0.1:" .. port))
    local pport = H.free_port()
    local dir = H.home .. "/prometheus"
    core.mkdir(dir, 448)
    H.write(dir .. "/prometheus.yml", ([[
global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: pm
    static_configs:
      - targets: ["127.0.0.1:%d"]
]]):format(port))
    local log = assert(core.open(dir .. "/prometheus.log", "w"))
    prom = assert(core.spawn({ file = "prometheus", args = { "prometheus", "--config.file=" .. dir .. "/prometheus.yml",
      "--storage.tsdb.path=" .. dir .. "/data", "--web.listen-address=127.0.0.1:" .. pport,
      "--storage.tsdb.retention.time=1h" }, fds = { -1, log, log } }))
    core.close(log)
    local function ask(q)
      local r = http.get(pport, "/api/v1/query?query=" .. q:gsub("[^%w_]", function(c)
        return ("%%%02X"):format(c:byte())
      end))
      return r.status, util.decode(r.body)
    end
    local function query(q)
      local status, res = ask(q)
      if status ~= 200 then return nil end
      local v = type(res) == "table" and res.data and res.data.result and res.data.result[1]
      return v and v.value and v.value[2]
    end
    local t0 = core.mono()
    H.wait_for(function() return query('pm2_up{name="a"}') == "1" end, 30000,
      "prometheus to scrape pm2_up{name=\"a\"} == 1 (its log: " .. dir .. "/prometheus.log)")
    H.ok(H.pm("stop", "a"))
    H.wait_for(function() return query('pm2_up{name="a"}') == "0" end, 15000, "pm2_up{name=\"a\"} == 0")
    -- the scrape is healthy
    assert.equal("1", query('up{job="pm"}'))
    -- every query of ecosystem/grafana-dashboard.json is valid PromQL, and
    -- every metric it names is one /metrics has
    local scrape = http.get(port, "/metrics").body
    local dash = util.decode(util.read_file(H.src .. "/ecosystem/grafana-dashboard.json"))
    local n = 0
    for _, panel in ipairs(dash.panels) do
      for _, t in ipairs(panel.targets) do
        local expr = t.expr:gsub("%$namespace", ".*"):gsub("%$name", ".*")
        local status, res = ask(expr)
        assert(status == 200 and res.status == "success", ("panel %q: %s: %s"):format(panel.title, expr,
          util.encode(res)))
        for metric in expr:gmatch("%f[%w_](pm2?_[%w_]+)") do
          assert(scrape:find("# TYPE " .. metric .. " ", 1, true), ("panel %q: no metric %s"):format(panel.title,
            metric))
        end
        n = n + 1
      end
    end
    assert.is_true(n >= 16)
    print(("prometheus: scraped in %.1f s from its start"):format((core.mono() - t0) / 1000))
  end)
end)
