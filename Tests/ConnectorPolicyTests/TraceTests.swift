// `trace`: the MTA's lines read one by one, and joined with the verdict lines into timelines.
// The fixtures (TraceFixtures.swift) are logs written by the real Postfix and Sendmail labs
// (Tests/EndToEndTests/TraceTests.swift, CONNECTOR_TRACE_CAPTURE=DIR).

import ConnectorPolicy
@testable import ConnectorReview
import Foundation
import XCTest

final class TraceTests: XCTestCase {
    private let utc = TimeZone(identifier: "UTC")!

    private func read(_ line: String) -> MailLogReader.Line {
        var clock = LogClock(now: Date(timeIntervalSince1970: 1_796_259_200), timeZone: utc)
        return MailLogReader.parse(line: line, clock: &clock)
    }

    private func event(_ line: String, file: StaticString = #filePath, lineNumber: UInt = #line) -> MailLogLine.Event? {
        guard case .mta(let parsed) = read(line) else {
            XCTFail("not an MTA line: \(read(line))", file: file, line: lineNumber)
            return nil
        }
        return parsed.event
    }

    private func build(_ log: String) -> TraceBuilder {
        var clock = LogClock(now: Date(timeIntervalSince1970: 1_796_259_200), timeZone: utc)
        var builder = TraceBuilder()
        for (n, line) in log.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            var text = String(line)
            text.withUTF8 { builder.add(bytes: $0, complete: true, clock: &clock, location: { "line \(n + 1)" }) }
        }
        return builder
    }

    // MARK: - Postfix lines

    func test_postfixSessionLinesAreRead() {
        XCTAssertEqual(event("Dec  2 20:50:01 mx postfix/smtpd[811]: connect from localhost[127.0.0.1]"),
                       .connect(MailPeer(name: "localhost", address: "127.0.0.1")))
        XCTAssertEqual(event("Dec  2 20:50:01 mx postfix/smtpd[811]: Trusted TLS connection established from localhost[127.0.0.1]: TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits) key-exchange X25519"),
                       .inboundTLS(MailTLS(trust: "Trusted", protocol: "TLSv1.3", cipher: "TLS_AES_256_GCM_SHA384")))
        XCTAssertEqual(event("Dec  2 20:50:01 mx postfix/smtpd[811]: 4Fq2xT0m3Kz1: client=mail.fabrikam.com[203.0.113.7], sasl_method=PLAIN"),
                       .client(queueID: "4Fq2xT0m3Kz1", MailPeer(name: "mail.fabrikam.com", address: "203.0.113.7")))
        XCTAssertEqual(event("Dec  2 20:50:01 mx postfix/smtpd[811]: disconnect from localhost[127.0.0.1] ehlo=2 mail=1 commands=3"),
                       .disconnect(MailPeer(name: "localhost", address: "127.0.0.1")))
        XCTAssertEqual(event("Dec  2 20:50:01 mx postfix/cleanup[812]: 4Fq2xT0m3Kz1: message-id=<x@y>"),
                       .messageID(queueID: "4Fq2xT0m3Kz1", "<x@y>"))
        XCTAssertEqual(event("Dec  2 20:50:01 mx postfix/qmgr[700]: 4Fq2xT0m3Kz1: from=<pay@fabrikam.com>, size=612, nrcpt=2 (queue active)"),
                       .envelope(queueID: "4Fq2xT0m3Kz1", from: "pay@fabrikam.com", size: 612, recipients: 2, client: nil, messageID: nil))
        XCTAssertEqual(event("Dec  2 20:50:02 mx postfix/qmgr[700]: 4Fq2xT0m3Kz1: removed"), .removed(queueID: "4Fq2xT0m3Kz1"))
    }

    func test_postfixDeliveriesKeepRelayStatusAndTheNextHopsReply() {
        guard case .delivery(let id, let d)? = event("Dec  2 20:50:02 mx postfix/smtp[900]: 5ABC: to=<lost@bounce.contoso.net>, relay=127.0.0.1[127.0.0.1]:4025, delay=0.1, delays=0.03/0.01/0.02/0.04, dsn=5.0.0, status=bounced (host 127.0.0.1[127.0.0.1] said: 550 5.0.0 Error: command RCPT rejected, to=<x> (in reply to RCPT TO command))") else {
            return XCTFail("no delivery")
        }
        XCTAssertEqual(id, "5ABC")
        XCTAssertEqual(d.recipient, "lost@bounce.contoso.net")
        XCTAssertEqual(d.relay, "127.0.0.1[127.0.0.1]:4025")
        XCTAssertEqual(d.status, "bounced")
        XCTAssertEqual(d.dsn, "5.0.0")
        XCTAssertEqual(d.delay, "0.1")
        XCTAssertEqual(d.detail, "host 127.0.0.1[127.0.0.1] said: 550 5.0.0 Error: command RCPT rejected, to=<x> (in reply to RCPT TO command)")
        // An address holding ", " does not end the field.
        guard case .delivery(_, let odd)? = event("Dec  2 20:50:02 mx postfix/smtp[900]: 5ABC: to=<\"a, relay=b\"@c.example>, relay=none, delay=1, delays=1/0/0/0, dsn=4.4.1, status=deferred (connect to 127.0.0.9[127.0.0.9]:25: Connection refused)") else {
            return XCTFail("no delivery")
        }
        XCTAssertEqual(odd.recipient, "\"a, relay=b\"@c.example")
        XCTAssertEqual(odd.relay, "none")
        XCTAssertEqual(odd.status, "deferred")
        XCTAssertEqual(event("Dec  2 20:50:02 mx postfix/smtp[900]: Verified TLS connection established to 127.0.0.2[127.0.0.2]:4026: TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)"),
                       .outboundTLS(peer: "127.0.0.2[127.0.0.2]:4026", MailTLS(trust: "Verified", protocol: "TLSv1.3", cipher: "TLS_AES_256_GCM_SHA384")))
    }

    func test_postfixRefusalsAreReadWithTheirEnvelope() {
        guard case .refusal(let id, let r)? = event("Dec  2 20:50:03 mx postfix/smtpd[811]: NOQUEUE: milter-reject: RCPT from client.example[198.18.0.9]: 550 5.7.64 Relay access denied; from=<a@b.example> to=<c@d.example> proto=ESMTP helo=<client.lab.test>") else {
            return XCTFail("no refusal")
        }
        XCTAssertNil(id)
        XCTAssertEqual(r.stage, "RCPT")
        XCTAssertEqual(r.client, MailPeer(name: "client.example", address: "198.18.0.9"))
        XCTAssertEqual(r.reply, "550 5.7.64 Relay access denied")
        XCTAssertEqual(r.from, "a@b.example")
        XCTAssertEqual(r.recipient, "c@d.example")
        XCTAssertEqual(r.helo, "client.lab.test")
        XCTAssertTrue(r.byMilter)
        guard case .refusal(_, let own)? = event("Dec  2 20:50:03 mx postfix/smtpd[811]: NOQUEUE: reject: RCPT from unknown[192.0.2.1]: 554 5.7.1 <x@y.example>: Relay access denied; from=<> to=<x@y.example> proto=SMTP helo=<h>") else {
            return XCTFail("no refusal")
        }
        XCTAssertFalse(own.byMilter)
        XCTAssertEqual(own.from, "")
        XCTAssertEqual(own.reply, "554 5.7.1 <x@y.example>: Relay access denied")
    }

    func test_otherProgramsAndUninterestingLinesAreNotMTALines() {
        XCTAssertEqual(read("Dec  2 20:50:03 mx sshd[1]: 5ABC: to=<a@b>, status=sent"), .other)
        XCTAssertEqual(read("Dec  2 20:50:03 mx postfix/master[1]: daemon started -- version 3.7.11"), .other)
        XCTAssertEqual(read("Dec  2 20:50:03 mx postfix/smtpd[1]: warning: hostname x does not resolve"), .other)
        XCTAssertEqual(read("not a log line at all"), .other)
        XCTAssertEqual(read(""), .other)
    }

    func test_hostileMTALinesAreMalformedNotFatal() {
        for line in ["Dec  2 20:50:03 mx postfix/smtpd[1]: connect from nobrackets",
                     "Dec  2 20:50:03 mx postfix/qmgr[1]: 5ABC: from=<unterminated, size=1",
                     "Dec  2 20:50:03 mx postfix/smtp[1]: 5ABC: to=<a@b>, relay=x",
                     "Dec  2 20:50:03 mx postfix/smtp[1]: 5ABC: to=<a@b>, =oops, status=sent",
                     "Dec  2 20:50:03 mx postfix/smtpd[1]: NOQUEUE: reject: RCPT no client here"] {
            guard case .malformed = read(line) else { return XCTFail("\(line): \(read(line))") }
        }
        let builder = build("Dec  2 20:50:03 mx postfix/smtpd[1]: connect from nobrackets\n\u{0}\u{1}garbage\n")
        XCTAssertEqual(builder.malformedLines, 1)
        XCTAssertEqual(builder.malformedSamples.first?.hasPrefix("line 1: "), true)
    }

    // MARK: - Sendmail lines

    func test_sendmailLinesAreRead() {
        XCTAssertEqual(event("Dec  2 20:51:00 mx sm-mta[42]: STARTTLS=server, relay=localhost [127.0.9.9], version=TLSv1.3, verify=OK, cipher=TLS_AES_256_GCM_SHA384, bits=256/256"),
                       .inboundTLS(MailTLS(trust: "OK", protocol: "TLSv1.3", cipher: "TLS_AES_256_GCM_SHA384")))
        XCTAssertEqual(event("Dec  2 20:51:00 mx sm-mta[42]: 6B2KZ0aa000042: from=<a@b.example>, size=300, class=0, nrcpts=1, msgid=<m@x>, bodytype=8BITMIME, proto=ESMTPS, daemon=MTA, relay=localhost [127.0.9.9]"),
                       .envelope(queueID: "6B2KZ0aa000042", from: "a@b.example", size: 300, recipients: 1,
                                 client: MailPeer(name: "localhost", address: "127.0.9.9"), messageID: "<m@x>"))
        guard case .delivery(_, let d)? = event("Dec  2 20:51:01 mx sm-mta[43]: 6B2KZ0aa000042: to=<user@contoso.com>, delay=00:00:01, xdelay=00:00:01, mailer=relay, pri=120300, relay=[127.0.0.1] [127.0.0.1], dsn=2.0.0, stat=Sent (Ok: queued as 12345)") else {
            return XCTFail("no delivery")
        }
        XCTAssertEqual(d.status, "sent")
        XCTAssertEqual(d.relay, "[127.0.0.1] [127.0.0.1]")
        XCTAssertEqual(d.detail, "Ok: queued as 12345")
        guard case .refusal(let id, let r)? = event("Dec  2 20:51:02 mx sm-mta[44]: 6B2KZ0aa000044: Milter: to=<c@d.example>, reject=550 5.7.64 Relay access denied") else {
            return XCTFail("no refusal")
        }
        XCTAssertEqual(id, "6B2KZ0aa000044")
        XCTAssertEqual(r.recipient, "c@d.example")
        XCTAssertEqual(r.reply, "550 5.7.64 Relay access denied")
        XCTAssertTrue(r.byMilter)
        guard case .refusal(_, let rule)? = event("Dec  2 20:51:02 mx sendmail[44]: 6B2KZ0aa000044: ruleset=check_rcpt, arg1=<c@d.example>, relay=x [192.0.2.1], reject=550 5.7.1 <c@d.example>... Relaying denied") else {
            return XCTFail("no ruleset refusal")
        }
        XCTAssertEqual(rule.stage, "check_rcpt")
        XCTAssertEqual(event("Dec  2 20:51:01 mx sm-mta[43]: STARTTLS=client, relay=mx.fabrikam.test, version=TLSv1.3, verify=OK, cipher=TLS_AES_256_GCM_SHA384, bits=256/256"),
                       .outboundTLS(peer: "mx.fabrikam.test", MailTLS(trust: "OK", protocol: "TLSv1.3", cipher: "TLS_AES_256_GCM_SHA384")))
        XCTAssertEqual(rule.recipient, "c@d.example")
        XCTAssertFalse(rule.byMilter)
    }

    // MARK: - Joining

    private let handMadePostfix = """
        Dec  2 20:50:01 mx postfix/smtpd[811]: connect from localhost[127.0.0.1]
        Dec  2 20:50:01 mx postfix/smtpd[811]: Anonymous TLS connection established from localhost[127.0.0.1]: TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)
        Dec  2 20:50:01 mx postfix/smtpd[811]: NOQUEUE: milter-reject: RCPT from client.example[198.18.0.9]: 550 5.7.64 Relay access denied; from=<a@b.example> to=<c@d.example> proto=ESMTP helo=<h>
        Dec  2 20:50:01 mx postfix/smtpd[811]: AAAA1: client=client.example[198.18.0.9]
        Dec  2 20:50:01 mx postfix/qmgr[700]: AAAA1: from=<a@b.example>, size=300, nrcpt=1 (queue active)
        Dec  2 20:50:01 mx connector-milter[5]: NOQUEUE: verdict=reject reason=relay-denied direction=incoming inbound=none inbound_type=none client=client.example[198.18.0.9] tls=TLSv1.3 cert=none from=<a@b.example> rcpt=<c@d.example> outbound=none outbound_type=none mode=enforce auth=none
        Dec  2 20:50:01 mx connector-milter[5]: AAAA1: verdict=accept direction=incoming inbound=none inbound_type=none client=client.example[198.18.0.9] tls=TLSv1.3 cert=none from=<a@b.example> rcpt=<x@contoso.com> outbound=none outbound_type=none mode=enforce auth=none
        Dec  2 20:50:02 mx postfix/smtp[900]: AAAA1: to=<x@contoso.com>, relay=127.0.0.1[127.0.0.1]:4025, delay=0.1, delays=0/0/0/0, dsn=2.0.0, status=sent (250 2.0.0 Ok)
        Dec  2 20:50:02 mx postfix/qmgr[700]: AAAA1: removed
        """

    func test_aMessageAndARefusalInOneSessionAreTwoTimelines() {
        let builder = build(handMadePostfix)
        let all = builder.traces(matching: TraceQuery(from: "A@B.example"))
        XCTAssertEqual(all.count, 2)
        let queued = builder.traces(matching: TraceQuery(queueID: "AAAA1"))
        XCTAssertEqual(queued.count, 1)
        let m = queued[0]
        XCTAssertEqual(m.received.client, MailPeer(name: "client.example", address: "198.18.0.9"))
        XCTAssertEqual(m.received.tls?.protocol, "TLSv1.3")
        XCTAssertEqual(m.judged.map(\.verdict), ["accept"])
        XCTAssertEqual(m.delivered.map(\.status), ["sent"])
        XCTAssertNotNil(m.removed)
        XCTAssertTrue(m.refused.isEmpty)
        let refusal = try? XCTUnwrap(builder.traces(matching: TraceQuery(recipient: "<c@d.example>")).first)
        XCTAssertNil(refusal?.queueID)
        XCTAssertEqual(refusal?.refused.first?.reply, "550 5.7.64 Relay access denied")
        XCTAssertEqual(refusal?.judged.first?.reason, "relay-denied")
        XCTAssertEqual(refusal?.received.tls?.trust, "Anonymous")
        let text = m.text(clock: LogClock(now: Date(), timeZone: utc))
        XCTAssertTrue(text.contains("received from client.example[198.18.0.9] over TLSv1.3 (Anonymous"), text)
        XCTAssertTrue(text.contains("delivered <x@contoso.com> to 127.0.0.1[127.0.0.1]:4025: sent"), text)
        // A terminal escape written into the log is not replayed on the reader's terminal.
        let hostile = build(handMadePostfix.replacingOccurrences(of: "(250 2.0.0 Ok)", with: "(250 \u{1B}[2J Ok)"))
        let hostileText = hostile.traces(matching: TraceQuery(queueID: "AAAA1"))[0].text(clock: LogClock(now: Date(), timeZone: utc))
        XCTAssertFalse(hostileText.contains("\u{1B}"), hostileText)
        XCTAssertTrue(hostileText.contains("(250 ?[2J Ok)"), hostileText)
    }

    func test_aVerdictWithoutMTALinesIsStillATimeline() {
        let builder = build("""
            Dec  2 20:50:01 mx connector-milter[5]: NOQUEUE: verdict=reject reason=relay-denied direction=incoming inbound=none inbound_type=none client=client.example[198.18.0.9] tls=none cert=none from=<a@b.example> rcpt=<c@d.example> outbound=none outbound_type=none mode=enforce auth=none
            """)
        let traces = builder.traces(matching: TraceQuery(recipient: "c@d.example"))
        XCTAssertEqual(traces.count, 1)
        XCTAssertEqual(traces.first?.clientText, "client.example[198.18.0.9]")
    }

    func test_timeSelectionUsesTheFirstLine() {
        let builder = build(handMadePostfix)
        var clock = LogClock(now: Date(timeIntervalSince1970: 1_796_259_200), timeZone: utc)
        let year = clock.format(clock.now).prefix(4)
        let before = clock.parseArgument("\(year)-12-02T20:50:00Z")!
        let after = clock.parseArgument("\(year)-12-02T20:50:01Z")!
        XCTAssertEqual(builder.traces(matching: TraceQuery(queueID: "AAAA1", since: before)).count, 1)
        XCTAssertEqual(builder.traces(matching: TraceQuery(queueID: "AAAA1", since: after + 1)).count, 0)
        XCTAssertEqual(builder.traces(matching: TraceQuery(queueID: "AAAA1", until: after)).count, 0)
    }

    // MARK: - Logs written by the real labs

    func test_realPostfixLog_fourEndingsEachInItsOwnTimeline() throws {
        let builder = build(TraceFixtures.postfix)
        XCTAssertEqual(builder.malformedLines, 0, builder.malformedSamples.joined(separator: "\n"))

        let delivered = try XCTUnwrap(builder.traces(matching: TraceQuery(queueID: "1EFE2FA2692")).first)
        XCTAssertEqual(delivered.received.client, MailPeer(name: "mail.fabrikam.com", address: "203.0.113.7"))
        XCTAssertEqual(delivered.received.tls, MailTLS(trust: "Trusted", protocol: "TLSv1.3", cipher: "TLS_AES_256_GCM_SHA384"))
        XCTAssertEqual(delivered.received.certificate, "relay.contoso.com")
        XCTAssertEqual(delivered.from, "pay@fabrikam.com")
        XCTAssertEqual(delivered.recipientCount, 2)
        XCTAssertEqual(delivered.judged.map(\.inbound), ["Contoso on-premises", "Contoso on-premises"])
        let byRecipient = Dictionary(uniqueKeysWithValues: delivered.delivered.map { ($0.recipient, $0) })
        XCTAssertEqual(byRecipient["ap@contoso.com"]?.status, "sent")
        XCTAssertNil(byRecipient["ap@contoso.com"]?.tls)
        XCTAssertEqual(byRecipient["ops@tls.contoso.net"]?.relay, "127.0.0.2[127.0.0.2]:43915")
        XCTAssertEqual(byRecipient["ops@tls.contoso.net"]?.tls?.trust, "Trusted")
        XCTAssertNotNil(delivered.removed)

        let bounced = try XCTUnwrap(builder.traces(matching: TraceQuery(queueID: "529CEFA2692")).first)
        XCTAssertEqual(bounced.delivered.map(\.status), ["bounced"])
        XCTAssertEqual(bounced.delivered.first?.dsn, "5.3.0")
        XCTAssertEqual(bounced.notifications.map(\.queueID), ["5C42AFA27D5"])
        let notice = try XCTUnwrap(builder.traces(matching: TraceQuery(queueID: "5C42AFA27D5")).first)
        XCTAssertEqual(notice.from, "")
        XCTAssertEqual(notice.delivered.map(\.recipient), ["a@b.example"])

        let deferred = try XCTUnwrap(builder.traces(matching: TraceQuery(queueID: "7B604FA2692")).first)
        XCTAssertEqual(deferred.delivered.map(\.status), ["deferred"])
        XCTAssertEqual(deferred.delivered.first?.relay, "none")
        XCTAssertNil(deferred.removed)

        let refused = builder.traces(matching: TraceQuery(recipient: "c@d.example"))
        XCTAssertEqual(refused.count, 1)
        XCTAssertNil(refused.first?.queueID)
        XCTAssertEqual(refused.first?.received.client, MailPeer(name: "client.example", address: "198.18.0.9"))
        XCTAssertEqual(refused.first?.refused.map(\.reply), ["550 5.7.64 Relay access denied"])
        XCTAssertEqual(refused.first?.judged.map(\.reason), ["relay-denied"])

        // The stranger's three messages and its refusal; not the partner's, not the bounce notice.
        XCTAssertEqual(builder.traces(matching: TraceQuery(from: "a@b.example")).count, 3)
    }

    func test_realPostfixLog_textNamesClientVerdictRelayAndStatus() throws {
        let builder = build(TraceFixtures.postfix)
        let trace = try XCTUnwrap(builder.traces(matching: TraceQuery(queueID: "1EFE2FA2692")).first)
        let text = trace.text(clock: LogClock(now: Date(), timeZone: utc))
        for expected in ["message 1EFE2FA2692 (mx, postfix)",
                         "received from mail.fabrikam.com[203.0.113.7] over TLSv1.3 (Trusted, TLS_AES_256_GCM_SHA384), certificate relay.contoso.com",
                         "judged <ap@contoso.com>: accept, inbound Contoso on-premises (onPremises), direction originating, mode enforce",
                         "delivered <ops@tls.contoso.net> to 127.0.0.2[127.0.0.2]:43915: sent, dsn 2.0.0",
                         "TLS TLSv1.3 (Trusted)", "removed from the queue"] {
            XCTAssertTrue(text.contains(expected), "\(expected) not in\n\(text)")
        }
        let json = trace.jsonObject(clock: LogClock(now: Date(), timeZone: utc))
        XCTAssertTrue(JSONSerialization.isValidJSONObject(json))
        XCTAssertEqual((json["received"] as? [String: Any])?["client"] as? String, "mail.fabrikam.com[203.0.113.7]")
    }

    func test_realSendmailLog_deliveredOverTLSAndRefusedAtRCPT() throws {
        let builder = build(TraceFixtures.sendmail)
        XCTAssertEqual(builder.malformedLines, 0, builder.malformedSamples.joined(separator: "\n"))
        let delivered = try XCTUnwrap(builder.traces(matching: TraceQuery(queueID: "6B2KiBJs007576")).first)
        XCTAssertEqual(delivered.mta, .sendmail)
        XCTAssertEqual(delivered.received.client?.address, "127.0.9.9")
        XCTAssertEqual(delivered.received.tls?.trust, "OK")
        XCTAssertEqual(delivered.received.tls?.protocol, "TLSv1.3")
        XCTAssertEqual(delivered.judged.map(\.verdict), ["accept"])
        XCTAssertEqual(delivered.delivered.map(\.status), ["sent"])
        XCTAssertEqual(delivered.delivered.first?.relay, "[127.0.0.1] [127.0.0.1]")
        let refused = try XCTUnwrap(builder.traces(matching: TraceQuery(recipient: "c@d.example")).first)
        XCTAssertEqual(refused.queueID, "6B2KiB3h007580")
        XCTAssertEqual(refused.refused.first?.reply, "550 5.7.64 Relay access denied")
        XCTAssertEqual(refused.judged.first?.reason, "relay-denied")
        XCTAssertEqual(refused.received.client?.address, "127.0.9.9")
    }

    /// A log shuffled, truncated and salted with garbage still traces what it holds.
    func test_realPostfixLog_cutAndSaltedIsNeverFatal() {
        var lines = TraceFixtures.postfix.split(separator: "\n").map(String.init)
        lines = lines.enumerated().map { n, line in n % 3 == 0 ? String(line.prefix(line.count / 2)) : line }
        lines.insert("Dec 02 20:44:08 mx postfix/smtp[1]: 1EFE2FA2692: to=<x@y>, relay=\u{0}", at: 3)
        lines.insert(String(repeating: "<", count: 10_000), at: 5)
        let builder = build(lines.reversed().joined(separator: "\n"))
        XCTAssertGreaterThan(builder.malformedLines, 0)
        _ = builder.traces(matching: TraceQuery(from: "a@b.example"))
    }
}
