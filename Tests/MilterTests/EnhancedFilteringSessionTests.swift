import XCTest
import ConnectorPolicy
import Milter
@testable import ConnectorDaemon

/// The session with enhanced filtering, driven as libmilter drives it: the recipient waits at
/// RCPT, the Received headers come in, the message is judged and answered at its end.
final class EnhancedFilteringSessionTests: XCTestCase {
    private func policy(stamp: Bool = true) throws -> PolicySet {
        let yaml = """
            organization:
              acceptedDomains: [contoso.com]
            settings:
              stampHeaders: \(stamp)
            connectors:
              - name: Filter service
                direction: inbound
                type: partner
                senderDomains: ["*"]
                senderIPAddresses: [198.51.100.0/24]
                efSkipIPs: [198.51.100.0/24]
              - name: Fabrikam Bank
                direction: inbound
                type: partner
                senderDomains: [fabrikam.com]
                senderIPAddresses: [203.0.113.0/24]
                restrictDomainsToIPAddresses: true
            """
        return PolicySet(try PolicyParser.parse(yaml, file: "ef.yaml").get())
    }

    private func run(_ policy: PolicySet, received: [String], rcpts: [String] = ["<ap@contoso.com>"],
                     extraHeaders: [(String, String)] = []) throws -> (MilterResponse, FakeMilterContext, MemoryLogSink) {
        let log = MemoryLogSink()
        let session = ConnectorSession(policy: policy, log: log)
        let context = FakeMilterContext()
        _ = try session.connect(hostname: "mx.filter.example", address: "198.51.100.5", context: context)
        _ = try session.helo("mx.filter.example", context: context)
        _ = try session.mailFrom(["<pay@fabrikam.com>"], context: context)
        for rcpt in rcpts {
            XCTAssertEqual(try session.recipient([rcpt], context: context), .proceed, "the refusal waits for the headers")
        }
        XCTAssertTrue(log.lines.isEmpty)
        for value in received { _ = try session.header(name: "Received", value: value, context: context) }
        for (name, value) in extraHeaders { _ = try session.header(name: name, value: value, context: context) }
        context.stage = .endOfMessage
        context.macros["i"] = "4Q"
        return (try session.endOfMessage(context: context), context, log)
    }

    func test_thePartnerBehindTheServiceIsAcceptedAndStamped() throws {
        let (response, context, log) = try run(try policy(), received: ["from bank (bank\n\t[203.0.113.7]) by mx.filter.example id A"],
                                               extraHeaders: [("x-connector-original-client", "forged")])
        XCTAssertEqual(response, .proceed)
        XCTAssertEqual(context.deletedHeaders.map { "\($0.name)#\($0.index)" }, ["X-Connector-Original-Client#1"])
        XCTAssertEqual(context.addedHeaders.map { "\($0.name): \($0.value)" },
                       ["X-Connector-Inbound: Fabrikam Bank", "X-Connector-Direction: incoming", "X-Connector-Original-Client: 203.0.113.7"])
        XCTAssertEqual(log.lines.map(\.message), [
            "4Q: verdict=accept direction=incoming inbound=\"Fabrikam Bank\" inbound_type=partner client=mx.filter.example[198.51.100.5] "
            + "tls=none cert=none from=<pay@fabrikam.com> rcpt=<ap@contoso.com> outbound=none outbound_type=none mode=enforce "
            + "auth=none original_client=203.0.113.7",
        ])
    }

    func test_aRefusalOnTheOriginalClientRefusesTheWholeMessage() throws {
        let (response, context, log) = try run(try policy(), received: ["from evil (evil [192.0.2.66]) by mx.filter.example id A"],
                                               rcpts: ["<ap@contoso.com>", "<ar@contoso.com>"])
        XCTAssertEqual(response, .refuse(SMTPReply(code: 550, enhancedCode: "5.7.51", text: "Sender not authorized by partner connector")!))
        XCTAssertTrue(context.headerChanges.isEmpty, "a refused message is not changed")
        XCTAssertEqual(log.lines.count, 2)
        for line in log.lines {
            XCTAssertEqual(line.priority, .notice)
            XCTAssertTrue(line.message.hasPrefix("4Q: verdict=reject reason=partner-restricted "), line.message)
            XCTAssertTrue(line.message.hasSuffix(" original_client=192.0.2.66"), line.message)
        }
    }

    func test_withoutReceivedHeadersItIsJudgedAsTodayAfterData() throws {
        let (response, _, log) = try run(try policy(stamp: false), received: [])
        XCTAssertEqual(response, .refuse(SMTPReply(code: 550, enhancedCode: "5.7.51", text: "Sender not authorized by partner connector")!))
        XCTAssertTrue(log.lines.first?.message.hasSuffix(" original_client=none") ?? false)
    }
}
