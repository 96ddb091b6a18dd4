-- The dotenv syntax of env files (lua/pm/dotenv.lua): docker compose's and
-- systemd's EnvironmentFile= reading, no expansion, errors at path:line.
local dotenv = require "pm.dotenv"

local function parse(text) return dotenv.parse(text, "/x/.env") end

describe("dotenv.parse", function()
  it("reads KEY=value lines, comments, blank lines and export", function()
    local v = assert(parse("# top\n\nA=1\nexport B=two\n  C = three  \nexport=4\nD.E-F=5\r\nG=\n"))
    assert.same({ A = "1", B = "two", C = "three", export = "4", ["D.E-F"] = "5", G = "" }, v)
  end)

  it("quotes: single as is, double with escapes, both over lines; no expansion", function()
    local v = assert(parse([[
S='a $HOME \n # b'
D="x \"y\" \n\t\\ \$z $HOME"
M="line one
line two"
U=plain # comment
H=a#b
T='x' # after
]]))
    assert.equal("a $HOME \\n # b", v.S)
    assert.equal('x "y" \n\t\\ $z $HOME', v.D)
    assert.equal("line one\nline two", v.M)
    assert.equal("plain", v.U)
    assert.equal("a#b", v.H)
    assert.equal("x", v.T)
  end)

  it("the last of two lines for a name wins", function()
    assert.same({ A = "2" }, parse("A=1\nA=2\n"))
  end)

  it("errors name path:line and never the line", function()
    local function err(text)
      local v, e = parse(text)
      assert.is_nil(v)
      return e
    end
    assert.equal("/x/.env:3: expected KEY=value", err("A=1\n\nSECRETVALUE\n"))
    assert.equal("/x/.env:1: not a variable name before '=' (letters, digits, _ . -)", err("1A=x\n"))
    assert.equal("/x/.env:1: not a variable name before '=' (letters, digits, _ . -)", err("A B=x\n"))
    assert.equal("/x/.env:2: the quote opened here is never closed", err("A=1\nB=\"open\nC=2\n"))
    assert.equal("/x/.env:1: text after the closing quote (quote the whole value)", err("A='x'y\n"))
    assert.equal("/x/.env:3: expected KEY=value", err("A=\"x\ny\"\nbad\n"))
    assert.is_truthy(err("A=1\0\n"):find("NUL", 1, true))
  end)
end)
