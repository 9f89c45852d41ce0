/*
 * The pipe protocol between the agent and ramkey-pgp-helper.
 *
 * The agent starts one helper per job with the job's empty GnuPG home as
 * its only argument, the request on the helper's standard input and the
 * reply on its standard output. Each side sends exactly one frame:
 *
 *   frame   = length (u32) body          length counts the body only
 *   request = version (u8) op (u8) 0 (u16) key_len (u32) secret_len (u32)
 *             fpr (40 bytes: the key's fingerprint for an encryption,
 *             zeros otherwise) key (key_len) secret (secret_len)
 *   reply   = version (u8) 0 (u8) landlock_abi (u8) 0 (u8) rc (i32)
 *             confinement (u32) 0 (u32) fpr (40) data_len (u32)
 *             why_len (u32) lacking_len (u32) data why lacking
 *
 * Integers are big-endian. rc is 0 or a RAMKEY_ERR_* code; why says what
 * failed (one line). data is the key's minimal export (prepare) or the
 * binary OpenPGP message (encrypt). confinement holds PGP_CONFINE_* bits
 * for what the helper applied to itself, lacking says what the kernel did
 * not offer ("landlock: ...").
 *
 * Nothing here allocates or logs: the helper and the agent both link it.
 */
#ifndef RAMKEY_PGP_WIRE_H
#define RAMKEY_PGP_WIRE_H

#include <stddef.h>
#include <stdint.h>

#define PGP_WIRE_VERSION 1
#define PGP_WIRE_FPR_LEN 40
#define PGP_WIRE_LEN_SIZE 4
#define PGP_WIRE_REQ_HDR 52
#define PGP_WIRE_REP_HDR 68

/* Largest key material sent to the helper (the agent's key spec limit). */
#define PGP_WIRE_KEY_MAX (256 * 1024)
/* Largest secret encrypted (AccessKey secrets are 30 characters). */
#define PGP_WIRE_SECRET_MAX 4096
#define PGP_WIRE_WHY_MAX 256
/* Largest data in a reply: a key's minimal export is bounded far below. */
#define PGP_WIRE_DATA_MAX (256 * 1024)
#define PGP_WIRE_REP_MAX                                                       \
	(PGP_WIRE_REP_HDR + PGP_WIRE_DATA_MAX + 2 * PGP_WIRE_WHY_MAX)

/*
 * Bounds on a key after its minimal import (import-clean, self-sigs-only)
 * and minimal export: larger keys are refused before anything is minted.
 * A 4096-bit RSA key with three subkeys and 40 user IDs (about 27 KiB
 * exported, 40 KB armored) is well inside them.
 */
#define PGP_KEY_EXPORT_MAX (64 * 1024)
#define PGP_KEY_SUBKEYS_MAX 16 /* besides the primary key */
#define PGP_KEY_UIDS_MAX 64

/* What the helper is asked to do. */
enum pgp_wire_op {
	PGP_OP_PROBE = 0,   /* apply the confinement, check GnuPG */
	PGP_OP_PREPARE = 1, /* import, check and export a key */
	PGP_OP_ENCRYPT = 2, /* encrypt the secret to the key */
};

/*
 * What confines a helper. The helper reports the bits it applied; the
 * agent shows their names in its status document.
 */
#define PGP_CONFINE_NO_NEW_PRIVS (1u << 0)
#define PGP_CONFINE_RLIMITS (1u << 1)
#define PGP_CONFINE_LANDLOCK (1u << 2)
#define PGP_CONFINE_SECCOMP (1u << 3)
#define PGP_CONFINE_ALL                                                        \
	(PGP_CONFINE_NO_NEW_PRIVS | PGP_CONFINE_RLIMITS |                      \
	    PGP_CONFINE_LANDLOCK | PGP_CONFINE_SECCOMP)

/* "no_new_privs", "rlimits", "landlock", "seccomp"; NULL for others. */
const char *pgp_confine_name(unsigned bit);

struct pgp_wire_request {
	uint8_t op;
	uint32_t key_len;
	uint32_t secret_len;
	char fpr[PGP_WIRE_FPR_LEN + 1];
};

/* The frame length and the request's fixed part, ready to write. */
void pgp_wire_request_head(const struct pgp_wire_request *req,
    uint8_t out[PGP_WIRE_LEN_SIZE + PGP_WIRE_REQ_HDR]);
/* Parse them back, checking version, op and lengths: 0 or
 * RAMKEY_ERR_PROTOCOL. */
int pgp_wire_request_parse(
    const uint8_t in[PGP_WIRE_LEN_SIZE + PGP_WIRE_REQ_HDR],
    struct pgp_wire_request *req);

struct pgp_wire_reply {
	int rc;
	uint32_t confinement;
	uint8_t landlock_abi;
	char fpr[PGP_WIRE_FPR_LEN + 1];
	const uint8_t *data; /* these three point into the parsed buffer */
	uint32_t data_len;
	const char *why; /* not terminated: why_len bytes */
	uint32_t why_len;
	const char *lacking;
	uint32_t lacking_len;
};

/* The frame length and the reply's fixed part (data, why and lacking
 * follow, with the lengths given in rep). */
void pgp_wire_reply_head(const struct pgp_wire_reply *rep,
    uint8_t out[PGP_WIRE_LEN_SIZE + PGP_WIRE_REP_HDR]);
/* Parse a whole reply frame (length included) of len bytes: 0 or
 * RAMKEY_ERR_PROTOCOL. */
int pgp_wire_reply_parse(
    const uint8_t *in, size_t len, struct pgp_wire_reply *rep);

/* The body length a frame announces. */
uint32_t pgp_wire_frame_len(const uint8_t in[PGP_WIRE_LEN_SIZE]);

#endif
