/*
 * logs.c: app output from pipe to file without passing through Lua.
 * The loop thread reads each app's pipes and frames whole lines (timestamp
 * prefix or JSON object, as Lua configured); one writer thread writes them
 * to the log files, rotating a file at a line boundary when Lua gave it a
 * size limit. A slow disk never blocks the loop: when too much is queued,
 * the loop stops reading that pipe (the app blocks on its next write) and
 * starts again once the writer caught up. A file holds whole lines only:
 * what the disk refuses (full, or the file cannot be opened) is taken back
 * to the last whole line, dropped and counted, and once a write succeeds
 * again one line "[pm] N lines (B bytes) dropped: <reason>" goes first and
 * Lua hears of it (core.on_log_dropped). A file that does not end in a
 * newline when opened (a crash in the middle of a line) gets one first.
 * A line without its newline is held at most HOLD_SECS: then it is written,
 * ended (an app that writes "errwrite" and nothing more is seen).
 * A file opened for an app of another user is opened as core.h's
 * pm_open_owned says (never through a link, with that user's ids).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <stdint.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <dirent.h>
#include <limits.h>
#include <poll.h>

#include "core.h"

#define LOGFILE_MT "pm.logfile"
#define LOGPIPE_MT "pm.logpipe"
#define READ_SIZE 65536
#define PART_MAX 65536               /* a longer line is written in pieces */
#define SINK_HIGH (768u << 10)       /* queued for one file: stop reading */
#define SINK_LOW (256u << 10)        /* ... and read again below this */
#define TOTAL_HIGH (2u << 20)        /* queued for all files */
#define TOTAL_LOW (768u << 10)
#define MAX_SINKS 4
#define HOLD_SECS 1.0                /* a line without its newline, at most */

/*
 * The log WAL: what the loop read and the writer did not write yet lives
 * in one shared memory file (memfd) that the keeper holds (DESIGN §11), so
 * that a daemon killed with SIGKILL loses none of it: the next daemon is
 * handed the same memory and replays it before it reads any pipe
 * (core.logwal_adopt). Without a keeper the same layout is anonymous
 * memory. It holds:
 *  - the ring: the writer's queue itself (each chunk's bytes, framed as
 *    they go to the file, are written there once: no copy more than
 *    before), records published by the loop (head) and marked written by
 *    the writer (tail) after write(2) returned; the record being written
 *    says the file (device, inode) and the offset where it starts;
 *  - the sinks: each file's path, owner and mode (so the replay opens it
 *    as the writer would: pm_open_owned);
 *  - the parts: the start of a line a pipe read without its end, by the
 *    keeper's id of the pipe, and the read buffer (g), where a read lands:
 *    whether the lines a read completed are in the ring or still only in
 *    the buffer is one store (a part's state: len | skip << 32, skip
 *    meaning those bytes are in the ring once head >= until).
 * Not covered: the instructions between read(2) returning and the read's
 * length being stored in g (a few). A chunk that found the ring full
 * (framing that grew a read several times, over the bound) is written
 * from ordinary memory, and an unfinished line that found no free slot is
 * held there: both are counted in the header while they are (out_lines,
 * out_parts), so that a kill then is a loss the next daemon counts and
 * says, not a silent one.
 */
#define WAL_MAGIC 0x316c61776d6c6d70ULL /* "pmlmwal1" */
#define WAL_VERSION 3
#define WAL_HDR 4096
#define SLOT_CAP (PART_MAX + READ_SIZE) /* a part a killed daemon left: at most a read */
#define WAL_G SLOT_CAP
#define RING_SIZE (4u << 20)         /* the queue's bound and a read's worth */
#define RING_MARGIN (768u << 10)     /* free at least: else the pipes wait */
#define RING_SOFT (768u << 10)
#define WAL_NSINKS 16384
#define WAL_SINK 512
/* The parts: most unfinished lines are short (a prompt, a progress bar, a
 * stdio buffer's tail), a few are long (a line of tens of KB read in
 * pieces): small slots for many pipes, big ones for a few. A part moves
 * between them (through g, which holds it meanwhile). Address space:
 * 4 KB + 128 KB + 4 MB + 8 MB + 16 MB + 8 MB, about 36 MB, touched only
 * where used (it was 268 MB with one size of slot). */
#define WAL_NSMALL 4096              /* pipes with a short unfinished line at once */
#define WAL_SMALL 4096
#define SMALL_CAP (WAL_SMALL - 64)
#define WAL_NBIG 64                  /* ... with a long one */
#define WAL_PART (SLOT_CAP + 64)
#define WAL_NPARTS (WAL_NSMALL + WAL_NBIG)
#define OFF_G WAL_HDR
#define OFF_RING (OFF_G + WAL_G)
#define OFF_SINKS (OFF_RING + RING_SIZE)
#define OFF_PARTS (OFF_SINKS + (size_t)WAL_NSINKS * WAL_SINK)
#define OFF_BIG (OFF_PARTS + (size_t)WAL_NSMALL * WAL_SMALL)
#define WAL_SIZE (OFF_BIG + (size_t)WAL_NBIG * WAL_PART)
#define OP_WRAP 9

typedef struct {
	uint64_t id;    /* the keeper's id of the pipe (0: none) */
	uint64_t state; /* len | skip << 32 */
	uint64_t until; /* skip holds once head >= until */
	uint64_t used;
} wpart_t;

typedef struct {
	uint64_t magic, version, size, ring_size, nsinks, nparts;
	uint64_t head, tail;                   /* ring positions (monotonic) */
	uint64_t w_pos, w_dev, w_ino, w_start; /* the record being written */
	uint64_t sinks_hw, parts_hw;           /* slots ever used: below these */
	wpart_t g;
	uint64_t g_canary[2]; /* where a read lands in g, before it */
	/* held outside the WAL now (lost if the daemon is killed): lines of
	 * chunks the ring had no room for, unfinished lines without a slot */
	uint64_t out_lines, out_parts;
} whdr_t;

/* g's state while a read(2) of n bytes (FIONREAD's: a pipe gives them all)
 * is under way: len | n << 32 | G_READING. The read may have been done,
 * the bytes taken from the pipe, when a SIGKILL ends the process on its
 * way out of the kernel: the canary in their place tells. */
#define G_READING (1ULL << 63)

typedef struct {
	uint32_t len, op;
	int32_t sink;
	uint32_t pad;
} wrec_t;

typedef struct {
	uint32_t used, mode;
	int64_t uid, gid;
	int32_t as_user, retain;
	int64_t max_size;              /* rotated as the writer does (replay) */
	int32_t dated, compress;
	char path[WAL_SINK - 48];
} wsink_t;

static char *wal;
static whdr_t *W;
static uint64_t head_local; /* the loop's next record (published: W->head) */
/* The sinks' entries in use (under mu): a bit each, taken lowest first,
 * so that the files that write keep using the first pages; a page above
 * the first SINK_WARM entries whose entries are all free again (after a
 * burst: every file reopened, flushed, or writing at once) is given back
 * (wal_punch), else a burst's pages stayed resident until a take-over */
#define SINK_WORDS (WAL_NSINKS / 64)
#define SINK_WARM 64
static uint64_t sink_busy[SINK_WORDS];
static uint16_t *sink_page_used; /* entries in use on each page of them */
static size_t wal_page;          /* the system's page size */
static int *part_free, npart_free; /* (the loop) small slots */
static int *big_free, nbig_free;   /* (the loop) big slots */
static int *claims, nclaims;       /* parts a previous daemon left, by id */

typedef struct sink {
	int fd;
	char *path;
	mode_t mode;
	pm_owner_t owner;
	long long size, max_size;
	int retain;
	int dated, compress;           /* rotated by date (logrotate.c), gzipped */
	int need_nl;                   /* the file does not end in a newline */
	long long drop_lines, drop_bytes; /* (the writer's) */
	int drop_errno;
	const char *drop_why;          /* a refusal (static), else drop_errno */
	int open_errno;
	const char *open_why;
	time_t retry_at;               /* next try to open after a failure */
	int open_said;                 /* that failure was told to Lua */
	size_t queued; /* under mu */
	int refs;      /* under mu */
	int regular;   /* a regular file (only those are parked: closing a
			* FIFO's or a terminal's last writer ends its reader) */
	int parked;    /* closed to keep the open files under the cap, not for
			* a failure: opened again by the writer (under mu) */
	struct sink *lru_prev, *lru_next; /* open files, newest first (under mu) */
	int in_lru;
	long long wlines, wbytes; /* written to the file (the writer; read by
				   * logfile:stats, __atomic) */
	int wslot;                /* its entry in the WAL's sinks, or -1 (under mu) */
	int wrecs;                /* its records in the ring not yet written
				   * (under mu): the entry is held while there
				   * are, so that a replay knows their file, and
				   * let go after; an idle file has none (with
				   * 10,000 apps, 20,000 entries of 512 bytes
				   * were 8 MB of the daemon's memory, and the
				   * files past the 16,384th had none) */
	uint64_t dev, ino;        /* of the open file */
	int nonblock; /* a FIFO or a terminal: written without blocking, its
		       * reader waited for at most fifo_wait_ms a write (the
		       * writer's) */
	int stuck;    /* its reader read nothing for that long: nothing is
		       * written, nor waited for, until it reads (the writer's) */
	int fifo;     /* a FIFO: what its reader read is seen (FIONREAD: the
		       * bytes in it fall); a terminal's is taken from a write
		       * that goes through */
	int fifo_q;   /* the bytes in the FIFO when it was found stuck */
} sink_t;

/* How long the writer waits for the reader of a FIFO (or a terminal) that
 * takes no more, before its lines are dropped, counted, without waiting,
 * until it reads again: one reader that stopped reading held every app's
 * log lines (one writer) and, once their pipes were full, the apps.
 * core.log_fifo_wait sets it. */
static int fifo_wait_ms = 10000;

typedef struct report { /* a drop that was said in its file, for Lua */
	struct report *next;
	long long lines, bytes; /* lines -1: the file cannot be opened now */
	char *path;
	char reason[128];
} report_t;

enum { OP_WRITE, OP_TRUNCATE, OP_REOPEN, OP_ROTATE, OP_CONFIG };

/* OP_CONFIG's data: a file's rotation settings from then on */
typedef struct {
	long long max_size;
	int retain, dated, compress;
} rconf_t;

typedef struct chunk {
	struct chunk *next;
	sink_t *sink;
	int op;
	size_t len;
	uint64_t ring_pos, ring_end; /* its record in the log WAL (end 0: none) */
	uint64_t out_lines;          /* not in the WAL: its lines (W->out_lines) */
	int wheld;                   /* its record holds its sink's WAL entry */
	char *data;                  /* in the ring, or inline */
	char inline_data[];
} chunk_t;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t work_cv = PTHREAD_COND_INITIALIZER;
static pthread_cond_t idle_cv = PTHREAD_COND_INITIALIZER;
static chunk_t *qhead, *qtail;
static size_t total_queued;
static int busy;         /* the writer holds a chunk */
static int paused_count; /* pipes waiting for the writer */
static int started;
static ev_async resume_w;
static report_t *reports; /* under mu */
/* The log files open at once are at most open_max (core.log_files_max):
 * the writer opens a file when it writes to it and closes the one used
 * longest ago; a file nobody writes to holds no fd. Under mu. */
static sink_t *lru_head, *lru_tail;
static int lru_count, open_max = 256;
static int dropped_fn = LUA_NOREF;

/* A pipe's time prefix: its strftime format ("%L" for milliseconds) and
 * the last second's text. Its own allocation, made only when a format is
 * given: most pipes have none (10,000 apps' 20,000 pipes, 2.9 MB) */
struct stamp {
	time_t sec;
	long gmtoff;
	int utc; /* the format began with "!" (as os.date's): UTC, not local time */
	char cache[128];
	char fmt[];
};

static struct stamp *stamp_new(const char *fmt)
{
	size_t n = strlen(fmt) + 1;
	struct stamp *st = malloc(sizeof *st + n);
	if (!st)
		return NULL;
	st->sec = -1;
	st->gmtoff = 0;
	st->utc = fmt[0] == '!';
	st->cache[0] = '\0';
	memcpy(st->fmt, fmt + st->utc, n - (size_t)st->utc);
	return st;
}

typedef struct logpipe {
	ev_io r;
	ev_timer held; /* runs while part holds a line without its newline */
	int fd, closed, paused;
	sink_t *sinks[MAX_SINKS];
	int nsinks;
	struct stamp *fmt; /* the time prefix (NULL: none) */
	int json, process_id;
	char *app_name, *type;
	int on_eof, tap, self;
	char *part;      /* in the WAL (ph), or malloc'ed when it had no room */
	size_t partlen;
	uint64_t id;     /* the keeper's id of the pipe (0: none) */
	wpart_t *ph;
	int claimed;     /* its part is a killed daemon's (newlines in it) */
	int outside;     /* its part has no WAL slot (counted in W->out_parts) */
	struct logpipe *next, *prev; /* every open pipe, for resume */
} logpipe_t;

static logpipe_t *pipes;

/* ---- the log WAL (see above) ---- */

static char *ring_at(uint64_t pos) { return wal + OFF_RING + pos % RING_SIZE; }
static wsink_t *wsink_at(int i) { return (wsink_t *)(wal + OFF_SINKS + (size_t)i * WAL_SINK); }
static wpart_t *wpart_at(int i)
{
	return (wpart_t *)(i < WAL_NSMALL ? wal + OFF_PARTS + (size_t)i * WAL_SMALL
					  : wal + OFF_BIG + (size_t)(i - WAL_NSMALL) * WAL_PART);
}
static int wpart_index(const wpart_t *h)
{
	const char *p = (const char *)h;
	return p < wal + OFF_BIG ? (int)((p - (wal + OFF_PARTS)) / WAL_SMALL)
				 : WAL_NSMALL + (int)((p - (wal + OFF_BIG)) / WAL_PART);
}
static size_t wpart_cap(const wpart_t *h) { return (const char *)h < wal + OFF_BIG ? SMALL_CAP : SLOT_CAP; }
static char *wpart_data(wpart_t *h) { return (char *)h + 64; }
static char *gdata(void) { return wal + OFF_G; }

/* The page of the WAL that holds entry i, counted from the sinks' first */
static size_t sink_page(int i)
{
	return (OFF_SINKS + (size_t)i * WAL_SINK) / wal_page - OFF_SINKS / wal_page;
}
#define SINK_PAGES (sink_page(WAL_NSINKS - 1) + 1)

/* The whole pages within [off, off + len) of the WAL given back: they read
 * as zeros after (a page shared with what lies around is left alone) */
static void wal_punch(size_t off, size_t len)
{
	size_t from = (off + wal_page - 1) / wal_page * wal_page, to = (off + len) / wal_page * wal_page;
	if (to > from)
		madvise(wal + from, to - from, MADV_REMOVE);
}

static void wal_free_lists(void)
{
	npart_free = nbig_free = 0;
	memset(sink_busy, 0, sizeof sink_busy);
	memset(sink_page_used, 0, sizeof *sink_page_used * SINK_PAGES);
	for (int i = 0; i < (int)W->sinks_hw && i < WAL_NSINKS; i++)
		if (wsink_at(i)->used) {
			sink_busy[i / 64] |= 1ULL << (i % 64);
			sink_page_used[sink_page(i)]++;
		}
	for (int i = WAL_NPARTS - 1; i >= 0; i--)
		if (i >= (int)W->parts_hw || !wpart_at(i)->used) {
			if (i < WAL_NSMALL)
				part_free[npart_free++] = i;
			else
				big_free[nbig_free++] = i;
		}
}

/* Maps fd (a memfd; -1: anonymous memory) as the WAL: 0, or -1 and errno */
static int wal_map(int fd)
{
	if (!wal_page) {
		long ps = sysconf(_SC_PAGESIZE);
		wal_page = ps > 0 ? (size_t)ps : 4096;
	}
	if (!sink_page_used)
		sink_page_used = calloc(SINK_PAGES, sizeof *sink_page_used);
	if (!part_free)
		part_free = malloc(sizeof(int) * WAL_NSMALL);
	if (!big_free)
		big_free = malloc(sizeof(int) * WAL_NBIG);
	if (!sink_page_used || !part_free || !big_free) {
		errno = ENOMEM;
		return -1;
	}
	void *m = mmap(NULL, WAL_SIZE, PROT_READ | PROT_WRITE,
		       MAP_SHARED | MAP_NORESERVE | (fd < 0 ? MAP_ANONYMOUS : 0), fd, 0);
	if (m == MAP_FAILED)
		return -1;
	wal = m;
	W = (whdr_t *)wal;
	return 0;
}

static void wal_init_fresh(void)
{
	W->version = WAL_VERSION;
	W->size = WAL_SIZE;
	W->ring_size = RING_SIZE;
	W->nsinks = WAL_NSINKS;
	W->nparts = WAL_NPARTS;
	__atomic_store_n(&W->magic, WAL_MAGIC, __ATOMIC_RELEASE);
	head_local = 0;
	wal_free_lists();
}

/* The WAL exists (anonymous memory unless core.logwal_create came first) */
static int wal_ready(void)
{
	if (W)
		return 1;
	if (wal_map(-1) < 0)
		return 0;
	wal_init_fresh();
	return 1;
}

/* (under mu) an entry for s in the WAL's sinks, or -1 */
static int wsink_alloc(const sink_t *s)
{
	size_t n = strlen(s->path);
	if (!W || n >= sizeof ((wsink_t *)0)->path)
		return -1;
	int i = -1;
	for (int w = 0; w < SINK_WORDS; w++)
		if (~sink_busy[w]) {
			i = w * 64 + __builtin_ctzll(~sink_busy[w]);
			break;
		}
	if (i < 0)
		return -1;
	sink_busy[i / 64] |= 1ULL << (i % 64);
	sink_page_used[sink_page(i)]++;
	wsink_t *e = wsink_at(i);
	e->mode = (uint32_t)s->mode;
	e->uid = s->owner.uid;
	e->gid = s->owner.gid;
	e->as_user = s->owner.as_user;
	e->max_size = s->max_size;
	e->retain = s->retain;
	e->dated = s->dated;
	e->compress = s->compress;
	memcpy(e->path, s->path, n + 1);
	__atomic_store_n(&e->used, 1, __ATOMIC_RELEASE);
	if ((uint64_t)i >= W->sinks_hw)
		__atomic_store_n(&W->sinks_hw, (uint64_t)i + 1, __ATOMIC_RELEASE);
	return i;
}

static void wsink_free(int i)
{
	if (i < 0)
		return;
	__atomic_store_n(&wsink_at(i)->used, 0, __ATOMIC_RELEASE);
	sink_busy[i / 64] &= ~(1ULL << (i % 64));
	size_t pg = sink_page(i);
	if (--sink_page_used[pg] == 0 && i >= SINK_WARM) {
		/* (the page's part within the entries: it may begin before the
		 * first or end after the last, and then it is left alone) */
		size_t at = (OFF_SINKS / wal_page + pg) * wal_page;
		size_t from = at > OFF_SINKS ? at : OFF_SINKS, to = at + wal_page < OFF_PARTS ? at + wal_page : OFF_PARTS;
		wal_punch(from, to - from);
	}
}

/* (under mu) one record of s less in the ring: its entry let go after
 * the last (entries are taken lowest first: the same few, and pages,
 * serve the files that are writing) */
static void wsink_release(sink_t *s)
{
	if (--s->wrecs > 0)
		return;
	wsink_free(s->wslot);
	s->wslot = -1;
}

/* (the loop) a part slot for id that holds need bytes, or NULL */
static wpart_t *wpart_alloc(uint64_t id, size_t need)
{
	int i;
	if (!W || need > SLOT_CAP)
		return NULL;
	if (need <= SMALL_CAP && npart_free > 0)
		i = part_free[--npart_free];
	else if (nbig_free > 0)
		i = big_free[--nbig_free];
	else
		return NULL;
	wpart_t *h = wpart_at(i);
	__atomic_store_n(&h->state, 0, __ATOMIC_RELEASE);
	__atomic_store_n(&h->id, id, __ATOMIC_RELEASE);
	__atomic_store_n(&h->used, 1, __ATOMIC_RELEASE);
	if ((uint64_t)i >= W->parts_hw)
		__atomic_store_n(&W->parts_hw, (uint64_t)i + 1, __ATOMIC_RELEASE);
	return h;
}

static void wpart_free(wpart_t *h)
{
	if (!h)
		return;
	__atomic_store_n(&h->used, 0, __ATOMIC_RELEASE);
	__atomic_store_n(&h->state, 0, __ATOMIC_RELEASE);
	int i = wpart_index(h);
	if (i < WAL_NSMALL)
		part_free[npart_free++] = i;
	else
		big_free[nbig_free++] = i;
}

/* (the loop) room for a record of len bytes in the ring: its data, and
 * the chunk's positions; NULL when the ring is full */
static char *ring_alloc(chunk_t *c, int op, int sink, size_t len)
{
	if (!W)
		return NULL;
	size_t need = (sizeof(wrec_t) + len + 15) & ~(size_t)15;
	uint64_t off = head_local % RING_SIZE;
	uint64_t pad = off + need > RING_SIZE ? RING_SIZE - off : 0;
	uint64_t tail = __atomic_load_n(&W->tail, __ATOMIC_ACQUIRE);
	/* from its start again past RING_SOFT when the writer is far enough
	 * there (RING_MARGIN free after it): a writer that keeps up uses the
	 * first pages only, the daemon's memory being what the queue holds, as
	 * it was with malloc; the rest is used while the writer is behind */
	if (!pad && off + need > RING_SOFT && head_local - tail <= off && tail % RING_SIZE >= need + RING_MARGIN)
		pad = RING_SIZE - off;
	if (need > RING_SIZE || head_local + pad + need - tail > RING_SIZE)
		return NULL;
	if (pad) {
		wrec_t *w = (wrec_t *)ring_at(head_local);
		w->len = (uint32_t)pad;
		w->op = OP_WRAP;
		w->sink = -1;
		head_local += pad;
	}
	wrec_t *r = (wrec_t *)ring_at(head_local);
	r->len = (uint32_t)len;
	r->op = (uint32_t)op;
	r->sink = sink;
	c->ring_pos = head_local;
	head_local += need;
	c->ring_end = head_local;
	return (char *)(r + 1);
}

/* (the loop) the part a previous daemon left for id, taken, or NULL */
static wpart_t *wpart_claim(uint64_t id)
{
	for (int i = 0; id && i < nclaims; i++) {
		wpart_t *h = wpart_at(claims[i]);
		if (h->id == id) {
			claims[i] = claims[--nclaims];
			return h;
		}
	}
	return NULL;
}

/* The part a header says: its bytes at *skip, *len of them */
static void wpart_read(wpart_t *h, size_t *skip, size_t *len)
{
	uint64_t st = __atomic_load_n(&h->state, __ATOMIC_ACQUIRE);
	uint64_t until = __atomic_load_n(&h->until, __ATOMIC_ACQUIRE);
	size_t all = (size_t)(st & 0xffffffffu), sk = (size_t)(st >> 32);
	if (st & G_READING) { /* (g: a read was under way) */
		size_t req = (size_t)((st & ~G_READING) >> 32), k = req < 16 ? req : 16;
		if (all + req <= SLOT_CAP && memcmp(gdata() + all, W->g_canary, k) != 0)
			all += req; /* it came: it took the place of the canary */
		sk = 0;
	}
	if (sk > all || sk == 0 || __atomic_load_n(&W->head, __ATOMIC_ACQUIRE) < until)
		sk = 0;
	*skip = sk;
	*len = all - sk;
}

/* ---- the writer thread ---- */

static void lru_unlink(sink_t *s)
{
	if (!s->in_lru)
		return;
	if (s->lru_prev)
		s->lru_prev->lru_next = s->lru_next;
	else
		lru_head = s->lru_next;
	if (s->lru_next)
		s->lru_next->lru_prev = s->lru_prev;
	else
		lru_tail = s->lru_prev;
	s->lru_prev = s->lru_next = NULL;
	s->in_lru = 0;
	lru_count--;
}

/* (the writer, under mu, after a chunk of s): s is the newest open file,
 * and the oldest ones over the cap are closed (parked) */
static void lru_touch(sink_t *s)
{
	lru_unlink(s);
	if (s->fd < 0 || !s->regular)
		return;
	s->lru_next = lru_head;
	if (lru_head)
		lru_head->lru_prev = s;
	lru_head = s;
	if (!lru_tail)
		lru_tail = s;
	s->in_lru = 1;
	lru_count++;
	while (lru_count > open_max && lru_tail && lru_tail != s) {
		sink_t *old = lru_tail;
		lru_unlink(old);
		close(old->fd);
		old->fd = -1;
		old->parked = 1;
	}
}

static void sink_unref_locked(sink_t *s)
{
	if (--s->refs > 0)
		return;
	lru_unlink(s);
	if (s->fd >= 0)
		close(s->fd);
	wsink_free(s->wslot);
	free(s->path);
	free(s);
}

static int sink_open(sink_t *s)
{
	const char *why = NULL;
	struct stat st;
	int was_stuck = s->stuck && s->fifo; /* (a reopen of it: pm reloadLogs) */
	/* read and write: the last byte says whether a line was left open
	 * (never a terminal made the daemon's controlling one). Not a FIFO
	 * of root's: opened for reading too, it would be its own reader a
	 * moment, and the reader waiting for a writer would see its end. */
	int fifo = s->owner.uid < 0 && stat(s->path, &st) == 0 && S_ISFIFO(st.st_mode);
	int fd = fifo ? -1 : pm_open_owned(s->path, O_RDWR | O_APPEND | O_CREAT | O_NOCTTY, s->mode, &s->owner, &why);
	if (s->owner.uid < 0 &&
	    (fifo || (fd < 0 ? !why && errno == EACCES : fstat(fd, &st) == 0 && !S_ISREG(st.st_mode)))) {
		/* (a FIFO or a terminal is written only, as always; the open
		 * does not wait for a FIFO's reader: without one it fails,
		 * ENXIO, and is tried again; the writes wait, in the writer) */
		if (fd >= 0)
			close(fd);
		fd = pm_open_owned(s->path, O_WRONLY | O_APPEND | O_CREAT | O_NOCTTY | O_NONBLOCK, s->mode, &s->owner,
				   &why);
		/* (left non-blocking: put_lines waits for its reader, bounded) */
		s->nonblock = fd >= 0;
		s->fifo = fd >= 0 && fstat(fd, &st) == 0 && S_ISFIFO(st.st_mode);
	} else {
		s->nonblock = s->fifo = 0;
	}
	int q;
	/* (the same FIFO, read nothing since: still stopped, not waited for
	 * again) */
	s->stuck = was_stuck && s->fifo && ioctl(fd, FIONREAD, &q) == 0 && q >= s->fifo_q;
	s->fd = fd;
	s->size = 0;
	s->need_nl = 0;
	if (fd < 0) {
		s->open_errno = errno;
		/* (ENXIO, "No such device or address", said as what it is) */
		s->open_why = why ? why : errno == ENXIO ? "a FIFO no process reads" : NULL;
		s->retry_at = time(NULL) + 1;
		return -1;
	}
	char last;
	s->regular = fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
	if (s->regular) {
		s->dev = (uint64_t)st.st_dev;
		s->ino = (uint64_t)st.st_ino;
		s->size = st.st_size;
		s->need_nl = st.st_size > 0 && pread(fd, &last, 1, st.st_size - 1) == 1 && last != '\n';
	}
	return fd;
}

static void queue_report(report_t *r)
{
	pthread_mutex_lock(&mu);
	r->next = reports;
	reports = r;
	pthread_mutex_unlock(&mu);
	ev_async_send(pm_loop, &resume_w);
}

/* sink_open in the writer: a failure is told to Lua once (lines -1) */
static void sink_reopen(sink_t *s)
{
	if (s->fd >= 0)
		close(s->fd);
	if (sink_open(s) >= 0) {
		s->open_said = 0;
		return;
	}
	report_t *r = NULL;
	if (s->open_said || !(r = calloc(1, sizeof *r)) || !(r->path = strdup(s->path))) {
		if (!s->open_said)
			free(r);
		return;
	}
	char buf[128];
	snprintf(r->reason, sizeof r->reason, "%s",
		 s->open_why ? s->open_why : strerror_r(s->open_errno, buf, sizeof buf));
	r->lines = r->bytes = -1;
	s->open_said = 1;
	queue_report(r);
}

/* path moved out of the way as its owner: to path.1 .. path.<retain>, or
 * (dated) to a dated name, gzipped with compress (logrotate.c) */
static void rotate_path(const char *path, const pm_owner_t *o, mode_t mode, int retain, int dated, int compress)
{
	if (dated) {
		pm_rotate_dated(path, o, mode, retain, compress);
		return;
	}
	size_t n = strlen(path) + 24;
	char *from = malloc(n), *to = malloc(n);
	pm_creds_t c;
	if (from && to && pm_as_begin(o, &c) == 0) {
		for (int i = retain - 1; i >= 1; i--) {
			snprintf(from, n, "%s.%d", path, i);
			snprintf(to, n, "%s.%d", path, i + 1);
			rename(from, to);
		}
		snprintf(to, n, "%s.1", path);
		rename(path, to);
		pm_as_end(&c);
	}
	free(from);
	free(to);
}

static void rotate(sink_t *s)
{
	rotate_path(s->path, &s->owner, s->mode, s->retain, s->dated, s->compress);
	sink_reopen(s);
}

static long long count_lines(const char *p, size_t n)
{
	long long k = 0;
	for (const char *e = p + n; (p = memchr(p, '\n', (size_t)(e - p))); p++)
		k++;
	return k;
}

static double mono_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* A FIFO's reader stopped reading: said to Lua at once (the file itself
 * says what was dropped once it reads again) */
static void say_stuck(sink_t *s)
{
	report_t *r = calloc(1, sizeof *r);
	if (!r || !(r->path = strdup(s->path))) {
		free(r);
		return;
	}
	snprintf(r->reason, sizeof r->reason, "its reader has read nothing for %d ms",
		 __atomic_load_n(&fifo_wait_ms, __ATOMIC_RELAXED));
	r->lines = r->bytes = -1;
	queue_report(r);
}

static void drop(sink_t *s, const char *p, size_t n, int e, const char *why)
{
	s->drop_lines += count_lines(p, n);
	s->drop_bytes += (long long)n;
	s->drop_errno = e;
	s->drop_why = why;
}

/* Appends p (whole lines) to s's file. When the disk refuses part of it,
 * what was written after the last whole line is taken back (or, where it
 * cannot be, the next write starts a new line): returns how many bytes are
 * in the file, always the end of a line; *err is errno then. */
static size_t put_lines(sink_t *s, const char *p, size_t n, int *err)
{
	size_t done = 0;
	double until = -1; /* the end of the wait for its reader (monotonic s) */
	int wait_ms = __atomic_load_n(&fifo_wait_ms, __ATOMIC_RELAXED);
	int q0 = -1, q;      /* the bytes in a FIFO when the wait began */
	size_t since = 0;    /* and what was written to it since */
	*err = 0;
	if (s->stuck && s->fifo) {
		/* nothing is written until its reader read (a line written into
		 * what is left of its last page went through, and the reader had
		 * read nothing: it was waited for again, each write) */
		if (ioctl(s->fd, FIONREAD, &q) == 0 && q >= s->fifo_q) {
			*err = EAGAIN;
			return 0;
		}
		s->stuck = 0;
	}
	while (done < n) {
		ssize_t w = write(s->fd, p + done, n - done);
		if (w < 0) {
			int e = errno;
			if (e == EINTR)
				continue;
			int full = e == EAGAIN || e == EWOULDBLOCK;
			double now = mono_s();
			if (full && s->nonblock && !s->stuck && until < 0) {
				until = now + wait_ms / 1000.0;
				if (s->fifo && ioctl(s->fd, FIONREAD, &q) == 0)
					q0 = q;
			}
			if (full && s->nonblock && !s->stuck && now < until) {
				/* its reader is behind: waited for, a while */
				struct pollfd pfd = {.fd = s->fd, .events = POLLOUT};
				int left = (int)((until - now) * 1000) + 1;
				poll(&pfd, 1, left < 100 ? left : 100);
				continue;
			}
			*err = e;
			if (full) {
				/* waited for as long as a write may: the rest is
				 * dropped; a reader that read nothing meanwhile (what
				 * is in the FIFO is what was and what was written
				 * since) is taken as stopped, one that read as slow */
				*err = EAGAIN;
				if (s->nonblock && !s->stuck &&
				    (!s->fifo || (ioctl(s->fd, FIONREAD, &q) == 0 && q0 >= 0 &&
						  (size_t)q >= (size_t)q0 + since))) {
					s->stuck = 1;
					s->fifo_q = s->fifo ? q : 0;
					say_stuck(s);
				}
			}
			break;
		}
		done += (size_t)w;
		if (q0 >= 0)
			since += (size_t)w;
	}
	if (done == n) {
		s->stuck = 0;
		s->size += (long long)n;
		__atomic_add_fetch(&s->wbytes, (long long)n, __ATOMIC_RELAXED);
		__atomic_add_fetch(&s->wlines, count_lines(p, n), __ATOMIC_RELAXED);
		return n;
	}
	size_t keep = done;
	while (keep > 0 && p[keep - 1] != '\n')
		keep--;
	struct stat st;
	if (done > keep && !(fstat(s->fd, &st) == 0 && S_ISREG(st.st_mode) &&
			     ftruncate(s->fd, st.st_size - (off_t)(done - keep)) == 0))
		s->need_nl = 1;
	s->size += (long long)keep;
	__atomic_add_fetch(&s->wbytes, (long long)keep, __ATOMIC_RELAXED);
	__atomic_add_fetch(&s->wlines, count_lines(p, keep), __ATOMIC_RELAXED);
	return keep;
}

/* Says the drop in the file first, and queues it for Lua: 0, or the errno
 * that kept it from the file (then it is said with the next write) */
static int say_dropped(sink_t *s)
{
	report_t *r = calloc(1, sizeof *r);
	if (r && !(r->path = strdup(s->path))) {
		free(r);
		r = NULL;
	}
	if (!r)
		return ENOMEM;
	char buf[128];
	snprintf(r->reason, sizeof r->reason, "%s",
		 s->drop_why ? s->drop_why : strerror_r(s->drop_errno, buf, sizeof buf));
	char line[256];
	int n = snprintf(line, sizeof line, "[pm] %lld lines (%lld bytes) dropped: %s\n", s->drop_lines,
			 s->drop_bytes, r->reason);
	int err;
	if (put_lines(s, line, (size_t)n, &err) < (size_t)n) {
		free(r->path);
		free(r);
		return err ? err : EIO;
	}
	r->lines = s->drop_lines;
	r->bytes = s->drop_bytes;
	s->drop_lines = s->drop_bytes = 0;
	queue_report(r);
	return 0;
}

static void write_chunk(chunk_t *c)
{
	sink_t *s = c->sink;
	if (s->parked) { /* closed under the cap: opened again, by its path */
		s->parked = 0;
		sink_reopen(s);
	}
	if (c->op == OP_TRUNCATE) {
		if (s->fd >= 0 && ftruncate(s->fd, 0) == 0) {
			s->size = 0;
			s->need_nl = 0;
		}
		return;
	}
	if (c->op == OP_REOPEN) {
		sink_reopen(s);
		return;
	}
	if (c->op == OP_ROTATE) { /* (an empty file is left as it is; a FIFO or a terminal too) */
		if (s->dated && s->fd >= 0 && s->size > 0 && s->regular)
			rotate(s);
		return;
	}
	if (c->op == OP_CONFIG) { /* (the writer's fields: set in turn, by the writer) */
		rconf_t k;
		memcpy(&k, c->data, sizeof k);
		s->max_size = k.max_size;
		s->retain = k.retain;
		s->dated = k.dated;
		s->compress = k.compress;
		return;
	}
	if (s->fd < 0 && time(NULL) >= s->retry_at)
		sink_reopen(s); /* a file that could not be opened (after a rotation,
			       * or the app's user put something in the way):
			       * tried again once a second */
	if (s->fd >= 0 && s->regular && s->max_size > 0 && s->size > 0 && s->size + (long long)c->len > s->max_size)
		rotate(s); /* (a FIFO is never moved away: its reader would lose it) */
	if (s->fd < 0) {
		drop(s, c->data, c->len, s->open_errno, s->open_why);
		return;
	}
	int err = 0;
	if (s->need_nl && put_lines(s, "\n", 1, &err) == 1)
		s->need_nl = 0;
	if (!err && s->drop_bytes > 0)
		err = say_dropped(s);
	if (!err && c->ring_end && s->regular) { /* where it starts, for a replay */
		W->w_dev = s->dev;
		W->w_ino = s->ino;
		W->w_start = (uint64_t)s->size;
		__atomic_store_n(&W->w_pos, c->ring_pos, __ATOMIC_RELEASE);
	}
	size_t kept = err ? 0 : put_lines(s, c->data, c->len, &err);
	if (kept < c->len)
		drop(s, c->data + kept, c->len - kept, err,
		     err == EAGAIN && s->nonblock ? "its reader is not reading" : NULL);
}

static void *writer(void *arg)
{
	(void)arg;
	sigset_t all;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, NULL); /* signals are the loop's */
	pthread_mutex_lock(&mu);
	for (;;) {
		while (!qhead) {
			busy = 0;
			pthread_cond_broadcast(&idle_cv);
			pthread_cond_wait(&work_cv, &mu);
		}
		chunk_t *c = qhead;
		qhead = c->next;
		if (!qhead)
			qtail = NULL;
		busy = 1;
		pthread_mutex_unlock(&mu);
		write_chunk(c);
		if (c->ring_end) /* written: a replay leaves it */
			__atomic_store_n(&W->tail, c->ring_end, __ATOMIC_RELEASE);
		else if (c->out_lines)
			__atomic_sub_fetch(&W->out_lines, c->out_lines, __ATOMIC_RELEASE);
		pthread_mutex_lock(&mu);
		if (c->wheld) /* (after the tail passed its record) */
			wsink_release(c->sink);
		lru_touch(c->sink);
		c->sink->queued -= c->len;
		total_queued -= c->len;
		if (paused_count > 0 && (c->sink->queued < SINK_LOW || total_queued < TOTAL_LOW))
			ev_async_send(pm_loop, &resume_w);
		sink_unref_locked(c->sink);
		free(c);
	}
	return NULL;
}

static chunk_t *pend_head, *pend_tail; /* (the loop) until commit */

/* A chunk for s: its bytes in the ring (unpublished until commit) */
static void enqueue(sink_t *s, int op, const char *data, size_t len)
{
	chunk_t *c = malloc(sizeof *c);
	if (!c)
		return;
	c->next = NULL;
	c->sink = s;
	c->op = op;
	c->len = len;
	c->ring_end = 0;
	c->out_lines = 0;
	/* its file's WAL entry, made when it is first needed (a replay
	 * reopens and rotates nothing: those records name no file) */
	int slot = -1;
	if (W && op != OP_REOPEN && op != OP_ROTATE && op != OP_CONFIG) {
		pthread_mutex_lock(&mu);
		if (s->wslot < 0)
			s->wslot = wsink_alloc(s);
		if ((slot = s->wslot) >= 0)
			s->wrecs++;
		pthread_mutex_unlock(&mu);
	}
	c->data = ring_alloc(c, op, slot, len);
	c->wheld = c->data && slot >= 0;
	if (!c->data && slot >= 0) {
		pthread_mutex_lock(&mu);
		wsink_release(s);
		pthread_mutex_unlock(&mu);
	}
	if (!c->data) {
		chunk_t *big = realloc(c, sizeof *c + len);
		if (!big) {
			free(c);
			return;
		}
		c = big;
		c->data = c->inline_data;
		/* (a chunk the ring had no room for: its lines are counted as
		 * outside the WAL until written, so that a kill meanwhile is a
		 * counted loss; W (the WAL) exists: ring_alloc said no) */
		c->out_lines = W && op == OP_WRITE ? (uint64_t)count_lines(data, len) : 0;
	}
	if (len)
		memcpy(c->data, data, len);
	if (pend_tail)
		pend_tail->next = c;
	else
		pend_head = c;
	pend_tail = c;
}

/* What enqueue made is published (one store: W->head), after ph's state
 * says which bytes of its part it came from, then given to the writer */
static void commit(wpart_t *ph, uint64_t state)
{
	if (ph) {
		__atomic_store_n(&ph->until, head_local, __ATOMIC_RELEASE);
		__atomic_store_n(&ph->state, state, __ATOMIC_RELEASE);
	}
	if (W) {
		uint64_t out = 0; /* (counted before they are published: a kill
				   * in between counts lines g still holds) */
		for (chunk_t *c = pend_head; c; c = c->next)
			out += c->out_lines;
		if (out)
			__atomic_add_fetch(&W->out_lines, out, __ATOMIC_RELEASE);
		__atomic_store_n(&W->head, head_local, __ATOMIC_RELEASE);
	}
	if (!pend_head)
		return;
	pthread_mutex_lock(&mu);
	for (chunk_t *c = pend_head; c; c = c->next) {
		c->sink->refs++;
		c->sink->queued += c->len;
		total_queued += c->len;
	}
	if (qtail)
		qtail->next = pend_head;
	else
		qhead = pend_head;
	qtail = pend_tail;
	pend_head = pend_tail = NULL;
	pthread_cond_signal(&work_cv);
	pthread_mutex_unlock(&mu);
}

/* ---- log files (sinks) as Lua values ---- */

typedef struct {
	sink_t *s;
} sink_ud;

static void on_resume(EV_P_ ev_async *w, int revents);

static void start_writer(void)
{
	if (started)
		return;
	started = 1;
	ev_async_init(&resume_w, on_resume);
	ev_async_start(pm_loop, &resume_w);
	ev_unref(pm_loop); /* the async watcher alone keeps no loop running */
	pthread_t t;
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	pthread_create(&t, NULL, writer, NULL);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	pthread_detach(t);
}

/* core.logfile(path [, {max_size=bytes, retain=n, mode=n, owner=, dated=, compress=, lazy=}]) -> logfile | nil, err
 * A log file appended to by the writer thread; with max_size (bytes, 0 or
 * none: never) it is rotated to path.1 .. path.<retain> at a line boundary
 * (retain is then required; below 1, path.1 alone). dated (boolean): it is
 * rotated instead to a dated name, the newest `retain` kept, each gzipped
 * with compress (logrotate.c); logfile:rotate() rotates it then too.
 * owner ({uid=, gid=, as_user=}): the file is an app's of another user,
 * opened, reopened and rotated as core.h's pm_open_owned says. lazy: not
 * opened now (a file known to be there: a take-over's), but by the writer
 * when it first writes; a failure is then said and the lines counted. */
static int l_logfile(lua_State *L)
{
	const char *path = luaL_checkstring(L, 1);
	long long max_size = 0;
	int retain = 0, mode = 0644, dated = 0, compress = 0, lazy = 0;
	pm_owner_t owner = {-1, -1, 0};
	if (lua_istable(L, 2)) {
		lua_getfield(L, 2, "owner");
		pm_owner_get(L, lua_gettop(L), &owner);
		lua_pop(L, 1);
		lua_getfield(L, 2, "max_size");
		max_size = (long long)luaL_optnumber(L, -1, 0);
		lua_getfield(L, 2, "retain");
		if (max_size > 0 && !lua_isnumber(L, -1))
			return luaL_argerror(L, 2, "retain (a number of files) expected with max_size");
		retain = (int)luaL_optinteger(L, -1, 0);
		lua_getfield(L, 2, "mode");
		mode = (int)luaL_optinteger(L, -1, 0644);
		lua_getfield(L, 2, "dated");
		dated = lua_toboolean(L, -1);
		lua_getfield(L, 2, "compress");
		compress = lua_toboolean(L, -1);
		if ((dated || compress) && retain < 1)
			return luaL_argerror(L, 2, "retain (a number of files) expected with dated");
		lua_getfield(L, 2, "lazy");
		lazy = lua_toboolean(L, -1);
		lua_pop(L, 6);
	}
	sink_t *s = calloc(1, sizeof *s);
	if (!s)
		return luaL_error(L, "out of memory");
	s->path = strdup(path);
	s->mode = (mode_t)mode;
	s->max_size = max_size;
	s->retain = retain;
	s->dated = dated || compress;
	s->compress = compress;
	s->owner = owner;
	s->refs = 1;
	s->wslot = -1;
	/* (a FIFO without its reader yet, ENXIO: the writer opens it once
	 * one reads, tried once a second, its lines meanwhile dropped and
	 * counted) */
	struct stat fst;
	if (lazy && s->path && wal_ready()) {
		s->fd = -1;
		s->parked = 1; /* (opened by the writer, by its path, when it writes) */
	} else if (!s->path || !wal_ready() ||
		   (sink_open(s) < 0 && !(s->open_errno == ENXIO && lstat(s->path, &fst) == 0 && S_ISFIFO(fst.st_mode)))) {
		int e = errno;
		const char *why = s->path ? s->open_why : NULL;
		free(s->path);
		free(s);
		errno = e;
		return pm_fail_why(L, path, why);
	}
	/* (it opens: said now; the writer opens a regular file again when
	 * it writes) */
	if (s->regular) {
		close(s->fd);
		s->fd = -1;
		s->parked = 1;
	}
	start_writer();
	sink_ud *u = lua_newuserdata(L, sizeof *u);
	u->s = s;
	luaL_getmetatable(L, LOGFILE_MT);
	lua_setmetatable(L, -2);
	return 1;
}

static sink_t *check_sink(lua_State *L, int idx)
{
	sink_ud *u = luaL_checkudata(L, idx, LOGFILE_MT);
	if (!u->s)
		luaL_argerror(L, idx, "closed log file");
	return u->s;
}

/* logfile:truncate() -> nothing: empties the file, in order with the lines
 * queued before */
static int l_logfile_truncate(lua_State *L)
{
	enqueue(check_sink(L, 1), OP_TRUNCATE, NULL, 0);
	commit(NULL, 0);
	return 0;
}

/* logfile:reopen() -> nothing: opens path again (after logrotate moved it,
 * or when it was deleted), in order with the lines queued before */
static int l_logfile_reopen(lua_State *L)
{
	enqueue(check_sink(L, 1), OP_REOPEN, NULL, 0);
	commit(NULL, 0);
	return 0;
}

/* logfile:rotate() -> nothing: a file made with dated (and not empty) is
 * rotated now, in order with the lines queued before; others are left */
static int l_logfile_rotate(lua_State *L)
{
	enqueue(check_sink(L, 1), OP_ROTATE, NULL, 0); /* (the writer looks at dated) */
	commit(NULL, 0);
	return 0;
}

/* logfile:configure({max_size=, retain=, dated=, compress=}) -> nothing:
 * its rotation from then on, as core.logfile's options say it (the writer
 * takes them in turn, after the lines before) */
static int l_logfile_configure(lua_State *L)
{
	sink_t *s = check_sink(L, 1);
	luaL_checktype(L, 2, LUA_TTABLE);
	rconf_t k;
	lua_getfield(L, 2, "max_size");
	k.max_size = (long long)luaL_optnumber(L, -1, 0);
	lua_getfield(L, 2, "retain");
	k.retain = (int)luaL_optinteger(L, -1, 0);
	lua_getfield(L, 2, "compress");
	k.compress = lua_toboolean(L, -1);
	lua_getfield(L, 2, "dated");
	k.dated = lua_toboolean(L, -1) || k.compress;
	lua_pop(L, 4);
	if ((k.max_size > 0 || k.dated) && k.retain < 1)
		return luaL_argerror(L, 2, "retain (a number of files) expected with max_size or dated");
	enqueue(s, OP_CONFIG, (const char *)&k, sizeof k);
	commit(NULL, 0);
	return 0;
}

/* core.logfile_stats(files, lines, bytes) -> nothing: for each log file
 * files[i] (a list), lines[i] and bytes[i] become what the writer has
 * written to it since it was made (whole lines: a line the disk refused is
 * not counted; a closed file: 0). One call for the thousands of files a
 * scrape of /metrics reads (metrics.lua), not one call each. */
static int l_logfile_stats(lua_State *L)
{
	luaL_checktype(L, 1, LUA_TTABLE);
	luaL_checktype(L, 2, LUA_TTABLE);
	luaL_checktype(L, 3, LUA_TTABLE);
	lua_settop(L, 3);
	luaL_getmetatable(L, LOGFILE_MT); /* 4 */
	int n = (int)lua_objlen(L, 1);
	for (int i = 1; i <= n; i++) {
		lua_rawgeti(L, 1, i);
		sink_ud *u = lua_touserdata(L, -1);
		if (!u || !lua_getmetatable(L, -1) || !lua_rawequal(L, -1, 4))
			return luaL_error(L, "logfile_stats: files[%d] is not a log file", i);
		lua_pop(L, 2);
		double lines = 0, bytes = 0;
		if (u->s) {
			lines = (double)__atomic_load_n(&u->s->wlines, __ATOMIC_RELAXED);
			bytes = (double)__atomic_load_n(&u->s->wbytes, __ATOMIC_RELAXED);
		}
		lua_pushnumber(L, lines);
		lua_rawseti(L, 2, i);
		lua_pushnumber(L, bytes);
		lua_rawseti(L, 3, i);
	}
	return 0;
}

/* logfile:close() -> nothing: the file is closed once no pipe writes to it
 * and what was queued for it is written */
static int l_logfile_close(lua_State *L)
{
	sink_ud *u = luaL_checkudata(L, 1, LOGFILE_MT);
	if (u->s) {
		pthread_mutex_lock(&mu);
		sink_unref_locked(u->s);
		pthread_mutex_unlock(&mu);
		u->s = NULL;
	}
	return 0;
}

/* ---- pipes ---- */

typedef struct {
	char *p;
	size_t len, cap;
	int oom;
} buf_t;

static void put(buf_t *b, const char *s, size_t n)
{
	if (n == 0)
		return; /* (b->p may still be NULL: no memcpy to it) */
	if (b->oom || pm_grow(&b->p, &b->cap, b->len + n) < 0) {
		b->oom = 1;
		return;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
}

/* The time prefix of now: lp->fmt through strftime (once a second), then,
 * in what it gave, "%L" replaced by the milliseconds, "%Q" by the UTC
 * offset as +HH:MM (moment's Z) and "%%" by "%" (a "%" meant literally
 * reaches here as "%%"). A "%" before any other character stays. */
static size_t stamp(logpipe_t *lp, char *out, size_t size)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	struct stamp *st = lp->fmt;
	if (ts.tv_sec != st->sec) {
		struct tm tm;
		if (st->utc)
			gmtime_r(&ts.tv_sec, &tm);
		else
			localtime_r(&ts.tv_sec, &tm);
		if (strftime(st->cache, sizeof st->cache, st->fmt, &tm) == 0)
			st->cache[0] = '\0';
		st->sec = ts.tv_sec;
		st->gmtoff = tm.tm_gmtoff;
	}
	size_t n = 0;
	for (const char *c = st->cache; *c && n + 8 < size; c++) {
		if (c[0] == '%' && c[1] == 'L') {
			n += (size_t)snprintf(out + n, size - n, "%03ld", ts.tv_nsec / 1000000);
			c++;
		} else if (c[0] == '%' && c[1] == 'Q') { /* +HH:MM, as moment's Z */
			long off = st->gmtoff;
			char sign = off < 0 ? '-' : '+';
			if (off < 0)
				off = -off;
			n += (size_t)snprintf(out + n, size - n, "%c%02ld:%02ld", sign, off / 3600, off % 3600 / 60);
			c++;
		} else if (c[0] == '%' && c[1] == '%') {
			out[n++] = '%';
			c++;
		} else {
			out[n++] = *c;
		}
	}
	out[n] = '\0';
	return n;
}

/* Length of the valid UTF-8 sequence at p, n bytes left (0: invalid: an
 * overlong form, a surrogate, past U+10FFFF, cut short) */
size_t pm_utf8_len(const unsigned char *p, size_t n)
{
	size_t len;
	unsigned int min;
	if (p[0] < 0x80) return 1;
	else if ((p[0] & 0xe0) == 0xc0) { len = 2; min = 0x80; }
	else if ((p[0] & 0xf0) == 0xe0) { len = 3; min = 0x800; }
	else if ((p[0] & 0xf8) == 0xf0) { len = 4; min = 0x10000; }
	else return 0;
	if (len > n) return 0;
	unsigned int cp = p[0] & (0x7f >> len);
	for (size_t i = 1; i < len; i++) {
		if ((p[i] & 0xc0) != 0x80) return 0;
		cp = (cp << 6) | (p[i] & 0x3f);
	}
	if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
	return len;
}

static void put_json_string(buf_t *b, const char *s, size_t n)
{
	put(b, "\"", 1);
	size_t run = 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c >= 0x80) {
			size_t l = pm_utf8_len((const unsigned char *)s + i, n - i);
			if (l > 0) {
				i += l - 1;
				continue;
			}
			put(b, s + run, i - run); /* an invalid byte: U+FFFD */
			put(b, "\xef\xbf\xbd", 3);
			run = i + 1;
			continue;
		}
		if (c >= 0x20 && c != '"' && c != '\\')
			continue;
		put(b, s + run, i - run);
		char esc[8];
		if (c == '"' || c == '\\') {
			esc[0] = '\\';
			esc[1] = (char)c;
			put(b, esc, 2);
		} else if (c == '\n' || c == '\t' || c == '\r') {
			esc[0] = '\\';
			esc[1] = c == '\n' ? 'n' : c == '\t' ? 't' : 'r';
			put(b, esc, 2);
		} else {
			snprintf(esc, sizeof esc, "\\u%04x", c);
			put(b, esc, 6);
		}
		run = i + 1;
	}
	put(b, s + run, n - run);
	put(b, "\"", 1);
}

/* Frames whole lines (each ending in '\n') into b. */
static void frame(logpipe_t *lp, buf_t *b, const char *p, size_t n)
{
	char ts[160];
	while (n > 0) {
		const char *nl = memchr(p, '\n', n);
		size_t len = nl ? (size_t)(nl - p) : n;
		size_t tl = lp->fmt ? stamp(lp, ts, sizeof ts) : 0;
		if (lp->json) {
			put(b, "{\"message\":", 11);
			put_json_string(b, p, len);
			put(b, ",\"timestamp\":", 13);
			put_json_string(b, ts, tl);
			put(b, ",\"type\":\"", 9);
			put(b, lp->type, strlen(lp->type));
			char id[48];
			int il = snprintf(id, sizeof id, "\",\"process_id\":%d,\"app_name\":", lp->process_id);
			put(b, id, (size_t)il);
			put_json_string(b, lp->app_name, strlen(lp->app_name));
			put(b, "}\n", 2);
		} else {
			put(b, ts, tl);
			if (tl)
				put(b, ": ", 2);
			put(b, p, len);
			put(b, "\n", 1);
		}
		len += nl ? 1 : 0;
		p += len;
		n -= len;
	}
}

static void tap_call(logpipe_t *lp, const char *p, size_t n)
{
	lua_State *L = pm_L;
	PM_STACK_SAVE(L);
	lua_rawgeti(L, LUA_REGISTRYINDEX, lp->tap);
	lua_pushlstring(L, p, n);
	pm_pcall(L, 1, 0);
	PM_STACK_CHECK(L);
}

/* Writes whole lines to every file of the pipe (and to the tap). */
static void emit(logpipe_t *lp, const char *p, size_t n, int add_newline)
{
	if (n == 0)
		return;
	if (lp->tap != LUA_NOREF)
		tap_call(lp, p, n);
	if (lp->nsinks == 0)
		return;
	if (!lp->fmt && !lp->json && !add_newline) {
		for (int i = 0; i < lp->nsinks; i++)
			enqueue(lp->sinks[i], OP_WRITE, p, n);
		return;
	}
	buf_t b = {0};
	frame(lp, &b, p, n);
	for (int i = 0; i < lp->nsinks && !b.oom; i++)
		enqueue(lp->sinks[i], OP_WRITE, b.p, b.len);
	free(b.p);
}

/* (the loop) what the ring can take now */
static uint64_t ring_room(void)
{
	return W ? RING_SIZE - (head_local - __atomic_load_n(&W->tail, __ATOMIC_ACQUIRE)) : RING_SIZE;
}

static int over_high(logpipe_t *lp)
{
	int high = total_queued > TOTAL_HIGH || ring_room() < RING_MARGIN;
	for (int i = 0; i < lp->nsinks && !high; i++)
		high = lp->sinks[i]->queued > SINK_HIGH;
	return high;
}

static int under_low(logpipe_t *lp)
{
	if (total_queued >= TOTAL_LOW || ring_room() < RING_MARGIN)
		return 0;
	for (int i = 0; i < lp->nsinks; i++)
		if (lp->sinks[i]->queued >= SINK_LOW)
			return 0;
	return 1;
}

static void on_resume(EV_P_ ev_async *w, int revents)
{
	(void)w;
	(void)revents;
	pthread_mutex_lock(&mu);
	for (logpipe_t *lp = pipes; lp; lp = lp->next)
		if (lp->paused && under_low(lp)) {
			lp->paused = 0;
			paused_count--;
			ev_io_start(loop, &lp->r);
		}
	report_t *r = reports, *in_order = NULL;
	reports = NULL;
	pthread_mutex_unlock(&mu);
	while (r) { /* (queued newest first) */
		report_t *next = r->next;
		r->next = in_order;
		in_order = r;
		r = next;
	}
	lua_State *L = pm_L;
	for (r = in_order; r; r = in_order) {
		in_order = r->next;
		if (dropped_fn != LUA_NOREF) {
			PM_STACK_SAVE(L);
			lua_rawgeti(L, LUA_REGISTRYINDEX, dropped_fn);
			lua_pushstring(L, r->path);
			if (r->lines < 0) {
				lua_pushnil(L);
				lua_pushnil(L);
			} else {
				lua_pushnumber(L, (lua_Number)r->lines);
				lua_pushnumber(L, (lua_Number)r->bytes);
			}
			lua_pushstring(L, r->reason);
			pm_pcall(L, 4, 0);
			PM_STACK_CHECK(L);
		}
		free(r->path);
		free(r);
	}
}

/* core.on_log_dropped(fn | nil) -> nothing: fn(path, lines, bytes, reason)
 * once a file could be written again after lines were dropped (the line
 * saying so is in the file then); fn(path, nil, nil, reason) when a file
 * could not be opened again (reopen, rotation): its lines are dropped, and
 * counted, until it can */
static int l_on_log_dropped(lua_State *L)
{
	pm_unref(L, &dropped_fn);
	if (lua_isfunction(L, 1)) {
		lua_pushvalue(L, 1);
		dropped_fn = luaL_ref(L, LUA_REGISTRYINDEX);
	}
	return 0;
}

static void logpipe_close(lua_State *L, logpipe_t *lp)
{
	if (lp->closed)
		return;
	lp->closed = 1;
	ev_io_stop(pm_loop, &lp->r);
	ev_timer_stop(pm_loop, &lp->held);
	pm_fd_forget(lp->fd); /* (the keeper holds a copy of the pipe) */
	close(lp->fd);
	lp->fd = -1;
	pthread_mutex_lock(&mu);
	if (lp->paused)
		paused_count--;
	lp->paused = 0;
	for (int i = 0; i < lp->nsinks; i++)
		sink_unref_locked(lp->sinks[i]);
	lp->nsinks = 0;
	if (lp->prev)
		lp->prev->next = lp->next;
	else if (pipes == lp)
		pipes = lp->next;
	if (lp->next)
		lp->next->prev = lp->prev;
	lp->next = lp->prev = NULL;
	pthread_mutex_unlock(&mu);
	pm_unref(L, &lp->on_eof);
	pm_unref(L, &lp->tap);
	pm_unref(L, &lp->self);
}

/* (the loop) whether lp's part is held outside the WAL (W->out_parts) */
static void part_outside(logpipe_t *lp, int outside)
{
	if (lp->outside == outside)
		return;
	lp->outside = outside;
	if (W)
		__atomic_add_fetch(&W->out_parts, outside ? 1 : (uint64_t)-1, __ATOMIC_RELEASE);
}

/* The pipe's part is now p (n bytes, not in lp->part: in g or a string):
 * in a WAL slot that holds it (said by one store), moved to another slot
 * when it outgrew its own or fits a small one again (while g holds it), or
 * in ordinary memory when no slot is free (counted: W->out_parts) */
static void part_set(logpipe_t *lp, const char *p, size_t n)
{
	wpart_t *old = lp->ph;
	char *mem = old ? NULL : lp->part;
	if (n == 0) { /* (a slot is held only while there is a part) */
		wpart_free(old);
		free(mem);
		lp->ph = NULL;
		lp->part = NULL;
		lp->partlen = 0;
		part_outside(lp, 0);
		return;
	}
	size_t cap = old ? wpart_cap(old) : 0;
	if (!old || n > cap || (cap > SMALL_CAP && n <= SMALL_CAP && npart_free > 0)) {
		wpart_t *h = wpart_alloc(lp->id, n);
		if (h) {
			lp->ph = h;
			lp->part = wpart_data(h);
		} else if (!old || n > cap) {
			lp->ph = NULL;
			lp->part = mem ? mem : malloc(SLOT_CAP);
		}
	}
	if (!lp->part) {
		n = 0;
	} else if (p != lp->part) {
		memcpy(lp->part, p, n);
	}
	lp->partlen = n;
	if (lp->ph)
		__atomic_store_n(&lp->ph->state, (uint64_t)n, __ATOMIC_RELEASE);
	if (old && old != lp->ph)
		wpart_free(old);
	if (mem && mem != lp->part)
		free(mem);
	part_outside(lp, lp->part && !lp->ph && n > 0);
}

/* The part is written now, ended with a newline */
static void emit_part(logpipe_t *lp)
{
	size_t n = lp->partlen;
	emit(lp, lp->part, n, 1);
	commit(lp->ph, (uint64_t)n | (uint64_t)n << 32);
	part_set(lp, NULL, 0);
	lp->claimed = 0;
}

/* Reads once from the pipe: 1 when something came, 0 when nothing waits,
 * -1 at its end (the pipe is then closed and on_eof called). The read
 * lands in the WAL's g after the part: from the store of its length on,
 * g is the pipe's part until what it completed is published (commit) and
 * the rest is the pipe's own part again. */
static int logpipe_pull(logpipe_t *lp)
{
	lua_State *L = pm_L;
	wpart_t *g = &W->g;
	char *buf = gdata();
	size_t have = lp->partlen;
	__atomic_store_n(&g->id, lp->id, __ATOMIC_RELEASE);
	if (have)
		memcpy(buf, lp->part, have);
	/* (a part a killed daemon left may be a whole read: what it holds is
	 * then written before anything more is read) */
	size_t room = SLOT_CAP - have;
	size_t want = room < READ_SIZE ? room : READ_SIZE;
	int avail = 0;
	if (want && ioctl(lp->fd, FIONREAD, &avail) == 0 && avail > 0) {
		if ((size_t)avail < want)
			want = (size_t)avail;
		static uint64_t nonce;
		if (!nonce)
			nonce = (uint64_t)time(NULL) * 6364136223846793005ULL + (uint64_t)getpid();
		W->g_canary[0] = ++nonce * 0x9e3779b97f4a7c15ULL;
		W->g_canary[1] = nonce ^ 0xd6e8feb86659fd93ULL;
		memcpy(buf + have, W->g_canary, want < 16 ? want : 16);
		__atomic_store_n(&g->state, (uint64_t)have | (uint64_t)want << 32 | G_READING, __ATOMIC_RELEASE);
	}
	ssize_t n = room ? read(lp->fd, buf + have, want) : 0;
	if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
		__atomic_store_n(&g->state, 0, __ATOMIC_RELEASE);
		return 0;
	}
	size_t total = have + (n > 0 ? (size_t)n : 0);
	__atomic_store_n(&g->state, (uint64_t)total, __ATOMIC_RELEASE);
	int rc = n > 0 || !room ? 1 : -1;
	PM_STACK_SAVE(L);
	lua_rawgeti(L, LUA_REGISTRYINDEX, lp->self); /* keep lp alive during callbacks */
	if (rc > 0) {
		/* (only a part a killed daemon left can hold a newline) */
		char *last = memrchr(buf + (lp->claimed ? 0 : have), '\n', total - (lp->claimed ? 0 : have));
		lp->claimed = 0;
		size_t whole = last ? (size_t)(last - buf) + 1 : 0;
		if (!last && total >= PART_MAX)
			whole = total; /* a line too long to hold: written in pieces */
		emit(lp, buf, whole, whole == total && !last);
		commit(g, (uint64_t)total | (uint64_t)whole << 32);
		part_set(lp, buf + whole, lp->closed ? 0 : total - whole);
		__atomic_store_n(&g->state, 0, __ATOMIC_RELEASE);
		if (!lp->partlen)
			ev_timer_stop(pm_loop, &lp->held);
		else if (!ev_is_active(&lp->held) && !lp->closed) {
			ev_timer_set(&lp->held, HOLD_SECS, HOLD_SECS);
			ev_timer_start(pm_loop, &lp->held);
		}
		if (!lp->closed) {
			pthread_mutex_lock(&mu);
			if (over_high(lp)) {
				lp->paused = 1;
				paused_count++;
				ev_io_stop(pm_loop, &lp->r);
			}
			pthread_mutex_unlock(&mu);
		}
	} else {
		/* end of output: the app and all it started closed the pipe */
		if (have)
			emit(lp, buf, have, 1);
		commit(g, (uint64_t)have | (uint64_t)have << 32);
		part_set(lp, NULL, 0);
		__atomic_store_n(&g->state, 0, __ATOMIC_RELEASE);
		int fn = lp->on_eof;
		uint64_t id = lp->id;
		lp->on_eof = LUA_NOREF;
		logpipe_close(L, lp);
		if (fn != LUA_NOREF) {
			lua_rawgeti(L, LUA_REGISTRYINDEX, fn);
			luaL_unref(L, LUA_REGISTRYINDEX, fn);
			if (id)
				lua_pushnumber(L, (lua_Number)id);
			else
				lua_pushnil(L);
			pm_pcall(L, 1, 0);
		}
	}
	lua_pop(L, 1);
	PM_STACK_CHECK(L);
	return rc;
}

static void logpipe_read(EV_P_ ev_io *w, int revents)
{
	(void)loop;
	(void)revents;
	logpipe_pull((logpipe_t *)w);
}

/* A line held HOLD_SECS without its newline: written now, ended (the rest
 * of it, when it comes, is a line of its own). Not while the writer is
 * behind (the timer repeats). */
static void logpipe_held(EV_P_ ev_timer *w, int revents)
{
	(void)revents;
	logpipe_t *lp = (logpipe_t *)((char *)w - offsetof(logpipe_t, held));
	if (lp->paused)
		return;
	ev_timer_stop(loop, w);
	if (lp->closed || !lp->partlen || !lp->part)
		return;
	lua_State *L = pm_L;
	PM_STACK_SAVE(L);
	lua_rawgeti(L, LUA_REGISTRYINDEX, lp->self); /* keep lp alive during the tap */
	emit_part(lp);
	lua_pop(L, 1);
	PM_STACK_CHECK(L);
}

#define CUT_READS 64

/*
 * logpipe:cut() -> true | false: the process that wrote to the pipe is
 * gone and another one will write to it (a crash loop, where the daemon
 * keeps the pipe): reads what is left now and ends a last line that has no
 * newline, so that it is never merged with the next process's output.
 * false when that cannot be done now (the writer thread is behind, or the
 * pipe is closed): the caller gives the next process a pipe of its own.
 */
static int l_logpipe_cut(lua_State *L)
{
	logpipe_t *lp = luaL_checkudata(L, 1, LOGPIPE_MT);
	/* bounded (64 reads, 4 MB: an app's 1 MB pipe is empty long before): a
	 * descendant that keeps the pipe full must not hold the daemon here */
	int rc = 1;
	/* (nothing waits: no read, which would say only EAGAIN; an end of the
	 * pipe is found by its watcher as always) */
	int avail = -1;
	if (!lp->closed && !lp->paused && ioctl(lp->fd, FIONREAD, &avail) == 0 && avail == 0)
		rc = 0;
	for (int i = 0; i < CUT_READS && rc > 0 && !lp->closed && !lp->paused; i++)
		rc = logpipe_pull(lp);
	int ok = rc == 0 && !lp->closed && !lp->paused;
	if (ok && lp->partlen) {
		ev_timer_stop(pm_loop, &lp->held);
		emit_part(lp);
	}
	lua_pushboolean(L, ok);
	return 1;
}

/*
 * core.logpipe(fd, opts, on_eof) -> logpipe. Takes ownership of fd, the
 * read end of an app's stdout or stderr, and writes what arrives, as whole
 * lines, to opts.files (logfiles). opts.time_format: a strftime format
 * whose output then has %L (milliseconds) and %Q (UTC offset, +HH:MM)
 * expanded (see stamp() and core/README.md), in UTC when it begins with "!"
 * (as os.date's), prefixed as "<time>: " to each line; opts.json =
 * {app_name=, process_id=, type=}: one JSON object per line instead (its
 * timestamp in opts.time_format, which it then needs); opts.part: the start of a first line (logpipe:detach's);
 * opts.held: the keeper's id of the pipe, which names its unfinished line
 * in the log WAL (one a killed daemon left is taken, and opts.part is
 * then ignored: core.logwal_adopt).
 * on_eof(held) is called once everything was read and queued (held:
 * opts.held, nil when none: one function serves every pipe).
 */
static int l_logpipe(lua_State *L)
{
	int fd = (int)luaL_checkinteger(L, 1);
	luaL_checktype(L, 2, LUA_TTABLE);
	luaL_checktype(L, 3, LUA_TFUNCTION);
	if (!wal_ready())
		return luaL_error(L, "cannot map the log buffer: %s", strerror(errno));
	logpipe_t *lp = lua_newuserdata(L, sizeof *lp);
	memset(lp, 0, sizeof *lp);
	lp->fd = fd;
	lp->tap = lp->on_eof = lp->self = LUA_NOREF;
	luaL_getmetatable(L, LOGPIPE_MT);
	lua_setmetatable(L, -2);
	lua_getfield(L, 2, "files");
	if (lua_istable(L, -1)) {
		int n = (int)lua_objlen(L, -1);
		for (int i = 1; i <= n && lp->nsinks < MAX_SINKS; i++) {
			lua_rawgeti(L, -1, i);
			sink_t *s = check_sink(L, lua_gettop(L));
			pthread_mutex_lock(&mu);
			s->refs++;
			pthread_mutex_unlock(&mu);
			lp->sinks[lp->nsinks++] = s;
			lua_pop(L, 1);
		}
	}
	lua_pop(L, 1);
	lua_getfield(L, 2, "time_format");
	if (lua_isstring(L, -1))
		lp->fmt = stamp_new(lua_tostring(L, -1));
	lua_pop(L, 1);
	lua_getfield(L, 2, "held"); /* the keeper's id of the pipe */
	lp->id = lua_isnumber(L, -1) && lua_tonumber(L, -1) > 0 ? (uint64_t)lua_tonumber(L, -1) : 0;
	lua_pop(L, 1);
	if (!(lp->ph = wpart_claim(lp->id))) {
		lua_getfield(L, 2, "part"); /* a line's start a previous daemon read */
		size_t plen = 0;
		const char *part = lua_tolstring(L, -1, &plen);
		if (part && plen > 0 && plen < PART_MAX)
			part_set(lp, part, plen);
		lua_pop(L, 1);
	} else { /* (its part is in the WAL: a killed daemon's, or handed over) */
		size_t skip, n;
		lp->part = wpart_data(lp->ph);
		wpart_read(lp->ph, &skip, &n);
		lp->partlen = n;
		lp->claimed = 1;
	}
	lua_getfield(L, 2, "json");
	if (lua_istable(L, -1)) {
		lp->json = 1;
		lua_getfield(L, -1, "app_name");
		lp->app_name = strdup(luaL_optstring(L, -1, ""));
		lua_getfield(L, -2, "type");
		lp->type = strdup(luaL_optstring(L, -1, "out"));
		lua_getfield(L, -3, "process_id");
		lp->process_id = (int)luaL_optinteger(L, -1, 0);
		lua_pop(L, 3);
	}
	lua_pop(L, 1);
	lua_pushvalue(L, 3);
	lp->on_eof = luaL_ref(L, LUA_REGISTRYINDEX);
	lua_pushvalue(L, -1);
	lp->self = luaL_ref(L, LUA_REGISTRYINDEX);
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	fcntl(fd, F_SETFD, FD_CLOEXEC);
	pthread_mutex_lock(&mu);
	lp->next = pipes;
	if (pipes)
		pipes->prev = lp;
	pipes = lp;
	pthread_mutex_unlock(&mu);
	ev_io_init(&lp->r, logpipe_read, fd, EV_READ);
	ev_timer_init(&lp->held, logpipe_held, HOLD_SECS, HOLD_SECS);
	if (lp->partlen) /* (opts.part: held as if read here) */
		ev_timer_start(pm_loop, &lp->held);
	ev_io_start(pm_loop, &lp->r);
	return 1;
}

/* logpipe:set_files({logfile, ...}) -> nothing: where the lines go from now
 * on (at most 4 files) */
static int l_logpipe_set_files(lua_State *L)
{
	logpipe_t *lp = luaL_checkudata(L, 1, LOGPIPE_MT);
	luaL_checktype(L, 2, LUA_TTABLE);
	sink_t *next[MAX_SINKS];
	int n = 0;
	for (int i = 1; i <= (int)lua_objlen(L, 2) && n < MAX_SINKS; i++) {
		lua_rawgeti(L, 2, i);
		next[n++] = check_sink(L, lua_gettop(L));
		lua_pop(L, 1);
	}
	if (lp->closed)
		return 0;
	pthread_mutex_lock(&mu);
	for (int i = 0; i < n; i++)
		next[i]->refs++;
	for (int i = 0; i < lp->nsinks; i++)
		sink_unref_locked(lp->sinks[i]);
	for (int i = 0; i < n; i++)
		lp->sinks[i] = next[i];
	lp->nsinks = n;
	pthread_mutex_unlock(&mu);
	return 0;
}

/* logpipe:set_tap(fn | nil) -> nothing: fn(lines) gets whole lines as they
 * arrive (unframed: no time prefix, no JSON) */
static int l_logpipe_set_tap(lua_State *L)
{
	logpipe_t *lp = luaL_checkudata(L, 1, LOGPIPE_MT);
	pm_unref(L, &lp->tap);
	if (!lp->closed && lua_isfunction(L, 2)) {
		lua_pushvalue(L, 2);
		lp->tap = luaL_ref(L, LUA_REGISTRYINDEX);
	}
	return 0;
}

/* logpipe:paused() -> bool: it waits for the log writer, which is behind
 * (what it holds is read once the writer caught up) */
static int l_logpipe_paused(lua_State *L)
{
	logpipe_t *lp = luaL_checkudata(L, 1, LOGPIPE_MT);
	lua_pushboolean(L, lp->paused);
	return 1;
}

/* logpipe:closed() -> bool: the pipe ended or was closed */
static int l_logpipe_closed(lua_State *L)
{
	logpipe_t *lp = luaL_checkudata(L, 1, LOGPIPE_MT);
	lua_pushboolean(L, lp->closed);
	return 1;
}

/* logpipe:detach() -> part, id: stops reading (the fd stays open) and gives
 * the start of a line read without its end yet (a daemon handing its pipes
 * to the next one, which is given it back: core.logpipe's opts.part) and
 * the keeper's id of the pipe (opts.held; nil: none) */
static int l_logpipe_detach(lua_State *L)
{
	logpipe_t *lp = luaL_checkudata(L, 1, LOGPIPE_MT);
	if (!lp->closed)
		ev_io_stop(pm_loop, &lp->r);
	ev_timer_stop(pm_loop, &lp->held);
	pthread_mutex_lock(&mu);
	if (lp->paused)
		paused_count--;
	lp->paused = 0; /* (never started again by the writer catching up) */
	pthread_mutex_unlock(&mu);
	lua_pushlstring(L, lp->part ? lp->part : "", lp->part ? lp->partlen : 0);
	lp->partlen = 0; /* (its WAL slot keeps it until this daemon ends: the
			  * next one takes it from there, or from part) */
	part_outside(lp, 0); /* (one outside goes in the hand-over's blob) */
	if (lp->id)
		lua_pushnumber(L, (lua_Number)lp->id);
	else
		lua_pushnil(L);
	return 2;
}

/* logpipe:close() -> nothing: stops reading; what was read is still written */
static int l_logpipe_close(lua_State *L)
{
	logpipe_close(L, luaL_checkudata(L, 1, LOGPIPE_MT));
	return 0;
}

static int l_logpipe_gc(lua_State *L)
{
	logpipe_t *lp = luaL_checkudata(L, 1, LOGPIPE_MT);
	logpipe_close(L, lp);
	if (lp->ph)
		wpart_free(lp->ph);
	else
		free(lp->part);
	lp->ph = NULL;
	part_outside(lp, 0);
	free(lp->fmt);
	free(lp->app_name);
	free(lp->type);
	lp->part = lp->app_name = lp->type = NULL;
	lp->fmt = NULL;
	return 0;
}

/* core.log_files_max([n]) -> max, open: how many log files may be open at once
 * (at least 1; the writer closes the one used longest ago); without n,
 * the cap; and how many are open now */
static int l_log_files_max(lua_State *L)
{
	pthread_mutex_lock(&mu);
	if (!lua_isnoneornil(L, 1)) {
		lua_Integer n = luaL_checkinteger(L, 1);
		open_max = n < 1 ? 1 : n > 1 << 20 ? 1 << 20 : (int)n;
	}
	int max = open_max, count = lru_count;
	pthread_mutex_unlock(&mu);
	lua_pushinteger(L, max);
	lua_pushinteger(L, count);
	return 2;
}

/* core.log_fifo_wait([ms]) -> ms: how long the writer waits for the reader
 * of a FIFO (or a terminal) that takes no more, before its lines are
 * dropped until it reads again (set when given; its bounds are the
 * daemon's, daemon.lua) */
static int l_log_fifo_wait(lua_State *L)
{
	if (!lua_isnoneornil(L, 1)) {
		lua_Integer ms = luaL_checkinteger(L, 1);
		luaL_argcheck(L, ms >= 0 && ms <= INT_MAX, 1, "ms >= 0 expected");
		__atomic_store_n(&fifo_wait_ms, (int)ms, __ATOMIC_RELAXED);
	}
	lua_pushinteger(L, __atomic_load_n(&fifo_wait_ms, __ATOMIC_RELAXED));
	return 1;
}

/* core.log_drain([timeout_ms]) -> bool: blocks until everything queued is
 * written (true) or timeout_ms (default 5000) passed (false) */
static int l_log_drain(lua_State *L)
{
	double ms = luaL_optnumber(L, 1, 5000);
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += (time_t)(ms / 1000);
	until.tv_nsec += (long)((ms - (double)(long)(ms / 1000) * 1000) * 1e6);
	if (until.tv_nsec >= 1000000000) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000;
	}
	pthread_mutex_lock(&mu);
	int rc = 0;
	while ((qhead || busy) && rc == 0)
		rc = pthread_cond_timedwait(&idle_cv, &mu, &until);
	int done = !qhead && !busy;
	pthread_mutex_unlock(&mu);
	lua_pushboolean(L, done);
	return 1;
}

/* ---- the log WAL across daemons ---- */

/* What a replay did; fail: by sink (W->sinks_hw of them, then one for
 * records whose file was not recorded) the lines it could not write */
typedef struct {
	long long lines;
	char why[96];
} rfail_t;
typedef struct {
	long long records, bytes, lost, left;
	rfail_t *fail;
	int nfail;
} replay_t;

static void replay_fail(replay_t *out, int sink, long long lines, const char *why, int err)
{
	out->lost += lines;
	int i = sink >= 0 && sink < out->nfail - 1 ? sink : out->nfail - 1;
	if (!out->fail || i < 0)
		return;
	rfail_t *f = &out->fail[i];
	f->lines += lines;
	if (!f->why[0]) {
		char buf[96];
		snprintf(f->why, sizeof f->why, "%s", why ? why : strerror_r(err, buf, sizeof buf));
	}
}

static pm_owner_t wsink_owner(const wsink_t *e)
{
	pm_owner_t o = {(long)e->uid, (long)e->gid, e->as_user};
	return o;
}

/* path opened as the writer would (pm_open_owned), a regular file only,
 * how: 'c' created if need be, 'w' not, 'r' read only: fd, or -1 with
 * *why (or errno) */
static int replay_open(const wsink_t *e, const char *path, int how, struct stat *st, const char **why)
{
	pm_owner_t o = wsink_owner(e);
	int flags = how == 'r' ? O_RDONLY : O_RDWR | O_APPEND | (how == 'c' ? O_CREAT : 0);
	int fd = pm_open_owned(path, flags | O_CLOEXEC | O_NONBLOCK | O_NOCTTY, (mode_t)e->mode, &o, why);
	if (fd >= 0 && (fstat(fd, st) < 0 || !S_ISREG(st->st_mode))) {
		close(fd); /* (a FIFO or a terminal: what was queued for it is not replayed) */
		fd = -1;
		*why = "not a regular file, not replayed";
	}
	if (fd >= 0)
		fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
	return fd;
}

/* whether fd holds p (n bytes) at off */
static int same_at(int fd, off_t off, const char *p, size_t n)
{
	char buf[16384];
	while (n > 0) {
		size_t k = n < sizeof buf ? n : sizeof buf;
		if (pread(fd, buf, k, off) != (ssize_t)k || memcmp(buf, p, k) != 0)
			return 0;
		p += k;
		off += (off_t)k;
		n -= k;
	}
	return 1;
}

static int write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

static int is_recorded(const struct stat *st)
{
	return (uint64_t)st->st_ino == W->w_ino && (uint64_t)st->st_dev == W->w_dev;
}

/* f: the very file the record was being written to (by device and inode).
 * 1: its bytes are there whole, from where it started; -1: the file is
 * shorter than that (emptied since by another than pm: copytruncate);
 * 0: not there (cut by the kill: the file is then taken back to where it
 * started, which removes only bytes that are the record's own) */
static int inflight_in(int f, const struct stat *st, const char *data, size_t len)
{
	off_t start = (off_t)W->w_start;
	if (st->st_size < start)
		return -1;
	if (st->st_size >= start + (off_t)len && same_at(f, start, data, len))
		return 1;
	if (st->st_size > start && st->st_size < start + (off_t)len &&
	    same_at(f, start, data, (size_t)(st->st_size - start)) && ftruncate(f, start) < 0) {
		/* (left as it is: the record is appended after a newline) */
	}
	return 0;
}

#define SCAN_MAX 64

/* The record being written when the kill came (W->w_*), not in the file
 * at path now: looked for in path's folder, among the regular files whose
 * name starts with path's (path.1, path-20261206, path.2026-12-06...: a
 * rotation by pm or by logrotate, copytruncate's copy): the file it was
 * written to (its inode), or a copy that holds it at the same place.
 * 1: there whole (not written again). A file gzipped since, or moved to
 * another folder, cannot be told: the record is then written again (at
 * most this one record a file, said in the log by the caller). */
static int inflight_elsewhere(const wsink_t *e, const char *path, const char *data, size_t len)
{
	const char *slash = strrchr(path, '/');
	if (!slash || !slash[1])
		return 0;
	size_t dl = (size_t)(slash - path), bl = strlen(slash + 1);
	char dir[sizeof e->path + 4];
	memcpy(dir, path, dl ? dl : 1);
	dir[dl ? dl : 1] = '\0';
	char (*names)[sizeof e->path] = malloc(SCAN_MAX * sizeof *names);
	int n = 0;
	pm_owner_t o = wsink_owner(e);
	pm_creds_t c;
	if (!names || pm_as_begin(&o, &c) < 0) {
		free(names);
		return 0;
	}
	int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NONBLOCK);
	DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
	if (!d && dfd >= 0)
		close(dfd);
	struct dirent *de;
	struct stat st;
	off_t end = (off_t)W->w_start + (off_t)len;
	while (d && n < SCAN_MAX && (de = readdir(d))) {
		size_t nl = strlen(de->d_name);
		/* (only regular files, the right size, are opened: never a
		 * device or a FIFO, never through a link) */
		if (nl <= bl || strncmp(de->d_name, slash + 1, bl) != 0 || dl + 1 + nl >= sizeof *names ||
		    (nl > 3 && strcmp(de->d_name + nl - 3, ".gz") == 0) ||
		    fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode) ||
		    (!is_recorded(&st) && st.st_size < end))
			continue;
		memcpy(names[n], path, dl + 1); /* (dir and its slash) */
		memcpy(names[n] + dl + 1, de->d_name, nl + 1);
		n++;
	}
	if (d)
		closedir(d);
	pm_as_end(&c);
	int there = 0;
	/* the file itself first (it may be taken back), then copies */
	for (int pass = 0; pass < 2 && !there; pass++)
		for (int i = 0; i < n && !there; i++) {
			const char *why;
			int f = replay_open(e, names[i], pass ? 'r' : 'w', &st, &why);
			if (f < 0)
				continue;
			if (pass == 0 && is_recorded(&st))
				there = inflight_in(f, &st, data, len) == 1;
			else if (pass == 1 && !is_recorded(&st) && st.st_size >= end)
				there = same_at(f, (off_t)W->w_start, data, len);
			close(f);
		}
	free(names);
	return there;
}

/* A record the killed daemon published and did not mark written (at pos):
 * the one it was writing (W->w_pos) is looked for where it started (in
 * path, or where a rotation moved it since: inflight_elsewhere): there
 * whole, it is left; cut by the kill, the file is taken back to where it
 * started. Then (that one not there whole, and every later one) it is
 * appended, as the writer would have: after the file is rotated when it
 * would pass its max_size, after a newline when it does not end in one.
 * Written as the writer writes (W->w_*): a replay cut by a kill is
 * replayed again the same way. What cannot be written is counted by file
 * (out->fail), with why. */
static void replay_one(const wrec_t *r, uint64_t pos, replay_t *out)
{
	const char *data = (const char *)(r + 1);
	size_t len = r->len;
	if (r->op != OP_WRITE && r->op != OP_TRUNCATE)
		return;
	long long lines = r->op == OP_WRITE ? count_lines(data, len) : 0;
	const wsink_t *e = r->sink >= 0 && (uint64_t)r->sink < W->sinks_hw ? wsink_at(r->sink) : NULL;
	char path[sizeof e->path + 4];
	if (e && e->used) {
		memcpy(path, e->path, sizeof e->path);
		path[sizeof e->path - 1] = '\0';
	}
	if (!e || !e->used || !path[0]) {
		replay_fail(out, -1, lines, "its file was not recorded (a path too long, or too many files)", 0);
		return;
	}
	struct stat st;
	const char *why = NULL;
	int fd = replay_open(e, path, 'c', &st, &why);
	if (fd < 0) {
		replay_fail(out, r->sink, lines, why, errno);
		return;
	}
	if (r->op == OP_TRUNCATE) {
		if (ftruncate(fd, 0) < 0)
			replay_fail(out, r->sink, 0, "pm flush not done", 0);
		close(fd);
		return;
	}
	if (__atomic_load_n(&W->w_pos, __ATOMIC_ACQUIRE) == pos) {
		int there = is_recorded(&st) ? inflight_in(fd, &st, data, len) : -1;
		if (there < 0)
			there = inflight_elsewhere(e, path, data, len);
		if (there == 1) {
			out->left++;
			close(fd);
			return;
		}
	}
	if (fstat(fd, &st) == 0 && e->max_size > 0 && st.st_size > 0 && st.st_size + (off_t)len > e->max_size) {
		pm_owner_t o = wsink_owner(e);
		close(fd);
		rotate_path(path, &o, (mode_t)e->mode, e->retain, e->dated, e->compress);
		if ((fd = replay_open(e, path, 'c', &st, &why)) < 0) {
			replay_fail(out, r->sink, lines, why, errno);
			return;
		}
	}
	char last;
	if (fstat(fd, &st) == 0 && st.st_size > 0 && pread(fd, &last, 1, st.st_size - 1) == 1 && last != '\n' &&
	    write_all(fd, "\n", 1) == 0)
		st.st_size++;
	W->w_dev = (uint64_t)st.st_dev;
	W->w_ino = (uint64_t)st.st_ino;
	W->w_start = (uint64_t)st.st_size;
	__atomic_store_n(&W->w_pos, pos, __ATOMIC_RELEASE);
	size_t done = 0;
	int err = 0;
	while (done < len) {
		ssize_t w = write(fd, data + done, len - done);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			err = w < 0 ? errno : EIO;
			break;
		}
		done += (size_t)w;
	}
	size_t keep = done;
	if (done < len) { /* (a full disk: the whole lines that fit are kept, the rest counted) */
		while (keep > 0 && data[keep - 1] != '\n')
			keep--;
		if (done > keep && ftruncate(fd, st.st_size + (off_t)keep) < 0)
			write_all(fd, "\n", 1);
		replay_fail(out, r->sink, lines - count_lines(data, keep), NULL, err);
	}
	if (keep) {
		out->records++;
		out->bytes += (long long)keep;
	}
	close(fd);
}

/* A part the killed daemon left (h: g or a pipe's slot) made plain: its
 * bytes at the start of slot (skip 0), through g so that no kill meanwhile
 * loses it */
static void part_settle(wpart_t *h, wpart_t *slot)
{
	size_t skip, n;
	wpart_read(h, &skip, &n);
	char *from = (h == &W->g ? gdata() : wpart_data(h)) + skip;
	if (h != &W->g) {
		if (skip == 0) { /* (already plain, or the bytes a read completed are not in the ring) */
			__atomic_store_n(&h->state, (uint64_t)n, __ATOMIC_RELEASE);
			return;
		}
		__atomic_store_n(&W->g.id, h->id, __ATOMIC_RELEASE);
		memcpy(gdata(), from, n);
		__atomic_store_n(&W->g.state, (uint64_t)n, __ATOMIC_RELEASE);
		from = gdata();
	}
	if (n > wpart_cap(slot))
		n = wpart_cap(slot);
	memcpy(wpart_data(slot), from, n);
	__atomic_store_n(&slot->state, (uint64_t)n, __ATOMIC_RELEASE);
	__atomic_store_n(&W->g.state, 0, __ATOMIC_RELEASE);
}

/* core.logwal_create() -> fd | nil, err: the log WAL in a memfd (before
 * any core.logfile or core.logpipe), for the keeper to hold */
static int l_logwal_create(lua_State *L)
{
	if (W)
		return pm_fail_why(L, "logwal", "the log buffer exists already");
	int fd = memfd_create("pm-logwal", MFD_CLOEXEC);
	if (fd < 0)
		return pm_fail(L, "memfd_create");
	if (ftruncate(fd, (off_t)WAL_SIZE) < 0 || wal_map(fd) < 0) {
		int e = errno;
		close(fd);
		errno = e;
		return pm_fail(L, "logwal");
	}
	wal_init_fresh();
	lua_pushinteger(L, fd);
	return 1;
}

/*
 * core.logwal_adopt(fd) -> {records=, bytes=, lost=, left=, outside=, parts=, failed=} | nil, err:
 * the log WAL a killed (or replaced) daemon left (the keeper's memfd),
 * taken as this daemon's (before any core.logfile or core.logpipe): what
 * it had read and not written is written now (records, bytes; left: 1
 * when the record being written at the kill was found whole and not
 * written again; lost: lines whose file cannot be opened or written,
 * failed: {path=, lines=, reason=} by file; outside: lines it held
 * outside the buffer, lost), and the lines it had started (parts) wait
 * for the pipe of the same keeper id (core.logpipe's opts.held) until
 * core.logwal_settle. fd stays the caller's.
 */
static int l_logwal_adopt(lua_State *L)
{
	int fd = (int)luaL_checkinteger(L, 1);
	struct stat st;
	if (W)
		return pm_fail_why(L, "logwal", "the log buffer exists already");
	if (fstat(fd, &st) < 0)
		return pm_fail(L, "logwal");
	if ((uint64_t)st.st_size != WAL_SIZE)
		return pm_fail_why(L, "logwal", "not a log buffer of this version");
	if (wal_map(fd) < 0)
		return pm_fail(L, "logwal");
	if (W->magic != WAL_MAGIC || W->version != WAL_VERSION || W->size != WAL_SIZE ||
	    W->ring_size != RING_SIZE || W->nsinks != WAL_NSINKS || W->nparts != WAL_NPARTS ||
	    W->sinks_hw > WAL_NSINKS || W->parts_hw > WAL_NPARTS || W->tail > W->head ||
	    W->head - W->tail > RING_SIZE) {
		munmap(wal, WAL_SIZE);
		wal = NULL;
		W = NULL;
		return pm_fail_why(L, "logwal", "not a log buffer of this version");
	}
	wal_free_lists();
	/* the parts: g's first (a read it held: into a slot of its pipe's that
	 * holds it, the others of that pipe let go first, a part that was
	 * moving from one slot to another), then each pipe's */
	int parts = 0;
	long long outside = 0;
	if (W->g.state && W->g.id) {
		size_t skip, n;
		wpart_read(&W->g, &skip, &n);
		wpart_t *slot = NULL;
		for (int i = 0; i < (int)W->parts_hw && !slot; i++)
			if (wpart_at(i)->used && wpart_at(i)->id == W->g.id && wpart_cap(wpart_at(i)) >= n)
				slot = wpart_at(i);
		if (!slot)
			slot = wpart_alloc(W->g.id, n);
		for (int i = 0; i < (int)W->parts_hw; i++)
			if (wpart_at(i)->used && wpart_at(i)->id == W->g.id && wpart_at(i) != slot)
				wpart_free(wpart_at(i));
		if (slot)
			part_settle(&W->g, slot);
		else
			outside++;
	}
	__atomic_store_n(&W->g.state, 0, __ATOMIC_RELEASE);
	for (int i = 0; i < (int)W->parts_hw; i++)
		if (wpart_at(i)->used && wpart_at(i)->id)
			part_settle(wpart_at(i), wpart_at(i));
	/* the ring, in order */
	replay_t out = {0, 0, 0, 0, NULL, 0};
	out.fail = calloc((size_t)W->sinks_hw + 1, sizeof *out.fail);
	out.nfail = out.fail ? (int)W->sinks_hw + 1 : 0;
	uint64_t head = __atomic_load_n(&W->head, __ATOMIC_ACQUIRE);
	for (uint64_t t = W->tail; t < head;) {
		const wrec_t *r = (const wrec_t *)ring_at(t);
		size_t need = r->op == OP_WRAP ? r->len : (sizeof *r + r->len + 15) & ~(size_t)15;
		if (need == 0 || t % RING_SIZE + need > RING_SIZE)
			break; /* (not a record: the rest is not read) */
		if (r->op != OP_WRAP)
			replay_one(r, t, &out);
		t += need;
		__atomic_store_n(&W->tail, t, __ATOMIC_RELEASE);
	}
	head_local = head;
	__atomic_store_n(&W->tail, head, __ATOMIC_RELEASE);
	outside += (long long)W->out_lines + (long long)W->out_parts;
	__atomic_store_n(&W->out_lines, 0, __ATOMIC_RELEASE);
	__atomic_store_n(&W->out_parts, 0, __ATOMIC_RELEASE);
	lua_createtable(L, 0, 8);
	lua_newtable(L); /* failed */
	for (int i = 0, k = 0; i < out.nfail; i++) {
		if (out.fail[i].lines == 0 && !out.fail[i].why[0])
			continue;
		lua_createtable(L, 0, 3);
		if (i < out.nfail - 1) {
			char path[sizeof ((wsink_t *)0)->path];
			memcpy(path, wsink_at(i)->path, sizeof path);
			path[sizeof path - 1] = '\0';
			lua_pushstring(L, path);
			lua_setfield(L, -2, "path");
		}
		lua_pushnumber(L, (lua_Number)out.fail[i].lines);
		lua_setfield(L, -2, "lines");
		lua_pushstring(L, out.fail[i].why);
		lua_setfield(L, -2, "reason");
		lua_rawseti(L, -2, ++k);
	}
	lua_setfield(L, -2, "failed");
	free(out.fail);
	for (int i = 0; i < (int)W->sinks_hw; i++)
		__atomic_store_n(&wsink_at(i)->used, 0, __ATOMIC_RELEASE);
	/* (their memory given back: a daemon before entries were let go
	 * when idle left one for each file) */
	if (W->sinks_hw > 0)
		wal_punch(OFF_SINKS, (size_t)W->sinks_hw * WAL_SINK);
	__atomic_store_n(&W->sinks_hw, 0, __ATOMIC_RELEASE);
	wal_free_lists();
	free(claims);
	claims = malloc(sizeof(int) * WAL_NPARTS);
	nclaims = 0;
	for (int i = 0; claims && i < (int)W->parts_hw; i++)
		if (wpart_at(i)->used) {
			claims[nclaims++] = i;
			parts++;
		}
	lua_pushnumber(L, (lua_Number)out.records);
	lua_setfield(L, -2, "records");
	lua_pushnumber(L, (lua_Number)out.left);
	lua_setfield(L, -2, "left");
	lua_pushnumber(L, (lua_Number)outside);
	lua_setfield(L, -2, "outside");
	lua_pushnumber(L, (lua_Number)out.bytes);
	lua_setfield(L, -2, "bytes");
	lua_pushnumber(L, (lua_Number)out.lost);
	lua_setfield(L, -2, "lost");
	lua_pushinteger(L, parts);
	lua_setfield(L, -2, "parts");
	return 1;
}

/* core.logwal_settle() -> n: the parts no pipe took since
 * core.logwal_adopt (their apps are gone) are let go; how many */
static int l_logwal_settle(lua_State *L)
{
	int n = nclaims;
	for (int i = 0; i < nclaims; i++)
		wpart_free(wpart_at(claims[i]));
	nclaims = 0;
	lua_pushinteger(L, n);
	return 1;
}

void pm_open_logs(lua_State *L)
{
	static const luaL_Reg file_m[] = {
		{"truncate", l_logfile_truncate},
		{"reopen", l_logfile_reopen},
		{"rotate", l_logfile_rotate},
		{"configure", l_logfile_configure},
		{"close", l_logfile_close},
		{NULL, NULL},
	};
	static const luaL_Reg pipe_m[] = {
		{"set_tap", l_logpipe_set_tap},
		{"set_files", l_logpipe_set_files},
		{"closed", l_logpipe_closed},
		{"close", l_logpipe_close},
		{"cut", l_logpipe_cut},
		{"detach", l_logpipe_detach},
		{"paused", l_logpipe_paused},
		{NULL, NULL},
	};
	luaL_newmetatable(L, LOGFILE_MT);
	lua_newtable(L);
	luaL_register(L, NULL, file_m);
	lua_setfield(L, -2, "__index");
	lua_pushcfunction(L, l_logfile_close);
	lua_setfield(L, -2, "__gc");
	lua_pop(L, 1);
	luaL_newmetatable(L, LOGPIPE_MT);
	lua_newtable(L);
	luaL_register(L, NULL, pipe_m);
	lua_setfield(L, -2, "__index");
	lua_pushcfunction(L, l_logpipe_gc);
	lua_setfield(L, -2, "__gc");
	lua_pop(L, 1);
	static const luaL_Reg fns[] = {
		{"logfile", l_logfile},
		{"logpipe", l_logpipe},
		{"log_drain", l_log_drain},
		{"log_files_max", l_log_files_max},
		{"log_fifo_wait", l_log_fifo_wait},
		{"logfile_stats", l_logfile_stats},
		{"on_log_dropped", l_on_log_dropped},
		{"logwal_create", l_logwal_create},
		{"logwal_adopt", l_logwal_adopt},
		{"logwal_settle", l_logwal_settle},
		{NULL, NULL},
	};
	luaL_register(L, NULL, fns);
}
