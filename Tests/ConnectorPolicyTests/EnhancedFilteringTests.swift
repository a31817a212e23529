import Foundation
import XCTest
@testable import ConnectorPolicy
@testable import ConnectorReview

/// Enhanced filtering (docs/enhanced-filtering.md): its keys, the judgment on the original
/// client, and what report, simulate and lint make of it.
final class EnhancedFilteringTests: XCTestCase {
    static let header = """
        organization:
          acceptedDomains: [contoso.com]
        settings:
          rejectDirectSend: true
        connectors:

        """

    /// The service in front at 198.51.100.0/24 and 2001:db8:5::/48; a bank restricted to its
    /// own servers; a domain-only partner.
    static let connectors = """
          - name: Filter service
            direction: inbound
            type: partner
            senderDomains: ["*"]
            senderIPAddresses: [198.51.100.0/24, "2001:db8:5::/48"]
            efSkipIPs: [198.51.100.0/24, "2001:db8:5::/48"]
          - name: Fabrikam Bank
            direction: inbound
            type: partner
            senderDomains: [fabrikam.com]
            senderIPAddresses: [203.0.113.0/24, "2001:db8:b::/48"]
            restrictDomainsToIPAddresses: true

        """

    func policy(_ extra: String = "", connectors: String = connectors) throws -> PolicySet {
        let yaml = Self.header + connectors.replacingOccurrences(of: "    efSkipIPs:", with: extra + "    efSkipIPs:")
        return PolicySet(try PolicyParser.parse(yaml, file: "ef.yaml").get())
    }

    func errors(_ connectors: String) -> [String] {
        switch PolicyParser.parse(Self.header + connectors, file: "ef.yaml") {
        case .success: return []
        case .failure(let problems): return problems.errors.map { "\($0.line):\($0.column): \($0.message)" }
        }
    }

    let service = SessionFacts(clientAddress: IPAddress("198.51.100.5"), clientName: "mx.filter.example")
    func address(_ text: String) -> EmailAddress { EmailAddress(parsing: "<\(text)>") }

    // MARK: Keys

    func test_checkRefusesContradictoryOrUnreachableEnhancedFiltering() {
        let base = """
              - name: Svc
                direction: inbound
                type: partner
                senderDomains: ["*"]

            """
        XCTAssertEqual(errors(base + "    senderIPAddresses: [198.51.100.0/24]\n    efSkipIPs: [198.51.100.0/24]\n    efSkipLastIP: true\n"),
                       ["12:5: efSkipLastIP: true contradicts efSkipIPs; skip either the listed addresses or only the connecting client (remove one of them)"])
        XCTAssertEqual(errors(base + "    senderIPAddresses: [198.51.100.0/24]\n    efUsers: [ap@contoso.com]\n    efTestMode: true\n"), [
            "11:5: efUsers needs efSkipIPs or efSkipLastIP: true; without a skip form the connector has no enhanced filtering",
            "12:5: efTestMode needs efSkipIPs or efSkipLastIP: true; without a skip form the connector has no enhanced filtering",
        ])
        XCTAssertEqual(errors(base + "    tlsSenderCertificateName: mx.filter.example\n    efSkipLastIP: true\n"),
                       ["11:5: efSkipLastIP needs senderIPAddresses: enhanced filtering applies to mail whose connecting client is in them, and no client address reaches this connector without them"])
        XCTAssertEqual(errors(base + "    senderIPAddresses: [198.51.100.0/24]\n    efSkipIPs: []\n"),
                       ["11:16: efSkipIPs must list at least one address or block of the service to skip"])
        let bad = errors(base + "    senderIPAddresses: [198.51.100.0/24]\n    efSkipLastIP: true\n    efUsers: [\"<ap@contoso.com>\", nobody, \"a@b..c\"]\n")
        XCTAssertEqual(bad.count, 3, "\(bad)")
        XCTAssertTrue(bad.allSatisfy { $0.hasPrefix("12:") && $0.contains("efUsers: \"") }, "\(bad)")
        XCTAssertEqual(errors(base + "    senderIPAddresses: [198.51.100.0/24]\n    efSkipLastIP: true\n    efUsers: [\"<ap@contoso.com>\", nobody]\n").count, 2)
        XCTAssertEqual(errors("""
              - name: Out
                direction: outbound
                type: partner
                recipientDomains: [x.example]
                efSkipLastIP: true

            """).count, 1, "an outbound connector has no enhanced filtering")
        XCTAssertEqual(errors(base + "    senderIPAddresses: [198.51.100.0/24]\n    efSkipLastIP: true\n    efUsers: [AP@Contoso.COM]\n    efTestMode: true\n"), [])
    }

    func test_efUsersCompareWithoutRegardToCase() throws {
        let set = try policy("    efUsers: [AP@Contoso.com]\n")
        let c = try XCTUnwrap(set.enhancedFilteringConnector(client: service.clientAddress))
        XCTAssertEqual(c.efUsers, ["ap@contoso.com"])
        XCTAssertTrue(c.enhancedFilteringApplies(to: address("ap@CONTOSO.com.")))
        XCTAssertFalse(c.enhancedFilteringApplies(to: address("ceo@contoso.com")))
    }

    // MARK: Judging

    func test_thePartnerViaTheServiceIsAttributedToThePartner() throws {
        let set = try policy()
        let bank = address("pay@fabrikam.com"), ap = address("ap@contoso.com")
        // As today, the bank through the service is refused at RCPT: the client is the service.
        XCTAssertEqual(set.judge(session: service, from: bank, recipient: ap).refusal?.reason, .partnerRestricted)
        let (atRcpt, waits) = set.judgeAtRecipient(session: service, from: bank, recipient: ap,
                                                   service: set.enhancedFilteringConnector(client: service.clientAddress))
        XCTAssertTrue(waits, "the refusal rests on the client's address: it waits for the original client")
        XCTAssertEqual(atRcpt.refusal?.reason, .partnerRestricted)
        let d = set.judge(session: service, from: bank, recipient: ap, originalClient: IPAddress("203.0.113.7"))
        XCTAssertEqual(d.verdict, .accept)
        XCTAssertEqual(d.inbound?.name, "Fabrikam Bank")
        XCTAssertEqual(set.judge(session: service, from: bank, recipient: ap, originalClient: IPAddress("2001:db8:b::25")).inbound?.name,
                       "Fabrikam Bank")
        let other = set.judge(session: service, from: bank, recipient: ap, originalClient: IPAddress("192.0.2.66"))
        XCTAssertEqual(other.verdict, .reject)
        XCTAssertEqual(other.refusal?.reason, .partnerRestricted)
    }

    func test_directSendRestsOnTheOriginalClient() throws {
        let set = try policy()
        let d = set.judge(session: service, from: address("ceo@contoso.com"), recipient: address("ap@contoso.com"),
                          originalClient: IPAddress("192.0.2.66"))
        XCTAssertEqual(d.refusal?.reason, .directSend)
        XCTAssertEqual(d.verdict, .reject)
        // Without an original client: as today, the service's connector takes it.
        let today = set.judge(session: service, from: address("ceo@contoso.com"), recipient: address("ap@contoso.com"), originalClient: nil)
        XCTAssertEqual(today.inbound?.name, "Filter service")
    }

    func test_relayAndTLSStayOnTheConnection() throws {
        let set = try policy(connectors: Self.connectors.replacingOccurrences(of: "    senderDomains: [\"*\"]\n",
                                                                          with: "    senderDomains: [\"*\"]\n    requireTls: true\n"))
        let (tls, waits) = set.judgeAtRecipient(session: service, from: address("a@b.example"), recipient: address("ap@contoso.com"),
                                                service: set.enhancedFilteringConnector(client: service.clientAddress))
        XCTAssertEqual(tls.refusal?.reason, .tlsRequired)
        XCTAssertFalse(waits, "TLS is judged on the service's session at RCPT")
        let relay = set.judgeAtRecipient(session: service, from: address("a@b.example"), recipient: address("x@elsewhere.example"),
                                         service: set.enhancedFilteringConnector(client: service.clientAddress))
        XCTAssertEqual(relay.decision.refusal?.reason, .relayDenied)
        XCTAssertFalse(relay.waits)
    }

    func test_testModeAndMonitorModeAcceptAndTellWhatWouldHappen() throws {
        for set in [try policy("    efTestMode: true\n"),
                    try policy(connectors: Self.connectors.replacingOccurrences(of: "restrictDomainsToIPAddresses: true",
                                                                                with: "restrictDomainsToIPAddresses: true\n    mode: monitor"))] {
            let d = set.judge(session: service, from: address("pay@fabrikam.com"), recipient: address("ap@contoso.com"),
                              originalClient: IPAddress("192.0.2.66"))
            XCTAssertEqual(d.verdict, .accept)
            XCTAssertEqual(d.wouldBe, .reject)
            XCTAssertEqual(d.refusal?.reason, .partnerRestricted)
            XCTAssertEqual(d.mode, .monitor)
        }
    }

    func test_efUsersLimitsItToItsRecipients() throws {
        let set = try policy("    efUsers: [ap@contoso.com]\n")
        let svc = set.enhancedFilteringConnector(client: service.clientAddress)
        let bank = address("pay@fabrikam.com")
        XCTAssertTrue(set.judgeAtRecipient(session: service, from: bank, recipient: address("ap@contoso.com"), service: svc).waits)
        let outside = set.judgeAtRecipient(session: service, from: bank, recipient: address("ceo@contoso.com"), service: svc)
        XCTAssertFalse(outside.waits)
        XCTAssertEqual(outside.decision.verdict, .reject, "outside efUsers: refused at RCPT, as today")
        XCTAssertEqual(set.judge(session: service, from: bank, recipient: address("ceo@contoso.com"),
                                 originalClient: IPAddress("203.0.113.7")).verdict, .reject)
    }

    func test_oneRefusalAfterDataRefusesTheMessageForEveryRecipient() throws {
        // Fabrikam is associated with one accepted domain only: its mail for the others is not
        // restricted, so the two recipients fare differently on the same original client.
        let yaml = Self.header.replacingOccurrences(of: "[contoso.com]", with: "[contoso.com, contoso.org]")
            + Self.connectors + "    associatedAcceptedDomains: [contoso.com]\n"
        let set = PolicySet(try PolicyParser.parse(yaml, file: "ef.yaml").get())
        let svc = set.enhancedFilteringConnector(client: service.clientAddress)
        let bank = address("pay@fabrikam.com")
        let pending = ["x@contoso.org", "ap@contoso.com"].map { rcpt -> PendingRecipient in
            let (d, waits) = set.judgeAtRecipient(session: service, from: bank, recipient: address(rcpt), service: svc)
            return PendingRecipient(decision: d, recipient: address(rcpt), waits: waits)
        }
        let received = ["from mx.filter.example (mx.filter.example [198.51.100.5]) by mx.contoso.com (Postfix) with ESMTP id A",
                        "from evil.example (evil.example [192.0.2.66]) by mx.filter.example with ESMTPS id B"]
        let (final, refusal) = set.judgeAtEndOfMessage(session: service, from: bank, pending: pending, received: received, service: svc)
        XCTAssertEqual(refusal?.reply.enhancedCode, "5.7.51")
        XCTAssertEqual(final.map(\.originalClient), [IPAddress("192.0.2.66"), IPAddress("192.0.2.66")])
        let lines = final.map { VerdictLine.format(queueID: "Q1", decision: $0.decision, session: service, from: bank,
                                                   recipient: $0.recipient, originalClient: $0.originalClient) }
        XCTAssertTrue(lines[0].hasPrefix("Q1: verdict=reject direction=incoming inbound=none "), lines[0])
        XCTAssertTrue(lines[1].hasPrefix("Q1: verdict=reject reason=partner-restricted direction=incoming inbound=none "), lines[1])
        for line in lines {
            XCTAssertTrue(line.hasSuffix(" original_client=192.0.2.66"), line)
            XCTAssertEqual(VerdictLineReader.conformanceProblems(line), [], line)
        }
        // From the bank's own server, both are accepted.
        let good = ["from mx.filter.example (mx.filter.example [198.51.100.5]) by mx.contoso.com (Postfix) with ESMTP id A",
                    "from mail.fabrikam.com (mail.fabrikam.com [203.0.113.7]) by mx.filter.example with ESMTPS id B"]
        let accepted = set.judgeAtEndOfMessage(session: service, from: bank, pending: pending, received: good, service: svc)
        XCTAssertNil(accepted.refusal)
        XCTAssertEqual(accepted.recipients.map { $0.decision.inbound?.name }, [nil, "Fabrikam Bank"])
        // No Received header: judged as today, after DATA.
        let none = set.judgeAtEndOfMessage(session: service, from: bank, pending: pending, received: [], service: svc)
        XCTAssertEqual(none.refusal?.reply.enhancedCode, "5.7.51")
        XCTAssertEqual(none.recipients.map(\.originalClient), [nil, nil])
    }

    func test_aForgedChainBelowTheServiceLineIsNotRead() throws {
        let set = try policy()
        let svc = try XCTUnwrap(set.enhancedFilteringConnector(client: service.clientAddress))
        let chain = ReceivedChain(headers: [
            "from mx.filter.example (mx.filter.example [198.51.100.5]) by mx.contoso.com (Postfix) with ESMTP id A",
            "from evil.example (evil.example [192.0.2.66]) by mx.filter.example with ESMTPS id B",
            "from mail.fabrikam.com (mail.fabrikam.com [203.0.113.7]) by mx.filter.example with ESMTPS id C",
        ])
        XCTAssertEqual(set.originalClient(chain, connecting: service.clientAddress!, through: svc), IPAddress("192.0.2.66"))
    }

    // MARK: What it shows

    func test_reportCountsOriginalClientsAndSimulateJudgesWithThem() throws {
        let bankLine = "Q2: verdict=accept direction=incoming inbound=\"Fabrikam Bank\" inbound_type=partner "
            + "client=mx.filter.example[198.51.100.5] tls=none cert=none from=<pay@fabrikam.com> rcpt=<ap@contoso.com> "
            + "outbound=none outbound_type=none mode=enforce auth=none original_client=203.0.113.7"
        var builder = ReportBuilder()
        builder.add(VerdictLineReader.parse(message: bankLine), location: "l1")
        let summary = builder.summary(clock: LogClock(now: Date(), timeZone: TimeZone(identifier: "UTC")!))
        XCTAssertEqual(summary.total.originalClientRecipients, 1)
        XCTAssertEqual(summary.total.topOriginalClients.map(\.value), ["203.0.113.7"])
        XCTAssertTrue(summary.text().contains("1 recipients judged on the client behind a service: 203.0.113.7 1"), summary.text())

        var same = Simulation(policy: try policy(), clock: LogClock(now: Date(), timeZone: TimeZone(identifier: "UTC")!))
        guard case .verdict(let record) = VerdictLineReader.parse(message: bankLine) else { return XCTFail("not read") }
        XCTAssertNil(same.judge(record), "the same policy judges the logged original client the same")
        // Without enhanced filtering, the bank via the service is refused again.
        let without = PolicySet(try PolicyParser.parse(Self.header + Self.connectors.replacingOccurrences(
            of: "    efSkipIPs: [198.51.100.0/24, \"2001:db8:5::/48\"]\n", with: ""), file: "x.yaml").get())
        var sim = Simulation(policy: without, clock: LogClock(now: Date(), timeZone: TimeZone(identifier: "UTC")!))
        XCTAssertEqual(sim.judge(record)?.new.reason, "partner-restricted")
        // An old line, without original_client=, under a policy with enhanced filtering: a missing fact.
        let old = bankLine.replacingOccurrences(of: " original_client=203.0.113.7", with: "")
        guard case .verdict(let oldRecord) = VerdictLineReader.parse(message: old) else { return XCTFail("not read") }
        var withEF = Simulation(policy: try policy(), clock: LogClock(now: Date(), timeZone: TimeZone(identifier: "UTC")!))
        XCTAssertEqual(withEF.judge(oldRecord)?.missingFacts, ["original_client"])
        // A recipient refused only with its message counts as accepted in its own right.
        let withMessage = bankLine.replacingOccurrences(of: "verdict=accept", with: "verdict=reject")
        guard case .verdict(let wm) = VerdictLineReader.parse(message: withMessage) else { return XCTFail("not read") }
        XCTAssertNil(same.judge(wm))
    }

    func test_lintWarnsWhereTheSkipRangesLeaveOutTheServiceItself() throws {
        let yaml = Self.header + Self.connectors.replacingOccurrences(of: "efSkipIPs: [198.51.100.0/24, \"2001:db8:5::/48\"]",
                                                                     with: "efSkipIPs: [198.51.100.0/25]")
        let policy = try PolicyParser.parse(yaml, file: "ef.yaml").get()
        let warnings = PolicyLint.warnings(for: policy, yaml: yaml, file: "ef.yaml").map(\.description)
        XCTAssertEqual(warnings.filter { $0.contains("efSkipIPs") }, [
            "ef.yaml:10:25: warning: senderIPAddresses 198.51.100.0/24 of connector \"Filter service\" is not all in its efSkipIPs: mail from there is judged on the connecting client, not on the original client behind it; add it to efSkipIPs",
            "ef.yaml:10:42: warning: senderIPAddresses 2001:db8:5::/48 of connector \"Filter service\" is not all in its efSkipIPs: mail from there is judged on the connecting client, not on the original client behind it; add it to efSkipIPs",
        ])
        XCTAssertEqual(PolicyLint.warnings(for: try PolicyParser.parse(Self.header + Self.connectors, file: "ef.yaml").get(),
                                           yaml: Self.header + Self.connectors, file: "ef.yaml").filter { $0.message.contains("efSkipIPs") }, [])
    }

    func test_receivedHeadersAreReadFromAHeaderSection() {
        let text = "Return-Path: <a@b>\r\nReceived: from a (a [192.0.2.1])\r\n\tby b id X\r\nreceived:from c ([192.0.2.2]) by d\r\nSubject: x\r\n\r\nReceived: from body (b [192.0.2.3]) by z\r\n"
        XCTAssertEqual(ReceivedHeader.values(inHeaders: text), ["from a (a [192.0.2.1]) by b id X", "from c ([192.0.2.2]) by d"])
        XCTAssertEqual(ReceivedHeader.value(ofField: "Received: from a by b"), "from a by b")
        XCTAssertNil(ReceivedHeader.value(ofField: "from a by b"))
    }

    /// Found by the fuzzer: a value starting with a combining mark made " " + mark one Character.
    func test_combiningMarksDoNotGlueWordsOrHideSpaces() {
        XCTAssertEqual(ReceivedHeader.values(inHeaders: "Received: \u{0350}x\n"), ["\u{0350}x"])
        XCTAssertEqual(ReceivedHeader.clientAddress("from a (a [192.0.2.1]) \u{0350}by b ([198.51.100.1])"), IPAddress("192.0.2.1"))
    }
}
