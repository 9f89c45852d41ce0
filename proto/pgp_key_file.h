/*
 * Read a PGP public key from a file, for the client's --pgp-key @FILE and
 * the PAM module's pgp_key_file=. The file must be a regular file (a
 * FIFO, a device or a directory is refused at once, without blocking: the
 * file is opened O_NONBLOCK, so a FIFO cannot hang a login) and not a
 * symbolic link (O_NOFOLLOW); it holds 1 to RAMKEY_PGP_KEY_MAX bytes of
 * text (base64 of a binary key, an ASCII-armored key or keybase:NAME) and
 * no NUL byte. Trailing newlines (LF or CRLF) are not part of the key.
 */
#ifndef RAMKEY_PGP_KEY_FILE_H
#define RAMKEY_PGP_KEY_FILE_H

#include <stddef.h>

#include "fsid.h"

/*
 * Read the key at path into *keyp (malloc'd, NUL-terminated; a public
 * key, not a secret). as: read with this user's filesystem identity
 * (ramkey_fsid_user_lookup()), or NULL for the caller's own. On failure
 * why receives one line naming the file and the problem. Returns 0,
 * RAMKEY_ERR_INVALID (not a regular file, empty, a NUL byte),
 * RAMKEY_ERR_UNSAFE_PATH (a symbolic link), RAMKEY_ERR_TOO_LARGE,
 * RAMKEY_ERR_IO (cannot open or read it; errno kept), RAMKEY_ERR_DENIED or
 * RAMKEY_ERR_SYSTEM (cannot act as the user, or come back) or
 * RAMKEY_ERR_NOMEM.
 */
int ramkey_pgp_key_file_read(const char *path,
    const struct ramkey_fsid_user *as, char **keyp, char *why,
    size_t whylen);

#endif
