// Process plumbing for the end-to-end lab: spawn, wait with a deadline, stop by PID.
//
// posix_spawn instead of Foundation.Process: every child gets its own process group,
// a clean signal mask and default dispositions (the daemon must not inherit a blocked
// SIGTERM or an ignored SIGPIPE from the test process), output goes to files (no pipe
// can fill up and stall a child), and waiting is plain waitpid on a known PID.
//
// Processes are only ever stopped by the PID the lab recorded (never by name).

import Foundation
import Glibc

/// Why the lab could not do what a test asked. The description is meant to be read in a
/// failed test's log: it says what was run, what came out, and what to do.
struct LabError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

struct CommandResult: Sendable {
    let arguments: [String]
    /// Exit status, or 128+signal when the command was killed.
    let status: Int32
    /// Standard output and standard error, interleaved as written.
    let output: String
    var succeeded: Bool { status == 0 }
}

enum LabProcess {
    /// Directories searched for tools besides $PATH: as root these hold Postfix's programs.
    static let extraToolDirectories = ["/usr/sbin", "/sbin", "/usr/bin", "/bin", "/usr/local/bin", "/usr/local/sbin"]

    /// The absolute path of a tool, or nil.
    static func which(_ tool: String) -> String? {
        if tool.contains("/") { return FileManager.default.isExecutableFile(atPath: tool) ? tool : nil }
        let path = ProcessInfo.processInfo.environment["PATH"] ?? ""
        for dir in path.split(separator: ":").map(String.init) + extraToolDirectories {
            let candidate = dir + "/" + tool
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return nil
    }

    /// The absolute path of a tool, or an error naming the Debian package that ships it.
    static func require(_ tool: String, package: String) throws -> String {
        guard let path = which(tool) else {
            throw LabError("the end-to-end lab needs `\(tool)` (Debian package \(package)); install it with `apt-get install \(package)`")
        }
        return path
    }

    static func requireRoot() throws {
        guard getuid() == 0 else {
            throw LabError("the end-to-end lab runs a private Postfix, smtp-sink and a /dev/log listener and must run as root (CI does); uid is \(getuid())")
        }
    }

    /// Runs a command to completion, capturing its output. Throws only when it cannot be
    /// started or outlives `timeout` (then its process group is killed).
    @discardableResult
    static func run(_ arguments: [String], stdin: String? = nil, environment: [String: String] = [:],
                    timeout: TimeInterval = 60) throws -> CommandResult {
        let scratch = FileManager.default.temporaryDirectory.path + "/connector-lab-cmd-\(getpid())-\(UUID().uuidString)"
        defer {
            unlink(scratch + ".out")
            unlink(scratch + ".in")
        }
        var stdinPath = "/dev/null"
        if let stdin {
            stdinPath = scratch + ".in"
            try stdin.write(toFile: stdinPath, atomically: false, encoding: .utf8)
        }
        let pid = try spawn(arguments, stdinPath: stdinPath, outputPath: scratch + ".out", environment: environment)
        guard let status = waitForExit(pid, timeout: timeout) else {
            kill(-pid, SIGKILL)
            _ = waitForExit(pid, timeout: 5)
            let output = (try? String(contentsOfFile: scratch + ".out", encoding: .utf8)) ?? ""
            throw LabError("`\(arguments.joined(separator: " "))` did not finish within \(Int(timeout)) s; output so far:\n\(output)")
        }
        let data = FileManager.default.contents(atPath: scratch + ".out") ?? Data()
        return CommandResult(arguments: arguments, status: status, output: String(decoding: data, as: UTF8.self))
    }

    /// Runs a command and throws with its output unless it exits 0.
    @discardableResult
    static func check(_ arguments: [String], stdin: String? = nil, environment: [String: String] = [:],
                      timeout: TimeInterval = 60) throws -> CommandResult {
        let result = try run(arguments, stdin: stdin, environment: environment, timeout: timeout)
        guard result.succeeded else {
            throw LabError("`\(arguments.joined(separator: " "))` exited \(result.status):\n\(result.output)")
        }
        return result
    }

    /// Starts a background process in its own process group, stdout and stderr appended to
    /// `outputPath`. Returns its PID; the caller owns stopping it (see `terminate`).
    static func spawn(_ arguments: [String], stdinPath: String = "/dev/null", outputPath: String,
                      environment: [String: String] = [:]) throws -> pid_t {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, stdinPath, O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, outputPath, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        return try spawn(arguments, actions: &actions, environment: environment)
    }

    /// Starts a process whose stdin and stdout are pipes to us (stderr to `errorPath`).
    /// Returns (pid, fd to write its stdin, fd to read its stdout).
    static func spawnPiped(_ arguments: [String], errorPath: String,
                           environment: [String: String] = [:]) throws -> (pid: pid_t, input: Int32, output: Int32) {
        var toChild: [Int32] = [0, 0]
        var fromChild: [Int32] = [0, 0]
        guard pipe(&toChild) == 0, pipe(&fromChild) == 0 else {
            throw LabError("pipe: \(String(cString: strerror(errno)))")
        }
        // Close-on-exec, so no other child inherits our ends (dup2 onto 0/1 clears it there).
        for fd in toChild + fromChild { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, toChild[0], 0)
        posix_spawn_file_actions_adddup2(&actions, fromChild[1], 1)
        posix_spawn_file_actions_addopen(&actions, 2, errorPath, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        let pid: pid_t
        do {
            pid = try spawn(arguments, actions: &actions, environment: environment)
        } catch {
            for fd in toChild + fromChild { close(fd) }
            throw error
        }
        close(toChild[0])
        close(fromChild[1])
        return (pid, toChild[1], fromChild[0])
    }

    private static func spawn(_ arguments: [String], actions: inout posix_spawn_file_actions_t,
                              environment: [String: String]) throws -> pid_t {
        precondition(!arguments.isEmpty, "spawn needs a program")
        guard let program = which(arguments[0]) else {
            throw LabError("cannot find `\(arguments[0])` in $PATH or /usr/sbin")
        }
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        // Own process group (so a timeout can kill the whole tree), no blocked signals,
        // default dispositions for the signals a daemon cares about.
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        posix_spawnattr_setpgroup(&attributes, 0)
        var noSignals = sigset_t()
        sigemptyset(&noSignals)
        posix_spawnattr_setsigmask(&attributes, &noSignals)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for signal in [SIGPIPE, SIGTERM, SIGINT, SIGHUP, SIGUSR1, SIGUSR2, SIGCHLD, SIGALRM] {
            sigaddset(&defaults, signal)
        }
        posix_spawnattr_setsigdefault(&attributes, &defaults)

        var env = ProcessInfo.processInfo.environment
        for (key, value) in environment { env[key] = value }
        let argv: [UnsafeMutablePointer<CChar>?] = ([program] + arguments.dropFirst()).map { strdup($0) } + [nil]
        let envp: [UnsafeMutablePointer<CChar>?] = env.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            for p in argv { free(p) }
            for p in envp { free(p) }
        }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, program, &actions, &attributes, argv, envp)
        guard rc == 0 else {
            throw LabError("cannot start \(program): \(String(cString: strerror(rc)))")
        }
        return pid
    }

    /// Waits for a child to exit; returns its status (128+signal when killed), or nil on timeout.
    static func waitForExit(_ pid: pid_t, timeout: TimeInterval) -> Int32? {
        let deadline = Date().addingTimeInterval(timeout)
        var status: Int32 = 0
        while true {
            let rc = waitpid(pid, &status, WNOHANG)
            if rc == pid { return decode(status) }
            if rc < 0 && errno == ECHILD && !isAlive(pid) {
                return 0  // not our child (or already reaped), and gone: status unknown
            }
            if Date() >= deadline { return nil }
            usleep(5_000)
        }
    }

    private static func decode(_ status: Int32) -> Int32 {
        let signal = status & 0x7f
        return signal == 0 ? (status >> 8) & 0xff : 128 + signal
    }

    /// True while the process exists and is not a zombie. (Orphans are re-parented to an
    /// init that may never reap them, so kill(pid, 0) alone says "alive" for a corpse.)
    static func isAlive(_ pid: pid_t) -> Bool {
        guard pid > 0, kill(pid, 0) == 0 || errno == EPERM else { return false }
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return true }
        let state = stat[stat.index(after: close)...].trimmingCharacters(in: .whitespaces).first
        return state != "Z" && state != "X"
    }

    /// Sends SIGTERM, waits up to `grace` seconds, then SIGKILL. Reaps the process when it
    /// is our child. Safe to call for a PID that is already gone.
    static func terminate(_ pid: pid_t, grace: TimeInterval = 10) {
        guard pid > 0 else { return }
        var status: Int32 = 0
        if waitpid(pid, &status, WNOHANG) == pid { return }
        guard isAlive(pid) else { return }
        kill(pid, SIGTERM)
        if waitUntilGone(pid, timeout: grace) { return }
        kill(pid, SIGKILL)
        _ = waitUntilGone(pid, timeout: 5)
    }

    /// Waits until a process (our child or not) has exited; reaps it if it is our child.
    static func waitUntilGone(_ pid: pid_t, timeout: TimeInterval) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        var status: Int32 = 0
        while true {
            let rc = waitpid(pid, &status, WNOHANG)
            if rc == pid { return true }
            if !isAlive(pid) {
                _ = waitpid(pid, &status, WNOHANG)
                return true
            }
            if Date() >= deadline { return false }
            usleep(10_000)
        }
    }

    /// PIDs of the living members of a process group (Postfix's master leads its own group,
    /// and every Postfix daemon it starts stays in it).
    static func processGroupMembers(_ pgid: pid_t) -> [pid_t] {
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else { return [] }
        return entries.compactMap { name -> pid_t? in
            guard let pid = pid_t(name), let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
                  let close = stat.lastIndex(of: ")") else { return nil }
            // After "comm)": state ppid pgrp ...
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            guard fields.count > 2, fields[0] != "Z", pid_t(fields[2]) == pgid else { return nil }
            return pid
        }
    }

    /// Polls `condition` until it returns true or the timeout passes.
    static func waitUntil(timeout: TimeInterval, interval: TimeInterval = 0.02, _ condition: () throws -> Bool) rethrows -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while true {
            if try condition() { return true }
            if Date() >= deadline { return false }
            usleep(useconds_t(interval * 1_000_000))
        }
    }

    /// A TCP port on 127.0.0.1 that nothing listens on right now (the kernel picks it).
    static func freeTCPPort() throws -> UInt16 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw LabError("socket: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = 0
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa -> Bool in
                bind(fd, sa, length) == 0 && getsockname(fd, sa, &length) == 0
            }
        }
        guard bound else { throw LabError("bind 127.0.0.1:0: \(String(cString: strerror(errno)))") }
        return UInt16(bigEndian: address.sin_port)
    }

    /// True when a socket listens on 127.0.0.1:port (or the IPv4 wildcard). Read from
    /// /proc/net/tcp rather than by connecting: a probe connection to Postfix would be a
    /// real SMTP session (and a milter session) in the test's logs.
    static func isListening(port: UInt16) -> Bool {
        guard let table = try? String(contentsOfFile: "/proc/net/tcp", encoding: .utf8) else { return false }
        let wanted = String(format: "%04X", port)
        for line in table.split(separator: "\n").dropFirst() {
            let fields = line.split(separator: " ")
            guard fields.count > 3, fields[3] == "0A" else { continue }  // 0A = LISTEN
            let local = fields[1].split(separator: ":")
            if local.count == 2, local[1] == wanted, local[0] == "0100007F" || local[0] == "00000000" { return true }
        }
        return false
    }
}
