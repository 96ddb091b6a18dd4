/*
 * proc.c: processes. spawn (fork/exec with the fd layout, session, cwd, env,
 * rlimits and ids Lua asks for), signals to a pid or a process group, and
 * /proc sampling of a process and of its whole tree.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pthread.h>
#include <sched.h>
#include <sys/syscall.h>
#include <linux/close_range.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <sys/wait.h>

#include "core.h"

long pm_nofile_soft = -1;

/* Everything the child needs, prepared by the parent. The child shares the
 * parent's memory (CLONE_VM) and the parent sleeps until it has exec'd or
 * exited (CLONE_VFORK): it makes only system calls, and writes nothing but
 * its own stack, the LISTEN_PID entry and, when something fails, stage and
 * err below, which the parent reads once it resumes (as posix_spawn does). */
struct spawn_args {
	const char *file, *cwd;
	const char *cgroup; /* a cgroup.procs the child joins first, or NULL */
	int cgfd;           /* (opened by do_spawn, or the caller's: cgfd_kept) */
	int cgfd_kept;      /* the caller's fd of that cgroup.procs, kept open */
	const char **argv, **envp;
	int envc, listen_pid, setsid, uid, gid, nfds;
	volatile int stage, err; /* 1 fds, 2 chdir, 3 ids, 4 exec, 5 cgroup */
	int fds[64];
	int narrow; /* > 0: the child shares the fd table and keeps fds < narrow */
	int want_narrow; /* opts.narrow: the caller knows its table is big */
	char pidbuf[40];
};

static const char *stages[] = {"", "set up fds", "chdir", "set uid/gid", "exec", "join the cgroup"};

/* The child runs on a stack of its own until its exec: not instrumented by
 * ASan, whose no-return bookkeeping would take that stack for a bad one. */
#define CHILD_CODE __attribute__((no_sanitize_address))

CHILD_CODE static int child_fail(struct spawn_args *a, int stage)
{
	a->err = errno;
	a->stage = stage;
	_exit(127);
	return 127;
}

/* The signals the child sets back to SIG_DFL: those whose disposition the
 * daemon changed (handlers, SIG_IGN), found once, plus any the loop starts
 * handling later (pm_signal_touched). The rest already are default. */
static sigset_t touched;
static int touched_ready;

void pm_signal_touched(int sig)
{
	if (touched_ready)
		sigaddset(&touched, sig);
}

static void find_touched(void)
{
	sigemptyset(&touched);
	for (int s = 1; s < NSIG; s++) {
		struct sigaction sa;
		if (s == SIGKILL || s == SIGSTOP || sigaction(s, NULL, &sa) < 0)
			continue;
		if ((sa.sa_flags & SA_SIGINFO) || sa.sa_handler != SIG_DFL)
			sigaddset(&touched, s);
	}
	touched_ready = 1;
}

static char *fmt_uint(char *end, unsigned long v)
{
	*--end = '\0';
	do {
		*--end = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	return end;
}

CHILD_CODE static int child_main(void *arg)
{
	struct spawn_args *a = arg;
	/* its cgroup first (0: the writer itself), while every fd is there
	 * and before it may give up root: its whole tree is found there,
	 * whatever leaves its process group or session */
	if (a->cgfd >= 0 && write(a->cgfd, "0", 1) != 1)
		return child_fail(a, 5);
	/* A narrow spawn (see narrow_begin): first of all, a table of its own
	 * holding only the fds below a->narrow (the daemon's first few and the
	 * slots with this child's sources), not a copy of thousands to close.
	 * Without CLOSE_RANGE_UNSHARE (Linux < 5.9), a whole copy. */
	if (a->narrow > 0 &&
	    syscall(SYS_close_range, (unsigned)a->narrow, ~0u, CLOSE_RANGE_UNSHARE) < 0 &&
	    unshare(CLONE_FILES) < 0)
		return child_fail(a, 1);
	struct sigaction dfl;
	memset(&dfl, 0, sizeof dfl);
	dfl.sa_handler = SIG_DFL;
	for (int s = 1; s < NSIG; s++)
		if (sigismember(&touched, s) == 1)
			sigaction(s, &dfl, NULL);
	sigset_t set;
	sigemptyset(&set);
	sigprocmask(SIG_SETMASK, &set, NULL);
	if (a->setsid)
		setsid();
	/* Lift every source fd above the target range, then dup2 into place
	 * (dup2 clears CLOEXEC on the target). */
	int base = a->nfds > 3 ? a->nfds : 3;
	int lifted[64];
	for (int i = 0; i < a->nfds; i++) {
		int src = a->fds[i];
		if (src < 0)
			src = open("/dev/null", O_RDWR | O_CLOEXEC);
		if (src < 0 || (lifted[i] = fcntl(src, F_DUPFD_CLOEXEC, base + 1)) < 0)
			return child_fail(a, 1);
	}
	for (int i = 0; i < a->nfds; i++)
		if (dup2(lifted[i], i) < 0)
			return child_fail(a, 1);
	/* nothing else crosses the exec: not the daemon's fds, not the ones
	 * its own caller left open. Closed now rather than marked CLOEXEC:
	 * the parent resumes before the exec closes CLOEXEC fds, and a copy
	 * still open here would keep a pipe it has just closed registered in
	 * its epoll set (libev then rebuilds the whole set). */
	int first = a->nfds > 3 ? a->nfds : 3;
	if (syscall(SYS_close_range, (unsigned)first, ~0u, 0) < 0) {
		for (int fd = first; fd < 1024; fd++)
			close(fd);
	}
	if (pm_nofile_soft >= 0) {
		struct rlimit rl;
		if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
			rl.rlim_cur = (rlim_t)pm_nofile_soft;
			setrlimit(RLIMIT_NOFILE, &rl);
		}
	}
	if (a->gid >= 0 && (setgroups(0, NULL) < 0 || setgid((gid_t)a->gid) < 0))
		return child_fail(a, 3);
	if (a->uid >= 0 && setuid((uid_t)a->uid) < 0)
		return child_fail(a, 3);
	/* (as the app's user: a folder its user swapped for a link to one
	 * only root may enter is not entered) */
	if (a->cwd && chdir(a->cwd) < 0)
		return child_fail(a, 2);
	if (a->envp && a->listen_pid) {
		char *p = fmt_uint(a->pidbuf + sizeof a->pidbuf, (unsigned long)getpid());
		p -= 11;
		memcpy(p, "LISTEN_PID=", 11);
		a->envp[a->envc] = p;
		a->envp[a->envc + 1] = NULL;
	}
	if (a->envp)
		execvpe(a->file, (char *const *)a->argv, (char *const *)a->envp);
	else
		execvp(a->file, (char *const *)a->argv);
	return child_fail(a, 4);
}

/* A scratch array of pointers, kept from one spawn to the next: a single
 * spawn's argv and environment (l_spawn; the main thread's alone, done
 * with once the child has exec'd) cost no userdata in the Lua heap (a
 * crash loop made 500 bytes of garbage a restart with them). */
struct scratch {
	const char **v;
	size_t cap;
};

/* The strings of opts[field] as a NULL-terminated array with room for
 * extra more; left on the stack: a userdata, or nil when in the scratch s
 * (then NULL only when it cannot grow: an error) */
static const char **string_array(lua_State *L, int idx, const char *field, int extra, int *count,
				 struct scratch *s)
{
	lua_getfield(L, idx, field);
	if (lua_isnil(L, -1)) {
		lua_pop(L, 1);
		*count = -1;
		return NULL;
	}
	luaL_checktype(L, -1, LUA_TTABLE);
	int n = (int)lua_objlen(L, -1);
	size_t need = (size_t)(n + extra + 1);
	const char **a;
	if (s) {
		if (s->cap < need) {
			size_t cap = need < 64 ? 64 : need * 2;
			const char **v = realloc(s->v, sizeof(char *) * cap);
			if (!v)
				luaL_error(L, "spawn: out of memory");
			s->v = v;
			s->cap = cap;
		}
		a = s->v;
		lua_pushnil(L);
	} else {
		a = lua_newuserdata(L, sizeof(char *) * need);
	}
	for (int i = 1; i <= n; i++) {
		lua_rawgeti(L, -2, i);
		a[i - 1] = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
		if (!a[i - 1])
			luaL_error(L, "spawn: %s[%d] is not a string", field, i);
		lua_pop(L, 1); /* the string stays referenced by the table */
	}
	a[n] = NULL;
	*count = n;
	lua_replace(L, -2); /* keep the userdata (or nil), drop the table ref (still in opts) */
	return a;
}

static struct scratch argv_scratch, env_scratch;

#define CHILD_STACK (64 * 1024)

/* Reads spawn options (the table at idx) into *a. The arrays it builds
 * are userdata left on the stack: the caller keeps them until the spawn is
 * done (the strings stay referenced by the table). scratch: in the
 * scratch arrays instead, nil on the stack (a single spawn's). */
static void read_spawn_args(lua_State *L, int idx, struct spawn_args *a, int scratch)
{
	luaL_checktype(L, idx, LUA_TTABLE);
	memset(a, 0, sizeof *a);
	lua_getfield(L, idx, "file");
	a->file = luaL_checkstring(L, -1);
	lua_getfield(L, idx, "cwd");
	a->cwd = lua_tostring(L, -1);
	lua_getfield(L, idx, "setsid");
	a->setsid = lua_toboolean(L, -1);
	lua_getfield(L, idx, "listen_pid");
	a->listen_pid = lua_toboolean(L, -1);
	lua_getfield(L, idx, "uid");
	a->uid = lua_isnumber(L, -1) ? (int)lua_tointeger(L, -1) : -1;
	lua_getfield(L, idx, "gid");
	a->gid = lua_isnumber(L, -1) ? (int)lua_tointeger(L, -1) : -1;
	lua_getfield(L, idx, "cgroup");
	a->cgroup = lua_tostring(L, -1);
	a->cgfd = -1;
	lua_getfield(L, idx, "cgroup_fd");
	a->cgfd_kept = a->cgroup && lua_isnumber(L, -1) ? (int)lua_tointeger(L, -1) : -1;
	lua_getfield(L, idx, "narrow");
	a->want_narrow = lua_toboolean(L, -1);
	lua_pop(L, 9);

	int argc;
	a->argv = string_array(L, idx, "args", 0, &argc, scratch ? &argv_scratch : NULL);
	if (!a->argv)
		luaL_error(L, "spawn: args expected");
	a->envp = string_array(L, idx, "env", 1, &a->envc, scratch ? &env_scratch : NULL);
	if (!a->envp)
		lua_pushnil(L); /* one slot per array either way */

	lua_getfield(L, idx, "fds");
	if (lua_istable(L, -1)) {
		a->nfds = (int)lua_objlen(L, -1);
		if (a->nfds > 64)
			luaL_error(L, "spawn: too many fds");
		for (int i = 1; i <= a->nfds; i++) {
			lua_rawgeti(L, -1, i);
			a->fds[i - 1] = lua_isnumber(L, -1) ? (int)lua_tointeger(L, -1) : -1;
			lua_pop(L, 1);
		}
	}
	lua_pop(L, 1);
}

#define CHILD_STACK (64 * 1024)

/*
 * Narrow spawns. A child gets a copy of the daemon's fd table and closes
 * all but its own before its exec, while the daemon waits (CLONE_VFORK):
 * with 2,000 apps, 10,000 fds copied and closed for every start and
 * restart, milliseconds each. Instead, a few low fds are reserved once
 * (dups of /dev/null: the slots); a spawn puts its sources in free slots
 * (dup3 over them), and its child, sharing the table (CLONE_FILES), takes
 * a private one of the fds below the highest slot only (close_range with
 * CLOSE_RANGE_UNSHARE copies nothing above). The slots get /dev/null back
 * once the child has exec'd. Used when the sources' numbers say the table
 * is big (a small table costs less than the dups), or the caller does
 * (opts.narrow: an app started after others were deleted gets their low
 * fds back, and its every restart copied the 20,000 fds of 10,000 apps).
 */
#define SLOTS 24
#define NARROW_FROM 64 /* a source fd at least this high: the table is big */
static int slot_fd[SLOTS], slot_busy[SLOTS], slot_count, slot_limit, slot_null = -1;
static pthread_mutex_t slot_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t slot_once = PTHREAD_ONCE_INIT, probe_once = PTHREAD_ONCE_INIT;
static long narrow_count; /* under slot_mu: how many spawns went narrow */

/* Under valgrind (its preload is mapped), which does not emulate clone()
 * with CLONE_FILES: no narrow spawns. */
static int under_valgrind(void)
{
	char buf[8192];
	int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC), found = 0;
	if (fd < 0)
		return 0;
	ssize_t n;
	size_t keep = 0;
	while (!found && (n = read(fd, buf + keep, sizeof buf - 1 - keep)) > 0) {
		buf[keep + (size_t)n] = '\0';
		found = strstr(buf, "vgpreload") != NULL;
		/* the last bytes again, in case the name spans two reads */
		size_t len = keep + (size_t)n;
		keep = len > 16 ? 16 : len;
		memmove(buf, buf + len - keep, keep);
	}
	close(fd);
	return found;
}

/* Can a child that shares the fd table take a table of its own here? A
 * seccomp profile may refuse both close_range and unshare (then such a
 * child could neither unshare nor close the daemon's fds: no narrow
 * spawns). Asked once, of a child that does only that. */
CHILD_CODE static int probe_main(void *arg)
{
	(void)arg;
	if (syscall(SYS_close_range, 3u, ~0u, CLOSE_RANGE_UNSHARE) < 0 && unshare(CLONE_FILES) < 0)
		_exit(1);
	_exit(0);
	return 0;
}

static int narrow_works(void)
{
	char *stack = malloc(CHILD_STACK);
	if (!stack)
		return 0;
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	pid_t pid = clone(probe_main, stack + CHILD_STACK, CLONE_VM | CLONE_VFORK | CLONE_FILES | SIGCHLD, NULL);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	int st = 0, ok = 0;
	if (pid > 0) {
		pid_t r;
		while ((r = waitpid(pid, &st, 0)) < 0 && errno == EINTR)
			;
		ok = r == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0;
	}
	free(stack);
	return ok;
}

static void slots_init(void)
{
	slot_null = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (slot_null < 0)
		return;
	for (int i = 0; i < SLOTS; i++) {
		int fd = fcntl(slot_null, F_DUPFD_CLOEXEC, 0);
		if (fd < 0)
			break;
		slot_fd[slot_count++] = fd;
		if (fd >= slot_limit)
			slot_limit = fd + 1;
	}
	if (slot_limit > 4 * NARROW_FROM) /* reserved too late to be low */
		slot_count = 0;
}

/* Whether the slots can be used here at all, asked at the first narrow
 * spawn (not at the daemon's start: a clone and a read of /proc/self/maps
 * that a daemon with few apps never needs). */
static void probe_init(void)
{
	if (under_valgrind() || !narrow_works()) {
		pthread_mutex_lock(&slot_mu);
		slot_count = 0;
		pthread_mutex_unlock(&slot_mu);
	}
}

/* The daemon reserves its slots at its start (its fd count stays flat);
 * another process at its first spawn. */
void pm_spawn_slots(void)
{
	pthread_once(&slot_once, slots_init);
}

/* Moves a's sources into slots -> 1 (a narrow spawn), or 0 (a's fds as
 * they are). slots[] gets the indexes taken. */
static int narrow_begin(struct spawn_args *a, int *slots)
{
	/* reserved at the first spawn, while the process has few fds */
	pthread_once(&slot_once, slots_init);
	int high = -1;
	for (int i = 0; i < a->nfds; i++)
		if (a->fds[i] > high)
			high = a->fds[i];
	if ((high < NARROW_FROM && !a->want_narrow) || a->nfds == 0)
		return 0;
	pthread_once(&probe_once, probe_init);
	int n = 0;
	pthread_mutex_lock(&slot_mu);
	for (int k = 0; k < slot_count && n < a->nfds; k++)
		if (!slot_busy[k]) {
			slot_busy[k] = 1;
			slots[n++] = k;
		}
	pthread_mutex_unlock(&slot_mu);
	int ok = n == a->nfds;
	for (int i = 0; ok && i < a->nfds; i++)
		if (a->fds[i] >= 0 && dup3(a->fds[i], slot_fd[slots[i]], O_CLOEXEC) < 0)
			ok = 0;
	if (ok) {
		for (int i = 0; i < a->nfds; i++)
			a->fds[i] = a->fds[i] >= 0 ? slot_fd[slots[i]] : -1;
		a->narrow = slot_limit;
		pthread_mutex_lock(&slot_mu);
		narrow_count++;
		pthread_mutex_unlock(&slot_mu);
		return 1;
	}
	/* not enough slots (or a bad source): the usual way */
	pthread_mutex_lock(&slot_mu);
	for (int i = 0; i < n; i++) {
		dup3(slot_null, slot_fd[slots[i]], O_CLOEXEC);
		slot_busy[slots[i]] = 0;
	}
	pthread_mutex_unlock(&slot_mu);
	return 0;
}

/* The child has exec'd (or failed): the slots hold /dev/null again. */
static void narrow_end(struct spawn_args *a, const int *slots)
{
	pthread_mutex_lock(&slot_mu);
	for (int i = 0; i < a->nfds; i++) {
		dup3(slot_null, slot_fd[slots[i]], O_CLOEXEC);
		slot_busy[slots[i]] = 0;
	}
	pthread_mutex_unlock(&slot_mu);
}

/* One child: CLONE_VM|CLONE_VFORK, as posix_spawn does (no copy of the
 * daemon's memory; the calling thread resumes once the exec is done, so
 * the answer is known at once). Thread-safe. -> pid | -1 with *err.
 * a->fds may be changed (to slots). */
static pid_t do_spawn(struct spawn_args *a, int *err)
{
	char *stack = malloc(CHILD_STACK);
	if (!stack) {
		*err = ENOMEM;
		return -1;
	}
	if (a->cgfd_kept >= 0)
		a->cgfd = a->cgfd_kept;
	else if (a->cgroup && (a->cgfd = open(a->cgroup, O_WRONLY | O_CLOEXEC)) < 0) {
		*err = errno;
		a->stage = 5;
		a->err = errno;
		free(stack);
		return -2;
	}
	int slots[64];
	int narrow = narrow_begin(a, slots);
	/* no handler of ours may run in the child before it resets them */
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	pid_t pid = clone(child_main, stack + CHILD_STACK,
			  CLONE_VM | CLONE_VFORK | SIGCHLD | (narrow ? CLONE_FILES : 0), a);
	*err = errno;
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (narrow)
		narrow_end(a, slots);
	if (a->cgfd >= 0 && a->cgfd != a->cgfd_kept)
		close(a->cgfd);
	a->cgfd = -1;
	free(stack);
	return pid;
}

/* core.narrow_spawns() -> n: how many spawns took the narrow way (tests) */
static int l_narrow_spawns(lua_State *L)
{
	pthread_mutex_lock(&slot_mu);
	lua_pushnumber(L, (double)narrow_count);
	pthread_mutex_unlock(&slot_mu);
	return 1;
}

/* Pushes the outcome of a spawn: pid | nil, err [, pid] -> count */
static int push_outcome(lua_State *L, struct spawn_args *a, pid_t pid, int err)
{
	if (pid == -2) { /* its cgroup could not be opened: no child */
		lua_pushnil(L);
		lua_pushfstring(L, "%s %s: %s", stages[5], a->cgroup, strerror(err));
		return 2;
	}
	if (pid < 0) {
		lua_pushnil(L);
		lua_pushfstring(L, "spawn: clone: %s", strerror(err));
		return 2;
	}
	if (a->stage > 0 && a->stage < 6) {
		/* the child is reaped by the child watcher like any other */
		lua_pushnil(L);
		lua_pushfstring(L, "%s %s: %s", stages[a->stage],
				a->stage == 2 ? a->cwd : a->stage == 5 ? a->cgroup : a->file, strerror(a->err));
		lua_pushinteger(L, pid);
		return 3;
	}
	lua_pushinteger(L, pid);
	return 1;
}

/*
 * core.spawn(opts) -> pid | nil, err [, pid]
 * opts: file (path), args (argv list), env (list of "K=V", nil: inherit),
 * cwd, fds (list: fds[i] becomes fd i-1 in the child; -1 is /dev/null),
 * setsid (bool), uid, gid, listen_pid (bool: add LISTEN_PID=<child pid>),
 * cgroup (the path of a cgroup.procs the child writes itself into first),
 * cgroup_fd (that file already open for writing, kept by the caller: no
 * open and close of it a spawn; cgroup still names it in errors), narrow
 * (bool: the fd table is big, whatever the numbers of fds: no copy of it).
 * The child gets default signal dispositions, an empty mask and the
 * original soft fd limit. A failed chdir/exec comes back as the error
 * (with the pid of the child, which has exited).
 */
static int l_spawn(lua_State *L)
{
	struct spawn_args a;
	read_spawn_args(L, 1, &a, 1);
	if (!touched_ready)
		find_touched();
	int err;
	pid_t pid = do_spawn(&a, &err);
	return push_outcome(L, &a, pid, err); /* the arrays below go with the call */
}

/* The children of a list of spawn options, made by a few threads at once. Each waits for its child's exec (~0.6 ms on a small
 * VM): 100 apps started one after the other wait 60 ms; in parallel, a
 * fraction of that. */
struct spawn_job {
	struct spawn_args *args;
	pid_t *pids;
	int *errs;
	int n;
	int next; /* atomic */
};

static void run_jobs(struct spawn_job *j)
{
	for (;;) {
		int i = __atomic_fetch_add(&j->next, 1, __ATOMIC_RELAXED);
		if (i >= j->n)
			return;
		j->pids[i] = do_spawn(&j->args[i], &j->errs[i]);
	}
}

static void *spawn_worker(void *arg)
{
	run_jobs(arg);
	return NULL;
}

#define SPAWN_THREADS 4
#define SPAWN_MT "pm.spawning"

/* A batch of spawns under way: the threads run while Lua goes on with
 * straight-line work (never the loop: nothing closes what a child still
 * has to dup). */
struct spawning {
	struct spawn_job j;
	pthread_t t[SPAWN_THREADS];
	int nthreads, waited;
};

static void spawning_join(struct spawning *sp)
{
	if (sp->waited)
		return;
	for (int i = 0; i < sp->nthreads; i++)
		pthread_join(sp->t[i], NULL);
	sp->waited = 1;
}

/* Reads the options of list (index 1) into a new spawning userdata whose
 * uservalue table keeps every array alive; starts nothing. */
static struct spawning *spawning_new(lua_State *L)
{
	luaL_checktype(L, 1, LUA_TTABLE);
	int n = (int)lua_objlen(L, 1);
	lua_settop(L, 1);
	if (n > 1024)
		luaL_error(L, "spawn_many: at most 1024 at once");
	struct spawning *sp = lua_newuserdata(L, sizeof *sp);
	memset(sp, 0, sizeof *sp);
	sp->waited = 1; /* nothing to join until threads start */
	luaL_getmetatable(L, SPAWN_MT);
	lua_setmetatable(L, -2);
	lua_createtable(L, 3 * n + 4, 0); /* anchor */
	int anchor = lua_gettop(L), na = 0;
	size_t m = (size_t)(n ? n : 1);
	sp->j.n = n;
	sp->j.args = lua_newuserdata(L, sizeof(struct spawn_args) * m);
	lua_rawseti(L, anchor, ++na);
	sp->j.pids = lua_newuserdata(L, sizeof(pid_t) * m);
	lua_rawseti(L, anchor, ++na);
	sp->j.errs = lua_newuserdata(L, sizeof(int) * m);
	lua_rawseti(L, anchor, ++na);
	lua_pushvalue(L, 1);
	lua_rawseti(L, anchor, ++na); /* the options, whose strings the arrays point to */
	for (int i = 0; i < n; i++) {
		lua_rawgeti(L, 1, i + 1);
		int o = lua_gettop(L);
		read_spawn_args(L, o, &sp->j.args[i], 0); /* pushes argv, envp (or nil) */
		lua_rawseti(L, anchor, ++na);
		lua_rawseti(L, anchor, ++na);
		lua_pop(L, 1);
	}
	lua_setfenv(L, -2); /* the anchor becomes the userdata's environment */
	if (!touched_ready)
		find_touched();
	return sp;
}

static int start_threads(struct spawning *sp, int nthreads)
{
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old); /* the workers take no signal */
	sp->nthreads = 0;
	for (int i = 0; i < nthreads; i++)
		if (pthread_create(&sp->t[sp->nthreads], NULL, spawn_worker, &sp->j) == 0)
			sp->nthreads++;
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	sp->waited = 0;
	return sp->nthreads;
}

static int thread_count(int n)
{
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	int t = (int)(cpus < 1 ? 1 : cpus > SPAWN_THREADS ? SPAWN_THREADS : cpus);
	return t > n ? n : t;
}

/* Pushes { outcome, ... } of a finished batch */
static void push_outcomes(lua_State *L, struct spawn_job *j)
{
	lua_createtable(L, j->n, 0);
	int results = lua_gettop(L);
	for (int i = 0; i < j->n; i++) {
		lua_createtable(L, 3, 0);
		int c = push_outcome(L, &j->args[i], j->pids[i], j->errs[i]);
		for (int k = c; k >= 1; k--)
			lua_rawseti(L, -1 - k, k);
		lua_rawseti(L, results, i + 1);
	}
}

/* core.spawn_many(list of opts) -> { outcome, ... }: each outcome is
 * { pid } or { nil, err [, pid] } as core.spawn returns it. The calling
 * thread spawns too. */
static int l_spawn_many(lua_State *L)
{
	struct spawning *sp = spawning_new(L);
	start_threads(sp, thread_count(sp->j.n) - 1);
	run_jobs(&sp->j);
	spawning_join(sp);
	push_outcomes(L, &sp->j);
	return 1;
}

/* core.spawn_start(list of opts) -> spawning: the same, done by threads
 * while the caller goes on (see spawning:wait). Until then the caller must
 * not run the loop. */
static int l_spawn_start(lua_State *L)
{
	struct spawning *sp = spawning_new(L);
	if (sp->j.n > 0 && start_threads(sp, thread_count(sp->j.n)) == 0)
		run_jobs(&sp->j); /* no thread: done here and now */
	return 1;
}

/* spawning:wait() -> { outcome, ... }: waits for the batch's threads; each
 * outcome as core.spawn_many gives it */
static int l_spawning_wait(lua_State *L)
{
	struct spawning *sp = luaL_checkudata(L, 1, SPAWN_MT);
	spawning_join(sp);
	run_jobs(&sp->j); /* whatever no thread took (none started) */
	push_outcomes(L, &sp->j);
	return 1;
}

static int l_spawning_gc(lua_State *L)
{
	spawning_join(luaL_checkudata(L, 1, SPAWN_MT));
	return 0;
}

/* core.kill(pid, signum) -> true | nil, err (pid > 0) */
static int l_kill(lua_State *L)
{
	pid_t pid = (pid_t)luaL_checkinteger(L, 1);
	int sig = (int)luaL_checkinteger(L, 2);
	if (pid <= 0)
		return luaL_argerror(L, 1, "positive pid expected");
	if (kill(pid, sig) < 0)
		return pm_fail(L, "kill");
	lua_pushboolean(L, 1);
	return 1;
}

/* core.killpg(pgid, signum) -> true | nil, err (pgid > 1) */
static int l_killpg(lua_State *L)
{
	pid_t pid = (pid_t)luaL_checkinteger(L, 1);
	int sig = (int)luaL_checkinteger(L, 2);
	if (pid <= 1)
		return luaL_argerror(L, 1, "process group > 1 expected");
	if (killpg(pid, sig) < 0)
		return pm_fail(L, "killpg");
	lua_pushboolean(L, 1);
	return 1;
}

static ssize_t read_small(const char *path, char *buf, size_t size)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ssize_t n = read(fd, buf, size - 1);
	close(fd);
	if (n >= 0)
		buf[n] = '\0';
	return n;
}

struct pstat {
	char state;
	long ppid, pgrp;
	unsigned long long ticks, start;
	long rss_pages;
};

static int read_stat(long pid, struct pstat *ps)
{
	char path[64], buf[1024];
	snprintf(path, sizeof path, "/proc/%ld/stat", pid);
	if (read_small(path, buf, sizeof buf) <= 0)
		return -1;
	char *p = strrchr(buf, ')');
	if (!p)
		return -1;
	unsigned long long ut, st;
	/* state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt
	 * utime stime cutime cstime priority nice threads itrealvalue starttime
	 * vsize rss */
	if (sscanf(p + 2, "%c %ld %ld %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %*d %*d %*d %*d %*d %*d %llu %*u %ld",
		   &ps->state, &ps->ppid, &ps->pgrp, &ut, &st, &ps->start, &ps->rss_pages) != 7)
		return -1;
	ps->ticks = ut + st;
	return 0;
}

/* core.proc_stat(pid) -> {state, ppid, pgrp, ticks, start, rss} | nil
 * ticks: utime+stime in clock ticks; start: ticks after boot; rss: bytes. */
static int l_proc_stat(lua_State *L)
{
	struct pstat ps;
	if (read_stat((long)luaL_checkinteger(L, 1), &ps) < 0) {
		lua_pushnil(L);
		return 1;
	}
	lua_createtable(L, 0, 6);
	lua_pushlstring(L, &ps.state, 1);
	lua_setfield(L, -2, "state");
	lua_pushinteger(L, ps.ppid);
	lua_setfield(L, -2, "ppid");
	lua_pushinteger(L, ps.pgrp);
	lua_setfield(L, -2, "pgrp");
	lua_pushnumber(L, (double)ps.ticks);
	lua_setfield(L, -2, "ticks");
	lua_pushnumber(L, (double)ps.start);
	lua_setfield(L, -2, "start");
	lua_pushnumber(L, (double)ps.rss_pages * (double)sysconf(_SC_PAGESIZE));
	lua_setfield(L, -2, "rss");
	return 1;
}

/* Walks the tree below pid through /proc/<pid>/task/<pid>/children; its
 * pids go in the table on top of L's stack (L NULL: none) */
static void walk_tree(lua_State *L, long pid, int depth, double *rss, double *ticks, int *n)
{
	struct pstat ps;
	if (depth > 64 || read_stat(pid, &ps) < 0 || ps.state == 'Z')
		return;
	*rss += (double)ps.rss_pages * (double)sysconf(_SC_PAGESIZE);
	*ticks += (double)ps.ticks;
	if (L) {
		lua_pushinteger(L, pid);
		lua_rawseti(L, -2, ++*n);
	}
	char path[96], buf[4096];
	snprintf(path, sizeof path, "/proc/%ld/task/%ld/children", pid, pid);
	if (read_small(path, buf, sizeof buf) <= 0)
		return;
	char *s = buf, *end;
	for (;;) {
		long c = strtol(s, &end, 10);
		if (end == s)
			break;
		walk_tree(L, c, depth + 1, rss, ticks, n);
		s = end;
	}
}

/* core.proc_tree(pid) -> {pid, descendant pids..., rss=bytes, ticks=n}
 * (an empty list when pid is gone) */
static int l_proc_tree(lua_State *L)
{
	long pid = (long)luaL_checkinteger(L, 1);
	double rss = 0, ticks = 0;
	int n = 0;
	lua_newtable(L);
	if (pid > 0)
		walk_tree(L, pid, 0, &rss, &ticks, &n);
	lua_pushnumber(L, rss);
	lua_setfield(L, -2, "rss");
	lua_pushnumber(L, ticks);
	lua_setfield(L, -2, "ticks");
	return 1;
}

/* core.proc_usage(pid) -> rss, ticks: proc_tree's sums without its list
 * (0, 0 when pid is gone): what a sample of 10,000 apps reads makes no
 * garbage (a table each was 2.8 MB a sample) */
static int l_proc_usage(lua_State *L)
{
	long pid = (long)luaL_checkinteger(L, 1);
	double rss = 0, ticks = 0;
	int n = 0;
	if (pid > 0)
		walk_tree(NULL, pid, 0, &rss, &ticks, &n);
	lua_pushnumber(L, rss);
	lua_pushnumber(L, ticks);
	return 2;
}

/* Whether pid is a key of one of the tables at 2..top */
static int known_pid(lua_State *L, int top, long pid)
{
	for (int i = 2; i <= top; i++) {
		if (!lua_istable(L, i))
			continue;
		lua_pushinteger(L, pid);
		lua_rawget(L, i);
		int found = !lua_isnil(L, -1);
		lua_pop(L, 1);
		if (found)
			return 1;
	}
	return 0;
}

/* core.children([pid] [, known...]) -> {pids}: the children of pid (of
 * this process by default: its main thread's, where orphans go to a
 * subreaper) that are not keys of the tables known..., from
 * /proc/<pid>/task/<pid>/children, parsed here whatever its length (a
 * daemon with 10,000 apps reads it at each exit: no Lua string cut in
 * 10,000 pieces, no table of 10,000 pids it knows); an empty list when
 * pid is gone */
static int l_children(lua_State *L)
{
	int top = lua_gettop(L);
	long pid = luaL_optinteger(L, 1, 0);
	if (pid <= 0)
		pid = (long)getpid();
	char path[96], buf[8192];
	snprintf(path, sizeof path, "/proc/%ld/task/%ld/children", pid, pid);
	lua_newtable(L);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 1;
	int n = 0;
	long cur = 0;
	int in_num = 0;
	for (;;) {
		ssize_t got = read(fd, buf, sizeof buf);
		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0)
			break;
		for (ssize_t i = 0; i < got; i++) {
			char c = buf[i];
			if (c >= '0' && c <= '9') {
				cur = cur * 10 + (c - '0');
				in_num = 1;
			} else if (in_num) {
				if (!known_pid(L, top, cur)) {
					lua_pushinteger(L, cur);
					lua_rawseti(L, -2, ++n);
				}
				cur = 0;
				in_num = 0;
			}
		}
	}
	if (in_num && !known_pid(L, top, cur)) {
		lua_pushinteger(L, cur);
		lua_rawseti(L, -2, ++n);
	}
	close(fd);
	return 1;
}

/* core.proc_environ(pid) -> string with NUL-separated entries | nil, err */
static int l_proc_environ(lua_State *L)
{
	char path[64];
	snprintf(path, sizeof path, "/proc/%ld/environ", (long)luaL_checkinteger(L, 1));
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return pm_fail(L, path);
	luaL_Buffer b;
	luaL_buffinit(L, &b);
	for (;;) {
		char *p = luaL_prepbuffer(&b);
		ssize_t n = read(fd, p, LUAL_BUFFERSIZE);
		if (n <= 0)
			break;
		luaL_addsize(&b, (size_t)n);
	}
	close(fd);
	luaL_pushresult(&b);
	return 1;
}

/* core.clk_tck() -> clock ticks a second (the unit of proc_stat's ticks) */
static int l_clk_tck(lua_State *L)
{
	lua_pushinteger(L, sysconf(_SC_CLK_TCK));
	return 1;
}

void pm_open_proc(lua_State *L)
{
	static const luaL_Reg fns[] = {
		{"spawn", l_spawn},
		{"narrow_spawns", l_narrow_spawns},
		{"spawn_many", l_spawn_many},
		{"spawn_start", l_spawn_start},
		{"kill", l_kill},
		{"killpg", l_killpg},
		{"proc_stat", l_proc_stat},
		{"proc_tree", l_proc_tree},
		{"proc_usage", l_proc_usage},
		{"proc_environ", l_proc_environ},
		{"children", l_children},
		{"clk_tck", l_clk_tck},
		{NULL, NULL},
	};
	luaL_register(L, NULL, fns);
	luaL_newmetatable(L, SPAWN_MT);
	lua_pushcfunction(L, l_spawning_wait);
	lua_setfield(L, -2, "wait");
	lua_pushvalue(L, -1);
	lua_setfield(L, -2, "__index");
	lua_pushcfunction(L, l_spawning_gc);
	lua_setfield(L, -2, "__gc");
	lua_pop(L, 1);
}
