/*
 * sys.c: the rest of the operating system: files and fds, locks, identity,
 * terminal, environment, and the daemon's process-wide set-up.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <limits.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/utsname.h>

#include "core.h"

extern char **environ;

/* ---- files opened on an app's behalf (core.h: pm_owner_t) ---- */

void pm_owner_get(lua_State *L, int idx, pm_owner_t *o)
{
	o->uid = o->gid = -1;
	o->as_user = 0;
	if (!lua_istable(L, idx))
		return;
	lua_getfield(L, idx, "uid");
	o->uid = (long)luaL_optinteger(L, -1, -1);
	lua_getfield(L, idx, "gid");
	o->gid = (long)luaL_optinteger(L, -1, -1);
	lua_getfield(L, idx, "as_user");
	o->as_user = lua_toboolean(L, -1) && o->uid >= 0;
	lua_pop(L, 3);
}

/* Raw syscalls: these credentials are this thread's alone (glibc's
 * setgroups would set every thread's). Leaving fsuid 0 drops the file
 * capabilities (CAP_DAC_OVERRIDE...) until it is 0 again. */
int pm_as_begin(const pm_owner_t *o, pm_creds_t *c)
{
	c->on = 0;
	if (!o->as_user)
		return 0;
	if (o->gid < 0) { /* (never with root's group) */
		errno = EPERM;
		return -1;
	}
	c->ngroups = (int)syscall(SYS_getgroups, 64, c->groups);
	if (c->ngroups < 0)
		return -1;
	if (syscall(SYS_setgroups, 0, NULL) < 0)
		return -1;
	c->on = 1;
	c->fsgid = syscall(SYS_setfsgid, o->gid);
	c->fsuid = syscall(SYS_setfsuid, o->uid);
	if (syscall(SYS_setfsuid, -1) != o->uid || syscall(SYS_setfsgid, -1) != o->gid) {
		pm_as_end(c);
		errno = EPERM;
		return -1;
	}
	return 0;
}

void pm_as_end(pm_creds_t *c)
{
	if (!c->on)
		return;
	int e = errno;
	syscall(SYS_setfsuid, c->fsuid);
	syscall(SYS_setfsgid, c->fsgid);
	syscall(SYS_setgroups, c->ngroups, c->groups);
	c->on = 0;
	errno = e;
}

int pm_open_owned(const char *path, int flags, mode_t mode, const pm_owner_t *o, const char **why)
{
	*why = NULL;
	int trunc = flags & O_TRUNC;
	flags = (flags & ~O_TRUNC) | O_CLOEXEC;
	if (o->uid < 0) {
		int fd = open(path, flags | trunc, mode);
		if (fd >= 0 && o->gid >= 0 && fchown(fd, (uid_t)-1, (gid_t)o->gid) < 0) {
			/* (as before: the group is given where it can be) */
		}
		return fd;
	}
	flags |= O_NOFOLLOW | O_NONBLOCK; /* a FIFO must not block the open */
	pm_creds_t c;
	if (pm_as_begin(o, &c) < 0)
		return -1;
	int fd, created = 0;
	if (flags & O_CREAT) {
		fd = open(path, flags | O_EXCL, mode);
		created = fd >= 0;
		if (fd < 0 && errno == EEXIST)
			fd = open(path, flags & ~O_CREAT, mode);
	} else {
		fd = open(path, flags, mode);
	}
	pm_as_end(&c);
	if (fd < 0) {
		if (errno == ELOOP)
			*why = "a symbolic link, refused";
		return -1;
	}
	struct stat st;
	int e = 0;
	if (fstat(fd, &st) < 0)
		e = errno;
	else if (!S_ISREG(st.st_mode))
		*why = "not a regular file, refused";
	else if (created && !o->as_user && fchown(fd, (uid_t)o->uid, (gid_t)o->gid) < 0)
		e = errno;
	else if (!created && ((flags & O_ACCMODE) != O_RDONLY || !o->as_user) && st.st_uid != (uid_t)o->uid)
		*why = "not owned by the app's user, refused"; /* (a read as_user is bounded by the user's ids) */
	else if (trunc && ftruncate(fd, 0) < 0)
		e = errno;
	if (e || *why) {
		close(fd);
		errno = e ? e : EPERM;
		return -1;
	}
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
	return fd;
}

int pm_fail_why(lua_State *L, const char *what, const char *why)
{
	if (!why)
		return pm_fail(L, what);
	lua_pushnil(L);
	lua_pushfstring(L, "%s: %s", what, why);
	return 2;
}


/* core.open(path, how [, mode [, owner]]) -> fd | nil, err
 * how: "r" read, "a" append (created), "w" truncate (created), "u" write
 * in place (created, not truncated), "+" read and write (not created).
 * CLOEXEC; mode for a new file. owner
 * ({uid=, gid=, as_user=}): a file opened on an app's behalf (core.h); "r"
 * with as_user: read with that user's ids, never through a link, a regular
 * file of anyone's (what an ecosystem file reads on a user's behalf). */
static int l_open(lua_State *L)
{
	const char *path = luaL_checkstring(L, 1);
	const char *how = luaL_checkstring(L, 2);
	int mode = (int)luaL_optinteger(L, 3, 0644);
	int flags = O_CLOEXEC;
	switch (how[0]) {
	case 'r': flags |= O_RDONLY; break;
	case 'a': flags |= O_WRONLY | O_APPEND | O_CREAT; break;
	case 'w': flags |= O_WRONLY | O_TRUNC | O_CREAT; break;
	case 'u': flags |= O_WRONLY | O_CREAT; break;
	case '+': flags |= O_RDWR; break;
	default: return luaL_argerror(L, 2, "\"r\", \"a\", \"w\", \"u\" or \"+\" expected");
	}
	pm_owner_t o;
	pm_owner_get(L, 4, &o);
	const char *why;
	int fd = pm_open_owned(path, flags, (mode_t)mode, &o, &why);
	if (fd < 0)
		return pm_fail_why(L, path, why);
	lua_pushinteger(L, fd);
	return 1;
}

/* core.close(fd) -> true | nil, err (the fd is closed either way) */
static int l_close(lua_State *L)
{
	if (close((int)luaL_checkinteger(L, 1)) < 0 && errno != EINTR)
		return pm_fail(L, "close");
	lua_pushboolean(L, 1);
	return 1;
}

/* core.fsync(fd | path) -> true | nil, err: what the file (or folder) holds
 * is on the disk (a path is opened read-only for it: a folder's entries) */
static int l_fsync(lua_State *L)
{
	int fd, own = 0;
	if (lua_type(L, 1) == LUA_TNUMBER) {
		fd = (int)lua_tointeger(L, 1);
	} else {
		const char *path = luaL_checkstring(L, 1);
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			return pm_fail(L, path);
		own = 1;
	}
	int rc;
	do
		rc = fsync(fd);
	while (rc < 0 && errno == EINTR);
	int saved = errno;
	if (own)
		close(fd);
	if (rc < 0) {
		errno = saved;
		return pm_fail(L, "fsync");
	}
	lua_pushboolean(L, 1);
	return 1;
}

/* core.dup(fd [, to]) -> a new fd (close-on-exec) for the same file | nil,
 * err. With to: dup2, fd `to` is made that file (pm.log rotated: 1, 2) */
static int l_dup(lua_State *L)
{
	if (!lua_isnoneornil(L, 2)) {
		int to = (int)luaL_checkinteger(L, 2);
		if (dup2((int)luaL_checkinteger(L, 1), to) < 0)
			return pm_fail(L, "dup2");
		lua_pushinteger(L, to);
		return 1;
	}
	int fd = fcntl((int)luaL_checkinteger(L, 1), F_DUPFD_CLOEXEC, 3);
	if (fd < 0)
		return pm_fail(L, "dup");
	lua_pushinteger(L, fd);
	return 1;
}

/* core.write(fd, data) -> true | nil, err (blocking, whole buffer) */
static int l_write(lua_State *L)
{
	int fd = (int)luaL_checkinteger(L, 1);
	size_t len;
	const char *p = luaL_checklstring(L, 2, &len);
	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return pm_fail(L, "write");
		}
		p += n;
		len -= (size_t)n;
	}
	lua_pushboolean(L, 1);
	return 1;
}

/* core.read(fd [, max [, at]]) -> string ("" at end of file) | nil, err;
 * non-blocking fds give nil, "again" when nothing is there; at: from that
 * offset (pread), the fd's own offset left as it was */
static int l_read(lua_State *L)
{
	int fd = (int)luaL_checkinteger(L, 1);
	size_t max = (size_t)luaL_optinteger(L, 2, 65536);
	int pos = lua_isnumber(L, 3);
	off_t at = pos ? (off_t)lua_tonumber(L, 3) : 0;
	luaL_Buffer b;
	luaL_buffinit(L, &b);
	char *p = luaL_prepbuffer(&b);
	size_t want = max < LUAL_BUFFERSIZE ? max : LUAL_BUFFERSIZE;
	ssize_t n;
	do
		n = pos ? pread(fd, p, want, at) : read(fd, p, want);
	while (n < 0 && errno == EINTR);
	if (n < 0) {
		if (errno == EAGAIN) {
			lua_pushnil(L);
			lua_pushliteral(L, "again");
			return 2;
		}
		return pm_fail(L, "read");
	}
	luaL_addsize(&b, (size_t)n);
	luaL_pushresult(&b);
	return 1;
}

/* core.truncate(path [, owner]) -> true | nil, err (owner: as core.open's) */
static int l_truncate(lua_State *L)
{
	const char *path = luaL_checkstring(L, 1);
	pm_owner_t o;
	pm_owner_get(L, 2, &o);
	if (o.uid >= 0) {
		const char *why;
		int fd = pm_open_owned(path, O_WRONLY | O_TRUNC, 0, &o, &why);
		if (fd < 0)
			return pm_fail_why(L, path, why);
		close(fd);
	} else if (truncate(path, 0) < 0) {
		return pm_fail(L, path);
	}
	lua_pushboolean(L, 1);
	return 1;
}

/*
 * core.put_file(path, data [, mode [, owner]]) -> true | nil, err: the file holds
 * exactly data afterwards. An existing file is overwritten in place (no
 * new inode, no truncation unless it was longer): rewriting a pid file
 * costs a few microseconds where unlink + create costs hundreds on ext4.
 * owner: as core.open's.
 * core.put_file(fd, data [, last_len]): the same through a file held open
 * (core.open(path, "u")); with last_len, the length written there last,
 * it is truncated only when that was longer, without asking the kernel.
 */
static int l_put_file(lua_State *L)
{
	size_t len;
	int held = lua_type(L, 1) == LUA_TNUMBER;
	const char *path = held ? "file" : luaL_checkstring(L, 1);
	const char *data = luaL_checklstring(L, 2, &len);
	const char *why = NULL;
	pm_owner_t o;
	pm_owner_get(L, 4, &o);
	int fd = held ? (int)lua_tointeger(L, 1)
		      : pm_open_owned(path, O_WRONLY | O_CREAT, (mode_t)luaL_optinteger(L, 3, 0644), &o, &why);
	if (fd < 0)
		return pm_fail_why(L, path, why);
	ssize_t n = pwrite(fd, data, len, 0);
	struct stat st;
	int bad = n != (ssize_t)len;
	if (!bad && held && !lua_isnoneornil(L, 3)) {
		/* the caller knows the length it wrote last */
		if ((size_t)lua_tointeger(L, 3) > len && ftruncate(fd, (off_t)len) < 0)
			bad = 1;
	} else if (!bad && fstat(fd, &st) == 0 && st.st_size != (off_t)len && ftruncate(fd, (off_t)len) < 0) {
		bad = 1;
	}
	int err = errno;
	if (!held)
		close(fd);
	if (bad) {
		errno = n >= 0 && n != (ssize_t)len ? EIO : err;
		return pm_fail(L, path);
	}
	lua_pushboolean(L, 1);
	return 1;
}

/* core.mkdir(path [, mode [, owner]]) -> true | nil, err (an existing dir
 * is fine; owner: as core.open's, made with the app's ids when as_user) */
static int l_mkdir(lua_State *L)
{
	const char *path = luaL_checkstring(L, 1);
	pm_owner_t o;
	pm_owner_get(L, 3, &o);
	pm_creds_t c;
	if (pm_as_begin(&o, &c) < 0)
		return pm_fail(L, path);
	int rc = mkdir(path, (mode_t)luaL_optinteger(L, 2, 0755));
	pm_as_end(&c);
	if (rc < 0 && errno != EEXIST)
		return pm_fail(L, path);
	lua_pushboolean(L, 1);
	return 1;
}

/* core.chmod(path, mode) -> true | nil, err */
static int l_chmod(lua_State *L)
{
	const char *path = luaL_checkstring(L, 1);
	if (chmod(path, (mode_t)luaL_checkinteger(L, 2)) < 0)
		return pm_fail(L, path);
	lua_pushboolean(L, 1);
	return 1;
}

/* core.unlink(path [, owner]) -> true | nil, err: removes a file; with an
 * owner (as core.open's) only a regular file of owner.uid, never a link or
 * a directory, and with the app's ids when as_user */
static int l_unlink(lua_State *L)
{
	const char *path = luaL_checkstring(L, 1);
	pm_owner_t o;
	pm_owner_get(L, 2, &o);
	pm_creds_t c;
	if (pm_as_begin(&o, &c) < 0)
		return pm_fail(L, path);
	struct stat st;
	const char *why = NULL;
	int rc = -1;
	if (o.uid >= 0 && lstat(path, &st) == 0 && (!S_ISREG(st.st_mode) || st.st_uid != (uid_t)o.uid))
		why = S_ISREG(st.st_mode) ? "not owned by the app's user, left" : "not a regular file, left";
	else
		rc = unlink(path);
	pm_as_end(&c);
	if (rc < 0)
		return pm_fail_why(L, path, why);
	lua_pushboolean(L, 1);
	return 1;
}

/* core.symlink(target, path) -> true | nil, err: a symbolic link at path
 * naming target (PM2's file names beside pm's own, in PM_HOME) */
static int l_symlink(lua_State *L)
{
	const char *target = luaL_checkstring(L, 1);
	const char *path = luaL_checkstring(L, 2);
	if (symlink(target, path) < 0)
		return pm_fail(L, path);
	lua_pushboolean(L, 1);
	return 1;
}

/* core.stat(path [, nofollow]) -> {type="file"|"dir"|"socket"|"link"|"other",
 * mode, uid, size, mtime, mtime_ns} | nil, err (nofollow: lstat; mtime_ns: its
 * nanoseconds, which order two files written in the same second) */
static int l_stat(lua_State *L)
{
	const char *path = luaL_checkstring(L, 1);
	struct stat st;
	if ((lua_toboolean(L, 2) ? lstat(path, &st) : stat(path, &st)) < 0)
		return pm_fail(L, path);
	lua_createtable(L, 0, 5);
	lua_pushstring(L, S_ISREG(st.st_mode) ? "file" : S_ISDIR(st.st_mode) ? "dir"
				: S_ISSOCK(st.st_mode) ? "socket" : S_ISLNK(st.st_mode) ? "link" : "other");
	lua_setfield(L, -2, "type");
	lua_pushinteger(L, st.st_mode & 07777);
	lua_setfield(L, -2, "mode");
	lua_pushinteger(L, st.st_uid);
	lua_setfield(L, -2, "uid");
	lua_pushnumber(L, (double)st.st_size);
	lua_setfield(L, -2, "size");
	lua_pushnumber(L, (double)st.st_mtime);
	lua_setfield(L, -2, "mtime");
	lua_pushnumber(L, (double)st.st_mtim.tv_nsec);
	lua_setfield(L, -2, "mtime_ns");
	return 1;
}

/* core.access(path, "x"|"r"|"w") -> bool */
static int l_access(lua_State *L)
{
	const char *path = luaL_checkstring(L, 1);
	const char *m = luaL_optstring(L, 2, "r");
	int mode = m[0] == 'x' ? X_OK : m[0] == 'w' ? W_OK : R_OK;
	struct stat st;
	lua_pushboolean(L, access(path, mode) == 0 && stat(path, &st) == 0 &&
			       (mode != X_OK || S_ISREG(st.st_mode)));
	return 1;
}

/* core.realpath(path) -> absolute path without links | nil, err */
static int l_realpath(lua_State *L)
{
	char buf[PATH_MAX];
	const char *path = luaL_checkstring(L, 1);
	if (!realpath(path, buf))
		return pm_fail(L, path);
	lua_pushstring(L, buf);
	return 1;
}

/* core.readlink(path) -> what the link says | nil, err */
static int l_readlink(lua_State *L)
{
	char buf[PATH_MAX];
	const char *path = luaL_checkstring(L, 1);
	ssize_t n = readlink(path, buf, sizeof buf);
	if (n < 0)
		return pm_fail(L, path);
	if ((size_t)n >= sizeof buf) {
		errno = ENAMETOOLONG;
		return pm_fail(L, path);
	}
	lua_pushlstring(L, buf, (size_t)n);
	return 1;
}

/* core.getcwd() -> path | nil, err */
static int l_getcwd(lua_State *L)
{
	char buf[PATH_MAX];
	if (!getcwd(buf, sizeof buf))
		return pm_fail(L, "getcwd");
	lua_pushstring(L, buf);
	return 1;
}

/* core.lock(path [, wait]) -> fd | nil, err: an exclusive lock held while
 * fd is open; err is "locked" when another process holds it (wait: block
 * until it is free instead). */
static int l_lock(lua_State *L)
{
	const char *path = luaL_checkstring(L, 1);
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0)
		return pm_fail(L, path);
	if (flock(fd, LOCK_EX | (lua_toboolean(L, 2) ? 0 : LOCK_NB)) < 0) {
		int e = errno;
		close(fd);
		lua_pushnil(L);
		lua_pushstring(L, e == EWOULDBLOCK ? "locked" : strerror(e));
		return 2;
	}
	lua_pushinteger(L, fd);
	return 1;
}

/* core.environ() -> {K = V, ...} */
static int l_environ(lua_State *L)
{
	lua_newtable(L);
	for (char **e = environ; *e; e++) {
		const char *eq = strchr(*e, '=');
		if (!eq)
			continue;
		lua_pushlstring(L, *e, (size_t)(eq - *e));
		lua_pushstring(L, eq + 1);
		lua_rawset(L, -3);
	}
	return 1;
}

/* core.setenv(name, value | nil) -> true | nil, err: for this process and
 * what it spawns (nil: unset) */
static int l_setenv(lua_State *L)
{
	const char *k = luaL_checkstring(L, 1);
	int rc = lua_isnoneornil(L, 2) ? unsetenv(k) : setenv(k, luaL_checkstring(L, 2), 1);
	if (rc < 0)
		return pm_fail(L, "setenv");
	lua_pushboolean(L, 1);
	return 1;
}

/* core.getpid() -> pid */
static int l_getpid(lua_State *L)
{
	lua_pushinteger(L, getpid());
	return 1;
}

/* core.getuid() -> uid (the real one) */
static int l_getuid(lua_State *L)
{
	lua_pushinteger(L, getuid());
	return 1;
}

/* core.winsize([fd]) -> rows, cols | nothing (fd, default 1, is no terminal) */
static int l_winsize(lua_State *L)
{
	struct winsize ws;
	if (ioctl((int)luaL_optinteger(L, 1, 1), TIOCGWINSZ, &ws) < 0 || ws.ws_col == 0)
		return 0;
	lua_pushinteger(L, ws.ws_row);
	lua_pushinteger(L, ws.ws_col);
	return 2;
}

/* core.isatty(fd) -> bool */
static int l_isatty(lua_State *L)
{
	lua_pushboolean(L, isatty((int)luaL_checkinteger(L, 1)));
	return 1;
}

/* core.sleep(ms) -> nothing: blocks; only for the client while it waits for
 * a daemon */
static int l_sleep(lua_State *L)
{
	double ms = luaL_checknumber(L, 1);
	struct timespec ts = {(time_t)(ms / 1000), (long)((ms - (double)(time_t)(ms / 1000) * 1000) * 1e6)};
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
	return 0;
}

/* core.daemon_init(log_path) -> true | nil, err: the daemon's process-wide
 * set-up. New session, stdin from /dev/null, stdout/stderr to the log,
 * subreaper, soft fd limit raised to the hard one (the original is restored
 * in children). log_path nil: keep stdio (foreground). */
static int l_daemon_init(lua_State *L)
{
	const char *log = luaL_optstring(L, 1, NULL);
	if (log) {
		int in = open("/dev/null", O_RDONLY | O_CLOEXEC);
		int out = open(log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
		if (in < 0 || out < 0)
			return pm_fail(L, log);
		dup2(in, 0);
		dup2(out, 1);
		dup2(out, 2);
		close(in);
		close(out);
		setsid();
	}
	prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
	/* a long-lived process: buffers of 128 KB and more (a long reply)
	 * are mapped and unmapped, never left in the heap once freed (glibc
	 * would otherwise raise its threshold after the first such free) */
	mallopt(M_MMAP_THRESHOLD, 128 * 1024);
	mallopt(M_TRIM_THRESHOLD, 4 << 20); /* the log queue (2 MB at most) churns below it */
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
		pm_nofile_soft = (long)rl.rlim_cur;
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	pm_spawn_slots(); /* low fds, while there are few */
	lua_pushboolean(L, 1);
	return 1;
}

/* core.nofile([soft [, hard]]) -> soft, hard | nil, err: the daemon's fd
 * limit (RLIMIT_NOFILE), set first when given (hard: raising it needs
 * root); the limit its children get back stays the one it started with */
static int l_nofile(lua_State *L)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		return pm_fail(L, "getrlimit");
	if (!lua_isnoneornil(L, 1)) {
		struct rlimit want = rl;
		want.rlim_cur = (rlim_t)luaL_checknumber(L, 1);
		if (!lua_isnoneornil(L, 2))
			want.rlim_max = (rlim_t)luaL_checknumber(L, 2);
		if (setrlimit(RLIMIT_NOFILE, &want) != 0)
			return pm_fail(L, "setrlimit");
		rl = want;
	}
	lua_pushnumber(L, (lua_Number)rl.rlim_cur);
	lua_pushnumber(L, (lua_Number)rl.rlim_max);
	return 2;
}

/* core.uname() -> sysname, release, machine */
static int l_uname(lua_State *L)
{
	struct utsname u;
	uname(&u);
	lua_pushstring(L, u.sysname);
	lua_pushstring(L, u.release);
	lua_pushstring(L, u.machine);
	return 3;
}

/* core.utf8_clean(s) -> s, or a copy of it with each byte that is no part of
 * valid UTF-8 replaced by U+FFFD (as Node decodes it: JSON on the wire is
 * UTF-8, RFC 8259, and a strict parser refuses the whole text for one
 * byte); s itself when it is valid, found at memory speed */
static int l_utf8_clean(lua_State *L)
{
	size_t n;
	const unsigned char *s = (const unsigned char *)luaL_checklstring(L, 1, &n);
	size_t i = 0;
	for (;;) {
		/* (ASCII eight bytes at a time) */
		while (i + 8 <= n) {
			uint64_t w;
			memcpy(&w, s + i, 8);
			if (w & 0x8080808080808080ULL)
				break;
			i += 8;
		}
		while (i < n && s[i] < 0x80)
			i++;
		if (i >= n) {
			lua_settop(L, 1);
			return 1;
		}
		size_t k = pm_utf8_len(s + i, n - i);
		if (k == 0)
			break;
		i += k;
	}
	luaL_Buffer b;
	luaL_buffinit(L, &b);
	luaL_addlstring(&b, (const char *)s, i);
	while (i < n) {
		size_t k = pm_utf8_len(s + i, n - i);
		if (k == 0) {
			luaL_addlstring(&b, "\xEF\xBF\xBD", 3);
			i++;
		} else {
			luaL_addlstring(&b, (const char *)s + i, k);
			i += k;
		}
	}
	luaL_pushresult(&b);
	return 1;
}

void pm_open_sys(lua_State *L)
{
	static const luaL_Reg fns[] = {
		{"open", l_open},
		{"close", l_close},
		{"fsync", l_fsync},
		{"write", l_write},
		{"read", l_read},
		{"truncate", l_truncate},
		{"put_file", l_put_file},
		{"dup", l_dup},
		{"mkdir", l_mkdir},
		{"nofile", l_nofile},
		{"chmod", l_chmod},
		{"unlink", l_unlink},
		{"symlink", l_symlink},
		{"stat", l_stat},
		{"access", l_access},
		{"realpath", l_realpath},
		{"readlink", l_readlink},
		{"getcwd", l_getcwd},
		{"lock", l_lock},
		{"environ", l_environ},
		{"setenv", l_setenv},
		{"getpid", l_getpid},
		{"getuid", l_getuid},
		{"isatty", l_isatty},
		{"winsize", l_winsize},
		{"sleep", l_sleep},
		{"daemon_init", l_daemon_init},
		{"uname", l_uname},
		{"utf8_clean", l_utf8_clean},
		{NULL, NULL},
	};
	luaL_register(L, NULL, fns);

	/* signal numbers by name: data for Lua, which owns their meaning */
	static const struct { const char *name; int num; } sigs[] = {
		{"SIGHUP", SIGHUP}, {"SIGINT", SIGINT}, {"SIGQUIT", SIGQUIT},
		{"SIGILL", SIGILL}, {"SIGTRAP", SIGTRAP}, {"SIGABRT", SIGABRT},
		{"SIGBUS", SIGBUS}, {"SIGFPE", SIGFPE}, {"SIGKILL", SIGKILL},
		{"SIGUSR1", SIGUSR1}, {"SIGSEGV", SIGSEGV}, {"SIGUSR2", SIGUSR2},
		{"SIGPIPE", SIGPIPE}, {"SIGALRM", SIGALRM}, {"SIGTERM", SIGTERM},
		{"SIGCHLD", SIGCHLD}, {"SIGCONT", SIGCONT}, {"SIGSTOP", SIGSTOP},
		{"SIGTSTP", SIGTSTP}, {"SIGTTIN", SIGTTIN}, {"SIGTTOU", SIGTTOU},
		{"SIGURG", SIGURG}, {"SIGXCPU", SIGXCPU}, {"SIGXFSZ", SIGXFSZ},
		{"SIGVTALRM", SIGVTALRM}, {"SIGPROF", SIGPROF}, {"SIGWINCH", SIGWINCH},
		{"SIGIO", SIGIO}, {"SIGPWR", SIGPWR}, {"SIGSYS", SIGSYS},
	};
	lua_newtable(L);
	for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) {
		lua_pushinteger(L, sigs[i].num);
		lua_setfield(L, -2, sigs[i].name);
	}
	lua_setfield(L, -2, "signals");
}
