/*
 * The PGP layer's reading of a pgp_key as a requester sends it, before
 * anything reaches GnuPG: "keybase:NAME", an ASCII-armored key, or base64
 * of a binary key (maybe wrapped over lines). pgp_key_prepare() uses it.
 */
#ifndef RAMKEY_PGP_SPEC_H
#define RAMKEY_PGP_SPEC_H

#include <stddef.h>
#include <stdint.h>

#include "pgp.h"
#include "pgp_wire.h"

/* Largest key spec (and imported key) accepted. */
#define PGP_SPEC_MAX PGP_WIRE_KEY_MAX
/* The size of the why buffer pgp_spec_parse() writes to. */
#define PGP_SPEC_WHY_MAX PGP_WIRE_WHY_MAX

/*
 * Turn spec (NUL-terminated) into key material or a Keybase name.
 * Returns 0 with *data (malloc'd, *datalen >= 1 bytes) to import, 1 with
 * user set to a valid Keybase name, RAMKEY_ERR_NOMEM, or
 * RAMKEY_ERR_PGP_KEY with why (one printable line). *data is NULL and
 * user empty unless so returned.
 */
int pgp_spec_parse(const char *spec, uint8_t **data, size_t *datalen,
    char user[PGP_KEYBASE_NAME_MAX + 1], char why[PGP_SPEC_WHY_MAX]);

#endif
