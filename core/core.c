/*
 * core.c: builds the `pm.core` module from each concern's functions.
 */
#include <signal.h>

#include "core.h"

int luaopen_pm_core(lua_State *L)
{
	if (!pm_L)
		pm_L = L; /* callbacks run on the state that opened the module */
	ev_default_loop(EVFLAG_AUTO);
	signal(SIGPIPE, SIG_IGN); /* a closed peer is an error return, not death */
	lua_newtable(L);
	pm_open_loop(L);
	pm_open_proc(L);
	pm_open_io(L);
	pm_open_sys(L);
	pm_open_watch(L);
	pm_open_logs(L);
	pm_open_console(L);
	pm_open_screen(L);
	return 1;
}
