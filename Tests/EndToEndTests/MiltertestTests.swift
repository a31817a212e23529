// The daemon at the milter protocol level, driven by libmilter's miltertest (Lua): sharper
// than a whole MTA for negotiation flags, header operations and odd connection endings.

import Foundation
import XCTest

final class MiltertestTests: LabTestCase {
    func test_protocolLevelBehaviour() throws {
        let lab = try startLab()
        try lab.startDaemon(policy: labPolicy)
        let miltertest = try LabProcess.require("miltertest", package: "miltertest")
        let script = LabPaths.fixtures + "/miltertest/protocol.lua"
        let result = try LabProcess.run([miltertest, "-D", "sock=\(lab.milterSocket)", "-s", script], timeout: 60)
        XCTAssertEqual(result.status, 0, "miltertest failed:\n\(result.output)")
        XCTAssertTrue(result.output.contains("protocol checks passed"), result.output)

        // The refusals it provoked were logged like any other.
        let relay = try lab.waitForLog(matching: "verdict=reject reason=relay-denied .*client=unknown.example\\[2001:db8::9\\]")
        XCTAssertTrue(relay.contains("from=<>"), relay)
        XCTAssertTrue(lab.daemon?.isRunning ?? false, "the daemon must survive every connection ending")
    }
}
