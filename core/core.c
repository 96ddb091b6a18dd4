/*
 * core.c: builds the `pm.core` module from each concern's functions
 * (compiled with -DPM_CORE_TERM for lib/pm/core.so, which has the terminal).
 */
#include <signal.h>

#include "core.h"

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define PM_ASAN 1 /* clang */
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) /* gcc */
#define PM_ASAN 1
#endif

int luaopen_pm_core(lua_State *L)
{
	if (!pm_L) {
		/* opened by a host program (bin/pm sets pm_L before): a loop of
		 * its own that never takes SIGCHLD or reaps the host's children */
		pm_L = L; /* callbacks run on the state that opened the module */
		pm_embedded = 1;
	}
	if (!pm_loop) {
		pm_loop = pm_embedded ? ev_loop_new(EVFLAG_AUTO | EVFLAG_NOSIGMASK)
				      : ev_default_loop(EVFLAG_AUTO);
		if (!pm_loop)
			return luaL_error(L, "pm.core: cannot create an event loop");
	}
	signal(SIGPIPE, SIG_IGN); /* a closed peer is an error return, not death */
	lua_newtable(L);
	pm_open_loop(L);
	pm_open_proc(L);
	pm_open_io(L);
	pm_open_sys(L);
	pm_open_watch(L);
	pm_open_logs(L);
	pm_open_regex(L);
	pm_open_input(L);
	pm_open_privs(L);
	pm_open_keeper(L);
#ifdef PM_CORE_TERM
	/* lib/pm/core.so, for plain luajit: the terminal too (bin/pm loads it
	 * from lib/pm/term.so when the console or monit needs it) */
	pm_open_console(L);
	pm_open_screen(L);
	pm_open_http(L); /* (bin/pm: lib/pm/http.so, the web process only) */
#endif
#ifdef PM_ASAN
	lua_pushboolean(L, 1); /* bin/pm-asan: Lua looks for term-asan.so first */
	lua_setfield(L, -2, "sanitized");
#endif
	return 1;
}
