import XCTest
@testable import ConnectorPolicy

/// A refusal's reply cannot be built invalid: libmilter drops a reply whose class does not
/// match, and Postfix calls the milter broken.
final class SMTPReplyTests: XCTestCase {
    func testValidRepliesKeepTheirParts() throws {
        let relay = try XCTUnwrap(SMTPReply(code: 550, enhancedCode: "5.7.64", text: "Relay access denied"))
        XCTAssertEqual(relay.description, "550 5.7.64 Relay access denied")
        XCTAssertTrue(relay.isPermanent)
        let tls = try XCTUnwrap(SMTPReply(code: 454, enhancedCode: "4.7.0", text: "TLS required"))
        XCTAssertFalse(tls.isPermanent)
        XCTAssertNotNil(SMTPReply(code: 599, enhancedCode: "5.999.999", text: ""))
    }

    func testCodesOutside4xxAnd5xxAreRefused() {
        for code in [0, 250, 354, 399, 600, 999, -550] {
            XCTAssertNil(SMTPReply(code: code, enhancedCode: "5.7.1", text: "x"), "\(code)")
        }
    }

    func testEnhancedCodeMustBeWellFormedAndOfTheSameClass() {
        let cases: [(Int, String)] = [
            (550, "4.7.1"),      // 4xx enhanced code with a 5xx reply
            (451, "5.7.1"),      // and the reverse
            (550, "2.0.0"),
            (550, "5.7"),        // too few parts
            (550, "5.7.1.1"),    // too many
            (550, "5..1"),       // empty subject
            (550, "5.1000.1"),   // more than three digits
            (550, "5.7.a"),
            (550, " 5.7.1"),
            (550, ""),
        ]
        for (code, enhanced) in cases {
            XCTAssertNil(SMTPReply(code: code, enhancedCode: enhanced, text: "x"), "\(code) \(enhanced)")
        }
    }

    func testTextIsSanitizedNeverRefused() throws {
        let reply = try XCTUnwrap(SMTPReply(code: 550, enhancedCode: "5.7.1",
                                            text: "from <evil@x>\r\n250 OK\0\u{1B}[31m caf\u{E9} \u{1F600}"))
        XCTAssertEqual(reply.text, "from <evil@x>  250 OK  [31m caf? ?")
        XCTAssertFalse(reply.text.unicodeScalars.contains { $0.value < 0x20 || $0.value > 0x7E })
    }

    func testPercentIsEscapedForLibmilter() throws {
        let reply = try XCTUnwrap(SMTPReply(code: 451, enhancedCode: "4.3.0", text: "100% sure %s"))
        XCTAssertEqual(reply.text, "100% sure %s")
        XCTAssertEqual(reply.escapedText, "100%% sure %%s")
    }

    func testTextIsCutToLibmilterLimitCountingEscapes() throws {
        let long = try XCTUnwrap(SMTPReply(code: 550, enhancedCode: "5.7.1", text: String(repeating: "a", count: 2000)))
        XCTAssertEqual("550 5.7.1 ".count + long.escapedText.utf8.count, SMTPReply.maximumLength)

        let percents = try XCTUnwrap(SMTPReply(code: 550, enhancedCode: "5.7.1", text: String(repeating: "%", count: 2000)))
        XCTAssertLessThanOrEqual("550 5.7.1 ".count + percents.escapedText.utf8.count, SMTPReply.maximumLength)
        XCTAssertEqual(percents.escapedText.count % 2, 0, "never half an escape")
    }
}
