/*
 * A test-only NSS module (libnss_ramkeytest.so.2): a directory service
 * that knows one user, and is slow to answer for it. nss_wrapper loads it
 * after its own passwd and group files (NSS_WRAPPER_MODULE_SO_PATH,
 * NSS_WRAPPER_MODULE_FN_PREFIX=ramkeytest), so every other name is
 * answered from the files at once, and a lookup of this user takes
 * RAMKEY_NSSTEST_DELAY_MS.
 *
 *   RAMKEY_NSSTEST_USER      the slow user's name
 *   RAMKEY_NSSTEST_UID       its uid (and gid)
 *   RAMKEY_NSSTEST_DELAY_MS  how long each lookup of it takes
 *
 * Each lookup of the user (by name or by uid) appends a line to
 * RAMKEY_NSSTEST_LOG, if set: "<ms since the epoch> <name or uid> start"
 * and "... end", so a test can tell when lookups ran.
 */
#include <errno.h>
#include <grp.h>
#include <nss.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>

enum nss_status _nss_ramkeytest_getpwnam_r(const char *name,
    struct passwd *pw, char *buf, size_t len, int *errnop);
enum nss_status _nss_ramkeytest_getpwuid_r(uid_t uid, struct passwd *pw,
    char *buf, size_t len, int *errnop);
enum nss_status _nss_ramkeytest_setpwent(void);
enum nss_status _nss_ramkeytest_getpwent_r(struct passwd *pw, char *buf,
    size_t len, int *errnop);
enum nss_status _nss_ramkeytest_endpwent(void);
enum nss_status _nss_ramkeytest_getgrnam_r(const char *name,
    struct group *gr, char *buf, size_t len, int *errnop);
enum nss_status _nss_ramkeytest_getgrgid_r(gid_t gid, struct group *gr,
    char *buf, size_t len, int *errnop);
enum nss_status _nss_ramkeytest_setgrent(void);
enum nss_status _nss_ramkeytest_getgrent_r(struct group *gr, char *buf,
    size_t len, int *errnop);
enum nss_status _nss_ramkeytest_endgrent(void);
enum nss_status _nss_ramkeytest_initgroups_dyn(const char *user,
    gid_t group, long int *start, long int *size, gid_t **groups,
    long int limit, int *errnop);

static const char *slow_user(void)
{
	return getenv("RAMKEY_NSSTEST_USER");
}

static uid_t slow_uid(void)
{
	const char *v = getenv("RAMKEY_NSSTEST_UID");

	return v != NULL ? (uid_t)strtoul(v, NULL, 10) : (uid_t)-1;
}

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void note(const char *what, const char *key)
{
	const char *path = getenv("RAMKEY_NSSTEST_LOG");
	FILE *f;

	if (path == NULL || (f = fopen(path, "ae")) == NULL)
		return;
	fprintf(f, "%lld %s %s\n", now_ms(), key, what);
	fclose(f);
}

/* The directory service thinks it over. */
static void delay(const char *key)
{
	const char *v = getenv("RAMKEY_NSSTEST_DELAY_MS");
	long ms = v != NULL ? strtol(v, NULL, 10) : 0;
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	note("start", key);
	while (ms > 0 && nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
	note("end", key);
}

static enum nss_status fill(struct passwd *pw, char *buf, size_t len,
    int *errnop)
{
	const char *name = slow_user();
	int n;

	n = snprintf(buf, len, "%s%c%s%c/nonexistent%c/bin/sh", name, '\0',
	    "x", '\0', '\0');
	if (n < 0 || (size_t)n >= len) {
		*errnop = ERANGE;
		return NSS_STATUS_TRYAGAIN;
	}
	pw->pw_name = buf;
	pw->pw_passwd = buf + strlen(name) + 1;
	pw->pw_dir = pw->pw_passwd + 2;
	pw->pw_shell = pw->pw_dir + strlen("/nonexistent") + 1;
	pw->pw_gecos = pw->pw_passwd + 1; /* "" */
	pw->pw_uid = slow_uid();
	pw->pw_gid = slow_uid();
	return NSS_STATUS_SUCCESS;
}

enum nss_status _nss_ramkeytest_getpwnam_r(const char *name,
    struct passwd *pw, char *buf, size_t len, int *errnop)
{
	const char *slow = slow_user();

	if (slow == NULL || strcmp(name, slow) != 0)
		return NSS_STATUS_NOTFOUND;
	delay(name);
	return fill(pw, buf, len, errnop);
}

enum nss_status _nss_ramkeytest_getpwuid_r(uid_t uid, struct passwd *pw,
    char *buf, size_t len, int *errnop)
{
	char key[24];

	if (slow_user() == NULL || uid != slow_uid())
		return NSS_STATUS_NOTFOUND;
	snprintf(key, sizeof(key), "%lu", (unsigned long)uid);
	delay(key);
	return fill(pw, buf, len, errnop);
}

enum nss_status _nss_ramkeytest_setpwent(void)
{
	return NSS_STATUS_SUCCESS;
}

enum nss_status _nss_ramkeytest_getpwent_r(struct passwd *pw, char *buf,
    size_t len, int *errnop)
{
	(void)pw;
	(void)buf;
	(void)len;
	(void)errnop;
	return NSS_STATUS_NOTFOUND;
}

enum nss_status _nss_ramkeytest_endpwent(void)
{
	return NSS_STATUS_SUCCESS;
}

enum nss_status _nss_ramkeytest_getgrnam_r(const char *name,
    struct group *gr, char *buf, size_t len, int *errnop)
{
	(void)name;
	(void)gr;
	(void)buf;
	(void)len;
	(void)errnop;
	return NSS_STATUS_NOTFOUND;
}

enum nss_status _nss_ramkeytest_getgrgid_r(gid_t gid, struct group *gr,
    char *buf, size_t len, int *errnop)
{
	(void)gid;
	(void)gr;
	(void)buf;
	(void)len;
	(void)errnop;
	return NSS_STATUS_NOTFOUND;
}

enum nss_status _nss_ramkeytest_setgrent(void)
{
	return NSS_STATUS_SUCCESS;
}

enum nss_status _nss_ramkeytest_getgrent_r(struct group *gr, char *buf,
    size_t len, int *errnop)
{
	(void)gr;
	(void)buf;
	(void)len;
	(void)errnop;
	return NSS_STATUS_NOTFOUND;
}

enum nss_status _nss_ramkeytest_endgrent(void)
{
	return NSS_STATUS_SUCCESS;
}

enum nss_status _nss_ramkeytest_initgroups_dyn(const char *user,
    gid_t group, long int *start, long int *size, gid_t **groups,
    long int limit, int *errnop)
{
	(void)user;
	(void)group;
	(void)start;
	(void)size;
	(void)groups;
	(void)limit;
	(void)errnop;
	return NSS_STATUS_NOTFOUND;
}
