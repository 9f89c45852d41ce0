/*
 * A response body as libcurl delivers it: bounded (a larger body aborts
 * the transfer, and says so), and wiped when freed or grown, because a
 * CreateAccessKey or AssumeRole answer carries a secret.
 */
#ifndef RAMKEY_HTTP_BODY_H
#define RAMKEY_HTTP_BODY_H

#include <stdbool.h>
#include <stddef.h>

struct http_body {
	char *data;	/* NUL-terminated once anything arrived */
	size_t len, cap;
	size_t max;	/* the bound; 0 = none */
	bool overflow;	/* the answer went over max */
	bool nomem;
};

/* CURLOPT_WRITEFUNCTION; CURLOPT_WRITEDATA is the struct http_body. */
size_t http_body_write(char *p, size_t size, size_t nmemb, void *body);
/* Wipe and free; keeps max. Accepts a zeroed body. */
void http_body_clear(struct http_body *b);

#endif
