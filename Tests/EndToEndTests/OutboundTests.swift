// Outbound connectors in a real Postfix (SPEC section 4, issue 4): the sender lab's Postfix
// asks the daemon's socketmap for smtp_tls_policy_maps and transport_maps and delivers to a
// second Postfix (ReceiverLab, 127.0.0.2) whose servers have the right certificate, the wrong
// one, a self-signed one, or no TLS at all. Every connector routes to a smart host, so no DNS
// is ever asked: a message Postfix tried to deliver by MX would defer with "Host not found".
//
// What is asserted, per connector: where Postfix connected (the sender's relay= field), how TLS
// went (the sender's "... TLS connection established to" line and the receiver's "TLS
// connection established from" line), whether the receiver queued the message, and, for a
// connector whose TLS cannot be met, that the message stays in the sender's queue (postqueue
// -p) and that the receiver never saw a MAIL command from it.

import Foundation
import Glibc
import XCTest

final class OutboundTests: LabTestCase {
    private var receivers: [ReceiverLab] = []

    override func tearDown() {
        let keepAll = ProcessInfo.processInfo.environment["CONNECTOR_LAB_KEEP"].map { !$0.isEmpty && $0 != "0" } ?? false
        let keep = keepAll || (testRun?.totalFailureCount ?? 0) > 0
        for receiver in receivers {
            receiver.stop(removeDirectory: !keep)
            if keep { print("receiver directory kept: \(receiver.directory)") }
        }
        receivers.removeAll()
        super.tearDown()
    }

    func testEachConnectorsTLSSettingDecidesDeliveryToItsSmartHost() throws {
        let began = Date()
        let (sender, receiver, _) = try startPair { receiver in
            """
              - name: Fabrikam verified
                direction: outbound
                type: partner
                recipientDomains: [fabrikam.test]
                smartHosts: ["\(receiver.smartHost(.good))"]
                tlsSettings: domainValidation
                tlsDomain: mx.fabrikam.test
              - name: Fabrikam without TLS
                direction: outbound
                type: partner
                recipientDomains: [plain.fabrikam.test]
                smartHosts: ["\(receiver.smartHost(.plain))"]
                tlsSettings: domainValidation
                tlsDomain: mx.fabrikam.test
              - name: Fabrikam wrong name
                direction: outbound
                type: partner
                recipientDomains: [wrongname.fabrikam.test]
                smartHosts: ["\(receiver.smartHost(.wrongname))"]
                tlsSettings: domainValidation
                tlsDomain: "*.fabrikam.test"
              - name: Tailspin encrypted
                direction: outbound
                type: partner
                recipientDomains: ["*.tailspin.test"]
                smartHosts: ["\(receiver.smartHost(.selfsigned))"]
                tlsSettings: encryptionOnly
            """
        }

        let verified = try send(sender, to: "anne@fabrikam.test")
        let plain = try send(sender, to: "bob@plain.fabrikam.test")
        let wrongName = try send(sender, to: "carl@wrongname.fabrikam.test")
        let encrypted = try send(sender, to: "dora@mail.tailspin.test")
        let unattributed = try send(sender, to: "erin@elsewhere.test")

        // domainValidation, right name: delivered over verified TLS to its smart host.
        let verifiedAt = try receivedAt(receiver, .good, sender: sender, queueID: verified, recipient: "anne@fabrikam.test")
        try sender.waitForMaillog(matching: #"Verified TLS connection established to 127\.0\.0\.2\[127\.0\.0\.2\]:\#(receiver.ports[.good]!)"#)
        XCTAssertTrue(receiver.lines(of: .good).contains { $0.contains("TLS connection established from localhost[127.0.0.1]") },
                      receiver.maillog())
        XCTAssertTrue(verifiedAt.contains("queued as"), verifiedAt)

        // encryptionOnly: delivered over TLS to a self-signed server, unverified but encrypted.
        _ = try receivedAt(receiver, .selfsigned, sender: sender, queueID: encrypted, recipient: "dora@mail.tailspin.test")
        try sender.waitForMaillog(matching: #"Untrusted TLS connection established to 127\.0\.0\.2\[127\.0\.0\.2\]:\#(receiver.ports[.selfsigned]!)"#)
        XCTAssertTrue(receiver.lines(of: .selfsigned).contains { $0.contains("TLS connection established from localhost[127.0.0.1]") },
                      receiver.maillog())

        // domainValidation against a server without STARTTLS, or with another name: deferred,
        // queued, and never a MAIL command on that server.
        let plainDeferral = try sender.waitForMaillog(matching: #"\#(plain): to=<bob@plain\.fabrikam\.test>.*status=deferred"#)
        XCTAssertTrue(plainDeferral.contains("TLS is required, but was not offered"), plainDeferral)
        let wrongDeferral = try sender.waitForMaillog(matching: #"\#(wrongName): to=<carl@wrongname\.fabrikam\.test>.*status=deferred"#)
        XCTAssertTrue(wrongDeferral.contains("Server certificate not verified"), wrongDeferral)
        try sender.waitForMaillog(matching: #"server certificate verification failed for 127\.0\.0\.2\[127\.0\.0\.2\]:\#(receiver.ports[.wrongname]!): num=62:hostname mismatch"#)
        let queue = try LabProcess.check(["postqueue", "-c", sender.configDirectory, "-p"]).output
        XCTAssertTrue(queue.contains(plain) && queue.contains("bob@plain.fabrikam.test"), queue)
        XCTAssertTrue(queue.contains(wrongName) && queue.contains("carl@wrongname.fabrikam.test"), queue)
        XCTAssertFalse(queue.contains(verified) || queue.contains(encrypted), queue)
        for server in [ReceiverLab.Server.plain, .wrongname] {
            let lines = receiver.lines(of: server)
            XCTAssertTrue(lines.contains { $0.contains("connect from localhost[127.0.0.1]") }, "\(server): \(lines)")
            XCTAssertFalse(lines.contains { $0.contains(": client=localhost") || $0.contains("mail=") },
                           "\(server) received a transaction: \(lines)")
        }

        // No connector: the socketmap answers NOTFOUND and Postfix routes as before (the lab's
        // relayhost, its smtp-sink).
        let message = try sender.waitForDelivery(queueID: unattributed)
        XCTAssertEqual(message.recipients, ["erin@elsewhere.test"])
        print("outbound per-connector test: \(String(format: "%.1f", Date().timeIntervalSince(began))) s")
    }

    func testAReloadChangesTheNextDeliveryWithoutTouchingPostfix() throws {
        let began = Date()
        func connector(_ tls: String) -> (ReceiverLab) -> String {
            { receiver in
                """
                  - name: Fabrikam
                    direction: outbound
                    type: partner
                    recipientDomains: [fabrikam.test]
                    smartHosts: ["\(receiver.smartHost(.wrongname))"]
                \(tls)
                """
            }
        }
        let encryptOnly = connector("    tlsSettings: encryptionOnly")
        let validateDomain = connector("    tlsSettings: domainValidation\n    tlsDomain: mx.fabrikam.test")
        let (sender, receiver, policyPath) = try startPair(encryptOnly)

        // encryptionOnly: the certificate's name does not matter.
        let first = try send(sender, to: "anne@fabrikam.test")
        _ = try receivedAt(receiver, .wrongname, sender: sender, queueID: first, recipient: "anne@fabrikam.test")

        // Now the name must be mx.fabrikam.test, which this server does not have.
        try Self.policy(validateDomain(receiver)).write(toFile: policyPath, atomically: true, encoding: .utf8)
        let daemon = try XCTUnwrap(sender.daemon)
        daemon.signal(SIGUSR1)
        try sender.waitForLog(matching: "policy reloaded from")
        // -c: the lab's own configuration; the host may have no /etc/postfix/main.cf.
        XCTAssertEqual(try LabProcess.check(["postmap", "-c", sender.configDirectory, "-q", receiver.smartHost(.wrongname),
                                             "socketmap:unix:\(mapsSocket(sender)):tls-policy"]).output,
                       "secure match=mx.fabrikam.test\n")

        let second = try send(sender, to: "bob@fabrikam.test")
        let deferral = try sender.waitForMaillog(matching: #"\#(second): to=<bob@fabrikam\.test>.*status=deferred"#)
        XCTAssertTrue(deferral.contains("Server certificate not verified"), deferral)
        let queue = try LabProcess.check(["postqueue", "-c", sender.configDirectory, "-p"]).output
        XCTAssertTrue(queue.contains(second), queue)
        XCTAssertEqual(receiver.lines(of: .wrongname).filter { $0.contains(": client=localhost") }.count, 1,
                       receiver.maillog())
        print("outbound reload test: \(String(format: "%.1f", Date().timeIntervalSince(began))) s")
    }

    // MARK: - Helpers

    /// A receiver, a sender lab whose Postfix asks the daemon's socketmap, and the daemon with
    /// the policy `connectors` writes (after an inbound connector that lets the tests relay).
    private func startPair(_ connectors: (ReceiverLab) -> String) throws -> (PostfixLab, ReceiverLab, String) {
        let receiver = try ReceiverLab.start()
        receivers.append(receiver)
        var configuration = PostfixLab.Configuration()
        configuration.mainCf = [
            "smtp_tls_CAfile": receiver.caFile,
            "smtp_tls_loglevel": "1",
            // smtp(8) caches a destination's TLS policy for as long as the process lives (up
            // to max_use deliveries, max_idle seconds): one delivery per process, so the next
            // delivery after a reload is made by a process that asks the socketmap again.
            "max_use": "1",
        ]
        let sender = try startLab(configuration)
        let policyPath = try sender.writeFile("connectors.yaml", contents: Self.policy(connectors(receiver)))
        try sender.startDaemon(config: policyPath, extraArgs: ["--maps-socket", "unix:" + mapsSocket(sender)])
        try sender.postconf([
            "smtp_tls_policy_maps": "socketmap:unix:\(mapsSocket(sender)):tls-policy",
            "transport_maps": "socketmap:unix:\(mapsSocket(sender)):transport",
        ])
        return (sender, receiver, policyPath)
    }

    private func mapsSocket(_ sender: PostfixLab) -> String { sender.runDirectory + "/maps.sock" }

    private static func policy(_ connectors: String) -> String {
        """
        organization:
          acceptedDomains: [contoso.com]
        connectors:
          - name: Lab clients
            direction: inbound
            type: onPremises
            senderIPAddresses: [127.0.0.1]
        \(connectors)
        """
    }

    /// Sends one message from the organization; returns the sender's queue id.
    private func send(_ sender: PostfixLab, to recipient: String) throws -> String {
        let transcript = try sender.swaks(SwaksOptions(from: "alice@contoso.com", to: [recipient]))
        XCTAssertEqual(transcript.exitCode, 0, transcript.text)
        return try XCTUnwrap(transcript.queueID, transcript.text)
    }

    /// Waits until the sender delivered `queueID` to `server` and the receiver queued it;
    /// returns the sender's status=sent line.
    @discardableResult
    private func receivedAt(_ receiver: ReceiverLab, _ server: ReceiverLab.Server, sender: PostfixLab,
                            queueID: String, recipient: String) throws -> String {
        let port = receiver.ports[server]!
        let escaped = NSRegularExpression.escapedPattern(for: recipient)
        let sent = try sender.waitForMaillog(matching: #"\#(queueID): to=<\#(escaped)>, relay=127\.0\.0\.2\[127\.0\.0\.2\]:\#(port),.*status=sent"#)
        let remoteID = try XCTUnwrap(sent.range(of: #"queued as [0-9A-Za-z]+"#, options: .regularExpression)
            .map { String(sent[$0].split(separator: " ").last!) }, sent)
        XCTAssertTrue(receiver.lines(of: server).contains { $0.contains("\(remoteID): client=localhost[127.0.0.1]") },
                      "the \(server) server did not queue \(remoteID):\n\(receiver.maillog())")
        return sent
    }
}
