/*
 * Fuzz target: the agent's incremental frame reader (proto/frame.c,
 * struct ramkey_frame_reader), which reads every byte a local user sends
 * to the socket. The first input byte chooses the limit (the real 64 KiB,
 * or a small one so that short inputs reach the over-limit path) and how
 * many of the next bytes give the sizes of the reads; the rest is the
 * byte stream, fed in those pieces. Whatever the pieces, the frames and
 * the error must be those a one-shot parse of the whole stream finds, and
 * the reader must never ask for a byte past the end of a frame. Each
 * whole frame is decoded as a request, as the agent does.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "frame.h"
#include "message.h"
#include "ramkey_err.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(x)                                                               \
	do {                                                                   \
		if (!(x))                                                      \
			abort();                                               \
	} while (0)

/* What a one-shot parse finds at offset off: 1 and the frame's length,
 * 0 (incomplete), or the header's error. */
static int expect_at(const uint8_t *s, size_t n, size_t off, size_t max,
    size_t *lenp)
{
	int r;

	*lenp = 0;
	if (n - off < RAMKEY_FRAME_HDR)
		return 0;
	if ((r = ramkey_frame_parse_header_max(s + off, max, lenp)) != 0)
		return r;
	return n - off - RAMKEY_FRAME_HDR >= *lenp ? 1 : 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ramkey_frame_reader fr;
	const uint8_t *sched, *s;
	size_t nsched, n, max, off = 0, frame_start = 0, piece = 0;
	size_t exp_len = 0;
	int exp;

	if (size < 1)
		return 0;
	max = (data[0] & 0x80) ? (size_t)(data[0] & 0x3f) + 1 :
	    RAMKEY_FRAME_MAX;
	nsched = (size_t)(data[0] >> 3 & 0x7);
	if (nsched > size - 1)
		nsched = size - 1;
	sched = data + 1;
	s = data + 1 + nsched;
	n = size - 1 - nsched;

	ramkey_frame_reader_init(&fr, max);
	exp = expect_at(s, n, frame_start, max, &exp_len);
	while (off < n) {
		uint8_t *buf;
		size_t want, take;
		int r;

		ramkey_frame_reader_space(&fr, &buf, &want);
		CHECK(want >= 1);
		/* Never past the end of the frame being read. */
		if (off - frame_start < RAMKEY_FRAME_HDR)
			CHECK(off + want <= frame_start + RAMKEY_FRAME_HDR);
		else
			CHECK(off + want ==
			    frame_start + RAMKEY_FRAME_HDR + exp_len);
		take = nsched > 0 ? (size_t)sched[piece++ % nsched] + 1 : n;
		if (take > want)
			take = want;
		if (take > n - off)
			take = n - off;
		memcpy(buf, s + off, take);
		off += take;
		r = ramkey_frame_reader_got(&fr, take);
		if (r < 0) {
			/* The header is wrong: exactly the one-shot error,
			 * found as its last byte came. */
			CHECK(r == exp);
			CHECK(off == frame_start + RAMKEY_FRAME_HDR);
			ramkey_frame_reader_clear(&fr);
			return 0;
		}
		if (r == 1) {
			struct ramkey_request *req = NULL;
			uint8_t *body = NULL;
			size_t len = 0;

			CHECK(exp == 1);
			ramkey_frame_reader_take(&fr, &body, &len);
			CHECK(body != NULL && len == exp_len && body[len] == 0);
			CHECK(off == frame_start + RAMKEY_FRAME_HDR + len);
			CHECK(memcmp(body, s + frame_start + RAMKEY_FRAME_HDR,
			    len) == 0);
			if (ramkey_request_decode(body, len, &req) == 0)
				ramkey_request_free(req);
			else
				CHECK(req == NULL);
			free(body);
			frame_start = off;
			exp = expect_at(s, n, frame_start, max, &exp_len);
			continue;
		}
		/* More to read: the one-shot parse agrees that the frame
		 * goes on past what has come, or its header is incomplete. */
		CHECK(exp != 1 ||
		    off < frame_start + RAMKEY_FRAME_HDR + exp_len);
		if (off - frame_start >= RAMKEY_FRAME_HDR)
			CHECK(exp >= 0);
	}
	/* The stream ended inside a frame, or between two. */
	CHECK(exp == 0);
	ramkey_frame_reader_clear(&fr);
	return 0;
}
