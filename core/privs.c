/*
 * privs.c: a process giving up root for good (the web process of
 * `pm web --user`, once its port is bound and its connection to the daemon
 * is open and restricted).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <grp.h>
#include <unistd.h>

#include "core.h"

/* core.drop_privileges(uid, gid) -> true | nil, err: no supplementary group,
 * then gid, then uid (real, effective and saved: no way back); refused when
 * any step fails, or when root could be regained afterwards. */
static int l_drop_privileges(lua_State *L)
{
	uid_t uid = (uid_t)luaL_checkinteger(L, 1);
	gid_t gid = (gid_t)luaL_checkinteger(L, 2);
	if (setgroups(0, NULL) < 0)
		return pm_fail(L, "setgroups");
	if (setresgid(gid, gid, gid) < 0)
		return pm_fail(L, "setresgid");
	if (setresuid(uid, uid, uid) < 0)
		return pm_fail(L, "setresuid");
	if (uid != 0 && (setuid(0) == 0 || seteuid(0) == 0)) {
		errno = EPERM;
		return pm_fail(L, "root could be regained");
	}
	lua_pushboolean(L, 1);
	return 1;
}

void pm_open_privs(lua_State *L)
{
	lua_pushcfunction(L, l_drop_privileges);
	lua_setfield(L, -2, "drop_privileges");
}
