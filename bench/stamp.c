/*
 * stamp: the crash-loop app of `make bench`. Appends one fixed-width line,
 * "<monotonic ns at start> <monotonic ns just before exit>\n", to the file
 * named by argv[1], then exits 1 at once. Consecutive lines give the respawn
 * interval: next start - previous exit. Built by bench.lua (static when the
 * toolchain allows) so that its own start-up costs as little as possible.
 */
#include <fcntl.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

static long long now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int main(int argc, char **argv)
{
	long long start = now_ns();
	if (argc < 2)
		return 2;
	int fd = open(argv[1], O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0)
		return 2;
	char line[64];
	long long end = now_ns();
	int n = snprintf(line, sizeof line, "%020lld %020lld\n", start, end);
	if (write(fd, line, (size_t)n) != n)
		return 2;
	return 1;
}
