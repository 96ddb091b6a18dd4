/*
 * pm-keeper.c: bin/pm-keeper, the keeper (DESIGN §11), the daemon's
 * parent: a program of its own, linked statically against libc alone
 * (musl: no Lua, no libev, no loader; its memory is its few pages). A small process
 * without Lua that holds what the apps' lives depend on while the daemon
 * may die or be replaced: it starts the daemon, keeps a duplicate of every
 * fd the daemon gives it (SCM_RIGHTS, with a short tag the daemon chose),
 * reaps what is reparented to it (a child subreaper) and records the exit
 * statuses, and when the daemon dies starts the next one at once (after a
 * backoff if the last one died young) and hands it everything it holds.
 * It decides nothing about apps: what a tag means, which app to adopt,
 * what an exit leads to are the daemon's (lua/pm/keeper.lua).
 *
 *   pm-keeper <lock fd> <keep|null> <daemon argv...>
 *   pm-keeper --resume <state fd> <lock fd> <keep|null> <daemon argv...>
 *   pm-keeper --state-format
 *
 * The first is how a daemon makes itself the keeper (core.keeper_exec:
 * the same pid, the lock it holds); the second how a keeper replaces
 * itself (pm update, "X"): it execs the new build's keeper, its state
 * (what it holds, the exits, the blob, its counters) in a memfd, every fd
 * it holds kept open across the exec, and that one reads it back. It
 * asks the new one first (--state-format: the layout it reads): one that
 * reads another state, or cannot be run, is not exec'd (this one goes on
 * as it was, and the next daemon is told why).
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
 *   X <path>          before the next daemon starts, the keeper becomes
 *                     <path> (the new build's keeper: pm update)
 * Keeper -> daemon, first, at each start:
 *   K <generation> <young deaths> <last code> <last signal> <held> <exits> <blob bytes> <keeper pid>
 *   H <id> <tag> ...  (fds attached; "h" lines: records)
 *   E <pid> <code> <signal> [<start>]   (code -1: ended by a signal; start:
 *                     the process's start time, read while it was a zombie,
 *                     when known: which process of that pid ended)
 *   B <bytes>
 *   W <text>          a warning (the keeper could not become the new build's)
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

#include <stdint.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "keeper_wire.h"

#define TAG_MAX 40
#define EXITS_MAX 8192
#define BLOB_MAX (1u << 20)

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
/* the start time (/proc's, ticks after boot) of each exit's process, 0:
 * unknown (beside exits, not in the state a next keeper resumes from) */
static unsigned long long *exit_start;
static size_t nexits, handed; /* handed: the first ones, in the last hand-over */
static char *blob;
static size_t bloblen;
static char *pkt;
static rlim_t soft_nofile;

/* The loop's counters: what a re-exec carries, beside the tables */
static struct {
	int gen, young, quick, last_code, last_sig, pending_sig;
	sigset_t old; /* the signal mask the keeper was started with (its daemons') */
} k;
static char next[PATH_MAX];        /* N: the next daemon's binary */
static char bin[PATH_MAX];         /* the daemon's binary since a N */
static char next_keeper[PATH_MAX]; /* X: the keeper to become first */
static char warning[PATH_MAX + 256]; /* W: told to the next daemon */
static const char *me = "pm-keeper";

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
		memmove(exit_start + n, exit_start + n + 1, sizeof *exit_start * (nexits - n - 1));
		nexits--;
		if (n < handed)
			handed--;
		return;
	}
	if (n > nexits)
		n = nexits;
	memmove(exits, exits + n, sizeof *exits * (nexits - n));
	memmove(exit_start, exit_start + n, sizeof *exit_start * (nexits - n));
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

/* One packet of the daemon: its lines, the fds going with its H lines.
 * Returns 1 (read), 0 (nothing now), -1 (the daemon's end is gone). */
static int on_packet(int sock, int *ready, int *quitting)
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
				snprintf(next, sizeof next, "%s", line + 2);
			} else if (op == 'X' && line[1] == ' ') {
				snprintf(next_keeper, sizeof next_keeper, "%s", line + 2);
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

/* "E <pid> <code> <signal> [<start>]": the start time says which process
 * of that pid ended (a daemon that hears late may have a new one by then) */
static int send_exit(int sock, size_t i)
{
	char line[96];
	const exit_t *e = &exits[i];
	int len = exit_start[i] ? snprintf(line, sizeof line, "E %d %d %d %llu\n", e->pid, e->code, e->sig, exit_start[i])
				: snprintf(line, sizeof line, "E %d %d %d\n", e->pid, e->code, e->sig);
	return send_pkt(sock, line, (size_t)len, NULL, 0);
}

/* What the new daemon gets first: everything held, the exits recorded */
static int hand_over(int sock)
{
	int len = snprintf(pkt, PKT_MAX, "K %d %d %d %d %zu %zu %zu %d\n", k.gen, k.young, k.last_code,
			   k.last_sig, nheld, nexits, bloblen, (int)getpid());
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
	for (size_t j = 0; j < nexits; j++)
		if (send_exit(sock, j) < 0)
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
	if (warning[0]) {
		len = snprintf(pkt, PKT_MAX, "W %s\n", warning);
		warning[0] = 0;
		if (send_pkt(sock, pkt, (size_t)len, NULL, 0) < 0)
			return -1;
	}
	return send_pkt(sock, "D\n", 2, NULL, 0);
}

/* Starts a daemon: argv as given (argv[0] replaced by next when set) with
 * its end of a new socketpair as PM_KEEPER_FD and the lock as
 * PM_KEEPER_LOCK -> pid, *sock | -1 */
static pid_t start_daemon(char **argv, int lock_fd, int *sock)
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
		sigprocmask(SIG_SETMASK, &k.old, NULL);
		struct rlimit rl;
		if (soft_nofile && getrlimit(RLIMIT_NOFILE, &rl) == 0) {
			rl.rlim_cur = soft_nofile;
			setrlimit(RLIMIT_NOFILE, &rl);
		}
		const char *file = next[0] ? next : argv[0];
		execv(file, argv);
		_exit(127);
	}
	close(sv[1]);
	*sock = sv[0];
	return pid;
}

/* ---- the state a keeper carries across its re-exec (a memfd) ----
 * A header, then nheld held_t, nexits exit_t, bloblen bytes; sum is the
 * FNV-1a of all of it (with sum 0). Read back only when every size,
 * count and held fd is what the header says. */
#define STATE_MAGIC "pmkeep1"
typedef struct {
	char magic[8];
	uint32_t held_size, exit_size, sigset_size, sum;
	uint64_t nheld, nexits, handed, bloblen, soft_nofile;
	int32_t gen, young, quick, last_code, last_sig, pending_sig;
	sigset_t old;
} state_t;

static uint32_t fnv(uint32_t h, const void *p, size_t n)
{
	const unsigned char *c = p;
	for (size_t i = 0; i < n; i++)
		h = (h ^ c[i]) * 16777619u;
	return h;
}

static int write_all(int fd, const void *p, size_t n)
{
	const char *c = p;
	while (n > 0) {
		ssize_t w = write(fd, c, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		c += w;
		n -= (size_t)w;
	}
	return 0;
}

/* -> 1 (n bytes read), 0 (fewer: the end), -1 (an error) */
static int read_all(int fd, void *p, size_t n)
{
	char *c = p;
	while (n > 0) {
		ssize_t r = read(fd, c, n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -1;
		if (r == 0)
			return 0;
		c += r;
		n -= (size_t)r;
	}
	return 1;
}

static void state_header(state_t *st)
{
	memset(st, 0, sizeof *st);
	memcpy(st->magic, STATE_MAGIC, sizeof st->magic);
	st->held_size = sizeof(held_t);
	st->exit_size = sizeof(exit_t);
	st->sigset_size = sizeof(sigset_t);
	st->nheld = nheld;
	st->nexits = nexits;
	st->handed = handed;
	st->bloblen = bloblen;
	st->soft_nofile = soft_nofile;
	st->gen = k.gen;
	st->young = k.young;
	st->quick = k.quick;
	st->last_code = k.last_code;
	st->last_sig = k.last_sig;
	st->pending_sig = k.pending_sig;
	st->old = k.old;
}

/* What --state-format prints: the state this keeper writes and reads */
static int state_format(char *buf, size_t cap)
{
	return snprintf(buf, cap, "%s %zu %zu %zu\n", STATE_MAGIC, sizeof(held_t), sizeof(exit_t), sizeof(sigset_t));
}

/* Whether the keeper at path reads the state this one writes (it is run
 * with --state-format, 2 s at most) -> NULL | why not */
static const char *speaks_state(const char *path)
{
	static char why[96];
	char want[64], got[64];
	size_t n = 0;
	state_format(want, sizeof want);
	int p[2];
	if (pipe2(p, O_CLOEXEC) < 0)
		return strerror(errno);
	pid_t pid = fork();
	if (pid < 0) {
		close(p[0]);
		close(p[1]);
		return strerror(errno);
	}
	if (pid == 0) {
		dup2(p[1], 1); /* (without CLOEXEC) */
		execl(path, path, "--state-format", (char *)NULL);
		_exit(127);
	}
	close(p[1]);
	double deadline = mono_ms() + 2000;
	for (;;) {
		double left = deadline - mono_ms();
		struct pollfd pf = {p[0], POLLIN, 0};
		if (left <= 0 || poll(&pf, 1, (int)left + 1) == 0)
			break;
		ssize_t r = read(p[0], got + n, sizeof got - 1 - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		n += (size_t)r;
		if (n == sizeof got - 1)
			break;
	}
	got[n] = 0;
	close(p[0]);
	kill(pid, SIGKILL); /* (one that has not ended by now) */
	while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
		;
	if (strcmp(got, want) == 0)
		return NULL;
	if (n == 0)
		return "it does not say which state it reads";
	snprintf(why, sizeof why, "it reads another state (%.*s)", (int)strcspn(got, "\n"), got);
	return why;
}

static void set_held_cloexec(int on)
{
	for (size_t i = 0; i < nheld; i++)
		if (held[i].fd >= 0)
			fcntl(held[i].fd, F_SETFD, on ? FD_CLOEXEC : 0);
}

/* Becomes next_keeper (pm update): the same pid, the state in a memfd,
 * the held fds and the lock open across the exec; returns only when that
 * failed (warning says why; this keeper goes on as it was) */
static void reexec(char **dargv, int lock_fd, int keep_stdio)
{
	char path[PATH_MAX];
	snprintf(path, sizeof path, "%s", next_keeper);
	next_keeper[0] = 0;
	if (access(path, X_OK) < 0) {
		snprintf(warning, sizeof warning, "the keeper stays the old build's: %s: %s", path, strerror(errno));
		return;
	}
	const char *why = speaks_state(path);
	if (why) {
		snprintf(warning, sizeof warning, "the keeper stays the old build's: %s: %s", path, why);
		return;
	}
	int fd = memfd_create("pm-keeper-state", 0); /* (without CLOEXEC: the next keeper reads it) */
	if (fd < 0) {
		snprintf(warning, sizeof warning, "the keeper stays the old build's: memfd_create: %s", strerror(errno));
		return;
	}
	state_t st;
	state_header(&st);
	uint32_t sum = fnv(2166136261u, &st, sizeof st);
	sum = fnv(sum, held, sizeof *held * nheld);
	sum = fnv(sum, exits, sizeof *exits * nexits);
	sum = fnv(sum, blob, bloblen);
	st.sum = sum;
	if (write_all(fd, &st, sizeof st) < 0 || write_all(fd, held, sizeof *held * nheld) < 0 ||
	    write_all(fd, exits, sizeof *exits * nexits) < 0 || write_all(fd, blob, bloblen) < 0 ||
	    lseek(fd, 0, SEEK_SET) != 0) {
		snprintf(warning, sizeof warning, "the keeper stays the old build's: its state: %s", strerror(errno));
		close(fd);
		return;
	}
	/* pm-keeper --resume <state> <lock> <keep|null> <daemon argv>, the
	 * daemon's binary the one N named (every later start too) */
	int n = 0;
	while (dargv[n])
		n++;
	char *argv[n + 6];
	char statebuf[16], lockbuf[16];
	snprintf(statebuf, sizeof statebuf, "%d", fd);
	snprintf(lockbuf, sizeof lockbuf, "%d", lock_fd);
	argv[0] = path;
	argv[1] = "--resume";
	argv[2] = statebuf;
	argv[3] = lockbuf;
	argv[4] = keep_stdio ? "keep" : "null";
	for (int i = 0; i < n; i++)
		argv[5 + i] = dargv[i];
	if (next[0])
		argv[5] = next;
	argv[5 + n] = NULL;
	set_held_cloexec(0);
	execv(path, argv);
	int e = errno;
	set_held_cloexec(1);
	close(fd);
	snprintf(warning, sizeof warning, "the keeper stays the old build's: %s: %s", path, strerror(e));
}

/* Reads the state a keeper left in fd -> NULL | why not (nothing taken) */
static const char *resume(int fd)
{
	state_t st;
	int r = read_all(fd, &st, sizeof st);
	if (r < 0)
		return strerror(errno);
	if (r == 0)
		return "short";
	if (memcmp(st.magic, STATE_MAGIC, sizeof st.magic) != 0)
		return "not a keeper's state";
	if (st.held_size != sizeof(held_t) || st.exit_size != sizeof(exit_t) || st.sigset_size != sizeof(sigset_t))
		return "another layout";
	if (st.nheld > held_cap || st.nexits > EXITS_MAX || st.handed > st.nexits || st.bloblen > BLOB_MAX)
		return "counts out of bounds";
	uint32_t want = st.sum;
	st.sum = 0;
	uint32_t sum = fnv(2166136261u, &st, sizeof st);
	if (read_all(fd, held, sizeof *held * st.nheld) != 1 || read_all(fd, exits, sizeof *exits * st.nexits) != 1 ||
	    read_all(fd, blob, st.bloblen) != 1)
		return "short";
	char extra;
	if (read(fd, &extra, 1) != 0)
		return "longer than it says";
	sum = fnv(sum, held, sizeof *held * st.nheld);
	sum = fnv(sum, exits, sizeof *exits * st.nexits);
	sum = fnv(sum, blob, st.bloblen);
	if (sum != want)
		return "its checksum does not match";
	for (size_t i = 0; i < st.nheld; i++) {
		held[i].tag[TAG_MAX - 1] = 0;
		if (held[i].fd >= 0 && (held[i].fd == fd || fcntl(held[i].fd, F_GETFD) < 0))
			return "a held fd is not open";
	}
	nheld = st.nheld;
	nexits = st.nexits;
	handed = st.handed;
	bloblen = st.bloblen;
	soft_nofile = st.soft_nofile;
	k.gen = st.gen;
	k.young = st.young;
	k.quick = st.quick;
	k.last_code = st.last_code;
	k.last_sig = st.last_sig;
	k.pending_sig = st.pending_sig;
	k.old = st.old;
	set_held_cloexec(1);
	return NULL;
}

static void record_exit(int sock, pid_t pid, int st, unsigned long long start)
{
	exit_t e = {pid, WIFEXITED(st) ? WEXITSTATUS(st) : -1, WIFSIGNALED(st) ? WTERMSIG(st) : 0};
	if (nexits >= EXITS_MAX) /* the oldest goes: a daemon that has not read them all for long */
		drop_exits(1, 0);
	exit_start[nexits] = start;
	exits[nexits++] = e;
	if (sock >= 0)
		send_exit(sock, nexits - 1); /* (kept until it says it has it: A) */
}

/* The start time of pid (a zombie's still), from /proc/<pid>/stat's 22nd
 * field, or 0 */
static unsigned long long proc_start(pid_t pid)
{
	char path[64], buf[1024];
	snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	ssize_t n = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = 0;
	char *s = strrchr(buf, ')'); /* (the name may hold spaces and parentheses) */
	if (!s)
		return 0;
	s++;
	for (int field = 3; field < 22 && s; field++) { /* (s: the space before field 3, the state) */
		s = strchr(s + 1, ' ');
	}
	return s ? strtoull(s + 1, NULL, 10) : 0;
}

/* The next child that ended: its pid (reaped, *st its status, *start its
 * start time read while it was a zombie), 0 when none, -1 on error */
static pid_t reap_one(int *st, unsigned long long *start)
{
	siginfo_t si;
	memset(&si, 0, sizeof si);
	if (waitid(P_ALL, 0, &si, WEXITED | WNOHANG | WNOWAIT) < 0)
		return -1;
	if (si.si_pid == 0)
		return 0;
	*start = proc_start(si.si_pid);
	pid_t pid;
	while ((pid = waitpid(si.si_pid, st, WNOHANG)) < 0 && errno == EINTR)
		;
	return pid;
}

/* A table of its own mapping: its pages count once touched, not before */
static void *table(size_t size)
{
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	return p == MAP_FAILED ? NULL : p;
}

static int usage(void)
{
	fprintf(stderr, "usage: %s [--resume <state fd>] <lock fd> <keep|null> <daemon argv...> | --state-format\n"
			"(the keeper of pm's daemon: `pm daemon` starts it)\n", me);
	return 2;
}

int main(int argc, char **argv)
{
	int state_fd = -1;
	char **a = argv + 1;
	if (argc > 0 && argv[0][0])
		me = argv[0];
	if (argc == 2 && strcmp(a[0], "--state-format") == 0) {
		char buf[64];
		int len = state_format(buf, sizeof buf);
		return write_all(1, buf, (size_t)len) < 0 ? 1 : 0;
	}
	if (argc >= 3 && strcmp(a[0], "--resume") == 0) {
		char *end;
		long v = strtol(a[1], &end, 10);
		if (*end || end == a[1] || v < 0 || v > INT_MAX)
			return usage();
		state_fd = (int)v;
		a += 2;
		argc -= 2;
	}
	if (argc < 4)
		return usage();
	char *end;
	long lv = strtol(a[0], &end, 10);
	if (*end || end == a[0] || lv < 0 || lv > INT_MAX || fcntl((int)lv, F_GETFD) < 0 ||
	    (strcmp(a[1], "keep") != 0 && strcmp(a[1], "null") != 0))
		return usage();
	int lock_fd = (int)lv;
	int keep_stdio = strcmp(a[1], "keep") == 0;
	char **dargv = a + 2;
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
	held = table(held_cap * sizeof *held);
	exits = table(EXITS_MAX * sizeof *exits);
	exit_start = table(EXITS_MAX * sizeof *exit_start);
	blob = table(BLOB_MAX);
	pkt = table(PKT_MAX);
	if (!held || !exits || !exit_start || !blob || !pkt)
		return 111;
	sigset_t mask;
	sigemptyset(&mask);
	int sigs[] = {SIGCHLD, SIGTERM, SIGINT, SIGHUP, SIGUSR2, SIGQUIT, SIGPIPE};
	for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
		sigaddset(&mask, sigs[i]);
	if (state_fd >= 0) {
		/* the keeper before this one: what it held, in fds open here */
		const char *why = resume(state_fd);
		if (why) {
			fprintf(stderr, "%s: the state in fd %d cannot be read (%s): not resumed\n", me, state_fd, why);
			return 111;
		}
		close(state_fd);
		sigprocmask(SIG_BLOCK, &mask, NULL); /* (they were: the mask crosses exec) */
	} else {
		sigprocmask(SIG_BLOCK, &mask, &k.old);
		sigdelset(&k.old, SIGCHLD); /* (children start with nothing blocked that was not) */
	}
	prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
	prctl(PR_SET_NAME, "pm keeper", 0, 0, 0);
	int sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
	if (sfd < 0)
		return 111;
	fcntl(lock_fd, F_SETFD, 0); /* every daemon shares the lock */

	int ready = 0, quitting = 0, sock = -1, st;
	double ready_at = 0, restart_at = 0;
	pid_t daemon = 0, pid;
	if (state_fd >= 0) /* what ended during the exec */
		while ((pid = waitpid(-1, &st, WNOHANG)) > 0)
			record_exit(-1, pid, st, 0);
	for (;;) {
		if (!daemon && mono_ms() >= restart_at) {
			if (next_keeper[0])
				reexec(dargv, lock_fd, keep_stdio); /* (returns when it failed) */
			daemon = start_daemon(dargv, lock_fd, &sock);
			if (daemon < 0) {
				daemon = 0;
				restart_at = mono_ms() + 1000;
			} else {
				k.gen++;
				if (next[0]) { /* later starts start it too */
					snprintf(bin, sizeof bin, "%s", next);
					dargv[0] = bin;
					next[0] = 0;
				}
				ready = quitting = 0;
				if (k.gen == 1 && !keep_stdio) {
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
				if (hand_over(sock) < 0) {
					close(sock);
					sock = -1;
				}
				if (k.pending_sig)
					kill(daemon, k.pending_sig);
				k.pending_sig = 0;
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
			int got;
			while ((got = on_packet(sock, &ready, &quitting)) > 0)
				if (ready && ready_at == 0)
					ready_at = mono_ms();
			if (got < 0) {
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
					k.pending_sig = (int)si.ssi_signo;
			}
		}
		if (!reap)
			continue;
		unsigned long long start = 0;
		while ((pid = reap_one(&st, &start)) > 0) {
			if (pid != daemon) {
				record_exit(sock, pid, st, start);
				continue;
			}
			int code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
			int sig = WIFSIGNALED(st) ? WTERMSIG(st) : 0;
			/* what it said last is read before its death counts */
			if (sock >= 0) {
				while (on_packet(sock, &ready, &quitting) > 0)
					;
				close(sock);
				sock = -1;
			}
			daemon = 0;
			k.last_code = code;
			k.last_sig = sig;
			if (quitting || (!ready && k.gen == 1 && !next[0]))
				return code >= 0 ? code : 128 + sig; /* a stop, or it never served */
			/* young: died before it served (the daemon after it is
			 * told how many in a row: Lua decides when to stop taking
			 * over); quick: died within 2 s of serving. The next one
			 * starts at once, but from the fifth such death in a row
			 * after 50 ms, doubling up to 1 s (a client waits 10 s for
			 * a daemon that holds the lock) */
			k.young = ready ? 0 : k.young + 1;
			k.quick = next[0] ? 0 : (!ready || mono_ms() - ready_at < 2000) ? k.quick + 1 : 0;
			double delay = k.quick < 5 ? 0 : 50;
			for (int i = 5; i < k.quick && delay < 1000; i++)
				delay *= 2;
			restart_at = mono_ms() + (delay > 1000 ? 1000 : delay);
			ready = 0;
			ready_at = 0;
		}
	}
}
