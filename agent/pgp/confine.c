/*
 * The PGP helper's confinement (confine.h). Raw system calls only: the
 * Landlock and seccomp structures come from the kernel's headers
 * (linux-libc-dev); what newer kernels added is defined here when those
 * headers predate it.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/landlock.h>
#include <linux/sched.h>
#include <linux/seccomp.h>

#include "confine.h"
#include "pgp_wire.h"
#include "ramkey_err.h"

/* --- Landlock --- */

#ifndef LANDLOCK_ACCESS_FS_TRUNCATE
#define LANDLOCK_ACCESS_FS_TRUNCATE (1ULL << 14) /* ABI 3 */
#endif
#ifndef LANDLOCK_ACCESS_FS_IOCTL_DEV
#define LANDLOCK_ACCESS_FS_IOCTL_DEV (1ULL << 15) /* ABI 5 */
#endif
#define LL_NET_BIND_TCP (1ULL << 0)	       /* ABI 4 */
#define LL_NET_CONNECT_TCP (1ULL << 1)	       /* ABI 4 */
#define LL_SCOPE_ABSTRACT_UNIX_SOCKET (1ULL << 0) /* ABI 6 */
#define LL_SCOPE_SIGNAL (1ULL << 1)	       /* ABI 6 */

/* The ruleset attribute as of ABI 6; older kernels take a prefix. */
struct ll_ruleset_attr {
	uint64_t handled_access_fs;
	uint64_t handled_access_net;
	uint64_t scoped;
};

#define LL_FS_ABI1                                                             \
	(LANDLOCK_ACCESS_FS_EXECUTE | LANDLOCK_ACCESS_FS_WRITE_FILE |          \
	    LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_READ_DIR |       \
	    LANDLOCK_ACCESS_FS_REMOVE_DIR | LANDLOCK_ACCESS_FS_REMOVE_FILE |   \
	    LANDLOCK_ACCESS_FS_MAKE_CHAR | LANDLOCK_ACCESS_FS_MAKE_DIR |       \
	    LANDLOCK_ACCESS_FS_MAKE_REG | LANDLOCK_ACCESS_FS_MAKE_SOCK |       \
	    LANDLOCK_ACCESS_FS_MAKE_FIFO | LANDLOCK_ACCESS_FS_MAKE_BLOCK |     \
	    LANDLOCK_ACCESS_FS_MAKE_SYM)
/* Rights that apply to a file (not only to a directory). */
#define LL_FILE_RIGHTS                                                         \
	(LANDLOCK_ACCESS_FS_EXECUTE | LANDLOCK_ACCESS_FS_WRITE_FILE |          \
	    LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_TRUNCATE |       \
	    LANDLOCK_ACCESS_FS_IOCTL_DEV)
#define LL_READ_EXEC                                                           \
	(LANDLOCK_ACCESS_FS_EXECUTE | LANDLOCK_ACCESS_FS_READ_FILE |           \
	    LANDLOCK_ACCESS_FS_READ_DIR)

enum ll_kind { LL_RO, LL_RW_FILE, LL_HOME };

/*
 * What gpg, gpgconf and the dynamic loader need: the system's programs,
 * libraries and GnuPG's global configuration. /bin, /sbin and /lib* are
 * symbolic links into /usr on merged-/usr systems (a rule follows them).
 */
static const struct {
	const char *path;
	enum ll_kind kind;
} ll_paths[] = {
	{ "/usr", LL_RO },
	{ "/lib", LL_RO },
	{ "/lib64", LL_RO },
	{ "/lib32", LL_RO },
	{ "/libx32", LL_RO },
	{ "/bin", LL_RO },
	{ "/sbin", LL_RO },
	{ "/etc/ld.so.cache", LL_RO },
	{ "/etc/gnupg", LL_RO },
	{ "/etc/gcrypt", LL_RO },
	{ "/proc/sys/crypto", LL_RO }, /* libgcrypt's FIPS flag */
	{ "/dev/urandom", LL_RO },
	{ "/dev/null", LL_RW_FILE },
};

static void add_lacking(struct pgp_confined *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void add_lacking(struct pgp_confined *c, const char *fmt, ...)
{
	size_t n = strlen(c->lacking);
	va_list ap;

	if (n > 0 && n + 2 < sizeof(c->lacking)) {
		memcpy(c->lacking + n, "; ", 3);
		n += 2;
	}
	va_start(ap, fmt);
	vsnprintf(c->lacking + n, sizeof(c->lacking) - n, fmt, ap);
	va_end(ap);
}

static void set_why(char *why, size_t whylen, const char *what, int e)
{
	char buf[128];

	snprintf(why, whylen, "cannot confine the PGP helper (%s): %s", what,
	    strerror_r(e, buf, sizeof(buf)));
}

static uint64_t ll_fs_rights(int abi)
{
	uint64_t r = LL_FS_ABI1;

	if (abi >= 2)
		r |= LANDLOCK_ACCESS_FS_REFER;
	if (abi >= 3)
		r |= LANDLOCK_ACCESS_FS_TRUNCATE;
	if (abi >= 5)
		r |= LANDLOCK_ACCESS_FS_IOCTL_DEV;
	return r;
}

/* A rule for path (system paths may be symbolic links; the home not). */
static int ll_rule(int ruleset, const char *path, int flags, uint64_t rights,
    uint64_t handled)
{
	struct landlock_path_beneath_attr pb;
	struct stat st;
	int fd, r = 0;

	fd = open(path, O_PATH | O_CLOEXEC | flags);
	if (fd == -1)
		return errno == ENOENT ? 0 : -1;
	if (fstat(fd, &st) != 0) {
		close(fd);
		return -1;
	}
	memset(&pb, 0, sizeof(pb));
	pb.parent_fd = fd;
	pb.allowed_access = rights & handled;
	if (!S_ISDIR(st.st_mode))
		pb.allowed_access &= LL_FILE_RIGHTS;
	if (pb.allowed_access != 0 &&
	    syscall(SYS_landlock_add_rule, ruleset, LANDLOCK_RULE_PATH_BENEATH,
	    &pb, 0) != 0)
		r = -1;
	close(fd);
	return r;
}

/* 0 applied, 1 not offered by the kernel (c->lacking says so), -1 error. */
static int apply_landlock(const char *home, struct pgp_confined *c,
    char *why, size_t whylen)
{
	struct ll_ruleset_attr attr;
	size_t attr_size, i;
	uint64_t fs;
	int abi, rs = -1, r = -1;

	abi = (int)syscall(SYS_landlock_create_ruleset, NULL, 0,
	    LANDLOCK_CREATE_RULESET_VERSION);
	if (abi < 0) {
		if (errno == ENOSYS) {
			add_lacking(c, "landlock: not in this kernel");
			return 1;
		}
		if (errno == EOPNOTSUPP) {
			add_lacking(c, "landlock: disabled at boot (lsm=)");
			return 1;
		}
		if (errno == EPERM || errno == EACCES) {
			add_lacking(c,
			    "landlock: refused by a system call filter");
			return 1;
		}
		set_why(why, whylen, "landlock", errno);
		return -1;
	}
	fs = ll_fs_rights(abi);
	memset(&attr, 0, sizeof(attr));
	attr.handled_access_fs = fs;
	attr_size = sizeof(attr.handled_access_fs);
	if (abi >= 4) {
		/* TCP handled, no rule: no bind, no connect. */
		attr.handled_access_net = LL_NET_BIND_TCP | LL_NET_CONNECT_TCP;
		attr_size = offsetof(struct ll_ruleset_attr, scoped);
	}
	if (abi >= 6) {
		attr.scoped = LL_SCOPE_ABSTRACT_UNIX_SOCKET | LL_SCOPE_SIGNAL;
		attr_size = sizeof(attr);
	}
	rs = (int)syscall(SYS_landlock_create_ruleset, &attr, attr_size, 0);
	if (rs < 0) {
		set_why(why, whylen, "landlock ruleset", errno);
		return -1;
	}
	for (i = 0; i < sizeof(ll_paths) / sizeof(ll_paths[0]); i++) {
		uint64_t rights = ll_paths[i].kind == LL_RO ? LL_READ_EXEC :
		    LANDLOCK_ACCESS_FS_READ_FILE |
		    LANDLOCK_ACCESS_FS_WRITE_FILE | LANDLOCK_ACCESS_FS_TRUNCATE;

		if (ll_rule(rs, ll_paths[i].path, 0, rights, fs) != 0) {
			set_why(why, whylen, ll_paths[i].path, errno);
			goto out;
		}
	}
	if (ll_rule(rs, home, O_NOFOLLOW | O_DIRECTORY, fs, fs) != 0) {
		set_why(why, whylen, "landlock rule for the home", errno);
		goto out;
	}
	if (syscall(SYS_landlock_restrict_self, rs, 0) != 0) {
		set_why(why, whylen, "landlock_restrict_self", errno);
		goto out;
	}
	c->landlock_abi = (unsigned)abi;
	r = 0;
out:
	close(rs);
	return r;
}

/* --- seccomp --- */

#if defined(__x86_64__) && !defined(__ILP32__)
#define SC_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define SC_ARCH AUDIT_ARCH_AARCH64
#elif defined(__riscv) && __riscv_xlen == 64
#define SC_ARCH AUDIT_ARCH_RISCV64
#elif defined(__powerpc64__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define SC_ARCH AUDIT_ARCH_PPC64LE
#elif defined(__i386__)
#define SC_ARCH AUDIT_ARCH_I386
#endif

#ifdef SC_ARCH

#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define SC_ARG0_LO offsetof(struct seccomp_data, args[0])
#else
#define SC_ARG0_LO (offsetof(struct seccomp_data, args[0]) + 4)
#endif
#ifndef SECCOMP_RET_KILL_PROCESS
#define SECCOMP_RET_KILL_PROCESS SECCOMP_RET_KILL
#endif

#define SC_ERRNO(e) (SECCOMP_RET_ERRNO | ((e) & SECCOMP_RET_DATA))
#define NS_FLAGS                                                               \
	(CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER |           \
	    CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWCGROUP)

/* System calls refused outright, with the error they get. */
static const struct {
	long nr;
	int err;
} sc_denied[] = {
	{ SYS_socketpair, EACCES },
#ifdef SYS_socketcall
	{ SYS_socketcall, EACCES },
#endif
	{ SYS_ptrace, EPERM },
	{ SYS_process_vm_readv, EPERM },
	{ SYS_process_vm_writev, EPERM },
	{ SYS_kcmp, EPERM },
#ifdef SYS_pidfd_getfd
	{ SYS_pidfd_getfd, EPERM },
#endif
#ifdef SYS_io_uring_setup
	{ SYS_io_uring_setup, ENOSYS },
	{ SYS_io_uring_enter, ENOSYS },
	{ SYS_io_uring_register, ENOSYS },
#endif
	{ SYS_bpf, EPERM },
	{ SYS_perf_event_open, EPERM },
	{ SYS_userfaultfd, EPERM },
	{ SYS_keyctl, EPERM },
	{ SYS_add_key, EPERM },
	{ SYS_request_key, EPERM },
	{ SYS_unshare, EPERM },
	{ SYS_setns, EPERM },
	{ SYS_mount, EPERM },
	{ SYS_umount2, EPERM },
	{ SYS_pivot_root, EPERM },
	{ SYS_chroot, EPERM },
#ifdef SYS_open_tree
	{ SYS_open_tree, EPERM },
	{ SYS_move_mount, EPERM },
	{ SYS_fsopen, EPERM },
	{ SYS_fsconfig, EPERM },
	{ SYS_fsmount, EPERM },
	{ SYS_fspick, EPERM },
#endif
	{ SYS_setsid, EPERM },
	{ SYS_setpgid, EPERM },
	/* Other processes of the same uid (the agent among them): no
	 * signals but through kill(0) and tgkill (below), no pidfds, no
	 * changing their priority, CPUs or memory placement. */
	{ SYS_tkill, EPERM },
	{ SYS_rt_sigqueueinfo, EPERM },
#ifdef SYS_pidfd_open
	{ SYS_pidfd_open, EPERM },
	{ SYS_pidfd_send_signal, EPERM },
#endif
#ifdef SYS_process_madvise
	{ SYS_process_madvise, EPERM },
#endif
	{ SYS_setpriority, EPERM },
	{ SYS_ioprio_set, EPERM },
	{ SYS_sched_setaffinity, EPERM },
	{ SYS_sched_setscheduler, EPERM },
	{ SYS_sched_setparam, EPERM },
	{ SYS_sched_setattr, EPERM },
	{ SYS_migrate_pages, EPERM },
	{ SYS_move_pages, EPERM },
	/* glibc falls back to clone(), whose flags the filter can see. */
#ifdef SYS_clone3
	{ SYS_clone3, ENOSYS },
#endif
};

#define SC_MAX_INSNS 256

/*
 * 0 applied, 1 not offered by the kernel, -1 error. parent: the agent,
 * which must not be signalled (Landlock scopes signals only from ABI 6).
 */
static int apply_seccomp(struct pgp_confined *c, char *why, size_t whylen)
{
	struct sock_filter f[SC_MAX_INSNS];
	struct sock_fprog prog;
	uint32_t parent = (uint32_t)getppid();
	size_t n = 0, i;

	/* Instructions past the array are dropped and the filter refused
	 * below (a bug, caught by every test that confines). */
#define PUT(insn) (n < SC_MAX_INSNS ? (void)(f[n] = (insn)) : (void)0, n++)
#define INS(code, k) PUT((struct sock_filter)BPF_STMT((code), (k)))
#define JEQ(k, jt, jf)                                                         \
	PUT((struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (k), (jt), \
	    (jf)))
	/* A foreign architecture's numbers mean other calls: kill. */
	INS(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch));
	JEQ(SC_ARCH, 1, 0);
	INS(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS);
	INS(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr));
#if defined(__x86_64__)
	/* x32 system calls on x86_64. */
	PUT((struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K,
	    0x40000000u, 0, 1));
	INS(BPF_RET | BPF_K, SC_ERRNO(ENOSYS));
#endif
	/* socket(): no family at all. */
	JEQ(SYS_socket, 0, 1);
	INS(BPF_RET | BPF_K, SC_ERRNO(EACCES));
	for (i = 0; i < sizeof(sc_denied) / sizeof(sc_denied[0]); i++) {
		JEQ((uint32_t)sc_denied[i].nr, 0, 1);
		INS(BPF_RET | BPF_K, SC_ERRNO(sc_denied[i].err));
	}
	/* kill(pid, sig): its own process group (pid 0) only. */
	JEQ(SYS_kill, 0, 4);
	INS(BPF_LD | BPF_W | BPF_ABS, SC_ARG0_LO);
	JEQ(0, 0, 1);
	INS(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
	INS(BPF_RET | BPF_K, SC_ERRNO(EPERM));
	/* tgkill(tgid, tid, sig) (raise(), pthread_kill()): not the
	 * agent's threads. */
	JEQ(SYS_tgkill, 1, 0);
	JEQ(SYS_rt_tgsigqueueinfo, 0, 4);
	INS(BPF_LD | BPF_W | BPF_ABS, SC_ARG0_LO);
	JEQ(parent, 0, 1);
	INS(BPF_RET | BPF_K, SC_ERRNO(EPERM));
	INS(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
	/* prlimit64(pid, ...) (getrlimit(), setrlimit()): itself only. */
	JEQ(SYS_prlimit64, 0, 4);
	INS(BPF_LD | BPF_W | BPF_ABS, SC_ARG0_LO);
	JEQ(0, 0, 1);
	INS(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
	INS(BPF_RET | BPF_K, SC_ERRNO(EPERM));
#if defined(__x86_64__) || defined(__aarch64__) || defined(__riscv) ||        \
    defined(__i386__) || defined(__powerpc64__)
	/* clone(flags, ...): no new namespace. */
	JEQ(SYS_clone, 0, 4);
	INS(BPF_LD | BPF_W | BPF_ABS, SC_ARG0_LO);
	PUT((struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K,
	    NS_FLAGS, 0, 1));
	INS(BPF_RET | BPF_K, SC_ERRNO(EPERM));
	INS(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
#endif
	INS(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
#undef INS
#undef JEQ
#undef PUT
	if (n > SC_MAX_INSNS) {
		set_why(why, whylen, "seccomp filter too long", E2BIG);
		return -1;
	}
	prog.len = (unsigned short)n;
	prog.filter = f;
	if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) == 0)
		return 0;
	/* Older kernels, or a filter that refuses seccomp() itself. */
	if ((errno == ENOSYS || errno == EPERM || errno == EACCES) &&
	    prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0) == 0)
		return 0;
	if (errno == EINVAL || errno == ENOSYS) {
		add_lacking(c, "seccomp: not in this kernel");
		return 1;
	}
	if (errno == EPERM || errno == EACCES) {
		add_lacking(c, "seccomp: refused by a system call filter");
		return 1;
	}
	set_why(why, whylen, "seccomp", errno);
	return -1;
}

#else /* !SC_ARCH */

static int apply_seccomp(struct pgp_confined *c, char *why, size_t whylen)
{
	add_lacking(c, "seccomp: no filter for this architecture");
	return 1;
}

#endif

/* --- rlimits, descriptors --- */

static int limit(int resource, rlim_t soft, rlim_t hard)
{
	struct rlimit rl;

	if (getrlimit(resource, &rl) != 0)
		return -1;
	/* Never raise: an administrator's lower limit stays. */
	if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < hard)
		hard = rl.rlim_max;
	if (soft > hard)
		soft = hard;
	rl.rlim_cur = soft;
	rl.rlim_max = hard;
	return setrlimit(resource, &rl);
}

#if defined(__SANITIZE_ADDRESS__)
#define NO_AS_LIMIT 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define NO_AS_LIMIT 1
#endif
#endif

static int apply_rlimits(struct pgp_confined *c, char *why, size_t whylen)
{
	static const struct {
		int res;
		const char *name;
		rlim_t soft, hard;
	} lim[] = {
		{ RLIMIT_CORE, "RLIMIT_CORE", 0, 0 },
		{ RLIMIT_CPU, "RLIMIT_CPU", PGP_HELPER_CPU_S,
		    PGP_HELPER_CPU_S + 1 },
		{ RLIMIT_FSIZE, "RLIMIT_FSIZE",
		    (rlim_t)PGP_HELPER_FSIZE_KB * 1024,
		    (rlim_t)PGP_HELPER_FSIZE_KB * 1024 },
		{ RLIMIT_NOFILE, "RLIMIT_NOFILE", PGP_HELPER_NOFILE,
		    PGP_HELPER_NOFILE },
#ifndef NO_AS_LIMIT
		{ RLIMIT_AS, "RLIMIT_AS", (rlim_t)PGP_HELPER_AS_MB << 20,
		    (rlim_t)PGP_HELPER_AS_MB << 20 },
#endif
	};
	size_t i;

	for (i = 0; i < sizeof(lim) / sizeof(lim[0]); i++)
		if (limit(lim[i].res, lim[i].soft, lim[i].hard) != 0) {
			set_why(why, whylen, lim[i].name, errno);
			return -1;
		}
#ifdef NO_AS_LIMIT
	add_lacking(c, "RLIMIT_AS: not set in an AddressSanitizer build");
#endif
	return 0;
}

static void close_from(int lowfd)
{
	int fd, max;

	if (syscall(SYS_close_range, (unsigned)lowfd, ~0U, 0) == 0)
		return;
	max = (int)sysconf(_SC_OPEN_MAX);
	if (max < 0 || max > 65536)
		max = 65536;
	for (fd = lowfd; fd < max; fd++)
		(void)close(fd);
}

int pgp_confine(const char *home, struct pgp_confined *out, char *why,
    size_t whylen)
{
	struct pgp_confined c;
	int r;

	memset(&c, 0, sizeof(c));
	memset(out, 0, sizeof(*out));
	if (why != NULL && whylen > 0)
		why[0] = '\0';
	close_from(STDERR_FILENO + 1);
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) {
		set_why(why, whylen, "PR_SET_DUMPABLE", errno);
		return RAMKEY_ERR_SYSTEM;
	}
	if (apply_rlimits(&c, why, whylen) != 0)
		return RAMKEY_ERR_SYSTEM;
	c.applied |= PGP_CONFINE_RLIMITS;
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
		set_why(why, whylen, "PR_SET_NO_NEW_PRIVS", errno);
		return RAMKEY_ERR_SYSTEM;
	}
	c.applied |= PGP_CONFINE_NO_NEW_PRIVS;
	if ((r = apply_landlock(home, &c, why, whylen)) < 0)
		return RAMKEY_ERR_SYSTEM;
	if (r == 0)
		c.applied |= PGP_CONFINE_LANDLOCK;
	if ((r = apply_seccomp(&c, why, whylen)) < 0)
		return RAMKEY_ERR_SYSTEM;
	if (r == 0)
		c.applied |= PGP_CONFINE_SECCOMP;
	*out = c;
	return 0;
}
