// Helpers shared by the hardening tests (HostileSessionTests, FaultTests): one lab and one
// daemon for a whole test class, process inspection through /proc, and the checks every
// hostile case ends with (the worker is the same process, no verdict line is forged).

import ConnectorPolicy
import ConnectorReview
import Foundation
import Glibc
import XCTest

/// A lab and daemon started once for a test class (a daemon stop costs ~5 s: libmilter waits
/// for its threads). Call `shared()` from each test; `stop()` from `class func tearDown`.
final class SharedLab: @unchecked Sendable {
    private let lock = NSLock()
    private var lab: PostfixLab?
    private var failure: String?
    private let policy: String
    private let configuration: PostfixLab.Configuration

    init(policy: String, configuration: PostfixLab.Configuration = PostfixLab.Configuration()) {
        self.policy = policy
        self.configuration = configuration
    }

    func shared() throws -> PostfixLab {
        try lock.withLock {
            if let lab { return lab }
            if let failure { throw LabError("the shared lab did not start: \(failure)") }
            do {
                let lab = try PostfixLab.start(configuration)
                do {
                    try lab.startDaemon(policy: policy)
                } catch {
                    lab.stop(removeDirectory: false)
                    throw error
                }
                self.lab = lab
                return lab
            } catch {
                failure = "\(error)"
                throw error
            }
        }
    }

    func stop() {
        let lab = lock.withLock { () -> PostfixLab? in defer { self.lab = nil }; return self.lab }
        guard let lab else { return }
        let keep = ProcessInfo.processInfo.environment["CONNECTOR_LAB_KEEP"].map { !$0.isEmpty && $0 != "0" } ?? false
        lab.stop(removeDirectory: !keep)
        if keep { print("lab directory kept: \(lab.directory)") }
    }
}

enum ProcessInfoReader {
    /// Live (non-zombie) children of `parent`, from /proc.
    static func children(of parent: pid_t) -> [pid_t] {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return entries.compactMap { pid_t($0) }.filter { pid in
            guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
                  let close = stat.lastIndex(of: ")") else { return false }
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            return fields.count > 2 && fields[0] != "Z" && pid_t(fields[1]) == parent
        }.sorted()
    }

    /// A field of /proc/PID/status ("Uid", "Gid", "VmRSS", ...), its values split on white space.
    static func status(_ pid: pid_t, _ field: String) -> [String]? {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return nil }
        for line in text.split(separator: "\n") where line.hasPrefix(field + ":") {
            return line.dropFirst(field.count + 1).split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
        }
        return nil
    }

    static func openDescriptors(_ pid: pid_t) -> Int? {
        (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd"))?.count
    }
}

/// Waits for `condition`, polling every 100 ms; false on timeout.
func waitFor(timeout: TimeInterval = 10, _ condition: () throws -> Bool) rethrows -> Bool {
    let deadline = Date().addingTimeInterval(timeout)
    while Date() < deadline {
        if try condition() { return true }
        usleep(100_000)
    }
    return try condition()
}

extension SMTPReply {
    /// "250 2.0.0 Ok: queued as 4ABC" -> "4ABC".
    var queueID: String? {
        guard code == 250, let range = text.range(of: "queued as ") else { return nil }
        return text[range.upperBound...].split(separator: " ").first.map(String.init)
    }
}

extension PostfixLab {
    /// The one verdict line containing `needle` (as written in the line, i.e. escaped), waiting
    /// for it: the hostile catalogues check that nothing a client sent made a second one.
    func uniqueVerdict(containing needle: String, timeout: TimeInterval = 10) throws -> String {
        var found: [String] = []
        _ = waitFor(timeout: timeout) {
            found = verdictLines().filter { $0.contains(needle) }
            return !found.isEmpty
        }
        XCTAssertLessThanOrEqual(found.count, 1, "more than one verdict line for \(needle): \(found)")
        return try XCTUnwrap(found.first, "no verdict line containing \(needle); syslog:\n\(syslogDump())")
    }
}

/// A verdict line read back as the reader sees it, or a test failure.
func verdictRecord(_ line: String) throws -> VerdictRecord {
    guard case .verdict(let record) = VerdictLineReader.parse(message: line) else {
        throw LabError("not a readable verdict line: \(line)")
    }
    return record
}
