// connector-milter loaded by a real Sendmail 8.17 (Debian's packages, unpacked beside
// Postfix), judged end to end like PostfixMilterTests: SMTP replies, delivered messages and
// verdict lines. Every scenario is also sent through the lab's Postfix, from the same client
// address to the same daemon, and the two verdict lines must be the same but for the queue id
// (and the client's host name, which each MTA looks up its own way).
//
// One Postfix, one Sendmail and one daemon serve the whole class (stopping the daemon costs
// ~5 s: libmilter); a failed run keeps the lab directory (CONNECTOR_LAB_KEEP=1 keeps it always).

import Foundation
import Glibc
import Milter
import XCTest
@testable import ConnectorReview
@testable import ConnectorDaemon
import ConnectorPolicy

/// `labPolicy` with client addresses Sendmail can be given without XCLIENT: a test binds its
/// socket to one of these loopback addresses.
let sendmailLabPolicy: String = {
    var policy = labPolicy
    for (postfixAddresses, loopback) in [("198.51.100.0/24", "127.0.2.0/24"),  // Contoso branch
                                         ("203.0.113.0/24", "127.0.3.0/24"),   // Fabrikam Bank
                                         ("198.18.5.0/24", "127.0.4.0/24")] {  // Tailspin trial
        precondition(policy.contains(postfixAddresses), "labPolicy no longer holds \(postfixAddresses)")
        policy = policy.replacingOccurrences(of: postfixAddresses, with: loopback)
    }
    return policy
}()

/// Client addresses for the scenarios (127.0.0.1 itself is in no connector either).
private enum Client {
    static let stranger = "127.0.9.9"
    static let contosoBranch = "127.0.2.7"
    static let fabrikam = "127.0.3.5"
    static let relay = "127.0.9.20"
}

final class SendmailTests: XCTestCase {
    private final class SharedLab: @unchecked Sendable {
        let postfix: PostfixLab
        let sendmail: SendmailLab
        /// A session sent while no milter listened yet (F=T must tempfail it).
        let withoutMilter: SMTPTranscript
        var failed = false

        init(postfix: PostfixLab, sendmail: SendmailLab, withoutMilter: SMTPTranscript) {
            self.postfix = postfix
            self.sendmail = sendmail
            self.withoutMilter = withoutMilter
        }
    }

    nonisolated(unsafe) private static var shared: Result<SharedLab, any Error>?

    override class func setUp() {
        super.setUp()
        shared = Result {
            let began = Date()
            let postfix = try PostfixLab.start()
            var started: SendmailLab?
            do {
                let sendmail = try SendmailLab.start(beside: postfix)
                started = sendmail
                let probe = try sendmail.swaks(SwaksOptions(from: "a@example.org", to: ["user@contoso.com"]))
                try postfix.startDaemon(policy: sendmailLabPolicy)
                print("Sendmail \(sendmail.root.version) lab beside Postfix started in "
                      + String(format: "%.2f s (Sendmail %.2f s)", Date().timeIntervalSince(began), sendmail.startupDuration))
                return SharedLab(postfix: postfix, sendmail: sendmail, withoutMilter: probe)
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

    private var lab: SharedLab!
    private var postfix: PostfixLab { lab.postfix }
    private var sendmail: SendmailLab { lab.sendmail }

    override func setUpWithError() throws {
        guard let shared = Self.shared else { throw LabError("the shared Sendmail lab was not set up") }
        lab = try shared.get()
    }

    override func tearDown() {
        if (testRun?.totalFailureCount ?? 0) > 0 { lab?.failed = true }
        super.tearDown()
    }

    // MARK: - Lab and packaging

    func test_theLabRunsDebiansSendmail817_failClosedWithoutTheMilter() throws {
        XCTAssertTrue(sendmail.root.version.hasPrefix("8.17."), sendmail.root.version)
        let banner = try XCTUnwrap(lab.withoutMilter.replies(to: "<connect>").first)
        XCTAssertTrue(banner.text.contains("ESMTP Sendmail 8.17"), banner.text)
        // F=T: with no milter listening, Sendmail tempfails instead of going on unfiltered.
        XCTAssertEqual(lab.withoutMilter.mailReply?.text, "451 4.3.2 Please try again later", lab.withoutMilter.text)
        try sendmail.waitForLog(matching: "Milter \\(connector\\): to error state")
        try sendmail.waitForLog(matching: "Milter: initialization failed, temp failing commands")
    }

    func test_packagingSendmailMc_buildsACfSendmailReads() throws {
        let lines = try String(contentsOfFile: LabPaths.repositoryRoot + "/packaging/sendmail.mc", encoding: .utf8)
        let mcPath = sendmail.directory + "/packaging.mc"
        let cfPath = sendmail.directory + "/packaging.cf"
        try sendmail.buildCf(mc: try sendmail.makeMc(milterLines: lines), mcPath: mcPath, cfPath: cfPath)
        let cf = try String(contentsOfFile: cfPath, encoding: .utf8).split(separator: "\n").map(String.init)
        XCTAssertTrue(cf.contains("Xconnector-milter, S=unix:/run/connector-milter/milter.sock, F=T, T=C:30s;S:10s;R:10s;E:5m"))
        var macros: [String: Set<String>] = [:]  // "helo" -> its list, from "O Milter.macros.helo=..."
        for line in cf where line.hasPrefix("O Milter.macros.") {
            let parts = line.dropFirst("O Milter.macros.".count).split(separator: "=", maxSplits: 1)
            guard parts.count == 2 else { continue }
            macros[String(parts[0])] = Set(parts[1].split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) })
        }
        // What the daemon asks for itself must be in the administrator's lists too.
        let stages: [(MilterStage, String)] = [(.helo, "helo"), (.envelopeFrom, "envfrom"), (.envelopeRecipient, "envrcpt"),
                                               (.endOfMessage, "eom")]
        for (stage, name) in stages {
            let requested = Set(ConnectorSessionFactory.requestedMacros[stage] ?? [])
            XCTAssertTrue(requested.isSubset(of: macros[name] ?? []), "\(name): missing \(requested.subtracting(macros[name] ?? []))")
        }
        // Sendmail reads it without a complaint (-bt: address test mode, reads the cf and stops).
        let check = try LabProcess.run(sendmail.command(["-d0.1", "-bt"], cf: cfPath), environment: sendmail.environment, timeout: 30)
        XCTAssertEqual(check.status, 0, check.output)
        XCTAssertFalse(check.output.contains(".cf: line "), check.output)
        XCTAssertTrue(check.output.contains("$j = \(SendmailLab.hostName)"), check.output)
    }

    // MARK: - Refusals, each with its code

    func test_unknownClientSendingToForeignDomain_isRefusedWith5764() throws {
        let both = try sendBoth(SwaksOptions(from: "a@b.example", to: ["c@d.example"]), from: Client.stranger)
        let reply = try XCTUnwrap(both.sendmail.transcript.rcptReply(for: "c@d.example"), both.sendmail.transcript.text)
        // Sendmail puts the address before the milter's text.
        XCTAssertEqual(reply.text, "550 5.7.64 <c@d.example>... Relay access denied")
        XCTAssertEqual(both.postfix.transcript.rcptReply(for: "c@d.example")?.text, PostfixLab.relayAccessDenied("c@d.example"))
        XCTAssertEqual(both.postfix.verdicts, [], "Postfix's relay control refused before the milter saw the recipient")
        let line = try XCTUnwrap(both.sendmail.verdicts.first)
        // Sendmail has a queue id at RCPT already; libmilter's "[127.0.9.9]" means no name.
        XCTAssertTrue(withoutQueueID(line).hasPrefix("verdict=reject reason=relay-denied direction=incoming inbound=none inbound_type=none client=unknown[127.0.9.9] tls=none cert=none from=<a@b.example> rcpt=<c@d.example> outbound=none outbound_type=none mode=enforce"), line)
        XCTAssertFalse(line.hasPrefix("NOQUEUE"), line)
    }

    func test_partnerRestrictedByAddress_refusesForeignAddressWith5751() throws {
        let both = try sendBoth(SwaksOptions(from: "pay@fabrikam.com", to: ["ap@contoso.com"]), from: Client.stranger)
        let reply = try XCTUnwrap(both.sendmail.transcript.rcptReply(for: "ap@contoso.com"), both.sendmail.transcript.text)
        XCTAssertEqual(reply.code, 550)
        XCTAssertEqual(reply.enhancedCode, "5.7.51")
        XCTAssertTrue(reply.text.hasSuffix("Sender not authorized by partner connector"), reply.text)
        XCTAssertTrue(both.sendmail.verdicts.first?.contains("verdict=reject reason=partner-restricted") ?? false, "\(both.sendmail.verdicts)")
        try assertSameVerdicts(both)
    }

    func test_partnerRequiringTls_tempfailsCleartextWith454AndAcceptsTlsWithHeaders() throws {
        let clear = try sendBoth(SwaksOptions(from: "pay@fabrikam.com", to: ["ap@contoso.com"]), from: Client.fabrikam)
        XCTAssertEqual(clear.sendmail.transcript.rcptReply(for: "ap@contoso.com")?.text, "454 4.7.0 TLS required", clear.sendmail.transcript.text)
        XCTAssertTrue(clear.sendmail.verdicts.first?.contains("verdict=tempfail reason=tls-required direction=incoming inbound=\"Fabrikam Bank\" inbound_type=partner client=unknown[127.0.3.5] tls=none") ?? false,
                      "\(clear.sendmail.verdicts)")
        try assertSameVerdicts(clear)

        var o = SwaksOptions(from: "pay@fabrikam.com", to: ["ap@contoso.com"])
        o.tls = true
        let tls = try sendBoth(o, from: Client.fabrikam)
        let queueID = try XCTUnwrap(tls.sendmail.transcript.sendmailQueueID, tls.sendmail.transcript.text)
        let message = try sendmail.waitForDelivery(queueID: queueID)
        XCTAssertEqual(message.headerValues("X-Connector-Inbound"), ["Fabrikam Bank"], message.headerSection)
        XCTAssertEqual(message.headerValues("X-Connector-Direction"), ["incoming"], message.headerSection)
        let line = try XCTUnwrap(tls.sendmail.verdicts.first)
        XCTAssertTrue(line.hasPrefix("\(queueID): verdict=accept direction=incoming inbound=\"Fabrikam Bank\" inbound_type=partner client=unknown[127.0.3.5] tls=TLSv1."), line)
        XCTAssertTrue(line.contains(" cert=none "), "TLS without a client certificate ({verify}=NO) names nobody: \(line)")
        try assertSameVerdicts(tls)
    }

    func test_directSendIsRefusedWith5768_andMonitorModeAcceptsWhatItWouldRefuse() throws {
        let direct = try sendBoth(SwaksOptions(from: "ceo@contoso.com", to: ["cfo@contoso.com"]), from: Client.stranger)
        let reply = try XCTUnwrap(direct.sendmail.transcript.rcptReply(for: "cfo@contoso.com"), direct.sendmail.transcript.text)
        XCTAssertEqual(reply.code, 550)
        XCTAssertEqual(reply.enhancedCode, "5.7.68")
        XCTAssertTrue(reply.text.hasSuffix("Direct send not allowed from unauthorized sources"), reply.text)
        XCTAssertTrue(direct.sendmail.verdicts.first?.contains("verdict=reject reason=direct-send") ?? false, "\(direct.sendmail.verdicts)")
        try assertSameVerdicts(direct)

        let monitored = try sendBoth(SwaksOptions(from: "promo@tailspin.example", to: ["user@contoso.com"]), from: Client.stranger)
        let queueID = try XCTUnwrap(monitored.sendmail.transcript.sendmailQueueID, "monitor mode must accept: \(monitored.sendmail.transcript.text)")
        _ = try sendmail.waitForDelivery(queueID: queueID)
        let line = try XCTUnwrap(monitored.sendmail.verdicts.first)
        XCTAssertTrue(line.hasPrefix("\(queueID): verdict=accept would=reject reason=partner-restricted") && line.contains("mode=monitor"), line)
        try assertSameVerdicts(monitored)
    }

    func test_requireTlsReceiptOfTheOutboundConnector_refusesOnlyThatRecipient() throws {
        let both = try sendBoth(SwaksOptions(from: "ceo@contoso.com", to: ["buyer@woodgrove.example", "peer@other.example"]),
                                from: Client.contosoBranch)
        let t = both.sendmail.transcript
        XCTAssertEqual(t.rcptReply(for: "buyer@woodgrove.example")?.text, "454 4.7.0 TLS required", t.text)
        XCTAssertEqual(t.rcptReply(for: "peer@other.example")?.code, 250, t.text)
        let queueID = try XCTUnwrap(t.sendmailQueueID, t.text)
        let message = try sendmail.waitForDelivery(queueID: queueID)
        XCTAssertEqual(message.headerValues("X-Connector-Inbound"), ["Contoso branch"], message.headerSection)
        XCTAssertEqual(message.headerValues("X-Connector-Direction"), ["originating"], message.headerSection)
        XCTAssertEqual(both.sendmail.verdicts.count, 2, "\(both.sendmail.verdicts)")
        XCTAssertTrue(both.sendmail.verdicts.contains { $0.contains("rcpt=<buyer@woodgrove.example> outbound=\"To Woodgrove\" outbound_type=partner") })
        try assertSameVerdicts(both)
    }

    // MARK: - Client certificates

    func test_verifiedClientCertificate_isOnPremisesAndRelaysOut() throws {
        var o = SwaksOptions(from: "ceo@contoso.com", to: ["partner@other.example"])
        o.clientCertificate = postfix.certificates.client
        let both = try sendBoth(o, from: Client.relay)
        let queueID = try XCTUnwrap(both.sendmail.transcript.sendmailQueueID, both.sendmail.transcript.text)
        let message = try sendmail.waitForDelivery(queueID: queueID)
        XCTAssertEqual(message.headerValues("X-Connector-Inbound"), ["Contoso on-premises"], message.headerSection)
        XCTAssertEqual(message.headerValues("X-Connector-Direction"), ["originating"], message.headerSection)
        let line = try XCTUnwrap(both.sendmail.verdicts.first)
        XCTAssertTrue(line.contains("direction=originating inbound=\"Contoso on-premises\" inbound_type=onPremises"), line)
        XCTAssertTrue(line.contains(" cert=\"relay.contoso.com\" "), "{verify}=OK and {cn_subject} name the certificate: \(line)")
        try assertSameVerdicts(both)
    }

    func test_selfSignedClientCertificate_identifiesNobody() throws {
        var o = SwaksOptions(from: "ceo@contoso.com", to: ["partner2@other.example"])
        o.clientCertificate = try postfix.certificates.selfSignedClient(commonName: "relay.contoso.com", name: "selfsigned-sendmail")
        let both = try sendBoth(o, from: Client.relay)
        let reply = try XCTUnwrap(both.sendmail.transcript.rcptReply(for: "partner2@other.example"), both.sendmail.transcript.text)
        XCTAssertEqual(reply.code, 550)
        XCTAssertEqual(reply.enhancedCode, "5.7.64")
        let line = try XCTUnwrap(both.sendmail.verdicts.first)
        // Sendmail sets {cert_subject} and {cn_subject} for it too, with {verify}=FAIL.
        XCTAssertTrue(line.contains(" tls=TLSv1.") && line.contains(" cert=none "), line)
        XCTAssertEqual(both.postfix.transcript.rcptReply(for: "partner2@other.example")?.text,
                       PostfixLab.relayAccessDenied("partner2@other.example"), "Postfix passes no unverified name to the policy service")
    }

    func test_mailRightAfterStartTlsWithoutSecondEhlo_stillSeesTheCertificate() throws {
        let mark = postfix.verdictLines().count
        let t = try sendmail.sendAfterStartTLSWithoutEHLO(from: "ceo@contoso.com", to: ["partner3@other.example"],
                                                          certificate: postfix.certificates.client)
        XCTAssertEqual(t.rcptReply(for: "partner3@other.example")?.code, 250, t.text)
        let sendmailLines = try verdicts(after: mark, count: 1)
        XCTAssertTrue(sendmailLines[0].contains("inbound=\"Contoso on-premises\"") && sendmailLines[0].contains("cert=\"relay.contoso.com\""),
                      sendmailLines[0])

        let postfixMark = postfix.verdictLines().count
        let p = try postfix.sendAfterStartTLSWithoutEHLO(from: "ceo@contoso.com", to: ["partner3@other.example"],
                                                         certificate: postfix.certificates.client)
        XCTAssertEqual(p.rcptReply(for: "partner3@other.example")?.code, 250, p.text)
        let postfixLines = try verdicts(after: postfixMark, count: 1)
        XCTAssertEqual(postfixLines.map(withoutQueueID), sendmailLines.map(withoutQueueID))
    }

    // MARK: - Headers

    func test_forgedConnectorHeaders_areRemovedAndTheRealOnesStamped() throws {
        var o = SwaksOptions(from: "news@example.org", to: ["reader@contoso.com"])
        o.headers = ["X-Connector-Inbound: Contoso on-premises", "X-Connector-Direction: originating", "x-connector-inbound: again"]
        let both = try sendBoth(o, from: Client.stranger)
        let message = try sendmail.waitForDelivery(queueID: try XCTUnwrap(both.sendmail.transcript.sendmailQueueID, both.sendmail.transcript.text))
        XCTAssertEqual(message.headerValues("X-Connector-Inbound"), ["none"], message.headerSection)
        XCTAssertEqual(message.headerValues("X-Connector-Direction"), ["incoming"], message.headerSection)
        try assertSameVerdicts(both)
    }

    // MARK: - Reload

    func test_reloadBySighup_changesNewSessionsLetsOpenOnesFinishAndKeepsThePolicyWhenBroken() throws {
        let daemon = try XCTUnwrap(postfix.daemon)
        let policyPath = postfix.directory + "/connectors.yaml"
        let reloads = { self.postfix.logLines().filter { $0.contains("policy reloaded") }.count }
        defer {
            // Later tests need the lab policy back.
            let before = reloads()
            try? sendmailLabPolicy.write(toFile: policyPath, atomically: true, encoding: .utf8)
            daemon.signal(SIGHUP)
            _ = LabProcess.waitUntil(timeout: 10) { reloads() > before }
        }

        // A Sendmail session opened under the lab policy...
        let open = try sendmail.openSMTP()
        XCTAssertEqual(try open.send("EHLO client.lab.test").code, 250)
        XCTAssertEqual(try open.send("MAIL FROM:<a@example.org>").code, 250)

        // ...outlives a reload (SIGHUP to the daemon) that accepts fabrikam.example too.
        let widened = sendmailLabPolicy.replacingOccurrences(of: "acceptedDomains: [contoso.com,",
                                                             with: "acceptedDomains: [fabrikam.example, contoso.com,")
        XCTAssertNotEqual(widened, sendmailLabPolicy)
        var before = reloads()
        try widened.write(toFile: policyPath, atomically: true, encoding: .utf8)
        daemon.signal(SIGHUP)
        XCTAssertTrue(LabProcess.waitUntil(timeout: 10) { reloads() > before }, "no reload logged")
        XCTAssertEqual(try open.send("RCPT TO:<x@fabrikam.example>").code, 550, "an open session keeps its policy")
        XCTAssertEqual(try open.send("RCPT TO:<user@contoso.com>").code, 250)
        XCTAssertEqual(try open.sendData("Subject: across a reload\n\nHello.").code, 250, "the open session was not dropped")
        open.quit()

        let after = try sendmail.swaks(SwaksOptions(from: "a@example.org", to: ["x@fabrikam.example"]), from: Client.stranger)
        XCTAssertEqual(after.rcptReply(for: "x@fabrikam.example")?.code, 250, after.text)

        // A broken file: logged with its position, the running (widened) policy stays.
        before = postfix.logLines().count
        try (sendmailLabPolicy + "  - name: Broken\n    direction: sideways\n").write(toFile: policyPath, atomically: true, encoding: .utf8)
        daemon.signal(SIGHUP)
        _ = try postfix.waitForLog(matching: "connectors.yaml:37:16: direction must be one of: inbound, outbound")
        XCTAssertGreaterThan(postfix.logLines().count, before)
        let kept = try sendmail.swaks(SwaksOptions(from: "a@example.org", to: ["y@fabrikam.example"]), from: Client.stranger)
        XCTAssertEqual(kept.rcptReply(for: "y@fabrikam.example")?.code, 250, "the widened policy still judges: \(kept.text)")
        XCTAssertTrue(daemon.isRunning, "a reload must not stop the daemon")
    }

    // MARK: - Helpers

    private struct Session {
        let transcript: SMTPTranscript
        /// The daemon's verdict lines for this session.
        let verdicts: [String]
    }

    private struct BothSessions {
        let postfix: Session
        let sendmail: Session
    }

    /// The same swaks session sent through Postfix, then through Sendmail, from the same
    /// client address (no XCLIENT); each with the verdict lines the daemon logged for it.
    private func sendBoth(_ options: SwaksOptions, from address: String) throws -> BothSessions {
        let throughPostfix = try send(options, from: address, port: postfix.smtpPort)
        let throughSendmail = try send(options, from: address, port: sendmail.smtpPort)
        return BothSessions(postfix: throughPostfix, sendmail: throughSendmail)
    }

    private func send(_ options: SwaksOptions, from address: String, port: UInt16) throws -> Session {
        let mark = postfix.verdictLines().count
        let transcript = try Swaks.run(SendmailLab.options(options, from: address), port: port)
        // One line per refused recipient at RCPT, one per accepted recipient once queued.
        let replies = transcript.rcptReplies
        let queued = transcript.dataReply?.code == 250
        // Postfix's own relay refusal (5.7.1) comes before the milter sees the recipient: no line.
        let refusedByMilter = replies.filter { !$0.isPositive && !($0.code == 554 && $0.enhancedCode == "5.7.1") }
        let expected = refusedByMilter.count + (queued ? replies.filter(\.isPositive).count : 0)
        return Session(transcript: transcript, verdicts: try verdicts(after: mark, count: expected, transcript: transcript))
    }

    private func verdicts(after mark: Int, count: Int, transcript: SMTPTranscript? = nil) throws -> [String] {
        var lines: [String] = []
        _ = LabProcess.waitUntil(timeout: 10) {
            lines = Array(postfix.verdictLines().dropFirst(mark))
            return lines.count >= count
        }
        guard lines.count >= count else {
            throw LabError("\(lines.count) of \(count) verdict line(s) within 10 s\n\(transcript?.text ?? "")\nsyslog:\n\(postfix.syslogDump())")
        }
        return lines
    }

    /// The verdict line without its queue id ("6AT1JfBb014979: " / "NOQUEUE: ").
    private func withoutQueueID(_ line: String) -> String {
        guard let colon = line.range(of: ": ") else { return line }
        return String(line[colon.upperBound...])
    }

    /// Same verdicts under both MTAs, but for the queue id and the client's host name.
    private func assertSameVerdicts(_ both: BothSessions, file: StaticString = #filePath, line: UInt = #line) throws {
        XCTAssertFalse(both.sendmail.verdicts.isEmpty, "no verdict line", file: file, line: line)
        let normalize = { (text: String) in
            self.withoutQueueID(text).replacingOccurrences(of: #"client=[^\[ ]*\["#, with: "client=[", options: .regularExpression)
        }
        XCTAssertEqual(both.sendmail.verdicts.map(normalize), both.postfix.verdicts.map(normalize),
                       "Sendmail:\n\(both.sendmail.transcript.text)\nPostfix:\n\(both.postfix.transcript.text)", file: file, line: line)
    }
}

/// How Sendmail's TLS macros become session facts, with the values Sendmail 8.17 sent in the
/// lab (no lab needed: run with `--filter Sendmail`).
final class SendmailMacroTests: XCTestCase {
    /// Sendmail's stock HELO macro list has {cert_subject} (a DN, set for unverified
    /// certificates too) and no {verify}: what the daemon would see from a Sendmail that did
    /// not take its macro list. Values as Sendmail 8.17 sent them for a self-signed certificate.
    func test_sendmailsStockHeloMacros_neverNameAnUnverifiedCertificate() {
        let stock = ["{tls_version}": "TLSv1.3", "{cipher}": "TLS_AES_256_GCM_SHA384", "{cipher_bits}": "256",
                     "{cert_subject}": "/CN=relay.contoso.com", "{cert_issuer}": "/CN=relay.contoso.com"]
        let tls = SessionMacros.tls { stock[$0] }
        XCTAssertEqual(tls?.version, "TLSv1.3")
        XCTAssertNil(tls?.certificateName)
        // With the daemon's list: {verify} decides, {cn_subject} names (xtext-decoded).
        var requested = stock
        requested["{cert_issuer}"] = "/CN=Connector+20Lab+20CA"
        requested["{verify}"] = "OK"
        requested["{cn_subject}"] = "relay+20contoso"
        XCTAssertEqual(SessionMacros.tls { requested[$0] }?.certificateName, "relay contoso")
        requested["{verify}"] = "FAIL"
        XCTAssertNil(SessionMacros.tls { requested[$0] }?.certificateName)
    }
}
