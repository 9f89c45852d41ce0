#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "credential.h"

void kind_error_set(struct kind_error *err, int rc, const char *code,
    const char *fmt, ...)
{
	va_list ap;

	memset(err, 0, sizeof(*err));
	err->rc = rc;
	snprintf(err->code, sizeof(err->code), "%s", code != NULL ? code : "");
	va_start(ap, fmt);
	vsnprintf(err->message, sizeof(err->message), fmt, ap);
	va_end(ap);
}
