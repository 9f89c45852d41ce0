/*
 * libpam_test_syslog.so: an LD_PRELOAD shim for the PAM tests that turns
 * syslog() into one line on stderr, "SYSLOG(<priority>): <message>", so
 * that a test can read what pam_syslog() logged (libpam formats the line
 * and hands it to syslog(), or __syslog_chk() when built with
 * _FORTIFY_SOURCE). It stands in for pam_wrapper's syslog capture when
 * the test drives libpam with pam_start_confdir() and no pam_wrapper.
 */
#include <stdarg.h>
#include <stdio.h>
#include <syslog.h>
#include <unistd.h>

void __syslog_chk(int pri, int flag, const char *fmt, ...);
void __vsyslog_chk(int pri, int flag, const char *fmt, va_list ap);

static void emit(int pri, const char *fmt, va_list ap)
{
	char msg[2048], line[2100];
	int n;

	vsnprintf(msg, sizeof(msg), fmt, ap);
	n = snprintf(line, sizeof(line), "SYSLOG(%d): %s\n", LOG_PRI(pri),
	    msg);
	if (n > (int)sizeof(line) - 1)
		n = (int)sizeof(line) - 1;
	if (n > 0)
		(void)!write(STDERR_FILENO, line, (size_t)n);
}

void openlog(const char *ident, int option, int facility)
{
	(void)ident;
	(void)option;
	(void)facility;
}

void closelog(void)
{
}

void vsyslog(int pri, const char *fmt, va_list ap)
{
	emit(pri, fmt, ap);
}

void syslog(int pri, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	emit(pri, fmt, ap);
	va_end(ap);
}

void __vsyslog_chk(int pri, int flag, const char *fmt, va_list ap)
{
	(void)flag;
	emit(pri, fmt, ap);
}

void __syslog_chk(int pri, int flag, const char *fmt, ...)
{
	va_list ap;

	(void)flag;
	va_start(ap, fmt);
	emit(pri, fmt, ap);
	va_end(ap);
}
