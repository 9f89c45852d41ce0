/*
 * The secret_file writer shared by the client and the PAM module.
 * Everything happens with the owner's filesystem identity:
 *
 *  - the path is walked one component at a time from "/" with
 *    O_PATH|O_DIRECTORY|O_NOFOLLOW; a symlink is followed (and its target
 *    walked the same way) only when it is owned by root and sits in a
 *    directory that only root controls, never below a directory the user
 *    controls;
 *  - the last directory may be created, mode 0700;
 *  - the directory that receives the file must belong to the owner or
 *    root and must not be writable by group or others;
 *  - the file is created under a temporary name with
 *    O_CREAT|O_EXCL|O_NOFOLLOW, mode 0600, written, fsync'ed, and renamed
 *    over the final name, so whatever was there (a symlink, a FIFO, a hard
 *    link, an older file) is replaced and never opened, and the final name
 *    never shows a partly written file. A directory there is an error.
 *    Nothing is ever chmod'ed or chown'ed by path. The directory is not
 *    fsync'ed after the rename: a crash may leave the previous file (or
 *    none) under the name, which a login need not wait to prevent.
 */
#ifndef RAMKEY_SECRET_FILE_H
#define RAMKEY_SECRET_FILE_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "fsid.h" /* struct ramkey_owner, struct ramkey_fsid_user */

/*
 * Write data to path as owner. On failure, why (if not NULL) receives one
 * line naming the path component and the problem. Returns 0,
 * RAMKEY_ERR_UNSAFE_PATH, RAMKEY_ERR_IS_DIR, RAMKEY_ERR_INVALID (not an
 * absolute path, "." or ".." in it), RAMKEY_ERR_DENIED (cannot act as
 * owner), RAMKEY_ERR_IO (errno set) or RAMKEY_ERR_NOMEM.
 */
int ramkey_secret_file_write(const char *path, const struct ramkey_owner *owner,
    const void *data, size_t len, char *why, size_t whylen);

/* The same as the user u, whose groups were looked up already. */
int ramkey_secret_file_write_user(const char *path,
    const struct ramkey_fsid_user *u, const void *data, size_t len,
    char *why, size_t whylen);

/*
 * Remove the file at path if it is a regular file owned by owner, acting
 * as owner. A missing file (or directory) is fine. *removed tells whether
 * something was unlinked.
 */
int ramkey_secret_file_remove(const char *path,
    const struct ramkey_owner *owner, bool *removed, char *why,
    size_t whylen);

#endif
