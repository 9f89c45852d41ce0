/*
 * The agent <-> ramkey-pgp-helper frames (pgp_wire.h).
 */
#include <stdbool.h>
#include <string.h>

#include "pgp_wire.h"
#include "ramkey_err.h"

const char *pgp_confine_name(unsigned bit)
{
	switch (bit) {
	case PGP_CONFINE_NO_NEW_PRIVS:
		return "no_new_privs";
	case PGP_CONFINE_RLIMITS:
		return "rlimits";
	case PGP_CONFINE_LANDLOCK:
		return "landlock";
	case PGP_CONFINE_SECCOMP:
		return "seccomp";
	default:
		return NULL;
	}
}

static void put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	    (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

uint32_t pgp_wire_frame_len(const uint8_t in[PGP_WIRE_LEN_SIZE])
{
	return get32(in);
}

/* 40 lower-case hex characters, or all NUL (no fingerprint). */
static int fpr_parse(const uint8_t *in, char out[PGP_WIRE_FPR_LEN + 1])
{
	size_t i;
	bool hex = true, zero = true;

	for (i = 0; i < PGP_WIRE_FPR_LEN; i++) {
		uint8_t c = in[i];

		if (c != 0)
			zero = false;
		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
			hex = false;
	}
	if (!hex && !zero)
		return RAMKEY_ERR_PROTOCOL;
	memcpy(out, in, PGP_WIRE_FPR_LEN);
	out[zero ? 0 : PGP_WIRE_FPR_LEN] = '\0';
	return 0;
}

static void fpr_put(uint8_t *out, const char *fpr)
{
	size_t n = strnlen(fpr, PGP_WIRE_FPR_LEN);

	memset(out, 0, PGP_WIRE_FPR_LEN);
	if (n == PGP_WIRE_FPR_LEN)
		memcpy(out, fpr, n);
}

void pgp_wire_request_head(const struct pgp_wire_request *req,
    uint8_t out[PGP_WIRE_LEN_SIZE + PGP_WIRE_REQ_HDR])
{
	uint8_t *p = out + PGP_WIRE_LEN_SIZE;

	put32(out, PGP_WIRE_REQ_HDR + req->key_len + req->secret_len);
	p[0] = PGP_WIRE_VERSION;
	p[1] = req->op;
	p[2] = p[3] = 0;
	put32(p + 4, req->key_len);
	put32(p + 8, req->secret_len);
	fpr_put(p + 12, req->fpr);
}

int pgp_wire_request_parse(
    const uint8_t in[PGP_WIRE_LEN_SIZE + PGP_WIRE_REQ_HDR],
    struct pgp_wire_request *req)
{
	const uint8_t *p = in + PGP_WIRE_LEN_SIZE;

	memset(req, 0, sizeof(*req));
	if (p[0] != PGP_WIRE_VERSION || p[2] != 0 || p[3] != 0 ||
	    p[1] > PGP_OP_ENCRYPT)
		return RAMKEY_ERR_PROTOCOL;
	req->op = p[1];
	req->key_len = get32(p + 4);
	req->secret_len = get32(p + 8);
	if (req->key_len > PGP_WIRE_KEY_MAX ||
	    req->secret_len > PGP_WIRE_SECRET_MAX ||
	    get32(in) != PGP_WIRE_REQ_HDR + req->key_len + req->secret_len)
		return RAMKEY_ERR_PROTOCOL;
	if (fpr_parse(p + 12, req->fpr) != 0)
		return RAMKEY_ERR_PROTOCOL;
	/* Each operation carries exactly what it needs. */
	switch (req->op) {
	case PGP_OP_PROBE:
		if (req->key_len != 0 || req->secret_len != 0)
			return RAMKEY_ERR_PROTOCOL;
		break;
	case PGP_OP_PREPARE:
		if (req->key_len == 0 || req->secret_len != 0)
			return RAMKEY_ERR_PROTOCOL;
		break;
	default:
		if (req->key_len == 0 || req->secret_len == 0 ||
		    req->fpr[0] == '\0')
			return RAMKEY_ERR_PROTOCOL;
		break;
	}
	return 0;
}

void pgp_wire_reply_head(const struct pgp_wire_reply *rep,
    uint8_t out[PGP_WIRE_LEN_SIZE + PGP_WIRE_REP_HDR])
{
	uint8_t *p = out + PGP_WIRE_LEN_SIZE;

	put32(out, PGP_WIRE_REP_HDR + rep->data_len + rep->why_len +
	    rep->lacking_len);
	p[0] = PGP_WIRE_VERSION;
	p[1] = 0;
	p[2] = rep->landlock_abi;
	p[3] = 0;
	put32(p + 4, (uint32_t)rep->rc);
	put32(p + 8, rep->confinement);
	put32(p + 12, 0);
	fpr_put(p + 16, rep->fpr);
	put32(p + 56, rep->data_len);
	put32(p + 60, rep->why_len);
	put32(p + 64, rep->lacking_len);
}

int pgp_wire_reply_parse(
    const uint8_t *in, size_t len, struct pgp_wire_reply *rep)
{
	const uint8_t *p = in + PGP_WIRE_LEN_SIZE;
	uint64_t total;
	int32_t rc;

	memset(rep, 0, sizeof(*rep));
	if (len < PGP_WIRE_LEN_SIZE + PGP_WIRE_REP_HDR ||
	    get32(in) != len - PGP_WIRE_LEN_SIZE || p[0] != PGP_WIRE_VERSION)
		return RAMKEY_ERR_PROTOCOL;
	rc = (int32_t)get32(p + 4);
	if (rc > 0 || rc < RAMKEY_ERR_MIN_)
		return RAMKEY_ERR_PROTOCOL;
	rep->rc = rc;
	rep->landlock_abi = p[2];
	rep->confinement = get32(p + 8) & PGP_CONFINE_ALL;
	if (fpr_parse(p + 16, rep->fpr) != 0)
		return RAMKEY_ERR_PROTOCOL;
	rep->data_len = get32(p + 56);
	rep->why_len = get32(p + 60);
	rep->lacking_len = get32(p + 64);
	total = (uint64_t)PGP_WIRE_LEN_SIZE + PGP_WIRE_REP_HDR +
	    rep->data_len + rep->why_len + rep->lacking_len;
	if (rep->data_len > PGP_WIRE_DATA_MAX ||
	    rep->why_len > PGP_WIRE_WHY_MAX ||
	    rep->lacking_len > PGP_WIRE_WHY_MAX || total != len)
		return RAMKEY_ERR_PROTOCOL;
	p += PGP_WIRE_REP_HDR;
	rep->data = p;
	rep->why = (const char *)p + rep->data_len;
	rep->lacking = rep->why + rep->why_len;
	return 0;
}
