-- watch: which changed paths restart an app (watch.ignorer) and the globs of
-- ignore_watch (watch.glob).
local watch = require "pm.watch"

local CWD = "/srv/app"

local function ignorer(list, exact)
  return watch.ignorer(CWD, list, exact or {})
end

local function p(rel) return CWD .. "/" .. rel end

describe("watch.glob", function()
  local function matches(g, s) return s:match(watch.glob(g)) ~= nil end

  it("makes * match within one path segment", function()
    assert.is_true(matches("*.log", "app.log"))
    assert.is_true(matches("*.log", ".log"))
    assert.is_false(matches("*.log", "app.txt"))
    assert.is_false(matches("*.log", "dir/app.log"))
    assert.is_false(matches("*.log", "app.log.1"))
  end)

  it("takes the dot of *.log literally", function()
    assert.is_false(matches("*.log", "applog"))
    assert.is_false(matches("a.b", "axb"))
  end)

  it("makes ** match across segments", function()
    assert.is_true(matches("tmp/**", "tmp/a"))
    assert.is_true(matches("tmp/**", "tmp/a/b/c.txt"))
    assert.is_false(matches("tmp/**", "src/tmp/a"))
    assert.is_true(matches("**/*.log", "a/b/c.log"))
  end)

  it("lets **/ match zero directories too, as globstar does", function()
    assert.is_true(matches("**/*.log", "c.log"))
  end)

  it("makes ? match one character, not a slash", function()
    assert.is_true(matches("log?.txt", "log1.txt"))
    assert.is_false(matches("log?.txt", "log12.txt"))
    assert.is_false(matches("a?b", "a/b"))
  end)

  it("takes Lua's magic characters literally", function()
    assert.is_true(matches("a+b(1)[x]%-^$*", "a+b(1)[x]%-^$zz"))
    assert.is_false(matches("a+b", "aab"))
    assert.is_true(matches("v1.2-*", "v1.2-rc"))
  end)

  it("anchors at both ends", function()
    assert.is_false(matches("*.log", "x.log/y"))
    assert.is_false(matches("tmp", "xtmp"))
  end)
end)

describe("watch.ignorer", function()
  it("ignores node_modules and dot-directories by default", function()
    local ign = ignorer(nil)
    assert.is_true(ign(p("node_modules")))
    assert.is_true(ign(p("node_modules/x/index.js")))
    assert.is_true(ign(p("lib/node_modules/y.js")))
    assert.is_true(ign(p(".git")))
    assert.is_true(ign(p(".git/HEAD")))
    assert.is_true(ign(p(".git/objects/ab/cdef")))
    assert.is_true(ign(p("src/.cache/x")))
  end)

  it("does not ignore ordinary files and directories by default", function()
    local ign = ignorer(nil)
    assert.is_false(ign(p("app.js")))
    assert.is_false(ign(p("src")))
    assert.is_false(ign(p("src/lib/util.lua")))
    assert.is_false(ign(p("node_modules_old/x.js")))
    assert.is_false(ign(p("my.git/x")))
    assert.is_false(ign(p("a.b/c")))
  end)

  it("never ignores the watched directory itself, even under a dot-directory", function()
    assert.is_false(ignorer(nil)(CWD))
    local ign = watch.ignorer("/home/u/.apps/web", nil, {})
    assert.is_false(ign("/home/u/.apps/web"), "the app's own cwd is ignored: nothing would be watched")
    assert.is_false(ign("/home/u/.apps/web/server.js"))
    assert.is_true(ign("/home/u/.apps/web/.git/HEAD"))
  end)

  it("ignores the exact paths given (the app's own logs), and only them", function()
    local ign = ignorer(nil, { [p("logs/out.log")] = true, ["/var/log/app-err.log"] = true })
    assert.is_true(ign(p("logs/out.log")))
    assert.is_true(ign("/var/log/app-err.log"))
    assert.is_false(ign(p("logs/other.log")))
    assert.is_false(ign(p("logs")))
  end)

  it("ignores names of files or directories anywhere", function()
    local ign = ignorer({ "dist", "build.txt" })
    assert.is_true(ign(p("dist")))
    assert.is_true(ign(p("dist/a.js")))
    assert.is_true(ign(p("pkg/dist/a.js")))
    assert.is_true(ign(p("build.txt")))
    assert.is_true(ign(p("sub/build.txt")))
    assert.is_false(ign(p("distant.js")))
    assert.is_false(ign(p("build.txt.bak")))
  end)

  it("ignores a relative path under the cwd", function()
    local ign = ignorer({ "src/gen.js" })
    assert.is_true(ign(p("src/gen.js")))
    assert.is_false(ign(p("src/main.js")))
    assert.is_false(ign(p("other/src/gen.js")))
  end)

  it("ignores by glob, in any directory for a one-segment glob", function()
    local ign = ignorer({ "*.log" })
    assert.is_true(ign(p("a.log")))
    assert.is_true(ign(p("logs/deep/b.log")))
    assert.is_false(ign(p("a.txt")))
    assert.is_false(ign(p("applog")))
  end)

  it("ignores everything under tmp/** but not a tmp elsewhere", function()
    local ign = ignorer({ "tmp/**" })
    assert.is_true(ign(p("tmp/a")))
    assert.is_true(ign(p("tmp/a/b/c.txt")))
    assert.is_false(ign(p("src/tmp.js")))
    assert.is_false(ign(p("tmpx/a")))
  end)

  it("takes one string as well as a list", function()
    local ign = ignorer("*.tmp")
    assert.is_true(ign(p("x.tmp")))
    assert.is_false(ign(p("x.js")))
  end)

  it("replaces the defaults with the app's ignore_watch", function()
    local ign = ignorer({ "*.log" })
    assert.is_false(ign(p("node_modules/x.js")))
    assert.is_false(ign(p(".env")))
  end)

  it("keeps the exact paths with an ignore_watch of the app", function()
    local ign = ignorer({ "dist" }, { [p("out.log")] = true })
    assert.is_true(ign(p("out.log")))
    assert.is_true(ign(p("dist/x")))
    assert.is_false(ign(p("err.log")))
  end)

  it("applies names and globs to paths outside the cwd (other watched roots)", function()
    local ign = ignorer(nil)
    assert.is_true(ign("/etc/shared/node_modules/x"))
    assert.is_true(ign("/etc/shared/.svn/entries"))
    assert.is_false(ign("/etc/shared/conf.ini"))
    -- a sibling of the cwd that starts with the cwd's name is not under it
    assert.is_false(ignorer({ "x.js" })("/srv/app2/y.js"))
  end)
end)
