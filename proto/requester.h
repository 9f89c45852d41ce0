/*
 * The requester side of the agent protocol, for the client and the PAM
 * module: connect, make sure the other end is the real agent, send one
 * request, read one reply, all bounded by one deadline.
 *
 * "The real agent": the socket's directory is owned by root,
 * by the RAMKEY_USER account or by the caller itself, and is not writable
 * by group or others; the socket is owned by one of those; and the peer's
 * uid (SO_PEERCRED) is one of those.
 */
#ifndef RAMKEY_REQUESTER_H
#define RAMKEY_REQUESTER_H

#include <stddef.h>
#include <stdint.h>

#include "message.h"

/*
 * Connect to the agent at path. *fdp is a blocking-free socket with
 * FD_CLOEXEC, numbered above 2. Errors: RAMKEY_ERR_CONNECT (nobody
 * listening), RAMKEY_ERR_UNTRUSTED, RAMKEY_ERR_TIMEOUT, RAMKEY_ERR_INVALID.
 * why receives one line of detail.
 */
int ramkey_agent_connect(const char *path, uint64_t deadline_ms, int *fdp,
    char *why, size_t whylen);

/* Send req on a connected fd. */
int ramkey_agent_send(int fd, const struct ramkey_request *req,
    uint64_t deadline_ms, char *why, size_t whylen);

/* Read and decode the reply to a request of op. */
int ramkey_agent_receive(int fd, enum ramkey_op op, uint64_t deadline_ms,
    struct ramkey_reply **repp, char *why, size_t whylen);

/* Send req and read its reply on a connected fd. */
int ramkey_agent_exchange(int fd, const struct ramkey_request *req,
    uint64_t deadline_ms, struct ramkey_reply **repp, char *why,
    size_t whylen);

/* Connect, exchange, close. */
int ramkey_agent_call(const char *path, const struct ramkey_request *req,
    uint64_t deadline_ms, struct ramkey_reply **repp, char *why,
    size_t whylen);

#endif
