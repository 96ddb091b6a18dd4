-- Node's util.inspect notation of JSON text (lua/pm/inspect.lua), what
-- `pm prettylist` prints as PM2's does. The expected texts are what Node's
-- util.inspect(value, false, null, false) prints for the same values.
local inspect = require "pm.inspect"

local function show(json) return assert(inspect.inspect(json)) end

describe("inspect.inspect", function()
  it("bare identifier keys, quoted others; strings in the quote that spares an escape", function()
    assert.equal("{\n  name: 'api',\n  'a-b': \"it's\",\n  q: `say \"hi\" it's`,\n  r: 'a \\'b\\' \"c\" `d`'\n}",
      show([[{"name":"api","a-b":"it's","q":"say \"hi\" it's","r":"a 'b' \"c\" `d`"}]]))
  end)

  it("control characters escaped as Node does, other UTF-8 as it is", function()
    assert.equal([=[[ 'a\nb\tc\x01\\', '\x7F\x85', 'é ✓ 😀' ]]=],
      show([=[["a\nb\tc\u0001\\","\u007f\u0085","é ✓ \ud83d\ude00"]]=]))
  end)

  it("numbers as JavaScript writes them; true, false, null; empty {} and []", function()
    assert.equal("[ 0, -0, 1.5, -0.001, 1e+21, 1e-7 ]", show("[0,-0,1.5,-1e-3,1e21,0.0000001]"))
    assert.equal("[ 1796557837950, true, false, null, {}, [] ]", show("[1796557837950,true,false,null,{},[]]"))
  end)

  it("keeps the text's key order", function()
    assert.equal("{ z: 1, a: 2, m: 3 }", show('{"z":1,"a":2,"m":3}'))
  end)

  it("one line when it fits 80 columns and holds at most two levels below it", function()
    assert.equal("{\n  x: { y: { z: { w: 1 } } }\n}", show('{"x":{"y":{"z":{"w":1}}}}'))
    assert.equal("{ x: { y: { z: 1 } } }", show('{"x":{"y":{"z":1}}}'))
    assert.equal(table.concat({
      "[",
      "  { action_name: 'km:heapdump', action_type: 'internal', arity: 2 },",
      "  { a: 1 }",
      "]" }, "\n"),
      show('[{"action_name":"km:heapdump","action_type":"internal","arity":2},{"a":1}]'))
    assert.equal(table.concat({
      "{",
      "  long: [",
      "    'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa',",
      "    'bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb',",
      "    'cccccccccccccccccccccc'",
      "  ]",
      "}" }, "\n"),
      show('{"long":["aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",'
        .. '"bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb","cccccccccccccccccccccc"]}'))
  end)

  it("arrays of more than six short entries in columns (numbers to the right)", function()
    local nums = {}
    for i = 1, 28 do nums[i] = i end
    assert.equal(table.concat({
      "[",
      "   1,  2,  3,  4,  5,  6,  7,  8,",
      "   9, 10, 11, 12, 13, 14, 15, 16,",
      "  17, 18, 19, 20, 21, 22, 23, 24,",
      "  25, 26, 27, 28",
      "]" }, "\n"), show("[" .. table.concat(nums, ",") .. "]"))
    assert.equal(table.concat({
      "[",
      "  'a',     'bb',",
      "  'ccc',   'dddd',",
      "  'eeeee', 'ffffff',",
      "  'g',     'hh'",
      "]" }, "\n"), show('["a","bb","ccc","dddd","eeeee","ffffff","g","hh"]'))
  end)

  it("at most 100 entries of an array and 10,000 characters of a string", function()
    local many = {}
    for i = 1, 102 do many[i] = '{"a":' .. i .. "}" end
    local out = show("[" .. table.concat(many, ",") .. "]")
    assert.is_truthy(out:find("{ a: 100 },\n  ... 2 more items\n]$"), out:sub(-60))
    assert.is_nil(out:find("a: 101", 1, true))
    local s = show('"' .. ("x"):rep(10003) .. '"')
    assert.equal("'" .. ("x"):rep(10000) .. "'... 3 more characters", s)
  end)

  it("bad JSON: nil and where", function()
    local v, err = inspect.inspect('{"a":1,}')
    assert.is_nil(v)
    assert.is_truthy(err:find("bad JSON at byte", 1, true), err)
    assert.is_nil((inspect.inspect('{"a":1} x')))
    assert.is_nil((inspect.inspect('"open')))
  end)
end)

describe("inspect.prettylist", function()
  it("moves pm's own members of pm2_env under one pm key and leaves the event history out", function()
    local out = assert(inspect.prettylist([=[
[{"name":"api","pid":1,"pm_id":0,"pm2_env":{"status":"online","restart_time":0,"ready":"start",
"events":[{"at":1,"event":"online"},{"at":2,"event":"online"}],"exit_signal":"SIGTERM","env":{"A":"1"}}}]]=]))
    local _, online = out:gsub("online", "")
    assert.equal(1, online, out)
    assert.is_truthy(out:find("    pm2_env: { status: 'online', restart_time: 0, env: { A: '1' } },\n"
      .. "    pm: { ready: 'start', exit_signal: 'SIGTERM' }\n", 1, true), out)
  end)

  it("a description without pm's members has no pm key; an empty list is []", function()
    local out = assert(inspect.prettylist('[{"name":"a","pm2_env":{"status":"stopped"}}]'))
    assert.equal("[ { name: 'a', pm2_env: { status: 'stopped' } } ]", out)
    assert.equal("[]", inspect.prettylist("[]"))
  end)

  it("leaves out script and cwd when pm_exec_path and pm_cwd say the same", function()
    local out = assert(inspect.prettylist('[{"pm2_env":{"script":"/a/x.js","cwd":"/a","pm_exec_path":"/a/x.js",'
      .. '"pm_cwd":"/a"}},{"pm2_env":{"script":"x.js","cwd":"/b","pm_exec_path":"/a/x.js","pm_cwd":"/a"}}]'))
    assert.equal(table.concat({
      "[",
      "  { pm2_env: { pm_exec_path: '/a/x.js', pm_cwd: '/a' } },",
      "  {",
      "    pm2_env: {",
      "      script: 'x.js',",
      "      cwd: '/b',",
      "      pm_exec_path: '/a/x.js',",
      "      pm_cwd: '/a'",
      "    }",
      "  }",
      "]" }, "\n"), out)
  end)

  it("names interpreter_args node_args, as PM2 does", function()
    assert.equal("[\n  { pm2_env: { node_args: [ '--harmony' ] } }\n]",
      inspect.prettylist('[{"pm2_env":{"interpreter_args":["--harmony"]}}]'))
  end)

  it("shows the instance number under instance_var's name, without the variable's text beside it", function()
    assert.equal("[\n  {\n    pm2_env: { instance_var: 'APP_ID', APP_ID: 1, env: { APP_ID: '1' } }\n  }\n]",
      inspect.prettylist('[{"pm2_env":{"instance_var":"APP_ID","NODE_APP_INSTANCE":1,"APP_ID":"1",'
        .. '"env":{"APP_ID":"1"}}}]'))
  end)
end)
