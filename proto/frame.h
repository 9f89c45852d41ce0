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

/* Milliseconds on CLOCK_MONOTONIC. */
uint64_t ramkey_now_ms(void);

#endif
