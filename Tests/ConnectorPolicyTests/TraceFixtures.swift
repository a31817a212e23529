// Logs written by the real labs, captured by Tests/EndToEndTests/TraceTests.swift with
// CONNECTOR_TRACE_CAPTURE=DIR (DIR/postfix-trace.log and DIR/sendmail-trace.log, pasted here
// verbatim). Postfix 3.7 (maillog_file) with the daemon's syslog lines: a message from the
// Fabrikam address with the lab CA's client certificate, delivered in clear to smtp-sink and
// over TLS to a second Postfix; one bounced by a next hop answering 5xx to RCPT; one deferred
// (nothing listens on 127.0.0.9); one refused at RCPT (NOQUEUE). Sendmail 8.17 (syslog, tag
// sm-lab-PORT) with the daemon's lines: one delivered over inbound TLS, one refused at RCPT.

enum TraceFixtures {
    static let postfix = #"""
Dec 02 20:44:07 mx postfix/master[7435]: daemon started -- version 3.7.11, configuration /tmp/connector-lab.HlLoiH/etc
Dec 02 20:44:07 mx postfix/postlogd[7438]: warning: /tmp/connector-lab.HlLoiH/etc/main.cf, line 62: overriding earlier entry: smtp_tls_security_level=none
Dec 02 20:44:07 mx postfix/pickup[7436]: warning: /tmp/connector-lab.HlLoiH/etc/main.cf, line 62: overriding earlier entry: smtp_tls_security_level=none
Dec 02 20:44:07 mx postfix/qmgr[7437]: warning: /tmp/connector-lab.HlLoiH/etc/main.cf, line 62: overriding earlier entry: smtp_tls_security_level=none
Dec 02 20:44:07 mx postfix/smtpd[7448]: warning: /tmp/connector-lab.HlLoiH/etc/main.cf, line 62: overriding earlier entry: smtp_tls_security_level=none
Dec 02 20:44:07 mx postfix/tlsmgr[7449]: warning: /tmp/connector-lab.HlLoiH/etc/main.cf, line 62: overriding earlier entry: smtp_tls_security_level=none
Dec 02 20:44:07 mx postfix/smtpd[7448]: connect from localhost[127.0.0.1]
Dec 02 20:44:08 mx postfix/smtpd[7448]: Trusted TLS connection established from localhost[127.0.0.1]: TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits) key-exchange X25519 server-signature ECDSA (prime256v1) server-digest SHA256 client-signature ECDSA (prime256v1) client-digest SHA256
Dec 02 20:44:08 mx postfix/trivial-rewrite[7454]: warning: /tmp/connector-lab.HlLoiH/etc/main.cf, line 62: overriding earlier entry: smtp_tls_security_level=none
Dec 02 20:44:08 mx postfix/cleanup[7455]: warning: /tmp/connector-lab.HlLoiH/etc/main.cf, line 62: overriding earlier entry: smtp_tls_security_level=none
Dec 02 20:44:08 mx postfix/smtpd[7448]: 1EFE2FA2692: client=mail.fabrikam.com[203.0.113.7]
Dec 02 20:44:08 mx postfix/cleanup[7455]: 1EFE2FA2692: message-id=<20261202204407.007442@vm>
Dec 02 20:44:08 mx postfix/smtpd[7448]: disconnect from mail.fabrikam.com[203.0.113.7] ehlo=3 xclient=0/1 starttls=1 mail=1 rcpt=2 data=1 quit=1 commands=9/10
Dec 02 20:44:08 mx postfix/qmgr[7437]: 1EFE2FA2692: from=<pay@fabrikam.com>, size=756, nrcpt=2 (queue active)
Dec 02 20:44:08 mx postfix/smtp[7458]: warning: /tmp/connector-lab.HlLoiH/etc/main.cf, line 62: overriding earlier entry: smtp_tls_security_level=none
Dec 02 20:44:08 mx postfix/smtp[7461]: warning: /tmp/connector-lab.HlLoiH/etc/main.cf, line 62: overriding earlier entry: smtp_tls_security_level=none
Dec 02 20:44:08 mx postfix/smtp[7458]: 1EFE2FA2692: to=<ap@contoso.com>, relay=127.0.0.1[127.0.0.1]:40281, delay=0.12, delays=0.02/0.05/0.04/0.01, dsn=2.0.0, status=sent (250 2.0.0 Ok)
Dec 02 20:44:08 mx postfix/smtp[7461]: Trusted TLS connection established to 127.0.0.2[127.0.0.2]:43915: TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits) key-exchange X25519 server-signature ECDSA (prime256v1) server-digest SHA256
Dec 02 20:44:08 mx postfix/smtp[7461]: 1EFE2FA2692: to=<ops@tls.contoso.net>, relay=127.0.0.2[127.0.0.2]:43915, delay=0.21, delays=0.02/0.07/0.08/0.04, dsn=2.0.0, status=sent (250 2.0.0 Ok: queued as 4C21EFA27D2)
Dec 02 20:44:08 mx postfix/qmgr[7437]: 1EFE2FA2692: removed
Dec 02 20:44:08 mx postfix/smtpd[7448]: connect from localhost[127.0.0.1]
Dec 02 20:44:08 mx postfix/smtpd[7448]: 529CEFA2692: client=client.example[198.18.0.9]
Dec 02 20:44:08 mx postfix/cleanup[7455]: 529CEFA2692: message-id=<20261202204408.007459@vm>
Dec 02 20:44:08 mx postfix/qmgr[7437]: 529CEFA2692: from=<a@b.example>, size=482, nrcpt=1 (queue active)
Dec 02 20:44:08 mx postfix/smtpd[7448]: disconnect from client.example[198.18.0.9] ehlo=2 xclient=0/1 mail=1 rcpt=1 data=1 quit=1 commands=6/7
Dec 02 20:44:08 mx postfix/bounce[7468]: warning: /tmp/connector-lab.HlLoiH/etc/main.cf, line 62: overriding earlier entry: smtp_tls_security_level=none
Dec 02 20:44:08 mx postfix/smtp[7458]: 529CEFA2692: to=<lost@bounce.contoso.net>, relay=127.0.0.1[127.0.0.1]:45231, delay=0.03, delays=0.01/0/0/0.02, dsn=5.3.0, status=bounced (host 127.0.0.1[127.0.0.1] said: 500 5.3.0 Error: command failed (in reply to RCPT TO command))
Dec 02 20:44:08 mx postfix/bounce[7470]: warning: /tmp/connector-lab.HlLoiH/etc/main.cf, line 62: overriding earlier entry: smtp_tls_security_level=none
Dec 02 20:44:08 mx postfix/cleanup[7455]: 5C42AFA27D5: message-id=<20261202204408.5C42AFA27D5@mx.lab.test>
Dec 02 20:44:08 mx postfix/qmgr[7437]: 5C42AFA27D5: from=<>, size=2430, nrcpt=1 (queue active)
Dec 02 20:44:08 mx postfix/smtp[7461]: 5C42AFA27D5: to=<a@b.example>, relay=127.0.0.1[127.0.0.1]:40281, delay=0.01, delays=0/0/0/0, dsn=2.0.0, status=sent (250 2.0.0 Ok)
Dec 02 20:44:08 mx postfix/qmgr[7437]: 5C42AFA27D5: removed
Dec 02 20:44:08 mx postfix/bounce[7468]: 529CEFA2692: sender non-delivery notification: 5C42AFA27D5
Dec 02 20:44:08 mx postfix/qmgr[7437]: 529CEFA2692: removed
Dec 02 20:44:08 mx postfix/smtpd[7448]: connect from localhost[127.0.0.1]
Dec 02 20:44:08 mx postfix/smtpd[7448]: 7B604FA2692: client=client.example[198.18.0.9]
Dec 02 20:44:08 mx postfix/cleanup[7455]: 7B604FA2692: message-id=<20261202204408.007469@vm>
Dec 02 20:44:08 mx postfix/qmgr[7437]: 7B604FA2692: from=<a@b.example>, size=482, nrcpt=1 (queue active)
Dec 02 20:44:08 mx postfix/smtp[7458]: connect to 127.0.0.9[127.0.0.9]:51761: Connection refused
Dec 02 20:44:08 mx postfix/bounce[7471]: warning: /tmp/connector-lab.HlLoiH/etc/main.cf, line 62: overriding earlier entry: smtp_tls_security_level=none
Dec 02 20:44:08 mx postfix/smtpd[7448]: disconnect from client.example[198.18.0.9] ehlo=2 xclient=0/1 mail=1 rcpt=1 data=1 quit=1 commands=6/7
Dec 02 20:44:08 mx postfix/smtp[7458]: 7B604FA2692: to=<later@defer.contoso.net>, relay=none, delay=0, delays=0/0/0/0, dsn=4.4.1, status=deferred (connect to 127.0.0.9[127.0.0.9]:51761: Connection refused)
Dec 02 20:44:08 mx postfix/smtpd[7448]: connect from localhost[127.0.0.1]
Dec 02 20:44:08 mx postfix/smtpd[7448]: NOQUEUE: milter-reject: RCPT from client.example[198.18.0.9]: 550 5.7.64 Relay access denied; from=<a@b.example> to=<c@d.example> proto=ESMTP helo=<client.lab.test>
Dec 02 20:44:08 mx postfix/smtpd[7448]: disconnect from client.example[198.18.0.9] ehlo=2 xclient=0/1 mail=1 rcpt=0/1 quit=1 commands=4/6
<22>Dec  2 20:44:07 connector-milter[7439]: supervisor 7439 started worker 7440
<21>Dec  2 20:44:07 connector-milter[7440]: listening on unix:/tmp/connector-lab.HlLoiH/run/milter.sock (libmilter 1.0.1), policy /tmp/connector-lab.HlLoiH/connectors.yaml: 5 connectors
<22>Dec  2 20:44:08 connector-milter[7440]: 1EFE2FA2692: verdict=accept direction=originating inbound="Contoso on-premises" inbound_type=onPremises client=mail.fabrikam.com[203.0.113.7] tls=TLSv1.3 cert="relay.contoso.com" from=<pay@fabrikam.com> rcpt=<ap@contoso.com> outbound=none outbound_type=none mode=enforce auth=none
<22>Dec  2 20:44:08 connector-milter[7440]: 1EFE2FA2692: verdict=accept direction=originating inbound="Contoso on-premises" inbound_type=onPremises client=mail.fabrikam.com[203.0.113.7] tls=TLSv1.3 cert="relay.contoso.com" from=<pay@fabrikam.com> rcpt=<ops@tls.contoso.net> outbound=none outbound_type=none mode=enforce auth=none
<22>Dec  2 20:44:08 connector-milter[7440]: 529CEFA2692: verdict=accept direction=incoming inbound=none inbound_type=none client=client.example[198.18.0.9] tls=none cert=none from=<a@b.example> rcpt=<lost@bounce.contoso.net> outbound=none outbound_type=none mode=enforce auth=none
<22>Dec  2 20:44:08 connector-milter[7440]: 7B604FA2692: verdict=accept direction=incoming inbound=none inbound_type=none client=client.example[198.18.0.9] tls=none cert=none from=<a@b.example> rcpt=<later@defer.contoso.net> outbound=none outbound_type=none mode=enforce auth=none
<21>Dec  2 20:44:08 connector-milter[7440]: NOQUEUE: verdict=reject reason=relay-denied direction=incoming inbound=none inbound_type=none client=client.example[198.18.0.9] tls=none cert=none from=<a@b.example> rcpt=<c@d.example> outbound=none outbound_type=none mode=enforce auth=none
"""#

    static let sendmail = #"""
<20>Dec  2 20:44:11 sm-lab-55859[7565]: gethostbyaddr(192.0.2.2) failed: 1
<22>Dec  2 20:44:11 sm-lab-55859[7565]: starting daemon (8.17.1.9): SMTP
<22>Dec  2 20:44:11 connector-milter[7567]: supervisor 7567 started worker 7568
<21>Dec  2 20:44:11 connector-milter[7568]: listening on unix:/tmp/connector-lab.ueltJq/run/milter.sock (libmilter 1.0.1), policy /tmp/connector-lab.ueltJq/connectors.yaml: 5 connectors
<22>Dec  2 20:44:11 sm-lab-55859[7576]: STARTTLS=server, relay=[127.0.9.9], version=TLSv1.3, verify=OK, cipher=TLS_AES_256_GCM_SHA384, bits=256/256
<22>Dec  2 20:44:11 sm-lab-55859[7576]: 6B2KiBJs007576: from=<a@b.example>, size=245, class=0, nrcpts=1, msgid=<20261202204411.007570@vm>, proto=ESMTPS, daemon=MTA, relay=[127.0.9.9]
<22>Dec  2 20:44:11 sm-lab-55859[7576]: 6B2KiBJs007576: Milter (connector) add: header: X-Connector-Inbound: Contoso on-premises
<22>Dec  2 20:44:11 sm-lab-55859[7576]: 6B2KiBJs007576: Milter (connector) add: header: X-Connector-Direction: originating
<22>Dec  2 20:44:11 connector-milter[7568]: 6B2KiBJs007576: verdict=accept direction=originating inbound="Contoso on-premises" inbound_type=onPremises client=unknown[127.0.9.9] tls=TLSv1.3 cert="relay.contoso.com" from=<a@b.example> rcpt=<user@contoso.com> outbound=none outbound_type=none mode=enforce auth=none
<21>Dec  2 20:44:11 connector-milter[7568]: 6B2KiB3h007580: verdict=reject reason=relay-denied direction=incoming inbound=none inbound_type=none client=unknown[127.0.9.9] tls=none cert=none from=<a@b.example> rcpt=<c@d.example> outbound=none outbound_type=none mode=enforce auth=none
<22>Dec  2 20:44:11 sm-lab-55859[7580]: 6B2KiB3h007580: Milter: to=<c@d.example>, reject=550 5.7.64 Relay access denied
<22>Dec  2 20:44:11 sm-lab-55859[7580]: 6B2KiB3h007580: from=<a@b.example>, size=0, class=0, nrcpts=0, proto=ESMTP, daemon=MTA, relay=[127.0.9.9]
<22>Dec  2 20:44:11 sm-lab-55859[7578]: 6B2KiBJs007576: to=<user@contoso.com>, delay=00:00:00, xdelay=00:00:00, mailer=relay, pri=30245, relay=[127.0.0.1] [127.0.0.1], dsn=2.0.0, stat=Sent (Ok)
"""#
}
