/*
 * pam_session_driver: hold one PAM handle open and drive it from stdin, so
 * that a test can open a session, inspect the secret_file and the RAM
 * emulator while it is open, and close it later in the same process
 * (pam_get_data state lives in the process that opened the session).
 *
 * Usage: pam_session_driver [-r RHOST] [-t TTY] [-E NAME=VALUE]...
 *                           [-C CONFDIR] SERVICE USER
 *
 * Without -C the service is read by pam_start(), which under pam_wrapper
 * (LD_PRELOAD=libpam_wrapper.so PAM_WRAPPER=1 PAM_WRAPPER_SERVICE_DIR=...)
 * comes from the test's service directory. With -C, pam_start_confdir()
 * reads CONFDIR directly and no wrapper is needed.
 *
 * Commands, one per line on stdin; every answer is one line on stdout:
 *   open                 pam_open_session  -> "open RC NAME MS"
 *   close                pam_close_session -> "close RC NAME MS"
 *   env                  pam_getenvlist    -> "env {json object}"
 *   putenv NAME=VALUE    pam_putenv        -> "putenv RC NAME"
 *   quit                 pam_end, exit     -> "quit RC NAME"
 * RC is the number libpam returned, NAME its PAM_* name, MS the wall time
 * the call took in milliseconds. The first line printed is
 * "start RC NAME" for pam_start itself.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <security/pam_appl.h>

#define MAX_ENV 32

static const char *rc_name(int rc)
{
	switch (rc) {
	case PAM_SUCCESS:
		return "PAM_SUCCESS";
	case PAM_OPEN_ERR:
		return "PAM_OPEN_ERR";
	case PAM_SYMBOL_ERR:
		return "PAM_SYMBOL_ERR";
	case PAM_SERVICE_ERR:
		return "PAM_SERVICE_ERR";
	case PAM_SYSTEM_ERR:
		return "PAM_SYSTEM_ERR";
	case PAM_BUF_ERR:
		return "PAM_BUF_ERR";
	case PAM_PERM_DENIED:
		return "PAM_PERM_DENIED";
	case PAM_AUTH_ERR:
		return "PAM_AUTH_ERR";
	case PAM_USER_UNKNOWN:
		return "PAM_USER_UNKNOWN";
	case PAM_SESSION_ERR:
		return "PAM_SESSION_ERR";
	case PAM_CRED_ERR:
		return "PAM_CRED_ERR";
	case PAM_CONV_ERR:
		return "PAM_CONV_ERR";
	case PAM_ABORT:
		return "PAM_ABORT";
	case PAM_BAD_ITEM:
		return "PAM_BAD_ITEM";
	case PAM_IGNORE:
		return "PAM_IGNORE";
	default:
		return "PAM_OTHER";
	}
}

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Show module messages on stderr; answer no prompts. */
static int conv(int n, const struct pam_message **msg,
    struct pam_response **resp, void *data)
{
	int i;

	(void)data;
	*resp = NULL;
	for (i = 0; i < n; i++) {
		if (msg[i]->msg_style == PAM_ERROR_MSG ||
		    msg[i]->msg_style == PAM_TEXT_INFO)
			fprintf(stderr, "pam_session_driver: conv: %s\n",
			    msg[i]->msg ? msg[i]->msg : "");
		else
			return PAM_CONV_ERR;
	}
	return PAM_SUCCESS;
}

static void json_str(const char *s)
{
	putchar('"');
	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\')
			printf("\\%c", c);
		else if (c < 0x20)
			printf("\\u%04x", c);
		else
			putchar(c);
	}
	putchar('"');
}

static void print_env(pam_handle_t *pamh)
{
	char **list = pam_getenvlist(pamh);
	int i, first = 1;

	printf("env {");
	for (i = 0; list != NULL && list[i] != NULL; i++) {
		char *eq = strchr(list[i], '=');

		if (eq == NULL)
			continue;
		*eq = '\0';
		printf("%s", first ? "" : ",");
		first = 0;
		json_str(list[i]);
		putchar(':');
		json_str(eq + 1);
		*eq = '=';
	}
	printf("}\n");
	for (i = 0; list != NULL && list[i] != NULL; i++)
		free(list[i]);
	free(list);
}

static void usage(void)
{
	fprintf(stderr,
	    "usage: pam_session_driver [-r RHOST] [-t TTY] "
	    "[-E NAME=VALUE]... [-C CONFDIR] SERVICE USER\n");
	exit(2);
}

int main(int argc, char **argv)
{
	struct pam_conv pc = {conv, NULL};
	pam_handle_t *pamh = NULL;
	const char *rhost = NULL, *tty = NULL, *confdir = NULL;
	const char *envs[MAX_ENV];
	int nenv = 0, opt, rc, i;
	char line[4096];

	while ((opt = getopt(argc, argv, "r:t:E:C:")) != -1) {
		switch (opt) {
		case 'r':
			rhost = optarg;
			break;
		case 't':
			tty = optarg;
			break;
		case 'C':
			confdir = optarg;
			break;
		case 'E':
			if (nenv == MAX_ENV)
				usage();
			envs[nenv++] = optarg;
			break;
		default:
			usage();
		}
	}
	if (argc - optind != 2)
		usage();
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (confdir != NULL)
		rc = pam_start_confdir(
		    argv[optind], argv[optind + 1], &pc, confdir, &pamh);
	else
		rc = pam_start(argv[optind], argv[optind + 1], &pc, &pamh);
	if (rc == PAM_SUCCESS && rhost != NULL)
		rc = pam_set_item(pamh, PAM_RHOST, rhost);
	if (rc == PAM_SUCCESS && tty != NULL)
		rc = pam_set_item(pamh, PAM_TTY, tty);
	for (i = 0; rc == PAM_SUCCESS && i < nenv; i++)
		rc = pam_putenv(pamh, envs[i]);
	printf("start %d %s\n", rc, rc_name(rc));
	if (rc != PAM_SUCCESS) {
		if (pamh != NULL)
			pam_end(pamh, rc);
		return 1;
	}
	while (fgets(line, sizeof(line), stdin) != NULL) {
		long long t0;

		line[strcspn(line, "\r\n")] = '\0';
		t0 = now_ms();
		if (strcmp(line, "open") == 0) {
			rc = pam_open_session(pamh, 0);
			printf("open %d %s %lld\n", rc, rc_name(rc),
			    now_ms() - t0);
		} else if (strcmp(line, "close") == 0) {
			rc = pam_close_session(pamh, 0);
			printf("close %d %s %lld\n", rc, rc_name(rc),
			    now_ms() - t0);
		} else if (strcmp(line, "env") == 0) {
			print_env(pamh);
		} else if (strncmp(line, "putenv ", 7) == 0) {
			rc = pam_putenv(pamh, line + 7);
			printf("putenv %d %s\n", rc, rc_name(rc));
		} else if (strcmp(line, "quit") == 0) {
			break;
		} else {
			printf("error unknown command\n");
		}
	}
	rc = pam_end(pamh, PAM_SUCCESS);
	printf("quit %d %s\n", rc, rc_name(rc));
	return 0;
}
