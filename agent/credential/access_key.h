/*
 * The access_key credential kind: an AccessKey of a RAM user, made with
 * CreateAccessKey and revoked at the end (UpdateAccessKey Inactive, then
 * DeleteAccessKey; with revoke = deactivate the key is parked Inactive
 * until its slot is needed). RAM allows two keys per RAM user, account
 * wide. Before each CreateAccessKey an intent holding a ListAccessKeys
 * snapshot is made durable, so that a key made and lost (a crash, a
 * timeout) is found afterwards and revoked; a key that cannot be told
 * apart from others is reported as ambiguous and left alone.
 */
#ifndef RAMKEY_ACCESS_KEY_H
#define RAMKEY_ACCESS_KEY_H

#include "credential.h"

struct ram_client;

enum access_key_revoke {
	ACCESS_KEY_REVOKE_DELETE = 0,
	ACCESS_KEY_REVOKE_DEACTIVATE,
};

struct access_key_config {
	enum access_key_revoke revoke;
};

#define ACCESS_KEY_KIND "access_key"
#define ACCESS_KEY_NOTE_AMBIGUOUS "access_key.ambiguous"

/* The kind uses ram (not owned) for every call. */
int access_key_kind_new(struct ram_client *ram,
    const struct access_key_config *cfg, struct credential_kind *out);
void access_key_kind_reconfigure(struct credential_kind *k,
    const struct access_key_config *cfg);

#endif
