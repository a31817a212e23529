#if canImport(Glibc)
import Glibc
#endif

// The daemon's one way into the kernel: every call that can be interrupted by a signal is
// retried on EINTR, every write is finished, and a failure names the call and its errno.
// Both processes block their signals and sigwait them, so EINTR is rare, but a stop or a
// SIGCHLD landing mid-call must never turn into a lost byte or a false failure.

/// A failed system call: which call, and errno at that moment.
package struct SystemCallError: Error, Equatable, CustomStringConvertible {
    package let call: String
    package let errno: Int32

    package init(call: String, errno: Int32) {
        self.call = call
        self.errno = errno
    }

    /// strerror's text alone, for messages that already say what was being done.
    package var reason: String { String(cString: strerror(errno)) }

    package var description: String { "\(call): \(reason)" }

    /// EAGAIN or EWOULDBLOCK: a non-blocking descriptor has nothing to give or take now.
    package var wouldBlock: Bool { errno == EAGAIN || errno == EWOULDBLOCK }
}

package enum SystemCall {
    /// Sends as much of `output` as a non-blocking socket takes now, removing what was sent.
    /// False when the peer is gone and the connection should be dropped. MSG_NOSIGNAL: a
    /// peer that hung up must not raise SIGPIPE, which kills the worker.
    package static func sendPending(_ descriptor: Int32, _ output: inout [UInt8]) -> Bool {
        while !output.isEmpty {
            let sent: Int
            do {
                sent = try retrying("send") {
                    output.withUnsafeBytes {
                        send(descriptor, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL) | Int32(MSG_DONTWAIT))
                    }
                }
            } catch where error.wouldBlock {
                return true
            } catch {
                return false
            }
            guard sent > 0 else { return false }
            output.removeFirst(sent)
        }
        return true
    }

    /// Runs `body`, a call that returns -1 and sets errno on failure, again while it fails
    /// with EINTR.
    @discardableResult
    @inline(__always)
    package static func retrying<Result: FixedWidthInteger>(_ call: String,
                                                          _ body: () -> Result) throws(SystemCallError) -> Result {
        while true {
            let result = body()
            if result >= 0 { return result }
            let code = Glibc.errno
            if code != EINTR { throw SystemCallError(call: call, errno: code) }
        }
    }

    /// Writes every byte (write(2) may take fewer than asked, after a signal or on a pipe).
    package static func writeAll(_ descriptor: Int32, _ bytes: [UInt8], call: String = "write") throws(SystemCallError) {
        var offset = 0
        while offset < bytes.count {
            let written = try retrying(call) {
                bytes.withUnsafeBytes { Glibc.write(descriptor, $0.baseAddress! + offset, $0.count - offset) }
            }
            // write(2) returns 0 only for a zero-length request; never spin on it.
            if written == 0 { throw SystemCallError(call: call, errno: EIO) }
            offset += written
        }
    }

    package static func writeAll(_ descriptor: Int32, _ text: String, call: String = "write") throws(SystemCallError) {
        try writeAll(descriptor, Array(text.utf8), call: call)
    }

    /// waitpid(2), retried on EINTR.
    @discardableResult
    package static func waitForChild(_ pid: pid_t, status: UnsafeMutablePointer<Int32>?,
                                     options: Int32 = 0) throws(SystemCallError) -> pid_t {
        try retrying("waitpid") { waitpid(pid, status, options) }
    }

    /// A pipe with both ends close-on-exec (Glibc does not export pipe2; the supervisor, its
    /// only user, is single-threaded, so nothing can exec between the calls).
    package static func makePipe() throws(SystemCallError) -> (read: Int32, write: Int32) {
        var ends: [Int32] = [0, 0]
        try retrying("pipe") { pipe(&ends) }
        for end in ends { _ = fcntl(end, F_SETFD, FD_CLOEXEC) }
        return (ends[0], ends[1])
    }

    /// A new unix stream socket, close-on-exec.
    package static func unixStreamSocket() throws(SystemCallError) -> Int32 {
        try retrying("socket") { socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0) }
    }

    /// Runs `body` with `path` as a `sockaddr_un` and its length. The path must fit
    /// sun_path (SocketSpec checks the length); a longer one is cut, never overflowed.
    package static func withUnixAddress<Result>(_ path: String,
                                                _ body: (UnsafePointer<sockaddr>, socklen_t) -> Result) -> Result {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { buffer in
            for (index, byte) in path.utf8.prefix(buffer.count - 1).enumerated() { buffer[index] = byte }
        }
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
    }

    /// connect(2) to a unix socket. EINTR is not retried: the connection goes on in the
    /// background and a second connect would fail with EALREADY; callers here only probe.
    package static func connect(_ descriptor: Int32, unixPath path: String) throws(SystemCallError) {
        let result = withUnixAddress(path) { Glibc.connect(descriptor, $0, $1) }
        if result != 0 { throw SystemCallError(call: "connect", errno: Glibc.errno) }
    }

    /// bind(2) to a unix socket path.
    package static func bind(_ descriptor: Int32, unixPath path: String) throws(SystemCallError) {
        let result = withUnixAddress(path) { Glibc.bind(descriptor, $0, $1) }
        if result != 0 { throw SystemCallError(call: "bind", errno: Glibc.errno) }
    }
}

/// Seconds on CLOCK_MONOTONIC: deadlines, restart delays and idle times, which a change of
/// the wall clock must not stretch or cut. Shared by the supervisor and the worker's parts.
package enum MonotonicClock {
    @inline(__always)
    package static func now() -> Double {
        var time = timespec()
        clock_gettime(CLOCK_MONOTONIC, &time)
        return Double(time.tv_sec) + Double(time.tv_nsec) / 1e9
    }
}

extension DaemonError {
    /// A failed system call as the admin reads it: what was being done, then strerror.
    init(_ exit: Sysexit, _ what: String, _ error: SystemCallError) {
        self.init(exit, "\(what): \(error.reason)")
    }
}
