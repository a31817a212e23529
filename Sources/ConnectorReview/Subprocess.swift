// Running the MTA's and OpenSSL's own tools (posttls-finger, postconf, openssl) for
// `validate`: their judgment is the one that counts, so we ask them rather than imitate them.

import Foundation
import Glibc

/// The result of one program run.
public struct SubprocessResult: Sendable {
    public var status: Int32
    public var output: String
    public var error: String
    /// Both, standard error first (posttls-finger logs there, and prints -C on output).
    public var combined: String { error + output }
}

public enum Subprocess {
    /// Runs `arguments` (the first found on PATH unless it has a slash) and waits for it;
    /// after `timeout` seconds it is terminated. `input` is written to its standard input.
    public static func run(_ arguments: [String], environment: [String: String] = [:], input: String? = nil,
                           timeout: TimeInterval = 60) throws -> SubprocessResult {
        let process = Process()
        guard let program = arguments.first, let path = which(program) else {
            throw SubprocessError("\(arguments.first ?? "?"): not found on PATH")
        }
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = Array(arguments.dropFirst())
        var env = ProcessInfo.processInfo.environment
        for (key, value) in environment { env[key] = value }
        process.environment = env
        let out = Pipe(), err = Pipe(), inp = Pipe()
        process.standardOutput = out
        process.standardError = err
        process.standardInput = inp
        try process.run()
        let collected = Collected()
        let group = DispatchGroup()
        for (handle, isError) in [(out.fileHandleForReading, false), (err.fileHandleForReading, true)] {
            group.enter()
            DispatchQueue.global().async {
                let data = handle.readDataToEndOfFile()
                collected.set(data, isError: isError)
                group.leave()
            }
        }
        if let input { inp.fileHandleForWriting.write(Data(input.utf8)) }
        try? inp.fileHandleForWriting.close()
        let timer = DispatchWorkItem { if process.isRunning { process.terminate() } }
        DispatchQueue.global().asyncAfter(deadline: .now() + timeout, execute: timer)
        process.waitUntilExit()
        timer.cancel()
        group.wait()
        return SubprocessResult(status: process.terminationStatus,
                                output: String(decoding: collected.output, as: UTF8.self),
                                error: String(decoding: collected.error, as: UTF8.self))
    }

    /// The full path of a program: itself when it has a slash, else the first on PATH (and
    /// the sbin directories, where Postfix keeps posttls-finger and postconf).
    public static func which(_ program: String) -> String? {
        if program.contains("/") { return FileManager.default.isExecutableFile(atPath: program) ? program : nil }
        let path = (ProcessInfo.processInfo.environment["PATH"] ?? "") + ":/usr/sbin:/sbin:/usr/bin:/bin"
        for directory in path.split(separator: ":") where !directory.isEmpty {
            let candidate = "\(directory)/\(program)"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return nil
    }
}

public struct SubprocessError: Error, CustomStringConvertible, Sendable {
    public let description: String
    init(_ description: String) { self.description = description }
}

private final class Collected: @unchecked Sendable {
    private let lock = NSLock()
    private var out = Data(), err = Data()
    func set(_ data: Data, isError: Bool) { lock.withLock { if isError { err = data } else { out = data } } }
    var output: Data { lock.withLock { out } }
    var error: Data { lock.withLock { err } }
}
