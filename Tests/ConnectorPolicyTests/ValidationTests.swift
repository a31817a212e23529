import Foundation
import XCTest
@testable import ConnectorPolicy
@testable import ConnectorReview

/// `validate`'s judgment without a network: posttls-finger's output (as Postfix 3.7.11 wrote
/// it against the lab's receivers) read and judged the way smtp(8) acts on it; the two lint
/// rules it brought; the MTA wiring checks on a configuration given as data.
final class ValidationTests: XCTestCase {
    // MARK: posttls-finger output

    static func finger(_ trust: String?, starttls: Bool = true, failure: String? = nil, port: Int = 42525) -> String {
        var lines = ["posttls-finger: Connected to 127.0.0.2[127.0.0.2]:\(port)",
                     "posttls-finger: < 220 mx.fabrikam.test ESMTP Postfix",
                     "posttls-finger: > EHLO mx.lab.test",
                     "posttls-finger: < 250-mx.fabrikam.test",
                     "posttls-finger: < 250-PIPELINING"]
        if starttls { lines.append("posttls-finger: < 250-STARTTLS") }
        lines.append("posttls-finger: < 250 CHUNKING")
        if starttls {
            lines += ["posttls-finger: > STARTTLS", "posttls-finger: < 220 2.0.0 Ready to start TLS"]
            if let failure { lines.append("posttls-finger: server certificate verification failed for 127.0.0.2[127.0.0.2]:\(port): \(failure)") }
            if let trust {
                lines.append("posttls-finger: \(trust) TLS connection established to 127.0.0.2[127.0.0.2]:\(port): TLSv1.3 with "
                             + "cipher TLS_AES_256_GCM_SHA384 (256/256 bits) key-exchange X25519 server-signature ECDSA (prime256v1) server-digest SHA256")
            }
        }
        lines += ["posttls-finger: > QUIT", "posttls-finger: < 221 2.0.0 Bye"]
        return lines.joined(separator: "\n") + "\n"
    }

    func test_posttlsFingerOutputIsRead() {
        let probe = TLSProbe.parse(Self.finger("Untrusted", failure: "num=62:hostname mismatch"))
        XCTAssertEqual(probe.connectedTo, "127.0.0.2[127.0.0.2]:42525")
        XCTAssertEqual(probe.address, "127.0.0.2")
        XCTAssertEqual(probe.port, 42525)
        XCTAssertTrue(probe.startTLSOffered)
        XCTAssertEqual(probe.trust, .untrusted)
        XCTAssertEqual(probe.protocolVersion, "TLSv1.3")
        XCTAssertEqual(probe.cipher, "TLS_AES_256_GCM_SHA384")
        XCTAssertEqual(probe.verificationFailures, ["hostname mismatch"])

        let refused = TLSProbe.parse("posttls-finger: Failed to establish session to [127.0.0.2]:42529 via 127.0.0.2: "
                                     + "connect to 127.0.0.2[127.0.0.2]:42529: Connection refused\n")
        XCTAssertFalse(refused.reachable)
        XCTAssertTrue(refused.connectError?.contains("Connection refused") ?? false)
    }

    /// Each case: what posttls-finger saw, the socketmap's answer, smtp(8)'s outcome.
    func test_judgmentFollowsSmtpsSecurityLevels() {
        let secure = TLSRequirement(policyValue: "secure match=mx.fabrikam.test", source: "t")
        let encrypt = TLSRequirement(policyValue: "encrypt", source: "t")
        let none = TLSRequirement(level: "may", source: "t")
        let cases: [(String, String, TLSRequirement, String?)] = [
            ("right name, domainValidation delivers", Self.finger("Verified"), secure, nil),
            ("wrong name, domainValidation defers", Self.finger("Untrusted", failure: "num=62:hostname mismatch"), secure,
             "Server certificate not verified (hostname mismatch)"),
            ("expired, domainValidation defers", Self.finger("Untrusted", failure: "certificate has expired"), secure,
             "Server certificate not verified (certificate has expired)"),
            ("self-signed, encryptionOnly delivers", Self.finger("Untrusted"), encrypt, nil),
            ("no STARTTLS, encryptionOnly defers", Self.finger(nil, starttls: false), encrypt, "TLS is required, but was not offered"),
            ("no STARTTLS, no tlsSettings delivers in clear", Self.finger(nil, starttls: false), none, nil),
            ("handshake failure, encryptionOnly defers", Self.finger(nil), encrypt, "TLS is required, but the handshake failed"),
        ]
        for (name, output, requirement, reason) in cases {
            let report = Validation.judge(nextHop: "[127.0.0.2]:42525", probe: TLSProbe.parse(output), requirement: requirement,
                                          certificate: nil, chainProblem: nil, trustedChain: nil, recipients: [])
            XCTAssertEqual(report.delivers, reason == nil, name)
            if let reason { XCTAssertTrue(report.reason?.hasPrefix(reason) ?? false, "\(name): \(report.reason ?? "nil")") }
        }
    }

    func test_aRefusedValidationRecipientMeansNoDelivery() {
        let report = Validation.judge(nextHop: "[127.0.0.2]:42525", probe: TLSProbe.parse(Self.finger("Verified")),
                                      requirement: TLSRequirement(policyValue: "secure match=mx.fabrikam.test", source: "t"),
                                      certificate: nil, chainProblem: nil, trustedChain: true,
                                      recipients: [RecipientCheck(recipient: "a@fabrikam.test", reply: "250 2.1.5 Ok"),
                                                   RecipientCheck(recipient: "b@fabrikam.test", reply: "550 5.1.1 unknown")])
        XCTAssertFalse(report.delivers)
        XCTAssertEqual(report.reason, "the host refuses RCPT TO:<b@fabrikam.test>: 550 5.1.1 unknown")
    }

    func test_expiryWarnings() {
        let now = Date(timeIntervalSince1970: 1_800_000_000)
        func days(_ n: Double) -> CertificateFacts {
            CertificateFacts(commonName: "mx.fabrikam.test", altNames: [], notAfter: now.addingTimeInterval(n * 86_400 + (n < 0 ? -60 : 60)))
        }
        for (n, warning) in [(400.0, nil), (29, "the certificate expires in 29 days"), (-3, "the certificate expired 3 days ago")] {
            let report = Validation.judge(nextHop: "x", probe: TLSProbe.parse(Self.finger("Verified")),
                                          requirement: TLSRequirement(level: "encrypt", source: "t"), certificate: days(n),
                                          chainProblem: nil, trustedChain: true, recipients: [], now: now)
            XCTAssertEqual(report.warnings.first, warning, "\(n) days")
        }
    }

    func test_certificateFactsFromOpenSSL() {
        let facts = CertificateFacts.parse(x509Text: """
            subject=CN=mx.fabrikam.test,O=Fabrikam
            issuer=CN=LabCA
            notAfter=Dec  1 20:30:37 2026 GMT
            X509v3 Subject Alternative Name:\u{20}
                DNS:mx.fabrikam.test, DNS:*.fabrikam.test, IP Address:127.0.0.2
            """)
        XCTAssertEqual(facts.commonName, "mx.fabrikam.test")
        XCTAssertEqual(facts.altNames, ["mx.fabrikam.test", "*.fabrikam.test", "127.0.0.2"])
        XCTAssertEqual(facts.notAfter, Date(timeIntervalSince1970: 1_796_157_037))
        XCTAssertEqual(facts.names, ["mx.fabrikam.test", "*.fabrikam.test", "127.0.0.2"])
    }

    func test_postfixMatchSemantics() {
        XCTAssertTrue(Validation.matches(["mx.fabrikam.test"], ["mx.fabrikam.test"]))
        XCTAssertTrue(Validation.matches(["mx.fabrikam.test"], ["fabrikam.test", ".fabrikam.test"]))
        XCTAssertTrue(Validation.matches(["*.fabrikam.test"], ["mx.fabrikam.test"]))
        XCTAssertFalse(Validation.matches(["*.fabrikam.test"], ["a.mx.fabrikam.test"]))
        XCTAssertFalse(Validation.matches(["other.example.test"], ["fabrikam.test", ".fabrikam.test"]))
        XCTAssertFalse(Validation.matches(["evilfabrikam.test"], [".fabrikam.test"]))
    }

    func test_requirementComesFromTheSocketmapAnswer() throws {
        let policy = try PolicyParser.parse("""
            organization:
              acceptedDomains: [contoso.com]
            connectors:
              - name: A
                direction: outbound
                type: partner
                recipientDomains: [a.test]
                smartHosts: ["[127.0.0.2]:2525"]
                tlsSettings: encryptionOnly
              - name: B
                direction: outbound
                type: partner
                recipientDomains: [b.test]
                smartHosts: ["[127.0.0.2]:2525"]
                tlsSettings: domainValidation
                tlsDomain: "*.b.test"
              - name: MX
                direction: outbound
                type: partner
                recipientDomains: [c.test, "*.d.test"]
            """, file: "p").get()
        let set = PolicySet(policy)
        let maps = OutboundMaps(set)
        // The shared smart host: the stricter connector's answer serves both.
        XCTAssertEqual(Validation.requirement(maps: maps, nextHop: "[127.0.0.2]:2525", siteLevel: "may").description,
                       "secure match=b.test:.b.test")
        XCTAssertEqual(Validation.requirement(maps: maps, nextHop: "c.test", siteLevel: "may").level, "may")
        let mx = policy.connectors[2]
        XCTAssertEqual(OutboundValidator.nextHops(of: mx, in: set, domains: []), ["c.test"])
        XCTAssertEqual(OutboundValidator.nextHops(of: mx, in: set, domains: ["x.d.test", "a.test"]), ["c.test", "x.d.test"])
    }

    func test_validationRecipientsAreParsedAndCheckedAsAddresses() {
        let yaml = """
            organization:
              acceptedDomains: [contoso.com]
            connectors:
              - name: Bank
                direction: outbound
                type: partner
                recipientDomains: [bank.test]
                validationRecipients: [postmaster@bank.test, "a b@bank.test", "x@bank.test>", nobody, "@bank.test"]
            """
        guard case .failure(let errors) = PolicyParser.parse(yaml, file: "p") else { return XCTFail("accepted bad addresses") }
        let text = "\(errors)"
        for bad in ["a b@bank.test", "x@bank.test>", "nobody", "@bank.test"] {
            XCTAssertTrue(text.contains("validationRecipients: \"\(bad)\" is not an address"), text)
        }
        XCTAssertFalse(text.contains("postmaster@bank.test\" is not"), text)
        let good = yaml.replacingOccurrences(of: ", \"a b@bank.test\", \"x@bank.test>\", nobody, \"@bank.test\"", with: "")
        XCTAssertEqual(try PolicyParser.parse(good, file: "p").get().connectors[0].validationRecipients, ["postmaster@bank.test"])
    }

    // MARK: Lint

    func lint(_ connectors: String, accepted: String = "[contoso.com]") -> [String] {
        let yaml = "organization:\n  acceptedDomains: \(accepted)\nconnectors:\n" + connectors
        guard case .success(let policy) = PolicyParser.parse(yaml, file: "p.yaml") else { XCTFail("invalid"); return [] }
        return PolicyLint.warnings(for: policy, yaml: yaml, file: "p.yaml").map { "\($0.line):\($0.column): \($0.message)" }
    }

    func test_lintNamesASmartHostSharedWithDifferentTLSAndTheWinner() {
        let found = lint("""
              - name: To Fabrikam
                direction: outbound
                type: partner
                recipientDomains: [fabrikam.com]
                smartHosts: ["[192.0.2.25]:2525"]
                tlsSettings: encryptionOnly
              - name: To Fabrikam Bank
                direction: outbound
                type: partner
                recipientDomains: [bank.fabrikam.com]
                smartHosts: ["mx.fabrikam.com", "[192.0.2.25]:2525"]
                tlsSettings: domainValidation
                tlsDomain: mx.fabrikam.com
              - name: Same TLS
                direction: outbound
                type: partner
                recipientDomains: [other.fabrikam.com]
                smartHosts: ["[192.0.2.25]:2525"]
                tlsSettings: encryptionOnly
            """)
        // The stricter connector answers for the host; both others are warned, each at its item.
        XCTAssertEqual(found.count, 2, "\(found)")
        guard found.count == 2 else { return }
        XCTAssertTrue(found[0].hasPrefix("8:18: smart host \"[192.0.2.25]:2525\" of connector \"To Fabrikam\" (encryptionOnly) "
                                         + "is also that of \"To Fabrikam Bank\" (line 10) (domainValidation (tlsDomain mx.fabrikam.com))"), found[0])
        XCTAssertTrue(found[0].contains("answers with \"To Fabrikam Bank\"'s, the stricter"), found[0])
        XCTAssertTrue(found[1].hasPrefix("21:18: smart host \"[192.0.2.25]:2525\" of connector \"Same TLS\""), found[1])
    }

    func test_lintNamesAnOnPremisesCertificateNameOutsideTheAcceptedDomains() {
        let found = lint("""
              - name: Relay
                direction: inbound
                type: onPremises
                tlsSenderCertificateName: relay.fabrikam.com
              - name: Inside
                direction: inbound
                type: onPremises
                tlsSenderCertificateName: "*.mail.contoso.com"
              - name: Partner
                direction: inbound
                type: partner
                senderDomains: [fabrikam.com]
                tlsSenderCertificateName: mx.fabrikam.com
            """)
        XCTAssertEqual(found.count, 1, "\(found)")
        XCTAssertTrue(found[0].hasPrefix("7:5: tlsSenderCertificateName \"relay.fabrikam.com\" of onPremises connector \"Relay\" "
                                         + "is outside the accepted domains (contoso.com)"), found[0])
    }

    // MARK: Certificate identity

    func test_aCertificateNameIdentifiesOnPremisesFirstThenTheMostSpecific() throws {
        let policy = try PolicyParser.parse("""
            organization:
              acceptedDomains: [contoso.com]
            connectors:
              - name: Partner exact
                direction: inbound
                type: partner
                senderDomains: [contoso.com]
                tlsSenderCertificateName: relay.contoso.com
              - name: Servers
                direction: inbound
                type: onPremises
                tlsSenderCertificateName: "*.contoso.com"
              - name: Relays
                direction: inbound
                type: onPremises
                tlsSenderCertificateName: "*.relay.contoso.com"
            """, file: "p").get()
        // onPremises before partners; `*.relay.contoso.com` covers relay.contoso.com too, and is longer.
        XCTAssertEqual(CertificateIdentity.connector(forCertificateName: "relay.contoso.com", in: policy)?.name, "Relays")
        XCTAssertEqual(CertificateIdentity.connector(forCertificateName: "mail.contoso.com", in: policy)?.name, "Servers")
        XCTAssertEqual(CertificateIdentity.connector(forCertificateName: "a.relay.contoso.com", in: policy)?.name, "Relays")
        XCTAssertNil(CertificateIdentity.connector(forCertificateName: "relay.fabrikam.com", in: policy))
        XCTAssertNil(CertificateIdentity.connector(forCertificateName: "x y.contoso.com", in: policy))
    }

    // MARK: Wiring

    struct FakeEnvironment: WiringEnvironment {
        var sockets: [String: SocketAccess] = [:]
        var files: [String: String] = [:]
        func socketAccess(_ path: String, user: String) -> SocketAccess { sockets[path] ?? .missing }
        func contents(of path: String) -> String? { files[path] }
        func modificationDate(of path: String) -> Date? { files[path] == nil ? nil : Date(timeIntervalSince1970: 0) }
    }

    static let wiringPolicy = PolicySet(try! PolicyParser.parse("""
        organization:
          acceptedDomains: [contoso.com]
        connectors:
          - name: Relays
            direction: inbound
            type: onPremises
            tlsSenderCertificateName: relay.contoso.com
          - name: Bank
            direction: outbound
            type: partner
            recipientDomains: [bank.test]
            smartHosts: ["[192.0.2.25]"]
            tlsSettings: encryptionOnly
        """, file: "p").get())

    static func postfix(_ parameters: [String: String], chroot: Bool = false) -> PostfixWiring.Configuration {
        var all = ["queue_directory": "/var/spool/postfix", "mail_owner": "postfix", "milter_default_action": "tempfail",
                   "milter_protocol": "6", "smtpd_tls_ask_ccert": "yes", "smtpd_tls_CAfile": "/etc/ca.pem",
                   "smtpd_tls_security_level": "may",
                   "smtpd_milters": "unix:/var/spool/postfix/cm/milter.sock",
                   "smtp_tls_policy_maps": "socketmap:unix:/var/spool/postfix/cm/maps.sock:tls-policy",
                   "transport_maps": "socketmap:unix:/var/spool/postfix/cm/maps.sock:transport",
                   "mynetworks": "127.0.0.0/8 [::1]/128",
                   "smtpd_relay_restrictions": "permit_mynetworks, permit_sasl_authenticated, "
                       + "check_policy_service unix:/cm/policy.sock, reject_unauth_destination",
                   "smtpd_policy_service_default_action": "451 4.3.5 Relay control unavailable, try again later",
                   "relay_domains": "socketmap:unix:/cm/maps.sock:relay-domains"]
        for (k, v) in parameters { all[k] = v }
        let c = chroot ? "y" : "n"
        return PostfixWiring.Configuration(directory: "/lab/etc", parameters: all, services: MasterService.parse("""
            smtp       inet  n       -       \(c)       -       -       smtpd
            smtp       unix  -       -       \(c)       -       -       smtp
            rewrite    unix  -       -       \(c)       -       -       trivial-rewrite
            """))
    }

    func findings(_ configuration: PostfixWiring.Configuration, environment: FakeEnvironment? = nil) -> [WiringFinding] {
        let environment = environment ?? FakeEnvironment(sockets: ["/var/spool/postfix/cm/milter.sock": .accessible,
                                                                    "/var/spool/postfix/cm/maps.sock": .accessible])
        return PostfixWiring.check(configuration, set: Self.wiringPolicy,
                                   milterSocket: .unix(path: "/var/spool/postfix/cm/milter.sock"),
                                   mapsSocket: .unix(path: "/var/spool/postfix/cm/maps.sock"), policyPath: "/p.yaml",
                                   environment: environment)
    }

    func test_aGoodPostfixWiringHasNoFinding() {
        XCTAssertEqual(findings(Self.postfix([:])), [])
        // Chrooted: the same sockets named relative to the queue directory.
        XCTAssertEqual(findings(Self.postfix(["smtpd_milters": "{ unix:/cm/milter.sock, default_action = tempfail }",
                                              "smtp_tls_policy_maps": "socketmap:unix:/cm/maps.sock:tls-policy",
                                              "transport_maps": "socketmap:unix:/cm/maps.sock:transport"], chroot: true)), [])
    }

    func test_eachPostfixWiringMistakeGivesItsFix() {
        let cases: [(String, [String: String], Bool, String, String)] = [
            ("another milter", ["smtpd_milters": "inet:127.0.0.1:8891"], false, "smtpd_milters is \"inet:127.0.0.1:8891\"",
             "postconf -c /lab/etc -e 'smtpd_milters = unix:/var/spool/postfix/cm/milter.sock'"),
            ("chroot", [:], true, "smtpd is chrooted", "postconf -c /lab/etc -e 'smtpd_milters = unix:/cm/milter.sock'"),
            ("accept", ["milter_default_action": "accept"], false, "milter_default_action = accept",
             "postconf -c /lab/etc -e 'milter_default_action = tempfail'"),
            ("protocol", ["milter_protocol": "2"], false, "milter_protocol = 2", "postconf -c /lab/etc -e 'milter_protocol = 6'"),
            ("ccert", ["smtpd_tls_ask_ccert": "no"], false, "smtpd_tls_ask_ccert = no", "postconf -c /lab/etc -e 'smtpd_tls_ask_ccert = yes'"),
            ("CA", ["smtpd_tls_CAfile": ""], false, "smtpd_tls_CAfile and smtpd_tls_CApath are empty",
             "postconf -c /lab/etc -e 'smtpd_tls_CAfile = /etc/ssl/certs/ca-certificates.crt'"),
            ("tls policy", ["smtp_tls_policy_maps": ""], false, "smtp_tls_policy_maps is empty",
             "postconf -c /lab/etc -e 'smtp_tls_policy_maps = socketmap:unix:/var/spool/postfix/cm/maps.sock:tls-policy'"),
            ("transport", ["transport_maps": "hash:/etc/postfix/other"], false, "transport_maps is \"hash:/etc/postfix/other\"",
             "postconf -c /lab/etc -e 'transport_maps = socketmap:unix:/var/spool/postfix/cm/maps.sock:transport, hash:/etc/postfix/other'"),
            ("stock relay control", ["smtpd_relay_restrictions": "permit_mynetworks permit_sasl_authenticated defer_unauth_destination"],
             false, "smtpd_relay_restrictions has no check_policy_service",
             "check_policy_service unix:/connector-milter/policy.sock, reject_unauth_destination'"),
            ("policy asked too late", ["smtpd_relay_restrictions": "reject_unauth_destination, check_policy_service unix:/cm/policy.sock"],
             false, "asks the policy service after reject_unauth_destination", "smtpd_relay_restrictions = permit_mynetworks"),
            ("wide mynetworks", ["mynetworks": "127.0.0.0/8 192.0.2.0/24"], false, "mynetworks holds 192.0.2.0/24",
             "postconf -c /lab/etc -e 'mynetworks = 127.0.0.0/8 [::1]/128'"),
            ("daemon down lets relay through", ["smtpd_policy_service_default_action": "DUNNO"], false,
             "smtpd_policy_service_default_action = DUNNO", "451 4.3.5 Relay control unavailable"),
            ("accepted domains not from the policy", ["relay_domains": "$mydestination"], false, "relay_domains = $mydestination",
             "relay_domains = socketmap:unix:/connector-milter/maps.sock:relay-domains"),
        ]
        for (name, parameters, chroot, message, fix) in cases {
            let found = findings(Self.postfix(parameters, chroot: chroot))
            // Chroot moves the socketmap paths too: three findings, the milter's first.
            XCTAssertEqual(found.count, chroot ? 3 : 1, "\(name): \(found)")
            XCTAssertTrue(found.first?.message.contains(message) ?? false, "\(name): \(found)")
            XCTAssertTrue(found.first?.fix.contains { $0.contains(fix) } ?? false, "\(name): \(found)")
        }
    }

    func test_aSocketPostfixCannotOpenIsAFinding() {
        let found = findings(Self.postfix([:]), environment: FakeEnvironment(sockets: [
            "/var/spool/postfix/cm/milter.sock": .notAccessible("the socket is nobody:nogroup mode 600"),
            "/var/spool/postfix/cm/maps.sock": .accessible]))
        XCTAssertEqual(found.count, 1, "\(found)")
        XCTAssertTrue(found[0].message.hasPrefix("Postfix (user postfix) cannot connect to /var/spool/postfix/cm/milter.sock"))
    }

    func test_aStaleExportIsAFinding() {
        let exported = OutboundExport.postfix(Self.wiringPolicy, source: "/p.yaml", directory: "/lab/tables")
        let tls = exported.first { $0.name == "tls_policy" }!.contents
        let transport = exported.first { $0.name == "transport" }!.contents
        let configuration = Self.postfix(["smtp_tls_policy_maps": "texthash:/lab/tables/tls_policy",
                                          "transport_maps": "texthash:/lab/tables/transport"])
        var environment = FakeEnvironment(sockets: ["/var/spool/postfix/cm/milter.sock": .accessible],
                                          files: ["/lab/tables/tls_policy": tls, "/lab/tables/transport": transport])
        XCTAssertEqual(findings(configuration, environment: environment), [])
        environment.files["/lab/tables/tls_policy"] = tls.replacingOccurrences(of: "encrypt", with: "may")
        let found = findings(configuration, environment: environment)
        XCTAssertEqual(found.count, 1, "\(found)")
        XCTAssertTrue(found[0].message.contains("is stale"), "\(found)")
        XCTAssertTrue(found[0].fix[0].hasPrefix("connector-milter export postfix --config /p.yaml --output /lab/tables"), "\(found)")
    }

    func test_sendmailWiring() {
        let good = "O InputMailFilters=connector\nXconnector, S=unix:/run/cm/milter.sock, F=T, T=C:10s\nO CACertFile=/ca.pem\nKaccess hash /etc/mail/access\nKmailertable hash /etc/mail/mailertable\n"
        let environment = FakeEnvironment(sockets: ["/run/cm/milter.sock": .accessible])
        func check(_ cf: String) -> [WiringFinding] {
            SendmailWiring.check(cf: cf, cfPath: "/sendmail.cf", set: Self.wiringPolicy,
                                 milterSocket: .unix(path: "/run/cm/milter.sock"), environment: environment)
        }
        XCTAssertEqual(check(good), [])
        XCTAssertTrue(check(good.replacingOccurrences(of: "F=T", with: "F=")).first?.message.contains("has F=") ?? false)
        XCTAssertTrue(check(good.replacingOccurrences(of: "O InputMailFilters=connector", with: "")).first?.message
            .contains("not in O InputMailFilters") ?? false)
        XCTAssertTrue(check(good.replacingOccurrences(of: "/run/cm/", with: "/tmp/")).first?.message
            .contains("none on the daemon's socket") ?? false)
        XCTAssertTrue(check(good.replacingOccurrences(of: "O CACertFile=/ca.pem\n", with: "")).first?.message
            .contains("O CACertFile is not set") ?? false)
    }
}
