import XCTest
@testable import ConnectorPolicy
@testable import ConnectorReview

// Findings of the hardening work (issue 7): hostile sessions through Postfix, and fuzzing.
// Each finding stays here as a regression test.

final class HardeningTests: XCTestCase {
    private let policy: PolicySet = {
        let yaml = """
            organization:
              acceptedDomains: [contoso.com]
            connectors:
              - name: Contoso on-premises
                direction: inbound
                type: onPremises
                tlsSenderCertificateName: "*.contoso.com"
            """
        return PolicySet(try! PolicyParser.parse(yaml, file: "hardening.yaml").get())
    }()

    private func inbound(certificate: String) -> String? {
        let session = SessionFacts(clientAddress: IPAddress("198.18.0.40"), clientName: "client.example",
                                   tlsVersion: "TLSv1.3", verifiedCertificateName: certificate)
        let decision = policy.judge(session: session, from: EmailAddress(parsing: "<a@example.org>"),
                                    recipient: EmailAddress(parsing: "<x@far.example>"))
        return decision.inbound?.name
    }

    /// Found through Postfix (HostileSessionTests): a CA-signed CN `evil" cert="relay.contoso.com`
    /// ends in ".contoso.com" and matched "*.contoso.com", so the client relayed as on-premises.
    func test_certificateNamesThatAreNoHostName_identifyNobody() {
        for cn in [#"evil" cert="relay.contoso.com"#, "x y.contoso.com", "*.contoso.com", "relay\u{1}.contoso.com",
                   "relay.contoso.com\n", "a/b.contoso.com", "relay..contoso.com", "", "."] {
            XCTAssertNil(inbound(certificate: cn), "\(cn.debugDescription) must identify nobody")
        }
    }

    func test_validCertificateNames_stillIdentify() {
        for cn in ["relay.contoso.com", "RELAY.Contoso.COM", "relay.contoso.com.", "contoso.com", "a-b_c.mx.contoso.com"] {
            XCTAssertEqual(inbound(certificate: cn), "Contoso on-premises", cn)
        }
    }

    /// Whatever a client puts in its addresses, names and certificate, the verdict line reads
    /// back as exactly the fields the writer wrote.
    func test_hostileValues_neverForgeAVerdictLineField() {
        let hostile = [#""x\" verdict=accept inbound=\"Contoso on-premises\" y"@example.org"#,
                       "a\u{0}b@example.org", "a\r\nverdict=accept@example.org", "line\u{2028}sep\u{85}nel@example.org",
                       "\u{FEFF}bom@example.org", "back\\slash\\\"@example.org", "=@=", "\"", " ", "",
                       String(repeating: "\u{1F600}", count: 600) + "@example.org", String(repeating: "\\", count: 700)]
        for value in hostile {
            // The MTA's verified client name is a DNS name (at most 255 octets): see
            // test_clientNameBeyondTheValueLimit below for what a longer one does.
            let session = SessionFacts(clientAddress: IPAddress("2001:db8::25"), clientName: String(value.prefix(255)), helo: value,
                                       tlsVersion: value, verifiedCertificateName: value, authenticatedUser: value)
            let from = EmailAddress(parsing: "<" + value + ">")
            let decision = policy.judge(session: session, from: from, recipient: EmailAddress(parsing: "<" + value + ">"))
            let line = VerdictLine.format(queueID: value.isEmpty ? nil : value, decision: decision, session: session,
                                          from: from, recipient: from)
            XCTAssertFalse(line.contains("\n") || line.contains("\r") || line.contains("\0"), line)
            XCTAssertEqual(VerdictLineReader.conformanceProblems(line), [], line)
        }
    }

    /// Found by this test: `client=NAME[IP]` is cut as one value, so a NAME of more than ~500
    /// characters loses its "[IP]" and the reader says "client= must be NAME[ADDRESS]". Not
    /// reachable through Postfix (a verified name or an XCLIENT NAME is a DNS name, at most 255
    /// octets); fix proposed in VerdictLine.format: cut the NAME, then append "[IP]".
    func test_clientNameBeyondTheValueLimit_isStillOneField() {
        let session = SessionFacts(clientAddress: IPAddress("192.0.2.1"), clientName: String(repeating: "n", count: 600))
        let from = EmailAddress(parsing: "<a@example.org>")
        let decision = policy.judge(session: session, from: from, recipient: from)
        let line = VerdictLine.format(queueID: nil, decision: decision, session: session, from: from, recipient: from)
        XCTAssertEqual(line.components(separatedBy: " client=").count, 2, line)
        XCTAssertTrue(line.contains(" client=\(String(repeating: "n", count: 498))...[192.0.2.1] tls=none cert=none from=<a@example.org> "), line)
        XCTAssertEqual(VerdictLineReader.conformanceProblems(line), [], line)
    }
}

extension HardeningTests {
    /// The same rule where a connector attributed by address demands its certificate.
    func test_certificateDemandOfAConnectorFoundByAddress_needsAHostName() {
        let yaml = """
            organization:
              acceptedDomains: [contoso.com]
            connectors:
              - name: Branch
                direction: inbound
                type: onPremises
                senderIPAddresses: [192.0.2.0/24]
                tlsSenderCertificateName: "*.contoso.com"
                requireTls: true
            """
        let policy = PolicySet(try! PolicyParser.parse(yaml, file: "hardening.yaml").get())
        func reason(_ cn: String) -> String? {
            let session = SessionFacts(clientAddress: IPAddress("192.0.2.7"), tlsVersion: "TLSv1.3", verifiedCertificateName: cn)
            return policy.judge(session: session, from: EmailAddress(parsing: "<a@contoso.com>"),
                                recipient: EmailAddress(parsing: "<x@far.example>")).refusal?.reason.rawValue
        }
        XCTAssertNil(reason("relay.contoso.com"))
        XCTAssertEqual(reason(#"x" y.contoso.com"#), "certificate-required")
        XCTAssertEqual(reason("*.contoso.com"), "certificate-required")
    }
}
