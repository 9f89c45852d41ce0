/*
 * pam_bench: time pam_open_session + pam_close_session through libpam, for
 * tests/bench/bench_pam_session.py (the login overhead goal,
 * tests/bench/README.md).
 *
 *   pam_bench -C CONFDIR [-n N] [-w WARMUP] [-f FIRST] [-r RHOST] [-t TTY]
 *             [-p PAUSE_MS] [-E NAME=VALUE]... USER SERVICE...
 *
 * Each iteration runs every SERVICE in turn (interleaved, so that load from
 * elsewhere hits all alike): pam_start_confdir(SERVICE, USER); PAM_RHOST,
 * PAM_TTY and the -E variables (pam_putenv) set; then the timed
 * pam_open_session and pam_close_session; then pam_end (not timed). A
 * fresh handle per login, as sshd has. With -f, USER is a prefix and
 * iteration i logs in USER<FIRST+i> (a new user each time: every open
 * mints). -p: sleep that long (untimed) after each iteration, e.g. to let
 * the agent's background revocation finish. Prints one JSON line per
 * service with the percentiles of open, close and open+close in
 * microseconds, and the return codes seen.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <security/pam_appl.h>

#define MAX_SERVICES 4
#define MAX_ENV 8

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int conv(int n, const struct pam_message **msg,
    struct pam_response **resp, void *data)
{
	int i;

	(void)data;
	*resp = NULL;
	for (i = 0; i < n; i++) {
		if (msg[i]->msg_style == PAM_ERROR_MSG ||
		    msg[i]->msg_style == PAM_TEXT_INFO)
			fprintf(stderr, "pam_bench: conv: %s\n",
			    msg[i]->msg ? msg[i]->msg : "");
		else
			return PAM_CONV_ERR;
	}
	return PAM_SUCCESS;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

static uint32_t pct(const uint32_t *v, int n, double p)
{
	int i;

	if (n == 0)
		return 0;
	i = (int)(p * (double)(n - 1) + 0.5);
	return v[i < n ? i : n - 1];
}

static void print_dist(const char *name, uint32_t *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), cmp_u32);
	printf(",\"%s_p50_us\":%" PRIu32 ",\"%s_p90_us\":%" PRIu32
	    ",\"%s_p99_us\":%" PRIu32 ",\"%s_max_us\":%" PRIu32, name,
	    pct(v, n, 0.5), name, pct(v, n, 0.9), name, pct(v, n, 0.99), name,
	    n ? v[n - 1] : 0);
}

static void usage(void)
{
	fprintf(stderr, "usage: pam_bench -C CONFDIR [-n N] [-w WARMUP] "
	    "[-f FIRST] [-r RHOST] [-t TTY] [-p PAUSE_MS] [-E NAME=VALUE]... "
	    "USER SERVICE...\n");
	exit(2);
}

int main(int argc, char **argv)
{
	struct pam_conv pc = { conv, NULL };
	const char *confdir = NULL, *rhost = "192.0.2.10", *tty = "ssh";
	const char *prefix;
	int n = 200, warmup = 5, first = -1, pause_ms = 0, opt, i, s, nsvc;
	uint32_t *open_us[MAX_SERVICES], *close_us[MAX_SERVICES],
	    *pair_us[MAX_SERVICES];
	int bad_open[MAX_SERVICES] = { 0 }, bad_close[MAX_SERVICES] = { 0 };
	int last_open_rc[MAX_SERVICES] = { 0 },
	    last_close_rc[MAX_SERVICES] = { 0 };
	char user[256];
	const char *envs[MAX_ENV];
	int nenv = 0, e;

	while ((opt = getopt(argc, argv, "C:n:w:f:r:t:p:E:")) != -1) {
		switch (opt) {
		case 'C': confdir = optarg; break;
		case 'n': n = atoi(optarg); break;
		case 'w': warmup = atoi(optarg); break;
		case 'f': first = atoi(optarg); break;
		case 'r': rhost = optarg; break;
		case 't': tty = optarg; break;
		case 'p': pause_ms = atoi(optarg); break;
		case 'E':
			if (nenv == MAX_ENV)
				usage();
			envs[nenv++] = optarg;
			break;
		default: usage();
		}
	}
	nsvc = argc - optind - 1;
	if (confdir == NULL || nsvc < 1 || nsvc > MAX_SERVICES || n < 1)
		usage();
	prefix = argv[optind];
	if (first >= 0)
		warmup = 0; /* every user mints once: nothing to warm */
	for (s = 0; s < nsvc; s++) {
		open_us[s] = calloc((size_t)n, sizeof(uint32_t));
		close_us[s] = calloc((size_t)n, sizeof(uint32_t));
		pair_us[s] = calloc((size_t)n, sizeof(uint32_t));
		if (!open_us[s] || !close_us[s] || !pair_us[s])
			return 1;
	}
	for (i = -warmup; i < n; i++) {
		if (first >= 0)
			snprintf(user, sizeof(user), "%s%d", prefix, first + i);
		else
			snprintf(user, sizeof(user), "%s", prefix);
		for (s = 0; s < nsvc; s++) {
			pam_handle_t *pamh = NULL;
			uint64_t t0, t1, t2;
			int rc;

			rc = pam_start_confdir(argv[optind + 1 + s], user, &pc,
			    confdir, &pamh);
			if (rc == PAM_SUCCESS)
				rc = pam_set_item(pamh, PAM_RHOST, rhost);
			if (rc == PAM_SUCCESS)
				rc = pam_set_item(pamh, PAM_TTY, tty);
			for (e = 0; rc == PAM_SUCCESS && e < nenv; e++)
				rc = pam_putenv(pamh, envs[e]);
			if (rc != PAM_SUCCESS) {
				fprintf(stderr, "pam_bench: pam_start %s: %s\n",
				    argv[optind + 1 + s],
				    pam_strerror(pamh, rc));
				return 1;
			}
			t0 = now_ns();
			rc = pam_open_session(pamh, 0);
			t1 = now_ns();
			last_open_rc[s] = rc;
			if (rc != PAM_SUCCESS && i >= 0)
				bad_open[s]++;
			rc = pam_close_session(pamh, 0);
			t2 = now_ns();
			last_close_rc[s] = rc;
			if (rc != PAM_SUCCESS && i >= 0)
				bad_close[s]++;
			pam_end(pamh, PAM_SUCCESS);
			if (i < 0)
				continue;
			open_us[s][i] = (uint32_t)((t1 - t0) / 1000);
			close_us[s][i] = (uint32_t)((t2 - t1) / 1000);
			pair_us[s][i] = (uint32_t)((t2 - t0) / 1000);
		}
		if (pause_ms > 0)
			usleep((useconds_t)pause_ms * 1000);
	}
	for (s = 0; s < nsvc; s++) {
		printf("{\"service\":\"%s\",\"n\":%d,\"failed_opens\":%d,"
		    "\"failed_closes\":%d,\"last_open\":\"%s\","
		    "\"last_close\":\"%s\"", argv[optind + 1 + s], n,
		    bad_open[s], bad_close[s], pam_strerror(NULL,
		    last_open_rc[s]), pam_strerror(NULL, last_close_rc[s]));
		print_dist("open", open_us[s], n);
		print_dist("close", close_us[s], n);
		print_dist("pair", pair_us[s], n);
		printf("}\n");
	}
	return 0;
}
