/*
 * respawn: the floor of the crash-loop figures of `make bench`. Respawns
 * the crash app the leanest way a supervisor can: posix_spawn (vfork and
 * exec, as pm's core does), then a blocking waitpid, nothing else: no
 * signal handler, no output read, no pid file, no restart policy.
 *
 *   respawn N MAX_MS APP ARG
 *
 * runs APP ARG until it has exited N times or MAX_MS have passed, then
 * prints "<restarts> <wall ns> <own CPU ns>" (CPU: the first field of
 * /proc/self/schedstat, time on a CPU; the children's time is theirs; -1
 * when it cannot be read). A run still going 5 s after MAX_MS (a child
 * that hangs) kills its child and exits 3, printing nothing.
 */
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

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

int main(int argc, char **argv)
{
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
