/*
 * pm core: operating-system glue exposed to Lua as `pm.core`.
 * No decision lives here; see core/README.md.
 */
#ifndef PM_CORE_H
#define PM_CORE_H

#include <sys/types.h>
#include <ev.h>
#include <lua.h>
#include <lauxlib.h>

/* The main Lua state every callback runs on. */
extern lua_State *pm_L;

/* The loop every watcher runs on. bin/pm (CLI, daemon, console): libev's
 * default loop, with its SIGCHLD handler and the child watcher. Embedded
 * (lib/pm/core.so opened by a host program: plain luajit, luv, Neovim,
 * nginx): a loop of its own, ev_loop_new, that handles no SIGCHLD and
 * reaps no child, so the host's children stay the host's. */
extern struct ev_loop *pm_loop;
extern int pm_embedded;

/* Calls the function below nargs arguments on the stack under a traceback
 * handler; returns the lua_pcall status. A Lua error, with its traceback,
 * goes to the function given to core.on_error (itself called protected; an
 * error of its own, or any error while it runs, is not given to it again),
 * or to stderr when there is none; 0 results are then left. Out of memory
 * is fatal. */
int pm_pcall(lua_State *L, int nargs, int nresults);

/* Debug builds (-DPM_DEBUG: make asan) check that every dispatch from C to
 * Lua leaves the Lua stack as it found it: PM_STACK_SAVE(L) where a
 * callback starts, PM_STACK_CHECK(L) before each of its returns (the
 * height saved plus the values it leaves on purpose, normally 0). An
 * unbalanced stack is reported with the function's name and aborts. */
#ifdef PM_DEBUG
void pm_stack_check(lua_State *L, int expected, const char *where);
#define PM_STACK_SAVE(L) const int pm_stack_top_ = lua_gettop(L)
#define PM_STACK_CHECK(L) pm_stack_check((L), pm_stack_top_, __func__)
#else
#define PM_STACK_SAVE(L) ((void)0)
#define PM_STACK_CHECK(L) ((void)0)
#endif

/* Registry references kept with a handle: the callback and the handle itself
 * (the self reference keeps an active handle alive when Lua drops it). */
void pm_unref(lua_State *L, int *ref);

/* Takes fd out of the loop's epoll set before it is closed (its open file
 * may live on in another process: the keeper's copy of a pipe). */
void pm_fd_forget(int fd);

/* Makes *buf hold at least need bytes (doubling); -1 when out of memory. */
int pm_grow(char **buf, size_t *cap, size_t need);

/* Length of the valid UTF-8 sequence at p, n bytes left; 0: invalid
 * (logs.c) */
size_t pm_utf8_len(const unsigned char *p, size_t n);

/* Pushes nil, "<what>: <strerror(errno)>" and returns 2. */
int pm_fail(lua_State *L, const char *what);

/* Registration of each concern's functions into the module table on top. */
/* Files opened on an app's behalf (sys.c). owner.uid < 0: as the daemon,
 * following links (an app running as the daemon's user); otherwise the
 * file must be a regular file (no link, FIFO or device) owned by uid, a new
 * one is given to uid:gid, and with as_user every path operation is done
 * with the app's file system ids and no supplementary group (setfsuid on
 * this thread only), so that whatever the app's user did to the path, the
 * daemon reaches only what that user could. */
typedef struct {
	long uid, gid;
	int as_user;
} pm_owner_t;
typedef struct {
	int on;
	long fsuid, fsgid;
	int ngroups;
	unsigned int groups[64];
} pm_creds_t;
/* owner from the table at idx ({uid=, gid=, as_user=}; none: uid -1) */
void pm_owner_get(lua_State *L, int idx, pm_owner_t *o);
int pm_as_begin(const pm_owner_t *o, pm_creds_t *c);
void pm_as_end(pm_creds_t *c);
/* open(2) for owner o; -1 and errno, with *why set (a static string) when
 * the file was refused rather than failed. O_TRUNC is applied only after
 * the checks. */
int pm_open_owned(const char *path, int flags, mode_t mode, const pm_owner_t *o, const char **why);
/* pm_fail, or "<what>: <why>" when why is not NULL */
int pm_fail_why(lua_State *L, const char *what, const char *why);

/* logrotate.c: path renamed to a dated name (as owner), then gzipped
 * (compress) and the newest retain kept, by a thread of its own; 0 | -1 */
int pm_rotate_dated(const char *path, const pm_owner_t *owner, mode_t mode, int retain, int compress);
/* input.c: core.input_pipe, core.input_write (an app's stdin) */
void pm_open_input(lua_State *L);

void pm_open_loop(lua_State *L);
void pm_open_proc(lua_State *L);
void pm_open_io(lua_State *L);
void pm_open_sys(lua_State *L);
void pm_open_watch(lua_State *L);
void pm_open_logs(lua_State *L);
void pm_open_regex(lua_State *L);
void pm_open_privs(lua_State *L);
void pm_open_keeper(lua_State *L);

/* The terminal (console.c: libedit, screen.c: ncurses). lib/pm/core.so has
 * them in pm.core; bin/pm does not link those libraries and loads them, only
 * for `pm console` and `pm monit`, as the module pm.term (lib/pm/term.so, which
 * uses pm_L, pm_pcall and pm_unref of the binary: it is linked with -Wl,-E). */
void pm_open_console(lua_State *L);
void pm_open_screen(lua_State *L);

int luaopen_pm_core(lua_State *L);
int luaopen_pm_term(lua_State *L);

/* http.c: core.http_server (libmicrohttpd in pm's loop); lib/pm/core.so has
 * it in pm.core, bin/pm loads it as pm.http (lib/pm/http.so). */
void pm_open_http(lua_State *L);
int luaopen_pm_http(lua_State *L);

/* Original RLIMIT_NOFILE soft limit, restored in every child. */
extern long pm_nofile_soft;

/* proc.c: reserves the few low fds narrow spawns go through (the daemon
 * at its start; any other process at its first spawn). */
void pm_spawn_slots(void);

#endif
