#include <stdio.h>

#include "deliver.h"
#include "ramkey_err.h"
#include "seal.h"
#include "secret_file.h"

int ramkey_deliver(const struct ramkey_credential *cred,
    enum ramkey_format fmt, const char *path,
    const struct ramkey_fsid_user *u, char *why, size_t whylen)
{
	char *text = NULL;
	size_t len = 0;
	int r;

	if (why != NULL && whylen > 0)
		why[0] = '\0';
	if ((r = ramkey_format_render(fmt, cred, &text, &len)) != 0) {
		if (why != NULL && whylen > 0)
			snprintf(why, whylen, "cannot render the %s format: %s",
			    ramkey_format_name(fmt), r == RAMKEY_ERR_INVALID ?
			    "it needs the plaintext secret" :
			    ramkey_strerror(r));
		goto out;
	}
	r = ramkey_secret_file_write_user(path, u, text, len, why, whylen);
out:
	if (text != NULL)
		ramkey_secure_free(text);
	return r;
}
