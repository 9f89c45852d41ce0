#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "ramkey_err.h"
#include "util.h"

void ramkey_mask_key_id(const char *id, char out[RAMKEY_MASKED_MAX])
{
	size_t n = id != NULL ? strlen(id) : 0;

	if (n <= 8 || n > 64) {
		snprintf(out, RAMKEY_MASKED_MAX, "****");
		return;
	}
	snprintf(out, RAMKEY_MASKED_MAX, "%.4s****%s", id, id + n - 4);
}

void ramkey_format_time(int64_t t, char out[32])
{
	struct tm tm;
	time_t tt = (time_t)t;

	if (gmtime_r(&tt, &tm) == NULL ||
	    strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		snprintf(out, 32, "1970-01-01T00:00:00Z");
}

static int digits(const char *s, int n, int *v)
{
	int i, x = 0;

	for (i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		x = x * 10 + (s[i] - '0');
	}
	*v = x;
	return 0;
}

int ramkey_parse_time(const char *s, int64_t *tp)
{
	struct tm tm;
	int y, mo, d, h, mi, se;
	time_t t;

	*tp = 0;
	if (s == NULL || strlen(s) != 20 || s[4] != '-' || s[7] != '-' ||
	    s[10] != 'T' || s[13] != ':' || s[16] != ':' || s[19] != 'Z')
		return RAMKEY_ERR_INVALID;
	if (digits(s, 4, &y) || digits(s + 5, 2, &mo) || digits(s + 8, 2, &d) ||
	    digits(s + 11, 2, &h) || digits(s + 14, 2, &mi) ||
	    digits(s + 17, 2, &se))
		return RAMKEY_ERR_INVALID;
	if (y < 1970 || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 ||
	    mi > 59 || se > 60)
		return RAMKEY_ERR_INVALID;
	memset(&tm, 0, sizeof(tm));
	tm.tm_year = y - 1900;
	tm.tm_mon = mo - 1;
	tm.tm_mday = d;
	tm.tm_hour = h;
	tm.tm_min = mi;
	tm.tm_sec = se;
	if ((t = timegm(&tm)) == (time_t)-1)
		return RAMKEY_ERR_INVALID;
	/* timegm normalises 31 February; a round trip rejects it. */
	if (tm.tm_mday != d || tm.tm_mon != mo - 1)
		return RAMKEY_ERR_INVALID;
	*tp = (int64_t)t;
	return 0;
}

int64_t ramkey_wall_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec;
}

bool ramkey_valid_key_id(const char *s)
{
	size_t i, n;

	if (s == NULL || (n = strlen(s)) == 0 || n > 64)
		return false;
	for (i = 0; i < n; i++)
		if (!isalnum((unsigned char)s[i]) && s[i] != '.' &&
		    s[i] != '_' && s[i] != '-')
			return false;
	return true;
}

bool ramkey_valid_user_name(const char *s)
{
	size_t i, n;

	if (s == NULL || (n = strlen(s)) == 0 || n > 256 || s[0] == '-')
		return false;
	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c <= 0x20 || c >= 0x7f || c == '/' || c == ':' || c == ',')
			return false;
	}
	return true;
}

bool ramkey_valid_ram_user(const char *s)
{
	/* RAM's UserName rule happens to be the AccessKeyId alphabet. */
	return ramkey_valid_key_id(s);
}

int ramkey_b64_encode(const uint8_t *in, size_t len, char **out)
{
	size_t n = sodium_base64_encoded_len(len,
	    sodium_base64_VARIANT_ORIGINAL);
	char *s;

	*out = NULL;
	if ((s = malloc(n)) == NULL)
		return RAMKEY_ERR_NOMEM;
	sodium_bin2base64(s, n, in, len, sodium_base64_VARIANT_ORIGINAL);
	*out = s;
	return 0;
}

int ramkey_b64_decode(const char *in, size_t inlen, uint8_t **out,
    size_t *outlen)
{
	uint8_t *buf;
	size_t cap = inlen / 4 * 3 + 3, n = 0;
	const char *end = NULL;

	*out = NULL;
	*outlen = 0;
	if ((buf = malloc(cap + 1)) == NULL)
		return RAMKEY_ERR_NOMEM;
	if (sodium_base642bin(buf, cap, in, inlen, NULL, &n, &end,
	    sodium_base64_VARIANT_ORIGINAL) != 0 || end != in + inlen) {
		sodium_memzero(buf, cap + 1);
		free(buf);
		return RAMKEY_ERR_INVALID;
	}
	*out = buf;
	*outlen = n;
	return 0;
}

void ramkey_free_secret_str(char *s)
{
	if (s == NULL)
		return;
	sodium_memzero(s, strlen(s));
	free(s);
}

void ramkey_free_secret(void *p, size_t len)
{
	if (p == NULL)
		return;
	sodium_memzero(p, len);
	free(p);
}

bool ramkey_str_eq_ct(const char *a, const char *b)
{
	size_t la, lb;

	if (a == NULL || b == NULL)
		return false;
	la = strlen(a);
	lb = strlen(b);
	if (la != lb)
		return false;
	return sodium_memcmp(a, b, la) == 0;
}
