/*
 * confine_probe: applies the PGP helper's confinement (pgp_confine(), the
 * very function ramkey-pgp-helper calls first thing) to itself, then tries
 * what a compromised gpg would try and prints one JSON object saying what
 * worked. test_pgp_helper.py decides what should have.
 *
 *   confine_probe HOME OP...
 *
 * OPs, run in order after the confinement:
 *   read:PATH     open(PATH, O_RDONLY)
 *   create:PATH   open(PATH, O_WRONLY|O_CREAT|O_EXCL), write, unlink
 *   run:PATH[:ARG] fork, exec PATH [ARG] (inheriting the confinement),
 *                 report its exit status
 * and always: sockets of several families, ptrace, signals and other
 * calls the filter refuses (at its parent, as at the agent) or allows
 * (its own process group, itself), the limits, no_new_privs, the
 * descriptors left.
 */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <linux/netlink.h>

#include "confine.h"
#include "pgp_wire.h"

static const char *err_name(int e)
{
	switch (e) {
	case 0:
		return "OK";
	case EACCES:
		return "EACCES";
	case EPERM:
		return "EPERM";
	case ENOENT:
		return "ENOENT";
	case ENOSYS:
		return "ENOSYS";
	case EAFNOSUPPORT:
		return "EAFNOSUPPORT";
	case EINVAL:
		return "EINVAL";
	case ESRCH:
		return "ESRCH";
	case EEXIST:
		return "EEXIST";
	default:
		return "other";
	}
}

static void json_str(const char *s)
{
	putchar('"');
	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\')
			printf("\\%c", c);
		else if (c < 0x20 || c >= 0x7f)
			printf("\\u%04x", c);
		else
			putchar(c);
	}
	putchar('"');
}

static int first = 1;

static void result(const char *what, const char *arg, int e)
{
	printf("%s{\"what\":", first ? "" : ",");
	first = 0;
	json_str(what);
	printf(",\"arg\":");
	json_str(arg != NULL ? arg : "");
	printf(",\"ok\":%s,\"errno\":\"%s\"}", e == 0 ? "true" : "false",
	    err_name(e));
}

static void try_read(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	result("read", path, fd >= 0 ? 0 : errno);
	if (fd >= 0)
		close(fd);
}

static void try_create(const char *path)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	int e = fd >= 0 ? 0 : errno;

	if (fd >= 0) {
		if (write(fd, "x", 1) != 1)
			e = errno;
		close(fd);
		if (unlink(path) != 0 && e == 0)
			e = errno;
	}
	result("create", path, e);
}

/* run:PATH[:ARG]: 0 and its exit status, or the fork/exec error. */
static void try_run(char *spec)
{
	char *arg = strchr(spec, ':'), *argv[3], buf[32];
	pid_t pid;
	int st = 0;

	if (arg != NULL)
		*arg++ = '\0';
	argv[0] = spec;
	argv[1] = arg;
	argv[2] = NULL;
	pid = fork();
	if (pid < 0) {
		result("run", spec, errno);
		return;
	}
	if (pid == 0) {
		int null = open("/dev/null", O_RDWR);

		if (null >= 0) {
			dup2(null, STDOUT_FILENO);
			dup2(null, STDERR_FILENO);
		}
		execv(spec, argv);
		_exit(127);
	}
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	snprintf(buf, sizeof(buf), "%s=%d", spec,
	    WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
	result("run", buf, WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : EPERM);
}

static void try_socket(const char *name, int family, int type)
{
	int fd = socket(family, type | SOCK_CLOEXEC, 0);

	result("socket", name, fd >= 0 ? 0 : errno);
	if (fd >= 0)
		close(fd);
}

static void try_call(const char *name, long r)
{
	result("call", name, r >= 0 ? 0 : errno);
}

static void limits(void)
{
	static const struct {
		const char *name;
		int res;
	} lim[] = {
		{ "cpu", RLIMIT_CPU },
		{ "as", RLIMIT_AS },
		{ "fsize", RLIMIT_FSIZE },
		{ "nofile", RLIMIT_NOFILE },
		{ "core", RLIMIT_CORE },
	};
	struct rlimit rl;
	long long cur, max;
	size_t i;

	printf("\"limits\":{");
	for (i = 0; i < sizeof(lim) / sizeof(lim[0]); i++) {
		getrlimit(lim[i].res, &rl);
		cur = rl.rlim_cur == RLIM_INFINITY ? -1 :
		    (long long)rl.rlim_cur;
		max = rl.rlim_max == RLIM_INFINITY ? -1 :
		    (long long)rl.rlim_max;
		printf("%s\"%s\":[%lld,%lld]", i ? "," : "", lim[i].name, cur,
		    max);
	}
	printf("}");
}

int main(int argc, char **argv)
{
	struct pgp_confined c;
	char why[256];
	unsigned bit;
	int i, fd, n = 0, r;
	pid_t parent = getppid();

	if (argc < 2) {
		fprintf(stderr, "usage: confine_probe HOME OP...\n");
		return 2;
	}
	r = pgp_confine(argv[1], &c, why, sizeof(why));
	printf("{\"rc\":%d,\"why\":", r);
	json_str(r != 0 ? why : "");
	printf(",\"applied\":[");
	for (bit = 1; bit <= PGP_CONFINE_ALL; bit <<= 1)
		if ((c.applied & bit) != 0)
			printf("%s\"%s\"", n++ ? "," : "",
			    pgp_confine_name(bit));
	printf("],\"landlock_abi\":%u,\"lacking\":", c.landlock_abi);
	json_str(c.lacking);
	printf(",\"no_new_privs\":%d,\"dumpable\":%d,",
	    prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0),
	    prctl(PR_GET_DUMPABLE, 0, 0, 0, 0));
	limits();
	/* Descriptors above standard error still open. */
	printf(",\"open_fds\":[");
	for (fd = STDERR_FILENO + 1, n = 0; fd < 1024; fd++)
		if (fcntl(fd, F_GETFD) != -1)
			printf("%s%d", n++ ? "," : "", fd);
	printf("],\"results\":[");
	for (i = 2; i < argc; i++) {
		if (strncmp(argv[i], "read:", 5) == 0)
			try_read(argv[i] + 5);
		else if (strncmp(argv[i], "create:", 7) == 0)
			try_create(argv[i] + 7);
		else if (strncmp(argv[i], "run:", 4) == 0)
			try_run(argv[i] + 4);
	}
	try_socket("AF_INET", AF_INET, SOCK_STREAM);
	try_socket("AF_INET_DGRAM", AF_INET, SOCK_DGRAM);
	try_socket("AF_INET6", AF_INET6, SOCK_STREAM);
	try_socket("AF_NETLINK", AF_NETLINK, SOCK_RAW);
	try_socket("AF_PACKET", AF_PACKET, SOCK_DGRAM);
	try_socket("AF_UNIX", AF_UNIX, SOCK_STREAM);
	{
		int sv[2];
		int e = socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv);

		result("socket", "socketpair", e == 0 ? 0 : errno);
		if (e == 0) {
			close(sv[0]);
			close(sv[1]);
		}
	}
	try_call("ptrace_attach_parent",
	    ptrace(PTRACE_ATTACH, parent, NULL, NULL));
	try_call("kill_parent_0", kill(parent, 0));
	try_call("kill_parent_group_0", kill(-getpgid(parent), 0));
	try_call("kill_all_0", kill(-1, 0));
	try_call("tgkill_parent_0", syscall(SYS_tgkill, parent, parent, 0));
	try_call("kill_own_group_0", kill(0, 0));
	try_call("tgkill_self_0", syscall(SYS_tgkill, getpid(), getpid(), 0));
#ifdef SYS_pidfd_open
	try_call("pidfd_open_parent", syscall(SYS_pidfd_open, parent, 0));
#endif
	try_call("setpriority_parent", setpriority(PRIO_PROCESS, (id_t)parent,
	    19));
	{
		struct rlimit rl;

		try_call("prlimit_parent", prlimit(parent, RLIMIT_NOFILE, NULL,
		    &rl));
	}
	try_call("setsid", setsid());
	try_call("setpgid", setpgid(0, 0));
	try_call("unshare_user", unshare(CLONE_NEWUSER));
#ifdef SYS_io_uring_setup
	try_call("io_uring_setup", syscall(SYS_io_uring_setup, 1, NULL));
#endif
	try_call("bpf", syscall(SYS_bpf, 0, NULL, 0));
	printf("]}\n");
	fflush(stdout);
	/* No atexit handlers: a sanitizer's leak check needs /proc and
	 * ptrace, which the confinement refuses. */
	_exit(0);
}
