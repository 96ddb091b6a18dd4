/*
 * regex.c: POSIX extended regular expressions (libc's regcomp), for the
 * `/regex/` targets of PM2 (lua/pm/supervisor.lua decides what they name).
 */
#include <regex.h>
#include <string.h>

#include "core.h"

/* core.regex_match(pattern, subjects) -> { i, ... } (the 1-based indexes,
 * in order, of the strings of the list subjects that the POSIX extended
 * pattern matches anywhere; other values are skipped) | nil, err */
static int l_regex_match(lua_State *L)
{
	size_t len;
	const char *pat = luaL_checklstring(L, 1, &len);
	luaL_checktype(L, 2, LUA_TTABLE);
	if (strlen(pat) != len) {
		lua_pushnil(L);
		lua_pushliteral(L, "a pattern holds no NUL byte");
		return 2;
	}
	int n = (int)lua_objlen(L, 2);
	lua_createtable(L, 0, 0); /* before regcomp: nothing below may raise */
	regex_t re;
	int rc = regcomp(&re, pat, REG_EXTENDED | REG_NOSUB);
	if (rc != 0) {
		char msg[256];
		regerror(rc, &re, msg, sizeof msg);
		lua_pushnil(L);
		lua_pushstring(L, msg);
		return 2;
	}
	int found = 0;
	for (int i = 1; i <= n; i++) {
		lua_rawgeti(L, 2, i); /* result subject */
		size_t slen;
		const char *s = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &slen) : NULL;
		int hit = s && strlen(s) == slen && regexec(&re, s, 0, NULL, 0) == 0;
		lua_pop(L, 1); /* result */
		if (hit) {
			lua_pushinteger(L, i);
			lua_rawseti(L, -2, ++found);
		}
	}
	regfree(&re);
	return 1;
}

void pm_open_regex(lua_State *L)
{
	static const luaL_Reg fns[] = {
		{"regex_match", l_regex_match},
		{NULL, NULL},
	};
	luaL_register(L, NULL, fns);
}
