/*
 * Fuzz target: the agent socket's parsers (proto/frame.c, proto/message.c)
 * on the same bytes: the frame header, the input as a frame stream read
 * by ramkey_frame_recv() over a socketpair, and every body (the whole
 * input, and the received frame's body) decoded as a request and as the
 * reply to each op. Whatever decodes must encode again and decode to the
 * same thing.
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "frame.h"
#include "message.h"
#include "ramkey_err.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(x)                                                               \
	do {                                                                   \
		if (!(x))                                                      \
			abort();                                               \
	} while (0)

static int same_str(const char *a, const char *b)
{
	if (a == NULL || b == NULL)
		return a == b;
	return strcmp(a, b) == 0;
}

static void check_request(const struct ramkey_request *req)
{
	struct ramkey_request *back = NULL;
	char *text = NULL, *text2 = NULL;
	size_t len = 0, len2 = 0;

	/* Whatever was accepted can be sent on. */
	CHECK(ramkey_request_encode(req, &text, &len) == 0);
	CHECK(strlen(text) == len);
	CHECK(ramkey_request_decode((const uint8_t *)text, len, &back) == 0);
	CHECK(back->op == req->op);
	CHECK(same_str(back->user, req->user));
	CHECK(back->has_seal_pk == req->has_seal_pk);
	CHECK(memcmp(back->seal_pk, req->seal_pk, sizeof(req->seal_pk)) == 0 ||
	    !req->has_seal_pk);
	CHECK(same_str(back->pgp_key, req->pgp_key));
	CHECK(same_str(back->secret_file, req->secret_file));
	CHECK(same_str(back->rhost, req->rhost));
	CHECK(same_str(back->tty, req->tty));
	CHECK(same_str(back->service, req->service));
	CHECK(same_str(back->session, req->session));
	CHECK(same_str(back->key_id, req->key_id));
	CHECK(same_str(back->status, req->status));
	CHECK(back->has_ttl == req->has_ttl && back->ttl == req->ttl);
	/* The encoding is canonical. */
	CHECK(ramkey_request_encode(back, &text2, &len2) == 0);
	CHECK(len2 == len && memcmp(text, text2, len) == 0);
	free(text);
	free(text2);
	ramkey_request_free(back);
}

static void check_reply(const struct ramkey_reply *rep, enum ramkey_op op)
{
	struct ramkey_reply *back = NULL;
	char *text = NULL;
	size_t len = 0;
	int r;

	CHECK(rep->op == op);
	CHECK(rep->error <= 0 && rep->error >= RAMKEY_ERR_MIN_);
	if (rep->error != 0)
		CHECK(rep->error_message != NULL);
	r = ramkey_reply_encode(rep, &text, &len);
	/* Compact output of the accepted document can only grow by
	 * re-escaping; it must still fit or be refused cleanly. */
	CHECK(r == 0 || r == RAMKEY_ERR_TOO_LARGE);
	if (r != 0)
		return;
	CHECK(ramkey_reply_decode((const uint8_t *)text, len, op, &back) == 0);
	CHECK(back->error == rep->error);
	CHECK(same_str(back->error_message, rep->error_message));
	CHECK(same_str(back->ram_code, rep->ram_code));
	CHECK(same_str(back->key.access_key_id, rep->key.access_key_id));
	CHECK(back->key.sealed_len == rep->key.sealed_len);
	CHECK(same_str(back->session, rep->session));
	CHECK(back->revoked == rep->revoked);
	CHECK(back->last_session == rep->last_session);
	CHECK(same_str(back->metrics, rep->metrics));
	free(text);
	ramkey_reply_free(back);
}

static void decode_body(const uint8_t *buf, size_t len)
{
	static const enum ramkey_op ops[] = {RAMKEY_OP_OPEN_SESSION,
	    RAMKEY_OP_CLOSE_SESSION, RAMKEY_OP_FETCH, RAMKEY_OP_REVOKE,
	    RAMKEY_OP_STATUS, RAMKEY_OP_SET_STATUS, RAMKEY_OP_METRICS};
	struct ramkey_request *req = NULL;
	size_t i;

	if (ramkey_request_decode(buf, len, &req) == 0) {
		check_request(req);
		ramkey_request_free(req);
	} else {
		CHECK(req == NULL);
	}
	for (i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
		struct ramkey_reply *rep = NULL;

		if (ramkey_reply_decode(buf, len, ops[i], &rep) == 0) {
			check_reply(rep, ops[i]);
			ramkey_reply_free(rep);
		} else {
			CHECK(rep == NULL);
		}
	}
}

/* Feed the input as a byte stream to ramkey_frame_recv(). */
static void recv_stream(const uint8_t *data, size_t size)
{
	uint8_t *body = NULL;
	size_t len = 0;
	int sv[2], r;
	ssize_t n;

	if (size > RAMKEY_FRAME_MAX + RAMKEY_FRAME_HDR ||
	    socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
		return;
	n = size > 0 ? send(sv[0], data, size, MSG_DONTWAIT | MSG_NOSIGNAL) : 0;
	shutdown(sv[0], SHUT_WR);
	if (n == (ssize_t)size) {
		r = ramkey_frame_recv(sv[1], RAMKEY_FRAME_MAX, &body, &len,
		    ramkey_now_ms() + 2000);
		/* Everything is in the socket: no outcome needs a wait. */
		CHECK(r != RAMKEY_ERR_TIMEOUT);
		if (r == 0) {
			uint8_t hdr[RAMKEY_FRAME_HDR];

			CHECK(body != NULL && len >= 1 &&
			    len <= RAMKEY_FRAME_MAX && body[len] == '\0');
			CHECK(len + RAMKEY_FRAME_HDR <= size);
			CHECK(memcmp(body, data + RAMKEY_FRAME_HDR, len) == 0);
			CHECK(ramkey_frame_put_header(hdr, len) == 0);
			CHECK(memcmp(hdr, data, RAMKEY_FRAME_HDR) == 0);
			decode_body(body, len);
			free(body);
		} else {
			CHECK(body == NULL && len == 0);
		}
	}
	close(sv[0]);
	close(sv[1]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t len = 1;

	if (size >= RAMKEY_FRAME_HDR) {
		int r = ramkey_frame_parse_header(data, &len);

		CHECK(r == 0 || r == RAMKEY_ERR_TOO_LARGE ||
		    r == RAMKEY_ERR_PROTOCOL);
		CHECK(r == 0 ? len >= 1 && len <= RAMKEY_FRAME_MAX : len == 0);
	}
	decode_body(data, size);
	recv_stream(data, size);
	return 0;
}
