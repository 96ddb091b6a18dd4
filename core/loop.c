/*
 * loop.c: the libev default loop and its watchers as Lua handles.
 * Timers, signals, readable fds and the one child watcher that reaps every
 * child. Each handle keeps its callback and itself in the registry while
 * active, and both die with it (close or garbage collection).
 */
#define _GNU_SOURCE
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <stdint.h>
#include <time.h>
#include <sys/wait.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <sys/epoll.h>
#include <fcntl.h>
#include <unistd.h>

#include "core.h"

lua_State *pm_L;
struct ev_loop *pm_loop;
int pm_embedded;

static void poll_arm(void);

static int traceback(lua_State *L)
{
	const char *msg = lua_tostring(L, 1);
	if (!msg)
		msg = "(error object is not a string)";
	luaL_traceback(L, L, msg, 1);
	return 1;
}

static int error_fn = LUA_NOREF; /* core.on_error's function */
static int in_error_fn;          /* it runs: errors go to stderr, not to it */

/* The core's own line on stderr, for an error no Lua function took. */
static void print_error(const char *what, const char *msg)
{
	char when[32];
	time_t t = time(NULL);
	struct tm tm;
	strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", localtime_r(&t, &tm));
	fprintf(stderr, "%s pm: %s: %s\n", when, what, msg ? msg : "(no message)");
	fflush(stderr);
}

/* The error message on top (popped): to core.on_error's fn, protected, or
 * to stderr. */
static void pass_error(lua_State *L)
{
	if (error_fn == LUA_NOREF || in_error_fn || !lua_checkstack(L, 4)) {
		print_error("lua error", lua_tostring(L, -1));
		lua_pop(L, 1);
		return;
	}
	in_error_fn = 1;
	lua_pushcfunction(L, traceback);               /* msg traceback */
	lua_rawgeti(L, LUA_REGISTRYINDEX, error_fn);   /* msg traceback fn */
	lua_pushvalue(L, -3);                          /* msg traceback fn msg */
	int rc = lua_pcall(L, 1, 0, -3);               /* msg traceback [err] */
	in_error_fn = 0;
	if (rc == LUA_ERRMEM) {
		fprintf(stderr, "pm: out of memory in Lua\n");
		abort();
	}
	if (rc != 0) {
		print_error("lua error", lua_tostring(L, -3));
		print_error("lua error in core.on_error's function", lua_tostring(L, -1));
		lua_pop(L, 1);
	}
	lua_pop(L, 2);
}

#ifdef PM_DEBUG
void pm_stack_check(lua_State *L, int expected, const char *where)
{
	int top = lua_gettop(L);
	if (top != expected) {
		fprintf(stderr, "pm: Lua stack unbalanced in %s: %d value(s) expected, %d there\n",
			where, expected, top);
		abort();
	}
}
#endif

int pm_pcall(lua_State *L, int nargs, int nresults)
{
	int base = lua_gettop(L) - nargs; /* function index */
	lua_pushcfunction(L, traceback);
	lua_insert(L, base);               /* traceback fn args */
	int rc = lua_pcall(L, nargs, nresults, base);
	if (rc == LUA_ERRMEM) {
		fprintf(stderr, "pm: out of memory in Lua\n");
		abort();
	}
	if (rc != 0)
		pass_error(L);
	lua_remove(L, base);               /* results (none after an error) */
#ifdef PM_DEBUG
	pm_stack_check(L, base - 1 + (rc == 0 ? nresults : 0), __func__);
#endif
	return rc;
}

void pm_unref(lua_State *L, int *ref)
{
	if (*ref != LUA_NOREF) {
		luaL_unref(L, LUA_REGISTRYINDEX, *ref);
		*ref = LUA_NOREF;
	}
}

int pm_grow(char **buf, size_t *cap, size_t need)
{
	if (need <= *cap)
		return 0;
	size_t c = *cap ? *cap : 4096;
	while (c < need)
		c *= 2;
	char *p = realloc(*buf, c);
	if (!p)
		return -1;
	*buf = p;
	*cap = c;
	return 0;
}

int pm_fail(lua_State *L, const char *what)
{
	int e = errno;
	lua_pushnil(L);
	lua_pushfstring(L, "%s: %s", what, strerror(e));
	return 2;
}

/* A watcher of any kind with its Lua references. */
typedef struct handle_s {
	union {
		ev_timer timer;
		ev_signal sig;
		ev_io io;
	} w;
	int kind; /* 't', 's', 'i' */
	int fn;   /* callback */
	int self; /* the userdata, while active */
	struct handle_s *prev, *next; /* the started timers (embedded: core.loop_timeout) */
} handle_t;

#define HANDLE_MT "pm.handle"

/* The timers started and not yet fired or stopped, for core.loop_timeout
 * (libev keeps its heap to itself). */
static handle_t *timers;

static void timer_link(handle_t *h)
{
	h->prev = NULL;
	h->next = timers;
	if (timers)
		timers->prev = h;
	timers = h;
}

static void timer_unlink(handle_t *h)
{
	if (!h->prev && timers != h)
		return; /* not linked */
	if (h->prev)
		h->prev->next = h->next;
	else
		timers = h->next;
	if (h->next)
		h->next->prev = h->prev;
	h->prev = h->next = NULL;
}

static void handle_call(handle_t *h)
{
	lua_State *L = pm_L;
	PM_STACK_SAVE(L);
	lua_rawgeti(L, LUA_REGISTRYINDEX, h->fn); /* fn */
	pm_pcall(L, 0, 0);
	PM_STACK_CHECK(L);
}

static void on_timer(EV_P_ ev_timer *w, int revents)
{
	(void)loop;
	(void)revents;
	lua_State *L = pm_L;
	PM_STACK_SAVE(L);
	handle_t *h = (handle_t *)w;
	lua_rawgeti(L, LUA_REGISTRYINDEX, h->fn); /* fn */
	if (!ev_is_active(w)) {
		timer_unlink(h);
		pm_unref(L, &h->self); /* fired one-shot: collectable once unused */
	}
	pm_pcall(L, 0, 0);
	PM_STACK_CHECK(L);
}

static void on_signal(EV_P_ ev_signal *w, int revents)
{
	(void)revents;
	(void)loop;
	handle_call((handle_t *)w);
}

static void on_io(EV_P_ ev_io *w, int revents)
{
	(void)revents;
	(void)loop;
	handle_call((handle_t *)w);
}

static handle_t *handle_new(lua_State *L, int kind, int fnidx)
{
	luaL_checktype(L, fnidx, LUA_TFUNCTION);
	handle_t *h = lua_newuserdata(L, sizeof *h);
	memset(h, 0, sizeof *h);
	h->kind = kind;
	luaL_getmetatable(L, HANDLE_MT);
	lua_setmetatable(L, -2);
	lua_pushvalue(L, fnidx);
	h->fn = luaL_ref(L, LUA_REGISTRYINDEX);
	lua_pushvalue(L, -1);
	h->self = luaL_ref(L, LUA_REGISTRYINDEX);
	return h;
}

static void handle_stop(handle_t *h)
{
	switch (h->kind) {
	case 't': ev_timer_stop(pm_loop, &h->w.timer); timer_unlink(h); break;
	case 's': ev_signal_stop(pm_loop, &h->w.sig); break;
	case 'i': ev_io_stop(pm_loop, &h->w.io); break;
	}
}

/* core.timer(after_ms, repeat_ms, fn) -> handle: fn() after after_ms, then
 * every repeat_ms (0: once). The handle stays alive while it is pending. */
static int l_timer(lua_State *L)
{
	double after = luaL_checknumber(L, 1) / 1000.0;
	double rep = luaL_optnumber(L, 2, 0) / 1000.0;
	/* libev aborts on a NaN: an error for Lua instead (negative: at once) */
	if (!isfinite(after))
		return luaL_argerror(L, 1, "a finite number of ms expected");
	if (!isfinite(rep))
		return luaL_argerror(L, 2, "a finite number of ms expected");
	handle_t *h = handle_new(L, 't', 3);
	ev_now_update(pm_loop); /* the loop's clock may be stale after idle time */
	ev_timer_init(&h->w.timer, on_timer, after < 0 ? 0 : after, rep < 0 ? 0 : rep);
	ev_timer_start(pm_loop, &h->w.timer);
	timer_link(h);
	poll_arm();
	return 1;
}

void pm_signal_touched(int sig); /* proc.c */

/* core.signal(signum, fn) -> handle: fn() each time signum arrives */
static int l_signal(lua_State *L)
{
	int sig = (int)luaL_checkinteger(L, 1);
	handle_t *h = handle_new(L, 's', 2);
	ev_signal_init(&h->w.sig, on_signal, sig);
	ev_signal_start(pm_loop, &h->w.sig);
	pm_signal_touched(sig); /* a child resets it before its exec */
	return 1;
}

/* core.watch_read(fd, fn) -> handle: fn() whenever fd is readable */
static int l_watch_read(lua_State *L)
{
	int fd = (int)luaL_checkinteger(L, 1);
	handle_t *h = handle_new(L, 'i', 2);
	ev_io_init(&h->w.io, on_io, fd, EV_READ);
	ev_io_start(pm_loop, &h->w.io);
	return 1;
}

/* core.watch_write(fd, fn) -> handle: fn() whenever fd is writable */
static int l_watch_write(lua_State *L)
{
	int fd = (int)luaL_checkinteger(L, 1);
	handle_t *h = handle_new(L, 'i', 2);
	ev_io_init(&h->w.io, on_io, fd, EV_WRITE);
	ev_io_start(pm_loop, &h->w.io);
	return 1;
}

/* handle:close() -> nothing: stops the watcher and releases its references */
static int l_handle_close(lua_State *L)
{
	handle_t *h = luaL_checkudata(L, 1, HANDLE_MT);
	handle_stop(h);
	pm_unref(L, &h->fn);
	pm_unref(L, &h->self);
	return 0;
}

/* handle:active() -> bool: the watcher is started (a timer: pending) */
static int l_handle_active(lua_State *L)
{
	handle_t *h = luaL_checkudata(L, 1, HANDLE_MT);
	int active = 0;
	switch (h->kind) {
	case 't': active = ev_is_active(&h->w.timer); break;
	case 's': active = ev_is_active(&h->w.sig); break;
	case 'i': active = ev_is_active(&h->w.io); break;
	}
	lua_pushboolean(L, active);
	return 1;
}

static int l_handle_gc(lua_State *L)
{
	handle_t *h = luaL_checkudata(L, 1, HANDLE_MT);
	handle_stop(h);
	pm_unref(L, &h->fn);
	return 0;
}

/* The one reaper: every child the daemon has is reaped here.
 *
 * Not libev's child watcher: it calls waitpid(-1) twice per exit, and the
 * kernel walks the whole list of children for each (with 2,000 apps that
 * walk was 40 % of the daemon's CPU in a crash loop). The SIGCHLD read
 * from a signalfd names its
 * sender, which the loop reaps alone (waitid P_PID). Signals of one kind
 * coalesce, so the loop also reaps with waitpid(-1) until nothing is
 * left: at once when the last such walk ended SCAN_RATIO times its own
 * length ago or more, else then. The walks take at most 1/SCAN_RATIO of
 * the loop's time, and an exit whose signal was merged into another's
 * waits that long at most (with 100 children 10 ms, with 2,000 about 25
 * ms, with 10,000 a few hundred ms; never more than SCAN_GAP_MAX: at
 * 0.1 s the walks over 10,000 children were a quarter of the CPU of a
 * crash loop beside them). Walks are SCAN_GAP_MIN apart at least: with a
 * few children the walk costs microseconds, and one after each exit of a
 * crash loop was 3 of its 24 system calls. */
#define SCAN_RATIO 100
#define SCAN_GAP_MIN 0.01
#define SCAN_GAP_MAX 1.0
static int child_fn = LUA_NOREF;
static ev_timer chld_scan_w;
static ev_tstamp chld_next_scan; /* the earliest time for the next walk */

static void deliver_child(pid_t pid, int st)
{
	lua_State *L = pm_L;
	if (child_fn == LUA_NOREF)
		return;
	PM_STACK_SAVE(L);
	lua_rawgeti(L, LUA_REGISTRYINDEX, child_fn);
	lua_pushinteger(L, pid);
	if (WIFEXITED(st)) {
		lua_pushinteger(L, WEXITSTATUS(st));
		lua_pushnil(L);
	} else if (WIFSIGNALED(st)) {
		lua_pushnil(L);
		lua_pushinteger(L, WTERMSIG(st));
	} else {
		lua_pop(L, 2);
		PM_STACK_CHECK(L);
		return; /* stopped/continued: not an exit */
	}
	pm_pcall(L, 3, 0);
	PM_STACK_CHECK(L);
}

static double thread_cpu(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Reaps at most REAP_BATCH children that have ended, then gives them to
 * Lua: -> how many (REAP_BATCH: it stopped at the bound, more may wait). A walk reaps
 * before it delivers, so that the exit of a process a delivery started (a
 * crash loop's next process, ended already) is the next walk's: reaping
 * and delivering in turn, a few apps whose processes end at once kept the
 * loop in one walk for good, deaf to every client and pipe. *last_cpu:
 * the CPU time of the last waitpid, when it found none (the whole walk). */
#define REAP_BATCH 64
static int signalled(const pid_t *pids, int n, int *read_any);
/* merged (a walk's, with the signalfd): how many it reaped that no
 * signal read after it named; *read_any: whether it read any */
static int reap_batch(double *last_cpu, int *merged, int *read_any)
{
	pid_t pids[REAP_BATCH];
	int sts[REAP_BATCH];
	int n = 0;
	while (n < REAP_BATCH) {
		double c0 = last_cpu ? thread_cpu() : 0;
		pid_t pid = waitpid(-1, &sts[n], WNOHANG);
		if (pid <= 0) {
			if (last_cpu)
				*last_cpu = thread_cpu() - c0;
			break;
		}
		pids[n++] = pid;
	}
	if (merged)
		*merged = n - signalled(pids, n, read_any);
	for (int i = 0; i < n; i++)
		deliver_child(pids[i], sts[i]);
	return n;
}

/* The rest on the next turn of the loop (a timer: an event fed now would
 * be delivered before the loop polls again) */
static void scan_soon(void)
{
	chld_next_scan = 0;
	if (!ev_is_active(&chld_scan_w)) {
		ev_timer_set(&chld_scan_w, 0., 0.);
		ev_timer_start(pm_loop, &chld_scan_w);
	}
}

/* Walks in a row that found no exit whose signal was merged into
 * another's (what the walk reaps and a signal read after it names is not
 * one: its signal came, the walk was first): a long walk (thousands of
 * children) then waits twice as long each time, up to SCAN_GAP_MAX (a
 * crash loop beside 10,000 idle apps walked them every 20 ms or so, a
 * tenth of its CPU). One that finds a merged exit starts over. */
#define SCAN_LONG 0.00005 /* s: a walk this long backs off */
static int idle_walks;

static void chld_scan(void)
{
	double walk = 0;
	int merged = 0, read_any = 0;
	int n = reap_batch(&walk, &merged, &read_any);
	if (merged > 0)
		idle_walks = 0;
	if (n == REAP_BATCH) {
		scan_soon();
		return;
	}
	/* (its CPU time: a walk preempted is not a longer one) */
	double gap = walk * SCAN_RATIO;
	if (walk >= SCAN_LONG) {
		gap *= (double)(1 << (idle_walks < 10 ? idle_walks : 10));
		idle_walks++;
	}
	gap = gap < SCAN_GAP_MIN ? SCAN_GAP_MIN : gap > SCAN_GAP_MAX ? SCAN_GAP_MAX : gap;
	chld_next_scan = ev_time() + gap;
	/* a signal the walk read may have had another merged into it, of a
	 * child that ended after the walk passed it: the next walk is armed
	 * (as after the signalfd's own reads), or that exit waited for the
	 * next child's */
	if (read_any && !ev_is_active(&chld_scan_w)) {
		ev_timer_set(&chld_scan_w, gap, 0.);
		ev_timer_start(pm_loop, &chld_scan_w);
	}
}

static void on_chld_scan(EV_P_ ev_timer *w, int revents)
{
	(void)loop;
	(void)w;
	(void)revents;
	chld_scan();
}

static void reap_one(pid_t pid)
{
	siginfo_t si;
	memset(&si, 0, sizeof si);
	if (pid > 0 && waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG) == 0 && si.si_pid == pid) {
		int st = si.si_code == CLD_EXITED ? (si.si_status & 0xff) << 8
			 : (si.si_status & 0x7f) | (si.si_code == CLD_DUMPED ? 0x80 : 0);
		deliver_child(pid, st);
	}
}

static void after_reaps(EV_P)
{
	if (ev_is_active(&chld_scan_w))
		return;
	ev_tstamp wait = chld_next_scan - ev_time();
	if (wait <= 0) {
		chld_scan();
	} else {
		ev_timer_set(&chld_scan_w, wait, 0.);
		ev_timer_start(EV_A_ &chld_scan_w);
	}
}

/* SIGCHLD blocked and read from a signalfd: the sender's pid comes with
 * the loop's own wake-up (no handler, no interrupted epoll_wait, no
 * eventfd write: 3 of a crash loop's system calls an exit). Where there
 * is no signalfd, the walk alone on libev's signal watcher, as embedded
 * (below). */
static int chld_sfd = -1;
static ev_io chld_sfd_w;

/* How many of pids (reaped by a walk) a SIGCHLD waiting on the signalfd
 * names: their signals are read (the others' children reaped, as
 * on_chld_sfd does). A child seen ended by a walk had its signal sent
 * already, unless it was merged into a pending one. */
static int signalled(const pid_t *pids, int n, int *read_any)
{
	if (chld_sfd < 0)
		return 0;
	int named = 0;
	struct signalfd_siginfo si[32];
	for (;;) {
		ssize_t got = read(chld_sfd, si, sizeof si);
		if (got <= 0)
			break;
		for (size_t i = 0; i < (size_t)got / sizeof si[0]; i++) {
			pid_t pid = (pid_t)si[i].ssi_pid;
			if (read_any)
				*read_any = 1;
			int mine = 0;
			for (int k = 0; k < n && !mine; k++)
				mine = pids[k] == pid;
			if (mine)
				named++;
			else
				reap_one(pid);
		}
		if ((size_t)got < sizeof si)
			break;
	}
	return named;
}

static void on_chld_sfd(EV_P_ ev_io *w, int revents)
{
	(void)w;
	(void)revents;
	signalled(NULL, 0, NULL); /* (each sender reaped) */
	after_reaps(EV_A);
}

static void start_reaper(void)
{
	ev_timer_init(&chld_scan_w, on_chld_scan, 0., 0.);
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGCHLD);
	chld_sfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
	if (chld_sfd >= 0) {
		/* a child that stops or continues sends no SIGCHLD
		 * (SA_NOCLDSTOP holds with the default disposition too), else an app's user wakes the daemon at will
		 * with SIGSTOP/SIGCONT of its own processes */
		struct sigaction dfl;
		memset(&dfl, 0, sizeof dfl);
		dfl.sa_handler = SIG_DFL;
		dfl.sa_flags = SA_NOCLDSTOP;
		sigaction(SIGCHLD, &dfl, NULL);
		pm_signal_touched(SIGCHLD);
		/* (a child's mask is emptied before its exec: proc.c) */
		sigprocmask(SIG_BLOCK, &set, NULL);
		ev_io_init(&chld_sfd_w, on_chld_sfd, chld_sfd, EV_READ);
		ev_io_start(pm_loop, &chld_sfd_w);
		ev_unref(pm_loop); /* as libev's child watcher: it keeps no loop running */
		chld_scan(); /* those that ended before */
	}
}

/* Embedded (or without a signalfd), a program that asks for
 * core.on_child reaps every child of its own: SIGCHLD on pm's loop (child
 * watchers are the default loop's only), each ended child given to the
 * function. pm's client never asks. */
static ev_signal chld_w;

static void on_sigchld(EV_P_ ev_signal *w, int revents)
{
	(void)w;
	(void)revents;
	(void)loop;
	if (reap_batch(NULL, NULL, NULL) == REAP_BATCH)
		scan_soon();
}

/* core.on_child(fn(pid, code|nil, signum|nil)) -> nothing: fn is called for
 * every child reaped (the one child watcher: every child is reaped here;
 * embedded, from the call on: a host loads pm without it) */
static int l_on_child(lua_State *L)
{
	luaL_checktype(L, 1, LUA_TFUNCTION);
	pm_unref(L, &child_fn);
	lua_pushvalue(L, 1);
	child_fn = luaL_ref(L, LUA_REGISTRYINDEX);
	if (!pm_embedded && chld_sfd < 0 && !ev_is_active(&chld_w))
		start_reaper(); /* (once: a second call only changes fn) */
	if (chld_sfd < 0) { /* embedded, or no signalfd: libev's signal watcher */
		if (!ev_is_active(&chld_w)) {
			ev_timer_init(&chld_scan_w, on_chld_scan, 0., 0.);
			ev_signal_init(&chld_w, on_sigchld, SIGCHLD);
			ev_signal_start(pm_loop, &chld_w);
			ev_unref(pm_loop); /* as the default loop's: it keeps no loop running */
			pm_signal_touched(SIGCHLD);
			on_sigchld(pm_loop, &chld_w, 0); /* those that ended before */
		}
	}
	return 0;
}

/* core.on_error(fn | nil) -> nothing: fn(message) gets every Lua error a
 * callback raised (message with its traceback), instead of stderr. fn runs
 * protected: its own errors, and any raised while it runs, go to stderr. */
static int l_on_error(lua_State *L)
{
	if (!lua_isnoneornil(L, 1))
		luaL_checktype(L, 1, LUA_TFUNCTION);
	pm_unref(L, &error_fn);
	if (!lua_isnoneornil(L, 1)) {
		lua_pushvalue(L, 1);
		error_fn = luaL_ref(L, LUA_REGISTRYINDEX);
	}
	return 0;
}

/* core.run([mode]) -> bool: runs the loop; mode "once" blocks for one
 * iteration, "nowait" polls, default runs until core.stop_loop() or no
 * active watcher. The result is ev_run's: watchers are still active. */
static int l_run(lua_State *L)
{
	const char *mode = luaL_optstring(L, 1, "default");
	int flags = 0;
	if (strcmp(mode, "once") == 0)
		flags = EVRUN_ONCE;
	else if (strcmp(mode, "nowait") == 0)
		flags = EVRUN_NOWAIT;
	int active = ev_run(pm_loop, flags);
	poll_arm();
	lua_pushboolean(L, active);
	return 1;
}

/* ---- driven by a host's loop (embedded: luv, copas, cqueues) ---- */

static int poll_timer = -1; /* a timerfd in the loop: readable when a timer is due */
static ev_io poll_timer_w;
static int backend_fd = -1;

/* ms until the first timer is due (0: a callback is pending), -1: none */
static double next_due(void)
{
	if (ev_pending_count(pm_loop) > 0)
		return 0;
	double best = -1;
	for (handle_t *h = timers; h; h = h->next) {
		double r = ev_timer_remaining(pm_loop, &h->w.timer) * 1000.0;
		if (r < 0)
			r = 0;
		if (best < 0 || r < best)
			best = r;
	}
	return best;
}

/* The timerfd set to the first due time: the loop's fd becomes readable
 * then, so a host that waits on that fd alone misses no timer. */
static void poll_arm(void)
{
	if (poll_timer < 0)
		return;
	struct itimerspec its;
	memset(&its, 0, sizeof its);
	double ms = next_due();
	if (ms >= 0) {
		if (ms < 0.001)
			ms = 0.001; /* 0 would disarm it */
		its.it_value.tv_sec = (time_t)(ms / 1000.0);
		its.it_value.tv_nsec = (long)((ms - (double)its.it_value.tv_sec * 1000.0) * 1e6);
		if (its.it_value.tv_sec == 0 && its.it_value.tv_nsec == 0)
			its.it_value.tv_nsec = 1000;
	}
	timerfd_settime(poll_timer, 0, &its, NULL);
}

static void on_poll_timer(EV_P_ ev_io *w, int revents)
{
	(void)loop;
	(void)revents;
	uint64_t n;
	while (read(w->fd, &n, sizeof n) > 0)
		;
}

/* The loop's backend descriptor (-1: it has none), -2 when no loop to
 * probe with could be made: libev gives it to the watcher that embeds the
 * loop, so a throwaway loop embeds ours to read it. */
static int probe_backend_fd(void)
{
	struct ev_loop *probe = ev_loop_new(EVFLAG_NOSIGMASK);
	if (!probe)
		return -2;
	ev_embed e;
	ev_embed_init(&e, NULL, pm_loop);
	ev_embed_start(probe, &e);
	int fd = e.io.fd;
	ev_embed_stop(probe, &e);
	ev_loop_destroy(probe);
	return fd;
}

/* The loop's epoll descriptor, -1 when it has none, -2 when it could not
 * be read now (no fd for the probe's loop: asked again next time) */
static int read_backend_fd(void)
{
	if (ev_backend(pm_loop) != EVBACKEND_EPOLL)
		return -1;
	if (backend_fd >= 0)
		return backend_fd; /* (core.loop_fd read it already) */
	int fd = probe_backend_fd();
	return fd == -2 ? -2 : fd < 0 ? -1 : fd;
}

/*
 * Before closing fd, which a watcher of the loop watched: takes it out of
 * the epoll set. libev never does (it expects a closed fd to leave the set
 * by itself), but epoll's registrations belong to the open file, and the
 * keeper holds a copy of every app's pipes: the pipe of an app's ended
 * process stayed registered under the closed fd's number, its hang-up was
 * reported again and again, and libev, seeing events for an fd it no
 * longer watches, made its epoll set again: 18,000 epoll_ctl calls for a
 * restart of one app beside 9,000 others. (libev takes an fd that is not
 * in the set when it adds one: ENOENT is handled there.)
 */
static int forget_epfd = -2; /* -2: not read yet */
void pm_fd_forget(int fd)
{
	if (fd < 0 || !pm_loop || fcntl(fd, F_GETFD) < 0) /* (no such fd: nothing to take out) */
		return;
	for (int tries = 0; tries < 2; tries++) {
		if (forget_epfd == -2)
			forget_epfd = read_backend_fd();
		if (forget_epfd < 0)
			return; /* (none; or -2: not readable now, tried again next time) */
		if (epoll_ctl(forget_epfd, EPOLL_CTL_DEL, fd, NULL) == 0 || errno == ENOENT)
			return;
		if (errno != EBADF && errno != EINVAL)
			return; /* (EPERM: a regular file, never in the set) */
		forget_epfd = -2; /* libev made a new set (after a fork): read it again */
	}
}

/* core.loop_fd() -> fd | nil, err: a descriptor that is readable when the
 * loop has work (an fd it watches is ready, a timer is due): a host's loop
 * polls it and calls core.run("nowait"). The loop's epoll descriptor
 * (libev gives it to the watcher that embeds the loop). */
static int l_loop_fd(lua_State *L)
{
	if (backend_fd >= 0) {
		lua_pushinteger(L, backend_fd);
		return 1;
	}
	if (!(ev_backend(pm_loop) & ev_embeddable_backends())) {
		lua_pushnil(L);
		lua_pushliteral(L, "core.loop_fd: the event loop's backend has no descriptor");
		return 2;
	}
	int fd = probe_backend_fd();
	if (fd == -2)
		return pm_fail(L, "core.loop_fd");
	if (fd < 0) {
		lua_pushnil(L);
		lua_pushliteral(L, "core.loop_fd: the event loop has no descriptor");
		return 2;
	}
	poll_timer = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (poll_timer < 0)
		return pm_fail(L, "core.loop_fd: timerfd_create");
	ev_io_init(&poll_timer_w, on_poll_timer, poll_timer, EV_READ);
	ev_io_start(pm_loop, &poll_timer_w);
	ev_unref(pm_loop); /* it keeps no core.run going */
	backend_fd = fd;
	ev_run(pm_loop, EVRUN_NOWAIT); /* the watchers started so far join the epoll set */
	poll_arm();
	lua_pushinteger(L, fd);
	return 1;
}

/* core.loop_timeout() -> ms | nil: until the first timer is due (0: work
 * waits now), nil when no timer runs */
static int l_loop_timeout(lua_State *L)
{
	double ms = next_due();
	if (ms < 0)
		lua_pushnil(L);
	else
		lua_pushnumber(L, ms);
	return 1;
}

/* core.stop_loop() -> nothing: every core.run under way returns once the
 * callbacks being run are done */
static int l_break(lua_State *L)
{
	(void)L;
	ev_break(pm_loop, EVBREAK_ALL);
	return 0;
}

/* core.reap(pid) -> true, code|nil, signum|nil | false | nil, err: waits
 * for that one child without blocking (true: it had ended and is reaped;
 * false: it runs). For a program that embeds pm, whose loop reaps nothing:
 * the daemon it started is its child. */
static int l_reap(lua_State *L)
{
	pid_t pid = (pid_t)luaL_checkinteger(L, 1);
	if (pid <= 0)
		return luaL_argerror(L, 1, "a pid > 0 expected");
	int st;
	pid_t r = waitpid(pid, &st, WNOHANG);
	if (r < 0)
		return pm_fail(L, "waitpid");
	if (r == 0) {
		lua_pushboolean(L, 0);
		return 1;
	}
	lua_pushboolean(L, 1);
	if (WIFEXITED(st)) {
		lua_pushinteger(L, WEXITSTATUS(st));
		lua_pushnil(L);
	} else {
		lua_pushnil(L);
		lua_pushinteger(L, WIFSIGNALED(st) ? WTERMSIG(st) : 0);
	}
	return 3;
}

/* core.now() -> ms: wall-clock time, ms since the epoch (whole ms) */
static int l_now(lua_State *L)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	lua_pushnumber(L, (double)ts.tv_sec * 1000.0 + (double)(ts.tv_nsec / 1000000));
	return 1;
}

/* core.mono() -> ms: monotonic time in ms (fractional) */
static int l_mono(lua_State *L)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	lua_pushnumber(L, (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6);
	return 1;
}

/* core.thread_cpu() -> ms: CPU time of the calling thread only
 * (CLOCK_THREAD_CPUTIME_ID, fractional): what a hook's budget counts, so
 * that the log writer and other threads' work is not billed to it */
static int l_thread_cpu(lua_State *L)
{
	struct timespec ts;
	if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) != 0)
		return luaL_error(L, "clock_gettime(CLOCK_THREAD_CPUTIME_ID) failed");
	lua_pushnumber(L, (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6);
	return 1;
}

void pm_open_loop(lua_State *L)
{
	static const luaL_Reg handle_m[] = {
		{"close", l_handle_close},
		{"active", l_handle_active},
		{NULL, NULL},
	};
	if (luaL_newmetatable(L, HANDLE_MT)) {
		lua_newtable(L);
		luaL_register(L, NULL, handle_m);
		lua_setfield(L, -2, "__index");
		lua_pushcfunction(L, l_handle_gc);
		lua_setfield(L, -2, "__gc");
	}
	lua_pop(L, 1);

	static const luaL_Reg fns[] = {
		{"timer", l_timer},
		{"signal", l_signal},
		{"watch_read", l_watch_read},
		{"watch_write", l_watch_write},
		{"on_child", l_on_child},
		{"on_error", l_on_error},
		{"run", l_run},
		{"loop_fd", l_loop_fd},
		{"loop_timeout", l_loop_timeout},
		{"reap", l_reap},
		{"stop_loop", l_break},
		{"now", l_now},
		{"mono", l_mono},
		{"thread_cpu", l_thread_cpu},
		{NULL, NULL},
	};
	luaL_register(L, NULL, fns);
	lua_pushboolean(L, pm_embedded);
	lua_setfield(L, -2, "embedded");
#ifdef PM_PREFIX
	lua_pushstring(L, PM_PREFIX); /* make's PREFIX: where make install puts bin/pm */
	lua_setfield(L, -2, "prefix");
#endif
}
