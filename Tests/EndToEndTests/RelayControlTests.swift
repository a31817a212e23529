// Postfix's own relay control follows the connectors (docs/relay-control.md): the lab runs the
// documented main.cf lines (mynetworks = the host only; check_policy_service on the daemon's
// policy socket before reject_unauth_destination; relay_domains from its socketmap). XCLIENT
// presents the organization's servers and strangers with their own, non-loopback addresses.

import Foundation
import Glibc
import XCTest

private let relayPolicy = """
organization:
  acceptedDomains: [contoso.com, "*.contoso.net"]
connectors:
  - name: Contoso on-premises
    direction: inbound
    type: onPremises
    senderIPAddresses: [192.0.2.0/24]
  - name: Contoso relay by certificate
    direction: inbound
    type: onPremises
    tlsSenderCertificateName: "*.contoso.com"
    requireTls: true

"""

final class RelayControlTests: LabTestCase {
    private func lab() throws -> PostfixLab {
        let lab = try startLab()
        try lab.startDaemon(policy: relayPolicy)
        return lab
    }

    private func client(_ address: String, _ sender: String, to recipients: [String]) -> SwaksOptions {
        var o = SwaksOptions(from: sender, to: recipients)
        o.xclientAddress = address
        o.xclientName = "client.example"
        return o
    }

    private func assertDelivered(_ lab: PostfixLab, _ t: SMTPTranscript, to recipients: [String],
                                 file: StaticString = #filePath, line: UInt = #line) throws {
        let queueID = try XCTUnwrap(t.queueID, t.text, file: file, line: line)
        var delivered: [String] = []
        _ = waitFor(timeout: 15) {
            // One delivery per transport: relay_domains mail goes by relay, the rest by smtp.
            delivered = lab.deliveries().filter { $0.queueID == queueID }.flatMap(\.recipients)
            return Set(delivered) == Set(recipients)
        }
        XCTAssertEqual(Set(delivered), Set(recipients), lab.maillog(), file: file, line: line)
    }

    func test_onPremisesAddress_relaysToTheInternet_andAStrangerIsRefusedByPostfix() throws {
        let lab = try lab()
        let ours = try lab.swaks(client("192.0.2.10", "ceo@contoso.com", to: ["partner@example.net"]))
        XCTAssertEqual(ours.rcptReply(for: "partner@example.net")?.code, 250, ours.text)
        try assertDelivered(lab, ours, to: ["partner@example.net"])
        let line = try lab.waitForLog(matching: "verdict=accept .*rcpt=<partner@example\\.net>")
        XCTAssertTrue(line.contains(#"direction=originating inbound="Contoso on-premises" inbound_type=onPremises client=client.example[192.0.2.10]"#), line)

        // The same address with a foreign sender: no relay (onPremises by address relays
        // only the organization's own mail or bounces).
        let foreign = try lab.swaks(client("192.0.2.10", "someone@example.org", to: ["x@example.net"]))
        XCTAssertEqual(foreign.rcptReply(for: "x@example.net")?.text, PostfixLab.relayAccessDenied("x@example.net"), foreign.text)

        // A stranger, even claiming an organization sender: Postfix refuses, the milter never sees it.
        let stranger = try lab.swaks(client("198.51.100.9", "ceo@contoso.com", to: ["victim@example.net"]))
        XCTAssertEqual(stranger.rcptReply(for: "victim@example.net")?.text, PostfixLab.relayAccessDenied("victim@example.net"),
                       stranger.text)
        XCTAssertFalse(lab.verdictLines().contains { $0.contains("rcpt=<victim@example.net>") })
    }

    func test_acceptedDomainsComeFromTheSocketmap() throws {
        let lab = try lab()
        let t = try lab.swaks(client("198.51.100.9", "a@example.org",
                                     to: ["user@contoso.com", "user@contoso.net", "user@deep.sub.contoso.net", "user@sub.contoso.com"]))
        XCTAssertEqual(t.rcptReply(for: "user@contoso.com")?.code, 250, t.text)
        XCTAssertEqual(t.rcptReply(for: "user@contoso.net")?.code, 250, t.text)
        XCTAssertEqual(t.rcptReply(for: "user@deep.sub.contoso.net")?.code, 250, "*.x holds subdomains: \(t.text)")
        XCTAssertEqual(t.rcptReply(for: "user@sub.contoso.com")?.text, PostfixLab.relayAccessDenied("user@sub.contoso.com"),
                       "an exact accepted domain holds no subdomain: \(t.text)")
        try assertDelivered(lab, t, to: ["user@contoso.com", "user@contoso.net", "user@deep.sub.contoso.net"])
    }

    func test_verifiedCertificate_relaysFromAnyAddress_anUnverifiedOneDoesNot() throws {
        let lab = try lab()
        var o = client("198.51.100.30", "someone@example.org", to: ["partner@example.net"])
        o.clientCertificate = lab.certificates.client  // CA-signed, CN relay.contoso.com
        let verified = try lab.swaks(o)
        XCTAssertEqual(verified.rcptReply(for: "partner@example.net")?.code, 250, verified.text)
        try assertDelivered(lab, verified, to: ["partner@example.net"])
        let line = try lab.waitForLog(matching: "verdict=accept .*rcpt=<partner@example\\.net>")
        XCTAssertTrue(line.contains(#"inbound="Contoso relay by certificate""#) && line.contains(#"cert="relay.contoso.com""#), line)

        // Same name, self-signed: Postfix sends the policy service no ccert_subject for it.
        o.clientCertificate = try lab.certificates.selfSignedClient(commonName: "relay.contoso.com", name: "relay-selfsigned")
        o.to = ["partner2@example.net"]
        let unverified = try lab.swaks(o)
        XCTAssertEqual(unverified.rcptReply(for: "partner2@example.net")?.text, PostfixLab.relayAccessDenied("partner2@example.net"),
                       unverified.text)
    }

    /// The lab has no SASL server; XCLIENT LOGIN= makes the session authenticated as far as
    /// smtpd is concerned (permit_sasl_authenticated, sasl_username, {auth_authen}).
    func test_authenticatedClient_relays() throws {
        let lab = try lab()
        var o = client("198.51.100.40", "alice@contoso.com", to: ["friend@example.net"])
        o.xclientLogin = "alice"
        let t = try lab.swaks(o)
        XCTAssertEqual(t.rcptReply(for: "friend@example.net")?.code, 250, t.text)
        try assertDelivered(lab, t, to: ["friend@example.net"])
        let line = try lab.waitForLog(matching: "verdict=accept .*rcpt=<friend@example\\.net>")
        XCTAssertTrue(line.contains("direction=originating inbound=none inbound_type=authenticated") && line.hasSuffix("auth=\"alice\" original_client=none"), line)
    }

    func test_withoutTheMilterLine_aStrangerIsStillRefused() throws {
        let lab = try lab()
        try lab.postconf(["smtpd_milters": ""])
        let stranger = try lab.swaks(client("198.51.100.9", "a@example.org", to: ["victim@example.net"]))
        XCTAssertEqual(stranger.rcptReply(for: "victim@example.net")?.text, PostfixLab.relayAccessDenied("victim@example.net"),
                       stranger.text)
        let ours = try lab.swaks(client("192.0.2.11", "ceo@contoso.com", to: ["partner3@example.net"]))
        XCTAssertEqual(ours.rcptReply(for: "partner3@example.net")?.code, 250, ours.text)
    }

    func test_aReloadChangesWhoMayRelay() throws {
        let lab = try lab()
        let before = try lab.swaks(client("203.0.113.77", "ceo@contoso.com", to: ["p1@example.net"]))
        XCTAssertEqual(before.rcptReply(for: "p1@example.net")?.text, PostfixLab.relayAccessDenied("p1@example.net"), before.text)
        try relayPolicy.replacingOccurrences(of: "[192.0.2.0/24]", with: "[192.0.2.0/24, 203.0.113.77]")
            .write(toFile: lab.directory + "/connectors.yaml", atomically: true, encoding: .utf8)
        lab.daemon?.signal(SIGUSR1)
        _ = try lab.waitForLog(matching: "policy reloaded from")
        let after = try lab.swaks(client("203.0.113.77", "ceo@contoso.com", to: ["p2@example.net"]))
        XCTAssertEqual(after.rcptReply(for: "p2@example.net")?.code, 250, after.text)
    }

    /// Daemon down: with the milter line, milter_default_action tempfails every session. Without
    /// it, the policy service does not answer (smtpd_policy_service_default_action, 451 4.3.5)
    /// and relay_domains cannot be looked up (451 4.3.0): every relay attempt and mail for the
    /// accepted domains tempfails; nothing is accepted, not even from the organization's servers.
    func test_daemonStopped_relayTempfailsForEveryone() throws {
        let lab = try lab()
        XCTAssertEqual(lab.stopDaemon(), 0)
        let withMilter = try lab.swaks(client("192.0.2.10", "ceo@contoso.com", to: ["down0@example.net"]))
        XCTAssertNil(withMilter.queueID, withMilter.text)
        XCTAssertTrue(withMilter.text.contains("451 4.7.1"), withMilter.text)

        try lab.postconf(["smtpd_milters": ""])
        let cases: [(String, String, String)] = [
            ("192.0.2.10", "ceo@contoso.com", "down1@example.net"),
            ("198.51.100.9", "a@example.org", "down2@example.net"),
            ("198.51.100.9", "a@example.org", "down3@contoso.com"),
        ]
        for (address, sender, recipient) in cases {
            let t = try lab.swaks(client(address, sender, to: [recipient]))
            let reply = try XCTUnwrap(t.rcptReply(for: recipient), t.text)
            XCTAssertEqual(reply.code / 100, 4, "\(address) -> \(recipient): \(t.text)")
            print("daemon stopped, no milter line: \(address) -> \(recipient): \(reply.text)")
            XCTAssertNil(t.queueID, t.text)
        }
        XCTAssertTrue(lab.deliveries().isEmpty, "nothing accepted while the daemon is down")
    }
}
