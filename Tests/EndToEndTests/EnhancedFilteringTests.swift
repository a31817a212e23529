// Enhanced filtering through a real Postfix (the service presented with XCLIENT) and a real
// Sendmail (the service as a loopback alias address): messages carrying Received chains as
// filtering services write them, judged on their original client after DATA.

import Foundation
import Glibc
import XCTest

/// A filtering service in front at 198.51.100.0/24 and 2001:db8:5::/48 (Postfix; Sendmail's
/// service is 127.0.0.0/8, see `sendmailPolicy`), a bank restricted to its own servers, a
/// partner in monitor mode, a service in test mode and one limited to a pilot user.
let enhancedFilteringPolicy = """
organization:
  acceptedDomains: [contoso.com]
settings:
  rejectDirectSend: true
connectors:
  - name: Filter service
    direction: inbound
    type: partner
    senderDomains: ["*"]
    senderIPAddresses: [198.51.100.0/24, "2001:db8:5::/48"]
    efSkipIPs: [198.51.100.0/24, "2001:db8:5::/48"]
  - name: Trial service
    direction: inbound
    type: partner
    senderDomains: ["*"]
    senderIPAddresses: [198.18.7.0/24]
    efSkipLastIP: true
    efTestMode: true
  - name: Pilot service
    direction: inbound
    type: partner
    senderDomains: ["*"]
    senderIPAddresses: [198.18.8.0/24]
    efSkipLastIP: true
    efUsers: [pilot@contoso.com]
  - name: Fabrikam Bank
    direction: inbound
    type: partner
    senderDomains: [fabrikam.com]
    senderIPAddresses: [203.0.113.0/24, "2001:db8:b::/48"]
    restrictDomainsToIPAddresses: true
  - name: Tailspin trial
    direction: inbound
    type: partner
    mode: monitor
    senderDomains: [tailspin.example]
    senderIPAddresses: [198.18.5.0/24]
    restrictDomainsToIPAddresses: true

"""

/// Received lines as the hops in front write them: `client` is the address the hop saw.
enum ReceivedStyle {
    static func postfix(_ name: String, _ client: String, by: String, id: String) -> String {
        let literal = client.contains(":") ? "IPv6:" + client : client
        return "Received: from \(name) (\(name) [\(literal)]) by \(by) (Postfix) with ESMTPS id \(id) for <ap@contoso.com>; Wed, 2 Dec 2026 10:00:00 +0000 (UTC)"
    }

    static func sendmail(_ name: String, _ client: String, by: String, id: String) -> String {
        let literal = client.contains(":") ? "IPv6:" + client : client
        return "Received: from \(name) (\(name) [\(literal)] (may be forged)) by \(by) (8.17.1/8.17.1) with ESMTP id \(id) for <ap@contoso.com>; Wed, 2 Dec 2026 10:00:00 GMT"
    }

    static func exchange(_ name: String, _ client: String, by: String, byAddress: String) -> String {
        "Received: from \(name) (\(client)) by \(by) (\(byAddress)) with Microsoft SMTP Server (version=TLS1_2, cipher=TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384) id 15.20.7633.12; Wed, 2 Dec 2026 10:00:00 +0000"
    }

    static func google(_ name: String, _ client: String, id: String) -> String {
        "Received: from \(name) (\(name). [\(client)]) by mx.google.com with ESMTPS id \(id) for <ap@contoso.com> (version=TLS1_3 cipher=TLS_AES_256_GCM_SHA384 bits=256/256); Wed, 02 Dec 2026 02:00:00 -0800 (PST)"
    }
}

final class EnhancedFilteringTests: LabTestCase {
    private func lab() throws -> PostfixLab {
        let lab = try startLab()
        try lab.startDaemon(policy: enhancedFilteringPolicy)
        return lab
    }

    /// A message from the service at `service` (XCLIENT), tagged `X-Case: tag` to find it at the sink.
    private func send(_ lab: PostfixLab, via service: String, from sender: String, to recipients: [String] = ["ap@contoso.com"],
                      received: [String], tag: String) throws -> SMTPTranscript {
        var o = SwaksOptions(from: sender, to: recipients)
        o.xclientAddress = service
        o.xclientName = "mx.filter.example"
        o.headers = received + ["X-Case: \(tag)"]
        return try lab.swaks(o)
    }

    private func delivered(_ lab: PostfixLab, _ tag: String) -> [DeliveredMessage] {
        lab.deliveries().filter { $0.headerValues("X-Case") == [tag] }
    }

    /// The verdict line of `rcpt` in the message with queue id `queueID` (or any, for nil).
    private func verdict(_ lab: PostfixLab, queueID: String? = nil, rcpt: String = "ap@contoso.com", _ extra: String = "") throws -> String {
        try lab.waitForLog(matching: "^\(queueID.map(NSRegularExpression.escapedPattern) ?? "[^ ]+"): verdict=(?=.*\(extra)).* "
                           + "rcpt=<\(NSRegularExpression.escapedPattern(for: rcpt))>")
    }

    func test_thePartnerViaTheServiceIsAcceptedAndAttributedToThePartner() throws {
        let lab = try lab()
        // Postfix-style, IPv4, one skipped hop (the service's own line).
        let t = try send(lab, via: "198.51.100.5", from: "pay@fabrikam.com", received: [
            ReceivedStyle.postfix("mail.fabrikam.com", "203.0.113.7", by: "mx.filter.example", id: "4Fab1"),
        ], tag: "bank-postfix")
        let queueID = try XCTUnwrap(t.queueID, t.text)
        let message = try lab.waitForDelivery(queueID: queueID)
        XCTAssertEqual(message.headerValues("X-Connector-Inbound"), ["Fabrikam Bank"], message.headerSection)
        XCTAssertEqual(message.headerValues("X-Connector-Original-Client"), ["203.0.113.7"], message.headerSection)
        let line = try verdict(lab, queueID: queueID)
        XCTAssertTrue(line.contains("verdict=accept direction=incoming inbound=\"Fabrikam Bank\" inbound_type=partner "
                                    + "client=mx.filter.example[198.51.100.5] "), line)
        XCTAssertTrue(line.hasSuffix(" auth=none original_client=203.0.113.7"), line)

        // Exchange-style, two skipped hops inside the service, then the bank over IPv6 (Google-style line).
        let two = try send(lab, via: "2001:db8:5::25", from: "pay@fabrikam.com", received: [
            ReceivedStyle.exchange("EX2.filter.example", "2001:db8:5::9", by: "EX1.filter.example", byAddress: "2001:db8:5::25"),
            ReceivedStyle.google("mail.fabrikam.com", "2001:db8:b::25", id: "g1"),
        ], tag: "bank-v6")
        let id2 = try XCTUnwrap(two.queueID, two.text)
        _ = try lab.waitForDelivery(queueID: id2)
        let line2 = try verdict(lab, queueID: id2)
        XCTAssertTrue(line2.contains("inbound=\"Fabrikam Bank\"") && line2.hasSuffix(" original_client=2001:db8:b::25"), line2)
        // Sendmail-style line, the service over IPv6 through two hops of its own.
        let three = try send(lab, via: "2001:db8:5::25", from: "pay@fabrikam.com", received: [
            ReceivedStyle.postfix("edge.filter.example", "2001:db8:5::9", by: "mx.filter.example", id: "4Edge"),
            ReceivedStyle.sendmail("mail.fabrikam.com", "203.0.113.8", by: "edge.filter.example", id: "0B2A00bC000123"),
        ], tag: "bank-sendmail-style")
        let id3 = try XCTUnwrap(three.queueID, three.text)
        _ = try lab.waitForDelivery(queueID: id3)
        XCTAssertTrue(try verdict(lab, queueID: id3).hasSuffix(" original_client=203.0.113.8"))
        for tag in ["bank-postfix", "bank-v6", "bank-sendmail-style"] {
            XCTAssertEqual(delivered(lab, tag).count, 1, "\(tag) arrives exactly once")
        }
    }

    func test_refusalsOnTheOriginalClientComeAfterDataAndNothingIsDelivered() throws {
        let lab = try lab()
        // The bank's domain from another address, behind two of the service's hops (Exchange-style).
        let spoof = try send(lab, via: "198.51.100.5", from: "pay@fabrikam.com", received: [
            ReceivedStyle.exchange("EX2.filter.example", "198.51.100.9", by: "EX1.filter.example", byAddress: "198.51.100.5"),
            ReceivedStyle.exchange("evil.example", "192.0.2.66", by: "EX2.filter.example", byAddress: "198.51.100.9"),
        ], tag: "spoofed-bank")
        XCTAssertEqual(spoof.rcptReply(for: "ap@contoso.com")?.code, 250, "the refusal waits for the headers: \(spoof.text)")
        XCTAssertEqual(spoof.dataReply?.text, "550 5.7.51 Sender not authorized by partner connector", spoof.text)
        let line = try verdict(lab, "reason=partner-restricted")
        XCTAssertTrue(line.contains("verdict=reject reason=partner-restricted direction=incoming inbound=none"), line)
        XCTAssertTrue(line.hasSuffix(" original_client=192.0.2.66"), line)

        // An internal sender from the internet (IPv6, Google-style line) via the service: direct send.
        let direct = try send(lab, via: "198.51.100.5", from: "ceo@contoso.com", received: [
            ReceivedStyle.google("evil.example", "2001:db8:66::1", id: "g2"),
        ], tag: "direct-send")
        XCTAssertEqual(direct.dataReply?.text, "550 5.7.68 Direct send not allowed from unauthorized sources", direct.text)
        XCTAssertTrue(try verdict(lab, "reason=direct-send").hasSuffix(" original_client=2001:db8:66::1"))

        // A forged chain below the service's line: the bank's address there cannot help.
        let forged = try send(lab, via: "198.51.100.5", from: "pay@fabrikam.com", received: [
            ReceivedStyle.postfix("evil.example", "192.0.2.77", by: "mx.filter.example", id: "4Svc"),
            ReceivedStyle.postfix("mail.fabrikam.com", "203.0.113.7", by: "mx.fabrikam.com", id: "4Forged"),
        ], tag: "forged-chain")
        XCTAssertEqual(forged.dataReply?.text, "550 5.7.51 Sender not authorized by partner connector", forged.text)
        XCTAssertTrue(try verdict(lab, "original_client=192.0.2.77").contains("reason=partner-restricted"))

        // Two recipients: one refusal after DATA refuses the message for both, and says so for each.
        let both = try send(lab, via: "198.51.100.5", from: "pay@fabrikam.com", to: ["ap@contoso.com", "ar@contoso.com"], received: [
            ReceivedStyle.postfix("evil.example", "192.0.2.88", by: "mx.filter.example", id: "4Both"),
        ], tag: "two-recipients")
        XCTAssertEqual(both.dataReply?.code, 550, both.text)
        XCTAssertTrue(try verdict(lab, rcpt: "ar@contoso.com", "original_client=192.0.2.88").contains("verdict=reject reason=partner-restricted"))

        for tag in ["spoofed-bank", "direct-send", "forged-chain", "two-recipients"] {
            XCTAssertEqual(delivered(lab, tag).count, 0, "\(tag) must not be delivered")
        }
    }

    func test_withoutAUsableChainTheMessageIsJudgedAsToday() throws {
        let lab = try lab()
        // No Received header of the service's: the bank's domain through the service is refused as today.
        let none = try send(lab, via: "198.51.100.5", from: "pay@fabrikam.com", received: [], tag: "no-chain")
        XCTAssertEqual(none.dataReply?.text, "550 5.7.51 Sender not authorized by partner connector", none.text)
        XCTAssertTrue(try verdict(lab, "reason=partner-restricted").hasSuffix(" original_client=none"))
        // An unparsable line where the original client should be: the same.
        let garbage = try send(lab, via: "198.51.100.5", from: "pay@fabrikam.com",
                               received: ["Received: by mx.filter.example with LMTP; garbage"], tag: "unparsable")
        XCTAssertEqual(garbage.dataReply?.code, 550, garbage.text)
        // Mail nobody restricts, without a chain: accepted through the service's connector.
        let news = try send(lab, via: "198.51.100.5", from: "news@example.org", received: [], tag: "news")
        let queueID = try XCTUnwrap(news.queueID, news.text)
        let message = try lab.waitForDelivery(queueID: queueID)
        XCTAssertEqual(message.headerValues("X-Connector-Inbound"), ["Filter service"])
        XCTAssertEqual(message.headerValues("X-Connector-Original-Client"), ["none"])
        XCTAssertTrue(try verdict(lab, queueID: queueID).contains("inbound=\"Filter service\""))
        XCTAssertEqual(delivered(lab, "no-chain").count + delivered(lab, "unparsable").count, 0)
        XCTAssertEqual(delivered(lab, "news").count, 1)
    }

    func test_testModeMonitorModeAndEfUsers() throws {
        let lab = try lab()
        // efTestMode: the spoofed bank is accepted, and the line tells what would have happened.
        let trial = try send(lab, via: "198.18.7.5", from: "pay@fabrikam.com", received: [
            ReceivedStyle.postfix("evil.example", "192.0.2.66", by: "mx.trial.example", id: "4Trial"),
        ], tag: "test-mode")
        let trialID = try XCTUnwrap(trial.queueID, trial.text)
        let trialLine = try verdict(lab, queueID: trialID)
        XCTAssertTrue(trialLine.contains("verdict=accept would=reject reason=partner-restricted") && trialLine.contains("mode=monitor"), trialLine)
        XCTAssertTrue(trialLine.hasSuffix(" original_client=192.0.2.66"), trialLine)
        // Monitor mode of the partner: accepted, would=.
        let monitored = try send(lab, via: "198.51.100.5", from: "promo@tailspin.example", received: [
            ReceivedStyle.postfix("elsewhere.example", "192.0.2.99", by: "mx.filter.example", id: "4Mon"),
        ], tag: "monitor-mode")
        let monitoredID = try XCTUnwrap(monitored.queueID, monitored.text)
        XCTAssertTrue(try verdict(lab, queueID: monitoredID).contains("verdict=accept would=reject reason=partner-restricted"))
        // efUsers: only the pilot is judged on the original client; the other is refused at RCPT, as today.
        let pilot = try send(lab, via: "198.18.8.5", from: "pay@fabrikam.com", to: ["pilot@contoso.com", "other@contoso.com"], received: [
            ReceivedStyle.postfix("mail.fabrikam.com", "203.0.113.7", by: "mx.pilot.example", id: "4Pilot"),
        ], tag: "ef-users")
        XCTAssertEqual(pilot.rcptReply(for: "other@contoso.com")?.text, "550 5.7.51 Sender not authorized by partner connector", pilot.text)
        let pilotID = try XCTUnwrap(pilot.queueID, pilot.text)
        let pilotMessage = try lab.waitForDelivery(queueID: pilotID)
        XCTAssertEqual(pilotMessage.recipients, ["pilot@contoso.com"])
        XCTAssertTrue(try verdict(lab, queueID: pilotID, rcpt: "pilot@contoso.com").hasSuffix(" original_client=203.0.113.7"))
        XCTAssertTrue(try verdict(lab, rcpt: "other@contoso.com").hasSuffix(" original_client=none"))
        for tag in ["test-mode", "monitor-mode", "ef-users"] {
            XCTAssertEqual(delivered(lab, tag).count, 1, "\(tag) arrives exactly once")
        }
    }

    /// docs/mta-notes.md: whether Postfix shows the milter its own Received header. The walk
    /// reads at most 64 headers: 63 lines of the service and the bank's line fit only if
    /// Postfix's own line is not among them; 64 and the bank's never fit.
    func test_whatPostfixShowsTheMilter() throws {
        let lab = try lab()
        // Postfix itself refuses more than 50 Received headers ("554 5.4.0 Error: too many hops").
        try lab.postconf(["hopcount_limit": "100"])
        let service = (1...64).map { ReceivedStyle.postfix("hop\($0).filter.example", "198.51.100.\($0 + 10)", by: "hop.filter.example", id: "H\($0)") }
        let bank = ReceivedStyle.postfix("mail.fabrikam.com", "203.0.113.7", by: "hop1.filter.example", id: "B")
        let fits = try send(lab, via: "198.51.100.5", from: "pay@fabrikam.com", received: Array(service.dropLast()) + [bank], tag: "probe-fits")
        let ownLineShown = fits.dataReply?.code == 550
        print("POSTFIX-FACT: the milter sees Postfix's own Received header: \(ownLineShown)")
        XCTAssertEqual(fits.dataReply?.code, 250, "observed: Postfix does not show the milter its own Received header; \(fits.text)")
        XCTAssertTrue(try verdict(lab, queueID: try XCTUnwrap(fits.queueID)).hasSuffix(" original_client=203.0.113.7"))
        let tooLong = try send(lab, via: "198.51.100.5", from: "pay@fabrikam.com", received: service + [bank], tag: "probe-too-long")
        XCTAssertEqual(tooLong.dataReply?.text, "550 5.7.51 Sender not authorized by partner connector", tooLong.text)
        XCTAssertEqual(delivered(lab, "probe-too-long").count, 0)
    }
}

/// The same through a real Sendmail: the service is the loopback alias 127.0.5.5 the client
/// binds to. One Postfix lab (for the daemon, syslog and sink), one Sendmail beside it.
final class SendmailEnhancedFilteringTests: XCTestCase {
    static let policy: String = {
        let policy = enhancedFilteringPolicy.replacingOccurrences(of: "[198.51.100.0/24, \"2001:db8:5::/48\"]", with: "[127.0.5.0/24]")
        precondition(policy != enhancedFilteringPolicy)
        return policy
    }()
    static let service = "127.0.5.5"

    private var postfix: PostfixLab!
    private var sendmail: SendmailLab!

    override func setUpWithError() throws {
        postfix = try PostfixLab.start()
        // Sendmail refuses more than 25 Received headers by default (MaxHopCount); the probe
        // below needs 65.
        sendmail = try SendmailLab.start(beside: postfix, milterLines: SendmailLab.milterLines(socket: postfix.milterSocket)
                                         + "\ndefine(`confMAX_HOP', `100')dnl")
        try postfix.startDaemon(policy: Self.policy)
    }

    override func tearDown() {
        if let sendmail, let postfix {
            SendmailLab.stopShared(sendmail, beside: postfix, failed: (testRun?.totalFailureCount ?? 0) > 0)
        }
        super.tearDown()
    }

    private func send(from sender: String, to recipients: [String] = ["ap@contoso.com"], received: [String],
                      tag: String) throws -> SMTPTranscript {
        var o = SwaksOptions(from: sender, to: recipients)
        o.headers = received + ["X-Case: \(tag)"]
        return try sendmail.swaks(o, from: Self.service)
    }

    private func verdict(queueID: String? = nil, _ extra: String = "") throws -> String {
        try postfix.waitForLog(matching: "^\(queueID.map(NSRegularExpression.escapedPattern) ?? "[^ ]+"): verdict=(?=.*\(extra)).* rcpt=<ap@contoso\\.com>")
    }

    func test_theOriginalClientBehindTheServiceThroughSendmail() throws {
        // The bank behind the service (Sendmail-style line): accepted, attributed to the bank.
        let bank = try send(from: "pay@fabrikam.com", received: [
            ReceivedStyle.sendmail("mail.fabrikam.com", "203.0.113.7", by: "mx.filter.example", id: "0B2A00bC000123"),
        ], tag: "bank")
        let queueID = try XCTUnwrap(bank.sendmailQueueID, bank.text)
        let message = try sendmail.waitForDelivery(queueID: queueID)
        XCTAssertEqual(message.headerValues("X-Connector-Inbound"), ["Fabrikam Bank"], message.headerSection)
        XCTAssertEqual(message.headerValues("X-Connector-Original-Client"), ["203.0.113.7"], message.headerSection)
        let line = try verdict(queueID: queueID)
        XCTAssertTrue(line.contains("inbound=\"Fabrikam Bank\" inbound_type=partner client=") && line.contains("[127.0.5.5] "), line)
        XCTAssertTrue(line.hasSuffix(" original_client=203.0.113.7"), line)

        // The bank's domain from elsewhere (Exchange-style lines, two hops of the service): 5.7.51 after DATA.
        let spoof = try send(from: "pay@fabrikam.com", received: [
            ReceivedStyle.exchange("EX2.filter.example", "127.0.5.9", by: "EX1.filter.example", byAddress: "127.0.5.5"),
            ReceivedStyle.exchange("evil.example", "192.0.2.66", by: "EX2.filter.example", byAddress: "127.0.5.9"),
        ], tag: "spoof")
        XCTAssertEqual(spoof.rcptReply(for: "ap@contoso.com")?.code, 250, spoof.text)
        XCTAssertEqual(spoof.dataReply?.code, 550, spoof.text)
        XCTAssertTrue(spoof.dataReply?.text.contains("5.7.51 Sender not authorized by partner connector") ?? false, spoof.text)
        let refused = try verdict("original_client=192.0.2.66")
        XCTAssertTrue(refused.contains("verdict=reject reason=partner-restricted"), refused)

        // An internal sender from the internet (IPv6, Google-style line): 5.7.68 after DATA.
        let direct = try send(from: "ceo@contoso.com", received: [ReceivedStyle.google("evil.example", "2001:db8:66::1", id: "g")],
                              tag: "direct")
        XCTAssertTrue(direct.dataReply?.text.contains("5.7.68 Direct send not allowed from unauthorized sources") ?? false, direct.text)
        XCTAssertTrue(try verdict("original_client=2001:db8:66::1").contains("reason=direct-send"))

        // No Received header: as today.
        let none = try send(from: "pay@fabrikam.com", received: [], tag: "none")
        XCTAssertEqual(none.dataReply?.code, 550, none.text)

        let delivered = { (tag: String) in self.sendmail.deliveries().filter { $0.headerValues("X-Case") == [tag] }.count }
        XCTAssertEqual(delivered("bank"), 1)
        for tag in ["spoof", "direct", "none"] { XCTAssertEqual(delivered(tag), 0, "\(tag) must not be delivered") }
    }

    /// docs/mta-notes.md: whether Sendmail shows the milter its own Received header (the same
    /// probe as for Postfix: 63 lines of the service and the bank's fit in the 64 the walk reads
    /// only without Sendmail's own line; 64 and the bank's never fit).
    func test_whatSendmailShowsTheMilter() throws {
        let hops = (1...64).map { ReceivedStyle.postfix("hop\($0).filter.example", "127.0.5.\($0 + 10)", by: "hop.filter.example", id: "H\($0)") }
        let bank = ReceivedStyle.postfix("mail.fabrikam.com", "203.0.113.7", by: "hop1.filter.example", id: "B")
        let fits = try send(from: "pay@fabrikam.com", received: Array(hops.dropLast()) + [bank], tag: "probe-63")
        let tooLong = try send(from: "pay@fabrikam.com", received: hops + [bank], tag: "probe-64")
        print("SENDMAIL-FACT: 63 service lines + bank: \(fits.dataReply?.text ?? "none"); 64 + bank: \(tooLong.dataReply?.text ?? "none")")
        XCTAssertEqual(fits.dataReply?.code, 250, "observed: Sendmail does not show the milter its own Received header; \(fits.text)")
        XCTAssertEqual(tooLong.dataReply?.code, 550, tooLong.text)
        XCTAssertEqual(sendmail.deliveries().filter { $0.headerValues("X-Case") == ["probe-64"] }.count, 0)
    }
}
