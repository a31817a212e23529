import Foundation
import XCTest
@testable import ConnectorPolicy
@testable import ConnectorReview

/// `report` and `simulate` on small logs whose answers can be counted by hand.
final class ReportTests: XCTestCase {
    static let utc = TimeZone(identifier: "UTC")!
    static let clock = LogClock(now: Date(timeIntervalSince1970: 1_796_083_200), timeZone: utc)  // 2026-12-01

    /// A verdict line as the daemon writes it, with a syslog header.
    static func line(_ time: String, _ queue: String, _ fields: String) -> String {
        "Nov 29 \(time) mx1 connector-milter[7]: \(queue): verdict=\(fields)"
    }

    static let onPremAccept = " direction=originating inbound=\"Contoso on-premises\" inbound_type=onPremises "
        + "client=relay.contoso.com[192.0.2.7] tls=TLSv1.3 cert=none from=<ceo@contoso.com> rcpt=<%@fabrikam.com> "
        + "outbound=\"To Fabrikam\" outbound_type=partner mode=enforce auth=none"

    static let log = [
        "Nov 29 00:59:59 mx1 postfix/smtpd[1]: connect from relay.contoso.com[192.0.2.7]",
        // One message, two recipients, over TLS.
        line("01:00:00", "Q1", "accept" + onPremAccept.replacingOccurrences(of: "%", with: "a")),
        line("01:00:00", "Q1", "accept" + onPremAccept.replacingOccurrences(of: "%", with: "b")),
        // A relay attempt with two recipients before the queue file: one transaction.
        line("02:00:00", "NOQUEUE", "reject reason=relay-denied direction=incoming inbound=none inbound_type=none "
            + "client=unknown[198.51.100.9] tls=none cert=none from=<spam@spam.example> rcpt=<x@other.example> "
            + "outbound=none outbound_type=none mode=enforce auth=none"),
        line("02:00:00", "NOQUEUE", "reject reason=relay-denied direction=incoming inbound=none inbound_type=none "
            + "client=unknown[198.51.100.9] tls=none cert=none from=<spam@spam.example> rcpt=<y@other.example> "
            + "outbound=none outbound_type=none mode=enforce auth=none"),
        // Monitor mode: accepted, would have been refused; a message with one recipient.
        line("03:00:00", "Q2", "accept would=reject reason=partner-restricted direction=incoming inbound=none "
            + "inbound_type=none client=mail.example[203.0.113.50] tls=TLSv1.2 cert=none from=<pay@fabrikam.com> "
            + "rcpt=<ap@contoso.com> outbound=none outbound_type=none mode=monitor auth=none"),
        // A message with one recipient accepted and one refused for TLS.
        line("04:00:00", "Q3", "accept direction=incoming inbound=none inbound_type=none client=unknown[198.51.100.10] "
            + "tls=none cert=none from=<> rcpt=<a@contoso.com> outbound=none outbound_type=none mode=enforce"),
        line("04:00:01", "Q3", "tempfail reason=tls-required direction=incoming inbound=none inbound_type=none "
            + "client=unknown[198.51.100.10] tls=none cert=none from=<> rcpt=<b@contoso.com> "
            + "outbound=\"Secure\" outbound_type=partner mode=enforce"),
        "Nov 29 05:00:00 mx1 connector-milter[7]: Q4: verdict=accept direction=",  // cut short
        "Nov 29 05:00:01 mx1 connector-milter[7]: policy reloaded",
    ]

    func build(_ filter: ReportFilter = ReportFilter(), lines: [String] = log) -> ReportSummary {
        var builder = ReportBuilder(filter: filter)
        var clock = Self.clock
        for (n, text) in lines.enumerated() {
            builder.add(VerdictLineReader.parse(line: text, clock: &clock), location: "test.log:\(n + 1)")
        }
        return builder.summary(top: 3, clock: Self.clock)
    }

    func group(_ s: ReportSummary, inbound name: String?) -> ReportSummary.Group? {
        s.inbound.first { $0.connector == name }
    }

    func test_countsLinesMessagesRecipientsAndMalformedLines() {
        let s = build()
        XCTAssertEqual(s.linesRead, 10)
        XCTAssertEqual(s.verdictLines, 7)
        XCTAssertEqual(s.malformedLines, 1)
        XCTAssertEqual(s.malformedExamples, ["test.log:9: direction=\"\" is not a known value"])
        XCTAssertEqual(s.first, "2026-11-29T01:00:00Z")
        XCTAssertEqual(s.last, "2026-11-29T04:00:01Z")
        // Messages: Q1, the NOQUEUE transaction, Q2, Q3.
        XCTAssertEqual(s.total.messages, 4)
        XCTAssertEqual(s.total.messagesByVerdict, ReportSummary.Counts(accept: 3, reject: 1, tempfail: 1))
        XCTAssertEqual(s.total.recipients, ReportSummary.Counts(accept: 4, reject: 2, tempfail: 1))
        XCTAssertEqual(s.total.would, ReportSummary.Would(reject: 1, tempfail: 0))
        XCTAssertEqual(s.total.reasons, ["relay-denied": 2, "partner-restricted": 1, "tls-required": 1])
    }

    func test_tlsIsCountedPerMessage() {
        let s = build()
        XCTAssertEqual(s.total.tls.messages, 2)
        XCTAssertEqual(s.total.tls.share, 0.5)
        XCTAssertEqual(s.total.tls.versions, ["TLSv1.3": 1, "TLSv1.2": 1])
        XCTAssertEqual(group(s, inbound: "Contoso on-premises")?.tls.share, 1)
    }

    func test_refusedClientsAndSenderDomainsAreRankedMonitorModeIncluded() {
        let s = build()
        XCTAssertEqual(s.total.topRefusedClients.map(\.value), ["198.51.100.9", "198.51.100.10", "203.0.113.50"])
        XCTAssertEqual(s.total.topRefusedClients.map(\.count), [2, 1, 1])
        XCTAssertEqual(s.total.topRefusedSenderDomains.map(\.value), ["spam.example", "<>", "fabrikam.com"])
    }

    func test_groupsByInboundAndOutboundConnector() {
        let s = build()
        XCTAssertEqual(s.inbound.map(\.connector), [nil, "Contoso on-premises"])
        XCTAssertEqual(group(s, inbound: "Contoso on-premises")?.recipients, ReportSummary.Counts(accept: 2, reject: 0, tempfail: 0))
        XCTAssertEqual(Set(s.outbound.map(\.connector)), [nil, "To Fabrikam", "Secure"])
        XCTAssertEqual(s.outbound.first { $0.connector == "Secure" }?.reasons, ["tls-required": 1])
    }

    func test_filtersSelectByTimeConnectorAndVerdict() {
        var clock = Self.clock
        let cases: [(name: String, filter: ReportFilter, recipients: Int, filteredOut: Int)] = [
            ("since is inclusive", ReportFilter(since: clock.parseArgument("2026-11-29T02:00")), 5, 2),
            ("until is exclusive", ReportFilter(until: clock.parseArgument("2026-11-29T02:00")), 2, 5),
            ("a connector, by inbound name, any case", ReportFilter(connectors: ["CONTOSO ON-PREMISES"]), 2, 5),
            ("a connector, by outbound name", ReportFilter(connectors: ["Secure"]), 1, 6),
            ("refusals", ReportFilter(verdicts: [.reject, .tempfail]), 3, 4),
            ("monitor mode's would-be refusals", ReportFilter(verdicts: [.wouldReject]), 1, 6),
        ]
        for c in cases {
            let s = build(c.filter)
            XCTAssertEqual(s.total.recipients.total, c.recipients, c.name)
            XCTAssertEqual(s.filteredOut, c.filteredOut, c.name)
        }
        // Lines without a time cannot be placed in a period.
        let bare = "Q9: verdict=accept" + Self.onPremAccept.replacingOccurrences(of: "%", with: "z")
        XCTAssertEqual(build(ReportFilter(since: 0), lines: [bare]).filteredOut, 1)
        XCTAssertEqual(build(ReportFilter(), lines: [bare]).total.recipients.total, 1)
    }

    func test_jsonHasTheSameFiguresAndTextQuotesHostileNames() throws {
        let s = build()
        let decoded = try JSONDecoder().decode(ReportSummary.self, from: JSONEncoder().encode(s))
        XCTAssertEqual(decoded, s)
        let hostile = Self.line("06:00:00", "Q5", "reject reason=relay-denied direction=incoming inbound=\"evil\\x0aname\" "
            + "inbound_type=partner client=unknown[198.51.100.1] tls=none cert=none from=<a@b.example> rcpt=<c@d.example> "
            + "outbound=none outbound_type=none mode=enforce auth=none")
        let text = build(lines: [hostile]).text()
        XCTAssertTrue(text.contains("Inbound connector \"evil\\x0aname\" (partner)"), text)
        XCTAssertFalse(text.contains("evil\n"))
    }

    // MARK: simulate

    /// The old policy let Fabrikam send from anywhere; the new one restricts it to its addresses.
    static let newPolicy: PolicySet = {
        var fabrikam = Connector(name: "Fabrikam Bank", direction: .inbound, type: .partner)
        fabrikam.senderDomains = [.exact("fabrikam.com")]
        fabrikam.senderIPAddresses = [try! IPPrefix.parse("203.0.113.0/24").get()]
        fabrikam.restrictDomainsToIPAddresses = true
        var onPrem = Connector(name: "Contoso on-premises", direction: .inbound, type: .onPremises)
        onPrem.senderIPAddresses = [try! IPPrefix.parse("192.0.2.0/24").get()]
        var toFabrikam = Connector(name: "To Fabrikam Bank", direction: .outbound, type: .partner)
        toFabrikam.recipientDomains = [.exact("fabrikam.com")]
        return PolicySet(Policy(acceptedDomains: [.exact("contoso.com")], connectors: [onPrem, fabrikam, toFabrikam]))
    }()

    static func incoming(_ client: String, from: String, rcpt: String = "ap@contoso.com", auth: String? = " auth=none") -> String {
        line("07:00:00", "Q7", "accept direction=incoming inbound=none inbound_type=none client=\(client) tls=none cert=none "
            + "from=<\(from)> rcpt=<\(rcpt)> outbound=none outbound_type=none mode=enforce" + (auth ?? ""))
    }

    func simulate(_ lines: [String]) -> (changes: [SimulatedChange], totals: SimulationTotals) {
        var simulation = Simulation(policy: Self.newPolicy, clock: Self.clock)
        var clock = Self.clock
        var changes: [SimulatedChange] = []
        for (n, text) in lines.enumerated() {
            if let change = simulation.add(VerdictLineReader.parse(line: text, clock: &clock), location: "test.log:\(n + 1)") {
                changes.append(change)
            }
        }
        return (changes, simulation.totals)
    }

    func test_simulateListsTheRecipientsThatWouldFareDifferently() {
        let (changes, totals) = simulate([
            Self.incoming("mx.evil.example[198.51.100.66]", from: "pay@fabrikam.com"),    // now refused
            Self.incoming("mx.fabrikam.com[203.0.113.5]", from: "pay@fabrikam.com"),      // now attributed to the partner
            Self.incoming("mx.other.example[198.51.100.7]", from: "a@other.example"),     // unchanged
            Self.incoming("mx.other.example[198.51.100.7]", from: "a@other.example", rcpt: "x@elsewhere.example"),  // accepted then; relay now
            "Nov 29 07:00:00 mx1 connector-milter[7]: Q8: verdict=accept direction",     // malformed
        ])
        XCTAssertEqual(totals.judged, 4)
        XCTAssertEqual(totals.changed, 2)
        XCTAssertEqual(totals.attributionOnly, 1)
        XCTAssertEqual(totals.malformedLines, 1)
        XCTAssertEqual(totals.transitions, ["accept -> reject": 2])
        XCTAssertEqual(changes.map(\.text), [
            "2026-11-29T07:00:00Z Q7 rcpt=<ap@contoso.com> from=<pay@fabrikam.com> client=mx.evil.example[198.51.100.66]: "
                + "accept -> reject partner-restricted",
            "2026-11-29T07:00:00Z Q7 rcpt=<ap@contoso.com> from=<pay@fabrikam.com> client=mx.fabrikam.com[203.0.113.5]: "
                + "accept -> accept; inbound none -> \"Fabrikam Bank\"",
            "2026-11-29T07:00:00Z Q7 rcpt=<x@elsewhere.example> from=<a@other.example> client=mx.other.example[198.51.100.7]: "
                + "accept -> reject relay-denied",
        ])
        XCTAssertEqual(changes.map(\.attributionOnly), [false, true, false])
    }

    func test_simulateCountsLinesJudgedWithoutTheLogin() {
        // Before auth= existed: a SASL client relaying out. Judged as unauthenticated, it is refused.
        let old = Self.line("08:00:00", "Q9", "accept direction=originating inbound=none inbound_type=authenticated "
            + "client=laptop.example[198.51.100.8] tls=TLSv1.3 cert=none from=<me@contoso.com> rcpt=<x@elsewhere.example> "
            + "outbound=none outbound_type=none mode=enforce")
        let (changes, totals) = simulate([old, old + " auth=\"me\""])
        XCTAssertEqual(totals.judgedWithMissingFacts, 1)
        XCTAssertEqual(totals.changed, 1)
        XCTAssertEqual(totals.changedWithMissingFacts, 1)
        XCTAssertEqual(changes.first?.missingFacts, ["auth"])
        XCTAssertTrue(changes.first?.text.hasSuffix("; judged without: auth") ?? false)
    }

    func test_simulateShowsMonitorModeOutcomes() {
        var monitor = Self.newPolicy.policy
        monitor.settings.mode = .monitor
        var simulation = Simulation(policy: PolicySet(monitor), clock: Self.clock)
        var clock = Self.clock
        let change = simulation.add(VerdictLineReader.parse(line: Self.incoming("x[198.51.100.66]", from: "pay@fabrikam.com"),
                                                            clock: &clock), location: "")
        XCTAssertEqual(change.map { "\($0.old) -> \($0.new)" }, "accept -> accept (would reject partner-restricted)")
        XCTAssertEqual(simulation.totals.transitions, ["accept -> accept/would-reject": 1])
    }
}
