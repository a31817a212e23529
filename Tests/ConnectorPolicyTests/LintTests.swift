import XCTest
@testable import ConnectorPolicy
@testable import ConnectorReview

/// `check --lint`: each rule on a policy that trips it, with the exact position, and a policy
/// that trips none.
final class LintTests: XCTestCase {
    /// Five lines in front of every connector list below, so the first connector starts at line 6
    /// (a connector's position is that of its first key).
    static let header = """
        organization:
          acceptedDomains: [contoso.com, "*.contoso.net"]
        settings:
          mode: enforce
        connectors:

        """

    /// The warnings as `LINE:COLUMN: warning: message`.
    func warnings(_ connectors: String, header: String = header, file: StaticString = #filePath, line: UInt = #line) -> [String] {
        let yaml = header + connectors
        switch PolicyParser.parse(yaml, file: "p.yaml") {
        case .failure(let errors):
            XCTFail("invalid policy:\n\(errors)", file: file, line: line)
            return []
        case .success(let policy):
            return PolicyLint.warnings(for: policy, yaml: yaml, file: "p.yaml").map {
                XCTAssertTrue($0.description.hasPrefix("p.yaml:\($0.line):\($0.column): warning: "), file: file, line: line)
                return "\($0.line):\($0.column): \($0.message)"
            }
        }
    }

    static let onPremises = """
          - name: Contoso on-premises
            direction: inbound
            type: onPremises
            senderIPAddresses: [192.0.2.0/24]
            tlsSenderCertificateName: "*.contoso.com"
            requireTls: true
          - name: To on-premises
            direction: outbound
            type: onPremises
            allAcceptedDomains: true
            smartHosts: ["[192.0.2.25]"]

        """

    func test_theSpecExamplePolicyHasNoWarnings() {
        XCTAssertEqual(warnings(Self.onPremises + """
              - name: Fabrikam Bank
                direction: inbound
                type: partner
                senderDomains: [fabrikam.com]
                senderIPAddresses: [203.0.113.0/24]
                restrictDomainsToIPAddresses: true
              - name: To Fabrikam Bank
                direction: outbound
                type: partner
                recipientDomains: [fabrikam.com]
                tlsSettings: domainValidation
                tlsDomain: mx.fabrikam.com
            """), [])
    }

    func test_twoOutboundConnectorsForTheSameDomainLeaveTheSecondUnused() {
        XCTAssertEqual(warnings("""
              - name: To Fabrikam
                direction: outbound
                type: partner
                recipientDomains: [fabrikam.com, "*.fabrikam.net"]
              - name: To Fabrikam again
                direction: outbound
                type: partner
                recipientDomains: ["*.fabrikam.net", fabrikam.com]
            """), [
            "10:5: connector \"To Fabrikam again\" can never be chosen: every recipient domain it lists goes to an earlier connector",
            "13:24: recipientDomains \"*.fabrikam.net\" is also listed by \"To Fabrikam\" (line 6), which comes first and wins: "
                + "connector \"To Fabrikam again\" never delivers mail for it",
            "13:42: recipientDomains \"fabrikam.com\" is also listed by \"To Fabrikam\" (line 6), which comes first and wins: "
                + "connector \"To Fabrikam again\" never delivers mail for it",
        ])
    }

    func test_aSecondAllAcceptedDomainsConnectorIsNeverUsed() {
        XCTAssertEqual(warnings(Self.onPremises + """
              - name: To on-premises 2
                direction: outbound
                type: onPremises
                allAcceptedDomains: true
                smartHosts: ["[192.0.2.26]"]
            """), [
            "17:5: connector \"To on-premises 2\" can never be chosen: every recipient domain it lists goes to an earlier connector",
            "20:5: only the first outbound connector with allAcceptedDomains, \"To on-premises\" (line 12), is used: "
                + "connector \"To on-premises 2\" never receives mail for the accepted domains through it",
        ])
    }

    func test_anOnPremisesConnectorWithTheSamePrefixesAsAnEarlierOneNeverMatches() {
        XCTAssertEqual(warnings(Self.onPremises + """
              - name: Branch
                direction: inbound
                type: onPremises
                senderIPAddresses: [192.0.2.0/24]
            """), [
            "17:5: connector \"Branch\" can never match: every address and certificate name it lists belongs to an earlier onPremises connector",
            "20:25: senderIPAddresses 192.0.2.0/24 is also listed by onPremises \"Contoso on-premises\" (line 6), which comes first "
                + "and wins: mail from there is never attributed to connector \"Branch\"",
        ])
    }

    func test_aMoreSpecificOnPremisesPrefixIsNotShadowed() {
        XCTAssertEqual(warnings(Self.onPremises + """
              - name: Branch
                direction: inbound
                type: onPremises
                senderIPAddresses: [192.0.2.128/25]
            """), [])
    }

    func test_aDomainOnlyPartnerBehindAnEarlierOneNeverMatches() {
        XCTAssertEqual(warnings("""
              - name: Any Fabrikam
                direction: inbound
                type: partner
                senderDomains: [fabrikam.com]
              - name: Fabrikam again
                direction: inbound
                type: partner
                senderDomains: [fabrikam.com]
            """), [
            "10:5: connector \"Fabrikam again\" can never match: every sender domain it lists belongs to an earlier partner "
                + "connector without addresses or certificate",
            "13:21: senderDomains \"fabrikam.com\" is also listed by partner \"Any Fabrikam\" (line 6), which comes first and "
                + "wins: mail from it is never attributed to connector \"Fabrikam again\"",
        ])
    }

    func test_partnerAddressesOrCertificateOverlappingOnPremisesAreWarnedAbout() {
        XCTAssertEqual(warnings(Self.onPremises + """
              - name: Fabrikam
                direction: inbound
                type: partner
                senderDomains: [fabrikam.com]
                senderIPAddresses: [203.0.113.0/24, 192.0.2.64/26]
                tlsSenderCertificateName: mx.contoso.com
            """), [
            "21:41: senderIPAddresses 192.0.2.64/26 of partner connector \"Fabrikam\" overlaps 192.0.2.0/24 of onPremises "
                + "\"Contoso on-premises\" (line 6): mail from the shared addresses to or from an accepted domain is attributed "
                + "to the onPremises connector (originating) before partner connectors are looked at",
            "22:5: tlsSenderCertificateName \"mx.contoso.com\" of partner connector \"Fabrikam\" overlaps \"*.contoso.com\" of "
                + "onPremises \"Contoso on-premises\" (line 6): a certificate matching both is attributed to the onPremises "
                + "connector, which may relay anywhere",
        ])
    }

    func test_aPartnerRestrictedByBothAddressesAndCertificateIsWarnedAbout() {
        XCTAssertEqual(warnings("""
              - name: Fabrikam
                direction: inbound
                type: partner
                senderDomains: [fabrikam.com]
                senderIPAddresses: [203.0.113.0/24]
                tlsSenderCertificateName: mx.fabrikam.com
                restrictDomainsToIPAddresses: true
                restrictDomainsToCertificate: true
            """), [
            "13:5: connector \"Fabrikam\" restricts by both addresses and certificate: mail from fabrikam.com is refused unless "
                + "it comes from senderIPAddresses and presents a verified certificate named \"mx.fabrikam.com\"; if one of them "
                + "is enough, drop the other",
        ])
    }

    func test_wildcardCertificateNamesBroaderThanAnAcceptedDomainAreWarnedAbout() {
        let header = """
            organization:
              acceptedDomains: [mail.example.com, contoso.com]
            connectors:

            """
        XCTAssertEqual(warnings("""
              - name: Everyone
                direction: inbound
                type: onPremises
                tlsSenderCertificateName: "*.com"
              - name: Neighbours
                direction: inbound
                type: onPremises
                tlsSenderCertificateName: "*.example.com"
              - name: Ours
                direction: inbound
                type: onPremises
                tlsSenderCertificateName: "*.contoso.com"
              - name: Partner TLD
                direction: inbound
                type: partner
                senderDomains: ["*"]
                tlsSenderCertificateName: "*.net"
            """, header: header), [
            "7:5: tlsSenderCertificateName \"*.com\" of connector \"Everyone\" matches a certificate for any name under the "
                + "top-level domain \"com\", which anyone can obtain; name your servers' domain, like \"*.contoso.com\"",
            "11:5: tlsSenderCertificateName \"*.example.com\" of onPremises connector \"Neighbours\" is broader than the accepted "
                + "domain \"mail.example.com\": it also matches certificates of other names under example.com, and such a client "
                + "may relay anywhere",
            "20:5: tlsSenderCertificateName \"*.net\" of connector \"Partner TLD\" matches a certificate for any name under the "
                + "top-level domain \"net\", which anyone can obtain; name your servers' domain, like \"*.contoso.net\"",
        ])
    }

    func test_anOutboundOnPremisesConnectorForAForeignDomainIsWarnedAbout() {
        XCTAssertEqual(warnings("""
              - name: To on-premises
                direction: outbound
                type: onPremises
                recipientDomains: [contoso.com, sub.contoso.net, fabrikam.com]
                smartHosts: ["[192.0.2.25]"]
            """), [
            "9:54: recipientDomains \"fabrikam.com\" of onPremises connector \"To on-premises\" is not an accepted domain: its "
                + "mail would go to the organization's own servers; use a partner connector, or add the domain to acceptedDomains",
        ])
    }

    func test_disabledConnectorsAndMonitorModeAreWarnedAbout() {
        XCTAssertEqual(warnings("""
              - name: Old partner
                direction: inbound
                type: partner
                senderDomains: [old.example]
                enabled: false
              - name: Trial
                direction: inbound
                type: partner
                senderDomains: [new.example]
                mode: monitor
            """), [
            "10:5: connector \"Old partner\" is disabled (enabled: false): it takes no part in attribution or delivery; remove "
                + "it when it is no longer needed",
            "15:5: connector \"Trial\" is in monitor mode: the refusals it demands are logged as would=, never enforced",
        ])
        let monitor = Self.header.replacingOccurrences(of: "mode: enforce", with: "mode: monitor")
        XCTAssertEqual(warnings("""
              - name: Trial
                direction: inbound
                type: partner
                senderDomains: [new.example]
                mode: monitor
            """, header: monitor), [
            "4:3: settings.mode is monitor: every decision is logged (verdict=accept would=...) but nothing is refused; "
                + "set mode: enforce once the verdict lines look right",
        ])
    }

    func test_disabledConnectorsDoNotShadowOthers() {
        XCTAssertEqual(warnings("""
              - name: Old
                direction: outbound
                type: partner
                recipientDomains: [fabrikam.com]
                enabled: false
              - name: New
                direction: outbound
                type: partner
                recipientDomains: [fabrikam.com]
            """).count, 1)
    }
}
