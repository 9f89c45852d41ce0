/*
 * Identify and watch the process that opened a PAM session: a pidfd (it
 * becomes readable when the process exits), the start time from
 * /proc/PID/stat (field 22, clock ticks since boot) and the boot id, so a
 * pid reused by another process, or a reboot, is never mistaken for the
 * original process.
 */
#ifndef RAMKEY_PROC_WATCH_H
#define RAMKEY_PROC_WATCH_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#define BOOT_ID_LEN 36

/* The kernel's boot id (36 characters + NUL). */
int proc_boot_id(char out[BOOT_ID_LEN + 1]);

/* Start time of pid in clock ticks since boot. */
int proc_start_time(pid_t pid, uint64_t *ticks);

/*
 * Open a pidfd for pid and check it is the process that started at
 * start_time. Returns 0 and *fdp, RAMKEY_ERR_NOT_FOUND if that process is
 * gone (or the pid now belongs to another one), or RAMKEY_ERR_SYSTEM.
 */
int proc_watch_open(pid_t pid, uint64_t start_time, int *fdp);

/* Open a pidfd for a live process and read its start time (once, after
 * the pidfd pins the process). */
int proc_watch_new(pid_t pid, int *fdp, uint64_t *start_time);

#endif
