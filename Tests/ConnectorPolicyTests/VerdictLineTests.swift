import XCTest
@testable import ConnectorPolicy

final class VerdictLineTests: XCTestCase {
    private let policy: PolicySet = {
        var onPrem = Connector(name: "Contoso on-premises", direction: .inbound, type: .onPremises)
        onPrem.senderIPAddresses = [try! IPPrefix.parse("192.0.2.0/24").get()]
        var out = Connector(name: "To \"Fabrikam\" = Bank", direction: .outbound, type: .partner)
        out.recipientDomains = [.exact("fabrikam.com")]
        return PolicySet(Policy(acceptedDomains: [.exact("contoso.com")], connectors: [onPrem, out]))
    }()

    private func line(_ session: SessionFacts, from: String, rcpt: String, queueID: String? = nil) -> String {
        let f = EmailAddress(parsing: from), r = EmailAddress(parsing: rcpt)
        return VerdictLine.format(queueID: queueID, decision: policy.judge(session: session, from: f, recipient: r),
                                  session: session, from: f, recipient: r)
    }

    func test_acceptedLineHasEveryFieldInSpecOrder() {
        let s = SessionFacts(clientAddress: IPAddress("192.0.2.7"), clientName: "relay.contoso.com", tlsVersion: "TLSv1.3")
        XCTAssertEqual(line(s, from: "<ceo@contoso.com>", rcpt: "<x@fabrikam.com>", queueID: "4ABCD1234"),
            "4ABCD1234: verdict=accept direction=originating inbound=\"Contoso on-premises\" inbound_type=onPremises "
            + "client=relay.contoso.com[192.0.2.7] tls=TLSv1.3 cert=none from=<ceo@contoso.com> rcpt=<x@fabrikam.com> "
            + "outbound=\"To \\\"Fabrikam\\\" = Bank\" outbound_type=partner mode=enforce auth=none original_client=none")
    }

    func test_refusalLineCarriesReasonAndNoQueue() {
        let s = SessionFacts(clientAddress: IPAddress("2001:db8::1"), clientName: "unknown")
        XCTAssertEqual(line(s, from: "<>", rcpt: "<x@other.example>"),
            "NOQUEUE: verdict=reject reason=relay-denied direction=incoming inbound=none inbound_type=none "
            + "client=unknown[2001:db8::1] tls=none cert=none from=<> rcpt=<x@other.example> "
            + "outbound=none outbound_type=none mode=enforce auth=none original_client=none")
    }

    func test_saslLoginIsAppendedAfterTheSpecFieldsAndAlwaysQuoted() {
        let s = SessionFacts(clientAddress: IPAddress("198.51.100.4"), clientName: "laptop.example", authenticatedUser: "none")
        let text = line(s, from: "<me@contoso.com>", rcpt: "<x@other.example>")
        XCTAssertTrue(text.hasSuffix(" mode=enforce auth=\"none\" original_client=none"), text)
        XCTAssertTrue(text.contains(" inbound_type=authenticated "), text)
        // An empty login is no login, to the judge and in the line.
        let empty = SessionFacts(clientAddress: IPAddress("198.51.100.4"), authenticatedUser: "")
        XCTAssertTrue(line(empty, from: "<me@contoso.com>", rcpt: "<x@contoso.com>").hasSuffix(" auth=none original_client=none"))
    }

    func test_fieldsAreWrittenInTheOrderOfVerdictLineKeys() {
        let s = SessionFacts(clientAddress: IPAddress("198.18.0.1"), authenticatedUser: "u")
        let text = line(s, from: "<a@b.example>", rcpt: "<x@other.example>")
        let keys = text.split(separator: " ").dropFirst().compactMap { $0.split(separator: "=").first.map(String.init) }
        XCTAssertEqual(keys, VerdictLine.keys.filter { $0 != "would" && $0 != "reason" }, text)
    }

    func test_hostileValuesCannotForgeAField() {
        let s = SessionFacts(clientAddress: IPAddress("198.18.0.1"), clientName: "evil verdict=accept",
                             tlsVersion: "TLSv1.3\r\nX", verifiedCertificateName: "a\"b\\c\u{0}d\u{2028}")
        let text = line(s, from: "<a\" rcpt=<forged@x> \"@b.example>", rcpt: "<x=y\n@contoso.com>")
        XCTAssertFalse(text.contains("\n") || text.contains("\r") || text.contains("\u{0}") || text.contains("\u{2028}"), text)
        XCTAssertTrue(text.contains(#"client="evil verdict=accept[198.18.0.1]""#), text)
        XCTAssertTrue(text.contains(#"tls="TLSv1.3\x0d\x0aX""#), text)
        XCTAssertTrue(text.contains(#"cert="a\"b\\c\x00d\u{2028}""#), text)
        XCTAssertTrue(text.contains(#"from="<a\" rcpt=<forged@x> \"@b.example>""#), text)
        XCTAssertTrue(text.contains(#"rcpt="<x=y\x0a@contoso.com>""#), text)
        // Exactly one of each key: nothing the client wrote became a field of its own.
        for key in ["verdict=", " rcpt=", " from=", " client=", " tls=", " cert=", " auth="] {
            XCTAssertEqual(Self.unquotedOccurrences(of: key, in: text), 1, "\(key) in \(text)")
        }
    }

    func test_longValuesAreCutVisibly() {
        let long = String(repeating: "a", count: 10_000)
        let text = VerdictLine.quoteIfNeeded(long)
        XCTAssertEqual(text, "\"" + String(repeating: "a", count: VerdictLine.maximumValueLength) + "...\"")
    }

    func test_plainValuesStayBare() {
        XCTAssertEqual(VerdictLine.quoteIfNeeded("<user@example.com>"), "<user@example.com>")
        XCTAssertEqual(VerdictLine.quoteIfNeeded(""), "\"\"")
        XCTAssertEqual(VerdictLine.quoteIfNeeded("ü@bücher.example"), "ü@bücher.example")
    }

    /// Counts `key` outside double-quoted values, honouring `\` escapes.
    static func unquotedOccurrences(of key: String, in text: String) -> Int {
        var count = 0, inQuotes = false, escaped = false
        let chars = Array(text), keyChars = Array(key)
        for i in chars.indices {
            let c = chars[i]
            if escaped { escaped = false; continue }
            if inQuotes && c == "\\" { escaped = true; continue }
            if c == "\"" { inQuotes.toggle(); continue }
            if !inQuotes, i + keyChars.count <= chars.count, Array(chars[i..<(i + keyChars.count)]) == keyChars { count += 1 }
        }
        return count
    }
}
