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

/* Days from 1970-01-01 to y-m-d in the proleptic Gregorian calendar
 * (y >= 1970, m 1-12). Plain arithmetic: timegm() would read the time
 * zone files the first time it runs in a process, and this runs in the
 * PAM module at each login. */
static int64_t days_from_civil(int y, int m, int d)
{
	int64_t era, yoe, doy, doe;

	y -= m <= 2;
	era = y / 400;
	yoe = y - era * 400;
	doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

static int days_in_month(int y, int m)
{
	static const int days[] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31,
		30, 31 };
	bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;

	return m == 2 && leap ? 29 : days[m - 1];
}

int ramkey_parse_time(const char *s, int64_t *tp)
{
	int y, mo, d, h, mi, se;

	*tp = 0;
	if (s == NULL || strlen(s) != 20 || s[4] != '-' || s[7] != '-' ||
	    s[10] != 'T' || s[13] != ':' || s[16] != ':' || s[19] != 'Z')
		return RAMKEY_ERR_INVALID;
	if (digits(s, 4, &y) || digits(s + 5, 2, &mo) || digits(s + 8, 2, &d) ||
	    digits(s + 11, 2, &h) || digits(s + 14, 2, &mi) ||
	    digits(s + 17, 2, &se))
		return RAMKEY_ERR_INVALID;
	if (y < 1970 || mo < 1 || mo > 12 || d < 1 ||
	    d > days_in_month(y, mo) || h > 23 || mi > 59 || se > 60)
		return RAMKEY_ERR_INVALID;
	/* A leap second counts as the first second of the next minute, but
	 * never as the next day. */
	if (h == 23 && mi == 59 && se == 60)
		return RAMKEY_ERR_INVALID;
	*tp = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + se;
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
	/* libsodium 1.0.18 reads every byte from 0x80 up as '/' where char
	 * is signed: only the alphabet and padding get that far. */
	for (size_t i = 0; i < inlen; i++) {
		unsigned char c = (unsigned char)in[i];

		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
		    (c >= '0' && c <= '9') || c == '+' || c == '/' || c == '='))
			return RAMKEY_ERR_INVALID;
	}
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
