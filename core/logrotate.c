/*
 * logrotate.c: the dated rotation of an app's log file (log_rotate, or
 * compress) and what happens to the rotated files afterwards, off the
 * writer thread of logs.c and off the loop.
 *
 * The writer thread renames the live file to <stem>__YYYY-MM-DD_HH-mm-ss<ext>
 * (pm2-logrotate's names: "app-out__2026-12-06_00-00-00.log"; "_N" is
 * added when that name is taken) at a line boundary, and opens a new one.
 * One more thread, started on the first rotation, then gzips the rotated
 * file when compress is set (zlib: <name>.gz written as <name>.gz.tmp and
 * renamed, the plain file removed after) and keeps the newest `retain`
 * rotated files of the stem, compressed or not (the others are removed).
 * Its queue is bounded: when MAX_JOBS files wait, a rotation's file is
 * kept plain (the writer thread never does that work), and the stem's next
 * job gzips it: a compress job gzips every plain rotated file it keeps
 * (one a full queue or a daemon's end left).
 * Only names pm gives count (the stamp's exact shape), only regular files,
 * and at most MAX_KEYS of them: a folder the app's user owns may hold
 * anything. A file of an app of another user is read,
 * written, renamed and removed as core.h's pm_open_owned / pm_as_begin say.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/stat.h>
#include <zlib.h>

#include "core.h"

#define MAX_JOBS 4096 /* (a job is its two paths: about 1 MB at most) */
#define MAX_KEYS 4096      /* rotated files of one stem a prune looks at */
#define MAX_ENTRIES 100000 /* directory entries a prune reads */

typedef struct job {
	struct job *next;
	char *rotated; /* the file to gzip (NULL: prune only) */
	char *live;    /* the live file: its stem names the rotated ones */
	pm_owner_t owner;
	mode_t mode;
	int retain;
} job_t;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static job_t *head, *tail;
static int njobs, started;

/* path's folder, the base of its stem and its extension ("/d/a-out.log":
 * "/d", "a-out", ".log"); each malloc'd */
static int split_path(const char *path, char **dir, char **base, char **ext)
{
	const char *slash = strrchr(path, '/');
	const char *name = slash ? slash + 1 : path;
	const char *dot = strrchr(name, '.');
	if (!dot || dot == name)
		dot = name + strlen(name);
	*dir = slash ? strndup(path, (size_t)(slash - path + (slash == path))) : strdup(".");
	*base = strndup(name, (size_t)(dot - name));
	*ext = strdup(dot);
	if (!*dir || !*base || !*ext) {
		free(*dir);
		free(*base);
		free(*ext);
		return -1;
	}
	return 0;
}

/* The order of two rotated names of one stem (prefix: the length of
 * "<base>__"), newest first: by stamp, then by the "_N" a stamp taken
 * already got, as a number (by text, "_10" came before "_2": past ten
 * rotations in a second, the newest were the ones removed) */
static long stamp_seq(const char *s)
{
	return *s == '_' ? strtol(s + 1, NULL, 10) : 0;
}

static int cmp_desc(const void *a, const void *b, void *arg)
{
	size_t prefix = *(const size_t *)arg;
	const char *x = *(char *const *)a + prefix, *y = *(char *const *)b + prefix;
	size_t stamp = sizeof "YYYY-MM-DD_HH-mm-ss" - 1;
	int c = memcmp(y, x, stamp);
	if (c != 0)
		return c;
	long nx = stamp_seq(x + stamp), ny = stamp_seq(y + stamp);
	if (nx != ny)
		return ny > nx ? 1 : -1;
	return strcmp(y, x);
}

/* Whether s (the rest of a name after "<base>__") is a stamp pm writes:
 * YYYY-MM-DD_HH-mm-ss, then "_N" or nothing, then ext, then ".gz" or
 * nothing -> the length of the name without ".gz", or 0 */
static size_t stamp_len(const char *nm, size_t prefix, const char *ext)
{
	const char *s = nm + prefix;
	static const char shape[] = "dddd-dd-dd_dd-dd-dd";
	for (size_t i = 0; shape[i]; i++) {
		if (shape[i] == 'd' ? (s[i] < '0' || s[i] > '9') : s[i] != shape[i])
			return 0;
	}
	s += sizeof shape - 1;
	if (*s == '_') {
		const char *t = s + 1;
		while (*t >= '0' && *t <= '9')
			t++;
		if (t == s + 1 || t - s > 5)
			return 0;
		s = t;
	}
	size_t el = strlen(ext);
	if (strncmp(s, ext, el) != 0)
		return 0;
	s += el;
	if (*s == '\0' || strcmp(s, ".gz") == 0)
		return (size_t)(s - nm);
	return 0;
}

/* rotated -> rotated.gz (through rotated.gz.tmp), then rotated removed */
static void gzip_file(const char *rotated, const pm_owner_t *owner, mode_t mode)
{
	char tmp[PATH_MAX], gz[PATH_MAX];
	if (snprintf(tmp, sizeof tmp, "%s.gz.tmp", rotated) >= (int)sizeof tmp)
		return;
	snprintf(gz, sizeof gz, "%s.gz", rotated);
	const char *why;
	int in = pm_open_owned(rotated, O_RDONLY, 0, owner, &why);
	if (in < 0)
		return; /* (pruned meanwhile) */
	/* What is read is the file's size now (one its writer keeps growing
	 * is not read for ever), and a sparse file is left plain: 200 GB of
	 * holes a folder's user made would keep this thread busy for hours,
	 * every app's compression behind it. */
	struct stat st;
	if (fstat(in, &st) < 0 || !S_ISREG(st.st_mode) ||
	    (st.st_size > (1 << 20) && (off_t)st.st_blocks * 512 < st.st_size / 2)) {
		close(in);
		return;
	}
	off_t left = st.st_size;
	int out = pm_open_owned(tmp, O_WRONLY | O_CREAT | O_TRUNC, mode, owner, &why);
	gzFile g = out >= 0 ? gzdopen(out, "wb") : NULL;
	if (!g) {
		if (out >= 0)
			close(out);
		close(in);
		return;
	}
	static char buf[65536]; /* (this thread's alone) */
	ssize_t r;
	int ok = 1;
	while (left > 0 && (r = read(in, buf, (size_t)left < sizeof buf ? (size_t)left : sizeof buf)) != 0) {
		if (r < 0) {
			if (errno == EINTR)
				continue;
			ok = 0;
			break;
		}
		if (gzwrite(g, buf, (unsigned)r) != (int)r) {
			ok = 0;
			break;
		}
		left -= r;
	}
	close(in);
	ok = gzclose(g) == Z_OK && ok;
	pm_creds_t c;
	if (pm_as_begin(owner, &c) < 0)
		return;
	if (ok && rename(tmp, gz) == 0)
		unlink(rotated);
	else
		unlink(tmp);
	pm_as_end(&c);
}

/* Keeps the newest `retain` (at least 1) rotated files of live's stem:
 * <base>__*<ext> and <base>__*<ext>.gz, a file and its .gz counted once.
 * With j->rotated (compress), the paths of those it keeps plain go in
 * *plain (malloc'd, *nplain of them: gzipped by the caller, once it is
 * the daemon again). Run as j's owner (pm_as_begin). */
static void prune(const job_t *j, char ***plain, size_t *nplain)
{
	const char *live = j->live;
	int retain = j->retain;
	char *dir, *base, *ext;
	if (split_path(live, &dir, &base, &ext) < 0)
		return;
	size_t blen = strlen(base);
	char **keys = NULL;
	size_t n = 0, cap = 0, seen = 0;
	DIR *d = opendir(dir);
	struct dirent *e;
	while (d && n < MAX_KEYS && seen++ < MAX_ENTRIES && (e = readdir(d))) {
		const char *nm = e->d_name;
		if (strncmp(nm, base, blen) != 0 || strncmp(nm + blen, "__", 2) != 0)
			continue;
		size_t len = stamp_len(nm, blen + 2, ext);
		if (len == 0)
			continue;
		if (e->d_type != DT_REG) {
			struct stat st;
			if (e->d_type != DT_UNKNOWN || fstatat(dirfd(d), nm, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
			    !S_ISREG(st.st_mode))
				continue;
		}
		if (n == cap) {
			size_t nc = cap ? cap * 2 : 32;
			char **nk = realloc(keys, nc * sizeof *nk);
			if (!nk)
				break;
			keys = nk;
			cap = nc;
		}
		if (!(keys[n] = strndup(nm, len)))
			break;
		n++;
	}
	if (d)
		closedir(d);
	if (retain < 1)
		retain = 1;
	size_t prefix = blen + 2;
	qsort_r(keys, n, sizeof *keys, cmp_desc, &prefix);
	/* a file and its .gz are one key: side by side once sorted */
	size_t m = 0;
	for (size_t i = 0; i < n; i++) {
		if (m > 0 && strcmp(keys[m - 1], keys[i]) == 0)
			free(keys[i]);
		else
			keys[m++] = keys[i];
	}
	n = m;
	char p[PATH_MAX];
	struct stat st;
	for (size_t i = 0; i < n; i++) {
		/* (a path cut short by the buffer names another file: skipped) */
		int fit = snprintf(p, sizeof p, "%s/%s", dir, keys[i]) < (int)sizeof p;
		if (i >= (size_t)retain) {
			if (fit)
				unlink(p);
			if (snprintf(p, sizeof p, "%s/%s.gz", dir, keys[i]) < (int)sizeof p)
				unlink(p);
		} else if (fit && j->rotated && *nplain < (size_t)retain && lstat(p, &st) == 0 && S_ISREG(st.st_mode)) {
			if (*nplain == 0)
				*plain = calloc((size_t)retain, sizeof **plain);
			if (*plain && ((*plain)[*nplain] = strdup(p)))
				(*nplain)++;
		}
		free(keys[i]);
	}
	free(keys);
	free(dir);
	free(base);
	free(ext);
}

static void run_job(job_t *j)
{
	if (j->rotated)
		gzip_file(j->rotated, &j->owner, j->mode);
	pm_creds_t c;
	char **plain = NULL;
	size_t nplain = 0;
	if (pm_as_begin(&j->owner, &c) == 0) {
		prune(j, &plain, &nplain);
		pm_as_end(&c);
	}
	for (size_t i = 0; i < nplain; i++) {
		gzip_file(plain[i], &j->owner, j->mode); /* (kept plain: see the top) */
		free(plain[i]);
	}
	free(plain);
}

static void free_job(job_t *j)
{
	free(j->rotated);
	free(j->live);
	free(j);
}

static void *worker(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&mu);
	for (;;) {
		while (!head)
			pthread_cond_wait(&cv, &mu);
		job_t *j = head;
		head = j->next;
		if (!head)
			tail = NULL;
		pthread_mutex_unlock(&mu);
		run_job(j);
		free_job(j);
		pthread_mutex_lock(&mu);
		njobs--;
	}
	return NULL;
}

/* Queues j for the worker; 0, or -1 when the queue is full (j is the
 * caller's then) */
static int queue_job(job_t *j)
{
	pthread_mutex_lock(&mu);
	if (njobs >= MAX_JOBS) {
		pthread_mutex_unlock(&mu);
		return -1;
	}
	if (!started) {
		pthread_t t;
		sigset_t all, old;
		sigfillset(&all);
		pthread_sigmask(SIG_BLOCK, &all, &old);
		int e = pthread_create(&t, NULL, worker, NULL);
		pthread_sigmask(SIG_SETMASK, &old, NULL);
		if (e != 0) {
			pthread_mutex_unlock(&mu);
			return -1;
		}
		pthread_detach(t);
		started = 1;
	}
	j->next = NULL;
	if (tail)
		tail->next = j;
	else
		head = j;
	tail = j;
	njobs++;
	pthread_cond_signal(&cv);
	pthread_mutex_unlock(&mu);
	return 0;
}

/* The last dated name of the paths rotated this second: a rotation in the
 * same second as the last one takes the number after it, never a number
 * that is free again because the oldest of that second were pruned (the
 * newest lines under the oldest name were pruned at once). An open
 * addressed table of paths (by a 64-bit hash); an entry of an earlier
 * second is free. Past LAST_SLOTS paths rotated in one second, or in the
 * daemon's first seconds (a daemon before it may have rotated the same
 * path this second), the folder is read for that second's highest
 * number instead. */
#define LAST_SLOTS 1024
#define LAST_PROBES LAST_SLOTS
static struct {
	uint64_t hash;
	char stamp[32];
	int seq;
} last_names[LAST_SLOTS];
static pthread_mutex_t last_mu = PTHREAD_MUTEX_INITIALIZER;

/* The entry of hash for stamp (made when there is none: a free one), or
 * -1; under last_mu */
static int last_slot(uint64_t h, const char *stamp)
{
	int free_slot = -1;
	for (int i = 0; i < LAST_PROBES; i++) {
		int k = (int)((h + (uint64_t)i) % LAST_SLOTS);
		int stale = strcmp(last_names[k].stamp, stamp) != 0;
		if (!stale && last_names[k].hash == h)
			return k;
		if (stale && free_slot < 0)
			free_slot = k;
	}
	if (free_slot >= 0) {
		last_names[free_slot].hash = h;
		snprintf(last_names[free_slot].stamp, sizeof last_names[free_slot].stamp, "%s", stamp);
		last_names[free_slot].seq = -1;
	}
	return free_slot;
}

/* When the process began (a daemon's first rotations read the folder) */
static time_t born;
__attribute__((constructor)) static void note_birth(void) { born = time(NULL); }

/* The highest number of <base>__<stamp>[_N]<ext>[.gz] in dir (the plain
 * name: 0), or -1: none. Read as the daemon's user, as the rename is. */
static int highest_on_disk(const char *dir, const char *base, const char *stamp, const char *ext)
{
	char prefix[PATH_MAX];
	int pl = snprintf(prefix, sizeof prefix, "%s__%s", base, stamp);
	if (pl >= (int)sizeof prefix)
		return -1;
	size_t blen = strlen(base);
	int best = -1;
	long seen = 0;
	DIR *d = opendir(dir);
	struct dirent *e;
	while (d && seen++ < MAX_ENTRIES && (e = readdir(d))) {
		/* (a name of that second, of the shape prune counts) */
		const char *nm = e->d_name;
		if (strncmp(nm, prefix, (size_t)pl) != 0 || stamp_len(nm, blen + 2, ext) == 0)
			continue;
		long k = stamp_seq(nm + pl);
		if (k > best)
			best = (int)k;
	}
	if (d)
		closedir(d);
	return best;
}

static uint64_t path_hash(const char *s)
{
	uint64_t h = 1469598103934665603ULL;
	while (*s)
		h = (h ^ (unsigned char)*s++) * 1099511628211ULL;
	return h;
}

int pm_rotate_dated(const char *path, const pm_owner_t *owner, mode_t mode, int retain, int compress)
{
	char *dir, *base, *ext;
	if (split_path(path, &dir, &base, &ext) < 0)
		return -1;
	char stamp[32];
	time_t now = time(NULL);
	struct tm tm;
	localtime_r(&now, &tm);
	strftime(stamp, sizeof stamp, "%Y-%m-%d_%H-%M-%S", &tm);
	char to[PATH_MAX], gz[PATH_MAX + 4];
	int rc = -1, first = 0, used = -1;
	uint64_t h = path_hash(path);
	pthread_mutex_lock(&last_mu);
	int slot = last_slot(h, stamp);
	int known = slot >= 0 && (last_names[slot].seq >= 0 || now - born > 2);
	if (slot >= 0)
		first = last_names[slot].seq + 1;
	pthread_mutex_unlock(&last_mu);
	pm_creds_t c;
	if (pm_as_begin(owner, &c) == 0) {
		struct stat st;
		if (!known) /* (the table cannot say: the folder does) */
			first = highest_on_disk(dir, base, stamp, ext) + 1;
		for (int i = first; i < first + 1000 && i < 10000; i++) { /* (stamp_len: 4 digits) */
			int n = i == 0 ? snprintf(to, sizeof to, "%s/%s__%s%s", dir, base, stamp, ext)
				       : snprintf(to, sizeof to, "%s/%s__%s_%d%s", dir, base, stamp, i, ext);
			if (n >= (int)sizeof to)
				break;
			snprintf(gz, sizeof gz, "%s.gz", to);
			if (lstat(to, &st) < 0 && errno == ENOENT && lstat(gz, &st) < 0 && errno == ENOENT) {
				rc = rename(path, to);
				used = i;
				break;
			}
		}
		pm_as_end(&c);
	}
	free(dir);
	free(base);
	free(ext);
	if (rc < 0)
		return -1;
	pthread_mutex_lock(&last_mu);
	slot = last_slot(h, stamp); /* (the same entry, unless this second ended meanwhile) */
	if (slot >= 0)
		last_names[slot].seq = used;
	pthread_mutex_unlock(&last_mu);
	job_t *j = calloc(1, sizeof *j);
	if (j && (j->live = strdup(path)) && (!compress || (j->rotated = strdup(to)))) {
		j->owner = *owner;
		j->mode = mode;
		j->retain = retain;
		if (queue_job(j) == 0)
			return 0;
		/* the queue is full: the file stays plain, and the next job
		 * prunes (never here: this is the writer thread of every app) */
	}
	if (j)
		free_job(j);
	return 0;
}
