// The milters a lab can put behind Postfix: the real connector-milter daemon (SPEC
// section 5: `connector-milter run`) and the C pass-through milter from bench/.

import Foundation
import Glibc

/// A milter process the lab started; stopped by its PID.
final class LabMilterProcess: @unchecked Sendable {
    let pid: pid_t
    /// "unix:/path" as given to --socket / smtpd_milters.
    let socket: String
    /// Where its stdout and stderr go.
    let outputPath: String
    let pidfile: String?

    init(pid: pid_t, socket: String, outputPath: String, pidfile: String?) {
        self.pid = pid
        self.socket = socket
        self.outputPath = outputPath
        self.pidfile = pidfile
    }

    var isRunning: Bool { LabProcess.isAlive(pid) }

    /// What it wrote on stdout/stderr.
    var output: String { (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? "" }

    /// kill(pid, signal), e.g. SIGUSR1/SIGHUP to reload.
    func signal(_ signal: Int32) {
        kill(pid, signal)
    }

    /// SIGTERM, then SIGKILL after `grace` seconds. Returns the exit status, nil if it had to
    /// be killed. Any process left in its process group (a worker the daemon forked) is then
    /// stopped by PID too.
    @discardableResult
    func stop(grace: TimeInterval = 10) -> Int32? {
        defer {
            for member in LabProcess.processGroupMembers(pid) { LabProcess.terminate(member, grace: 2) }
        }
        if let waitpidStatus { return waitpidStatus }
        if let status = LabProcess.waitForExit(pid, timeout: 0) {  // already exited
            waitpidStatus = status
            return status
        }
        kill(pid, SIGTERM)
        if let status = LabProcess.waitForExit(pid, timeout: grace) {
            waitpidStatus = status
            return status
        }
        kill(pid, SIGKILL)
        _ = LabProcess.waitForExit(pid, timeout: 5)
        return nil
    }

    /// Waits for the process to exit on its own (e.g. after a bad config); nil on timeout.
    func waitForExit(timeout: TimeInterval) -> Int32? {
        if let waitpidStatus { return waitpidStatus }
        waitpidStatus = LabProcess.waitForExit(pid, timeout: timeout)
        return waitpidStatus
    }

    private var waitpidStatus: Int32?
}

enum ConnectorMilterBinary {
    /// The connector-milter executable: $CONNECTOR_MILTER_BIN, else next to the running test
    /// bundle (SwiftPM puts both in .build/<triple>/debug).
    static func binaryPath() throws -> String {
        if let path = ProcessInfo.processInfo.environment["CONNECTOR_MILTER_BIN"], !path.isEmpty {
            guard FileManager.default.isExecutableFile(atPath: path) else {
                throw LabError("CONNECTOR_MILTER_BIN=\(path) is not an executable file")
            }
            return path
        }
        var candidates: [String] = []
        if let executable = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") {
            candidates.append((executable as NSString).deletingLastPathComponent + "/connector-milter")
        }
        candidates.append(Bundle.main.bundleURL.deletingLastPathComponent().appendingPathComponent("connector-milter").path)
        candidates.append(Bundle.main.bundleURL.appendingPathComponent("connector-milter").path)
        for candidate in candidates where FileManager.default.isExecutableFile(atPath: candidate) {
            return candidate
        }
        throw LabError("""
            cannot find the connector-milter binary (looked at \(candidates.joined(separator: ", "))); \
            build it (`swift build`) or set CONNECTOR_MILTER_BIN
            """)
    }
}

enum PassthroughMilter {
    /// bench/passthrough-milter.c, compiled into the system temp dir (again when the source
    /// is newer than the binary).
    static func binaryPath() throws -> String {
        try buildLock.withLock {
            let source = LabPaths.repositoryRoot + "/bench/passthrough-milter.c"
            guard FileManager.default.fileExists(atPath: source) else {
                throw LabError("missing \(source)")
            }
            let binary = FileManager.default.temporaryDirectory.path + "/connector-lab-passthrough-milter"
            if FileManager.default.isExecutableFile(atPath: binary), modified(binary) >= modified(source) {
                return binary
            }
            // gcc, or the C compiler every Swift toolchain ships.
            guard let compiler = ["gcc", "cc", "clang"].lazy.compactMap(LabProcess.which).first else {
                throw LabError("building the pass-through milter needs a C compiler: apt-get install gcc")
            }
            guard FileManager.default.fileExists(atPath: "/usr/include/libmilter/mfapi.h") else {
                throw LabError("building the pass-through milter needs libmilter's headers: apt-get install libmilter-dev")
            }
            let scratch = binary + ".\(getpid())"
            try LabProcess.check([compiler, "-O2", "-Wall", "-o", scratch, source, "-lmilter", "-lpthread"])
            guard rename(scratch, binary) == 0 else {
                throw LabError("rename \(scratch): \(String(cString: strerror(errno)))")
            }
            return binary
        }
    }

    private static func modified(_ path: String) -> Date {
        ((try? FileManager.default.attributesOfItem(atPath: path))?[.modificationDate] as? Date) ?? .distantPast
    }

    private static let buildLock = NSLock()
}

enum LabPaths {
    /// The repository root, from this file's place in Tests/EndToEndTests/Support/.
    static let repositoryRoot: String = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<4 { url.deleteLastPathComponent() }
        return url.path
    }()

    /// Tests/EndToEndTests/Fixtures
    static var fixtures: String { repositoryRoot + "/Tests/EndToEndTests/Fixtures" }
}
