/*
 * main.c: the `pm` binary. One LuaJIT state with the Lua modules compiled in
 * as bytecode (found by require through their luaJIT_BC_* symbols, hence
 * -Wl,-E), `pm.core` and `cjson` (Debian's lua-cjson, linked in) preloaded,
 * then pm.main decides everything.
 * PM_LUA_DIR=<dir> loads the modules from <dir> first (development).
 */
#include <stdlib.h>
#include <string.h>
#include <stdio.h>

#include <lualib.h>
#include <luajit.h>

#include "core.h"

int luaopen_cjson(lua_State *L); /* lua-cjson-dev's liblua5.1-cjson.a */

/* Runs with the Lua modules directory (or nil) as ...: drops relative
 * entries from the search paths and, for development, puts the source tree
 * ahead of the embedded bytecode. */
static const char *boot =
	"local dir = ...\n"
	"package.path = package.path:gsub('%./%?%.lua;', '')\n"
	"package.cpath = package.cpath:gsub('%./%?%.so;', '')\n"
	"if dir and dir ~= '' then\n"
	"  package.path = dir .. '/?.lua;' .. dir .. '/?/init.lua;' .. package.path\n"
	"  table.insert(package.loaders, 1, package.loaders[2])\n"
	"end\n";

int main(int argc, char **argv)
{
	lua_State *L = luaL_newstate();
	if (!L) {
		fputs("pm: cannot create a Lua state\n", stderr);
		return 111;
	}
	pm_L = L;
	lua_gc(L, LUA_GCSTOP, 0); /* pm.cli restarts it for every verb but the short ones */
	luaL_openlibs(L);
	/* A CLI call lives a few milliseconds: compiling traces costs more
	 * than it saves (0.4 ms of a `pm list`). The daemon turns it back on. */
	luaJIT_setmode(L, 0, LUAJIT_MODE_ENGINE | LUAJIT_MODE_OFF);

	lua_getglobal(L, "package");
	lua_getfield(L, -1, "preload");
	lua_pushcfunction(L, luaopen_pm_core);
	lua_setfield(L, -2, "pm.core");
	lua_pushcfunction(L, luaopen_cjson);
	lua_setfield(L, -2, "cjson");
	lua_pop(L, 2);

	if (luaL_loadbuffer(L, boot, strlen(boot), "=boot") != 0)
		return 111;
	lua_pushstring(L, getenv("PM_LUA_DIR"));
	if (pm_pcall(L, 1, 0) != 0)
		return 111;

	/* require("pm.main").main(argv) -> exit status */
	lua_getglobal(L, "require");
	lua_pushliteral(L, "pm.main");
	if (pm_pcall(L, 1, 1) != 0)
		return 111;
	lua_getfield(L, -1, "main");
	lua_createtable(L, argc, 0);
	for (int i = 0; i < argc; i++) {
		lua_pushstring(L, argv[i]);
		lua_rawseti(L, -2, i);
	}
	int status = 111, quick = 0;
	if (pm_pcall(L, 1, 2) == 0) {
		status = lua_isnumber(L, -2) ? (int)lua_tointeger(L, -2) : 0;
		quick = lua_toboolean(L, -1);
	}
	fflush(stdout);
	/* A short verb that left nothing to flush or restore (pm.main says
	 * so) ends here: freeing every object of the state, one by one, cost
	 * a `pm list` about as much as its answer took. */
#if !defined(__SANITIZE_ADDRESS__) /* bin/pm-asan frees all: LeakSanitizer would see the rest */
	if (quick)
		return status;
#else
	(void)quick;
#endif
	lua_close(L); /* closes every handle and frees its buffers */
	return status;
}
