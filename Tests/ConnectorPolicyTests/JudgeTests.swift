import XCTest
@testable import ConnectorPolicy

// Table-driven tests of SPEC section 3. Each case name reads like the rule it checks.

private func domains(_ list: String...) -> [DomainPattern] {
    list.map { try! DomainPattern.parse($0).get() }
}

private func prefixes(_ list: String...) -> [IPPrefix] {
    list.map { try! IPPrefix.parse($0).get() }
}

private func inbound(_ name: String, _ type: ConnectorType, _ configure: (inout Connector) -> Void = { _ in }) -> Connector {
    var c = Connector(name: name, direction: .inbound, type: type)
    configure(&c)
    return c
}

private func outbound(_ name: String, _ type: ConnectorType, _ configure: (inout Connector) -> Void = { _ in }) -> Connector {
    var c = Connector(name: name, direction: .outbound, type: type)
    configure(&c)
    return c
}

/// The SPEC's example policy, plus a few connectors to exercise the precedence rules.
private func examplePolicy(_ adjust: (inout Policy) -> Void = { _ in }) -> PolicySet {
    var policy = Policy(acceptedDomains: domains("contoso.com", "*.contoso.net"), connectors: [
        inbound("Contoso on-premises", .onPremises) {
            $0.senderIPAddresses = prefixes("192.0.2.0/24", "2001:db8:25::/48")
            $0.tlsSenderCertificateName = .wildcard("contoso.com")
            $0.requireTls = true
        },
        inbound("Contoso branch", .onPremises) {
            $0.senderIPAddresses = prefixes("192.0.2.128/25")
        },
        inbound("Fabrikam Bank", .partner) {
            $0.senderDomains = domains("fabrikam.com")
            $0.senderIPAddresses = prefixes("203.0.113.0/24")
            $0.restrictDomainsToIPAddresses = true
            $0.requireTls = true
        },
        inbound("Northwind by certificate", .partner) {
            $0.senderDomains = domains("*.northwind.example")
            $0.tlsSenderCertificateName = .exact("mx.northwind.example")
        },
        inbound("Northwind by address", .partner) {
            $0.senderDomains = domains("*.northwind.example")
            $0.senderIPAddresses = prefixes("198.51.100.0/24")
        },
        inbound("Marketing any domain", .partner) {
            $0.senderDomains = domains("*")
        },
        inbound("Marketing mailer", .partner) {
            $0.senderDomains = domains("*.mailer.example")
        },
        inbound("Marketing news", .partner) {
            $0.senderDomains = domains("news.mailer.example")
            $0.associatedAcceptedDomains = domains("contoso.com")
        },
        outbound("To Fabrikam Bank", .partner) {
            $0.recipientDomains = domains("fabrikam.com")
            $0.smartHosts = [SmartHost(host: "203.0.113.25", isBracketed: true, port: 2525)]
            $0.useMXRecord = false
            $0.tlsSettings = .domainValidation
            $0.tlsDomain = "mx.fabrikam.com"
            $0.requireTlsReceipt = true
        },
        outbound("To on-premises", .onPremises) {
            $0.allAcceptedDomains = true
            $0.smartHosts = [SmartHost(host: "192.0.2.25", isBracketed: true)]
            $0.useMXRecord = false
        },
        outbound("To sub.contoso.net", .partner) {
            $0.recipientDomains = domains("*.sub.contoso.net")
        },
        outbound("To anywhere", .partner) {
            $0.recipientDomains = domains("*")
            $0.tlsSettings = .encryptionOnly
        },
    ])
    adjust(&policy)
    return PolicySet(policy)
}

private struct Case {
    let name: String
    var policy: PolicySet = examplePolicy()
    var session: SessionFacts
    let from: String
    let rcpt: String
    // Expected:
    var verdict: Verdict = .accept
    var reason: RefusalReason? = nil
    var reply: String? = nil
    var direction: MessageDirection? = nil
    var inbound: String?? = .none  // .none: not checked; .some(nil): no connector
    var inboundType: InboundType? = nil
    var outbound: String?? = .none  // .none: not checked; .some(nil): no connector
    var mode: Mode? = nil
}

private func ip(_ text: String, tls: String? = nil, cert: String? = nil, auth: String? = nil) -> SessionFacts {
    SessionFacts(clientAddress: IPAddress(text)!, clientName: "client.example", tlsVersion: tls,
                 verifiedCertificateName: cert, authenticatedUser: auth)
}

final class JudgeTests: XCTestCase {
    private func check(_ cases: [Case], file: StaticString = #filePath, line: UInt = #line) {
        for c in cases {
            let d = c.policy.judge(session: c.session, from: EmailAddress(parsing: c.from), recipient: EmailAddress(parsing: c.rcpt))
            XCTAssertEqual(d.verdict, c.verdict, "\(c.name): verdict", file: file, line: line)
            XCTAssertEqual(d.refusal?.reason, c.reason, "\(c.name): reason", file: file, line: line)
            if let reply = c.reply { XCTAssertEqual(d.refusal?.reply.description, reply, "\(c.name): reply", file: file, line: line) }
            if let direction = c.direction { XCTAssertEqual(d.direction, direction, "\(c.name): direction", file: file, line: line) }
            if case .some(let expected) = c.inbound { XCTAssertEqual(d.inbound?.name, expected, "\(c.name): inbound connector", file: file, line: line) }
            if let t = c.inboundType { XCTAssertEqual(d.inboundType, t, "\(c.name): inbound type", file: file, line: line) }
            if case .some(let expected) = c.outbound { XCTAssertEqual(d.outbound?.name, expected, "\(c.name): outbound", file: file, line: line) }
            if let mode = c.mode { XCTAssertEqual(d.mode, mode, "\(c.name): mode", file: file, line: line) }
        }
    }

    func test_onPremisesByCertificate() {
        check([
            Case(name: "a verified certificate matching *.contoso.com is originating and may relay anywhere",
                 session: ip("198.18.0.1", tls: "TLSv1.3", cert: "relay.contoso.com"),
                 from: "<someone@elsewhere.example>", rcpt: "<friend@other.example>",
                 direction: .originating, inbound: "Contoso on-premises", inboundType: .onPremises),
            Case(name: "*.contoso.com also matches contoso.com itself",
                 session: ip("198.18.0.1", tls: "TLSv1.3", cert: "CONTOSO.COM"),
                 from: "<a@contoso.com>", rcpt: "<b@other.example>",
                 direction: .originating, inbound: "Contoso on-premises"),
            Case(name: "a certificate name that does not match gives no onPremises attribution: relay denied",
                 session: ip("198.18.0.1", tls: "TLSv1.3", cert: "contoso.com.evil.example"),
                 from: "<a@contoso.com>", rcpt: "<b@other.example>",
                 verdict: .reject, reason: .relayDenied, reply: "550 5.7.64 Relay access denied"),
            Case(name: "an unverified certificate (nil name) identifies nobody",
                 session: ip("198.18.0.1", tls: "TLSv1.3"),
                 from: "<a@contoso.com>", rcpt: "<b@other.example>", verdict: .reject, reason: .relayDenied),
            Case(name: "a certificate name without TLS is ignored",
                 session: ip("198.18.0.1", cert: "relay.contoso.com"),
                 from: "<a@contoso.com>", rcpt: "<b@other.example>", verdict: .reject, reason: .relayDenied),
        ])
    }

    func test_onPremisesCertificateExactBeatsWildcardAndLongerBeatsShorter() {
        let policy = examplePolicy {
            $0.connectors.append(inbound("Exact relay", .onPremises) { $0.tlsSenderCertificateName = .exact("relay.eu.contoso.com") })
            $0.connectors.append(inbound("EU relays", .onPremises) { $0.tlsSenderCertificateName = .wildcard("eu.contoso.com") })
        }
        check([
            Case(name: "exact beats wildcard", policy: policy, session: ip("198.18.0.1", tls: "TLSv1.2", cert: "relay.eu.contoso.com"),
                 from: "<a@contoso.com>", rcpt: "<b@x.example>", inbound: "Exact relay"),
            Case(name: "longer wildcard beats shorter", policy: policy, session: ip("198.18.0.1", tls: "TLSv1.2", cert: "other.eu.contoso.com"),
                 from: "<a@contoso.com>", rcpt: "<b@x.example>", inbound: "EU relays"),
            Case(name: "shortest wildcard last", policy: policy, session: ip("198.18.0.1", tls: "TLSv1.2", cert: "us.contoso.com"),
                 from: "<a@contoso.com>", rcpt: "<b@x.example>", inbound: "Contoso on-premises"),
        ])
    }

    func test_onPremisesByAddress() {
        let tls = "TLSv1.3", cert = "relay.contoso.com"
        check([
            Case(name: "an onPremises address with an accepted MAIL FROM relays out",
                 session: ip("192.0.2.10", tls: tls, cert: nil),
                 from: "<ceo@contoso.com>", rcpt: "<x@other.example>",
                 // Contoso on-premises also has tlsSenderCertificateName with requireTls: a certificate is needed.
                 verdict: .tempfail, reason: .certificateRequired, reply: "454 4.7.0 TLS required",
                 direction: .originating, inbound: "Contoso on-premises"),
            Case(name: "an onPremises address with its certificate relays out",
                 session: ip("192.0.2.10", tls: tls, cert: cert),
                 from: "<ceo@contoso.com>", rcpt: "<x@other.example>", direction: .originating, inbound: "Contoso on-premises"),
            Case(name: "longest prefix wins: 192.0.2.128/25 beats 192.0.2.0/24",
                 session: ip("192.0.2.200"), from: "<ceo@contoso.com>", rcpt: "<x@other.example>",
                 direction: .originating, inbound: "Contoso branch"),
            Case(name: "a null sender from an onPremises address relays out (bounces must flow)",
                 session: ip("192.0.2.200"), from: "<>", rcpt: "<x@other.example>",
                 direction: .originating, inbound: "Contoso branch"),
            Case(name: "a foreign sender from an onPremises address to an accepted recipient is originating",
                 session: ip("192.0.2.200"), from: "<x@other.example>", rcpt: "<ceo@sales.contoso.net>",
                 direction: .originating, inbound: "Contoso branch"),
            Case(name: "a foreign sender from an onPremises address may not relay out",
                 session: ip("192.0.2.200"), from: "<x@other.example>", rcpt: "<y@third.example>",
                 verdict: .reject, reason: .relayDenied),
            Case(name: "IPv6 onPremises addresses match by prefix",
                 session: ip("2001:db8:25:1::7", tls: tls, cert: cert), from: "<a@contoso.com>", rcpt: "<x@other.example>",
                 inbound: "Contoso on-premises"),
            Case(name: "an IPv4-mapped IPv6 client is matched as IPv4",
                 session: ip("::ffff:192.0.2.200"), from: "<a@contoso.com>", rcpt: "<x@other.example>", inbound: "Contoso branch"),
        ])
    }

    func test_authenticatedClients() {
        check([
            Case(name: "a SASL-authenticated client is originating with no connector",
                 session: ip("198.18.0.9", auth: "alice"), from: "<alice@contoso.com>", rcpt: "<x@other.example>",
                 direction: .originating, inbound: .some(nil), inboundType: .authenticated),
            Case(name: "an empty login is not authentication",
                 session: ip("198.18.0.9", auth: ""), from: "<alice@contoso.com>", rcpt: "<x@other.example>",
                 verdict: .reject, reason: .relayDenied),
        ])
    }

    func test_relayDenied() {
        check([
            Case(name: "an unknown client sending to a foreign domain is refused with 5.7.64",
                 session: ip("198.18.0.9"), from: "<a@b.example>", rcpt: "<c@d.example>",
                 verdict: .reject, reason: .relayDenied, reply: "550 5.7.64 Relay access denied",
                 inboundType: InboundType.none),
            Case(name: "domains compare case-insensitively and ignore a trailing dot",
                 session: ip("198.18.0.9"), from: "<a@b.example>", rcpt: "<c@Sales.CONTOSO.net.>",
                 direction: .incoming),
            Case(name: "a look-alike domain is not accepted",
                 session: ip("198.18.0.9"), from: "<a@b.example>", rcpt: "<c@evilcontoso.com>",
                 verdict: .reject, reason: .relayDenied),
            Case(name: "an address literal is not an accepted domain",
                 session: ip("198.18.0.9"), from: "<a@b.example>", rcpt: "<c@[192.0.2.1]>",
                 verdict: .reject, reason: .relayDenied),
        ])
    }

    func test_partnerConnectors() {
        check([
            Case(name: "partner restricted by IP accepts its own address (and requires TLS)",
                 session: ip("203.0.113.7", tls: "TLSv1.2"), from: "<pay@fabrikam.com>", rcpt: "<ap@contoso.com>",
                 direction: .incoming, inbound: "Fabrikam Bank", inboundType: .partner),
            Case(name: "partner restricted by IP refuses a foreign address with 5.7.51",
                 session: ip("198.18.0.9", tls: "TLSv1.2"), from: "<pay@fabrikam.com>", rcpt: "<ap@contoso.com>",
                 verdict: .reject, reason: .partnerRestricted, reply: "550 5.7.51 Sender not authorized by partner connector"),
            Case(name: "partner with requireTls refuses a session in clear with 454 4.7.0",
                 session: ip("203.0.113.7"), from: "<pay@fabrikam.com>", rcpt: "<ap@contoso.com>",
                 verdict: .tempfail, reason: .tlsRequired, reply: "454 4.7.0 TLS required", inbound: "Fabrikam Bank"),
            Case(name: "a partner identified by certificate name beats one identified by address",
                 session: ip("198.51.100.3", tls: "TLSv1.3", cert: "mx.northwind.example"),
                 from: "<a@mail.northwind.example>", rcpt: "<b@contoso.com>", inbound: "Northwind by certificate"),
            Case(name: "a partner identified by address when the certificate is absent",
                 session: ip("198.51.100.3", tls: "TLSv1.3"), from: "<a@northwind.example>", rcpt: "<b@contoso.com>",
                 inbound: "Northwind by address"),
            Case(name: "a non-restricting partner whose address does not match does not apply; domain-only * catches it",
                 session: ip("198.18.0.9"), from: "<a@northwind.example>", rcpt: "<b@contoso.com>",
                 inbound: "Marketing any domain"),
            Case(name: "domain-only partners: the exact senderDomains match first",
                 session: ip("198.18.0.9"), from: "<a@news.mailer.example>", rcpt: "<b@contoso.com>", inbound: "Marketing news"),
            Case(name: "associatedAcceptedDomains limits a partner to mail for those domains",
                 session: ip("198.18.0.9"), from: "<a@news.mailer.example>", rcpt: "<b@sales.contoso.net>", inbound: "Marketing mailer"),
            Case(name: "domain-only partners: the longest wildcard before *",
                 session: ip("198.18.0.9"), from: "<a@x.mailer.example>", rcpt: "<b@contoso.com>", inbound: "Marketing mailer"),
            Case(name: "the null sender matches only *",
                 session: ip("198.18.0.9"), from: "<>", rcpt: "<b@contoso.com>", inbound: "Marketing any domain"),
        ])
    }

    func test_partnerRestrictedByCertificate() {
        let policy = examplePolicy {
            $0.connectors = [inbound("Woodgrove", .partner) {
                $0.senderDomains = domains("woodgrove.example")
                $0.tlsSenderCertificateName = .wildcard("woodgrove.example")
                $0.restrictDomainsToCertificate = true
            }]
        }
        check([
            Case(name: "restricted by certificate: a verified matching certificate is attributed",
                 policy: policy, session: ip("198.18.0.9", tls: "TLSv1.3", cert: "smtp.woodgrove.example"),
                 from: "<a@woodgrove.example>", rcpt: "<b@contoso.com>", inbound: "Woodgrove"),
            Case(name: "restricted by certificate: an unverified certificate is refused with 5.7.51",
                 policy: policy, session: ip("198.18.0.9", tls: "TLSv1.3"),
                 from: "<a@woodgrove.example>", rcpt: "<b@contoso.com>", verdict: .reject, reason: .partnerRestricted),
            Case(name: "restricted by certificate: another sender domain is not restricted",
                 policy: policy, session: ip("198.18.0.9"),
                 from: "<a@other.example>", rcpt: "<b@contoso.com>", inbound: .some(nil), inboundType: InboundType.none),
        ])
    }

    func test_restrictingPartnerTakesPrecedenceOverIdentifiedOnes() {
        let policy = examplePolicy {
            $0.connectors = [
                inbound("Loose", .partner) { $0.senderDomains = domains("fabrikam.com"); $0.senderIPAddresses = prefixes("198.18.0.0/16") },
                inbound("Strict", .partner) { $0.senderDomains = domains("*"); $0.senderIPAddresses = prefixes("203.0.113.0/24"); $0.restrictDomainsToIPAddresses = true },
            ]
        }
        check([
            Case(name: "a restricting connector applies even when a non-restricting one is identified by address",
                 policy: policy, session: ip("198.18.0.9"), from: "<a@fabrikam.com>", rcpt: "<b@contoso.com>",
                 verdict: .reject, reason: .partnerRestricted),
            Case(name: "a satisfied restricting connector is attributed first",
                 policy: policy, session: ip("203.0.113.1"), from: "<a@fabrikam.com>", rcpt: "<b@contoso.com>", inbound: "Strict"),
        ])
    }

    func test_directSend() {
        let on = examplePolicy { $0.settings.rejectDirectSend = true; $0.connectors.removeAll { $0.name == "Marketing any domain" } }
        check([
            Case(name: "rejectDirectSend refuses unattributed mail from an accepted domain with 5.7.68",
                 policy: on, session: ip("198.18.0.9"), from: "<ceo@contoso.com>", rcpt: "<b@contoso.com>",
                 verdict: .reject, reason: .directSend, reply: "550 5.7.68 Direct send not allowed from unauthorized sources"),
            Case(name: "rejectDirectSend leaves foreign senders alone",
                 policy: on, session: ip("198.18.0.9"), from: "<a@other.example>", rcpt: "<b@contoso.com>", inbound: .some(nil)),
            Case(name: "rejectDirectSend leaves authenticated senders alone",
                 policy: on, session: ip("198.18.0.9", auth: "ceo"), from: "<ceo@contoso.com>", rcpt: "<b@contoso.com>",
                 inboundType: .authenticated),
            Case(name: "rejectDirectSend off accepts unattributed mail from an accepted domain",
                 policy: examplePolicy { $0.connectors.removeAll { $0.name == "Marketing any domain" } },
                 session: ip("198.18.0.9"), from: "<ceo@contoso.com>", rcpt: "<b@contoso.com>", direction: .incoming),
        ])
    }

    func test_tlsDemands() {
        let permanent = examplePolicy { $0.settings.tlsFailure = .permanent }
        check([
            Case(name: "tlsFailure permanent refuses with 530 5.7.0", policy: permanent,
                 session: ip("203.0.113.7"), from: "<pay@fabrikam.com>", rcpt: "<ap@contoso.com>",
                 verdict: .reject, reason: .tlsRequired, reply: "530 5.7.0 Must issue a STARTTLS command first"),
            Case(name: "requireTlsReceipt of the outbound connector refuses a session in clear",
                 session: ip("192.0.2.200"), from: "<a@contoso.com>", rcpt: "<b@fabrikam.com>",
                 verdict: .tempfail, reason: .tlsRequired, inbound: "Contoso branch", outbound: "To Fabrikam Bank"),
            Case(name: "requireTlsReceipt is met by any TLS session",
                 session: ip("192.0.2.200", tls: "TLSv1.2"), from: "<a@contoso.com>", rcpt: "<b@fabrikam.com>",
                 inbound: "Contoso branch", outbound: "To Fabrikam Bank"),
            Case(name: "onPremises connector with a certificate name and requireTls refuses a session in clear as tls-required",
                 session: ip("192.0.2.10"), from: "<a@contoso.com>", rcpt: "<b@x.example>",
                 verdict: .tempfail, reason: .tlsRequired, inbound: "Contoso on-premises"),
        ])
    }

    func test_outboundAttribution() {
        let s = ip("192.0.2.200", tls: "TLSv1.3")
        check([
            Case(name: "outbound: exact recipient domain", session: s, from: "<a@contoso.com>", rcpt: "<b@FABRIKAM.com>", outbound: "To Fabrikam Bank"),
            Case(name: "outbound: wildcard before allAcceptedDomains", session: s, from: "<a@contoso.com>", rcpt: "<b@x.sub.contoso.net>", outbound: "To sub.contoso.net"),
            Case(name: "outbound: allAcceptedDomains for accepted domains", session: s, from: "<a@contoso.com>", rcpt: "<b@contoso.com>", outbound: "To on-premises"),
            Case(name: "outbound: * last", session: s, from: "<a@contoso.com>", rcpt: "<b@elsewhere.example>", outbound: "To anywhere"),
            Case(name: "outbound: no match is default delivery",
                 policy: examplePolicy { $0.connectors.removeAll { $0.name == "To anywhere" } },
                 session: s, from: "<a@contoso.com>", rcpt: "<b@elsewhere.example>", outbound: .some(nil)),
        ])
    }

    func test_monitorAndDisabled() {
        let monitor = examplePolicy { $0.settings.mode = .monitor }
        let bankMonitored = examplePolicy { p in
            p.connectors = p.connectors.map { var c = $0; if c.name == "Fabrikam Bank" { c.mode = .monitor }; return c }
        }
        let bankDisabled = examplePolicy { p in
            p.connectors = p.connectors.map { var c = $0; if c.name == "Fabrikam Bank" { c.enabled = false }; return c }
        }
        check([
            Case(name: "monitor mode accepts what it would refuse and says why", policy: monitor,
                 session: ip("198.18.0.9"), from: "<a@b.example>", rcpt: "<c@d.example>",
                 verdict: .accept, reason: .relayDenied, mode: .monitor),
            Case(name: "a connector in monitor mode does not enforce its restriction", policy: bankMonitored,
                 session: ip("198.18.0.9", tls: "TLSv1.3"), from: "<pay@fabrikam.com>", rcpt: "<ap@contoso.com>",
                 verdict: .accept, reason: .partnerRestricted, mode: .monitor),
            Case(name: "a connector in monitor mode does not enforce its TLS demand", policy: bankMonitored,
                 session: ip("203.0.113.7"), from: "<pay@fabrikam.com>", rcpt: "<ap@contoso.com>",
                 verdict: .accept, reason: .tlsRequired, inbound: "Fabrikam Bank", mode: .monitor),
            Case(name: "a disabled connector is ignored", policy: bankDisabled,
                 session: ip("198.18.0.9"), from: "<pay@fabrikam.com>", rcpt: "<ap@contoso.com>",
                 inbound: "Marketing any domain"),
        ])
        let d = monitor.judge(session: ip("198.18.0.9"), from: EmailAddress(parsing: "<a@b.example>"), recipient: EmailAddress(parsing: "<c@d.example>"))
        XCTAssertEqual(d.wouldBe, .reject)
        XCTAssertNil(d.enforcedRefusal)
    }
}
