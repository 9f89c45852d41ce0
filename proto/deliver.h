/*
 * The last step of the requester sequence (obtain.h): render the key in
 * the secret_file format asked for and write it as the user.
 */
#ifndef RAMKEY_DELIVER_H
#define RAMKEY_DELIVER_H

#include <stddef.h>

#include "fsid.h"
#include "secret_format.h"

/*
 * Render cred in fmt (in sodium memory, wiped afterwards) and write it to
 * path as u by the secret_file rules (secret_file.h). Returns 0, or with
 * why: RAMKEY_ERR_INVALID from rendering (fmt needs the plaintext secret
 * and cred holds it PGP-encrypted), RAMKEY_ERR_NOMEM, or an error of
 * ramkey_secret_file_write_user().
 */
int ramkey_deliver(const struct ramkey_credential *cred,
    enum ramkey_format fmt, const char *path,
    const struct ramkey_fsid_user *u, char *why, size_t whylen);

#endif
