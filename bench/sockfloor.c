/*
 * sockfloor: the floor of the `jlist` figures of `make bench`: the same
 * bytes as a jlist reply, from a server that holds them ready in memory to
 * a client that copies them to its stdout, over a unix socket, and nothing
 * else (no description made, no JSON-RPC framing read, no loop).
 *
 *   sockfloor serve SOCKET FILE   serves FILE's bytes and a newline to each
 *                                 client that sends a line (until killed)
 *   sockfloor SOCKET              connects, sends a line, copies the reply
 *                                 to stdout until its newline
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

static char buf[1 << 18];

static int write_all(int fd, const char *p, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* FILE's bytes and a newline, in memory -> their length (0: unreadable) */
static size_t load(const char *file, char **data)
{
	int f = open(file, O_RDONLY);
	struct stat st;
	if (f < 0 || fstat(f, &st) < 0)
		return 0;
	*data = malloc((size_t)st.st_size + 1);
	size_t got = 0;
	while (*data && got < (size_t)st.st_size) {
		ssize_t n = read(f, *data + got, (size_t)st.st_size - got);
		if (n <= 0)
			return 0;
		got += (size_t)n;
	}
	close(f);
	if (!*data)
		return 0;
	(*data)[got++] = '\n';
	return got;
}

static int serve(int fd, const char *data, size_t len)
{
	if (listen(fd, 16) < 0)
		return 1;
	for (;;) {
		int c = accept(fd, NULL, NULL);
		if (c < 0)
			continue;
		if (read(c, buf, sizeof buf) > 0)
			write_all(c, data, len);
		close(c);
	}
}

int main(int argc, char **argv)
{
	int server = argc == 4 && strcmp(argv[1], "serve") == 0;
	if (!server && argc != 2) {
		fprintf(stderr, "usage: sockfloor serve SOCKET FILE | sockfloor SOCKET\n");
		return 2;
	}
	struct sockaddr_un a;
	memset(&a, 0, sizeof a);
	a.sun_family = AF_UNIX;
	strncpy(a.sun_path, argv[server ? 2 : 1], sizeof a.sun_path - 1);
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	if (fd < 0)
		return 1;
	if (server) {
		/* (the bytes ready before the socket's path exists: a client
		 * that finds it is served at once) */
		char *data = NULL;
		size_t len = load(argv[3], &data);
		if (len == 0)
			return 1;
		unlink(a.sun_path);
		if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0)
			return 1;
		return serve(fd, data, len);
	}
	if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0)
		return 1;
	static const char rq[] = "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"list\"}\n";
	if (write_all(fd, rq, sizeof rq - 1) < 0)
		return 1;
	for (;;) {
		ssize_t n = read(fd, buf, sizeof buf);
		if (n <= 0)
			return 1;
		if (write_all(1, buf, (size_t)n) < 0)
			return 1;
		if (buf[n - 1] == '\n')
			return 0;
	}
}
