/* Turning cloud API errors into kind errors (shared by the kinds). */
#ifndef RAMKEY_CLOUD_ERROR_H
#define RAMKEY_CLOUD_ERROR_H

#include "credential.h"
#include "ram_client.h"
#include "ram_response.h"

/* Say in words, at most once a minute, that the clock is off, when the
 * cloud refused a timestamp. */
void cloud_clock_hint(const struct ram_error *err);

/* what: "CreateAccessKey"; word: "RAM user" or "role". */
void cloud_error_to_kind(int rc, const struct ram_error *err,
    const char *what, const char *word, const char *principal,
    struct kind_error *out);

#endif
