/*
 * Parsing of RAM and STS API response bodies (JSON, json-c): the success
 * shapes of the operations the agent uses and the common error body.
 * Everything is validated (types, lengths, character sets, dates) before it
 * is trusted.
 *
 * Secrets: the AccessKeySecret of a CreateAccessKey answer, and the
 * AccessKeySecret and SecurityToken of an AssumeRole answer, go straight
 * into locked memory (secure_buf.h); json-c's copies (the string objects
 * and the tokener's buffer) are wiped before they are freed. The caller
 * wipes the raw body it passed in.
 */
#ifndef RAMKEY_RAM_RESPONSE_H
#define RAMKEY_RAM_RESPONSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ram_client.h"

#define RAM_BODY_MAX (1024 * 1024) /* larger bodies are refused unparsed */
#define RAM_SECRET_MAX 256         /* longest AccessKeySecret accepted */
#define RAM_LIST_MAX 1000          /* most keys in a ListAccessKeys answer */
#define RAM_TOKEN_MAX 8192         /* longest SecurityToken accepted */

enum ram_action {
	RAM_ACT_CREATE_ACCESS_KEY = 0,
	RAM_ACT_UPDATE_ACCESS_KEY,
	RAM_ACT_DELETE_ACCESS_KEY,
	RAM_ACT_LIST_ACCESS_KEYS,
	RAM_ACT_GET_USER,
	RAM_ACT_LIST_USERS,
	RAM_ACT_LIST_USERS_FOR_GROUP,
	STS_ACT_ASSUME_ROLE,
	STS_ACT_GET_CALLER_IDENTITY,
	RAM_ACT_COUNT
};

/* "CreateAccessKey", ... (the Action parameter and err->op). */
const char *ram_action_name(enum ram_action act);
/* The action writes (its timeout is create/update/delete_timeout). */
bool ram_action_writes(enum ram_action act);

/*
 * Parse a 2xx body for act into res (cleared on entry). On success the
 * caller owns res and releases it with ram_result_clear(). Returns 0,
 * RAMKEY_ERR_TOO_LARGE (over RAM_BODY_MAX), RAMKEY_ERR_PROTOCOL (not JSON,
 * wrong shape, wrong type, bad value), RAMKEY_ERR_NOMEM or
 * RAMKEY_ERR_CRYPTO (libsodium unusable). On failure, if detail is not
 * NULL it gets a short reason (never a value from the body).
 */
int ram_parse_success(enum ram_action act, const char *body, size_t len,
    struct ram_result *res, char *detail, size_t detail_size);

/*
 * Parse the instance metadata service's credential document (GET
 * /latest/meta-data/ram/security-credentials/ROLE): AccessKeyId,
 * AccessKeySecret, SecurityToken, Expiration and Code, which must be
 * "Success". Fills res->sts as ram_parse_success() does for AssumeRole
 * (res->sts.arn stays empty); same returns, same wiping.
 */
int ram_parse_imds_credential(const char *body, size_t len,
    struct ram_result *res, char *detail, size_t detail_size);

/* Wipe and free what the parsers above allocated; accepts NULL. */
void ram_result_clear(struct ram_result *res);

/*
 * Parse an error body. Fills err->code, err->message (scrubbed with
 * ram_scrub_message()) and err->request_id; leaves the other fields alone.
 * Returns 0 when the body carried a usable Code, else RAMKEY_ERR_PROTOCOL
 * (err's three fields are then empty) or RAMKEY_ERR_TOO_LARGE.
 */
int ram_parse_error(const char *body, size_t len, struct ram_error *err);

/*
 * Make RAM's Message fit for a log line: cut everything from "string to
 * sign" (any case) on, and for SignatureDoesNotMatch also from anything
 * that looks like an echoed string-to-sign or canonical request; replace
 * control characters and invalid UTF-8 by spaces, collapse runs, trim,
 * truncate on a UTF-8 boundary to fit out_size.
 */
void ram_scrub_message(
    const char *code, const char *msg, size_t len, char *out, size_t out_size);

/* Strict "YYYY-MM-DDTHH:MM:SSZ" (UTC) to Unix seconds. */
int ram_parse_date(const char *s, size_t len, int64_t *ret);

/* 1..RAM_KEY_ID_MAX characters of [A-Za-z0-9._-]. */
bool ram_key_id_valid(const char *s, size_t len);
/* 1..RAM_USER_NAME_MAX characters of [A-Za-z0-9._@-]. */
bool ram_user_name_valid(const char *s, size_t len);

/* Retry policy on RAM's Code (rule R5, docs/ARCHITECTURE.md): Throttling*,
 * ServiceUnavailable*, InternalError*. */
bool ram_code_retryable(const char *code);

#endif
