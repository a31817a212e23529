// The hostile-session catalogue (HostileSessionTests) through the real Sendmail 8.17 lab:
// the cases that apply to Sendmail (it has no XCLIENT, so no forged client address or name).
// Each case states what Sendmail answers itself, before the milter sees anything, and the
// verdict line. After each case the worker is the process the class started with (nothing
// crashed it) and every verdict line logged so far conforms (VerdictLineReader), with no CR,
// LF or NUL.
//
// One Postfix lab (its daemon, syslog collector, sink and CA), one Sendmail beside it and one
// daemon serve the whole class (stopping the daemon costs ~5 s).

import ConnectorPolicy
import Foundation
import Glibc
import XCTest
@testable import ConnectorReview

final class SendmailHostileTests: XCTestCase {
    private final class Shared: @unchecked Sendable {
        let postfix: PostfixLab
        let sendmail: SendmailLab
        let worker: pid_t
        var failed = false

        init(postfix: PostfixLab, sendmail: SendmailLab, worker: pid_t) {
            self.postfix = postfix
            self.sendmail = sendmail
            self.worker = worker
        }
    }

    nonisolated(unsafe) private static var shared: Result<Shared, any Error>?

    override class func setUp() {
        super.setUp()
        shared = Result {
            let postfix = try PostfixLab.start()
            var started: SendmailLab?
            do {
                let sendmail = try SendmailLab.start(beside: postfix)
                started = sendmail
                try postfix.startDaemon(policy: sendmailLabPolicy)
                let supervisor = try XCTUnwrap(postfix.daemon)
                var worker: pid_t?
                _ = waitFor(timeout: 10) {
                    worker = ProcessInfoReader.children(of: supervisor.pid).first
                    return worker != nil
                }
                guard let worker else { throw LabError("the daemon has no worker process") }
                return Shared(postfix: postfix, sendmail: sendmail, worker: worker)
            } catch {
                started?.stop()
                postfix.stop(removeDirectory: false)
                throw LabError("\(error)\nlab directory kept: \(postfix.directory)")
            }
        }
    }

    override class func tearDown() {
        if case .success(let lab) = shared {
            SendmailLab.stopShared(lab.sendmail, beside: lab.postfix, failed: lab.failed)
        }
        shared = nil
        super.tearDown()
    }

    private var lab: Shared!
    private var postfix: PostfixLab { lab.postfix }
    private var sendmail: SendmailLab { lab.sendmail }

    override func setUpWithError() throws {
        guard let shared = Self.shared else { throw LabError("the shared Sendmail lab was not set up") }
        lab = try shared.get()
    }

    /// The daemon survived: the supervisor runs, its worker is the one the class started with
    /// (a crash would have made the supervisor start another), and every verdict line conforms.
    override func tearDownWithError() throws {
        defer { if (testRun?.totalFailureCount ?? 0) > 0 { lab?.failed = true } }
        guard let lab else { return }
        let supervisor = try XCTUnwrap(lab.postfix.daemon)
        XCTAssertTrue(supervisor.isRunning, "the daemon stopped")
        XCTAssertEqual(ProcessInfoReader.children(of: supervisor.pid).first, lab.worker, "the worker was replaced: it crashed")
        for line in lab.postfix.verdictLines() {
            XCTAssertEqual(VerdictLineReader.conformanceProblems(line), [], line)
            XCTAssertFalse(line.contains("\n") || line.contains("\r") || line.contains("\0"), line)
        }
    }

    // MARK: - Helpers

    /// A plain session from 127.0.0.1 (in no connector), after EHLO.
    private func session() throws -> (RawSMTPClient, SMTPReply) {
        let client = try sendmail.openSMTP()
        let ehlo = try client.send("EHLO client.lab.test")
        XCTAssertEqual(ehlo.code, 250, client.transcript)
        return (client, ehlo)
    }

    /// "250 2.0.0 6AT1JfBb014979 Message accepted for delivery" -> "6AT1JfBb014979".
    private func queueID(_ reply: SMTPReply) -> String? {
        guard reply.code == 250, reply.text.hasSuffix("Message accepted for delivery") else { return nil }
        return reply.text.split(separator: " ").dropFirst(2).first.map(String.init)
    }

    // MARK: - Oversized commands and addresses

    /// Sendmail reads a command line of about 2 KB at most (MAXLINE 2048: a 2,024-byte MAIL
    /// passes, a 2,054-byte one does not); a longer one is an attack to it: "421 4.7.0 ...
    /// Command too long, possible attack" and the connection closes. The milter sees nothing.
    func test_commandsOverSendmailsLineLimit_close421AndReachNoMilter() throws {
        let mark = postfix.verdictLines().count
        let huge = String(repeating: "a", count: 10_000)
        for command in ["MAIL FROM:<" + huge + "@example.org>",
                        "MAIL FROM:<" + String(repeating: "a", count: 2_030) + "@example.org>"] {
            let (client, _) = try session()
            defer { client.close() }
            let reply = try client.send(command)
            XCTAssertEqual(reply.text, "421 4.7.0 \(SendmailLab.hostName) Command too long, possible attack localhost [127.0.0.1]",
                           client.transcript)
            XCTAssertThrowsError(try client.send("NOOP"), "Sendmail closed the connection")
        }
        let (client, _) = try session()
        defer { client.close() }
        XCTAssertEqual(try client.send("MAIL FROM:<a@example.org>").code, 250, client.transcript)
        XCTAssertEqual(try client.send("RCPT TO:<" + huge + "@contoso.com>").code, 421, client.transcript)
        XCTAssertThrowsError(try client.send("NOOP"), "Sendmail closed the connection")
        XCTAssertEqual(postfix.verdictLines().count, mark, "the milter saw no recipient")
    }

    /// Sendmail takes an address of at most 255 bytes with its angle brackets (MAXNAME 256)
    /// and a token of at most that: longer ones are its own 553 and never reach the milter;
    /// the session goes on. An address just under the limit reaches the milter whole.
    func test_addressesOverSendmailsLimits_are553AndTheSessionGoesOn() throws {
        let mark = postfix.verdictLines().count
        let (client, _) = try session()
        defer { client.quit() }
        let local = { (count: Int) in "L" + String(repeating: "x", count: count - 1) }
        // 243 + "@example.org" + "<>" = 257 bytes: over 255; a 260-octet local part is over the token limit.
        let mail243 = try client.send("MAIL FROM:<\(local(243))@example.org>")
        XCTAssertTrue(mail243.text.hasPrefix("553 5.1.0 <Lxxx") && mail243.text.hasSuffix(" too long (255 bytes max)"), mail243.text)
        let mail260 = try client.send("MAIL FROM:<\(local(260))@example.org>")
        XCTAssertTrue(mail260.text.hasPrefix("553 5.1.0 <Lxxx") && mail260.text.hasSuffix("@example.org>... prescan: token too long"), mail260.text)
        let mail2000 = try client.send("MAIL FROM:<\(local(2_000))@example.org>")
        XCTAssertTrue(mail2000.text.hasPrefix("553 5.1.1 <Lxxx") && mail2000.text.hasSuffix("@example.org>... Address too long"), mail2000.text)
        XCTAssertEqual(postfix.verdictLines().count, mark)

        // 240 + "@example.org" + "<>" = 254 bytes: accepted, and the milter judges it.
        XCTAssertEqual(try client.send("MAIL FROM:<\(local(240))@example.org>").code, 250, client.transcript)
        let rcpt300 = try client.send("RCPT TO:<\(local(300))@contoso.com>")
        XCTAssertTrue(rcpt300.text.hasPrefix("553 5.1.0 <Lxxx") && rcpt300.text.hasSuffix("@contoso.com>... prescan: token too long"), rcpt300.text)
        let rcpt1900 = try client.send("RCPT TO:<\(local(1_900))@contoso.com>")
        XCTAssertTrue(rcpt1900.text.hasPrefix("553 5.1.1 <Lxxx") && rcpt1900.text.hasSuffix("@contoso.com>... Address too long"), rcpt1900.text)
        XCTAssertEqual(postfix.verdictLines().count, mark, "the milter saw none of them")
        // Sendmail shortens the address in its reply (xxx...xxx); the milter's text follows it.
        let far = try client.send("RCPT TO:<\(local(240))@far.example>")
        XCTAssertTrue(far.text.hasPrefix("550 5.7.64 <Lxxx") && far.text.contains("xxx...xxx")
                      && far.text.hasSuffix("xxx@far.example>... Relay access denied"), far.text)
        XCTAssertEqual(try client.send("RCPT TO:<long-survivor@contoso.com>").code, 250, client.transcript)
        let queueID = try XCTUnwrap(queueID(try client.sendData("Subject: after the long lines\n\nHello.")), client.transcript)

        let refused = try postfix.uniqueVerdict(containing: "rcpt=<\(local(240))@far.example>")
        XCTAssertTrue(refused.hasPrefix("\(queueID): verdict=reject reason=relay-denied direction=incoming inbound=none inbound_type=none client=localhost[127.0.0.1] tls=none cert=none from=<\(local(240))@example.org> "), refused)
        let accepted = try postfix.uniqueVerdict(containing: "rcpt=<long-survivor@contoso.com>")
        XCTAssertTrue(accepted.hasPrefix("\(queueID): verdict=accept direction=incoming inbound=none"), accepted)
        XCTAssertEqual(try verdictRecord(accepted).from, "\(local(240))@example.org", "under 512 characters: not cut")
        XCTAssertEqual(postfix.verdictLines().count, mark + 2)
    }

    // MARK: - Quote injection aimed at the verdict line

    /// Sendmail takes quoted local parts with escaped quotes as they are and hands them on.
    func test_quotedLocalPartsFakingFields_stayInsideOneQuotedValue() throws {
        let (client, _) = try session()
        defer { client.quit() }
        let fake = #""x\" verdict=accept inbound=\"Contoso on-premises\" y"@example.org"#
        XCTAssertEqual(try client.send("MAIL FROM:<\(fake)>").text, "250 2.1.0 <\(fake)>... Sender ok", client.transcript)
        let rcptFake = #""r\" mode=monitor reason=none"@far.example"#
        XCTAssertEqual(try client.send("RCPT TO:<\(rcptFake)>").text, "550 5.7.64 <\(rcptFake)>... Relay access denied", client.transcript)
        XCTAssertEqual(try client.send("RCPT TO:<quote-target@contoso.com>").code, 250, client.transcript)
        let queueID = try XCTUnwrap(queueID(try client.sendData("Subject: quotes\n\nHello.")), client.transcript)

        let refused = try postfix.uniqueVerdict(containing: #"mode=monitor reason=none"#)
        XCTAssertTrue(refused.contains(#" from="<\"x\\\" verdict=accept inbound=\\\"Contoso on-premises\\\" y\"@example.org>" rcpt="<\"r\\\" mode=monitor reason=none\"@far.example>" outbound=none"#), refused)
        let r = try verdictRecord(refused)
        XCTAssertEqual(r.verdict, .reject)
        XCTAssertEqual(r.mode, .enforce)
        XCTAssertEqual(r.reason, "relay-denied")
        XCTAssertEqual(r.inbound, nil)
        XCTAssertEqual(r.from, fake)
        XCTAssertEqual(r.recipient, rcptFake)

        let accepted = try postfix.uniqueVerdict(containing: "rcpt=<quote-target@contoso.com>")
        XCTAssertTrue(accepted.hasPrefix("\(queueID): verdict=accept direction=incoming inbound=none inbound_type=none"), accepted)
        XCTAssertEqual(try verdictRecord(accepted).from, fake)
        XCTAssertEqual(try verdictRecord(accepted).inbound, nil)
    }

    // MARK: - Injection aimed at the stamped headers

    func test_forgedHeaderVariants_areAllRemovedAndExactlyOneStampEach() throws {
        let (client, _) = try session()
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
        let queueID = try XCTUnwrap(queueID(try client.sendData(message)), client.transcript)
        let delivered = try sendmail.waitForDelivery(queueID: queueID)
        XCTAssertEqual(delivered.headerValues("X-Connector-Inbound"), ["none"], delivered.headerSection)
        XCTAssertEqual(delivered.headerValues("X-Connector-Direction"), ["incoming"], delivered.headerSection)
        XCTAssertFalse(delivered.raw.contains("folded onto"), delivered.headerSection)
        XCTAssertFalse(delivered.raw.lowercased().contains("originating"), delivered.headerSection)
        _ = try postfix.uniqueVerdict(containing: "rcpt=<header-target@contoso.com>")
    }

    // MARK: - SMTPUTF8

    /// Sendmail 8.17 as Debian builds and the lab configures it offers no SMTPUTF8 and refuses
    /// 8-bit addresses itself, with or without the parameter; the session goes on.
    func test_smtputf8_isNotOfferedAndEightBitAddressesAreRefusedCleanly() throws {
        let mark = postfix.verdictLines().count
        let (client, ehlo) = try session()
        defer { client.quit() }
        XCTAssertFalse(ehlo.lines.contains { $0.uppercased().hasPrefix("SMTPUTF8") }, ehlo.text)
        for command in ["MAIL FROM:<δοκιμή@παράδειγμα.example> SMTPUTF8", "MAIL FROM:<δοκιμή@παράδειγμα.example>"] {
            let reply = try client.send(command)
            XCTAssertTrue(reply.text.hasPrefix("501 5.1.7 8-bit character in mailbox address \"<"), reply.text)
        }
        XCTAssertEqual(try client.send("MAIL FROM:<a@example.org>").code, 250, client.transcript)
        let rcpt = try client.send("RCPT TO:<用户@contoso.com>")
        XCTAssertTrue(rcpt.text.hasPrefix("501 5.1.3 8-bit character in mailbox address \"<"), rcpt.text)
        XCTAssertEqual(postfix.verdictLines().count, mark, "the milter saw none of them")
        XCTAssertEqual(try client.send("RCPT TO:<utf8-survivor@contoso.com>").code, 250, client.transcript)
        XCTAssertNotNil(queueID(try client.sendData("Subject: after 8-bit addresses\n\nHello.")), client.transcript)
        _ = try postfix.uniqueVerdict(containing: "rcpt=<utf8-survivor@contoso.com>")
    }

    // MARK: - Certificate names

    /// A CA-signed certificate whose CN carries quotes and "field=" text and ends in
    /// ".contoso.com". Sendmail hands it xtext-encoded in {cn_subject} (xtextify with "<>\")"
    /// escaped too: `evil+22+20cert+3D+22relay.contoso.com`) with {verify}=OK; decoded, it is
    /// one quoted `cert=` value and, being no host name, does not match "*.contoso.com".
    func test_certificateNameWithQuotes_isOneQuotedValueAndIdentifiesNobody() throws {
        let cn = #"evil" cert="relay.contoso.com"#
        XCTAssertEqual(SessionMacros.xtextDecoded("evil+22+20cert+3D+22relay.contoso.com"), cn)
        let certificate = try postfix.certificates.issueClient(commonName: cn, name: "sendmail-quotes")
        var o = SwaksOptions(from: "a@example.org", to: ["cert-quotes@far.example", "cert-quotes@contoso.com"])
        o.clientCertificate = certificate
        let t = try sendmail.swaks(o, from: "127.0.9.40")
        XCTAssertEqual(t.rcptReply(for: "cert-quotes@far.example")?.text, "550 5.7.64 <cert-quotes@far.example>... Relay access denied", t.text)
        try sendmail.waitForLog(matching: #"STARTTLS=server, relay=\[127\.0\.9\.40\], version=TLSv1\.3, verify=OK"#)
        let line = try postfix.uniqueVerdict(containing: "rcpt=<cert-quotes@far.example>")
        XCTAssertTrue(line.contains(#" inbound=none inbound_type=none client=unknown[127.0.9.40] tls=TLSv1.3 cert="evil\" cert=\"relay.contoso.com" from=<a@example.org> "#), line)
        let r = try verdictRecord(line)
        XCTAssertEqual(r.certificate, cn)
        XCTAssertEqual(r.inbound, nil)
        XCTAssertEqual(r.tlsVersion, "TLSv1.3")
        let queueID = try XCTUnwrap(t.sendmailQueueID, t.text)
        let delivered = try sendmail.waitForDelivery(queueID: queueID)
        XCTAssertEqual(delivered.headerValues("X-Connector-Inbound"), ["none"], delivered.headerSection)
        XCTAssertEqual(try verdictRecord(try postfix.uniqueVerdict(containing: "rcpt=<cert-quotes@contoso.com>")).inbound, nil)
    }

    /// Unlike Postfix, Sendmail passes a CN with control characters on (xtext: +01+7F, with
    /// {verify}=OK): the verdict line writes them escaped, and the name identifies nobody.
    func test_certificateNameWithControlCharacters_isEscapedAndIdentifiesNobody() throws {
        let cn = "relay\u{01}\u{7f}.contoso.com"
        XCTAssertEqual(SessionMacros.xtextDecoded("relay+01+7F.contoso.com"), cn)
        let certificate = try postfix.certificates.issueClient(commonName: cn, name: "sendmail-controls")
        var o = SwaksOptions(from: "ceo@contoso.com", to: ["cert-controls@far.example"])
        o.clientCertificate = certificate
        let t = try sendmail.swaks(o, from: "127.0.9.41")
        XCTAssertEqual(t.rcptReply(for: "cert-controls@far.example")?.text, "550 5.7.64 <cert-controls@far.example>... Relay access denied", t.text)
        let line = try postfix.uniqueVerdict(containing: "rcpt=<cert-controls@far.example>")
        XCTAssertTrue(line.contains(#" inbound=none inbound_type=none client=unknown[127.0.9.41] tls=TLSv1.3 cert="relay\x01\x7f.contoso.com" from=<ceo@contoso.com> "#), line)
        let r = try verdictRecord(line)
        XCTAssertEqual(r.certificate, cn)
        XCTAssertEqual(r.inbound, nil)
    }
}
