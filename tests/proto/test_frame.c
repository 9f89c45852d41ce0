/*
 * proto.frame: the 4-byte big-endian length header (limit 65536, checked
 * before anything is allocated; zero rejected) and frame I/O over a
 * socketpair with deadlines: silent, trickling and hostile peers, EOF at
 * every point; the incremental reader the agent uses.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdbool.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "frame.h"
#include "ramkey_err.h"

/* Deadline assertions: the call must return within this of the deadline. */
#define SLACK_MS 100

#if defined(__SANITIZE_ADDRESS__)
#define HAVE_MALLOC_HOOK 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define HAVE_MALLOC_HOOK 0
#endif
#endif
#ifndef HAVE_MALLOC_HOOK
#define HAVE_MALLOC_HOOK 1
#endif

#if HAVE_MALLOC_HOOK
/* Interpose malloc() (glibc) to see every allocation made while
 * `counting` is set: a frame over the limit must be refused before any. */
extern void *__libc_malloc(size_t);
static bool counting;
static size_t allocations;

void *malloc(size_t n)
{
	if (counting)
		allocations++;
	return __libc_malloc(n);
}
#endif

static void sleep_ms(unsigned ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

static void pair(int sv[2])
{
	assert_int_equal(
	    socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
}

static void put_u32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static void write_raw(int fd, const void *p, size_t n)
{
	assert_int_equal(send(fd, p, n, MSG_NOSIGNAL), (ssize_t)n);
}

/* ---- header ---- */

static void test_header_parse_is_big_endian(void **state)
{
	const uint8_t h1[4] = {0x00, 0x00, 0x01, 0x02};
	const uint8_t h2[4] = {0x00, 0x00, 0xff, 0x7b};
	size_t len = 99;

	assert_int_equal(ramkey_frame_parse_header(h1, &len), 0);
	assert_int_equal(len, 0x0102);
	assert_int_equal(ramkey_frame_parse_header(h2, &len), 0);
	assert_int_equal(len, 0xff7b);
}

static void test_header_put_is_big_endian(void **state)
{
	uint8_t h[4] = {0};
	size_t len = 0;

	assert_int_equal(ramkey_frame_put_header(h, 0x0102), 0);
	assert_int_equal(h[0], 0x00);
	assert_int_equal(h[1], 0x00);
	assert_int_equal(h[2], 0x01);
	assert_int_equal(h[3], 0x02);
	assert_int_equal(ramkey_frame_put_header(h, 65536), 0);
	assert_int_equal(h[0], 0x00);
	assert_int_equal(h[1], 0x01);
	assert_int_equal(h[2], 0x00);
	assert_int_equal(h[3], 0x00);
	assert_int_equal(ramkey_frame_parse_header(h, &len), 0);
	assert_int_equal(len, 65536);
	assert_int_equal(ramkey_frame_put_header(h, 1), 0);
	assert_int_equal(ramkey_frame_parse_header(h, &len), 0);
	assert_int_equal(len, 1);
}

static void test_header_limit_is_65536(void **state)
{
	uint8_t h[4];
	size_t len = 7;

	assert_int_equal(RAMKEY_FRAME_MAX, 65536);
	put_u32(h, 65536);
	assert_int_equal(ramkey_frame_parse_header(h, &len), 0);
	assert_int_equal(len, 65536);
	put_u32(h, 65537);
	assert_int_equal(
	    ramkey_frame_parse_header(h, &len), RAMKEY_ERR_TOO_LARGE);
	assert_int_equal(len, 0);
	put_u32(h, 0x01000000);
	assert_int_equal(
	    ramkey_frame_parse_header(h, &len), RAMKEY_ERR_TOO_LARGE);
	put_u32(h, 0xffffffff);
	assert_int_equal(
	    ramkey_frame_parse_header(h, &len), RAMKEY_ERR_TOO_LARGE);
	assert_int_equal(len, 0);
	assert_int_equal(
	    ramkey_frame_put_header(h, 65537), RAMKEY_ERR_TOO_LARGE);
	assert_int_not_equal(ramkey_frame_put_header(h, (size_t)1 << 32), 0);
}

static void test_header_zero_length_rejected(void **state)
{
	const uint8_t h[4] = {0, 0, 0, 0};
	uint8_t out[4];
	size_t len = 5;

	assert_int_equal(
	    ramkey_frame_parse_header(h, &len), RAMKEY_ERR_PROTOCOL);
	assert_int_equal(len, 0);
	assert_int_not_equal(ramkey_frame_put_header(out, 0), 0);
}

/* ---- send / recv ---- */

static void test_send_recv_round_trip(void **state)
{
	static const char msg[] = "{\"v\":1,\"op\":\"status\"}";
	uint8_t raw[4 + sizeof(msg)];
	uint8_t *body = NULL;
	size_t len = 0;
	int sv[2];

	pair(sv);
	assert_int_equal(
	    ramkey_frame_send(sv[0], msg, strlen(msg), ramkey_now_ms() + 2000),
	    0);
	/* On the wire: exactly the header and the body. */
	assert_int_equal(
	    recv(sv[1], raw, sizeof(raw), MSG_PEEK), 4 + (ssize_t)strlen(msg));
	assert_int_equal(raw[0], 0);
	assert_int_equal(raw[1], 0);
	assert_int_equal(raw[2], 0);
	assert_int_equal(raw[3], strlen(msg));
	assert_memory_equal(raw + 4, msg, strlen(msg));
	assert_int_equal(ramkey_frame_recv(sv[1], RAMKEY_FRAME_MAX, &body,
	    &len, ramkey_now_ms() + 2000), 0);
	assert_int_equal(len, strlen(msg));
	assert_memory_equal(body, msg, len);
	assert_int_equal(body[len], '\0'); /* NUL-terminated, not counted */
	free(body);
	close(sv[0]);
	close(sv[1]);
}

static void test_send_recv_back_to_back_frames(void **state)
{
	uint8_t *body = NULL;
	size_t len = 0;
	int sv[2], i;

	pair(sv);
	for (i = 1; i <= 3; i++) {
		char m[16];

		snprintf(m, sizeof(m), "frame-%d", i);
		assert_int_equal(ramkey_frame_send(sv[0], m, strlen(m),
				     ramkey_now_ms() + 2000),
		    0);
	}
	for (i = 1; i <= 3; i++) {
		char m[16];

		snprintf(m, sizeof(m), "frame-%d", i);
		assert_int_equal(ramkey_frame_recv(sv[1], RAMKEY_FRAME_MAX,
		    &body, &len, ramkey_now_ms() + 2000), 0);
		assert_int_equal(len, strlen(m));
		assert_string_equal((char *)body, m);
		free(body);
	}
	close(sv[0]);
	close(sv[1]);
}

struct big_sender {
	int fd;
	uint8_t *buf;
	size_t len;
	int rc;
};

static void *send_big(void *arg)
{
	struct big_sender *s = arg;

	s->rc =
	    ramkey_frame_send(s->fd, s->buf, s->len, ramkey_now_ms() + 5000);
	return NULL;
}

static void test_send_recv_largest_frame(void **state)
{
	struct big_sender s;
	pthread_t th;
	uint8_t *body = NULL;
	size_t len = 0, i;
	int sv[2];

	pair(sv);
	s.fd = sv[0];
	s.len = RAMKEY_FRAME_MAX;
	s.buf = malloc(s.len);
	assert_non_null(s.buf);
	for (i = 0; i < s.len; i++)
		s.buf[i] = (uint8_t)('a' + i % 26);
	assert_int_equal(pthread_create(&th, NULL, send_big, &s), 0);
	assert_int_equal(ramkey_frame_recv(sv[1], RAMKEY_FRAME_MAX, &body,
	    &len, ramkey_now_ms() + 5000), 0);
	assert_int_equal(pthread_join(th, NULL), 0);
	assert_int_equal(s.rc, 0);
	assert_int_equal(len, RAMKEY_FRAME_MAX);
	assert_memory_equal(body, s.buf, len);
	free(body);
	free(s.buf);
	close(sv[0]);
	close(sv[1]);
}

static void test_send_rejects_empty_and_oversized_body(void **state)
{
	static uint8_t big[RAMKEY_FRAME_MAX + 1];
	uint8_t probe;
	int sv[2];

	pair(sv);
	assert_int_not_equal(
	    ramkey_frame_send(sv[0], "", 0, ramkey_now_ms() + 1000), 0);
	assert_int_equal(
	    ramkey_frame_send(sv[0], big, sizeof(big), ramkey_now_ms() + 1000),
	    RAMKEY_ERR_TOO_LARGE);
	/* Nothing at all went out. */
	assert_int_equal(recv(sv[1], &probe, 1, MSG_DONTWAIT), -1);
	assert_true(errno == EAGAIN || errno == EWOULDBLOCK);
	close(sv[0]);
	close(sv[1]);
}

static void test_recv_silent_peer_times_out_at_deadline(void **state)
{
	uint8_t *body = (uint8_t *)"x";
	size_t len = 3;
	uint64_t start, deadline, end;
	int sv[2];

	pair(sv);
	start = ramkey_now_ms();
	deadline = start + 400;
	assert_int_equal(ramkey_frame_recv(sv[1], RAMKEY_FRAME_MAX, &body,
	    &len, deadline),
	    RAMKEY_ERR_TIMEOUT);
	end = ramkey_now_ms();
	assert_null(body);
	assert_int_equal(len, 0);
	assert_in_range(end, deadline - SLACK_MS, deadline + SLACK_MS);
	close(sv[0]);
	close(sv[1]);
}

static void test_recv_deadline_in_the_past_times_out_at_once(void **state)
{
	uint8_t *body = NULL;
	size_t len = 0;
	uint64_t start;
	int sv[2];

	pair(sv);
	start = ramkey_now_ms();
	assert_int_equal(ramkey_frame_recv(sv[1], RAMKEY_FRAME_MAX, &body,
	    &len, start - 1),
	    RAMKEY_ERR_TIMEOUT);
	assert_in_range(ramkey_now_ms(), start, start + SLACK_MS);
	close(sv[0]);
	close(sv[1]);
}

/* The deadline bounds waiting: a frame that is already here is read even
 * when the deadline has passed (the reader did slow work of its own
 * before reading), and only half a frame still times out at once. */
static void test_recv_frame_already_here_read_past_deadline(void **state)
{
	static const char msg[] = "{\"v\":1,\"op\":\"status\"}";
	uint8_t *body = NULL;
	size_t len = 0;
	uint64_t start;
	int sv[2];

	pair(sv);
	assert_int_equal(
	    ramkey_frame_send(sv[0], msg, strlen(msg), ramkey_now_ms() + 2000),
	    0);
	start = ramkey_now_ms();
	assert_int_equal(ramkey_frame_recv(sv[1], RAMKEY_FRAME_MAX, &body, &len,
	    start - 1), 0);
	assert_int_equal(len, strlen(msg));
	assert_memory_equal(body, msg, len);
	free(body);
	body = NULL;
	/* The header and part of the body: waiting for the rest is over. */
	assert_int_equal(send(sv[0], "\0\0\0\x10{\"v\"", 8, 0), 8);
	assert_int_equal(ramkey_frame_recv(sv[1], RAMKEY_FRAME_MAX, &body, &len,
	    ramkey_now_ms() - 1), RAMKEY_ERR_TIMEOUT);
	assert_null(body);
	assert_in_range(ramkey_now_ms(), start, start + SLACK_MS);
	close(sv[0]);
	close(sv[1]);
}

/* A peer that sends its bytes one at a time, every `gap_ms`. */
struct trickler {
	int fd;
	const uint8_t *buf;
	size_t len;
	unsigned gap_ms;
	atomic_bool stop;
};

static void *trickle(void *arg)
{
	struct trickler *t = arg;
	size_t i;

	for (i = 0; i < t->len && !atomic_load(&t->stop); i++) {
		if (send(t->fd, t->buf + i, 1, MSG_NOSIGNAL) != 1)
			break;
		sleep_ms(t->gap_ms);
	}
	return NULL;
}

static void test_recv_trickling_peer_within_deadline(void **state)
{
	static const char msg[] = "{\"v\":1,\"op\":\"status\",\"user\":\"al\"}";
	uint8_t wire[4 + sizeof(msg)];
	struct trickler t;
	pthread_t th;
	uint8_t *body = NULL;
	size_t len = 0;
	int sv[2];

	pair(sv);
	put_u32(wire, (uint32_t)strlen(msg));
	memcpy(wire + 4, msg, strlen(msg));
	t.fd = sv[0];
	t.buf = wire;
	t.len = 4 + strlen(msg);
	t.gap_ms = 5;
	atomic_init(&t.stop, false);
	assert_int_equal(pthread_create(&th, NULL, trickle, &t), 0);
	assert_int_equal(ramkey_frame_recv(sv[1], RAMKEY_FRAME_MAX, &body,
	    &len, ramkey_now_ms() + 5000), 0);
	assert_int_equal(len, strlen(msg));
	assert_string_equal((char *)body, msg);
	free(body);
	assert_int_equal(pthread_join(th, NULL), 0);
	close(sv[0]);
	close(sv[1]);
}

static void test_recv_trickling_peer_cannot_extend_deadline(void **state)
{
	/* Slowloris: a byte every 40 ms of a frame that never completes.
	 * The deadline covers the whole frame, not each read. */
	static uint8_t wire[4 + 1000];
	struct trickler t;
	pthread_t th;
	uint8_t *body = NULL;
	size_t len = 0;
	uint64_t deadline;
	int sv[2];

	pair(sv);
	put_u32(wire, 1000);
	memset(wire + 4, 'a', 1000);
	t.fd = sv[0];
	t.buf = wire;
	t.len = sizeof(wire);
	t.gap_ms = 40;
	atomic_init(&t.stop, false);
	assert_int_equal(pthread_create(&th, NULL, trickle, &t), 0);
	deadline = ramkey_now_ms() + 500;
	assert_int_equal(ramkey_frame_recv(sv[1], RAMKEY_FRAME_MAX, &body,
	    &len, deadline),
	    RAMKEY_ERR_TIMEOUT);
	assert_in_range(
	    ramkey_now_ms(), deadline - SLACK_MS, deadline + SLACK_MS);
	assert_null(body);
	atomic_store(&t.stop, true);
	close(sv[1]);
	assert_int_equal(pthread_join(th, NULL), 0);
	close(sv[0]);
}

static void test_recv_oversized_header_refused_before_allocating(void **state)
{
	const uint32_t sizes[] = {RAMKEY_FRAME_MAX + 1, 0x7fffffff, 0xffffffff};
	size_t i;

	for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		uint8_t hdr[4], *body = NULL;
		size_t len = 9;
		uint64_t start;
		int sv[2], r;

		pair(sv);
		put_u32(hdr, sizes[i]);
		write_raw(sv[0], hdr, 4);
		/* No body follows: the receiver must not wait for one. */
		start = ramkey_now_ms();
#if HAVE_MALLOC_HOOK
		allocations = 0;
		counting = true;
#endif
		r = ramkey_frame_recv(sv[1], RAMKEY_FRAME_MAX, &body, &len,
		    start + 3000);
#if HAVE_MALLOC_HOOK
		counting = false;
		assert_int_equal(allocations, 0);
#endif
		assert_int_equal(r, RAMKEY_ERR_TOO_LARGE);
		assert_true(ramkey_now_ms() - start < SLACK_MS);
		assert_null(body);
		assert_int_equal(len, 0);
		close(sv[0]);
		close(sv[1]);
	}
}

static void test_recv_zero_length_header_refused(void **state)
{
	const uint8_t hdr[4] = {0, 0, 0, 0};
	uint8_t *body = NULL;
	size_t len = 0;
	int sv[2];

	pair(sv);
	write_raw(sv[0], hdr, 4);
	write_raw(sv[0], "{}", 2);
	assert_int_equal(ramkey_frame_recv(sv[1], RAMKEY_FRAME_MAX, &body,
	    &len, ramkey_now_ms() + 1000),
	    RAMKEY_ERR_PROTOCOL);
	assert_null(body);
	close(sv[0]);
	close(sv[1]);
}

static void test_recv_eof_before_anything(void **state)
{
	uint8_t *body = NULL;
	size_t len = 0;
	int sv[2];

	pair(sv);
	close(sv[0]);
	assert_int_equal(ramkey_frame_recv(sv[1], RAMKEY_FRAME_MAX, &body,
	    &len, ramkey_now_ms() + 1000),
	    RAMKEY_ERR_EOF);
	assert_null(body);
	close(sv[1]);
}

static void test_recv_eof_mid_header(void **state)
{
	const uint8_t hdr[2] = {0, 0};
	uint8_t *body = NULL;
	size_t len = 0;
	int sv[2];

	pair(sv);
	write_raw(sv[0], hdr, 2);
	close(sv[0]);
	assert_int_equal(ramkey_frame_recv(sv[1], RAMKEY_FRAME_MAX, &body,
	    &len, ramkey_now_ms() + 1000),
	    RAMKEY_ERR_EOF);
	assert_null(body);
	close(sv[1]);
}

static void test_recv_eof_mid_frame(void **state)
{
	uint8_t hdr[4], *body = NULL;
	size_t len = 0;
	uint64_t start;
	int sv[2];

	pair(sv);
	put_u32(hdr, 10);
	write_raw(sv[0], hdr, 4);
	write_raw(sv[0], "abc", 3);
	close(sv[0]);
	start = ramkey_now_ms();
	assert_int_equal(ramkey_frame_recv(sv[1], RAMKEY_FRAME_MAX, &body,
	    &len, start + 3000),
	    RAMKEY_ERR_EOF);
	/* Reported at once, not at the deadline. */
	assert_true(ramkey_now_ms() - start < SLACK_MS);
	assert_null(body);
	assert_int_equal(len, 0);
	close(sv[1]);
}

static void test_send_to_closed_peer_is_eof_without_sigpipe(void **state)
{
	int sv[2];

	/* SIGPIPE keeps its default action: MSG_NOSIGNAL must hold. */
	signal(SIGPIPE, SIG_DFL);
	pair(sv);
	close(sv[1]);
	assert_int_equal(
	    ramkey_frame_send(sv[0], "hello", 5, ramkey_now_ms() + 1000),
	    RAMKEY_ERR_EOF);
	close(sv[0]);
}

static void test_send_to_peer_not_reading_times_out_at_deadline(void **state)
{
	static uint8_t big[RAMKEY_FRAME_MAX];
	uint64_t deadline;
	int sv[2], r, sz = 4096, i;

	pair(sv);
	assert_int_equal(
	    setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz)), 0);
	memset(big, 'x', sizeof(big));
	deadline = ramkey_now_ms() + 400;
	/* The peer never reads: sooner or later a send has to wait, and the
	 * wait ends at the deadline. */
	for (i = 0; i < 1000; i++)
		if ((r = ramkey_frame_send(
			 sv[0], big, sizeof(big), deadline)) != 0)
			break;
	assert_int_equal(r, RAMKEY_ERR_TIMEOUT);
	assert_in_range(
	    ramkey_now_ms(), deadline - SLACK_MS, deadline + SLACK_MS);
	close(sv[0]);
	close(sv[1]);
}

static void test_now_ms_is_monotonic(void **state)
{
	uint64_t a = ramkey_now_ms(), b;

	sleep_ms(20);
	b = ramkey_now_ms();
	assert_true(b >= a + 15);
	assert_true(b < a + 20 + SLACK_MS);
}

/* The agent's incremental reader: one byte at a time, two frames back to
 * back; it never asks for a byte of the next frame. */
static void test_reader_byte_at_a_time_stops_at_frame_end(void **state)
{
	const uint8_t stream[] = {0, 0, 0, 2, '{', '}', 0, 0, 0, 1, 'x'};
	struct ramkey_frame_reader fr;
	size_t off = 0, want, len;
	uint8_t *buf, *body;
	int r, frames = 0;

	ramkey_frame_reader_init(&fr, RAMKEY_FRAME_MAX);
	while (off < sizeof(stream)) {
		ramkey_frame_reader_space(&fr, &buf, &want);
		assert_true(want >= 1);
		assert_true(want <= sizeof(stream) - off);
		*buf = stream[off++];
		r = ramkey_frame_reader_got(&fr, 1);
		assert_true(r == 0 || r == 1);
		if (r == 1) {
			ramkey_frame_reader_take(&fr, &body, &len);
			if (frames++ == 0) {
				assert_int_equal(len, 2);
				assert_string_equal((char *)body, "{}");
			} else {
				assert_int_equal(len, 1);
				assert_string_equal((char *)body, "x");
			}
			free(body);
		}
	}
	assert_int_equal(frames, 2);
	ramkey_frame_reader_clear(&fr);
}

static void test_reader_refuses_bad_headers_before_allocating(void **state)
{
	const uint32_t sizes[] = {0, RAMKEY_FRAME_MAX + 1, 0xffffffff};
	size_t i;

	for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		struct ramkey_frame_reader fr;
		uint8_t *buf;
		size_t want;
		int r;

		ramkey_frame_reader_init(&fr, RAMKEY_FRAME_MAX);
		ramkey_frame_reader_space(&fr, &buf, &want);
		assert_int_equal(want, 4);
		put_u32(buf, sizes[i]);
#if HAVE_MALLOC_HOOK
		allocations = 0;
		counting = true;
#endif
		r = ramkey_frame_reader_got(&fr, 4);
#if HAVE_MALLOC_HOOK
		counting = false;
		assert_int_equal(allocations, 0);
#endif
		assert_int_equal(r, sizes[i] == 0 ? RAMKEY_ERR_PROTOCOL :
		    RAMKEY_ERR_TOO_LARGE);
		ramkey_frame_reader_clear(&fr);
	}
}

static void test_reader_refuses_more_than_offered(void **state)
{
	struct ramkey_frame_reader fr;
	uint8_t *buf;
	size_t want;

	ramkey_frame_reader_init(&fr, RAMKEY_FRAME_MAX);
	assert_int_equal(ramkey_frame_reader_got(&fr, 0), RAMKEY_ERR_INVALID);
	assert_int_equal(ramkey_frame_reader_got(&fr, 5), RAMKEY_ERR_INVALID);
	ramkey_frame_reader_space(&fr, &buf, &want);
	put_u32(buf, 3);
	assert_int_equal(ramkey_frame_reader_got(&fr, 4), 0);
	ramkey_frame_reader_space(&fr, &buf, &want);
	assert_int_equal(want, 3);
	assert_int_equal(ramkey_frame_reader_got(&fr, 4), RAMKEY_ERR_INVALID);
	/* A partly read frame is wiped and freed (ASan sees a leak). */
	memcpy(buf, "ab", 2);
	assert_int_equal(ramkey_frame_reader_got(&fr, 2), 0);
	ramkey_frame_reader_clear(&fr);
	ramkey_frame_reader_clear(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_header_parse_is_big_endian),
	    cmocka_unit_test(test_header_put_is_big_endian),
	    cmocka_unit_test(test_header_limit_is_65536),
	    cmocka_unit_test(test_header_zero_length_rejected),
	    cmocka_unit_test(test_send_recv_round_trip),
	    cmocka_unit_test(test_send_recv_back_to_back_frames),
	    cmocka_unit_test(test_send_recv_largest_frame),
	    cmocka_unit_test(test_send_rejects_empty_and_oversized_body),
	    cmocka_unit_test(test_recv_silent_peer_times_out_at_deadline),
	    cmocka_unit_test(test_recv_deadline_in_the_past_times_out_at_once),
	    cmocka_unit_test(test_recv_frame_already_here_read_past_deadline),
	    cmocka_unit_test(test_recv_trickling_peer_within_deadline),
	    cmocka_unit_test(test_recv_trickling_peer_cannot_extend_deadline),
	    cmocka_unit_test(
		test_recv_oversized_header_refused_before_allocating),
	    cmocka_unit_test(test_recv_zero_length_header_refused),
	    cmocka_unit_test(test_recv_eof_before_anything),
	    cmocka_unit_test(test_recv_eof_mid_header),
	    cmocka_unit_test(test_recv_eof_mid_frame),
	    cmocka_unit_test(test_send_to_closed_peer_is_eof_without_sigpipe),
	    cmocka_unit_test(
		test_send_to_peer_not_reading_times_out_at_deadline),
	    cmocka_unit_test(test_now_ms_is_monotonic),
	    cmocka_unit_test(test_reader_byte_at_a_time_stops_at_frame_end),
	    cmocka_unit_test(
		test_reader_refuses_bad_headers_before_allocating),
	    cmocka_unit_test(test_reader_refuses_more_than_offered),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
