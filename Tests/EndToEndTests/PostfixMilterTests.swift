// connector-milter loaded by a real Postfix (default milter macros), judged end to end:
// SMTP replies, delivered messages and the verdict lines in syslog.

import Foundation
import Glibc
import XCTest

/// The lab policy: one of each kind of connector the scenarios need.
let labPolicy = """
organization:
  acceptedDomains: [contoso.com, "*.contoso.net"]
settings:
  rejectDirectSend: true
connectors:
  - name: Contoso on-premises
    direction: inbound
    type: onPremises
    tlsSenderCertificateName: "*.contoso.com"
    senderIPAddresses: ["2001:db8:25::/48"]
    requireTls: true
  - name: Contoso branch
    direction: inbound
    type: onPremises
    senderIPAddresses: [198.51.100.0/24]
  - name: Fabrikam Bank
    direction: inbound
    type: partner
    senderDomains: [fabrikam.com]
    senderIPAddresses: [203.0.113.0/24]
    restrictDomainsToIPAddresses: true
    requireTls: true
  - name: Tailspin trial
    direction: inbound
    type: partner
    mode: monitor
    senderDomains: [tailspin.example]
    senderIPAddresses: [198.18.5.0/24]
    restrictDomainsToIPAddresses: true
  - name: To Woodgrove
    direction: outbound
    type: partner
    recipientDomains: [woodgrove.example]
    tlsSettings: encryptionOnly
    requireTlsReceipt: true

"""

final class PostfixMilterTests: LabTestCase {
    private func lab(policy: String = labPolicy) throws -> PostfixLab {
        let lab = try startLab()
        try lab.startDaemon(policy: policy)
        return lab
    }

    /// Swaks options for a client that XCLIENT presents as `address` (name given, so Postfix
    /// does not keep "localhost").
    private func from(_ address: String, name: String = "client.example", _ sender: String, to recipients: [String]) -> SwaksOptions {
        var o = SwaksOptions(from: sender, to: recipients)
        o.xclientAddress = address
        o.xclientName = name
        return o
    }

    private func verdict(_ lab: PostfixLab, for rcpt: String) throws -> String {
        try lab.waitForLog(matching: "verdict=.* rcpt=<\(NSRegularExpression.escapedPattern(for: rcpt))>")
    }

    func test_unknownClientSendingToForeignDomain_isRefusedWith5764() throws {
        let lab = try lab()
        // A stranger: Postfix's own relay control refuses (the policy service says DUNNO).
        let t = try lab.swaks(from("198.18.0.9", "a@b.example", to: ["c@d.example"]))
        XCTAssertEqual(t.rcptReply(for: "c@d.example")?.text, PostfixLab.relayAccessDenied("c@d.example"), t.text)
        // The host itself is in mynetworks, so Postfix lets it relay; no connector names it,
        // so the milter refuses with 5.7.64.
        let local = try lab.swaks(SwaksOptions(from: "a@b.example", to: ["e@f.example"]))
        XCTAssertEqual(local.rcptReply(for: "e@f.example")?.text, "550 5.7.64 Relay access denied", local.text)
        let line = try verdict(lab, for: "e@f.example")
        XCTAssertTrue(line.contains("NOQUEUE: verdict=reject reason=relay-denied direction=incoming inbound=none inbound_type=none client=localhost[127.0.0.1] tls=none cert=none from=<a@b.example> rcpt=<e@f.example> outbound=none outbound_type=none mode=enforce"), line)
        XCTAssertTrue(lab.verdictLines().allSatisfy { !$0.contains("rcpt=<c@d.example>") }, "the milter never saw the stranger's recipient")
    }

    func test_partnerRestrictedByAddress_refusesForeignAddressWith5751() throws {
        let lab = try lab()
        let t = try lab.swaks(from("198.18.0.9", "pay@fabrikam.com", to: ["ap@contoso.com"]))
        XCTAssertEqual(t.rcptReply(for: "ap@contoso.com")?.text, "550 5.7.51 Sender not authorized by partner connector", t.text)
        XCTAssertTrue(try verdict(lab, for: "ap@contoso.com").contains("verdict=reject reason=partner-restricted"))
    }

    func test_partnerRequiringTls_tempfailsCleartextAndAcceptsTlsWithQueueIDAndHeaders() throws {
        let lab = try lab()
        let clear = try lab.swaks(from("203.0.113.5", name: "mx.fabrikam.com", "pay@fabrikam.com", to: ["ap@contoso.com"]))
        XCTAssertEqual(clear.rcptReply(for: "ap@contoso.com")?.text, "454 4.7.0 TLS required", clear.text)
        XCTAssertTrue(try lab.waitForLog(matching: "verdict=tempfail reason=tls-required .*inbound=\"Fabrikam Bank\"").contains("tls=none"))

        var o = from("203.0.113.5", name: "mx.fabrikam.com", "pay@fabrikam.com", to: ["ap@contoso.com"])
        o.tls = true
        let t = try lab.swaks(o)
        let queueID = try XCTUnwrap(t.queueID, t.text)
        let message = try lab.waitForDelivery(queueID: queueID)
        XCTAssertEqual(message.headerValues("X-Connector-Inbound"), ["Fabrikam Bank"])
        XCTAssertEqual(message.headerValues("X-Connector-Direction"), ["incoming"])
        let line = try lab.waitForLog(matching: "^\(queueID): verdict=accept")
        XCTAssertTrue(line.contains("inbound=\"Fabrikam Bank\" inbound_type=partner client=mx.fabrikam.com[203.0.113.5] tls=TLSv1."), line)
    }

    func test_verifiedClientCertificate_isOnPremisesAndRelaysOut() throws {
        let lab = try lab()
        var o = from("198.18.0.20", name: "relay.contoso.com", "ceo@contoso.com", to: ["partner@other.example"])
        o.tls = true
        o.clientCertificate = lab.certificates.client
        let t = try lab.swaks(o)
        let queueID = try XCTUnwrap(t.queueID, t.text)
        let message = try lab.waitForDelivery(queueID: queueID)
        XCTAssertEqual(message.headerValues("X-Connector-Direction"), ["originating"])
        XCTAssertEqual(message.headerValues("X-Connector-Inbound"), ["Contoso on-premises"])
        let line = try lab.waitForLog(matching: "^\(queueID): verdict=accept")
        XCTAssertTrue(line.contains("direction=originating inbound=\"Contoso on-premises\" inbound_type=onPremises"), line)
        XCTAssertTrue(line.contains("cert=\"relay.contoso.com\""), line)
    }

    func test_selfSignedClientCertificate_identifiesNobody() throws {
        let lab = try lab()
        var o = from("198.18.0.20", "ceo@contoso.com", to: ["partner@other.example"])
        o.tls = true
        o.clientCertificate = try lab.certificates.selfSignedClient(commonName: "relay.contoso.com", name: "selfsigned-relay")
        let t = try lab.swaks(o)
        // Postfix sends no ccert_subject to the policy service for an unverified certificate,
        // so Postfix's relay control refuses; the milter sees no name either (cert=none).
        XCTAssertEqual(t.rcptReply(for: "partner@other.example")?.text, PostfixLab.relayAccessDenied("partner@other.example"), t.text)
        var mine = o
        mine.from = "someone@example.org"  // the lab policy rejects direct send
        mine.to = ["someone@contoso.com"]
        let accepted = try lab.swaks(mine)
        let line = try lab.waitForLog(matching: "^\(try XCTUnwrap(accepted.queueID, accepted.text)): verdict=accept")
        XCTAssertTrue(line.contains(" tls=TLSv1.") && line.contains(" cert=none ") && line.contains("inbound=none"), line)
    }

    func test_mailRightAfterStartTlsWithoutSecondEhlo_stillSeesTheCertificate() throws {
        let lab = try lab()
        let t = try lab.sendAfterStartTLSWithoutEHLO(from: "ceo@contoso.com", to: ["partner@other.example"],
                                                     certificate: lab.certificates.client)
        XCTAssertEqual(t.rcptReply(for: "partner@other.example")?.code, 250, t.text)
        let line = try lab.waitForLog(matching: "verdict=accept .*rcpt=<partner@other.example>")
        XCTAssertTrue(line.contains("inbound=\"Contoso on-premises\"") && line.contains("cert=\"relay.contoso.com\""), line)
    }

    func test_ipv6ClientAndSaslLogin() throws {
        let lab = try lab()
        // 2001:db8:25::/48 is Contoso on-premises, which demands TLS and its certificate.
        let v6 = try lab.swaks(from("IPv6:2001:db8:25::7", "ceo@contoso.com", to: ["x@other.example"]))
        XCTAssertEqual(v6.rcptReply(for: "x@other.example")?.text, "454 4.7.0 TLS required", v6.text)
        XCTAssertTrue(try verdict(lab, for: "x@other.example").contains("client=client.example[2001:db8:25::7]"))

        var o = from("198.18.0.30", "alice@contoso.com", to: ["bob@other.example"])
        o.xclientLogin = "alice"
        let t = try lab.swaks(o)
        let queueID = try XCTUnwrap(t.queueID, t.text)
        _ = try lab.waitForDelivery(queueID: queueID)
        let line = try lab.waitForLog(matching: "^\(queueID): verdict=accept")
        XCTAssertTrue(line.contains("direction=originating inbound=none inbound_type=authenticated"), line)
    }

    func test_forgedConnectorHeaders_areRemovedAndTheRealOnesStamped() throws {
        let lab = try lab()
        var o = from("198.18.0.9", "news@example.org", to: ["user@contoso.com"])
        o.headers = ["X-Connector-Inbound: Contoso on-premises", "X-Connector-Direction: originating", "x-connector-inbound: again"]
        let t = try lab.swaks(o)
        let message = try lab.waitForDelivery(queueID: try XCTUnwrap(t.queueID, t.text))
        XCTAssertEqual(message.headerValues("X-Connector-Inbound"), ["none"], message.headerSection)
        XCTAssertEqual(message.headerValues("X-Connector-Direction"), ["incoming"], message.headerSection)
    }

    func test_directSendAndMonitorMode() throws {
        let lab = try lab()
        let direct = try lab.swaks(from("198.18.0.9", "ceo@contoso.com", to: ["cfo@contoso.com"]))
        XCTAssertEqual(direct.rcptReply(for: "cfo@contoso.com")?.text, "550 5.7.68 Direct send not allowed from unauthorized sources", direct.text)

        let monitored = try lab.swaks(from("198.18.0.9", "promo@tailspin.example", to: ["user@contoso.com"]))
        let queueID = try XCTUnwrap(monitored.queueID, "monitor mode must accept: \(monitored.text)")
        _ = try lab.waitForDelivery(queueID: queueID)
        let line = try lab.waitForLog(matching: "^\(queueID): verdict=accept")
        XCTAssertTrue(line.contains("verdict=accept would=reject reason=partner-restricted") && line.contains("mode=monitor"), line)
    }

    func test_requireTlsReceiptOfTheOutboundConnector() throws {
        let lab = try lab()
        let t = try lab.swaks(from("198.51.100.7", "ceo@contoso.com", to: ["buyer@woodgrove.example", "peer@other.example"]))
        XCTAssertEqual(t.rcptReply(for: "buyer@woodgrove.example")?.text, "454 4.7.0 TLS required", t.text)
        XCTAssertEqual(t.rcptReply(for: "peer@other.example")?.code, 250, t.text)
        XCTAssertTrue(try verdict(lab, for: "buyer@woodgrove.example").contains("outbound=\"To Woodgrove\" outbound_type=partner"))
    }

    // MARK: - Reload, faults

    func test_reloadBySighupAndSigusr1_changesNewSessionsAndLetsOpenOnesFinish() throws {
        let lab = try lab()
        let daemon = try XCTUnwrap(lab.daemon)
        let policyPath = lab.directory + "/connectors.yaml"

        // A session opened under the first policy...
        let open = try lab.openSMTP()
        XCTAssertEqual(try open.send("EHLO client.lab.test").code, 250)
        XCTAssertEqual(try open.send("MAIL FROM:<a@example.org>").code, 250)

        // ...outlives a reload (SIGHUP) that accepts fabrikam.example too.
        let widened = labPolicy.replacingOccurrences(of: "acceptedDomains: [contoso.com,", with: "acceptedDomains: [fabrikam.example, contoso.com,")
        try widened.write(toFile: policyPath, atomically: true, encoding: .utf8)
        daemon.signal(SIGHUP)
        _ = try lab.waitForLog(matching: "policy reloaded")
        XCTAssertEqual(try open.send("RCPT TO:<x@fabrikam.example>").code, 550, "an open session keeps its policy")
        XCTAssertEqual(try open.send("RCPT TO:<user@contoso.com>").code, 250)
        XCTAssertEqual(try open.sendData("Subject: across a reload\n\nHello.").code, 250, "the open session was not dropped")
        open.quit()

        let after = try lab.swaks(SwaksOptions(from: "a@example.org", to: ["x@fabrikam.example"]))
        XCTAssertEqual(after.rcptReply(for: "x@fabrikam.example")?.code, 250, after.text)

        // SIGUSR1 reloads too: back to the first policy.
        try labPolicy.write(toFile: policyPath, atomically: true, encoding: .utf8)
        let reloads = lab.logLines().filter { $0.contains("policy reloaded") }.count
        daemon.signal(SIGUSR1)
        try waitUntil { lab.logLines().filter { $0.contains("policy reloaded") }.count > reloads }
        let back = try lab.swaks(SwaksOptions(from: "a@example.org", to: ["x@fabrikam.example"]))
        XCTAssertEqual(back.rcptReply(for: "x@fabrikam.example")?.code, 550, back.text)
        XCTAssertTrue(daemon.isRunning, "a reload must not stop the daemon")
    }

    func test_brokenPolicyOnReload_keepsTheRunningPolicyAndLogsFileLineColumn() throws {
        let lab = try lab()
        let policyPath = lab.directory + "/connectors.yaml"
        try (labPolicy + "  - name: Broken\n    direction: sideways\n").write(toFile: policyPath, atomically: true, encoding: .utf8)
        lab.daemon?.signal(SIGHUP)
        _ = try lab.waitForLog(matching: "connectors.yaml:36:5: connector \"Broken\" has no type")
        _ = try lab.waitForLog(matching: "connectors.yaml:37:16: direction must be one of: inbound, outbound")
        let t = try lab.swaks(from("198.18.0.9", "a@b.example", to: ["c@d.example", "user@contoso.com"]))
        XCTAssertEqual(t.rcptReply(for: "c@d.example")?.text, PostfixLab.relayAccessDenied("c@d.example"), "the old policy still judges: \(t.text)")
        XCTAssertNotNil(t.queueID, t.text)
    }

    func test_workerKilledMidSession_postfixTempfailsAndTheSupervisorRestartsIt() throws {
        let lab = try lab()
        let supervisor = try XCTUnwrap(lab.daemon)
        let worker = try XCTUnwrap(childProcesses(of: supervisor.pid).first, "no worker process")

        let open = try lab.openSMTP()
        XCTAssertEqual(try open.send("EHLO client.lab.test").code, 250)
        XCTAssertEqual(try open.send("MAIL FROM:<a@example.org>").code, 250)
        kill(worker, SIGKILL)
        let rcpt = try open.send("RCPT TO:<user@contoso.com>")
        XCTAssertEqual(rcpt.code / 100, 4, "with the milter gone Postfix must tempfail, not accept or bounce: \(rcpt.text)")
        open.quit()

        // The sender retries; once the supervisor has restarted the worker, the mail goes through.
        // Each attempt to another address: smtpd caches the last address's resolution, failure
        // included (relay_domains through the socketmap was down with the worker), per process.
        var delivered: SMTPTranscript?
        var attempt = 0
        try waitUntil(timeout: 20) {
            attempt += 1
            let t = try lab.swaks(SwaksOptions(from: "a@example.org", to: ["retry\(attempt)@contoso.com"]))
            if t.queued { delivered = t }
            return t.queued
        }
        _ = try lab.waitForDelivery(queueID: try XCTUnwrap(delivered?.queueID))
        let newWorker = try XCTUnwrap(childProcesses(of: supervisor.pid).first)
        XCTAssertNotEqual(newWorker, worker)
    }

    func test_sigterm_letsAnOpenSessionFinishThenStops() throws {
        let lab = try lab()
        let daemon = try XCTUnwrap(lab.daemon)
        let open = try lab.openSMTP()
        XCTAssertEqual(try open.send("EHLO client.lab.test").code, 250)
        XCTAssertEqual(try open.send("MAIL FROM:<a@example.org>").code, 250)
        daemon.signal(SIGTERM)
        _ = try lab.waitForLog(matching: "stopping: waiting up to [0-9]+ s for 1 open sessions")
        XCTAssertEqual(try open.send("RCPT TO:<x@example.net>").code, 550, "the stopping daemon still judges")
        XCTAssertEqual(try open.send("RCPT TO:<user@contoso.com>").code, 250)
        XCTAssertEqual(try open.sendData("Subject: during a stop\n\nHello.").code, 250, "the open session finishes")
        open.quit()
        XCTAssertEqual(daemon.waitForExit(timeout: 10), 0, "the daemon stops once its sessions are over")
        XCTAssertFalse(FileManager.default.fileExists(atPath: lab.milterSocketPath), "the socket is removed")
    }

    // MARK: - Helpers

    private func childProcesses(of parent: pid_t) -> [pid_t] {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return entries.compactMap { pid_t($0) }.filter { pid in
            guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
                  let close = stat.lastIndex(of: ")") else { return false }
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            // state, ppid: a zombie is no worker.
            return fields.count > 2 && fields[0] != "Z" && pid_t(fields[1]) == parent
        }
    }

    private func waitUntil(timeout: TimeInterval = 10, _ condition: () throws -> Bool) throws {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if try condition() { return }
            usleep(100_000)
        }
        XCTFail("condition not met within \(timeout) s")
    }
}
