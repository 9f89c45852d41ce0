/*
 * Where a user's secret_file goes when nobody names a path, for the PAM
 * module and the client alike: in the user's runtime directory (a tmpfs,
 * /run/user/UID, that disappears at the user's last logout) when there is
 * a usable one, else in the home directory.
 */
#ifndef RAMKEY_DEFAULT_PATH_H
#define RAMKEY_DEFAULT_PATH_H

#include <stddef.h>
#include <sys/types.h>

/* The runtime directory the client looks at: /run/user/UID. */
#define RAMKEY_RUN_USER_DIR "/run/user"

/*
 * Is dir usable as uid's runtime directory: an absolute path that names a
 * directory (not a symbolic link to one) owned by uid, as pam_systemd
 * makes it? Returns 0 or RAMKEY_ERR_UNSAFE_PATH (why says what is wrong).
 */
int ramkey_runtime_dir_check(const char *dir, uid_t uid, char *why,
    size_t whylen);

/*
 * The default secret_file: RUNTIME_DIR/ramkey/credentials.json when
 * runtime_dir is given (the caller has checked it with
 * ramkey_runtime_dir_check()), else HOME/.alibabacloud/ramkey.json. A
 * trailing slash of either directory is not doubled. *out is malloc'd.
 * RAMKEY_ERR_INVALID when the directory used is not an absolute path or
 * the result would be RAMKEY_PATH_MAX bytes or longer.
 */
int ramkey_default_secret_file(const char *runtime_dir, const char *home,
    char **out);

#endif
