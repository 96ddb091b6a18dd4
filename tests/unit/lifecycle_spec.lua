-- lifecycle.lua cell by cell: every status x every event, against a
-- matrix written here on its own (not read from the module).
local lifecycle = require "pm.lifecycle"

-- what each status does on each event: "->next actions...", "=" (ignored:
-- nothing changes), "." (stays, no action), or "x" (refused)
local S, L, O, P, W, E = "stopped", "launching", "online", "stopping", "waiting restart", "errored"
local function to(status, actions) return { status, actions or "" } end
local DOWN = to(S, "unpid say:stop release")
local GIVE_UP = to(E, "unpid say:restart overlimit release")
local DELAY = to(W, "release unpid")
local HALT = to(S, "say:stop")
local CANCEL = to(S, "release")
local EXPECT = {
  --          stopped  launching   online   stopping                         waiting  errored
  queue   = { to(L),   "x",        "x",     "x",                             "x",     "x" },
  launch  = { to(L),   to(L),      to(L),   "x",                             to(L),   to(L) },
  spawned = { "x",     to(L),      "x",     "x",                             "x",     "x" },
  failed  = { "x",     to(E),      "x",     "x",                             "x",     "x" },
  ready   = { "=",     to(O, "say:online"), "=", "=",                        "=",     "=" },
  unready = { "=",     to(E),      "=",     "=",                             "=",     "=" },
  stop    = { "x",     to(P),      to(P),   "=",                             "x",     "x" },
  halt    = { "=",     HALT,       HALT,    "x",                             HALT,    HALT },
  stopped = { "x",     "x",        "x",     to(S, "release unpid say:stop"), "x",     "x" },
  rest    = { "x",     DOWN,       DOWN,    "x",                             "x",     DOWN },
  give_up = { "x",     GIVE_UP,    GIVE_UP, "x",                             "x",     GIVE_UP },
  delay   = { "x",     DELAY,      DELAY,   "x",                             "x",     DELAY },
  restart = { "x",     ".",        ".",     "x",                             "x",     "." },
  abort   = { "x",     to(O),      "x",     "=",                             "x",     to(O) },
  cancel  = { CANCEL,  CANCEL,     CANCEL,  CANCEL,                          CANCEL,  CANCEL },
  adopt   = { to(O),   "x",        "x",     "x",                             "x",     to(O) },
}
local COLUMNS = { S, L, O, P, W, E }

local function actions_of(cell)
  local t = {}
  for i = 2, #cell do t[#t + 1] = cell[i] end
  return table.concat(t, " ")
end

describe("the lifecycle table", function()
  -- (a test build's daemon raises on a refused event; here it is answered)
  before_each(function() lifecycle.strict = false end)

  it("names every status and event the matrix has, and no other", function()
    assert.same(COLUMNS, lifecycle.STATUSES)
    local events = {}
    for ev in pairs(EXPECT) do events[#events + 1] = ev end
    table.sort(events)
    local listed = {}
    for _, ev in ipairs(lifecycle.EVENTS) do listed[#listed + 1] = ev end
    table.sort(listed)
    assert.same(events, listed)
    for status, row in pairs(lifecycle.TABLE) do
      assert.truthy(({ stopped = 1, launching = 1, online = 1, stopping = 1,
        ["waiting restart"] = 1, errored = 1 })[status], status)
      for ev in pairs(row) do assert.truthy(EXPECT[ev], status .. " x " .. ev) end
    end
  end)

  for ev, row in pairs(EXPECT) do
    for i, status in ipairs(COLUMNS) do
      local want = row[i]
      local label = ("%s x %s"):format(status, ev)
      if want == "x" then
        it(label .. ": refused, nothing changes", function()
          local p = { name = "app", status = status }
          local cell, why = lifecycle.fire(p, ev)
          assert.is_nil(cell)
          assert.matches("app: .* while " .. status:gsub("%p", "%%%0"), why)
          assert.equal(status, p.status)
        end)
      elseif want == "=" then
        it(label .. ": ignored", function()
          local p = { name = "app", status = status }
          local cell = lifecycle.fire(p, ev)
          assert.equal(lifecycle.IGNORE, cell)
          assert.equal(status, p.status)
          assert.equal(0, #cell)
        end)
      elseif want == "." then
        it(label .. ": the status stays, no action", function()
          local p = { name = "app", status = status }
          local cell = lifecycle.fire(p, ev)
          assert.is_table(cell)
          assert.equal(status, p.status)
          assert.equal("", actions_of(cell))
        end)
      else
        it(("%s: -> %s%s"):format(label, want[1], want[2] ~= "" and (" (" .. want[2] .. ")") or ""), function()
          local p = { name = "app", status = status }
          local cell = lifecycle.fire(p, ev)
          assert.is_table(cell)
          assert.equal(want[1], p.status)
          assert.equal(want[2], actions_of(cell))
        end)
      end
    end
  end
end)

describe("the lifecycle flags", function()
  it("a user's stop holds a record down until its next process is spawned", function()
    local p = { name = "a" }
    lifecycle.init(p, false)
    assert.equal("stopped", p.status)
    assert.is_nil(p.manual_stop)
    lifecycle.hold(p)
    assert.is_true(p.manual_stop)
    assert.equal("stopped", lifecycle.saved_status(p))
    lifecycle.fire(p, "launch")
    assert.is_true(p.manual_stop) -- (a launch that fails keeps it held)
    lifecycle.fire(p, "spawned")
    assert.is_nil(p.manual_stop)
    assert.equal("launching", lifecycle.saved_status(p))
  end)

  it("a record saved stopped comes back held", function()
    local p = {}
    lifecycle.init(p, true)
    assert.is_true(p.manual_stop)
  end)

  it("an errored record a user stopped is saved stopped", function()
    local p = { status = "errored", manual_stop = true }
    assert.equal("stopped", lifecycle.saved_status(p))
    p.manual_stop = nil
    assert.equal("errored", lifecycle.saved_status(p))
  end)

  it("a delete makes a record unlaunchable; a failed one gives it back; a done one is final", function()
    local p = { status = "online" }
    assert.is_true(lifecycle.launchable(p))
    lifecycle.deleting(p)
    assert.is_false(lifecycle.launchable(p))
    lifecycle.undelete(p)
    assert.is_true(lifecycle.launchable(p))
    lifecycle.deleting(p)
    lifecycle.deleted(p)
    assert.is_nil(p.deleting)
    assert.is_true(p.deleted)
    assert.is_false(lifecycle.launchable(p))
  end)

  it("in a test build a refused event raises instead of passing silently", function()
    lifecycle.strict = true
    local ok, err = pcall(lifecycle.fire, { name = "a", status = "stopping" }, "launch")
    lifecycle.strict = false
    assert.is_false(ok)
    assert.matches("still stopping", err)
  end)
end)
