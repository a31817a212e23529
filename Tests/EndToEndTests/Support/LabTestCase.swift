// Base class for end-to-end tests: `startLab()` gives the test a fresh PostfixLab that is
// stopped (every process, by PID) in tearDown. A failed test's lab directory is kept and
// its path printed; CONNECTOR_LAB_KEEP=1 keeps every one.

import Foundation
import XCTest

class LabTestCase: XCTestCase {
    private var labs: [PostfixLab] = []

    /// Starts a lab for this test. Throws (failing the test loudly) when not root or a
    /// tool is missing.
    func startLab(_ configuration: PostfixLab.Configuration = PostfixLab.Configuration()) throws -> PostfixLab {
        let lab = try PostfixLab.start(configuration)
        labs.append(lab)
        return lab
    }

    override func tearDown() {
        let keepAll = ProcessInfo.processInfo.environment["CONNECTOR_LAB_KEEP"].map { !$0.isEmpty && $0 != "0" } ?? false
        let failed = (testRun?.totalFailureCount ?? 0) > 0
        for lab in labs {
            let keep = keepAll || failed
            lab.stop(removeDirectory: !keep)
            if keep { print("lab directory kept: \(lab.directory) (maillog, syslog, sink/ ...)") }
        }
        labs.removeAll()
        super.tearDown()
    }
}
