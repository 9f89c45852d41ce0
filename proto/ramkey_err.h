/*
 * ramkey error codes: every function in ramkey returns 0 on success or one
 * of these negative codes. Numbers are never reused or renumbered; the wire
 * protocol carries the stable name (ramkey_err_name()), not the number.
 */
#ifndef RAMKEY_ERR_H
#define RAMKEY_ERR_H

#define RAMKEY_OK 0
#define RAMKEY_ERR_INTERNAL (-1)     /* a bug or an impossible state */
#define RAMKEY_ERR_NOMEM (-2)        /* allocation failed */
#define RAMKEY_ERR_SYSTEM (-3)       /* a system call failed; see errno */
#define RAMKEY_ERR_INVALID (-4)      /* invalid argument or input */
#define RAMKEY_ERR_TOO_LARGE (-5)    /* input over its size limit */
#define RAMKEY_ERR_PROTOCOL (-6)     /* malformed frame or message */
#define RAMKEY_ERR_VERSION (-7)      /* unsupported protocol version */
#define RAMKEY_ERR_TIMEOUT (-8)      /* a deadline passed */
#define RAMKEY_ERR_CONNECT (-9)      /* agent unreachable */
#define RAMKEY_ERR_UNTRUSTED (-10)   /* socket or peer is not the real agent */
#define RAMKEY_ERR_DENIED (-11)      /* authorization refused */
#define RAMKEY_ERR_EXCLUDED (-12)    /* policy excludes the user (min_uid...) */
#define RAMKEY_ERR_NO_USER (-13)     /* no such local user */
#define RAMKEY_ERR_RATE (-14)        /* mint_rate or request rate exceeded */
#define RAMKEY_ERR_RAM (-15)         /* RAM refused or failed */
#define RAMKEY_ERR_LIMIT (-16)       /* LimitExceeded.User.AccessKey */
#define RAMKEY_ERR_STORE (-17)       /* state store not writable */
#define RAMKEY_ERR_CRYPTO (-18)      /* sealing, opening or encryption failed */
#define RAMKEY_ERR_PGP_KEY (-19)     /* unusable PGP public key */
#define RAMKEY_ERR_KEYBASE (-20)     /* Keybase unreachable */
#define RAMKEY_ERR_NOT_FOUND (-21)   /* no such lease, key or session */
#define RAMKEY_ERR_UNSAFE_PATH (-22) /* path not safe to write (symlink...) */
#define RAMKEY_ERR_CONFIG (-23)      /* configuration error */
#define RAMKEY_ERR_BUSY (-24)        /* too many connections or requests */
#define RAMKEY_ERR_UNAVAILABLE (-25) /* agent cannot serve right now */
#define RAMKEY_ERR_IS_DIR (-26)      /* a directory where a file belongs */
#define RAMKEY_ERR_KEYBASE_USER (-27) /* Keybase name does not resolve */
#define RAMKEY_ERR_RAM_TIMEOUT (-28) /* RAM operation ran out of time */
#define RAMKEY_ERR_EOF (-29)         /* peer closed the connection */
#define RAMKEY_ERR_IO (-30)          /* writing the secret_file failed */

#define RAMKEY_ERR_MIN_ (-30)

/*
 * Human-readable text for a code. RAMKEY_ERR_SYSTEM and RAMKEY_ERR_IO
 * return strerror(errno), so call it before errno changes.
 */
const char *ramkey_strerror(int err);

/* Stable wire name ("denied", "limit_exceeded", ...) for a code. */
const char *ramkey_err_name(int err);

/* Inverse of ramkey_err_name(); unknown names map to RAMKEY_ERR_INTERNAL. */
int ramkey_err_from_name(const char *name);

#endif
