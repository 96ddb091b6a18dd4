/*
 * keeper.c: the keeper (DESIGN §11), the daemon's parent. A small process
 * without Lua that holds what the apps' lives depend on while the daemon
 * may die or be replaced: it starts the daemon, keeps a duplicate of every
 * fd the daemon gives it (SCM_RIGHTS, with a short tag the daemon chose),
 * reaps what is reparented to it (a child subreaper) and records the exit
 * statuses, and when the daemon dies starts the next one at once (after a
 * backoff if the last one died young) and hands it everything it holds.
 * It decides nothing about apps: what a tag means, which app to adopt,
 * what an exit leads to are the daemon's (lua/pm/keeper.lua).
 *
 * The wire is a SOCK_SEQPACKET socketpair, one text message per packet,
 * lines of "<op> <args>"; the fds of a packet go, in order, with its "H"
 * lines. Daemon -> keeper:
 *   H <id> <tag>      hold the packet's next fd as <id> (tag "-": no fd,
 *                     a record only, "h <id> <tag>")
 *   h <id> <tag>      hold a record without an fd
 *   R <id>            let go of <id> (its fd is closed)
 *   Y                 the daemon serves: a later death is a crash
 *   Q                 it is stopping for good: its exit ends the keeper
 *   N <path>          the next daemon is <path> (pm update), at once
 *   B <bytes>         append to the blob handed to the next daemon
 *   b                 empty the blob
 *   A <pid>           it has the exit of <pid> (an exit is kept, and handed
 *                     to the next daemon, until the daemon that was told
 *                     says so: one killed before it read it loses nothing)
 * Keeper -> daemon, first, at each start:
 *   K <generation> <young deaths> <last code> <last signal> <held> <exits> <blob bytes> <keeper pid>
 *   H <id> <tag> ...  (fds attached; "h" lines: records)
 *   E <pid> <code> <signal>   (code -1: ended by a signal)
 *   B <bytes>
 *   D
 * and later, live: E lines for what it reaps.
 * Its tables are allocated once, at its start; no allocation after.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stddef.h>

#include "core.h"

#define TAG_MAX 40
#define EXITS_MAX 8192
#define BLOB_MAX (1u << 20)
#define PKT_MAX 65536
#define FDS_PER_PKT 250

typedef struct {
	unsigned long long id;
	int fd; /* -1: a record only */
	char tag[TAG_MAX];
} held_t;

typedef struct {
	int pid, code, sig;
} exit_t;

static held_t *held;
static size_t nheld, held_cap;
static exit_t *exits;
static size_t nexits, handed; /* handed: the first ones, in the last hand-over */
static char *blob;
static size_t bloblen;
static char *pkt;
static rlim_t soft_nofile;

static double mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void hold(unsigned long long id, int fd, const char *tag, size_t taglen)
{
	if (nheld >= held_cap) { /* (bounded by the fd limit: not reached) */
		if (fd >= 0)
			close(fd);
		return;
	}
	held_t *h = &held[nheld++];
	h->id = id;
	h->fd = fd;
	if (taglen >= TAG_MAX)
		taglen = TAG_MAX - 1;
	memcpy(h->tag, tag, taglen);
	h->tag[taglen] = 0;
}

/* Forgets the first n exits, or the oldest one of pid when n is 0 */
static void drop_exits(size_t n, int pid)
{
	if (n == 0) {
		while (n < nexits && exits[n].pid != pid)
			n++;
		if (n == nexits)
			return;
		memmove(exits + n, exits + n + 1, sizeof *exits * (nexits - n - 1));
		nexits--;
		if (n < handed)
			handed--;
		return;
	}
	if (n > nexits)
		n = nexits;
	memmove(exits, exits + n, sizeof *exits * (nexits - n));
	nexits -= n;
	handed = handed > n ? handed - n : 0;
}

static void release(unsigned long long id)
{
	for (size_t i = 0; i < nheld; i++)
		if (held[i].id == id) {
			if (held[i].fd >= 0)
				close(held[i].fd);
			held[i] = held[--nheld];
			return;
		}
}

/* One packet and its fds (SCM_RIGHTS, at most FDS_PER_PKT), on both
 * sides of the socketpair: sendmsg / recvmsg's result, errno as they set
 * it. pkt_recvmsg's fds arrive CLOEXEC; *nfds says how many. */
static ssize_t pkt_sendmsg(int sock, const char *data, size_t len, const int *fds, int nfds, int flags)
{
	char cbuf[CMSG_SPACE(sizeof(int) * FDS_PER_PKT)];
	struct iovec iov = {(void *)data, len};
	struct msghdr m = {0};
	m.msg_iov = &iov;
	m.msg_iovlen = 1;
	if (nfds > 0) {
		memset(cbuf, 0, sizeof cbuf);
		m.msg_control = cbuf;
		m.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)nfds);
		struct cmsghdr *c = CMSG_FIRSTHDR(&m);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)nfds);
		memcpy(CMSG_DATA(c), fds, sizeof(int) * (size_t)nfds);
	}
	ssize_t n;
	do
		n = sendmsg(sock, &m, flags | MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	return n;
}

static ssize_t pkt_recvmsg(int sock, char *buf, size_t cap, int *fds, int *nfds)
{
	char cbuf[CMSG_SPACE(sizeof(int) * FDS_PER_PKT)];
	struct iovec iov = {buf, cap};
	struct msghdr m = {0};
	m.msg_iov = &iov;
	m.msg_iovlen = 1;
	m.msg_control = cbuf;
	m.msg_controllen = sizeof cbuf;
	*nfds = 0;
	ssize_t n;
	do
		n = recvmsg(sock, &m, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return n;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c))
		if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
			int k = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
			for (int i = 0; i < k && *nfds < FDS_PER_PKT; i++)
				memcpy(&fds[(*nfds)++], CMSG_DATA(c) + i * sizeof(int), sizeof(int));
		}
	return n;
}

/* One packet of the daemon: its lines, the fds going with its H lines.
 * Returns 1 (read), 0 (nothing now), -1 (the daemon's end is gone). */
static int on_packet(int sock, int *ready, int *quitting, char *next, size_t nextcap)
{
	int fds[FDS_PER_PKT], nfds, used = 0;
	ssize_t n = pkt_recvmsg(sock, pkt, PKT_MAX - 1, fds, &nfds);
	if (n < 0)
		return errno == EAGAIN ? 0 : -1;
	if (n == 0)
		return -1;
	pkt[n] = 0;
	if (pkt[0] == 'B' && n >= 2) { /* "B " + bytes */
		size_t len = (size_t)n - 2;
		if (bloblen + len <= BLOB_MAX) {
			memcpy(blob + bloblen, pkt + 2, len);
			bloblen += len;
		}
	} else {
		char *line = pkt, *end = pkt + n;
		while (line < end) {
			char *nl = memchr(line, '\n', (size_t)(end - line));
			if (!nl)
				nl = end;
			*nl = 0;
			char op = line[0];
			if ((op == 'H' || op == 'h') && line[1] == ' ') {
				char *rest;
				unsigned long long id = strtoull(line + 2, &rest, 10);
				if (*rest == ' ')
					rest++;
				int fd = -1;
				if (op == 'H' && used < nfds)
					fd = fds[used++];
				if (op == 'h' || fd >= 0)
					hold(id, fd, rest, strlen(rest));
			} else if (op == 'R' && line[1] == ' ') {
				release(strtoull(line + 2, NULL, 10));
			} else if (op == 'A' && line[1] == ' ') {
				drop_exits(0, atoi(line + 2));
			} else if (op == 'Y') {
				*ready = 1;
				drop_exits(handed, 0); /* it has those it was handed */
			} else if (op == 'Q') {
				*quitting = 1;
			} else if (op == 'N' && line[1] == ' ') {
				snprintf(next, nextcap, "%s", line + 2);
			} else if (op == 'b') {
				bloblen = 0;
			}
			line = nl + 1;
		}
	}
	for (int i = used; i < nfds; i++)
		close(fds[i]); /* (more fds than H lines: not kept) */
	return 1;
}

/* Sends one packet, waiting for room (the daemon reads its start-up
 * packets at once; one that does not within 5 s is dead or stuck) */
static int send_pkt(int sock, const char *data, size_t len, const int *fds, int nfds)
{
	for (;;) {
		if (pkt_sendmsg(sock, data, len, fds, nfds, 0) >= 0)
			return 0;
		if (errno != EAGAIN)
			return -1;
		struct pollfd p = {sock, POLLOUT, 0};
		if (poll(&p, 1, 5000) <= 0)
			return -1;
	}
}

static int send_exit(int sock, const exit_t *e)
{
	char line[64];
	int len = snprintf(line, sizeof line, "E %d %d %d\n", e->pid, e->code, e->sig);
	return send_pkt(sock, line, (size_t)len, NULL, 0);
}

/* What the new daemon gets first: everything held, the exits recorded */
static int hand_over(int sock, int gen, int young, int code, int sig)
{
	int len = snprintf(pkt, PKT_MAX, "K %d %d %d %d %zu %zu %zu %d\n", gen, young, code, sig,
			   nheld, nexits, bloblen, (int)getpid());
	if (send_pkt(sock, pkt, (size_t)len, NULL, 0) < 0)
		return -1;
	size_t i = 0;
	while (i < nheld) {
		int fds[FDS_PER_PKT], nfds = 0;
		size_t off = 0;
		while (i < nheld && nfds < FDS_PER_PKT && off + TAG_MAX + 32 < PKT_MAX) {
			held_t *h = &held[i++];
			off += (size_t)snprintf(pkt + off, PKT_MAX - off, "%c %llu %s\n",
						h->fd >= 0 ? 'H' : 'h', h->id, h->tag);
			if (h->fd >= 0)
				fds[nfds++] = h->fd;
		}
		if (send_pkt(sock, pkt, off, fds, nfds) < 0)
			return -1;
	}
	handed = nexits;
	for (size_t k = 0; k < nexits; k++)
		if (send_exit(sock, &exits[k]) < 0)
			return -1;
	for (size_t off = 0; off < bloblen;) {
		size_t len2 = bloblen - off > PKT_MAX - 2 ? PKT_MAX - 2 : bloblen - off;
		pkt[0] = 'B';
		pkt[1] = ' ';
		memcpy(pkt + 2, blob + off, len2);
		if (send_pkt(sock, pkt, len2 + 2, NULL, 0) < 0)
			return -1;
		off += len2;
	}
	return send_pkt(sock, "D\n", 2, NULL, 0);
}

/* Starts a daemon: argv as given (argv[0] replaced by next when set) with
 * its end of a new socketpair as PM_KEEPER_FD and the lock as
 * PM_KEEPER_LOCK -> pid, *sock | -1 */
static pid_t start_daemon(char **argv, const char *next, int lock_fd, const sigset_t *old, int *sock)
{
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		return -1;
	int size = 4 << 20;
	setsockopt(sv[0], SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
	setsockopt(sv[1], SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
	pid_t pid = fork();
	if (pid < 0) {
		close(sv[0]);
		close(sv[1]);
		return -1;
	}
	if (pid == 0) {
		char fdbuf[16], lockbuf[16];
		int fd = fcntl(sv[1], F_DUPFD, 3); /* (without CLOEXEC) */
		snprintf(fdbuf, sizeof fdbuf, "%d", fd);
		snprintf(lockbuf, sizeof lockbuf, "%d", lock_fd);
		setenv("PM_KEEPER_FD", fdbuf, 1);
		setenv("PM_KEEPER_LOCK", lockbuf, 1);
		for (int s = 1; s < NSIG; s++)
			if (s != SIGKILL && s != SIGSTOP)
				signal(s, SIG_DFL);
		sigprocmask(SIG_SETMASK, old, NULL);
		struct rlimit rl;
		if (soft_nofile && getrlimit(RLIMIT_NOFILE, &rl) == 0) {
			rl.rlim_cur = soft_nofile;
			setrlimit(RLIMIT_NOFILE, &rl);
		}
		const char *file = next && *next ? next : argv[0];
		execv(file, argv);
		_exit(127);
	}
	close(sv[1]);
	*sock = sv[0];
	return pid;
}

int pm_keeper_main(int argc, char **argv)
{
	/* pm --keeper <lock fd> <stdio: keep|null> <daemon argv...> */
	if (argc < 5)
		return 2;
	int lock_fd = atoi(argv[2]);
	int keep_stdio = strcmp(argv[3], "keep") == 0;
	char **dargv = argv + 4;
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
		soft_nofile = rl.rlim_cur; /* (each daemon starts from it) */
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
		getrlimit(RLIMIT_NOFILE, &rl);
		held_cap = rl.rlim_cur > (1u << 20) ? (1u << 20) : (size_t)rl.rlim_cur;
	}
	if (held_cap < 1024)
		held_cap = 1024;
	held = calloc(held_cap, sizeof *held); /* (pages touched as used) */
	exits = calloc(EXITS_MAX, sizeof *exits);
	blob = malloc(BLOB_MAX);
	pkt = malloc(PKT_MAX);
	if (!held || !exits || !blob || !pkt)
		return 111;
	prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
	prctl(PR_SET_NAME, "pm keeper", 0, 0, 0);
	sigset_t mask, old;
	sigemptyset(&mask);
	int sigs[] = {SIGCHLD, SIGTERM, SIGINT, SIGHUP, SIGUSR2, SIGQUIT, SIGPIPE};
	for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
		sigaddset(&mask, sigs[i]);
	sigprocmask(SIG_BLOCK, &mask, &old);
	sigdelset(&old, SIGCHLD); /* (children start with nothing blocked that was not) */
	int sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
	if (sfd < 0)
		return 111;
	fcntl(lock_fd, F_SETFD, 0); /* every daemon shares the lock */

	char next[PATH_MAX] = "";
	int gen = 0, young = 0, quick = 0, last_code = 0, last_sig = 0, pending_sig = 0;
	int ready = 0, quitting = 0, sock = -1;
	double ready_at = 0, restart_at = 0;
	pid_t daemon = 0;
	for (;;) {
		if (!daemon && mono_ms() >= restart_at) {
			daemon = start_daemon(dargv, next, lock_fd, &old, &sock);
			if (daemon < 0) {
				daemon = 0;
				restart_at = mono_ms() + 1000;
			} else {
				gen++;
				next[0] = 0;
				ready = quitting = 0;
				if (gen == 1 && !keep_stdio) {
					/* the client that started pm waits for the end of
					 * its pipe on fd 2: only the daemon holds it now */
					int dn = open("/dev/null", O_RDWR | O_CLOEXEC);
					if (dn >= 0) {
						dup2(dn, 0);
						dup2(dn, 1);
						dup2(dn, 2);
						close(dn);
					}
				}
				if (hand_over(sock, gen, young, last_code, last_sig) < 0) {
					close(sock);
					sock = -1;
				}
				if (pending_sig)
					kill(daemon, pending_sig);
				pending_sig = 0;
			}
		}
		struct pollfd p[2] = {{sfd, POLLIN, 0}, {sock, POLLIN, 0}};
		int timeout = -1;
		if (!daemon) {
			double left = restart_at - mono_ms();
			timeout = left > 0 ? (int)left + 1 : 0;
		}
		int r = poll(p, sock >= 0 ? 2 : 1, timeout);
		if (r < 0 && errno != EINTR)
			return 111;
		if (sock >= 0 && (p[1].revents & (POLLIN | POLLHUP | POLLERR))) {
			int k;
			while ((k = on_packet(sock, &ready, &quitting, next, sizeof next)) > 0)
				if (ready && ready_at == 0)
					ready_at = mono_ms();
			if (k < 0) {
				close(sock);
				sock = -1;
			}
		}
		if (!(p[0].revents & POLLIN))
			continue;
		struct signalfd_siginfo si;
		int reap = 0;
		while (read(sfd, &si, sizeof si) == (ssize_t)sizeof si) {
			if (si.ssi_signo == SIGCHLD)
				reap = 1;
			else if (si.ssi_signo != SIGPIPE) {
				if (daemon)
					kill(daemon, (int)si.ssi_signo);
				else if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT)
					pending_sig = (int)si.ssi_signo;
			}
		}
		if (!reap)
			continue;
		int st;
		pid_t pid;
		while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
			int code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
			int sig = WIFSIGNALED(st) ? WTERMSIG(st) : 0;
			if (pid == daemon) {
				/* what it said last is read before its death counts */
				if (sock >= 0) {
					while (on_packet(sock, &ready, &quitting, next, sizeof next) > 0)
						;
					close(sock);
					sock = -1;
				}
				daemon = 0;
				last_code = code;
				last_sig = sig;
				if (quitting || (!ready && gen == 1 && !next[0]))
					return code >= 0 ? code : 128 + sig; /* a stop, or it never served */
				/* young: died before it served (the daemon after it
				 * is told how many in a row: Lua decides when to stop
				 * taking over); quick: died within 2 s of serving. The
				 * next one starts at once, but from the fifth such
				 * death in a row after 50 ms, doubling up to 1 s (a
				 * client waits 10 s for a daemon that holds the lock) */
				young = ready ? 0 : young + 1;
				quick = next[0] ? 0 : (!ready || mono_ms() - ready_at < 2000) ? quick + 1 : 0;
				double delay = quick < 5 ? 0 : 50;
				for (int i = 5; i < quick && delay < 1000; i++)
					delay *= 2;
				restart_at = mono_ms() + (delay > 1000 ? 1000 : delay);
				ready = 0;
				ready_at = 0;
				continue;
			}
			exit_t e = {pid, code, sig};
			if (nexits < EXITS_MAX)
				exits[nexits++] = e;
			else { /* the oldest goes: a daemon that has not read them all for long */
				drop_exits(1, 0);
				exits[nexits++] = e;
			}
			if (sock >= 0)
				send_exit(sock, &e); /* (kept until it says it has it: A) */
		}
	}
}

/* ---- the daemon's side: what lua/pm/keeper.lua speaks it with ---- */

/* core.keeper_exec(bin, args, lock_fd, keep_stdio) -> nil, err: this
 * process becomes the keeper (exec of bin with "--keeper"), which starts
 * bin with args as the daemon; returns only when the exec failed */
static int l_keeper_exec(lua_State *L)
{
	const char *bin = luaL_checkstring(L, 1);
	luaL_checktype(L, 2, LUA_TTABLE);
	int lock_fd = (int)luaL_checkinteger(L, 3);
	int keep = lua_toboolean(L, 4);
	int n = (int)lua_objlen(L, 2);
	char lockbuf[16];
	snprintf(lockbuf, sizeof lockbuf, "%d", lock_fd);
	const char **argv = lua_newuserdata(L, sizeof(char *) * (size_t)(n + 6));
	argv[0] = bin;
	argv[1] = "--keeper";
	argv[2] = lockbuf;
	argv[3] = keep ? "keep" : "null";
	argv[4] = bin;
	for (int i = 1; i <= n; i++) {
		lua_rawgeti(L, 2, i);
		argv[4 + i] = luaL_checkstring(L, -1);
		lua_pop(L, 1); /* (the table keeps it) */
	}
	argv[5 + n] = NULL;
	fcntl(lock_fd, F_SETFD, 0);
	fflush(stdout);
	fflush(stderr);
	execv(bin, (char **)argv);
	int e = errno;
	fcntl(lock_fd, F_SETFD, FD_CLOEXEC);
	errno = e;
	return pm_fail(L, bin);
}

/* core.sendmsg(fd, data [, fds]) -> true | nil, err ("again": the peer's
 * queue is full): one packet of a SOCK_SEQPACKET socket, with fds
 * (SCM_RIGHTS, at most 250) */
static int l_sendmsg(lua_State *L)
{
	int fd = (int)luaL_checkinteger(L, 1);
	size_t len;
	const char *data = luaL_checklstring(L, 2, &len);
	int fds[FDS_PER_PKT], nfds = 0;
	if (lua_istable(L, 3)) {
		nfds = (int)lua_objlen(L, 3);
		if (nfds > FDS_PER_PKT)
			return luaL_error(L, "sendmsg: at most %d fds", FDS_PER_PKT);
		for (int i = 0; i < nfds; i++) {
			lua_rawgeti(L, 3, i + 1);
			fds[i] = (int)luaL_checkinteger(L, -1);
			lua_pop(L, 1);
		}
	}
	ssize_t n = pkt_sendmsg(fd, data, len, fds, nfds, MSG_DONTWAIT);
	if (n < 0) {
		if (errno == EAGAIN) {
			lua_pushnil(L);
			lua_pushliteral(L, "again");
			return 2;
		}
		return pm_fail(L, "sendmsg");
	}
	lua_pushboolean(L, 1);
	return 1;
}

/* core.recvmsg(fd [, wait_ms]) -> data, fds | "" (the peer is gone) | nil,
 * err ("again": nothing now): one packet and the fds that came with it
 * (CLOEXEC); wait_ms: wait that long for one (the daemon's start) */
static int l_recvmsg(lua_State *L)
{
	int fd = (int)luaL_checkinteger(L, 1);
	int wait = (int)luaL_optinteger(L, 2, 0);
	if (wait > 0) {
		struct pollfd p = {fd, POLLIN, 0};
		int r;
		do
			r = poll(&p, 1, wait);
		while (r < 0 && errno == EINTR);
		if (r == 0) {
			lua_pushnil(L);
			lua_pushliteral(L, "timed out");
			return 2;
		}
	}
	char *buf = lua_newuserdata(L, PKT_MAX);
	int fds[FDS_PER_PKT], nfds;
	ssize_t n = pkt_recvmsg(fd, buf, PKT_MAX, fds, &nfds);
	if (n < 0) {
		if (errno == EAGAIN) {
			lua_pushnil(L);
			lua_pushliteral(L, "again");
			return 2;
		}
		return pm_fail(L, "recvmsg");
	}
	lua_pushlstring(L, buf, (size_t)n);
	lua_createtable(L, nfds, 0);
	for (int i = 0; i < nfds; i++) {
		lua_pushinteger(L, fds[i]);
		lua_rawseti(L, -2, i + 1);
	}
	return 2;
}

/* core.cloexec(fd) -> true | nil, err: fd is not given to children */
static int l_cloexec(lua_State *L)
{
	int fd = (int)luaL_checkinteger(L, 1);
	if (fcntl(fd, F_SETFD, FD_CLOEXEC) < 0)
		return pm_fail(L, "fcntl");
	lua_pushboolean(L, 1);
	return 1;
}

/* core.sockname(fd) -> "tcp", host, port | "unix", path | nil, err: the
 * address a listening socket is bound to (a held socket handed over) */
static int l_sockname(lua_State *L)
{
	int fd = (int)luaL_checkinteger(L, 1);
	struct sockaddr_storage ss;
	socklen_t len = sizeof ss;
	if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
		return pm_fail(L, "getsockname");
	char host[INET6_ADDRSTRLEN];
	if (ss.ss_family == AF_INET) {
		struct sockaddr_in *a = (struct sockaddr_in *)&ss;
		inet_ntop(AF_INET, &a->sin_addr, host, sizeof host);
		lua_pushliteral(L, "tcp");
		lua_pushstring(L, host);
		lua_pushinteger(L, ntohs(a->sin_port));
		return 3;
	}
	if (ss.ss_family == AF_INET6) {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
		inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host);
		lua_pushliteral(L, "tcp");
		lua_pushstring(L, host);
		lua_pushinteger(L, ntohs(a->sin6_port));
		return 3;
	}
	if (ss.ss_family == AF_UNIX) {
		struct sockaddr_un *a = (struct sockaddr_un *)&ss;
		size_t plen = len > offsetof(struct sockaddr_un, sun_path) ? len - offsetof(struct sockaddr_un, sun_path) : 0;
		lua_pushliteral(L, "unix");
		lua_pushlstring(L, a->sun_path, strnlen(a->sun_path, plen));
		return 2;
	}
	lua_pushnil(L);
	lua_pushliteral(L, "not an address pm binds");
	return 2;
}

void pm_open_keeper(lua_State *L)
{
	static const luaL_Reg fns[] = {
		{"keeper_exec", l_keeper_exec},
		{"sendmsg", l_sendmsg},
		{"recvmsg", l_recvmsg},
		{"cloexec", l_cloexec},
		{"sockname", l_sockname},
		{NULL, NULL},
	};
	luaL_register(L, NULL, fns);
}
