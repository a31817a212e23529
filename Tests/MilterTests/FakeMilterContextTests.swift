import XCTest
import Milter

/// The fake context behaves like libmilter where sessions could go wrong.
final class FakeMilterContextTests: XCTestCase {
    func testMacrosAreFoundWithOrWithoutBracesForOneLetterNames() {
        let context = FakeMilterContext(macros: ["i": "4Xyz", "{auth_authen}": "alice", "{j}": "mx.example"])
        XCTAssertEqual(context.macro("i"), "4Xyz")
        XCTAssertEqual(context.macro("{i}"), "4Xyz")
        XCTAssertEqual(context.macro("j"), "mx.example")
        XCTAssertEqual(context.macro("{auth_authen}"), "alice")
        XCTAssertNil(context.macro("auth_authen"))
        XCTAssertNil(context.macro("{cert_subject}"))
    }

    func testHeaderChangesOutsideEndOfMessageThrow() {
        let context = FakeMilterContext()
        for stage in MilterStage.allCases where stage != .endOfMessage {
            context.stage = stage
            XCTAssertThrowsError(try context.addHeader(name: "X-Connector-Inbound", value: "x")) { error in
                XCTAssertEqual(error as? MilterError, .notAtEndOfMessage(operation: "addHeader", stage: stage))
            }
            XCTAssertThrowsError(try context.deleteHeader(name: "X-Connector-Inbound", index: 1))
        }
        XCTAssertTrue(context.headerChanges.isEmpty)
    }

    func testHeaderChangesAtEndOfMessageAreRecordedInOrder() throws {
        let context = FakeMilterContext(stage: .endOfMessage)
        try context.deleteHeader(name: "X-Connector-Inbound", index: 2)
        try context.deleteHeader(name: "X-Connector-Inbound", index: 1)
        try context.addHeader(name: "X-Connector-Direction", value: "incoming")
        XCTAssertEqual(context.headerChanges.map(\.description),
                       ["delete X-Connector-Inbound[2]", "delete X-Connector-Inbound[1]",
                        "add X-Connector-Direction: incoming"])
        XCTAssertEqual(context.addedHeaders.map(\.name), ["X-Connector-Direction"])
        XCTAssertEqual(context.deletedHeaders.map(\.index), [2, 1])
    }

    func testHeadersThatWouldCorruptTheMessageAreRefused() {
        let context = FakeMilterContext(stage: .endOfMessage)
        XCTAssertThrowsError(try context.addHeader(name: "X-A", value: "a\r\nBcc: victim@example"))
        XCTAssertThrowsError(try context.addHeader(name: "X-A", value: "a\0"))
        XCTAssertThrowsError(try context.addHeader(name: "X A", value: "a"))
        XCTAssertThrowsError(try context.addHeader(name: "X-A:", value: "a"))
        XCTAssertThrowsError(try context.addHeader(name: "", value: "a"))
        XCTAssertThrowsError(try context.deleteHeader(name: "X-A", index: 0))
        XCTAssertTrue(context.headerChanges.isEmpty)
    }
}
