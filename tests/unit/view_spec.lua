-- How pm shows processes (lua/pm/view.lua): units, the table of pm list,
-- the card of pm describe, the rows of pm monit and the status colours,
-- from descriptions made up here (no daemon).
local view = require "pm.view"
local util = require "pm.util"

local NOW = 1700000000000
local NOBODY = 4242424 -- a uid no passwd file names: shown as the number

local function desc(over)
  local env = { status = "online", namespace = "default", exec_mode = "fork_mode", instances = 1,
    pm_uptime = NOW - 90000, restart_time = 2, uid = NOBODY, watch = false }
  for k, v in pairs(over.env or {}) do env[k] = v end
  return { name = over.name or "api", pm_id = over.pm_id or 0, pid = over.pid or 1234,
    monit = over.monit or { cpu = 1.5, memory = 52428800 }, pm2_env = env }
end

local function lines_of(s)
  local out = {}
  for l in s:gmatch("([^\n]*)\n") do out[#out + 1] = l end
  return out
end

-- the texts of a table line's cells
local function cells(line)
  local out = {}
  local from = 1
  while true do
    local a, b = line:find("│", from, true)
    if not a then break end
    if from > 1 then out[#out + 1] = line:sub(from, a - 1):match("^ (.-) *$") end
    from = b + 1
  end
  return out
end

-- characters on the screen, not bytes
local function width(s)
  local _, n = s:gsub("[^\128-\191]", "")
  return n
end

describe("human units", function()
  it("bytes in PM2's units, one decimal from a kilobyte on; short ones for monit", function()
    assert.equal("0b", view.bytes(0))
    assert.equal("0b", view.bytes(nil))
    assert.equal("1023b", view.bytes(1023))
    assert.equal("1.0kb", view.bytes(1024))
    assert.equal("1.5kb", view.bytes(1536))
    assert.equal("2.0kb", view.bytes("2048"))
    assert.equal("50.0mb", view.bytes(52428800))
    assert.equal("3.0gb", view.bytes(3 * 1073741824))
    assert.equal("512B", view.bytes(512, true))
    assert.equal("1.5M", view.bytes(1572864, true))
    assert.equal("1.0G", view.bytes(1073741824, true))
  end)

  it("uptime in one unit, rounded down", function()
    assert.equal("0s", view.uptime(0))
    assert.equal("0s", view.uptime(-5000))
    assert.equal("59s", view.uptime(59999))
    assert.equal("1m", view.uptime(60000))
    assert.equal("59m", view.uptime(3599999))
    assert.equal("1h", view.uptime(3600000))
    assert.equal("23h", view.uptime(86399999))
    assert.equal("2D", view.uptime(2 * 86400000 + 5000))
  end)

  it("settings in milliseconds, and local dates to the second", function()
    assert.equal("500 ms", view.ms(500))
    assert.is_nil(view.ms(nil))
    assert.equal(os.date("%Y-%m-%d %H:%M:%S", 1700000000), view.date(NOW + 999))
  end)
end)

describe("status colours", function()
  it("one colour for every status of a description", function()
    for _, s in ipairs({ "launching", "online", "stopping", "stopped", "errored", "waiting restart" }) do
      assert.is_string(view.STATUS_COLORS[s], s)
      assert.equal(view.STATUS_COLORS[s], view.status_style(s))
    end
    assert.equal("green", view.status_style("online"))
    assert.equal("red", view.status_style("errored"))
    assert.is_nil(view.status_style("no such status"))
  end)

  it("paints a terminal's text in ANSI codes (stopped in grey), an unknown status not at all", function()
    assert.equal("\27[32monline\27[0m", view.paint("online", "online"))
    assert.equal("\27[31merrored \27[0m", view.paint("errored ", "errored"))
    assert.equal("\27[90mstopped\27[0m", view.paint("stopped", "stopped"))
    assert.equal("\27[33mwaiting restart\27[0m", view.paint("waiting restart", "waiting restart"))
    assert.equal("?", view.paint("?", nil))
  end)
end)

describe("the process table", function()
  local list = {
    desc({ env = { version = "1.2.0" } }),
    desc({ name = "worker", pm_id = 1, pid = 0, monit = { cpu = 0, memory = 0 },
      env = { status = "stopped", namespace = "jobs", exec_mode = "cluster_mode", instances = 4, restart_time = 0,
        watch = true } }),
  }

  it("renders a list of descriptions, every column in order, box-drawn", function()
    local expected = table.concat({
      "┌────┬────────┬───────────┬─────────┬────────────┬──────"
        .. "┬────────┬───┬─────────┬──────┬────────┬─────────┬──────────┐",
      "│ id │ name   │ namespace │ version │ mode       "
        .. "│ pid  │ uptime │ ↺ │ status  │ cpu  │ mem    │ user    │ watching │",
      "├────┼────────┼───────────┼─────────┼────────────┼──────"
        .. "┼────────┼───┼─────────┼──────┼────────┼─────────┼──────────┤",
      "│ 0  │ api    │ default   │ 1.2.0   │ fork       "
        .. "│ 1234 │ 1m     │ 2 │ online  │ 1.5% │ 50.0mb │ 4242424 │ disabled │",
      "│ 1  │ worker │ jobs      │ N/A     │ cluster x4 "
        .. "│ 0    │ 0      │ 0 │ stopped │ 0%   │ 0b     │ 4242424 │ enabled  │",
      "└────┴────────┴───────────┴─────────┴────────────┴──────"
        .. "┴────────┴───┴─────────┴──────┴────────┴─────────┴──────────┘",
    }, "\n") .. "\n"
    assert.equal(expected, view.table(list, { color = false, now = NOW }))
  end)

  it("an empty list is the header alone", function()
    local l = lines_of(view.table({}, { color = false, now = NOW }))
    assert.equal(4, #l)
    assert.same(view.COLUMNS, cells(l[2]))
  end)

  it("drops the least useful columns until it fits a narrow terminal", function()
    local full = lines_of(view.table(list, { color = false, now = NOW }))
    local w = width(full[1])
    assert.same(view.COLUMNS, cells(full[2]))
    -- a little narrower: watching goes first; then user, version, namespace, mode, uptime
    local expected = { "id", "name", "namespace", "version", "mode", "pid", "uptime", "↺", "status", "cpu", "mem",
      "user" }
    local l = lines_of(view.table(list, { color = false, now = NOW, width = w - 1 }))
    assert.same(expected, cells(l[2]))
    l = lines_of(view.table(list, { color = false, now = NOW, width = 40 }))
    assert.same({ "id", "name", "pid", "↺", "status", "cpu", "mem" }, cells(l[2]))
    -- what is left stays even when it does not fit
    for _, line in ipairs(l) do assert.equal(width(l[1]), width(line)) end
  end)

  it("colours the status cells of the rows on a terminal, never the header", function()
    local l = lines_of(view.table(list, { color = true, now = NOW }))
    assert.is_nil(l[2]:find("\27", 1, true))
    assert.is_truthy(l[4]:find("│ \27[32monline \27[0m │", 1, true), l[4])
    assert.is_truthy(l[5]:find("│ \27[90mstopped\27[0m │", 1, true), l[5])
  end)

  it("shows sd_notify's STATUS= with the status, cut at 24 characters", function()
    local d = desc({ env = { notify = { status = "warming the cache, 40% done" } } })
    local l = lines_of(view.table({ d }, { color = false, now = NOW }))
    assert.is_truthy(l[4]:find("│ online (warming the cache, 40% d) │", 1, true), l[4])
  end)

  it("knows a list of descriptions from other values", function()
    assert.is_true(view.is_list(list))
    assert.is_false(view.is_list({}))
    assert.is_false(view.is_list({ 1, 2 }))
    assert.is_false(view.is_list({ { pm_id = 0 } }))
    assert.is_false(view.is_list("api"))
  end)
end)

describe("the card of pm describe", function()
  it("lists what a description says, leaves out what it does not (null, watch off), ends with events and env",
    function()
    local d = desc({ env = { pm_exec_path = "/srv/api.js", exec_interpreter = "node", args = { "--port", "3000" },
      pm_cwd = "/srv", unstable_restarts = 0, exit_code = util.null, created_at = NOW - 60000,
      min_uptime = 1000, kill_timeout = 1600, max_memory_restart = 209715200, autorestart = true,
      events = { { at = NOW - 1500, event = "exit", code = 1, signal = util.null, reason = "exit" },
        { at = NOW - 1000, event = "online" } },
      env = { B = "2", A = "1" } } })
    local expected = table.concat({
      "── api (id 0) ──",
      "status               online",
      "pid                  1234",
      "namespace            default",
      "script               /srv/api.js",
      "args                 --port 3000",
      "interpreter          node",
      "cwd                  /srv",
      "exec mode            fork_mode",
      "instances            1",
      "restarts             2",
      "unstable restarts    0",
      "uptime               1m",
      "created at           " .. view.date(NOW - 60000),
      "cpu                  1.5%",
      "memory               50.0mb",
      "autorestart          true",
      "min uptime           1000 ms",
      "kill timeout         1600 ms",
      "max memory           200.0mb",
      "recent events:",
      "  " .. view.date(NOW - 1500) .. ".500  exit (code 1, reason exit)",
      "  " .. view.date(NOW - 1000) .. ".000  online",
      "env:",
      "  A=1",
      "  B=2",
    }, "\n") .. "\n"
    assert.equal(expected, view.card(d, NOW))
  end)
end)

describe("lines about events", function()
  local d = { pm_id = 3, name = "api" }
  it("log lines as PM2 prints them, raw, or as JSON", function()
    assert.equal("3|api|hello\n", view.log_line(d, "out", "hello"))
    assert.equal("hello\n", view.log_line(d, "out", "hello", "raw"))
    assert.equal('{"message":"oops","timestamp":null,"type":"err","process_id":3,"app_name":"api"}\n',
      view.log_line(d, "err", "oops", "json"))
    assert.equal('{"message":"hi","timestamp":"1970-01-01T00:00:01.500Z","type":"out","process_id":3,'
      .. '"app_name":"api"}\n', view.log_line(d, "out", "x: hi", "json", { at = 1500, message = "hi" }))
    assert.equal("app=api id=3 type=error message=oops\n", view.log_line(d, "err", "oops", "format"))
    assert.equal("\27[" .. view.app_color("api") .. "m3|api\27[0m\27[31m|\27[0ma \27[100mb\27[0m c\n",
      view.log_line(d, "err", "a b c", nil, { color = true, highlight = "b" }))
  end)

  it("the progress of a long operation, and what re-reading a file changed", function()
    assert.equal("restart all: online api (3) [2]",
      view.progress("restart all", { event = "online", process = { name = "api", pm_id = 3 } }, 2))
    assert.equal("api (3): applied env, instances\n", view.changes({ name = "api", pm_id = 3,
      pm2_env = { changes = { "env", "instances" } } }))
    assert.equal("api (3): restarted, nothing changed\n", view.changes({ name = "api", pm_id = 3,
      pm2_env = { changes = {} } }))
    assert.equal("api (3): reloaded, nothing changed\n", view.changes({ name = "api", pm_id = 3,
      pm2_env = { changes = {} } }, "reloaded"))
    assert.is_nil(view.changes({ name = "api", pm_id = 3, pm2_env = {} }))
  end)
end)

describe("the rows of pm monit", function()
  it("a bar is filled in proportion, within its width", function()
    assert.equal("|||||     ", view.bar(0.5, 10))
    assert.equal("          ", view.bar(-1, 10))
    assert.equal("||||||||||", view.bar(7, 10))
  end)

  it("a row lines up under the header; its status starts where monit paints it", function()
    local d = desc({})
    local head, row = view.monit_head(5), view.monit_row(d, 5, 8 * 104857600, NOW)
    assert.equal("id   name               status             cpu             mem          rst  uptime", head)
    assert.equal("0    api                online            1.5% [     ]   50.0M [|||  ]    2      1m", row)
    assert.equal("online", row:sub(view.MONIT_STATUS_COL + 1, view.MONIT_STATUS_COL + 6))
    local text, style = view.monit_status(d)
    assert.equal(("%-15s"):format("online"), text)
    assert.equal("green", style)
  end)

  it("the selected app's details", function()
    local title, a, b = view.monit_details(desc({ env = { pm_exec_path = "/srv/api.js", exec_interpreter = "node",
      pm_cwd = "/srv", exit_code = 1, notify = { status = "ready" } } }))
    assert.equal("── api (id 0) ", title)
    assert.equal("pid 1234   script /srv/api.js   interpreter node", a)
    assert.equal("cwd /srv   restarts 2   unstable 0   last exit 1   status: ready", b)
  end)
end)
