#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "frame.h"
#include "ramkey_err.h"

uint64_t ramkey_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

int ramkey_frame_parse_header_max(const uint8_t hdr[RAMKEY_FRAME_HDR],
    size_t max, size_t *lenp)
{
	uint32_t len = ((uint32_t)hdr[0] << 24) | ((uint32_t)hdr[1] << 16) |
	    ((uint32_t)hdr[2] << 8) | (uint32_t)hdr[3];

	*lenp = 0;
	if (len > max)
		return RAMKEY_ERR_TOO_LARGE;
	if (len == 0)
		return RAMKEY_ERR_PROTOCOL;
	*lenp = len;
	return 0;
}

int ramkey_frame_parse_header(const uint8_t hdr[RAMKEY_FRAME_HDR],
    size_t *lenp)
{
	return ramkey_frame_parse_header_max(hdr, RAMKEY_FRAME_MAX, lenp);
}

int ramkey_frame_put_header(uint8_t hdr[RAMKEY_FRAME_HDR], size_t len)
{
	return ramkey_frame_put_header_max(hdr, len, RAMKEY_FRAME_MAX);
}

int ramkey_frame_put_header_max(uint8_t hdr[RAMKEY_FRAME_HDR], size_t len,
    size_t max)
{
	if (len == 0 || len > max || len > UINT32_MAX)
		return RAMKEY_ERR_TOO_LARGE;
	hdr[0] = (uint8_t)(len >> 24);
	hdr[1] = (uint8_t)(len >> 16);
	hdr[2] = (uint8_t)(len >> 8);
	hdr[3] = (uint8_t)len;
	return 0;
}

/* Wait for events on fd until the deadline. */
static int wait_fd(int fd, short events, uint64_t deadline_ms)
{
	struct pollfd p;
	uint64_t now;
	int r;

	for (;;) {
		now = ramkey_now_ms();
		if (now >= deadline_ms)
			return RAMKEY_ERR_TIMEOUT;
		p.fd = fd;
		p.events = events;
		p.revents = 0;
		r = poll(&p, 1, (int)(deadline_ms - now > 60000 ? 60000 :
		    deadline_ms - now));
		if (r == -1) {
			if (errno == EINTR)
				continue;
			return RAMKEY_ERR_SYSTEM;
		}
		if (r > 0)
			return 0;
	}
}

/* Send the iovecs in order; one sendmsg() for a whole frame when the
 * socket takes it (the usual case), so the peer sees it in one read. */
static int send_iov(int fd, struct iovec *iov, int n, uint64_t deadline)
{
	int r;

	while (n > 0) {
		struct msghdr m = { .msg_iov = iov, .msg_iovlen = (size_t)n };
		ssize_t sent = sendmsg(fd, &m, MSG_NOSIGNAL | MSG_DONTWAIT);

		if (sent >= 0) {
			size_t left = (size_t)sent;

			while (n > 0 && left >= iov->iov_len) {
				left -= iov->iov_len;
				iov++;
				n--;
			}
			if (n > 0) {
				iov->iov_base = (uint8_t *)iov->iov_base + left;
				iov->iov_len -= left;
			}
			continue;
		}
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK) {
			if ((r = wait_fd(fd, POLLOUT, deadline)) != 0)
				return r;
			continue;
		}
		if (errno == EPIPE || errno == ECONNRESET)
			return RAMKEY_ERR_EOF;
		return RAMKEY_ERR_SYSTEM;
	}
	return 0;
}

/* Read len bytes. Try first and poll only when nothing is there: a body
 * usually arrives with its header. The deadline bounds every wait, so the
 * whole read however the peer trickles; bytes already here are taken
 * even when it has passed (a caller that did slow work of its own before
 * reading still gets an answer that came in time). */
static int recv_all(int fd, uint8_t *p, size_t len, uint64_t deadline)
{
	int r;

	while (len > 0) {
		ssize_t n;

		n = recv(fd, p, len, MSG_DONTWAIT);
		if (n > 0) {
			p += n;
			len -= (size_t)n;
			continue;
		}
		if (n == 0)
			return RAMKEY_ERR_EOF;
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK) {
			if ((r = wait_fd(fd, POLLIN, deadline)) != 0)
				return r;
			continue;
		}
		if (errno == ECONNRESET)
			return RAMKEY_ERR_EOF;
		return RAMKEY_ERR_SYSTEM;
	}
	return 0;
}

int ramkey_frame_send(int fd, const void *body, size_t len,
    uint64_t deadline_ms)
{
	uint8_t hdr[RAMKEY_FRAME_HDR];
	struct iovec iov[2];
	int r;

	if ((r = ramkey_frame_put_header(hdr, len)) != 0)
		return r;
	iov[0].iov_base = hdr;
	iov[0].iov_len = sizeof(hdr);
	iov[1].iov_base = (void *)body;
	iov[1].iov_len = len;
	return send_iov(fd, iov, 2, deadline_ms);
}

int ramkey_frame_recv(int fd, size_t max, uint8_t **bodyp, size_t *lenp,
    uint64_t deadline_ms)
{
	uint8_t hdr[RAMKEY_FRAME_HDR];
	uint8_t *body = NULL;
	size_t len = 0;
	int r;

	*bodyp = NULL;
	*lenp = 0;
	if ((r = recv_all(fd, hdr, sizeof(hdr), deadline_ms)) != 0)
		goto out;
	if ((r = ramkey_frame_parse_header_max(hdr, max, &len)) != 0)
		goto out;
	if ((body = malloc(len + 1)) == NULL) {
		r = RAMKEY_ERR_NOMEM;
		goto out;
	}
	if ((r = recv_all(fd, body, len, deadline_ms)) != 0)
		goto out;
	body[len] = '\0';
	*bodyp = body;
	*lenp = len;
	body = NULL;
out:
	if (body != NULL) {
		sodium_memzero(body, len + 1);
		free(body);
	}
	return r;
}

void ramkey_frame_reader_init(struct ramkey_frame_reader *fr, size_t max)
{
	memset(fr, 0, sizeof(*fr));
	fr->max = max;
}

void ramkey_frame_reader_space(struct ramkey_frame_reader *fr, uint8_t **bufp,
    size_t *lenp)
{
	if (fr->hdr_have < sizeof(fr->hdr)) {
		*bufp = fr->hdr + fr->hdr_have;
		*lenp = sizeof(fr->hdr) - fr->hdr_have;
	} else {
		*bufp = fr->body + fr->body_have;
		*lenp = fr->body_len - fr->body_have;
	}
}

int ramkey_frame_reader_got(struct ramkey_frame_reader *fr, size_t n)
{
	int r;

	if (fr->hdr_have < sizeof(fr->hdr)) {
		if (n == 0 || n > sizeof(fr->hdr) - fr->hdr_have)
			return RAMKEY_ERR_INVALID;
		fr->hdr_have += n;
		if (fr->hdr_have < sizeof(fr->hdr))
			return 0;
		if ((r = ramkey_frame_parse_header_max(fr->hdr, fr->max,
		    &fr->body_len)) != 0)
			return r;
		if ((fr->body = malloc(fr->body_len + 1)) == NULL)
			return RAMKEY_ERR_NOMEM;
		fr->body_have = 0;
		return 0;
	}
	if (fr->body == NULL || n == 0 || n > fr->body_len - fr->body_have)
		return RAMKEY_ERR_INVALID;
	fr->body_have += n;
	return fr->body_have == fr->body_len ? 1 : 0;
}

void ramkey_frame_reader_take(struct ramkey_frame_reader *fr, uint8_t **bodyp,
    size_t *lenp)
{
	fr->body[fr->body_len] = '\0';
	*bodyp = fr->body;
	*lenp = fr->body_len;
	fr->body = NULL;
	fr->hdr_have = fr->body_len = fr->body_have = 0;
}

void ramkey_frame_reader_clear(struct ramkey_frame_reader *fr)
{
	if (fr == NULL)
		return;
	if (fr->body != NULL) {
		sodium_memzero(fr->body, fr->body_have);
		free(fr->body);
	}
	sodium_memzero(fr->hdr, sizeof(fr->hdr));
	fr->body = NULL;
	fr->hdr_have = fr->body_len = fr->body_have = 0;
}
