import XCTest
import ConnectorPolicy
import Milter
@testable import ConnectorDaemon

/// The session handler, driven through the fake context as libmilter would drive it:
/// macros in, replies, header changes and verdict lines out.
final class ConnectorSessionTests: XCTestCase {
    private func policy(_ adjust: (inout Policy) -> Void = { _ in }) -> PolicySet {
        var onPrem = Connector(name: "Contoso on-premises", direction: .inbound, type: .onPremises)
        onPrem.tlsSenderCertificateName = .wildcard("contoso.com")
        onPrem.requireTls = true
        var bank = Connector(name: "Fabrikam Bank", direction: .inbound, type: .partner)
        bank.senderDomains = [.exact("fabrikam.com")]
        bank.senderIPAddresses = [try! IPPrefix.parse("203.0.113.0/24").get()]
        bank.restrictDomainsToIPAddresses = true
        var p = Policy(acceptedDomains: [.exact("contoso.com")], connectors: [onPrem, bank])
        adjust(&p)
        return PolicySet(p)
    }

    private struct Run {
        let session: ConnectorSession
        let context = FakeMilterContext()
        let log: MemoryLogSink
    }

    private func start(_ policy: PolicySet, address: String?, hostname: String = "client.example") throws -> Run {
        let log = MemoryLogSink()
        let r = Run(session: ConnectorSession(policy: policy, log: log), log: log)
        XCTAssertEqual(try r.session.connect(hostname: hostname, address: address, context: r.context), .proceed)
        return r
    }

    func test_refusalIsRepliedAndLoggedAtOnce() throws {
        let r = try start(policy(), address: "198.18.0.9")
        _ = try r.session.helo("evil.example", context: r.context)
        XCTAssertEqual(try r.session.mailFrom(["<pay@fabrikam.com>"], context: r.context), .proceed)
        let response = try r.session.recipient(["<ap@contoso.com>"], context: r.context)
        XCTAssertEqual(response, .refuse(SMTPReply(code: 550, enhancedCode: "5.7.51", text: "Sender not authorized by partner connector")!))
        XCTAssertEqual(r.log.lines.map(\.message), [
            "NOQUEUE: verdict=reject reason=partner-restricted direction=incoming inbound=none inbound_type=none "
            + "client=client.example[198.18.0.9] tls=none cert=none from=<pay@fabrikam.com> rcpt=<ap@contoso.com> "
            + "outbound=none outbound_type=none mode=enforce auth=none original_client=none",
        ])
    }

    func test_acceptanceIsLoggedAtEndOfMessageWithQueueIDAndHeadersStamped() throws {
        let r = try start(policy(), address: "198.18.0.1", hostname: "[198.18.0.1]")
        r.context.macros = ["{tls_version}": "TLSv1.3", "{cert_subject}": "relay.contoso.com"]
        _ = try r.session.helo("relay.contoso.com", context: r.context)
        r.context.macros = ["{tls_version}": "TLSv1.3", "{cert_subject}": "relay.contoso.com", "i": ""]
        _ = try r.session.mailFrom(["<ceo@contoso.com>", "SIZE=100"], context: r.context)
        XCTAssertEqual(try r.session.recipient(["<x@other.example>"], context: r.context), .proceed)
        XCTAssertEqual(try r.session.recipient(["<y@other.example>"], context: r.context), .proceed)
        XCTAssertTrue(r.log.lines.isEmpty, "acceptances wait for the queue id")
        _ = try r.session.header(name: "x-connector-inbound", value: "forged", context: r.context)
        _ = try r.session.header(name: "X-Connector-Inbound", value: "forged again", context: r.context)
        _ = try r.session.header(name: "Subject", value: "hi", context: r.context)
        r.context.stage = .endOfMessage
        r.context.macros["i"] = "4Xyz123"
        XCTAssertEqual(try r.session.endOfMessage(context: r.context), .proceed)
        XCTAssertEqual(r.context.deletedHeaders.map { "\($0.name)#\($0.index)" }, ["X-Connector-Inbound#2", "X-Connector-Inbound#1"])
        XCTAssertEqual(r.context.addedHeaders.map { "\($0.name): \($0.value)" },
                       ["X-Connector-Inbound: Contoso on-premises", "X-Connector-Direction: originating"])
        XCTAssertEqual(r.log.lines.count, 2)
        XCTAssertTrue(r.log.lines[0].message.hasPrefix("4Xyz123: verdict=accept direction=originating inbound=\"Contoso on-premises\""), r.log.lines[0].message)
        XCTAssertTrue(r.log.lines[0].message.contains(" client=unknown[198.18.0.1] tls=TLSv1.3 cert=\"relay.contoso.com\" "), r.log.lines[0].message)
        XCTAssertTrue(r.log.lines[1].message.contains(" rcpt=<y@other.example> "))
    }

    func test_tlsMacrosAtMailAloneCount() throws {
        // A client that sends MAIL right after STARTTLS, with no second EHLO: Postfix's HELO
        // macros predate TLS, so only the MAIL stage tells.
        let r = try start(policy(), address: "198.18.0.1")
        _ = try r.session.helo("relay.contoso.com", context: r.context)
        r.context.macros = ["{tls_version}": "TLSv1.2", "{cert_subject}": "relay.contoso.com"]
        _ = try r.session.mailFrom(["<ceo@contoso.com>"], context: r.context)
        XCTAssertEqual(try r.session.recipient(["<x@other.example>"], context: r.context), .proceed)
    }

    func test_sendmailUnverifiedCertificateNamesNobody() throws {
        let r = try start(policy(), address: "198.18.0.1")
        r.context.macros = ["{tls_version}": "TLSv1.3", "{verify}": "FAIL", "{cn_subject}": "relay.contoso.com",
                            "{cert_subject}": "/CN=relay.contoso.com"]
        _ = try r.session.mailFrom(["<ceo@contoso.com>"], context: r.context)
        XCTAssertEqual(try r.session.recipient(["<x@other.example>"], context: r.context),
                       .refuse(SMTPReply(code: 550, enhancedCode: "5.7.64", text: "Relay access denied")!))
    }

    func test_sendmailVerifiedCertificateIsXtextDecoded() throws {
        var partner = Connector(name: "Woodgrove", direction: .inbound, type: .partner)
        partner.senderDomains = [.any]
        partner.tlsSenderCertificateName = .exact("mx.woodgrove.example")
        let r = try start(policy { $0.connectors.append(partner) }, address: "198.18.0.1")
        r.context.macros = ["{tls_version}": "TLSv1.3", "{verify}": "OK", "{cn_subject}": "MX.woodgrove+2Eexample"]
        _ = try r.session.mailFrom(["<a@woodgrove.example>"], context: r.context)
        XCTAssertEqual(try r.session.recipient(["<b@contoso.com>"], context: r.context), .proceed)
        r.context.stage = .endOfMessage
        _ = try r.session.endOfMessage(context: r.context)
        XCTAssertTrue(r.log.lines[0].message.contains("inbound=\"Woodgrove\" inbound_type=partner"), r.log.lines[0].message)
        XCTAssertEqual(SessionMacros.xtextDecoded("a+20b+2"), "a b+2")
    }

    func test_authenticatedClientIsOriginating() throws {
        let r = try start(policy(), address: "2001:db8::1")
        r.context.macros = ["{auth_authen}": "alice"]
        _ = try r.session.mailFrom(["<alice@contoso.com>"], context: r.context)
        XCTAssertEqual(try r.session.recipient(["<x@other.example>"], context: r.context), .proceed)
    }

    func test_abortDropsPendingAcceptancesAndRecipientBeforeMailThrows() throws {
        let r = try start(policy(), address: "198.18.0.1")
        _ = try r.session.mailFrom(["<a@b.example>"], context: r.context)
        _ = try r.session.recipient(["<c@contoso.com>"], context: r.context)
        r.session.abort(context: r.context)
        r.context.stage = .endOfMessage
        XCTAssertThrowsError(try r.session.recipient(["<c@contoso.com>"], context: r.context))
        XCTAssertTrue(r.log.lines.isEmpty)
    }

    func test_monitorModeAcceptsAndLogsWouldAtEndOfMessage() throws {
        let r = try start(policy { $0.settings.mode = .monitor; $0.settings.stampHeaders = false }, address: "198.18.0.9")
        _ = try r.session.mailFrom(["<a@b.example>"], context: r.context)
        XCTAssertEqual(try r.session.recipient(["<c@d.example>"], context: r.context), .proceed)
        _ = try r.session.header(name: "X-Connector-Direction", value: "originating", context: r.context)
        r.context.stage = .endOfMessage
        r.context.macros["i"] = "ABC"
        _ = try r.session.endOfMessage(context: r.context)
        XCTAssertTrue(r.context.addedHeaders.isEmpty, "stampHeaders: false adds nothing")
        XCTAssertEqual(r.context.deletedHeaders.map(\.name), ["X-Connector-Direction"], "forged copies go anyway")
        XCTAssertTrue(r.log.lines[0].message.hasPrefix("ABC: verdict=accept would=reject reason=relay-denied "), r.log.lines[0].message)
    }
}
