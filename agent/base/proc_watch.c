#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "proc_watch.h"
#include "ramkey_err.h"

int proc_boot_id(char out[BOOT_ID_LEN + 1])
{
	ssize_t n;
	int fd;

	if ((fd = open("/proc/sys/kernel/random/boot_id",
	    O_RDONLY | O_CLOEXEC)) < 0)
		return RAMKEY_ERR_SYSTEM;
	n = read(fd, out, BOOT_ID_LEN);
	close(fd);
	if (n != BOOT_ID_LEN)
		return RAMKEY_ERR_SYSTEM;
	out[BOOT_ID_LEN] = '\0';
	return 0;
}

int proc_start_time(pid_t pid, uint64_t *ticks)
{
	char path[64], buf[1024], *p, *save = NULL, *tok;
	ssize_t n;
	int fd, field;

	*ticks = 0;
	snprintf(path, sizeof(path), "/proc/%ld/stat", (long)pid);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return errno == ENOENT ? RAMKEY_ERR_NOT_FOUND :
					 RAMKEY_ERR_SYSTEM;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return RAMKEY_ERR_NOT_FOUND;
	buf[n] = '\0';
	/* The command name (field 2) may hold spaces and ')': skip to the
	 * last ')'. Field 3 follows it. */
	if ((p = strrchr(buf, ')')) == NULL)
		return RAMKEY_ERR_SYSTEM;
	p++;
	for (field = 3, tok = strtok_r(p, " ", &save); tok != NULL;
	    tok = strtok_r(NULL, " ", &save), field++) {
		if (field == 22) {
			char *end;

			errno = 0;
			*ticks = strtoull(tok, &end, 10);
			if (errno != 0 || *end != '\0')
				return RAMKEY_ERR_SYSTEM;
			return 0;
		}
	}
	return RAMKEY_ERR_SYSTEM;
}

int proc_watch_open(pid_t pid, uint64_t start_time, int *fdp)
{
	uint64_t now_start;
	int fd, r;

	*fdp = -1;
	if ((r = proc_watch_new(pid, &fd, &now_start)) != 0)
		return r;
	/* The pidfd pins the process; if it has the recorded start time, it
	 * is the same process (a reused pid would have started later). */
	if (now_start != start_time) {
		close(fd);
		return RAMKEY_ERR_NOT_FOUND;
	}
	*fdp = fd;
	return 0;
}

int proc_watch_new(pid_t pid, int *fdp, uint64_t *start_time)
{
	int fd, r;

	*fdp = -1;
	*start_time = 0;
	if (pid <= 0)
		return RAMKEY_ERR_NOT_FOUND;
	fd = (int)syscall(SYS_pidfd_open, pid, 0);
	if (fd < 0)
		return errno == ESRCH ? RAMKEY_ERR_NOT_FOUND :
					RAMKEY_ERR_SYSTEM;
	if ((r = proc_start_time(pid, start_time)) != 0) {
		close(fd);
		return r;
	}
	*fdp = fd;
	return 0;
}
