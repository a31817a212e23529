// `connector-milter trace` on logs the real MTAs wrote: a private Postfix (its maillog_file)
// and a private Sendmail (its syslog lines, through the lab's /dev/log collector), each beside
// the daemon's own verdict lines. The messages cover every ending a trace must tell apart:
// delivered (in clear and over TLS), bounced by the next hop (5xx), deferred (next hop
// unreachable) and refused at RCPT before a queue file existed (NOQUEUE).
//
// CONNECTOR_TRACE_CAPTURE=DIR writes the combined logs there as Swift fixtures
// (postfix-trace.swift, sendmail-trace.swift): that is how
// Tests/ConnectorPolicyTests/TraceFixtures.swift was made.

import Foundation
import Glibc
import XCTest

final class TraceTests: LabTestCase {
    private var receivers: [ReceiverLab] = []
    private var sinks: [pid_t] = []

    override func tearDown() {
        for pid in sinks { LabProcess.terminate(pid, grace: 5) }
        sinks.removeAll()
        let keep = (testRun?.totalFailureCount ?? 0) > 0
        for receiver in receivers { receiver.stop(removeDirectory: !keep) }
        receivers.removeAll()
        super.tearDown()
    }

    private func stranger(_ sender: String, to recipients: [String]) -> SwaksOptions {
        var o = SwaksOptions(from: sender, to: recipients)
        o.xclientAddress = "198.18.0.9"
        o.xclientName = "client.example"
        return o
    }

    func testPostfixTraceFollowsDeliveredBouncedDeferredAndRefusedMail() throws {
        let receiver = try ReceiverLab.start()
        receivers.append(receiver)
        // A next hop that refuses every recipient with 5xx: the message bounces.
        let refusingPort = try LabProcess.freeTCPPort()
        let refusingSink = try LabProcess.spawn(["smtp-sink", "-u", "nobody", "-f", "RCPT", "127.0.0.1:\(refusingPort)", "16"],
                                                outputPath: "/dev/null")
        sinks.append(refusingSink)
        XCTAssertTrue(LabProcess.waitUntil(timeout: 10) { LabProcess.isListening(port: refusingPort) })
        // Nothing listens on 127.0.0.9: the message is deferred.
        let deadPort = try LabProcess.freeTCPPort()
        var configuration = PostfixLab.Configuration()
        configuration.mainCf = [
            "transport_maps": "inline:{bounce.contoso.net=smtp:[127.0.0.1]:\(refusingPort), "
                + "defer.contoso.net=smtp:[127.0.0.9]:\(deadPort), tls.contoso.net=smtp:\(receiver.smartHost(.good))}",
            "smtp_tls_security_level": "may",
            "smtp_tls_CAfile": receiver.caFile,
            "smtp_tls_loglevel": "1",
        ]
        let lab = try startLab(configuration)
        try lab.startDaemon(policy: labPolicy)

        // The Fabrikam partner over TLS with the lab CA's client certificate, to two recipients:
        // one delivered in clear to the sink, one over TLS to the receiver.
        var partner = SwaksOptions(from: "pay@fabrikam.com", to: ["ap@contoso.com", "ops@tls.contoso.net"])
        partner.xclientAddress = "203.0.113.7"
        partner.xclientName = "mail.fabrikam.com"
        partner.tls = true
        partner.clientCertificate = lab.certificates.client
        let delivered = try XCTUnwrap(lab.swaks(partner).queueID)
        let bounced = try XCTUnwrap(lab.swaks(stranger("a@b.example", to: ["lost@bounce.contoso.net"])).queueID)
        let deferred = try XCTUnwrap(lab.swaks(stranger("a@b.example", to: ["later@defer.contoso.net"])).queueID)
        // Relaying from the host itself: Postfix lets it through (mynetworks), the milter refuses.
        // (A stranger's relay attempt is refused by Postfix's own relay control before any milter.)
        let refused = try lab.swaks(SwaksOptions(from: "a@b.example", to: ["c@d.example"]))
        XCTAssertEqual(refused.rcptReply(for: "c@d.example")?.text, "550 5.7.64 Relay access denied", refused.text)

        try lab.waitForMaillog(matching: "\(delivered): to=<ops@tls.contoso.net>.*status=sent", timeout: 20)
        try lab.waitForMaillog(matching: "\(delivered): to=<ap@contoso.com>.*status=sent", timeout: 20)
        try lab.waitForMaillog(matching: "\(bounced): to=<lost@bounce.contoso.net>.*status=bounced", timeout: 20)
        try lab.waitForMaillog(matching: "\(deferred): to=<later@defer.contoso.net>.*status=deferred", timeout: 20)
        try lab.waitForMaillog(matching: "\(bounced): removed", timeout: 20)
        _ = try lab.waitForVerdicts(count: 4)

        // What an administrator has: the MTA's log and the daemon's syslog lines, in one file.
        let daemonLines = lab.labSyslogRecords().filter { $0.ident == "connector-milter" }.map(\.raw)
        let log = (lab.maillogLines() + daemonLines).joined(separator: "\n") + "\n"
        let logPath = try lab.writeFile("log/trace.log", contents: log)
        try capture(log, name: "postfix")

        // The bar: the client, the verdict, and the relay and status of the delivery.
        let text = try trace([logPath, "--queue-id", delivered])
        XCTAssertTrue(text.contains("message \(delivered)"), text)
        XCTAssertTrue(text.contains("mail.fabrikam.com[203.0.113.7]"), text)
        XCTAssertTrue(text.contains("TLSv1.3"), text)
        XCTAssertTrue(text.contains("relay.contoso.com"), text)  // the client certificate's name
        XCTAssertTrue(text.contains("accept"), text)
        // The CA-signed client certificate (relay.contoso.com) identifies Contoso's on-premises
        // connector, which takes precedence over the partner's address.
        XCTAssertTrue(text.contains("Contoso on-premises"), text)
        XCTAssertTrue(text.contains("127.0.0.1[127.0.0.1]:\(lab.sinkPort)"), text)
        XCTAssertTrue(text.contains("127.0.0.2[127.0.0.2]:\(receiver.ports[.good]!)"), text)
        XCTAssertTrue(text.contains("sent"), text)

        let json = try traceJSON([logPath, "--queue-id", delivered])
        let message = try XCTUnwrap(json.first, "\(json)")
        let received = try XCTUnwrap(message["received"] as? [String: Any], "\(message)")
        XCTAssertEqual(received["client"] as? String, "mail.fabrikam.com[203.0.113.7]")
        let inboundTLS = try XCTUnwrap(received["tls"] as? [String: Any], "\(received)")
        XCTAssertEqual(inboundTLS["protocol"] as? String, "TLSv1.3")
        XCTAssertEqual(inboundTLS["trust"] as? String, "Trusted")
        let judged = try XCTUnwrap(message["judged"] as? [[String: Any]])
        XCTAssertEqual(Set(judged.compactMap { $0["recipient"] as? String }), ["ap@contoso.com", "ops@tls.contoso.net"])
        XCTAssertTrue(judged.allSatisfy { $0["verdict"] as? String == "accept" && $0["inbound"] as? String == "Contoso on-premises" }, "\(judged)")
        let deliveries = try XCTUnwrap(message["delivered"] as? [[String: Any]])
        let overTLS = try XCTUnwrap(deliveries.first { $0["recipient"] as? String == "ops@tls.contoso.net" }, "\(deliveries)")
        XCTAssertEqual(overTLS["status"] as? String, "sent")
        // smtp_tls_security_level = may with the receiver's CA: trusted, its name not checked.
        XCTAssertEqual((overTLS["tls"] as? [String: Any])?["trust"] as? String, "Trusted")
        let inClear = try XCTUnwrap(deliveries.first { $0["recipient"] as? String == "ap@contoso.com" }, "\(deliveries)")
        XCTAssertEqual(inClear["status"] as? String, "sent")
        XCTAssertNil(inClear["tls"], "\(inClear)")

        let bounce = try XCTUnwrap(traceJSON([logPath, "--queue-id", bounced]).first)
        let bounceDelivery = try XCTUnwrap((bounce["delivered"] as? [[String: Any]])?.first)
        XCTAssertEqual((bounce["notifications"] as? [[String: Any]])?.first?["kind"] as? String, "non-delivery notification", "\(bounce)")
        XCTAssertEqual(bounceDelivery["status"] as? String, "bounced", "\(bounce)")
        XCTAssertEqual(bounceDelivery["relay"] as? String, "127.0.0.1[127.0.0.1]:\(refusingPort)")
        XCTAssertTrue((bounceDelivery["dsn"] as? String)?.hasPrefix("5.") ?? false, "\(bounceDelivery)")

        let deferral = try XCTUnwrap(traceJSON([logPath, "--queue-id", deferred]).first)
        let deferralDelivery = try XCTUnwrap((deferral["delivered"] as? [[String: Any]])?.first)
        XCTAssertEqual(deferralDelivery["status"] as? String, "deferred", "\(deferral)")
        XCTAssertTrue((deferralDelivery["detail"] as? String)?.contains("127.0.0.9") ?? false, "\(deferralDelivery)")

        // The refusal has no queue id: found by its recipient, with its session and verdict.
        let refusal = try XCTUnwrap(traceJSON([logPath, "--rcpt", "c@d.example"]).first)
        XCTAssertNil(refusal["queueID"], "\(refusal)")
        XCTAssertEqual((refusal["received"] as? [String: Any])?["client"] as? String, "localhost[127.0.0.1]")
        let refusedAt = try XCTUnwrap((refusal["refused"] as? [[String: Any]])?.first, "\(refusal)")
        XCTAssertEqual(refusedAt["reply"] as? String, "550 5.7.64 Relay access denied")
        let refusalVerdict = try XCTUnwrap((refusal["judged"] as? [[String: Any]])?.first, "\(refusal)")
        XCTAssertEqual(refusalVerdict["reason"] as? String, "relay-denied")

        // --from finds all three of the stranger's messages and the refusal, and nothing else.
        let fromStranger = try traceJSON([logPath, "--from", "A@B.example"])
        XCTAssertEqual(Set(fromStranger.compactMap { $0["queueID"] as? String }), [bounced, deferred], "\(fromStranger)")
        XCTAssertEqual(fromStranger.count, 3, "\(fromStranger)")
    }

    func testSendmailTraceFollowsDeliveredAndRefusedMail() throws {
        let postfix = try startLab()
        let sendmail = try SendmailLab.start(beside: postfix)
        defer { sendmail.stop() }
        try postfix.startDaemon(policy: sendmailLabPolicy)

        var accepted = SwaksOptions(from: "a@b.example", to: ["user@contoso.com"])
        accepted.tls = true
        accepted.clientCertificate = postfix.certificates.client
        let transcript = try sendmail.swaks(accepted, from: "127.0.9.9")
        let delivered = try XCTUnwrap(transcript.sendmailQueueID, transcript.text)
        let refused = try sendmail.swaks(SwaksOptions(from: "a@b.example", to: ["c@d.example"]), from: "127.0.9.9")
        XCTAssertEqual(refused.rcptReply(for: "c@d.example")?.code, 550, refused.text)
        try sendmail.waitForLog(matching: "\(delivered): to=<user@contoso.com>.*stat=Sent", timeout: 20)
        try sendmail.waitForLog(matching: "Milter: to=<c@d.example>, reject=550", timeout: 20)
        _ = try postfix.waitForVerdicts(count: 2)

        let log = postfix.syslogRecords()
            .filter { $0.ident == sendmail.ident || ($0.ident == "connector-milter" && postfix.labSyslogRecords().map(\.raw).contains($0.raw)) }
            .map(\.raw).joined(separator: "\n") + "\n"
        let logPath = try postfix.writeFile("log/sendmail-trace.log", contents: log)
        try capture(log, name: "sendmail")

        let text = try trace([logPath, "--queue-id", delivered])
        XCTAssertTrue(text.contains("message \(delivered)"), text)
        XCTAssertTrue(text.contains("[127.0.9.9]"), text)
        XCTAssertTrue(text.contains("accept"), text)
        XCTAssertTrue(text.contains("127.0.0.1"), text)
        XCTAssertTrue(text.contains("sent"), text)

        let message = try XCTUnwrap(traceJSON([logPath, "--queue-id", delivered]).first)
        let received = try XCTUnwrap(message["received"] as? [String: Any], "\(message)")
        XCTAssertTrue((received["client"] as? String)?.hasSuffix("[127.0.9.9]") ?? false, "\(received)")
        XCTAssertEqual((received["tls"] as? [String: Any])?["protocol"] as? String, "TLSv1.3", "\(received)")
        XCTAssertEqual((received["tls"] as? [String: Any])?["trust"] as? String, "OK", "\(received)")
        let judged = try XCTUnwrap((message["judged"] as? [[String: Any]])?.first, "\(message)")
        XCTAssertEqual(judged["verdict"] as? String, "accept")
        let delivery = try XCTUnwrap((message["delivered"] as? [[String: Any]])?.first, "\(message)")
        XCTAssertEqual(delivery["status"] as? String, "sent")
        XCTAssertEqual(delivery["recipient"] as? String, "user@contoso.com")

        let refusal = try XCTUnwrap(traceJSON([logPath, "--rcpt", "c@d.example"]).first)
        let refusedAt = try XCTUnwrap((refusal["refused"] as? [[String: Any]])?.first, "\(refusal)")
        XCTAssertTrue((refusedAt["reply"] as? String)?.hasPrefix("550 5.7.64") ?? false, "\(refusedAt)")
        XCTAssertEqual((refusal["judged"] as? [[String: Any]])?.first?["reason"] as? String, "relay-denied", "\(refusal)")
    }

    // MARK: - Helpers

    private func trace(_ arguments: [String]) throws -> String {
        let result = try LabProcess.run([try ConnectorMilterBinary.binaryPath(), "trace"] + arguments)
        XCTAssertEqual(result.status, 0, result.output)
        return result.output
    }

    private func traceJSON(_ arguments: [String]) throws -> [[String: Any]] {
        let result = try LabProcess.run([try ConnectorMilterBinary.binaryPath(), "trace", "--format", "json"] + arguments)
        XCTAssertEqual(result.status, 0, result.output)
        let object = try JSONSerialization.jsonObject(with: Data(result.output.utf8))
        return try XCTUnwrap((object as? [String: Any])?["messages"] as? [[String: Any]], result.output)
    }

    /// Writes `log` as a Swift fixture when CONNECTOR_TRACE_CAPTURE names a directory.
    private func capture(_ log: String, name: String) throws {
        guard let directory = ProcessInfo.processInfo.environment["CONNECTOR_TRACE_CAPTURE"], !directory.isEmpty else { return }
        try log.write(toFile: directory + "/\(name)-trace.log", atomically: true, encoding: .utf8)
    }
}
