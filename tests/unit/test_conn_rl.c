/* What the client may send after the handshake in an alert or handshake record, and the alert
 * ktlsd answers otherwise (conn_rl_record_alert). Each row is also sent to the real daemon and to
 * `openssl s_server` by tests/integration/test_alerts.py, which checks the two agree. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <openssl/ssl.h>

#include "conn_rl.h"
#include "rlayer.h"

#define V12 TLS1_2_VERSION
#define V13 TLS1_3_VERSION
#define UNEXPECTED SSL_AD_UNEXPECTED_MESSAGE

static void test_record_alerts(void **state)
{
	static const struct {
		const char *what;
		uint16_t version;
		uint8_t type, alert;
		uint8_t n, p[8];
	} rows[] = {
		{ "close_notify", V13, TLS_CT_ALERT, 0, 2, { 1, 0 } },
		{ "fatal alert", V12, TLS_CT_ALERT, 0, 2, { 2, 40 } },
		{ "empty alert", V13, TLS_CT_ALERT, UNEXPECTED, 0, { 0 } },
		{ "empty alert", V12, TLS_CT_ALERT, UNEXPECTED, 0, { 0 } },
		{ "one-byte alert", V13, TLS_CT_ALERT, UNEXPECTED, 1, { 2 } },
		{ "three-byte alert", V12, TLS_CT_ALERT, UNEXPECTED, 3, { 2, 10, 0 } },
		{ "empty handshake record", V13, TLS_CT_HANDSHAKE, UNEXPECTED, 0, { 0 } },
		{ "empty handshake record", V12, TLS_CT_HANDSHAKE, UNEXPECTED, 0, { 0 } },
		{ "KeyUpdate", V13, TLS_CT_HANDSHAKE, 0, 5, { 24, 0, 0, 1, 0 } },
		{ "KeyUpdate, update requested", V13, TLS_CT_HANDSHAKE, 0, 5, { 24, 0, 0, 1, 1 } },
		{ "KeyUpdate, request_update 2",
		  V13,
		  TLS_CT_HANDSHAKE,
		  SSL_AD_ILLEGAL_PARAMETER,
		  5,
		  { 24, 0, 0, 1, 2 } },
		{ "KeyUpdate, empty body",
		  V13,
		  TLS_CT_HANDSHAKE,
		  SSL_AD_DECODE_ERROR,
		  4,
		  { 24, 0, 0, 0 } },
		{ "KeyUpdate, trailing byte",
		  V13,
		  TLS_CT_HANDSHAKE,
		  SSL_AD_ILLEGAL_PARAMETER,
		  6,
		  { 24, 0, 0, 2, 0, 0 } },
		{ "KeyUpdate, truncated header",
		  V13,
		  TLS_CT_HANDSHAKE,
		  UNEXPECTED,
		  3,
		  { 24, 0, 0 } },
		{ "KeyUpdate, body in the next record",
		  V13,
		  TLS_CT_HANDSHAKE,
		  UNEXPECTED,
		  4,
		  { 24, 0, 0, 1 } },
		{ "KeyUpdate, then another message",
		  V13,
		  TLS_CT_HANDSHAKE,
		  UNEXPECTED,
		  7,
		  { 24, 0, 0, 1, 0, 24, 0 } },
		{ "NewSessionTicket from a client",
		  V13,
		  TLS_CT_HANDSHAKE,
		  UNEXPECTED,
		  5,
		  { 4, 0, 0, 1, 0 } },
		{ "ClientHello (renegotiation)", V12, TLS_CT_HANDSHAKE, 0, 4, { 1, 0, 0, 0 } },
		{ "ClientHello in TLS 1.3", V13, TLS_CT_HANDSHAKE, UNEXPECTED, 4, { 1, 0, 0, 0 } },
		{ "KeyUpdate in TLS 1.2",
		  V12,
		  TLS_CT_HANDSHAKE,
		  UNEXPECTED,
		  5,
		  { 24, 0, 0, 1, 0 } },
		{ "Finished again", V12, TLS_CT_HANDSHAKE, UNEXPECTED, 4, { 20, 0, 0, 0 } },
		{ "heartbeat", V12, 24, UNEXPECTED, 1, { 1 } },
		{ "ChangeCipherSpec", V13, TLS_CT_CHANGE_CIPHER_SPEC, UNEXPECTED, 1, { 1 } },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		uint8_t got =
		    conn_rl_record_alert(rows[i].version, rows[i].type, rows[i].p, rows[i].n);

		if (got != rows[i].alert)
			fail_msg("%s (TLS 1.%d): alert %u, want %u", rows[i].what,
				 rows[i].version == V13 ? 3 : 2, got, rows[i].alert);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_record_alerts),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
