import Foundation
import XCTest
@testable import ConnectorPolicy
@testable import ConnectorReview

/// Reading verdict lines back: every syslog format an administrator may have, every value
/// `VerdictLine` can write, and lines that were cut, mangled or forged.
final class VerdictLineReaderTests: XCTestCase {
    static let utc = TimeZone(identifier: "UTC")!
    /// 2026-12-01T00:00:00Z: RFC 3164 lines are read in 2026.
    static let now = Date(timeIntervalSince1970: 1_796_083_200)

    static let message = "4ABCD1234: verdict=accept direction=originating inbound=\"Contoso on-premises\" "
        + "inbound_type=onPremises client=relay.contoso.com[192.0.2.7] tls=TLSv1.3 cert=none "
        + "from=<ceo@contoso.com> rcpt=<x@fabrikam.com> outbound=\"To Fabrikam\" outbound_type=partner mode=enforce auth=none"

    func read(_ line: String, now: Date = now, timeZone: TimeZone = utc) -> VerdictLineReader.Line {
        var clock = LogClock(now: now, timeZone: timeZone)
        return VerdictLineReader.parse(line: line, clock: &clock)
    }

    func record(_ line: String, file: StaticString = #filePath, line number: UInt = #line) -> VerdictRecord? {
        guard case .verdict(let r) = read(line) else {
            XCTFail("not read as a verdict line: \(read(line))", file: file, line: number)
            return nil
        }
        return r
    }

    // MARK: Syslog formats

    func test_verdictLinesAreFoundInEverySyslogFormat() {
        let cases: [(name: String, line: String, time: String?, host: String?)] = [
            ("RFC 3164 file line", "Nov 29 01:02:03 mx1 connector-milter[123]: " + Self.message, "2026-11-29T01:02:03Z", "mx1"),
            ("RFC 3164, day padded with a space", "Nov  9 01:02:03 mx1 connector-milter[123]: " + Self.message, "2026-11-09T01:02:03Z", "mx1"),
            ("RFC 3164 without pid", "Nov 29 01:02:03 mx1 connector-milter: " + Self.message, "2026-11-29T01:02:03Z", "mx1"),
            ("raw syslog(3) datagram, no host", "<22>Nov 29 01:02:03 connector-milter[123]: " + Self.message, "2026-11-29T01:02:03Z", nil),
            ("rsyslog high precision", "2026-11-29T01:02:03.123456+00:00 mx1 connector-milter[123]: " + Self.message, "2026-11-29T01:02:03Z", "mx1"),
            ("rsyslog high precision, other zone", "2026-11-29T02:02:03.5+01:00 mx1 connector-milter[123]: " + Self.message, "2026-11-29T01:02:03Z", "mx1"),
            ("journalctl short-iso", "2026-11-29T01:02:03+0000 mx1 connector-milter[123]: " + Self.message, "2026-11-29T01:02:03Z", "mx1"),
            ("RFC 5424", "<22>1 2026-11-29T01:02:03.000Z mx1 connector-milter 123 - - " + Self.message, "2026-11-29T01:02:03Z", "mx1"),
            ("RFC 5424 with structured data and BOM",
             "<22>1 2026-11-29T01:02:03Z mx1 connector-milter 123 ID47 [ex@1 a=\"x\\]y\"][b@1 c=\"d\"] \u{FEFF}" + Self.message,
             "2026-11-29T01:02:03Z", "mx1"),
            ("bare message, as classify prints it", Self.message, nil, nil),
            ("CRLF line ending", "Nov 29 01:02:03 mx1 connector-milter[123]: " + Self.message + "\r", "2026-11-29T01:02:03Z", "mx1"),
            ("--log stderr, with the priority", "2026-11-29T01:02:03.035Z connector-milter[123]: info: " + Self.message,
             "2026-11-29T01:02:03Z", nil),
        ]
        let clock = LogClock(now: Self.now, timeZone: Self.utc)
        for c in cases {
            guard let r = record(c.line) else { XCTFail(c.name); continue }
            XCTAssertEqual(r.timestamp.map(clock.format), c.time, c.name)
            XCTAssertEqual(r.host, c.host, c.name)
            XCTAssertEqual(r.queueID, "4ABCD1234", c.name)
            XCTAssertEqual(r.recipient, "x@fabrikam.com", c.name)
        }
    }

    func test_otherProgramsAndOtherMessagesAreSkipped() {
        let cases: [(String, String)] = [
            ("a postfix line", "Nov 29 01:02:03 mx1 postfix/smtpd[100]: NOQUEUE: reject: RCPT from unknown[198.51.100.1]: 554"),
            ("another program quoting our line", "Nov 29 01:02:03 mx1 logger: " + Self.message),
            ("a program whose name starts like ours", "Nov 29 01:02:03 mx1 connector-milter-old[1]: " + Self.message),
            ("the daemon's other messages", "Nov 29 01:02:03 mx1 connector-milter[123]: policy reloaded from /etc/x.yaml"),
            ("verdict= not in the verdict position", "Nov 29 01:02:03 mx1 connector-milter[123]: reload failed: verdict=accept"),
            ("an empty line", ""),
            ("a line of spaces", "   "),
            ("a date and nothing else", "Nov 29 01:02:03"),
            // Short lines whose first word ends in ": " once read past their end.
            ("a short message after a word and a colon", "Nov 29 01:02:03 mx1 connector-milter[123]: info: x"),
            ("--log stderr, another message", "2026-11-29T01:28:51.035Z connector-milter[1]: info: supervisor 1 started worker 2"),
            ("a word, a colon and a space at the very end", "connector-milter[1]: a: "),
            ("seven bytes after the first colon, one short of verdict=", "connector-milter[1]: a: 1234567"),
            ("RFC 5424 from another program", "<22>1 2026-11-29T01:02:03Z mx1 postfix 1 - - " + Self.message),
        ]
        for (name, line) in cases {
            XCTAssertEqual(read(line), .other, name)
        }
    }

    // MARK: Hostile and truncated lines

    func test_hostileAndTruncatedVerdictLinesAreMalformedNotGuessed() {
        let head = "Nov 29 01:02:03 mx1 connector-milter[123]: "
        let m = Self.message
        let cases: [(name: String, line: String, why: String)] = [
            ("cut in the middle of a quoted name", head + String(m.prefix(60)), "inbound: quoted value does not end (line cut short?)"),
            ("cut right after verdict=", head + "4ABC: verdict=", "verdict=\"\" is not a known value"),
            ("cut after a key", head + "4ABC: verdict=accept direction", "expected key=value at byte 65"),
            ("a field missing", head + m.replacingOccurrences(of: " tls=TLSv1.3", with: ""), "no tls= field"),
            ("a forged second rcpt", head + m + " rcpt=<forged@contoso.com>", "rcpt appears twice"),
            ("an unknown verdict", head + m.replacingOccurrences(of: "verdict=accept", with: "verdict=maybe"),
             "verdict=maybe is not a known value"),
            ("a quoted verdict", head + m.replacingOccurrences(of: "verdict=accept", with: "verdict=\"accept\""),
             "verdict=accept is not a known value"),
            ("a bad escape", head + m.replacingOccurrences(of: "\"To Fabrikam\"", with: "\"To \\q\""),
             "outbound: unknown escape \\q"),
            ("a \\x escape above ASCII", head + m.replacingOccurrences(of: "\"To Fabrikam\"", with: "\"To \\xff\""),
             "outbound: \\x escape above 7F"),
            ("a \\u escape that is no scalar", head + m.replacingOccurrences(of: "\"To Fabrikam\"", with: "\"To \\u{d800}\""),
             "outbound: bad \\u{...} escape"),
            ("a raw tab in a quoted value", head + m.replacingOccurrences(of: "\"To Fabrikam\"", with: "\"To\tFabrikam\""),
             "outbound: raw control character in a quoted value"),
            ("a quote in a bare value", head + m.replacingOccurrences(of: "tls=TLSv1.3", with: "tls=TLS\"v1.3"),
             "tls: unquoted value holds a quote, a backslash or a control character"),
            ("two spaces between fields", head + m.replacingOccurrences(of: " tls=", with: "  tls="), "expected key=value at byte 182"),
            ("an address without brackets", head + m.replacingOccurrences(of: "rcpt=<x@fabrikam.com>", with: "rcpt=x@fabrikam.com"),
             "rcpt= must be an address in angle brackets"),
            ("a client without an address", head + m.replacingOccurrences(of: "[192.0.2.7]", with: ""), "client= must be NAME[ADDRESS]"),
            ("a client address that is none", head + m.replacingOccurrences(of: "[192.0.2.7]", with: "[999.1.1.1]"),
             "client= address \"999.1.1.1\" is not an IP address"),
            ("an unquoted connector name", head + m.replacingOccurrences(of: "inbound=\"Contoso on-premises\"", with: "inbound=Contoso"),
             "inbound= must be \"NAME\" in quotes or none"),
            ("an unquoted login", head + m.replacingOccurrences(of: "auth=none", with: "auth=root"),
             "auth= must be \"LOGIN\" in quotes or none"),
        ]
        for c in cases {
            XCTAssertEqual(read(c.line), .malformed(c.why), c.name)
        }
    }

    func test_aLineCutByTheSplitterIsMalformedEvenIfItsFieldsParse() {
        var clock = LogClock(now: Self.now, timeZone: Self.utc)
        var text = "Nov 29 01:02:03 mx1 connector-milter[123]: " + Self.message
        let line = text.withUTF8 { VerdictLineReader.parse(bytes: $0, complete: false, clock: &clock) }
        XCTAssertEqual(line, .malformed("line longer than \(VerdictLineReader.maximumLineLength) bytes, cut"))
    }

    func test_unknownFieldsFromANewerVersionAreIgnored() {
        let r = record(Self.message + " helo=\"x y\" future=1")
        XCTAssertEqual(r?.authenticatedUser, nil)
        XCTAssertEqual(r?.missingFacts, [])
    }

    func test_linesFromBeforeTheAuthFieldReadWithTheLoginUnknown() {
        let old = Self.message.replacingOccurrences(of: " auth=none", with: "")
        XCTAssertEqual(record(old)?.missingFacts, ["auth"])
        XCTAssertEqual(record(old)?.authenticatedUser, nil)
        XCTAssertEqual(record(Self.message.replacingOccurrences(of: "auth=none", with: "auth=\"none\""))?.authenticatedUser, "none")
    }

    // MARK: Round trip: whatever the writer writes, the reader reads back as the same facts

    func test_everyFactTheJudgeReadsSurvivesTheLine() {
        var onPrem = Connector(name: "On \"prem\" = \\ here", direction: .inbound, type: .onPremises)
        onPrem.senderIPAddresses = [try! IPPrefix.parse("192.0.2.0/24").get()]
        var partner = Connector(name: "Fabrikam", direction: .inbound, type: .partner)
        partner.senderDomains = [.exact("fabrikam.com")]
        partner.senderIPAddresses = [try! IPPrefix.parse("203.0.113.0/24").get()]
        partner.restrictDomainsToIPAddresses = true
        partner.mode = .monitor
        var out = Connector(name: "To ünïcode\u{2028}", direction: .outbound, type: .partner)
        out.recipientDomains = [.any]
        let policy = PolicySet(Policy(acceptedDomains: [.exact("contoso.com")], connectors: [onPrem, partner, out]))

        let long = String(repeating: "é", count: 600)
        let cases: [(name: String, session: SessionFacts, from: String, rcpt: String, missing: [String])] = [
            ("plain", SessionFacts(clientAddress: IPAddress("192.0.2.7"), clientName: "relay.contoso.com"), "<a@contoso.com>", "<b@x.example>", []),
            ("IPv6, TLS, verified certificate", SessionFacts(clientAddress: IPAddress("2001:db8::25"), tlsVersion: "TLSv1.3",
                                                            verifiedCertificateName: "mx.contoso.com"), "<>", "<b@contoso.com>", []),
            ("no client address", SessionFacts(clientAddress: nil), "<a@fabrikam.com>", "<b@contoso.com>", []),
            ("SASL login with spaces and quotes", SessionFacts(clientAddress: IPAddress("198.51.100.1"), authenticatedUser: "a \"b\" = c"),
             "<a@contoso.com>", "<b@x.example>", []),
            ("hostile names", SessionFacts(clientAddress: IPAddress("198.18.0.1"), clientName: "evil verdict=accept[1.2.3.4]",
                                           tlsVersion: "TLSv1.3\r\nX", verifiedCertificateName: "a\"b\\c\u{0}d\u{2028}\u{7F}\u{85}"),
             "<a\" rcpt=<forged@x> \"@b.example>", "<x=y\n@contoso.com>", []),
            ("monitor-mode partner refusal", SessionFacts(clientAddress: IPAddress("198.18.0.9")), "<pay@fabrikam.com>", "<ap@contoso.com>", []),
            ("empty TLS version", SessionFacts(clientAddress: IPAddress("198.18.0.9"), tlsVersion: ""), "<a@b.example>", "<c@contoso.com>", []),
            ("a MAIL FROM cut at 512 characters", SessionFacts(clientAddress: IPAddress("198.18.0.9")), "<\(long)@b.example>", "<c@contoso.com>", ["from"]),
        ]
        for c in cases {
            let from = EmailAddress(parsing: c.from), rcpt = EmailAddress(parsing: c.rcpt)
            let decision = policy.judge(session: c.session, from: from, recipient: rcpt)
            let text = VerdictLine.format(queueID: "Q1", decision: decision, session: c.session, from: from, recipient: rcpt)
            guard case .verdict(let r) = read(text) else { XCTFail("\(c.name): \(read(text))\n\(text)"); continue }
            XCTAssertEqual(r.missingFacts, c.missing, c.name)
            XCTAssertEqual(VerdictLineReader.conformanceProblems(text), [], c.name)
            XCTAssertEqual(r.verdict, decision.verdict, c.name)
            XCTAssertEqual(r.would, decision.wouldBe, c.name)
            XCTAssertEqual(r.reason, decision.refusal?.reason.rawValue, c.name)
            XCTAssertEqual(r.inbound, decision.inbound?.name, c.name)
            XCTAssertEqual(r.outbound, decision.outbound?.name, c.name)
            XCTAssertEqual(r.mode, decision.mode, c.name)
            guard c.missing.isEmpty else { continue }
            var expected = c.session
            expected.helo = nil  // not logged: the judge does not read it
            if !expected.isTLS { expected.verifiedCertificateName = nil }  // the judge ignores it then
            if expected.authenticatedUser == "" { expected.authenticatedUser = nil }
            XCTAssertEqual(r.sessionFacts, expected, c.name)
            XCTAssertEqual(r.sender, from, c.name)
            XCTAssertEqual(r.recipientAddress, rcpt, c.name)
            XCTAssertEqual(policy.judge(session: r.sessionFacts, from: r.sender, recipient: r.recipientAddress), decision, c.name)
        }
    }

    func test_conformanceNamesWhatIsMissingOrOutOfOrder() {
        let current = Self.message + " original_client=none"
        XCTAssertEqual(VerdictLineReader.conformanceProblems(current), [])
        let old = current.replacingOccurrences(of: " auth=none", with: "")
        XCTAssertEqual(VerdictLineReader.conformanceProblems(old).count, 1)
        XCTAssertEqual(VerdictLineReader.conformanceProblems(Self.message).count, 1, "a line from before original_client=")
        let swapped = current.replacingOccurrences(of: "tls=TLSv1.3 cert=none", with: "cert=none tls=TLSv1.3")
        XCTAssertTrue(VerdictLineReader.conformanceProblems(swapped).first?.hasPrefix("keys are ") ?? false)
        XCTAssertEqual(VerdictLineReader.conformanceProblems("hello"), ["not a verdict line"])
    }

    // MARK: Time

    func test_yearlessTimesAreReadInTheCurrentOrPreviousYear() {
        let clock = LogClock(now: Date(timeIntervalSince1970: 1_798_848_000), timeZone: Self.utc)  // 2027-01-02T00:00:00Z
        let cases = [
            ("Jan  1 10:00:00", "2027-01-01T10:00:00Z"),
            ("Jan  2 23:59:59", "2027-01-02T23:59:59Z"),  // within a day of now: clocks differ a little
            ("Dec 31 23:00:00", "2026-12-31T23:00:00Z"),
            ("Mar 15 00:00:00", "2026-03-15T00:00:00Z"),
        ]
        for (stamp, expected) in cases {
            var c = clock
            guard case .verdict(let r) = VerdictLineReader.parse(line: "\(stamp) h connector-milter: " + Self.message, clock: &c) else {
                XCTFail(stamp); continue
            }
            XCTAssertEqual(r.timestamp.map(clock.format), expected, stamp)
        }
    }

    func test_yearlessTimesAreLocal() {
        let paris = TimeZone(identifier: "Europe/Paris")!
        guard case .verdict(let r) = read("Jul 14 12:00:00 h connector-milter: " + Self.message, timeZone: paris) else { return XCTFail() }
        XCTAssertEqual(r.timestamp.map(LogClock(now: Self.now, timeZone: Self.utc).format), "2026-07-14T10:00:00Z")
    }

    func test_timeArgumentsTakeDatesTimesAndZones() {
        var clock = LogClock(now: Self.now, timeZone: Self.utc)
        let cases: [(String, String?)] = [
            ("2026-11-29", "2026-11-29T00:00:00Z"),
            ("2026-11-29T01:00", "2026-11-29T01:00:00Z"),
            ("2026-11-29 01:00:30", "2026-11-29T01:00:30Z"),
            ("2026-11-29T01:00+01:00", "2026-11-29T00:00:00Z"),
            ("2026-11-29T01:00:00Z", "2026-11-29T01:00:00Z"),
            ("yesterday", nil), ("2026-13-01", nil), ("2026-11-29T25:00", nil), ("2026-11", nil), ("", nil),
        ]
        for (text, expected) in cases {
            XCTAssertEqual(clock.parseArgument(text).map(clock.format), expected, text)
        }
    }

    // MARK: Splitting chunks into lines

    func test_linesSplitAcrossChunksAreJoined() {
        let text = Array("one\ntwo is longer\n\nthree".utf8)
        for chunkSize in 1...text.count {
            var splitter = LogLineSplitter()
            var lines: [String] = []
            func collect(_ line: UnsafeBufferPointer<UInt8>, _ complete: Bool) {
                XCTAssertTrue(complete)
                lines.append(String(decoding: line, as: UTF8.self))
            }
            var start = 0
            while start < text.count {
                let end = min(text.count, start + chunkSize)
                text[start..<end].withUnsafeBufferPointer { splitter.feed($0, collect) }
                start = end
            }
            splitter.finish(collect)
            XCTAssertEqual(lines, ["one", "two is longer", "", "three"], "chunks of \(chunkSize)")
        }
    }

    func test_anEndlessLineIsCutNotHeld() {
        let limit = VerdictLineReader.maximumLineLength
        var splitter = LogLineSplitter()
        var seen: [(Int, Bool)] = []
        let chunk = [UInt8](repeating: UInt8(ascii: "a"), count: limit / 2 + 7)
        for _ in 0..<5 { chunk.withUnsafeBufferPointer { splitter.feed($0) { seen.append(($0.count, $1)) } } }
        [UInt8(ascii: "\n"), UInt8(ascii: "b"), UInt8(ascii: "\n")].withUnsafeBufferPointer { splitter.feed($0) { seen.append(($0.count, $1)) } }
        XCTAssertEqual(seen.map(\.0), [limit, 1])
        XCTAssertEqual(seen.map(\.1), [false, true])
    }

    // MARK: Enhanced filtering

    func test_theOriginalClientIsReadAndLinesWithoutItStayValid() {
        guard case .verdict(let r) = VerdictLineReader.parse(message: Self.message + " original_client=2001:db8::7") else {
            return XCTFail("not read")
        }
        XCTAssertEqual(r.originalClient, IPAddress("2001:db8::7"))
        XCTAssertTrue(r.hasOriginalClientField)
        guard case .verdict(let none) = VerdictLineReader.parse(message: Self.message + " original_client=none") else {
            return XCTFail("not read")
        }
        XCTAssertNil(none.originalClient)
        XCTAssertTrue(none.hasOriginalClientField)
        guard case .verdict(let old) = VerdictLineReader.parse(message: Self.message) else { return XCTFail("not read") }
        XCTAssertNil(old.originalClient)
        XCTAssertFalse(old.hasOriginalClientField)
        XCTAssertEqual(old.missingFacts, [], "a line from before enhanced filtering lacks nothing the judge needed then")
        for bad in ["original_client=\"192.0.2.1\"", "original_client=nobody", "original_client=192.0.2.1/24"] {
            guard case .malformed(let why) = VerdictLineReader.parse(message: Self.message + " " + bad) else {
                XCTFail("\(bad) read as valid"); continue
            }
            XCTAssertTrue(why.contains("original_client="), why)
        }
    }
}
