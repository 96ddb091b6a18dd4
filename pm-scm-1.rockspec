-- `luarocks make` (in a clone of pm): the client (require "pm", pm.child,
-- pm.core), the pm binary, the Lua reference and its LuaLS stubs, for
-- plain LuaJIT. It runs the Makefile (build, install): the build needs
-- Debian's gcc make libluajit-5.1-dev luajit libev-dev libedit-dev
-- libncurses-dev lua-cjson-dev zlib1g-dev (`make deps` installs them).
rockspec_format = "3.0"
package = "pm"
version = "scm-1"
source = {
  url = "git+file://.",
}
description = {
  summary = "A process manager whose policy is Lua: PM2's CLI and API, a libev core",
  detailed = [[
pm runs and supervises apps (PM2's verbs, ecosystem files, logs, reload),
with hooks in Lua run inside the daemon. This rock installs the Lua client
(require "pm"), pm.child for apps written in Lua, the pm binary, the Lua
reference (pm help lua) and LuaLS stubs in share/pm/types.
]],
  license = "MIT",
}
supported_platforms = { "linux" }
dependencies = {
  -- LuaJIT (it reports 5.1); the client needs lua-cjson (Debian's lua-cjson
  -- does, with --deps-mode=none)
  "lua == 5.1",
  "lua-cjson",
}
build = {
  type = "make",
  build_target = "build",
  install_target = "install",
  install_variables = {
    PREFIX = "$(PREFIX)",
    LUA_DIR = "$(LUADIR)",
    LUA_CDIR = "$(LIBDIR)",
    BIN_DIR = "$(BINDIR)",
    TYPES_DIR = "$(PREFIX)/share/pm/types",
  },
}
