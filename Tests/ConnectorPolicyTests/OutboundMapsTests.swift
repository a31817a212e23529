import XCTest
@testable import ConnectorPolicy
@testable import ConnectorReview

// SPEC section 4: the answers the socketmap gives Postfix, and the static exports.

private let policyText = """
    organization:
      acceptedDomains: [contoso.com, "*.contoso.net"]
    connectors:
      - name: To Fabrikam Bank
        direction: outbound
        type: partner
        recipientDomains: [fabrikam.com]
        smartHosts: ["mx1.fabrikam.com", "[203.0.113.25]:2525"]
        tlsSettings: domainValidation
        tlsDomain: mx.fabrikam.com
      - name: Woodgrove
        direction: outbound
        type: partner
        recipientDomains: ["*.woodgrove.example"]
        tlsSettings: certificateValidation
      - name: Woodgrove sales, no TLS setting
        direction: outbound
        type: partner
        recipientDomains: [sales.woodgrove.example]
      - name: Tailspin
        direction: outbound
        type: partner
        recipientDomains: [tailspin.example]
        smartHosts: ["[198.51.100.7]"]
        tlsSettings: encryptionOnly
      - name: Disabled
        direction: outbound
        type: partner
        enabled: false
        recipientDomains: [disabled.example]
        smartHosts: ["[198.51.100.99]"]
        tlsSettings: encryptionOnly
      - name: To on-premises
        direction: outbound
        type: onPremises
        allAcceptedDomains: true
        smartHosts: ["[192.0.2.25]"]
        tlsSettings: domainValidation
        tlsDomain: "*.contoso.com"
    """

private func compile(_ yaml: String) throws -> PolicySet {
    PolicySet(try PolicyParser.parse(yaml, file: "test.yaml").get())
}

final class OutboundMapsTests: XCTestCase {
    func testSendmailRelayControlKeys() throws {
        func keys(_ text: String) -> [String] { OutboundExport.connectKeys(try! IPPrefix.parse(text).get()).keys }
        XCTAssertEqual(keys("192.0.2.0/24"), ["192.0.2"])
        XCTAssertEqual(keys("192.0.2.7/32"), ["192.0.2.7"])
        XCTAssertEqual(keys("10.0.0.0/8"), ["10"])
        XCTAssertEqual(keys("198.51.100.128/25").count, 128)
        XCTAssertEqual(keys("198.51.100.128/25").first, "198.51.100.128")
        XCTAssertEqual(keys("198.51.100.128/25").last, "198.51.100.255")
        XCTAssertEqual(keys("198.51.0.0/23"), ["198.51.0", "198.51.1"])
        XCTAssertEqual(keys("2001:db8:25::/48"), ["IPv6:2001:db8:25"])
        XCTAssertEqual(keys("0.0.0.0/0"), [])
        XCTAssertEqual(keys("2001:db8::/33"), [], "32768 keys: a note instead")

        let set = try compile("""
            organization:
              acceptedDomains: [contoso.com]
            connectors:
              - name: By name
                direction: inbound
                type: onPremises
                tlsSenderCertificateName: "*.Contoso.com"
              - name: Exact
                direction: inbound
                type: onPremises
                tlsSenderCertificateName: relay.branch.example
                senderIPAddresses: [192.0.2.0/24]
            """)
        XCTAssertEqual(OutboundExport.relayCertificateRules(set), [
            "contoso . com", "$- . contoso . com", "$- . $- . contoso . com", "$- . $- . $- . contoso . com",
            "$- . $- . $- . $- . contoso . com", "relay . branch . example"])
        let access = OutboundExport.sendmail(set, source: "t.yaml")[0].contents
        XCTAssertTrue(access.contains("Connect:192.0.2\tRELAY"), access)
    }

    func testTLSPolicyAnswersEveryNextHopPostfixAsksFor() throws {
        let maps = OutboundMaps(try compile(policyText))
        let cases: [(String, String, String?)] = [
            ("domainValidation is secure with match= the tlsDomain", "fabrikam.com", "secure match=mx.fabrikam.com"),
            ("keys compare without case and trailing dot", "FabriKam.COM.", "secure match=mx.fabrikam.com"),
            ("an exact recipient domain does not cover its subdomains", "sub.fabrikam.com", nil),
            ("a smart host next hop gets its connector's TLS", "[203.0.113.25]:2525", "secure match=mx.fabrikam.com"),
            ("a smart host name, bracketed as the transport writes it", "[mx1.fabrikam.com]", "secure match=mx.fabrikam.com"),
            ("a smart host name is never an MX next hop", "mx1.fabrikam.com", nil),
            ("the same host on another port is another next hop", "[203.0.113.25]", nil),
            ("certificateValidation is verify, *.x covers x", "woodgrove.example", "verify"),
            ("certificateValidation is verify, *.x covers subdomains", "a.b.woodgrove.example", "verify"),
            ("a connector without tlsSettings leaves the site default", "sales.woodgrove.example", nil),
            ("encryptionOnly is encrypt", "tailspin.example", "encrypt"),
            ("encryptionOnly smart host", "[198.51.100.7]", "encrypt"),
            ("a *.x tlsDomain matches x and its subdomains", "contoso.com", "secure match=contoso.com:.contoso.com"),
            ("allAcceptedDomains answers for an accepted wildcard", "x.contoso.net", "secure match=contoso.com:.contoso.com"),
            ("a disabled connector answers nothing", "disabled.example", nil),
            ("a disabled connector's smart host answers nothing", "[198.51.100.99]", nil),
            ("no connector: NOTFOUND (opportunistic by MX)", "example.org", nil),
            ("parent forms are never answered: attribution covers *.x", ".woodgrove.example", nil),
            ("an address literal is no domain", "[192.0.2.1]", nil),
            ("the empty key", "", nil),
            ("garbage", "a b\u{0}c", nil),
        ]
        for (name, key, expected) in cases {
            XCTAssertEqual(maps.tlsPolicy(for: key), expected, name)
            XCTAssertEqual(maps.lookup(.tlsPolicy, key: key), expected, name)
        }
    }

    func testTransportRoutesSmartHostConnectorsByFullAddress() throws {
        let maps = OutboundMaps(try compile(policyText))
        let cases: [(String, String, String?)] = [
            ("smart hosts in order, as Postfix nexthops", "ap@fabrikam.com", "smtp:[mx1.fabrikam.com], [203.0.113.25]:2525"),
            ("address extension and case do not matter", "AP+x@Fabrikam.com", "smtp:[mx1.fabrikam.com], [203.0.113.25]:2525"),
            ("a quoted local part with @", "\"a@b\"@tailspin.example", "smtp:[198.51.100.7]"),
            ("allAcceptedDomains routes the accepted domains on-premises", "ceo@contoso.com", "smtp:[192.0.2.25]"),
            ("and their subdomains for a *.x accepted domain", "x@a.contoso.net", "smtp:[192.0.2.25]"),
            ("a connector using MX: Postfix routes", "x@woodgrove.example", nil),
            ("no connector: Postfix routes", "x@example.org", nil),
            ("a bare domain key works too (postmap -q)", "fabrikam.com", "smtp:[mx1.fabrikam.com], [203.0.113.25]:2525"),
            ("the wildcard key is never ours", "*", nil),
            ("a parent form is never ours", ".contoso.com", nil),
        ]
        for (name, key, expected) in cases {
            XCTAssertEqual(maps.transport(for: key), expected, name)
        }
    }

    func testASharedSmartHostGetsTheStricterTLSSetting() throws {
        let maps = OutboundMaps(try compile("""
            organization:
              acceptedDomains: [contoso.com]
            connectors:
              - name: Loose
                direction: outbound
                type: partner
                recipientDomains: [a.example]
                smartHosts: ["[192.0.2.9]"]
                tlsSettings: encryptionOnly
              - name: Strict
                direction: outbound
                type: partner
                recipientDomains: [b.example]
                smartHosts: ["[192.0.2.9]"]
                tlsSettings: certificateValidation
              - name: None
                direction: outbound
                type: partner
                recipientDomains: [c.example]
                smartHosts: ["[192.0.2.9]"]
            """))
        XCTAssertEqual(maps.tlsPolicy(for: "[192.0.2.9]"), "verify")
        XCTAssertEqual(maps.tlsPolicy(for: "a.example"), "encrypt")
    }

    func testMatchPatternsFollowPostfixSyntax() {
        XCTAssertEqual(OutboundMaps.matchPatterns(tlsDomain: "mx.fabrikam.com"), ["mx.fabrikam.com"])
        XCTAssertEqual(OutboundMaps.matchPatterns(tlsDomain: "*.Fabrikam.com"), ["fabrikam.com", ".fabrikam.com"])
    }

    func testPostfixExportSaysWhatTheSocketmapSays() throws {
        let files = OutboundExport.postfix(try compile(policyText), source: "test.yaml", directory: "/etc/postfix/cm")
        XCTAssertEqual(files.map(\.name), ["tls_policy", "transport", "main.cf.snippet", "relay_domains"])
        XCTAssertTrue(files[3].contents.hasSuffix("contoso.com\tOK\ncontoso.net\tOK\n.contoso.net\tOK\n"), files[3].contents)
        XCTAssertTrue(files[2].contents.contains("relay_domains = hash:/etc/postfix/cm/relay_domains"))
        XCTAssertTrue(files[2].contents.contains("check_policy_service unix:/connector-milter/policy.sock, reject_unauth_destination"))
        let tls = entries(files[0].contents)
        XCTAssertEqual(tls["fabrikam.com"], "secure match=mx.fabrikam.com")
        XCTAssertEqual(tls["[203.0.113.25]:2525"], "secure match=mx.fabrikam.com")
        XCTAssertEqual(tls["woodgrove.example"], "verify")
        XCTAssertEqual(tls[".woodgrove.example"], "verify")
        XCTAssertNil(tls["sales.woodgrove.example"])
        XCTAssertTrue(files[0].contents.contains("# note: sales.woodgrove.example: connector \"Woodgrove sales, no TLS setting\" sets no TLS"),
                      files[0].contents)
        XCTAssertEqual(tls[".contoso.net"], "secure match=contoso.com:.contoso.com")
        XCTAssertNil(tls["disabled.example"])
        let transport = entries(files[1].contents)
        XCTAssertEqual(transport["fabrikam.com"], "smtp:[mx1.fabrikam.com], [203.0.113.25]:2525")
        XCTAssertEqual(transport["contoso.com"], "smtp:[192.0.2.25]")
        XCTAssertEqual(transport[".contoso.net"], "smtp:[192.0.2.25]")
        XCTAssertNil(transport["woodgrove.example"])
        XCTAssertTrue(files[2].contents.contains("smtp_tls_policy_maps = hash:/etc/postfix/cm/tls_policy"))
        XCTAssertTrue(files[2].contents.contains("transport_maps = hash:/etc/postfix/cm/transport"))
    }

    func testPostfixExportKeepsMXDeliveryUnderACatchAllSmartHost() throws {
        let files = OutboundExport.postfix(try compile("""
            organization:
              acceptedDomains: [contoso.com]
            connectors:
              - name: Everything via relay
                direction: outbound
                type: partner
                recipientDomains: ["*"]
                smartHosts: ["[192.0.2.50]:587"]
                tlsSettings: encryptionOnly
              - name: Direct
                direction: outbound
                type: partner
                recipientDomains: [direct.example]
            """), source: "t.yaml", directory: "/d")
        let transport = entries(files[1].contents)
        XCTAssertEqual(transport["*"], "smtp:[192.0.2.50]:587")
        XCTAssertEqual(transport["direct.example"], ":", "transport(5): an empty entry keeps Postfix's own routing")
        XCTAssertTrue(files[0].contents.contains("a static tls_policy has no catch-all"), files[0].contents)
        XCTAssertEqual(entries(files[0].contents)["[192.0.2.50]:587"], "encrypt")
    }

    func testSendmailExportUsesAccessMapAndMailertableSyntax() throws {
        let files = OutboundExport.sendmail(try compile(policyText), source: "test.yaml")
        XCTAssertEqual(files.map(\.name), ["access", "mailertable", "sendmail.mc.snippet", "relay-domains"])
        XCTAssertTrue(files[3].contents.hasSuffix("contoso.com\ncontoso.net\n"), files[3].contents)
        XCTAssertTrue(files[2].contents.contains("RELAY_DOMAIN_FILE(`/etc/mail/relay-domains')dnl"), files[2].contents)
        let access = entries(files[0].contents)
        XCTAssertEqual(access["TLS_Rcpt:fabrikam.com"], "VERIFY+CN:mx.fabrikam.com")
        XCTAssertEqual(access["TLS_Rcpt:woodgrove.example"], "VERIFY")
        XCTAssertEqual(access["TLS_Rcpt:tailspin.example"], "ENCR:128")
        XCTAssertEqual(access["TLS_Rcpt:contoso.com"], "VERIFY", "+CN: cannot express *.contoso.com")
        XCTAssertEqual(access["TLS_Srv:203.0.113.25"], "VERIFY+CN:mx.fabrikam.com")
        XCTAssertEqual(access["TLS_Srv:198.51.100.7"], "ENCR:128")
        let mailertable = entries(files[1].contents)
        XCTAssertEqual(mailertable["fabrikam.com"], "esmtp:[mx1.fabrikam.com]")
        XCTAssertTrue(files[1].contents.contains("left out: [203.0.113.25]:2525"), files[1].contents)
        XCTAssertEqual(mailertable["tailspin.example"], "esmtp:[198.51.100.7]")
        XCTAssertEqual(mailertable[".contoso.net"], "esmtp:[192.0.2.25]")
        XCTAssertTrue(files[2].contents.contains("FEATURE(`mailertable')dnl"))
        // sales.woodgrove.example wants no TLS, but its subdomains are Woodgrove's (VERIFY):
        // no entry can say both, so Sendmail's inheritance of TLS_Rcpt:woodgrove.example is noted.
        XCTAssertNil(access["TLS_Rcpt:sales.woodgrove.example"])
        XCTAssertTrue(files[0].contents.contains("sales.woodgrove.example: connector \"Woodgrove sales, no TLS setting\" "
                                                 + "sets no TLS, but Sendmail applies TLS_Rcpt:woodgrove.example (VERIFY)"),
                      files[0].contents)
        XCTAssertNil(mailertable["sales.woodgrove.example"], "no parent routes it: nothing to override")
    }

    func testSendmailExportKeepsMXDeliveryAndNoTLSUnderARoutedOrTLSParent() throws {
        let files = OutboundExport.sendmail(try compile("""
            organization:
              acceptedDomains: [contoso.com]
            connectors:
              - name: Tailspin
                direction: outbound
                type: partner
                recipientDomains: ["*.tailspin.example"]
                smartHosts: ["[192.0.2.26]"]
                tlsSettings: encryptionOnly
              - name: Tailspin sales
                direction: outbound
                type: partner
                recipientDomains: ["*.sales.tailspin.example"]
              - name: Direct
                direction: outbound
                type: partner
                recipientDomains: [direct.example]
              - name: Everything else
                direction: outbound
                type: partner
                recipientDomains: ["*"]
                smartHosts: ["[192.0.2.99]"]
                tlsSettings: encryptionOnly
            """), source: "t.yaml")
        let access = entries(files[0].contents)
        let mailertable = entries(files[1].contents)
        // Ruleset 90: %0 is the key looked up, %1 what was stripped before a `.x` key.
        XCTAssertEqual(mailertable["sales.tailspin.example"], "esmtp:%0")
        XCTAssertEqual(mailertable[".sales.tailspin.example"], "esmtp:%1%0")
        XCTAssertEqual(mailertable["direct.example"], "esmtp:%0", "else `.` would send it to the `*` smart host")
        XCTAssertEqual(mailertable["."], "esmtp:[192.0.2.99]")
        // OK: TLS_connection's "no requirement"; stops the walk to tailspin.example's ENCR:128.
        XCTAssertEqual(access["TLS_Rcpt:sales.tailspin.example"], "OK")
        XCTAssertEqual(access["TLS_Rcpt:"], "ENCR:128")
        // direct.example's subdomains are "*"'s (ENCR:128): OK would weaken them, so a note.
        XCTAssertNil(access["TLS_Rcpt:direct.example"])
        XCTAssertTrue(files[0].contents.contains("direct.example: connector \"Direct\" sets no TLS, but Sendmail applies "
                                                 + "TLS_Rcpt: (the default) (ENCR:128)"), files[0].contents)
    }

    func testSendmailExportDefinesAMailerPerSmartHostPort() throws {
        let files = OutboundExport.sendmail(try compile("""
            organization:
              acceptedDomains: [contoso.com]
            connectors:
              - name: Relay on 2525
                direction: outbound
                type: partner
                recipientDomains: [relay.example]
                smartHosts: ["[2001:db8::25]:2525", "[192.0.2.26]:2525"]
            """), source: "t.yaml")
        XCTAssertEqual(entries(files[1].contents)["relay.example"], "esmtp2525:[IPv6:2001:db8::25]:[192.0.2.26]")
        XCTAssertTrue(files[2].contents.contains("Mesmtp2525,\tP=[IPC]"), files[2].contents)
        XCTAssertTrue(files[2].contents.contains("A=TCP $h 2525"), files[2].contents)
    }

    /// `KEY<tab>VALUE` lines of a table, comments skipped.
    private func entries(_ text: String) -> [String: String] {
        var result: [String: String] = [:]
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            let parts = line.split(separator: "\t", maxSplits: 1)
            if parts.count == 2 { result[String(parts[0])] = String(parts[1]) }
        }
        return result
    }
}
