/* Small helpers shared by the agent, the client and the PAM module. */
#ifndef RAMKEY_UTIL_H
#define RAMKEY_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define RAMKEY_MASKED_MAX 24

/*
 * Mask an AccessKeyId for display and logs: the first 4 and last 4
 * characters around "****" ("LTAI****abcd"). Ids of 8 characters or fewer
 * become "****". out must hold RAMKEY_MASKED_MAX bytes.
 */
void ramkey_mask_key_id(const char *id, char out[RAMKEY_MASKED_MAX]);

/* RFC 3339 UTC ("2026-11-27T20:18:10Z") of a Unix time; out >= 21 bytes. */
void ramkey_format_time(int64_t t, char out[32]);

/* Parse exactly "YYYY-MM-DDTHH:MM:SSZ" into Unix seconds. */
int ramkey_parse_time(const char *s, int64_t *tp);

/* Wall clock, Unix seconds. */
int64_t ramkey_wall_now(void);

/* True if s is a plausible AccessKeyId: 1..64 of [A-Za-z0-9._-]. */
bool ramkey_valid_key_id(const char *s);

/* True if s is a safe local user name: 1..256 bytes of printable ASCII,
 * none of '/', ':', ',', whitespace, and not starting with '-'. */
bool ramkey_valid_user_name(const char *s);

/* RAM's UserName rule: 1-64 of A-Za-z0-9._- */
bool ramkey_valid_ram_user(const char *s);

/* Standard base64 with padding. *out is malloc'd, NUL-terminated. */
int ramkey_b64_encode(const uint8_t *in, size_t len, char **out);
/* Strict decode of standard base64; *out malloc'd; *outlen set. */
int ramkey_b64_decode(const char *in, size_t inlen, uint8_t **out,
    size_t *outlen);

/* Wipe and free a NUL-terminated string (accepts NULL). */
void ramkey_free_secret_str(char *s);

/* Wipe and free len bytes (accepts NULL). */
void ramkey_free_secret(void *p, size_t len);

/* Constant-time string equality. */
bool ramkey_str_eq_ct(const char *a, const char *b);

#endif
