/*
 * Framing on the agent socket: a 4-byte big-endian length, then that many
 * bytes of UTF-8 JSON. The length is checked against RAMKEY_FRAME_MAX before
 * anything is allocated.
 */
#ifndef RAMKEY_FRAME_H
#define RAMKEY_FRAME_H

#include <stddef.h>
#include <stdint.h>

#define RAMKEY_FRAME_MAX (64 * 1024)
/* The exception: a `status` reply lists every lease of the agent (about
 * 250 bytes each) and a `metrics` reply every series; they only flow from
 * the agent to a requester that asked for one (ramkey_reply_frame_max). */
#define RAMKEY_STATUS_FRAME_MAX (16 * 1024 * 1024)
#define RAMKEY_FRAME_HDR 4

/* Decode and check a header against max (RAMKEY_FRAME_MAX unless stated).
 * Returns 0 or RAMKEY_ERR_TOO_LARGE / RAMKEY_ERR_PROTOCOL (empty frame). */
int ramkey_frame_parse_header(const uint8_t hdr[RAMKEY_FRAME_HDR],
    size_t *lenp);
int ramkey_frame_parse_header_max(const uint8_t hdr[RAMKEY_FRAME_HDR],
    size_t max, size_t *lenp);

/* Encode a header for a body of len bytes (1..RAMKEY_FRAME_MAX, or max). */
int ramkey_frame_put_header(uint8_t hdr[RAMKEY_FRAME_HDR], size_t len);
int ramkey_frame_put_header_max(uint8_t hdr[RAMKEY_FRAME_HDR], size_t len,
    size_t max);

/*
 * Blocking I/O with a deadline (CLOCK_MONOTONIC milliseconds, see
 * ramkey_now_ms()) on a non-blocking or blocking socket. Every wait is a
 * poll() bounded by the deadline; bytes already received are read even
 * after it; writes use MSG_NOSIGNAL.
 * Return 0, RAMKEY_ERR_TIMEOUT, RAMKEY_ERR_EOF, RAMKEY_ERR_TOO_LARGE,
 * RAMKEY_ERR_PROTOCOL or RAMKEY_ERR_SYSTEM.
 */
int ramkey_frame_send(int fd, const void *body, size_t len,
    uint64_t deadline_ms);
/* *bodyp is malloc'd and NUL-terminated (not counted in *lenp); the caller
 * wipes and frees it. Frames over max are refused before allocating. */
int ramkey_frame_recv(int fd, size_t max, uint8_t **bodyp, size_t *lenp,
    uint64_t deadline_ms);

/*
 * Reading frames incrementally from a non-blocking socket (the agent's
 * connections): the caller reads into the space the reader offers and
 * says how many bytes came. The header is checked against max before the
 * body is allocated, and the reader never asks for a byte past the end of
 * the frame, so the next frame's bytes stay in the socket. Start from
 * ramkey_frame_reader_init() (or all zeros, with max set).
 */
struct ramkey_frame_reader {
	size_t max;
	uint8_t hdr[RAMKEY_FRAME_HDR];
	size_t hdr_have;
	uint8_t *body; /* body_len + 1 bytes once the header is in */
	size_t body_len, body_have;
};

void ramkey_frame_reader_init(struct ramkey_frame_reader *fr, size_t max);
/* Where the next bytes go: *bufp, at most *lenp (at least 1) bytes; not
 * to be called after an error from ramkey_frame_reader_got(). */
void ramkey_frame_reader_space(struct ramkey_frame_reader *fr, uint8_t **bufp,
    size_t *lenp);
/*
 * n bytes (1 up to what ramkey_frame_reader_space() offered) were read
 * into that space. Returns 0 (more to read), 1 (a whole frame is in: take
 * it), RAMKEY_ERR_TOO_LARGE or RAMKEY_ERR_PROTOCOL (a bad header: the
 * stream cannot go on), RAMKEY_ERR_NOMEM or RAMKEY_ERR_INVALID (n out of
 * range).
 */
int ramkey_frame_reader_got(struct ramkey_frame_reader *fr, size_t n);
/* Only after 1 from ramkey_frame_reader_got(): the body (malloc'd,
 * NUL-terminated, not counted in *lenp; the caller wipes and frees it).
 * The reader is then ready for the next frame. */
void ramkey_frame_reader_take(struct ramkey_frame_reader *fr, uint8_t **bodyp,
    size_t *lenp);
/* Wipe and free what a partly read frame holds; the reader starts over.
 * Accepts NULL. */
void ramkey_frame_reader_clear(struct ramkey_frame_reader *fr);

/* Milliseconds on CLOCK_MONOTONIC. */
uint64_t ramkey_now_ms(void);

#endif
