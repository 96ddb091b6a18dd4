/*
 * keeper_wire.h: the packet of the keeper's socketpair, on both of its
 * sides: core/pm-keeper.c (the keeper program, bin/pm-keeper) and
 * core/keeper.c (the daemon's side, in pm.core). No Lua here: the keeper
 * links libc alone.
 */
#ifndef PM_KEEPER_WIRE_H
#define PM_KEEPER_WIRE_H

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>

#define PKT_MAX 65536
#define FDS_PER_PKT 250

/* One packet and its fds (SCM_RIGHTS, at most FDS_PER_PKT): sendmsg's
 * result, errno as it sets it */
static inline ssize_t pkt_sendmsg(int sock, const char *data, size_t len, const int *fds, int nfds, int flags)
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

/* One packet without waiting: recvmsg's result; the fds arrive CLOEXEC,
 * *nfds says how many */
static inline ssize_t pkt_recvmsg(int sock, char *buf, size_t cap, int *fds, int *nfds)
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

#endif
