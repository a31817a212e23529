// A catalogue of hostile SMTP sessions through a real Postfix and the real daemon (issue 7):
// oversized commands, NUL bytes, CR/LF and quote injection aimed at the verdict line and at
// the stamped headers, SMTPUTF8 addresses, odd IPv6 forms from XCLIENT, certificate names
// with quotes and control characters, empty or missing macros.
//
// Each case states the reply it expects (Postfix's own where Postfix answers first) and the
// verdict line. After each case the worker is the same process (nothing crashed it), and every
// verdict line logged so far is exactly what VerdictLine.format writes: the keys in order, no
// extra field, no raw control character.
//
// One lab and one daemon serve the whole class (stopping a daemon costs ~5 s).

import ConnectorPolicy
import ConnectorReview
import Foundation
import Glibc
import XCTest

final class HostileSessionTests: XCTestCase {
    private static let lab = SharedLab(policy: labPolicy)
    private static let workerLock = NSLock()
    nonisolated(unsafe) private static var firstWorker: pid_t?

    override class func tearDown() {
        lab.stop()
        super.tearDown()
    }

    private func lab() throws -> PostfixLab { try Self.lab.shared() }

    override func setUpWithError() throws {
        let lab = try lab()
        let supervisor = try XCTUnwrap(lab.daemon)
        let worker = try XCTUnwrap(ProcessInfoReader.children(of: supervisor.pid).first, "no worker process")
        Self.workerLock.withLock { if Self.firstWorker == nil { Self.firstWorker = worker } }
    }

    /// The daemon survived: the supervisor runs, its worker is the one the class started with
    /// (a crash would have made the supervisor start another), and every verdict line conforms.
    override func tearDownWithError() throws {
        let lab = try lab()
        let supervisor = try XCTUnwrap(lab.daemon)
        XCTAssertTrue(supervisor.isRunning, "the daemon stopped")
        let worker = ProcessInfoReader.children(of: supervisor.pid).first
        XCTAssertEqual(worker, Self.workerLock.withLock { Self.firstWorker }, "the worker was replaced: it crashed")
        for line in lab.verdictLines() {
            XCTAssertEqual(VerdictLineReader.conformanceProblems(line), [], line)
            XCTAssertFalse(line.contains("\n") || line.contains("\r") || line.contains("\0"), line)
        }
    }

    // MARK: - Helpers

    private func session(_ lab: PostfixLab, xclient: String? = nil) throws -> RawSMTPClient {
        let client = try lab.openSMTP()
        XCTAssertEqual(try client.send("EHLO client.lab.test").code, 250)
        if let xclient {
            // XCLIENT answers with a new greeting; then EHLO again, as a client must.
            XCTAssertEqual(try client.send("XCLIENT " + xclient).code, 220, client.transcript)
            XCTAssertEqual(try client.send("EHLO client.lab.test").code, 250)
        }
        return client
    }

    // MARK: - Oversized commands (10 KB)

    /// Postfix reads at most line_length_limit (2048) bytes of a command and drops the rest: a
    /// 10 KB EHLO becomes a 2 KB one (accepted: the lab has no HELO restrictions), a 10 KB MAIL
    /// or RCPT loses its closing ">" and Postfix refuses its syntax before the milter sees it.
    func test_tenKilobyteHeloMailAndRcpt_arePostfixsToAnswerAndTheSessionGoesOn() throws {
        let lab = try lab()
        let mark = lab.verdictLines().count
        let huge = String(repeating: "a", count: 10_000)
        let client = try lab.openSMTP()
        defer { client.quit() }
        let helo = try client.send("EHLO " + huge + ".example")
        XCTAssertEqual(helo.code, 250, client.transcript)
        XCTAssertEqual(try client.send("MAIL FROM:<" + huge + "@example.org>").text, "501 5.1.7 Bad sender address syntax")
        XCTAssertEqual(try client.send("MAIL FROM:<a@example.org>").code, 250, client.transcript)
        XCTAssertEqual(try client.send("RCPT TO:<" + huge + "@contoso.com>").text, "501 5.1.3 Bad recipient address syntax")
        XCTAssertEqual(lab.verdictLines().count, mark, "the milter saw no recipient")
        // The same connection still works.
        XCTAssertEqual(try client.send("RCPT TO:<long-survivor@contoso.com>").code, 250, client.transcript)
        let queued = try client.sendData("Subject: after the long lines\n\nHello.")
        let queueID = try XCTUnwrap(queued.queueID, client.transcript)
        let line = try lab.uniqueVerdict(containing: "rcpt=<long-survivor@contoso.com>")
        XCTAssertTrue(line.hasPrefix("\(queueID): verdict=accept direction=incoming inbound=none"), line)
        XCTAssertEqual(lab.verdictLines().count, mark + 1)
    }

    /// Under the line limit but far over SMTP's 256 octets: the milter sees it and the verdict
    /// line cuts the value at 512 characters, quoted, ending in "...".
    func test_addressesOf1900Octets_reachTheMilterAndAreCutInTheVerdictLine() throws {
        let lab = try lab()
        let longLocal = "L" + String(repeating: "x", count: 1_900)
        let client = try session(lab)
        defer { client.quit() }
        XCTAssertEqual(try client.send("MAIL FROM:<\(longLocal)@example.org>").code, 250, client.transcript)
        let far = try client.send("RCPT TO:<\(longLocal)@far.example>")
        XCTAssertEqual(far.text, "550 5.7.64 Relay access denied", client.transcript)
        XCTAssertEqual(try client.send("RCPT TO:<long-local@contoso.com>").code, 250, client.transcript)
        let queueID = try XCTUnwrap(try client.sendData("Subject: long sender\n\nHello.").queueID, client.transcript)

        let refused = try lab.uniqueVerdict(containing: "verdict=reject reason=relay-denied direction=incoming inbound=none inbound_type=none client=localhost[127.0.0.1] tls=none cert=none from=\"<Lxxx")
        XCTAssertTrue(refused.contains("xxx...\" rcpt=\"<Lxxx"), refused)
        XCTAssertTrue(refused.hasSuffix("xxx...\" outbound=none outbound_type=none mode=enforce auth=none original_client=none"), refused)
        let accepted = try lab.uniqueVerdict(containing: "rcpt=<long-local@contoso.com>")
        XCTAssertTrue(accepted.hasPrefix("\(queueID): verdict=accept"), accepted)
        let from = try verdictRecord(accepted).from
        XCTAssertTrue(from.contains("Lxxx") && from.unicodeScalars.count <= VerdictLine.maximumValueLength + 3, from)
    }

    // MARK: - NUL, CR, LF

    /// Postfix refuses an address holding a NUL or a bare CR as bad syntax: the milter never sees it.
    func test_nulBytesAndBareCarriageReturns_areRefusedByPostfix() throws {
        let lab = try lab()
        let mark = lab.verdictLines().count
        let client = try session(lab)
        defer { client.quit() }
        XCTAssertEqual(try client.send("MAIL FROM:<nul\0byte@example.org>").text, "501 5.1.7 Bad sender address syntax")
        XCTAssertEqual(try client.send("MAIL FROM:<bare\rcr@example.org>").text, "501 5.1.7 Bad sender address syntax")
        XCTAssertEqual(try client.send("MAIL FROM:<a@example.org>").code, 250)
        XCTAssertEqual(try client.send("RCPT TO:<nul\0rcpt@contoso.com>").text, "501 5.1.3 Bad recipient address syntax")
        XCTAssertEqual(try client.send("RCPT TO:<bare\rcr@contoso.com>").text, "501 5.1.3 Bad recipient address syntax")
        XCTAssertEqual(lab.verdictLines().count, mark)
        XCTAssertEqual(try client.send("RCPT TO:<after-nul@contoso.com>").code, 250, client.transcript)
        XCTAssertNotNil(try client.sendData("Subject: after NUL\n\nHello.").queueID, client.transcript)
        _ = try lab.uniqueVerdict(containing: "rcpt=<after-nul@contoso.com>")
    }

    /// A bare LF ends a command in Postfix: what follows it is a command of its own, not part
    /// of the address. Nothing of it lands in one verdict line.
    func test_lineFeedInjection_splitsIntoSeparateCommands() throws {
        let lab = try lab()
        let client = try session(lab)
        defer { client.quit() }
        XCTAssertEqual(try client.send("MAIL FROM:<a@example.org>").code, 250)
        // One write: "RCPT TO:<lf-one@far.example>\nRCPT TO:<lf-two@contoso.com>\r\n".
        let first = try client.send("RCPT TO:<lf-one@far.example>\nRCPT TO:<lf-two@contoso.com>")
        XCTAssertEqual(first.text, "550 5.7.64 Relay access denied", client.transcript)
        // The reply to the second command is still in flight: NOOP collects it.
        XCTAssertEqual(try client.send("NOOP").code, 250, "the reply to RCPT TO:<lf-two@contoso.com>")
        let line = try lab.uniqueVerdict(containing: "rcpt=<lf-one@far.example>")
        XCTAssertTrue(line.hasSuffix("rcpt=<lf-one@far.example> outbound=none outbound_type=none mode=enforce auth=none original_client=none"), line)
    }

    // MARK: - Quote injection aimed at the verdict line

    func test_quotedLocalPartsFakingFields_stayInsideOneQuotedValue() throws {
        let lab = try lab()
        let client = try session(lab)
        defer { client.quit() }
        let fake = #""x\" verdict=accept inbound=\"Contoso on-premises\" y"@example.org"#
        XCTAssertEqual(try client.send("MAIL FROM:<\(fake)>").code, 250, client.transcript)
        let rcptFake = #""r\" mode=monitor reason=none"@far.example"#
        XCTAssertEqual(try client.send("RCPT TO:<\(rcptFake)>").text, "550 5.7.64 Relay access denied", client.transcript)
        XCTAssertEqual(try client.send("RCPT TO:<quote-target@contoso.com>").code, 250, client.transcript)
        let queueID = try XCTUnwrap(try client.sendData("Subject: quotes\n\nHello.").queueID, client.transcript)

        let refused = try lab.uniqueVerdict(containing: #"mode=monitor reason=none"#)
        let r = try verdictRecord(refused)
        XCTAssertEqual(r.verdict, .reject)
        XCTAssertEqual(r.mode, .enforce)
        XCTAssertEqual(r.reason, "relay-denied")
        XCTAssertEqual(r.inbound, nil)
        XCTAssertEqual(r.from, fake)
        XCTAssertEqual(r.recipient, rcptFake)

        let accepted = try lab.uniqueVerdict(containing: "rcpt=<quote-target@contoso.com>")
        XCTAssertTrue(accepted.hasPrefix("\(queueID): verdict=accept direction=incoming inbound=none inbound_type=none"), accepted)
        XCTAssertEqual(try verdictRecord(accepted).from, fake)
        XCTAssertEqual(try verdictRecord(accepted).inbound, nil)
    }

    // MARK: - Injection aimed at the stamped headers

    func test_forgedHeaderVariants_areAllRemovedAndExactlyOneStampEach() throws {
        let lab = try lab()
        let client = try session(lab)
        defer { client.quit() }
        XCTAssertEqual(try client.send("MAIL FROM:<news@example.org>").code, 250)
        XCTAssertEqual(try client.send("RCPT TO:<header-target@contoso.com>").code, 250)
        let message = """
            X-Connector-Inbound: Contoso on-premises
            X-CONNECTOR-DIRECTION: originating
            x-connector-inbound:
             folded onto a second line
            X-Connector-Direction:originating
            Subject: forged connector headers

            Hello.
            """
        let queueID = try XCTUnwrap(try client.sendData(message).queueID, client.transcript)
        let delivered = try lab.waitForDelivery(queueID: queueID)
        XCTAssertEqual(delivered.headerValues("X-Connector-Inbound"), ["none"], delivered.headerSection)
        XCTAssertEqual(delivered.headerValues("X-Connector-Direction"), ["incoming"], delivered.headerSection)
        XCTAssertFalse(delivered.raw.contains("folded onto"), delivered.headerSection)
        _ = try lab.uniqueVerdict(containing: "rcpt=<header-target@contoso.com>")
    }

    // MARK: - SMTPUTF8

    func test_smtputf8Addresses_andUnicodeLineSeparators() throws {
        let lab = try lab()
        let client = try session(lab)
        defer { client.quit() }
        XCTAssertEqual(try client.send("MAIL FROM:<δοκιμή@παράδειγμα.example> SMTPUTF8").code, 250, client.transcript)
        XCTAssertEqual(try client.send("RCPT TO:<用户@contoso.com>").code, 250, client.transcript)
        XCTAssertEqual(try client.send("RCPT TO:<пользователь@почта.example>").text, "550 5.7.64 Relay access denied", client.transcript)
        let queueID = try XCTUnwrap(try client.sendData("Subject: utf8\n\nHello.").queueID, client.transcript)
        let accepted = try lab.uniqueVerdict(containing: "rcpt=<用户@contoso.com>")
        XCTAssertTrue(accepted.hasPrefix("\(queueID): verdict=accept direction=incoming"), accepted)
        XCTAssertTrue(accepted.contains(" from=<δοκιμή@παράδειγμα.example> "), accepted)
        _ = try lab.uniqueVerdict(containing: "rcpt=<пользователь@почта.example>")

        // U+2028 (LINE SEPARATOR) and U+0085 (NEL) would start a new line in some log viewers.
        XCTAssertEqual(try client.send("MAIL FROM:<line\u{2028}sep\u{85}nel@example.org> SMTPUTF8").code, 250, client.transcript)
        XCTAssertEqual(try client.send("RCPT TO:<sep-target@far.example>").code, 550, client.transcript)
        let line = try lab.uniqueVerdict(containing: "rcpt=<sep-target@far.example>")
        XCTAssertTrue(line.contains(#"from="<line\u{2028}sep\u{85}nel@example.org>""#), line)
        XCTAssertEqual(try verdictRecord(line).from, "line\u{2028}sep\u{85}nel@example.org")
    }

    // MARK: - Odd but valid IPv6 from XCLIENT

    func test_ipv6FormsFromXclient_areNormalisedAndMatched() throws {
        let lab = try lab()
        // Uppercase, zero groups and "::" mixed: 2001:db8:25::7 is Contoso on-premises (TLS required).
        let upper = try session(lab, xclient: "ADDR=IPv6:2001:DB8:25:0:0::7 NAME=odd.example")
        defer { upper.quit() }
        XCTAssertEqual(try upper.send("MAIL FROM:<ceo@contoso.com>").code, 250, upper.transcript)
        XCTAssertEqual(try upper.send("RCPT TO:<v6-upper@far.example>").text, "454 4.7.0 TLS required", upper.transcript)
        let line = try lab.uniqueVerdict(containing: "rcpt=<v6-upper@far.example>")
        XCTAssertTrue(line.contains(#"inbound="Contoso on-premises" inbound_type=onPremises client=odd.example[2001:db8:25::7]"#), line)

        // 2001:DB8:0:0::25: outside every connector.
        let plain = try session(lab, xclient: "ADDR=IPv6:2001:DB8:0:0::25 NAME=odd.example")
        defer { plain.quit() }
        XCTAssertEqual(try plain.send("MAIL FROM:<a@example.org>").code, 250, plain.transcript)
        XCTAssertEqual(try plain.send("RCPT TO:<v6-plain@far.example>").text, PostfixLab.relayAccessDenied("v6-plain@far.example"),
                       plain.transcript)
        XCTAssertEqual(try plain.send("RCPT TO:<v6-plain@contoso.com>").code, 250, plain.transcript)
        XCTAssertNotNil(try plain.sendData("Subject: v6\n\nHello.").queueID, plain.transcript)
        XCTAssertTrue(try lab.uniqueVerdict(containing: "rcpt=<v6-plain@contoso.com>").contains("client=odd.example[2001:db8::25]"))

        // IPv4-mapped IPv6 written as IPv6: 203.0.113.5 is Fabrikam Bank's (restricted, TLS required).
        let mapped = try session(lab, xclient: "ADDR=IPv6:::ffff:203.0.113.5 NAME=mx.fabrikam.com")
        defer { mapped.quit() }
        XCTAssertEqual(try mapped.send("MAIL FROM:<pay@fabrikam.com>").code, 250, mapped.transcript)
        let reply = try mapped.send("RCPT TO:<v6-mapped@contoso.com>")
        XCTAssertEqual(reply.text, "454 4.7.0 TLS required", "the mapped address is Fabrikam's 203.0.113.5: \(mapped.transcript)")
        let mappedLine = try lab.uniqueVerdict(containing: "rcpt=<v6-mapped@contoso.com>")
        XCTAssertTrue(mappedLine.contains(#"reason=tls-required direction=incoming inbound="Fabrikam Bank" inbound_type=partner"#), mappedLine)
        XCTAssertTrue(mappedLine.contains("client=mx.fabrikam.com[203.0.113.5]"), "Postfix hands the mapped address as IPv4: \(mappedLine)")
    }

    // MARK: - Empty or missing macros

    /// XCLIENT ADDR=[UNAVAILABLE]: Postfix hands libmilter an address it cannot parse, libmilter
    /// logs "connect[0]: inet_aton failed" and aborts the session before any callback of ours;
    /// Postfix then applies milter_default_action = tempfail. Fail closed, and only a client
    /// allowed to use XCLIENT can get there. Postfix waits for no reply at connect or MAIL
    /// (SMFIP_NR_CONN, SMFIP_NR_MAIL), so it may notice only at RCPT, after its own
    /// restrictions: for this client (not in mynetworks) they refuse the relay first.
    func test_unavailableClientAddress_isTempfailedByLibmilter() throws {
        let lab = try lab()
        let mark = lab.verdictLines().count
        let client = try session(lab, xclient: "ADDR=[UNAVAILABLE] NAME=[UNAVAILABLE] HELO=[UNAVAILABLE]")
        defer { client.quit() }
        let mail = try client.send("MAIL FROM:<>")
        let refusal = mail.code == 250 ? try client.send("RCPT TO:<unavailable@contoso.com>") : mail
        XCTAssertTrue(refusal.text == "451 4.7.1 Service unavailable - try again later"
                      || refusal.text == "554 5.7.1 <unavailable@contoso.com>: Relay access denied", client.transcript)
        XCTAssertNotEqual(try client.sendData("Subject: x\n\nHello.").code, 250, "nothing is accepted: \(client.transcript)")
        XCTAssertEqual(lab.verdictLines().count, mark)
    }

    /// A login of [UNAVAILABLE] means no login, an unknown name is "unknown", the null sender is
    /// `<>`, and a recipient without a domain is no accepted domain.
    func test_missingNameLoginAndDomain_failClosedAsAStranger() throws {
        let lab = try lab()
        let client = try session(lab, xclient: "ADDR=198.18.0.31 NAME=[UNAVAILABLE] LOGIN=[UNAVAILABLE]")
        defer { client.quit() }
        XCTAssertEqual(try client.send("MAIL FROM:<>").code, 250, client.transcript)
        XCTAssertEqual(try client.send("RCPT TO:<nologin@far.example>").text, PostfixLab.relayAccessDenied("nologin@far.example"),
                       client.transcript)
        let postmaster = try client.send("RCPT TO:<postmaster>")
        // Postfix lets a bare "postmaster" past its relay control; the milter refuses it.
        XCTAssertEqual(postmaster.text, "550 5.7.64 Relay access denied", client.transcript)
        XCTAssertEqual(try client.send("RCPT TO:<nodomain@contoso.com>").code, 250, client.transcript)
        XCTAssertNotNil(try client.sendData("Subject: bounce\n\nHello.").queueID, client.transcript)
        let line = try lab.uniqueVerdict(containing: "rcpt=<nodomain@contoso.com>")
        XCTAssertTrue(line.contains("inbound=none inbound_type=none client=unknown[198.18.0.31] tls=none cert=none from=<> "), line)
        XCTAssertTrue(line.hasSuffix(" auth=none original_client=none"), line)
    }

    // MARK: - Certificate names

    /// A CA-signed certificate whose CN carries quotes and "field=" text and ends in
    /// ".contoso.com": Postfix passes the printable CN as it is; the verdict line holds it as
    /// one quoted value, and since it is no host name it does not match "*.contoso.com"
    /// (before the fix in Judge.swift it did, and the client relayed as on-premises).
    func test_certificateNameWithQuotes_isOneQuotedValueAndIdentifiesNobody() throws {
        let lab = try lab()
        let cn = #"evil" cert="relay.contoso.com"#
        let certificate = try lab.certificates.issueClient(commonName: cn, name: "quotes")
        var o = SwaksOptions(from: "a@example.org", to: ["cert-quotes@far.example", "cert-quotes@contoso.com"])
        o.xclientAddress = "198.18.0.40"
        o.xclientName = "client.example"
        o.clientCertificate = certificate
        let t = try lab.swaks(o)
        // The policy service does not take the name either: Postfix refuses the relay.
        XCTAssertEqual(t.rcptReply(for: "cert-quotes@far.example")?.text, PostfixLab.relayAccessDenied("cert-quotes@far.example"), t.text)
        let line = try lab.uniqueVerdict(containing: "rcpt=<cert-quotes@contoso.com>")
        XCTAssertTrue(line.contains(#" tls=TLSv1.3 cert="evil\" cert=\"relay.contoso.com" from=<a@example.org> "#), line)
        let r = try verdictRecord(line)
        XCTAssertEqual(r.certificate, cn)
        XCTAssertEqual(r.inbound, nil)
        XCTAssertEqual(r.tlsVersion, "TLSv1.3")
        let queueID = try XCTUnwrap(t.queueID, t.text)
        let delivered = try lab.waitForDelivery(queueID: queueID)
        XCTAssertEqual(delivered.headerValues("X-Connector-Inbound"), ["none"])
    }

    /// Control characters in a CN: Postfix refuses to pass such a name (tls_text_name: "non-printable"),
    /// so it is as if there were no certificate.
    func test_certificateNameWithControlCharacters_identifiesNobody() throws {
        let lab = try lab()
        let certificate = try lab.certificates.issueClient(commonName: "relay\u{01}\u{7f}.contoso.com", name: "controls")
        var o = SwaksOptions(from: "a@example.org", to: ["cert-controls@far.example", "cert-controls@contoso.com"])
        o.xclientAddress = "198.18.0.41"
        o.xclientName = "client.example"
        o.clientCertificate = certificate
        let t = try lab.swaks(o)
        XCTAssertEqual(t.rcptReply(for: "cert-controls@far.example")?.text, PostfixLab.relayAccessDenied("cert-controls@far.example"), t.text)
        let line = try lab.uniqueVerdict(containing: "rcpt=<cert-controls@contoso.com>")
        XCTAssertTrue(line.contains(" tls=TLSv1.3 cert=none "), line)
        XCTAssertTrue(line.contains("inbound=none"), line)
    }
}
