/*
 * The confinement of ramkey-pgp-helper. The helper applies it to itself
 * first thing, before it reads a byte of its request, and everything it
 * runs (gpg, gpgconf) inherits it:
 *
 *  - every descriptor above standard error closed;
 *  - not dumpable, no core files;
 *  - rlimits: CPU time, address space, file size, open files (below);
 *  - no_new_privs: nothing it executes gains privileges;
 *  - Landlock, where the kernel has it: read (and execute) the system's
 *    programs and libraries (/usr, /lib*, /bin, /sbin, /etc/ld.so.cache,
 *    /etc/gnupg, /etc/gcrypt, /proc/sys/crypto), read and write /dev/null,
 *    read /dev/urandom, and do anything inside its own GnuPG home (not
 *    reached through a symbolic link); nothing else of the file system
 *    (no other /proc, no /etc/ramkey, no state directory, no other home).
 *    From Landlock ABI 4 it may not bind or connect TCP sockets, from ABI
 *    6 it may not signal or reach abstract sockets outside itself;
 *  - a seccomp filter, where the kernel has seccomp: no socket of any
 *    family (GnuPG needs none with no-autostart and an offline context),
 *    no ptrace or reading another process's memory, no io_uring, BPF,
 *    perf, userfaultfd or keyrings, no namespaces or mounts, no new
 *    session or process group (the agent kills the helper's whole group);
 *    and nothing done to another process of its uid (the agent): signals
 *    only to its own process group or through tgkill() to any thread
 *    group but its parent's, no pidfds, no prlimit, priority, scheduling,
 *    CPU or memory placement of another process.
 *
 * Used by the helper and by a test program that applies the same function
 * and then tries what a compromised gpg would try.
 */
#ifndef RAMKEY_PGP_CONFINE_H
#define RAMKEY_PGP_CONFINE_H

#include <stddef.h>

/* CPU seconds of the helper and of each gpg it runs (RLIMIT_CPU; the
 * kernel sends SIGXCPU at this and SIGKILL a second later). */
#define PGP_HELPER_CPU_S 5
/* Address space of each (RLIMIT_AS). gpg needs under 16 MiB here. */
#define PGP_HELPER_AS_MB 64
/* Largest file each may write (RLIMIT_FSIZE): the keyring of one key. */
#define PGP_HELPER_FSIZE_KB 4096
/* Open files of each (RLIMIT_NOFILE). */
#define PGP_HELPER_NOFILE 64

#define PGP_CONFINE_LACKING_MAX 256

struct pgp_confined {
	unsigned applied;      /* PGP_CONFINE_* (pgp_wire.h) */
	unsigned landlock_abi; /* 0: no Landlock */
	/* What the kernel (or the build) did not offer, one line, or "". */
	char lacking[PGP_CONFINE_LACKING_MAX];
};

/*
 * Confine the calling process, which must be single-threaded, to work in
 * home (an existing directory). Returns 0 with *out filled in, Landlock
 * and seccomp being applied where the kernel offers them; or a negative
 * RAMKEY_ERR_* code with why (whylen bytes) when something every kernel
 * offers (rlimits, no_new_privs) failed, or Landlock or seccomp failed
 * for another reason than the kernel not having them.
 */
int pgp_confine(const char *home, struct pgp_confined *out, char *why,
    size_t whylen);

#endif
