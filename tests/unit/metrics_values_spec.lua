-- What the RPC metrics sends for a scrape (metrics.collect: labels as JSON
-- rows, every app's numbers as one string) and the text the web process
-- makes of it (metrics.pieces / metrics.text): every number as collect
-- wrote it, in the row of its app, a string of another shape refused
-- whole, the text in pieces of at most metrics.PIECE bytes.
local metrics = require "pm.metrics"
local util = require "pm.util"
local core = require "pm.core"

local BUS = { subscribers = function() return 0 end, dropped_total = 0 }

local function record(id, fields)
  local p = { pm_id = id, name = "app" .. id, instance = 0, status = "online", pid = 100 + id,
    pm_uptime = core.now() - 61000, restart_time = 0, decl = { namespace = "default" } }
  for k, v in pairs(fields or {}) do p[k] = v end
  return p
end

-- the metrics method's reply for list (sample: pm_id -> { rss, cpu }), decoded
local function collect(list, samples)
  return util.decode(util.raw_text(metrics.collect({ list = list, bus = BUS, requests = {},
    sample = function(p) local s = samples[p.pm_id] return s[1], s[2] end })))
end

local function value(text, family, id)
  return text:match("\n" .. family .. '{id="' .. id .. '",[^}]*} (%S+)\n')
end

describe("metrics values", function()
  it("are sent as one string, an app's numbers in the order of metrics.VALUES", function()
    local data = collect({ record(1, { restart_time = 3, ready = true }), record(2, { status = "stopped", pid = 0 }) },
      { [1] = { 123456789, 12.5 } })
    assert.same({ 1, "app1", "default", 0, "none" }, data.apps[1])
    -- (uptime: 61 s, or a little more on a slow machine)
    local up = assert(data.values:match("^1 12%.5 123456789 (%d+) 3 1 0 1;0 0 0 0 0 0 0 1;$"), data.values)
    assert.is_true(tonumber(up) >= 61 and tonumber(up) <= 70)
    assert.equal(8, #metrics.VALUES)
  end)

  it("reach the text as collect wrote them, each in its app's row and family", function()
    local text = metrics.text(collect({ record(1), record(2, { health_failures = 2 }) },
      { [1] = { 2 ^ 40, 0.1 }, [2] = { 4096, 150.3 } }))
    assert.equal("1099511627776", value(text, "pm2_memory", 1))
    assert.equal("0.1", value(text, "pm2_cpu", 1))
    assert.equal("4096", value(text, "pm2_memory", 2))
    assert.equal("150.3", value(text, "pm2_cpu", 2))
    assert.equal("2", value(text, "pm_health_failures", 2))
    assert.equal("0", value(text, "pm_health_failures", 1))
    assert.equal("1", value(text, "pm2_up", 2))
    assert.is_true(tonumber(value(text, "pm2_uptime", 2)) >= 61)
  end)

  it("follow the app: a new sample, a restart, a rename are in the next scrape", function()
    local p = record(5)
    local samples = { [5] = { 1000, 1 } }
    local t1 = metrics.text(collect({ p }, samples))
    assert.equal("1000", value(t1, "pm2_memory", 5))
    samples[5] = { 50 * 2 ^ 20, 75 }
    p.restart_time, p.pm_uptime = 1, core.now()
    p.name = "renamed"
    local t2 = metrics.text(collect({ p }, samples))
    assert.equal(tostring(50 * 2 ^ 20), value(t2, "pm2_memory", 5))
    assert.equal("75", value(t2, "pm2_cpu", 5))
    assert.equal("1", value(t2, "pm2_restarts", 5))
    assert.equal("0", value(t2, "pm2_uptime", 5))
    assert.truthy(t2:find('pm2_up{id="5",name="renamed",', 1, true))
    assert.falsy(t2:find('name="app5"', 1, true))
  end)

  it("say 0 for a CPU share that is no number (a sample of no time)", function()
    local data = collect({ record(1), record(2), record(3) }, { [1] = { 1, 0 / 0 }, [2] = { 2, math.huge },
      [3] = { 3, -math.huge } })
    local text = assert(metrics.text(data))
    for id = 1, 3 do assert.equal("0", value(text, "pm2_cpu", id)) end
  end)

  it("of another shape are refused whole, nothing read out of them", function()
    local data = collect({ record(1), record(2) }, { [1] = { 1, 1 }, [2] = { 2, 2 } })
    local good = data.values
    for _, bad in ipairs({
      good:gsub(";$", ""),                  -- a row not ended
      good .. "1 1 1 1 1 1 1 1;",           -- more rows than apps
      good:gsub("^[^;]*;", ""),             -- fewer rows
      good:gsub(" 1;", ";", 1),             -- a number missing
      good:gsub(";", " 9;", 1),             -- a number too many
      good:gsub("^1", "1\n# x"),            -- text that is not a number
      42,
    }) do
      data.values = bad
      local text, err = metrics.pieces(data)
      assert.is_nil(text, tostring(bad))
      assert.truthy(err:match("^values: "), err)
    end
    data.values = good
    assert.truthy(metrics.pieces(data))
  end)

  it("make a text in pieces of at most PIECE bytes, the same text when joined", function()
    local list, samples = {}, {}
    for i = 0, 1999 do
      list[#list + 1] = record(i, { name = "s", instance = i })
      samples[i] = { 100000 + i, i % 10 / 10 }
    end
    local data = collect(list, samples)
    local pieces = assert(metrics.pieces(data))
    local size = 0
    for _, s in ipairs(pieces) do
      assert.is_true(#s <= metrics.PIECE)
      size = size + #s
    end
    assert.is_true(#pieces > 1)
    local text = table.concat(pieces)
    assert.equal(size, #text)
    assert.equal(text, metrics.text(data))
    assert.equal("101999", value(text, "pm2_memory", 1999))
    assert.equal("0.9", value(text, "pm2_cpu", 1999))
    assert.truthy(text:find("\npm_apps 2000\n", 1, true))
  end)
end)
