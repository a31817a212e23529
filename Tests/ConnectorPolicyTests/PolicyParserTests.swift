import ConnectorPolicy
import Foundation
import XCTest

/// The policy file of SPEC section 2: what parses, what it parses to, and the exact
/// `LINE:COLUMN: message` of every error a mail administrator can make.
final class PolicyParserTests: XCTestCase {

    // MARK: Helpers

    /// Three lines in front of every connector list below, so connector lines start at line 4.
    static let header = """
        organization:
          acceptedDomains: [contoso.com, "*.contoso.net"]
        connectors:

        """

    /// The errors as "LINE:COLUMN: message", or [] when the policy is valid.
    func errors(_ yaml: String, file: StaticString = #filePath, line: UInt = #line) -> [String] {
        switch PolicyParser.parse(yaml, file: "test.yaml") {
        case .success: return []
        case .failure(let problems):
            for error in problems.errors { XCTAssertEqual(error.file, "test.yaml", file: file, line: line) }
            return problems.errors.map { "\($0.line):\($0.column): \($0.message)" }
        }
    }

    func policy(_ yaml: String, file: StaticString = #filePath, line: UInt = #line) -> Policy? {
        switch PolicyParser.parse(yaml, file: "test.yaml") {
        case .success(let policy): return policy
        case .failure(let problems):
            XCTFail("expected a valid policy, got:\n\(problems)", file: file, line: line)
            return nil
        }
    }

    /// The only connector of `header + connectors`.
    func connector(_ connectors: String, file: StaticString = #filePath, line: UInt = #line) -> Connector? {
        guard let policy = policy(Self.header + connectors, file: file, line: line) else { return nil }
        XCTAssertEqual(policy.connectors.count, 1, file: file, line: line)
        return policy.connectors.first
    }

    struct Case {
        let rule: String
        let yaml: String
        let expected: [String]
    }

    func check(_ cases: [Case], file: StaticString = #filePath, line: UInt = #line) {
        for c in cases {
            XCTAssertEqual(errors(c.yaml), c.expected, "rule: \(c.rule)", file: file, line: line)
        }
    }

    static var examplesDirectory: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("examples")
    }

    func temporaryFile(_ bytes: [UInt8]) throws -> String {
        let path = FileManager.default.temporaryDirectory
            .appendingPathComponent("policy-parser-test-\(UUID().uuidString).yaml").path
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        addTeardownBlock { try? FileManager.default.removeItem(atPath: path) }
        return path
    }

    // MARK: Good files

    static let specExample = """
        organization:
          acceptedDomains: [contoso.com, "*.contoso.net"]  # "*.x" = x and all its subdomains
        settings:
          mode: enforce            # enforce | monitor (monitor: decide and log, never refuse)
          tlsFailure: temporary    # temporary (4xx, the sender retries) | permanent (5xx)
          rejectDirectSend: false  # refuse unattributed mail whose MAIL FROM domain is accepted
          stampHeaders: true       # add X-Connector-* headers; always strip forged ones first
        connectors:
          - name: Contoso on-premises        # unique, at most 64 characters
            direction: inbound
            type: onPremises
            senderIPAddresses: [192.0.2.0/24, "2001:db8:25::/48"]  # IPv4 and IPv6, single or CIDR
            tlsSenderCertificateName: "*.contoso.com"            # identify by verified client cert
            requireTls: true
          - name: Fabrikam Bank
            direction: inbound
            type: partner
            senderDomains: [fabrikam.com]     # MAIL FROM domain; "*" = any
            senderIPAddresses: [203.0.113.0/24]
            restrictDomainsToIPAddresses: true
            requireTls: true
          - name: To Fabrikam Bank
            direction: outbound
            type: partner
            recipientDomains: [fabrikam.com]
            smartHosts: ["mx1.fabrikam.com", "[203.0.113.25]:2525"]  # or useMXRecord: true (default)
            tlsSettings: domainValidation     # encryptionOnly | certificateValidation | domainValidation
            tlsDomain: mx.fabrikam.com        # only with domainValidation
            requireTlsReceipt: true           # beyond EOP: recipients of this connector must arrive over TLS too
          - name: To on-premises
            direction: outbound
            type: onPremises
            allAcceptedDomains: true
            smartHosts: ["[192.0.2.25]"]
            tlsSettings: encryptionOnly
        """

    func test_specExample_parsesToTheExpectedModel() throws {
        let policy = try XCTUnwrap(self.policy(Self.specExample))

        var onPremises = Connector(name: "Contoso on-premises", direction: .inbound, type: .onPremises)
        onPremises.senderIPAddresses = [try IPPrefix.parse("192.0.2.0/24").get(), try IPPrefix.parse("2001:db8:25::/48").get()]
        onPremises.tlsSenderCertificateName = .wildcard("contoso.com")
        onPremises.requireTls = true

        var bank = Connector(name: "Fabrikam Bank", direction: .inbound, type: .partner)
        bank.senderDomains = [.exact("fabrikam.com")]
        bank.senderIPAddresses = [try IPPrefix.parse("203.0.113.0/24").get()]
        bank.restrictDomainsToIPAddresses = true
        bank.requireTls = true

        var toBank = Connector(name: "To Fabrikam Bank", direction: .outbound, type: .partner)
        toBank.recipientDomains = [.exact("fabrikam.com")]
        toBank.smartHosts = [SmartHost(host: "mx1.fabrikam.com", isBracketed: true),
                             SmartHost(host: "203.0.113.25", isBracketed: true, port: 2525)]
        toBank.useMXRecord = false
        toBank.tlsSettings = .domainValidation
        toBank.tlsDomain = "mx.fabrikam.com"
        toBank.requireTlsReceipt = true

        var toOnPremises = Connector(name: "To on-premises", direction: .outbound, type: .onPremises)
        toOnPremises.allAcceptedDomains = true
        toOnPremises.smartHosts = [SmartHost(host: "192.0.2.25", isBracketed: true)]
        toOnPremises.useMXRecord = false
        toOnPremises.tlsSettings = .encryptionOnly

        XCTAssertEqual(policy, Policy(
            acceptedDomains: [.exact("contoso.com"), .wildcard("contoso.net")],
            settings: Settings(mode: .enforce, tlsFailure: .temporary, rejectDirectSend: false, stampHeaders: true),
            connectors: [onPremises, bank, toBank, toOnPremises]))
    }

    func test_minimalFile_getsEveryDefault() throws {
        let policy = try XCTUnwrap(self.policy("organization:\n  acceptedDomains: [Contoso.COM.]\n"))
        XCTAssertEqual(policy.acceptedDomains, [.exact("contoso.com")])
        XCTAssertEqual(policy.settings, Settings())
        XCTAssertEqual(policy.settings.mode, .enforce)
        XCTAssertEqual(policy.settings.tlsFailure, .temporary)
        XCTAssertFalse(policy.settings.rejectDirectSend)
        XCTAssertTrue(policy.settings.stampHeaders)
        XCTAssertEqual(policy.connectors, [])
    }

    func test_emptySettingsAndConnectors_meanTheDefaults() throws {
        let policy = try XCTUnwrap(self.policy("organization:\n  acceptedDomains: [contoso.com]\nsettings:\nconnectors: []\n"))
        XCTAssertEqual(policy.settings, Settings())
        XCTAssertEqual(policy.connectors, [])
    }

    func test_everySetting_isRead() throws {
        let policy = try XCTUnwrap(self.policy("""
            organization: {acceptedDomains: [contoso.com]}
            settings: {mode: monitor, tlsFailure: permanent, rejectDirectSend: true, stampHeaders: false}
            """))
        XCTAssertEqual(policy.settings, Settings(mode: .monitor, tlsFailure: .permanent, rejectDirectSend: true, stampHeaders: false))
    }

    func test_inboundPartnerConnector_getsEveryDefault() throws {
        let c = try XCTUnwrap(connector("""
              - name: Fabrikam
                direction: inbound
                type: partner
                senderDomains: ["*"]
            """))
        var expected = Connector(name: "Fabrikam", direction: .inbound, type: .partner)
        expected.senderDomains = [.any]
        XCTAssertEqual(c, expected)
        XCTAssertTrue(c.enabled)
        XCTAssertNil(c.comment)
        XCTAssertNil(c.mode)
        XCTAssertFalse(c.requireTls)
        XCTAssertFalse(c.isRestricting)
        XCTAssertEqual(c.associatedAcceptedDomains, [])
    }

    func test_outboundConnectorWithoutSmartHosts_usesMXRecords() throws {
        let c = try XCTUnwrap(connector("""
              - {name: Out, direction: outbound, type: partner, recipientDomains: ["*"]}
            """))
        XCTAssertTrue(c.useMXRecord)
        XCTAssertEqual(c.smartHosts, [])
        XCTAssertNil(c.tlsSettings)
        XCTAssertNil(c.tlsDomain)
        XCTAssertFalse(c.requireTlsReceipt)
        XCTAssertFalse(c.allAcceptedDomains)
    }

    func test_explicitUseMXRecordTrueWithoutSmartHosts_isAccepted() throws {
        let c = try XCTUnwrap(connector("""
              - {name: Out, direction: outbound, type: partner, recipientDomains: [fabrikam.com], useMXRecord: true}
            """))
        XCTAssertTrue(c.useMXRecord)
    }

    func test_everyConnectorWideKey_isRead() throws {
        let c = try XCTUnwrap(connector("""
              - name: "  Fabrikam: the bank  "
                direction: inbound
                type: partner
                enabled: false
                comment: Ticket 4711
                mode: monitor
                senderDomains: [fabrikam.com, "*.fabrikam.net"]
                tlsSenderCertificateName: mail.fabrikam.com
                restrictDomainsToCertificate: true
                associatedAcceptedDomains: [contoso.com, mail.contoso.net, "*.eu.contoso.net"]
            """))
        XCTAssertEqual(c.name, "  Fabrikam: the bank  ")
        XCTAssertFalse(c.enabled)
        XCTAssertEqual(c.comment, "Ticket 4711")
        XCTAssertEqual(c.mode, .monitor)
        XCTAssertEqual(c.senderDomains, [.exact("fabrikam.com"), .wildcard("fabrikam.net")])
        XCTAssertEqual(c.tlsSenderCertificateName, .exact("mail.fabrikam.com"))
        XCTAssertTrue(c.restrictDomainsToCertificate)
        XCTAssertTrue(c.isRestricting)
        XCTAssertEqual(c.associatedAcceptedDomains, [.exact("contoso.com"), .exact("mail.contoso.net"), .wildcard("eu.contoso.net")])
    }

    func test_smartHostForms_parseToHostBracketsAndPort() throws {
        let c = try XCTUnwrap(connector("""
              - name: Out
                direction: outbound
                type: partner
                recipientDomains: [fabrikam.com]
                smartHosts:
                  - MX1.Fabrikam.com
                  - mx2.fabrikam.com:2525
                  - "[203.0.113.25]"
                  - "[203.0.113.26]:2525"
                  - "[2001:DB8::25]:2525"
                  - "[relay.fabrikam.com]"
                  - 203.0.113.27
                tlsSettings: certificateValidation
            """))
        XCTAssertEqual(c.smartHosts, [
            SmartHost(host: "mx1.fabrikam.com", isBracketed: true),
            SmartHost(host: "mx2.fabrikam.com", isBracketed: true, port: 2525),
            SmartHost(host: "203.0.113.25", isBracketed: true),
            SmartHost(host: "203.0.113.26", isBracketed: true, port: 2525),
            SmartHost(host: "2001:db8::25", isBracketed: true, port: 2525),
            SmartHost(host: "relay.fabrikam.com", isBracketed: true),
            // A bare address has no MX records: it is read as the bracketed literal.
            SmartHost(host: "203.0.113.27", isBracketed: true),
        ])
        // A smart host is never looked up by MX: a name is bracketed too.
        XCTAssertEqual(c.smartHosts.map(\.description), ["[mx1.fabrikam.com]", "[mx2.fabrikam.com]:2525", "[203.0.113.25]",
            "[203.0.113.26]:2525", "[2001:db8::25]:2525", "[relay.fabrikam.com]", "[203.0.113.27]"])
        XCTAssertEqual(c.tlsSettings, .certificateValidation)
    }

    func test_tlsDomainWildcard_isKeptAsWritten() throws {
        let c = try XCTUnwrap(connector("""
              - {name: Out, direction: outbound, type: partner, recipientDomains: [fabrikam.com],
                 tlsSettings: domainValidation, tlsDomain: "*.Fabrikam.com"}
            """))
        XCTAssertEqual(c.tlsDomain, "*.fabrikam.com")
    }

    func test_booleanSpellingsOfTheCoreSchema_areAccepted() throws {
        let policy = try XCTUnwrap(self.policy("""
            organization: {acceptedDomains: [contoso.com]}
            settings: {rejectDirectSend: True, stampHeaders: FALSE}
            """))
        XCTAssertTrue(policy.settings.rejectDirectSend)
        XCTAssertFalse(policy.settings.stampHeaders)
    }

    func test_documentMarkersAndCRLFLineEnds_areFine() throws {
        let policy = try XCTUnwrap(self.policy("---\r\norganization:\r\n  acceptedDomains: [contoso.com]\r\n...\r\n"))
        XCTAssertEqual(policy.acceptedDomains, [.exact("contoso.com")])
    }

    func test_ampersandsAndStarsInsideText_areNotMistakenForAliases() throws {
        let c = try XCTUnwrap(connector("""
              - name: R&D relay
                direction: inbound
                type: partner
                comment: "Tom &Jerry, *important*"  # &anchor and *alias in a comment are fine
                senderDomains: ['*', "*.fabrikam.com"]
            """))
        XCTAssertEqual(c.name, "R&D relay")
        XCTAssertEqual(c.comment, "Tom &Jerry, *important*")
    }

    func test_exampleFile_isValid() throws {
        let path = Self.examplesDirectory.appendingPathComponent("connectors.yaml").path
        switch PolicyParser.load(path: path) {
        case .failure(let problems): XCTFail("examples/connectors.yaml:\n\(problems)")
        case .success(let policy):
            XCTAssertEqual(policy.connectors.count, 5)
            XCTAssertEqual(policy.connectors.filter { !$0.enabled }.count, 1)
        }
    }

    func test_brokenExampleFile_reportsEveryErrorInFileOrder() throws {
        let path = Self.examplesDirectory.appendingPathComponent("broken.yaml").path
        guard case .failure(let problems) = PolicyParser.load(path: path) else { return XCTFail("broken.yaml parsed") }
        XCTAssertTrue(problems.errors.allSatisfy { $0.file == path })
        XCTAssertEqual(problems.errors.map { "\($0.line):\($0.column)" }, [
            "4:34", "7:9", "8:21", "14:25", "15:5", "17:11", "21:5", "27:18", "28:5", "29:5", "30:5", "32:5", "32:5",
        ])
    }

    // MARK: The error format

    func test_errorDescription_isFileLineColumnMessage() {
        let error = PolicyError(file: "/etc/connector-milter/connectors.yaml", line: 3, column: 7, message: "boom")
        XCTAssertEqual(error.description, "/etc/connector-milter/connectors.yaml:3:7: boom")
        let all = PolicyErrors([PolicyError(file: "f", line: 9, column: 1, message: "b"),
                                PolicyError(file: "f", line: 2, column: 5, message: "a"),
                                PolicyError(file: "f", line: 2, column: 3, message: "c")])
        XCTAssertEqual(all.description, "f:2:3: c\nf:2:5: a\nf:9:1: b")
    }

    func test_allErrors_areReportedTogetherSortedByPosition() {
        XCTAssertEqual(errors("""
            settings:
              mode: loud
              stampHeaders: on
            organization:
              acceptedDomains: [contoso..com]
            """), [
            #"2:9: mode must be one of: enforce, monitor (found "loud")"#,
            #"3:17: stampHeaders must be true or false, not "on" (YAML 1.2 reads yes, no, on and off as text)"#,
            #"5:21: acceptedDomains: "contoso..com": domain name has an empty label (two dots in a row, or a leading dot)"#,
        ])
    }

    // MARK: Top level, organization, settings

    func test_topLevelAndOrganizationErrors() {
        check([
            Case(rule: "organization is required, reported at the top mapping",
                 yaml: "settings:\n  mode: enforce\n",
                 expected: ["1:1: organization is missing; it lists the organization's acceptedDomains"]),
            Case(rule: "acceptedDomains is required, reported at the organization mapping",
                 yaml: "organization:\n  acceptedDomain: [contoso.com]\n",
                 expected: [#"2:3: unknown key "acceptedDomain" in organization; did you mean "acceptedDomains"?"#,
                            "2:3: organization has no acceptedDomains; list the organization's own domains, like [contoso.com]"]),
            Case(rule: "acceptedDomains must not be empty",
                 yaml: "organization:\n  acceptedDomains: []\n",
                 expected: ["2:20: acceptedDomains must list at least one domain"]),
            Case(rule: "a star in acceptedDomains would be an open relay",
                 yaml: "organization:\n  acceptedDomains:\n    - contoso.com\n    - '*'\n",
                 expected: [#"4:7: acceptedDomains must not contain "*": accepting every domain would make the milter an open relay"#]),
            Case(rule: "acceptedDomains must be a list",
                 yaml: "organization:\n  acceptedDomains: contoso.com\n",
                 expected: [#"2:20: acceptedDomains must be a list of strings, like [fabrikam.com, "*.fabrikam.com"]"#]),
            Case(rule: "the file must be a mapping",
                 yaml: "- organization\n",
                 expected: ["1:1: the policy file must be a mapping with the keys organization, settings and connectors"]),
            Case(rule: "unknown top-level key with a near-miss suggestion",
                 yaml: "organization: {acceptedDomains: [contoso.com]}\nconectors: []\n",
                 expected: [#"2:1: unknown key "conectors" at the top level; did you mean "connectors"?"#]),
            Case(rule: "unknown top-level key without a suggestion lists the known keys",
                 yaml: "organization: {acceptedDomains: [contoso.com]}\nrouting: {}\n",
                 expected: [#"2:1: unknown key "routing" at the top level (known keys: organization, settings, connectors)"#]),
            Case(rule: "a settings key at the top level says where it belongs",
                 yaml: "organization: {acceptedDomains: [contoso.com]}\nmode: monitor\n",
                 expected: [#"2:1: "mode" belongs under settings:"#]),
            Case(rule: "keys are case-sensitive",
                 yaml: "Organization: {acceptedDomains: [contoso.com]}\n",
                 expected: [#"1:1: unknown key "Organization" at the top level; did you mean "organization"?"#,
                            "1:1: organization is missing; it lists the organization's acceptedDomains"]),
            Case(rule: "connectors must be a list",
                 yaml: "organization: {acceptedDomains: [contoso.com]}\nconnectors:\n  name: x\n",
                 expected: [#"3:3: connectors must be a list; start each connector with "- name: ...""#]),
        ])
    }

    func test_settingsErrors() {
        let org = "organization: {acceptedDomains: [contoso.com]}\n"
        check([
            Case(rule: "mode lists its allowed values and suggests the right case",
                 yaml: org + "settings:\n  mode: Monitor\n",
                 expected: [#"3:9: mode must be one of: enforce, monitor (found "Monitor"; did you mean "monitor"?)"#]),
            Case(rule: "tlsFailure lists its allowed values",
                 yaml: org + "settings:\n  tlsFailure: 4xx\n",
                 expected: [#"3:15: tlsFailure must be one of: temporary, permanent (found "4xx")"#]),
            Case(rule: "yes is not a boolean in YAML 1.2",
                 yaml: org + "settings:\n  rejectDirectSend: yes\n",
                 expected: [#"3:21: rejectDirectSend must be true or false, not "yes" (YAML 1.2 reads yes, no, on and off as text)"#]),
            Case(rule: "a quoted boolean is a string",
                 yaml: org + "settings:\n  stampHeaders: \"true\"\n",
                 expected: ["3:17: stampHeaders must be true or false without quotes"]),
            Case(rule: "a number is not a boolean",
                 yaml: org + "settings:\n  stampHeaders: 1\n",
                 expected: [#"3:17: stampHeaders must be true or false, not "1""#]),
            Case(rule: "a key without a value",
                 yaml: org + "settings:\n  mode:\n",
                 expected: ["3:8: mode has no value; it must be one of: enforce, monitor"]),
            Case(rule: "a list where a word belongs",
                 yaml: org + "settings:\n  mode: [enforce]\n",
                 expected: ["3:9: mode must be one of: enforce, monitor, not a list"]),
            Case(rule: "unknown settings key with a suggestion",
                 yaml: org + "settings:\n  stampHeader: true\n",
                 expected: [#"3:3: unknown key "stampHeader" in settings; did you mean "stampHeaders"?"#]),
            Case(rule: "settings must be a mapping",
                 yaml: org + "settings: enforce\n",
                 expected: ["2:11: settings must be a mapping of keys like mode and tlsFailure"]),
        ])
    }

    // MARK: Connectors: keys every connector takes

    func test_connectorIdentityErrors() {
        let h = Self.header
        check([
            Case(rule: "name, direction and type are required, reported at the connector mapping",
                 yaml: h + "  - comment: nothing else\n",
                 expected: ["4:5: this connector has no name; every connector needs a unique name",
                            "4:5: this connector has no direction (inbound or outbound)",
                            "4:5: this connector has no type (onPremises or partner)"]),
            Case(rule: "a missing direction names the connector",
                 yaml: h + "  - name: A\n    type: partner\n",
                 expected: [#"4:5: connector "A" has no direction (inbound or outbound)"#]),
            Case(rule: "direction lists its allowed values",
                 yaml: h + "  - {name: A, direction: in, type: partner, senderDomains: [x.com]}\n",
                 expected: [#"4:26: direction must be one of: inbound, outbound (found "in")"#]),
            Case(rule: "type lists its allowed values and suggests the spelling",
                 yaml: h + "  - {name: A, direction: inbound, type: onpremises, senderIPAddresses: [192.0.2.1]}\n",
                 expected: [#"4:41: type must be one of: onPremises, partner (found "onpremises"; did you mean "onPremises"?)"#]),
            Case(rule: "names are unique without regard to case, and the error says where the first one is",
                 yaml: h + """
                      - {name: Fabrikam, direction: inbound, type: partner, senderDomains: [fabrikam.com]}
                      - {name: FABRIKAM, direction: outbound, type: partner, recipientDomains: [fabrikam.com]}

                    """,
                 expected: [#"5:12: connector name "FABRIKAM" is already used at line 4, column 12 (names are compared without regard to case)"#]),
            Case(rule: "a name is at most 64 characters",
                 yaml: h + "  - {name: \(String(repeating: "x", count: 65)), direction: inbound, type: partner, senderDomains: [x.com]}\n",
                 expected: ["4:12: connector name is 65 characters long; at most 64 are allowed"]),
            Case(rule: "a name has no control characters",
                 yaml: h + "  - {name: \"a\\tb\", direction: inbound, type: partner, senderDomains: [x.com]}\n",
                 expected: ["4:12: connector name must not contain control characters (tabs, line breaks...)"]),
            Case(rule: "a name is not empty",
                 yaml: h + "  - {name: \"\", direction: inbound, type: partner, senderDomains: [x.com]}\n",
                 expected: ["4:12: connector name must not be blank"]),
            Case(rule: "enabled is a boolean",
                 yaml: h + "  - {name: A, direction: inbound, type: partner, senderDomains: [x.com], enabled: off}\n",
                 expected: [#"4:83: enabled must be true or false, not "off" (YAML 1.2 reads yes, no, on and off as text)"#]),
            Case(rule: "a connector's mode lists its allowed values",
                 yaml: h + "  - {name: A, direction: inbound, type: partner, senderDomains: [x.com], mode: test}\n",
                 expected: [#"4:80: mode must be one of: enforce, monitor (found "test")"#]),
            Case(rule: "a connector must be a mapping",
                 yaml: h + "  - Fabrikam\n",
                 expected: ["4:5: each connector must be a mapping of keys like name, direction and type"]),
            Case(rule: "an unknown key suggests the right spelling",
                 yaml: h + "  - {name: A, direction: inbound, type: partner, senderDomains: [x.com], requireTLS: true}\n",
                 expected: [#"4:74: unknown key "requireTLS" in connector "A"; did you mean "requireTls"?"#]),
            Case(rule: "an unknown key without a near miss lists the keys this kind of connector takes",
                 yaml: h + "  - {name: A, direction: outbound, type: partner, recipientDomains: [x.com], priority: 1}\n",
                 expected: [#"4:78: unknown key "priority" in connector "A" (known keys: name, direction, type, enabled, comment, mode, recipientDomains, smartHosts, useMXRecord, tlsSettings, tlsDomain, requireTlsReceipt, validationRecipients)"#]),
        ])
    }

    // MARK: Connectors: keys of the wrong direction or type

    func test_keysOfAnotherDirectionOrType_areErrorsAtTheKey() {
        let h = Self.header
        check([
            Case(rule: "restrictDomainsToIPAddresses is for inbound partner connectors",
                 yaml: h + """
                      - name: Out
                        direction: outbound
                        type: partner
                        recipientDomains: [fabrikam.com]
                        restrictDomainsToIPAddresses: true

                    """,
                 expected: [#"8:5: restrictDomainsToIPAddresses is for inbound partner connectors; connector "Out" is an outbound partner connector"#]),
            Case(rule: "senderDomains is for inbound partner connectors, not onPremises ones",
                 yaml: h + """
                      - name: Servers
                        direction: inbound
                        type: onPremises
                        senderIPAddresses: [192.0.2.0/24]
                        senderDomains: [contoso.com]

                    """,
                 expected: [#"8:5: senderDomains is for inbound partner connectors; connector "Servers" is an inbound onPremises connector"#]),
            Case(rule: "smartHosts is for outbound connectors",
                 yaml: h + "  - {name: In, direction: inbound, type: partner, senderDomains: [x.com], smartHosts: [a.x.com]}\n",
                 expected: [#"4:75: smartHosts is for outbound connectors; connector "In" is an inbound partner connector"#]),
            Case(rule: "allAcceptedDomains is for outbound onPremises connectors",
                 yaml: h + "  - {name: Out, direction: outbound, type: partner, recipientDomains: [x.com], allAcceptedDomains: true}\n",
                 expected: [#"4:80: allAcceptedDomains is for outbound onPremises connectors; connector "Out" is an outbound partner connector"#]),
            Case(rule: "requireTls is for inbound connectors",
                 yaml: h + "  - {name: Out, direction: outbound, type: partner, recipientDomains: [x.com], requireTls: true}\n",
                 expected: [#"4:80: requireTls is for inbound connectors; connector "Out" is an outbound partner connector"#]),
        ])
    }

    // MARK: Connectors: inbound

    func test_inboundConnectorErrors() {
        let h = Self.header
        check([
            Case(rule: "an inbound onPremises connector needs addresses or a certificate name",
                 yaml: h + "  - {name: Servers, direction: inbound, type: onPremises, requireTls: true}\n",
                 expected: [#"4:5: connector "Servers" needs senderIPAddresses or tlsSenderCertificateName; without them it can never match"#]),
            Case(rule: "an empty address list counts as none",
                 yaml: h + "  - {name: Servers, direction: inbound, type: onPremises, senderIPAddresses: []}\n",
                 expected: [#"4:5: connector "Servers" needs senderIPAddresses or tlsSenderCertificateName; without them it can never match"#]),
            Case(rule: "an inbound partner connector needs senderDomains",
                 yaml: h + "  - {name: Bank, direction: inbound, type: partner, senderIPAddresses: [203.0.113.0/24]}\n",
                 expected: [#"4:5: connector "Bank" has no senderDomains; list the MAIL FROM domains this partner sends from ("*" = any)"#]),
            Case(rule: "senderDomains must not be empty",
                 yaml: h + "  - {name: Bank, direction: inbound, type: partner, senderDomains: []}\n",
                 expected: [#"4:68: senderDomains must list at least one domain ("*" = any)"#]),
            Case(rule: "a bad address is an error at that list item",
                 yaml: h + """
                      - name: Servers
                        direction: inbound
                        type: onPremises
                        senderIPAddresses:
                          - 192.0.2.0/24
                          - 192.0.2.300
                          - 198.51.100.7/24
                          - 2001:db8::/129

                    """,
                 expected: [#"9:9: senderIPAddresses: "192.0.2.300" is not an IPv4 or IPv6 address"#,
                            #"10:9: senderIPAddresses: "198.51.100.7/24" has bits set beyond its prefix length; did you mean 198.51.100.0/24?"#,
                            #"11:9: senderIPAddresses: prefix length "129" must be a number from 0 to 128"#]),
            Case(rule: "a certificate name is a domain, not a star",
                 yaml: h + "  - {name: Servers, direction: inbound, type: onPremises, tlsSenderCertificateName: '*'}\n",
                 expected: [#"4:85: tlsSenderCertificateName must name a domain, like "mail.contoso.com" or "*.contoso.com", not "*""#]),
            Case(rule: "a bad certificate name says what is wrong with it",
                 yaml: h + "  - {name: Servers, direction: inbound, type: onPremises, tlsSenderCertificateName: 'mail contoso.com'}\n",
                 expected: [#"4:85: tlsSenderCertificateName: "mail contoso.com": character " " is not allowed in a domain name (letters, digits, '-' and '_'; write internationalized names as xn-- punycode)"#]),
            Case(rule: "restrictDomainsToIPAddresses needs senderIPAddresses",
                 yaml: h + "  - {name: Bank, direction: inbound, type: partner, senderDomains: [x.com], restrictDomainsToIPAddresses: true}\n",
                 expected: ["4:77: restrictDomainsToIPAddresses: true needs senderIPAddresses, the addresses to restrict to"]),
            Case(rule: "restrictDomainsToCertificate needs tlsSenderCertificateName",
                 yaml: h + "  - {name: Bank, direction: inbound, type: partner, senderDomains: [x.com], restrictDomainsToCertificate: true}\n",
                 expected: ["4:77: restrictDomainsToCertificate: true needs tlsSenderCertificateName, the certificate name to restrict to"]),
            Case(rule: "restrict...: false needs nothing",
                 yaml: h + "  - {name: Bank, direction: inbound, type: partner, senderDomains: [x.com], restrictDomainsToCertificate: false}\n",
                 expected: []),
            Case(rule: "associatedAcceptedDomains must be covered by the accepted domains",
                 yaml: h + "  - {name: Bank, direction: inbound, type: partner, senderDomains: [x.com], associatedAcceptedDomains: [contoso.com, fabrikam.com, \"*.com\"]}\n",
                 expected: [#"4:118: associatedAcceptedDomains: "fabrikam.com" is not one of the accepted domains (contoso.com, *.contoso.net)"#,
                            #"4:132: associatedAcceptedDomains: "*.com" is not one of the accepted domains (contoso.com, *.contoso.net)"#]),
            Case(rule: "associatedAcceptedDomains cannot be a star",
                 yaml: h + "  - {name: Bank, direction: inbound, type: partner, senderDomains: [x.com], associatedAcceptedDomains: ['*']}\n",
                 expected: [#"4:105: associatedAcceptedDomains must not contain "*"; list accepted domains"#]),
            Case(rule: "a list of strings, not a single string",
                 yaml: h + "  - {name: Bank, direction: inbound, type: partner, senderDomains: fabrikam.com}\n",
                 expected: [#"4:68: senderDomains must be a list of strings, like [fabrikam.com, "*.fabrikam.com"]"#]),
            Case(rule: "a nested list inside a list is an error at that item",
                 yaml: h + "  - {name: Bank, direction: inbound, type: partner, senderDomains: [a.com, [b.com]]}\n",
                 expected: ["4:76: senderDomains must be a list of strings; this entry is a nested list or mapping"]),
            Case(rule: "an empty list item",
                 yaml: h + "  - name: Bank\n    direction: inbound\n    type: partner\n    senderDomains:\n      - a.com\n      -\n",
                 expected: ["9:8: senderDomains has an empty entry"]),
        ])
    }

    // MARK: Connectors: outbound

    func test_smartHostsWithUseMXRecordTrue_isAnErrorAtTheKey() {
        XCTAssertEqual(errors(Self.header + """
              - name: To Fabrikam
                direction: outbound
                type: partner
                recipientDomains: [fabrikam.com]
                smartHosts: [mx1.fabrikam.com]
                useMXRecord: true

            """), ["9:5: useMXRecord: true contradicts smartHosts; a connector delivers either by MX or to its smart hosts (remove one of them)"])
    }

    func test_outboundConnectorErrors() {
        let h = Self.header
        check([
            Case(rule: "useMXRecord: false without smartHosts leaves nowhere to deliver",
                 yaml: h + "  - {name: Out, direction: outbound, type: partner, recipientDomains: [x.com], useMXRecord: false}\n",
                 expected: ["4:80: useMXRecord: false needs smartHosts to deliver to"]),
            Case(rule: "an outbound partner connector needs recipientDomains",
                 yaml: h + "  - {name: Out, direction: outbound, type: partner}\n",
                 expected: [#"4:5: connector "Out" has no recipientDomains; list the domains it delivers to"#]),
            Case(rule: "an outbound onPremises connector needs recipientDomains or allAcceptedDomains, and smartHosts",
                 yaml: h + "  - {name: Out, direction: outbound, type: onPremises, allAcceptedDomains: false}\n",
                 expected: [#"4:5: connector "Out" needs smartHosts: mail for the organization's own servers goes to them, not to MX"#,
                            #"4:5: connector "Out" needs recipientDomains or allAcceptedDomains: true"#]),
            Case(rule: "tlsDomain only with domainValidation",
                 yaml: h + "  - {name: Out, direction: outbound, type: partner, recipientDomains: [x.com], tlsSettings: encryptionOnly, tlsDomain: mx.x.com}\n",
                 expected: ["4:109: tlsDomain needs tlsSettings: domainValidation"]),
            Case(rule: "tlsDomain without any tlsSettings",
                 yaml: h + "  - {name: Out, direction: outbound, type: partner, recipientDomains: [x.com], tlsDomain: mx.x.com}\n",
                 expected: ["4:80: tlsDomain needs tlsSettings: domainValidation"]),
            Case(rule: "domainValidation requires tlsDomain",
                 yaml: h + "  - {name: Out, direction: outbound, type: partner, recipientDomains: [x.com], tlsSettings: domainValidation}\n",
                 expected: ["4:93: tlsSettings: domainValidation needs tlsDomain, the name the receiving server's certificate must carry"]),
            Case(rule: "tlsSettings lists its allowed values",
                 yaml: h + "  - {name: Out, direction: outbound, type: partner, recipientDomains: [x.com], tlsSettings: verify}\n",
                 expected: [#"4:93: tlsSettings must be one of: encryptionOnly, certificateValidation, domainValidation (found "verify")"#]),
            Case(rule: "a bad recipient domain is an error at that item",
                 yaml: h + "  - {name: Out, direction: outbound, type: partner, recipientDomains: [x.com, -bad-.com]}\n",
                 expected: [#"4:79: recipientDomains: "-bad-.com": label "-bad-" starts or ends with '-'"#]),
        ])
    }

    func test_badSmartHosts_areErrorsAtTheirItem() {
        let yaml = Self.header + """
              - name: Out
                direction: outbound
                type: partner
                recipientDomains: [fabrikam.com]
                smartHosts:
                  - mx1.fabrikam.com:0
                  - mx1.fabrikam.com:70000
                  - mx1.fabrikam.com:smtp
                  - 2001:db8::25
                  - "[2001:db8::25"
                  - "[203.0.113.25]2525"
                  - "[not an address]"
                  - mx_1..fabrikam.com

            """
        XCTAssertEqual(errors(yaml), [
            #"9:9: smartHosts: "mx1.fabrikam.com:0": port must be a number from 1 to 65535"#,
            #"10:9: smartHosts: "mx1.fabrikam.com:70000": port must be a number from 1 to 65535"#,
            #"11:9: smartHosts: "mx1.fabrikam.com:smtp": port must be a number from 1 to 65535"#,
            #"12:9: smartHosts: "2001:db8::25": write an IPv6 address in brackets, like "[2001:db8::25]:25""#,
            #"13:9: smartHosts: "[2001:db8::25": "[" without a closing "]""#,
            #"14:9: smartHosts: "[203.0.113.25]2525": only ":PORT" may follow "]""#,
            #"15:9: smartHosts: "[not an address]": not an IP address or a domain name (character " " is not allowed in a domain name (letters, digits, '-' and '_'; write internationalized names as xn-- punycode))"#,
            #"16:9: smartHosts: "mx_1..fabrikam.com": domain name has an empty label (two dots in a row, or a leading dot)"#,
        ])
    }

    // MARK: YAML syntax

    func test_yamlSyntaxErrors() {
        check([
            Case(rule: "an empty file", yaml: "", expected: ["1:1: empty policy file"]),
            Case(rule: "a file of comments only", yaml: "# nothing yet\n\n", expected: ["1:1: empty policy file"]),
            Case(rule: "a tab used for indentation",
                 yaml: "organization:\n\tacceptedDomains: [contoso.com]\n",
                 expected: ["2:1: a tab cannot indent YAML; indent with spaces"]),
            Case(rule: "a second document",
                 yaml: "organization: {acceptedDomains: [contoso.com]}\n---\nconnectors: []\n",
                 expected: [#"2:1: a second YAML document ("---"); a policy file is a single document"#]),
            Case(rule: "a duplicate key is reported at the second one, naming the first",
                 yaml: "organization:\n  acceptedDomains: [contoso.com]\nsettings:\n  mode: enforce\n  # later\n  mode: monitor\n",
                 expected: [#"6:3: key "mode" appears twice in the same mapping; the first is at line 4, column 3"#]),
            Case(rule: "a duplicate key inside a connector",
                 yaml: Self.header + "  - name: A\n    direction: inbound\n    name: B\n",
                 expected: [#"6:5: key "name" appears twice in the same mapping; the first is at line 4, column 5"#]),
            Case(rule: "a duplicate key in a flow mapping is reported at the first",
                 yaml: "organization: {acceptedDomains: [a.com], acceptedDomains: [b.com]}\n",
                 expected: [#"1:16: key "acceptedDomains" appears more than once in this mapping"#]),
            Case(rule: "an unquoted star domain is read as an alias by YAML",
                 yaml: "organization:\n  acceptedDomains: [contoso.com, *.contoso.net]\n",
                 expected: [#"2:34: "*.contoso.net" must be in quotes: YAML reads a value that starts with "*" as an alias (write "*.contoso.net")"#]),
            Case(rule: "an unquoted lone star too",
                 yaml: Self.header + "  - {name: A, direction: inbound, type: partner, senderDomains: [*]}\n",
                 expected: [#"4:66: "*" must be in quotes: YAML reads a value that starts with "*" as an alias (write "*")"#]),
            Case(rule: "an unterminated quote",
                 yaml: "organization:\n  acceptedDomains: [\"contoso.com]\n",
                 expected: ["3:1: YAML syntax error: found unexpected end of stream (while scanning a quoted scalar that starts at line 2, column 21)"]),
            Case(rule: "a colon and space inside an unquoted value",
                 yaml: "organization: {acceptedDomains: [contoso.com]}\nconnectors:\n  - name: Bank: Fabrikam\n",
                 expected: [#"3:15: YAML syntax error: mapping values are not allowed in this context (a value that contains ": " must be in quotes)"#]),
            Case(rule: "bad indentation",
                 yaml: "organization:\n  acceptedDomains: [contoso.com]\n settings: {}\n",
                 expected: ["3:2: YAML syntax error: did not find expected key (while parsing a block mapping that starts at line 1, column 1)"]),
            Case(rule: "a key that is a list",
                 yaml: "organization: {acceptedDomains: [contoso.com]}\n? [a, b]\n: c\n",
                 expected: ["2:3: a key must be a plain word such as name or direction"]),
        ])
    }

    // MARK: Hostile input

    func test_anchorsAndAliases_areRefused() {
        XCTAssertEqual(errors("""
            organization:
              acceptedDomains: &ours [contoso.com]
            connectors:
              - {name: A, direction: inbound, type: partner, senderDomains: *ours}
            """), [
            #"2:20: "&ours" is a YAML anchor; anchors and aliases are not allowed in a policy file (write each value out; if this is text, put the value in quotes)"#,
            #"4:65: "*ours" is a YAML alias; anchors and aliases are not allowed in a policy file (write each value out; if this is text, put the value in quotes)"#,
        ])
    }

    func test_anAliasThePrescanMisses_isStillRefused() {
        // The quote after "x " hides the rest of the line from the prescan; YAML reads it as text.
        XCTAssertEqual(errors("""
            organization: {acceptedDomains: [contoso.com]}
            connectors: [x 'y, &c {name: A, direction: inbound, type: partner, senderDomains: [a.com]}, *c]
            """), [
            "2:14: each connector must be a mapping of keys like name, direction and type",
            // At the anchored value: YAML hands back the same node for the alias, with its position.
            "2:20: this value is repeated through a YAML alias; anchors and aliases are not allowed in a policy file",
        ])
    }

    func test_billionLaughs_isRefusedQuickly() {
        // Nine levels of nine aliases: a billion strings, used as a mapping key as well, which
        // is what would make the YAML library hash the whole expansion.
        var yaml = "a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
        for i in 1...9 {
            yaml += "a\(i): &a\(i) [" + Array(repeating: "*a\(i - 1)", count: 9).joined(separator: ", ") + "]\n"
        }
        yaml += "? *a9\n: boom\n"
        let start = Date()
        let found = errors(yaml)
        XCTAssertLessThan(Date().timeIntervalSince(start), 2)
        XCTAssertEqual(found.count, 10 + 9 * 9 + 1)  // ten anchors, 82 aliases
        XCTAssertEqual(found.first, #"1:5: "&a0" is a YAML anchor; anchors and aliases are not allowed in a policy file (write each value out; if this is text, put the value in quotes)"#)
    }

    func test_deepNesting_isAnErrorNotACrash() {
        let deep = String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000)
        XCTAssertEqual(errors("organization: " + deep + "\n"),
                       ["1:16: lists and mappings nested too deeply (libyaml allows 1000 levels)"])
        let nested999 = String(repeating: "[", count: 999) + String(repeating: "]", count: 999)
        XCTAssertEqual(errors("organization:\n  acceptedDomains: " + nested999 + "\n"),
                       ["2:21: acceptedDomains must be a list of strings; this entry is a nested list or mapping"])
        let blocks = (0..<1000).map { String(repeating: " ", count: $0) + "k:" }.joined(separator: "\n")
        XCTAssertEqual(errors(blocks).count, 1)
    }

    func test_deepNesting_isSafeOnASmallThreadStack() {
        // The daemon may reload on a secondary thread (512 KiB of stack on Linux).
        let nested999 = String(repeating: "[", count: 999) + String(repeating: "]", count: 999)
        final class Found: @unchecked Sendable { var errors: [PolicyError] = [] }
        let found = Found()
        let done = DispatchSemaphore(value: 0)
        let thread = Thread {
            if case .failure(let problems) = PolicyParser.parse("organization: " + nested999, file: "t") {
                found.errors = problems.errors
            }
            done.signal()
        }
        thread.stackSize = 512 << 10
        thread.start()
        done.wait()
        XCTAssertEqual(found.errors.map(\.message), ["organization must be a mapping with the key acceptedDomains"])
    }

    func test_nulByte_isAnErrorAtItsPosition() {
        XCTAssertEqual(errors("organization:\n  acceptedDomains: [conto\u{0}so.com]\n"),
                       ["2:26: the file contains a control character (U+0000) that YAML does not allow; remove it"])
    }

    func test_invalidUTF8_isAnErrorAtTheFirstBadByte() throws {
        let path = try temporaryFile(Array("organization:\n  acceptedDomains: [caf".utf8) + [0xE9] + Array(".com]\n".utf8))
        guard case .failure(let problems) = PolicyParser.load(path: path) else { return XCTFail("parsed") }
        XCTAssertEqual(problems.errors, [PolicyError(file: path, line: 2, column: 24,
                                                     message: "the file is not valid UTF-8 (byte 0xE9); save it as UTF-8")])
    }

    func test_load_readsAFile() throws {
        let path = try temporaryFile(Array("organization:\n  acceptedDomains: [contoso.com]\n".utf8))
        XCTAssertEqual(try PolicyParser.load(path: path).get().acceptedDomains, [.exact("contoso.com")])
    }

    func test_missingFile_isAnErrorAtLineOneWithTheSystemReason() {
        let path = "/nonexistent/connectors.yaml"
        guard case .failure(let problems) = PolicyParser.load(path: path) else { return XCTFail("parsed") }
        XCTAssertEqual(problems.description, "/nonexistent/connectors.yaml:1:1: cannot open the policy file: No such file or directory")
    }

    func test_directory_isAnErrorAtLineOne() {
        guard case .failure(let problems) = PolicyParser.load(path: "/tmp") else { return XCTFail("parsed") }
        XCTAssertEqual(problems.description, "/tmp:1:1: cannot read the policy file: Is a directory")
    }

    func test_fileLargerThan64MiB_isRefusedBeforeParsing() throws {
        let huge = String(repeating: "#", count: PolicyParser.maximumFileSize + 1)
        XCTAssertEqual(errors(huge), ["1:1: the policy file is larger than 64 MiB"])
    }

    func test_endlessDevice_isCutOffAt64MiB() {
        guard case .failure(let problems) = PolicyParser.load(path: "/dev/zero") else { return XCTFail("parsed") }
        XCTAssertEqual(problems.description, "/dev/zero:1:1: the policy file is larger than 64 MiB")
    }

    func test_editDistance_findsNearMisses() {
        // Exercised through the messages above; here the edges of "near".
        XCTAssertEqual(errors("organization: {acceptedDomains: [contoso.com]}\nsettings: {mdoe: enforce, tlsFailurr: temporary, stamp: true}\n"), [
            #"2:12: unknown key "mdoe" in settings; did you mean "mode"?"#,
            #"2:27: unknown key "tlsFailurr" in settings; did you mean "tlsFailure"?"#,
            #"2:50: unknown key "stamp" in settings (known keys: mode, tlsFailure, rejectDirectSend, stampHeaders)"#,
        ])
    }
}
