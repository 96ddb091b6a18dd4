/*
 * respawn: the floor of the crash-loop figures of `make bench`. Respawns
 * the crash app the leanest way a supervisor can: posix_spawn (vfork and
 * exec, as pm's core does), then a blocking waitpid, nothing else: no
 * signal handler, no output read, no pid file, no restart policy.
 *
 *   respawn [--ev|--sup] N MAX_MS APP ARG
 *
 * --ev: the same from an event loop (libev, as pm's core): an ev_child
 * watcher is told of each exit (SIGCHLD, then waitpid in the loop) and
 * posix_spawns the next, nothing else. A supervisor that also answers
 * its clients waits in its loop, not in waitpid: the floor of such a one.
 *
 * --sup: --ev, plus the system calls a supervisor makes for each run that
 * a bare respawn does not, as pm's core makes them in a crash loop: the
 * child's stdout and stderr on two pipes kept from run to run (each exit:
 * what is in them counted with FIONREAD and read), its pid written in
 * place in a pid file kept open, a file kept open read again (pm's held
 * cgroup.procs: what the run left behind; here /proc/self/stat, a file of
 * the kernel's made at each read too) and its process group killed.
 * No restart policy, no log file, no event: the floor of a supervisor
 * that keeps those promises, against which pm's Lua is measured.
 *
 * runs APP ARG until it has exited N times or MAX_MS have passed, then
 * prints "<restarts> <wall ns> <own CPU ns>" (CPU: the first field of
 * /proc/self/schedstat, time on a CPU; the children's time is theirs; -1
 * when it cannot be read). A run still going 5 s after MAX_MS (a child
 * that hangs) kills its child and exits 3, printing nothing.
 */
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <string.h>
#include <sys/ioctl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <ev.h>

extern char **environ;

static volatile pid_t child;

static void overdue(int sig)
{
	(void)sig;
	if (child > 0)
		kill(child, SIGKILL);
	_exit(3);
}

static long long now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static long long cpu_ns(void)
{
	long long ns = -1;
	FILE *f = fopen("/proc/self/schedstat", "r");
	if (f) {
		if (fscanf(f, "%lld", &ns) != 1)
			ns = -1;
		fclose(f);
	}
	return ns;
}

static char **spawn_args;
static long ev_n, ev_done;
static long long ev_t0, ev_max_ns;
static int ev_failed;
static ev_child ev_watch;

/* --sup: the pipes (read, write ends), the pid file and the group file */
static int sup, out_p[2] = {-1, -1}, err_p[2] = {-1, -1}, pid_fd = -1, group_fd = -1;
static posix_spawn_file_actions_t sup_fa;

static void sup_exit(pid_t pid)
{
	char buf[65536];
	int n;
	for (int i = 0; i < 2; i++) {
		int fd = i ? err_p[0] : out_p[0];
		if (ioctl(fd, FIONREAD, &n) == 0 && n > 0 && read(fd, buf, sizeof buf) < 0)
			continue;
	}
	if (pread(group_fd, buf, sizeof buf, 0) < 0)
		buf[0] = 0;
	kill(-pid, SIGKILL); /* (gone already: ESRCH, as pm's) */
}

static int spawn_one(struct ev_loop *loop)
{
	pid_t pid;
	if (posix_spawn(&pid, spawn_args[0], sup ? &sup_fa : NULL, NULL, spawn_args, environ) != 0)
		return -1;
	if (sup) {
		char text[32];
		int len = snprintf(text, sizeof text, "%d\n", (int)pid);
		if (pwrite(pid_fd, text, (size_t)len, 0) != len)
			return -1;
	}
	child = pid;
	ev_child_set(&ev_watch, pid, 0);
	ev_child_start(loop, &ev_watch);
	return 0;
}

static void on_exit_ev(struct ev_loop *loop, ev_child *w, int revents)
{
	(void)revents;
	ev_child_stop(loop, w);
	if (sup)
		sup_exit(w->rpid);
	ev_done++;
	if (ev_done >= ev_n || now_ns() - ev_t0 >= ev_max_ns)
		return;
	if (spawn_one(loop) != 0)
		ev_failed = 1;
}

int main(int argc, char **argv)
{
	if (argc == 6 && argv[1][0] == '-') { /* --ev, --sup */
		struct ev_loop *loop = ev_default_loop(0);
		if (strcmp(argv[1], "--sup") == 0) {
			char path[] = "/tmp/respawn-sup-XXXXXX";
			sup = 1;
			if (pipe(out_p) < 0 || pipe(err_p) < 0 || (pid_fd = mkstemp(path)) < 0)
				return 1;
			unlink(path);
			if ((group_fd = open("/proc/self/stat", O_RDONLY | O_CLOEXEC)) < 0)
				return 1;
			fcntl(out_p[0], F_SETFL, O_NONBLOCK);
			fcntl(err_p[0], F_SETFL, O_NONBLOCK);
			posix_spawn_file_actions_init(&sup_fa);
			posix_spawn_file_actions_adddup2(&sup_fa, out_p[1], 1);
			posix_spawn_file_actions_adddup2(&sup_fa, err_p[1], 2);
			posix_spawn_file_actions_addclose(&sup_fa, out_p[0]);
			posix_spawn_file_actions_addclose(&sup_fa, err_p[0]);
		}
		char *args[] = {argv[4], argv[5], NULL};
		spawn_args = args;
		ev_n = atol(argv[2]);
		ev_max_ns = atoll(argv[3]) * 1000000LL;
		signal(SIGALRM, overdue);
		struct itimerval it = {{0, 0}, {atol(argv[3]) / 1000 + 5, (atol(argv[3]) % 1000) * 1000}};
		setitimer(ITIMER_REAL, &it, NULL);
		ev_child_init(&ev_watch, on_exit_ev, 0, 0);
		long long c0 = cpu_ns();
		ev_t0 = now_ns();
		if (spawn_one(loop) != 0)
			return 1;
		ev_run(loop, 0);
		long long t1 = now_ns(), c1 = cpu_ns();
		if (ev_failed)
			return 1;
		printf("%ld %lld %lld\n", ev_done, t1 - ev_t0, c0 < 0 || c1 < 0 ? -1 : c1 - c0);
		return 0;
	}
	if (argc != 5)
		return 2;
	long n = atol(argv[1]);
	long long max_ns = atoll(argv[2]) * 1000000LL;
	char *args[] = {argv[3], argv[4], NULL};
	/* one timer for the whole run: nothing added to each restart */
	signal(SIGALRM, overdue);
	struct itimerval it = {{0, 0}, {atol(argv[2]) / 1000 + 5, (atol(argv[2]) % 1000) * 1000}};
	setitimer(ITIMER_REAL, &it, NULL);
	long long c0 = cpu_ns(), t0 = now_ns();
	long done = 0;
	while (done < n && now_ns() - t0 < max_ns) {
		pid_t pid;
		if (posix_spawn(&pid, argv[3], NULL, NULL, args, environ) != 0)
			return 1;
		child = pid;
		int st;
		if (waitpid(pid, &st, 0) != pid)
			return 1;
		done++;
	}
	long long t1 = now_ns(), c1 = cpu_ns();
	printf("%ld %lld %lld\n", done, t1 - t0, c0 < 0 || c1 < 0 ? -1 : c1 - c0);
	return 0;
}
