import XCTest
import ConnectorPolicy
import Milter
@testable import ConnectorDaemon
@testable import ConnectorReview

/// Empty, missing and hostile macros through the session handler (issue 7): nothing crashes,
/// nothing identifies anyone that should not, and every verdict line conforms.
final class HostileMacrosTests: XCTestCase {
    private let policy: PolicySet = {
        var onPrem = Connector(name: "Contoso on-premises", direction: .inbound, type: .onPremises)
        onPrem.tlsSenderCertificateName = .wildcard("contoso.com")
        return PolicySet(Policy(acceptedDomains: [.exact("contoso.com")], connectors: [onPrem]))
    }()

    private static let relayDenied = MilterResponse.refuse(SMTPReply(code: 550, enhancedCode: "5.7.64", text: "Relay access denied")!)

    /// Connect, MAIL and one RCPT to a foreign domain with these macros; the reply and the verdict line.
    private func judge(macros: [String: String], hostname: String = "client.example", address: String? = "198.18.0.1",
                       mail: [String] = ["<a@example.org>"], rcpt: [String] = ["<x@far.example>"]) throws -> (MilterResponse, String) {
        let log = MemoryLogSink()
        let session = ConnectorSession(policy: policy, log: log)
        let context = FakeMilterContext(macros: macros)
        _ = try session.connect(hostname: hostname, address: address, context: context)
        _ = try session.helo("", context: context)
        _ = try session.mailFrom(mail, context: context)
        let response = try session.recipient(rcpt, context: context)
        context.stage = .endOfMessage
        _ = try session.endOfMessage(context: context)
        session.close()
        let line = try XCTUnwrap(log.lines.last?.message)
        XCTAssertEqual(VerdictLineReader.conformanceProblems(line), [], line)
        return (response, line)
    }

    func test_noMacrosNoAddressNoArguments_areAStrangerWithTheNullSender() throws {
        let (response, line) = try judge(macros: [:], hostname: "", address: nil, mail: [], rcpt: [])
        XCTAssertEqual(response, Self.relayDenied, "no domain is no accepted domain: fail closed")
        XCTAssertTrue(line.contains(" client=unknown[unknown] tls=none cert=none from=<> rcpt=<> "), line)
    }

    func test_emptyMacros_sayNothing() throws {
        let (response, line) = try judge(macros: ["{tls_version}": "", "{cert_subject}": "relay.contoso.com", "{auth_authen}": "",
                                                  "i": ""])
        XCTAssertEqual(response, Self.relayDenied)
        XCTAssertTrue(line.hasPrefix("NOQUEUE: "), line)
        XCTAssertTrue(line.contains(" tls=none cert=none ") && line.hasSuffix(" auth=none original_client=none"), line)
    }

    func test_verifiedSendmailNameDecodingToNoHostName_identifiesNobody() throws {
        for encoded in ["relay+0A+22x+22.contoso.com", "relay+00.contoso.com", "a+20b.contoso.com", "+2A.contoso.com"] {
            let (response, line) = try judge(macros: ["{tls_version}": "TLSv1.3", "{verify}": "OK", "{cn_subject}": encoded])
            XCTAssertEqual(response, Self.relayDenied, line)
            XCTAssertTrue(line.contains(" inbound=none "), line)
        }
        let (ok, _) = try judge(macros: ["{tls_version}": "TLSv1.3", "{verify}": "OK", "{cn_subject}": "relay+2Econtoso.com"])
        XCTAssertEqual(ok, .proceed)
    }

    func test_unverifiedOrDistinguishedNames_identifyNobody() throws {
        for macros in [["{tls_version}": "TLSv1.3", "{verify}": "FAIL", "{cn_subject}": "relay.contoso.com"],
                       ["{tls_version}": "TLSv1.3", "{cert_subject}": "/CN=relay.contoso.com"],
                       ["{tls_version}": "TLSv1.3", "{verify}": "OK"],
                       ["{cert_subject}": "relay.contoso.com"]] {
            let (response, line) = try judge(macros: macros)
            XCTAssertEqual(response, Self.relayDenied, "\(macros): \(line)")
        }
    }

    func test_hostileQueueIDAndHostname_stayInTheirFields() throws {
        let (_, line) = try judge(macros: ["i": "4ABC verdict=accept\n"], hostname: "a b\"c")
        XCTAssertTrue(line.hasPrefix(#""4ABC verdict=accept\x0a": verdict=reject"#), line)
    }

    func test_callbacksOutOfOrder_throwOrProceedButNeverCrash() throws {
        let log = MemoryLogSink()
        let session = ConnectorSession(policy: policy, log: log)
        let context = FakeMilterContext()
        XCTAssertThrowsError(try session.recipient(["<x@far.example>"], context: context), "RCPT before MAIL")
        context.stage = .endOfMessage
        XCTAssertEqual(try session.endOfMessage(context: context), .proceed)
        session.abort(context: context)
        session.close()
        XCTAssertTrue(log.lines.isEmpty)
    }
}
