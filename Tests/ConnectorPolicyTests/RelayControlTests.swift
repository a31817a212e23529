import XCTest
@testable import ConnectorPolicy

// The MTA's own relay control follows the connectors: who may relay (relayPermission, asked by
// Postfix's policy delegation) and which domains are the organization's (the relay-domains map).

private let policyText = """
    organization:
      acceptedDomains: [contoso.com, "*.contoso.net"]
    settings:
      mode: monitor
    connectors:
      - name: Contoso on-premises
        direction: inbound
        type: onPremises
        senderIPAddresses: [192.0.2.0/24, "2001:db8:25::/48"]
        tlsSenderCertificateName: "*.contoso.com"
        requireTls: true
      - name: Branch relay
        direction: inbound
        type: onPremises
        tlsSenderCertificateName: relay.branch.example
      - name: Old relay
        direction: inbound
        type: onPremises
        enabled: false
        senderIPAddresses: [198.18.5.0/24]
      - name: Fabrikam Bank
        direction: inbound
        type: partner
        senderDomains: [fabrikam.com]
        senderIPAddresses: [203.0.113.0/24]
    """

private func session(_ address: String, tls: String? = nil, cert: String? = nil, auth: String? = nil) -> SessionFacts {
    SessionFacts(clientAddress: IPAddress(address), tlsVersion: tls, verifiedCertificateName: cert, authenticatedUser: auth)
}

final class RelayControlTests: XCTestCase {
    private let policy = PolicySet(try! PolicyParser.parse(policyText, file: "test.yaml").get())

    func testRelayPermissionIsTheJudgmentsOriginatingAttribution() {
        // (name, session, MAIL FROM, RCPT TO, expected type, expected connector)
        let cases: [(String, SessionFacts, String, String, InboundType?, String?)] = [
            ("an onPremises address with an accepted sender may relay to the internet",
             session("192.0.2.10"), "<ceo@contoso.com>", "<partner@example.net>", .onPremises, "Contoso on-premises"),
            ("an onPremises address with a sender in a *.x accepted domain may relay",
             session("192.0.2.10"), "<a@mail.contoso.net>", "<partner@example.net>", .onPremises, "Contoso on-premises"),
            ("an onPremises address may relay a bounce (null sender)",
             session("2001:db8:25::7"), "<>", "<partner@example.net>", .onPremises, "Contoso on-premises"),
            ("an onPremises address with a foreign sender may not relay to the internet",
             session("192.0.2.10"), "<someone@example.org>", "<partner@example.net>", nil, nil),
            ("an onPremises address with a foreign sender is still ours for an accepted recipient",
             session("192.0.2.10"), "<someone@example.org>", "<user@contoso.com>", .onPremises, "Contoso on-premises"),
            ("the TLS demand of the connector is the milter's: no TLS still relays here",
             session("192.0.2.10", tls: nil), "<ceo@contoso.com>", "<partner@example.net>", .onPremises, "Contoso on-premises"),
            ("a verified certificate matching *.contoso.com may relay anything, from anywhere",
             session("198.51.100.1", tls: "TLSv1.3", cert: "relay.contoso.com"), "<x@example.org>", "<y@example.net>",
             .onPremises, "Contoso on-premises"),
            ("a certificate-only onPremises connector identifies its relay",
             session("198.51.100.1", tls: "TLSv1.3", cert: "RELAY.branch.example"), "<x@branch.example>", "<y@example.net>",
             .onPremises, "Branch relay"),
            ("a certificate name without TLS proves nothing",
             session("198.51.100.1", tls: nil, cert: "relay.contoso.com"), "<x@contoso.com>", "<y@example.net>", nil, nil),
            ("a certificate name that is not a host name proves nothing",
             session("198.51.100.1", tls: "TLSv1.3", cert: "x\" y.contoso.com"), "<x@contoso.com>", "<y@example.net>", nil, nil),
            ("an authenticated client may relay",
             session("198.51.100.1", auth: "alice"), "<alice@contoso.com>", "<y@example.net>", .authenticated, nil),
            ("an empty login is no authentication",
             session("198.51.100.1", auth: ""), "<alice@contoso.com>", "<y@example.net>", nil, nil),
            ("a stranger may not relay, even in monitor mode",
             session("198.51.100.9"), "<spam@example.org>", "<victim@example.net>", nil, nil),
            ("a stranger claiming an accepted sender may not relay",
             session("198.51.100.9"), "<ceo@contoso.com>", "<victim@example.net>", nil, nil),
            ("a partner is not originating: it may not relay",
             session("203.0.113.5"), "<pay@fabrikam.com>", "<victim@example.net>", nil, nil),
            ("a partner sending to us needs no relay permission, and gets none",
             session("203.0.113.5"), "<pay@fabrikam.com>", "<ap@contoso.com>", nil, nil),
            ("a disabled onPremises connector lets nobody relay",
             session("198.18.5.1"), "<ceo@contoso.com>", "<partner@example.net>", nil, nil),
            ("an unknown client address (none given) relays nothing",
             SessionFacts(), "<ceo@contoso.com>", "<partner@example.net>", nil, nil),
        ]
        for (name, facts, from, rcpt, type, connector) in cases {
            let permission = policy.relayPermission(session: facts, from: EmailAddress(parsing: from),
                                                    recipient: EmailAddress(parsing: rcpt))
            XCTAssertEqual(permission?.inboundType, type, name)
            XCTAssertEqual(permission?.connector?.name, connector, name)
            // Whoever may relay, the judgment calls originating, and the other way round.
            let decision = policy.judge(session: facts, from: EmailAddress(parsing: from), recipient: EmailAddress(parsing: rcpt))
            XCTAssertEqual(permission != nil, decision.direction == .originating, "\(name): agrees with judge")
        }
    }

    func testRelayDomainsAreTheAcceptedDomains() {
        let maps = OutboundMaps(policy)
        let cases: [(String, String, String?)] = [
            ("an accepted domain", "contoso.com", "OK"),
            ("case does not count", "CONTOSO.Com", "OK"),
            ("a subdomain of an exact accepted domain is not accepted", "mail.contoso.com", nil),
            ("*.x holds x itself", "contoso.net", "OK"),
            ("*.x holds its subdomains, at any depth", "a.b.contoso.net", "OK"),
            ("a foreign domain", "example.net", nil),
            ("a name that only ends like an accepted one", "evilcontoso.net", nil),
            ("a parent form is never asked of a socketmap and never answered", ".contoso.net", nil),
            ("an address literal", "[192.0.2.1]", nil),
            ("the empty key", "", nil),
            ("not a domain name", "contoso.com bad", nil),
        ]
        for (name, key, expected) in cases {
            XCTAssertEqual(maps.lookup(.relayDomains, key: key), expected, name)
        }
    }
}
