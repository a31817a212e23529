// Log files into verdict lines, for `report` and `simulate`: plain files, gzip rotations
// (`mail.log.2.gz`), or standard input.
//
// gzip is read through `gzip -dc`, not a library: Foundation on Linux has no gzip, and the
// gzip program is on every system that rotates logs with it. A rotation is recognized by its
// magic bytes, not its name, since logrotate's names vary (delaycompress, dateext).

import ArgumentParser
import ConnectorDaemon
import ConnectorPolicy
import ConnectorReview
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Why reading the logs stopped or fell short, with the sysexits code to leave with.
struct LogInputError: Error, CustomStringConvertible {
    static let noInput = Sysexit.noInput.exitCode
    static let dataError = Sysexit.dataError.exitCode

    let exitCode: ExitCode
    let description: String
}

enum LogInput {
    static let chunkSize = 1 << 20

    /// Reads every line of `paths` (standard input when empty) in order, handing each to
    /// `body` with a closure naming it (`FILE:LINE`) for messages. Throws when a file cannot
    /// be opened (nothing is read after it); returns the files that could not be read to the
    /// end (a corrupt gzip file), whose readable part was read.
    static func read(_ paths: [String], clock: inout LogClock,
                     _ body: (VerdictLineReader.Line, () -> String) -> Void) throws -> [LogInputError] {
        try readLines(paths) { line, complete, location in
            let parsed = VerdictLineReader.parse(bytes: line, complete: complete, clock: &clock)
            withoutActuallyEscaping(location) { body(parsed, $0) }
        }
    }

    /// The same, handing on each raw line (cut lines flagged incomplete), for readers of
    /// other programs' lines too (`trace`).
    static func readLines(_ paths: [String],
                          _ body: (UnsafeBufferPointer<UInt8>, Bool, () -> String) -> Void) throws -> [LogInputError] {
        var shortfalls: [LogInputError] = []
        for path in paths.isEmpty ? ["-"] : paths {
            if let shortfall = try readOne(path, body) { shortfalls.append(shortfall) }
        }
        return shortfalls
    }

    private static func readOne(_ path: String,
                                _ body: (UnsafeBufferPointer<UInt8>, Bool, () -> String) -> Void) throws -> LogInputError? {
        let name = path == "-" ? "(standard input)" : path
        var fd: Int32 = 0
        if path != "-" {
            fd = open(path, O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else {
                throw LogInputError(exitCode: LogInputError.noInput, description: "\(path): \(String(cString: strerror(errno)))")
            }
        }
        defer { if path != "-" { close(fd) } }

        var buffer = [UInt8](repeating: 0, count: chunkSize)
        var n = try readChunk(fd, &buffer, name: name)
        var source = fd
        var gzip: (process: Process, pipe: Pipe)? = nil
        if n >= 2 && buffer[0] == 0x1F && buffer[1] == 0x8B {
            guard path != "-" else {
                throw LogInputError(exitCode: LogInputError.dataError, description:
                    "standard input is gzip-compressed; name the file instead, or pipe it through zcat")
            }
            gzip = try startGzip(path)
            source = gzip!.pipe.fileHandleForReading.fileDescriptor
            n = try readChunk(source, &buffer, name: name)
        }

        var splitter = LogLineSplitter()
        var lineNumber = 0
        func handle(_ line: UnsafeBufferPointer<UInt8>, _ complete: Bool) {
            lineNumber += 1
            body(line, complete, { "\(name):\(lineNumber)" })
        }
        while n > 0 {
            buffer.withUnsafeBufferPointer { splitter.feed(UnsafeBufferPointer(rebasing: $0[..<n]), handle) }
            n = try readChunk(source, &buffer, name: name)
        }
        splitter.finish(handle)

        guard let gzip else { return nil }
        gzip.process.waitUntilExit()
        if gzip.process.terminationStatus != 0 {
            return LogInputError(exitCode: LogInputError.dataError, description:
                "\(path): gzip -dc failed (status \(gzip.process.terminationStatus)); only the part before the damage was read")
        }
        return nil
    }

    private static func startGzip(_ path: String) throws -> (process: Process, pipe: Pipe) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["gzip", "-dc", "--", path]
        let pipe = Pipe()
        process.standardOutput = pipe
        // gzip's own complaint ("unexpected end of file") goes straight to our standard error.
        do {
            try process.run()
        } catch {
            throw LogInputError(exitCode: LogInputError.noInput, description: "\(path): cannot run gzip: \(error)")
        }
        return (process, pipe)
    }

    private static func readChunk(_ fd: Int32, _ buffer: inout [UInt8], name: String) throws -> Int {
        while true {
            let n = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n >= 0 { return n }
            if errno == EINTR { continue }
            throw LogInputError(exitCode: LogInputError.noInput, description: "\(name): \(String(cString: strerror(errno)))")
        }
    }
}
