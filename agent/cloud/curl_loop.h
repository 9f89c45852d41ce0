/*
 * Drive a libcurl multi handle from an evloop: the socket and timer
 * callbacks of curl's multi_socket interface, shared by the RAM client and
 * the Keybase lookups. Embedded in its owner; the owner's action callback
 * runs curl_multi_socket_action() (and whatever completes) so that it can
 * guard its own lifetime around it.
 */
#ifndef RAMKEY_CURL_LOOP_H
#define RAMKEY_CURL_LOOP_H

#include <stdbool.h>
#include <stddef.h>

#include <curl/curl.h>

#include "evloop.h"

/* fd is a socket with CURL_CSELECT_* flags, or CURL_SOCKET_TIMEOUT. */
typedef void (*curl_loop_action_fn)(void *owner, curl_socket_t fd,
    int flags);
/* A transfer finished (its CURLOPT_PRIVATE and result). */
typedef void (*curl_loop_done_fn)(void *owner, void *priv, CURL *easy,
    CURLcode result);

struct curl_loop {
	struct evloop *loop;
	CURLM *multi;
	curl_loop_action_fn action;
	curl_loop_done_fn done;
	void *owner;
	struct ev_timer timer;
	unsigned char *fds; /* registered with the loop, by fd */
	size_t nfds;
};

/* Install the callbacks on multi. Returns 0 or RAMKEY_ERR_INTERNAL. */
int curl_loop_init(struct curl_loop *cl, struct evloop *loop, CURLM *multi,
    curl_loop_action_fn action, curl_loop_done_fn done, void *owner);
/*
 * Let libcurl move on fd (the owner's action callback calls this, inside
 * its own lifetime guard), then hand every finished transfer to done,
 * until *stop turns true (the owner is being freed).
 */
void curl_loop_drive(struct curl_loop *cl, curl_socket_t fd, int flags,
    const bool *stop);
/* Forget every fd and the timer (after curl_multi_cleanup). */
void curl_loop_cleanup(struct curl_loop *cl);

/* Every socket libcurl opens is close-on-exec (the agent runs gpg): set
 * this as CURLOPT_OPENSOCKETFUNCTION on each easy handle. */
curl_socket_t curl_loop_open_socket(void *clientp, curlsocktype purpose,
    struct curl_sockaddr *a);

#endif
