// The lab's syslog: a datagram socket bound at /dev/log inside the test process.
//
// The daemon logs with syslog(3) (facility mail, ident connector-milter) to /dev/log. CI
// machines run no syslog daemon and may have no /dev/log at all, so the lab listens
// there itself, once per test process, and keeps every record in memory; each lab reads
// the records that arrived after it started. Why not a private rsyslogd per lab: /dev/log
// is one path for the whole machine, and a restart per test buys nothing. glibc's
// syslog() keeps its socket connected across a listener restart and reconnects on a send
// error, and while nobody listens it drops lines silently; binding once, before any
// daemon starts, means no line is lost.
//
// If a live syslog daemon already owns /dev/log the lab refuses to start (it will not
// steal the machine's log): stop that daemon for the test run.
//
// Other programs on the machine log here too (on a shared development machine, other
// people's daemons): every record carries the sender's process group, read from the
// kernel's credentials (SO_PASSCRED) when it arrives, so a lab can keep only the lines of
// the processes it started (each is spawned as its own process group).

import Foundation
import Glibc

/// One syslog(3) datagram, as glibc formats it: `<PRI>Mmm dd hh:mm:ss IDENT[PID]: MESSAGE`.
struct SyslogRecord: Sendable, CustomStringConvertible {
    let facility: Int32
    let severity: Int32
    let ident: String
    let pid: Int32?
    let message: String
    let raw: String
    /// The sending process as the kernel saw it (SCM_CREDENTIALS), and its process group
    /// at the moment the line arrived; nil when unknown.
    var senderPID: pid_t?
    var senderProcessGroup: pid_t?

    static let mailFacility: Int32 = 2  // LOG_MAIL >> 3

    var description: String {
        "\(ident)\(pid.map { "[\($0)]" } ?? ""): \(message)"
    }

    init(raw: String) {
        self.raw = raw
        var rest = Substring(raw)
        var priority: Int32 = 13  // LOG_USER|LOG_NOTICE, syslog's default
        if rest.first == "<", let close = rest.firstIndex(of: ">"), let value = Int32(rest[rest.index(after: rest.startIndex)..<close]) {
            priority = value
            rest = rest[rest.index(after: close)...]
        }
        facility = priority >> 3
        severity = priority & 7
        // "Mmm dd hh:mm:ss " (RFC 3164 timestamp, 15 characters and a space)
        if rest.count >= 16, rest[rest.index(rest.startIndex, offsetBy: 15)] == " ",
           rest[rest.index(rest.startIndex, offsetBy: 3)] == " " {
            rest = rest.dropFirst(16)
        }
        // "ident[pid]: message" or "ident: message"
        if let colon = rest.range(of: ": ") {
            var tag = rest[..<colon.lowerBound]
            var pid: Int32?
            if tag.last == "]", let open = tag.lastIndex(of: "[") {
                pid = Int32(tag[tag.index(after: open)..<tag.index(before: tag.endIndex)])
                tag = tag[..<open]
            }
            if !tag.contains(" ") {
                ident = String(tag)
                self.pid = pid
                var body = rest[colon.upperBound...]
                while body.last == "\n" || body.last == "\0" { body = body.dropLast() }
                message = String(body)
                return
            }
        }
        ident = ""
        pid = nil
        message = String(rest).trimmingCharacters(in: CharacterSet(charactersIn: "\n\0"))
    }
}

final class SyslogCollector: @unchecked Sendable {
    static let socketPath = "/dev/log"

    private let lock = NSLock()
    private var records: [SyslogRecord] = []
    private let fd: Int32

    /// The process-wide collector, started on first use.
    static func shared() throws -> SyslogCollector {
        try sharedState.lock.withLock {
            if let collector = sharedState.collector { return collector }
            let collector = try SyslogCollector()
            sharedState.collector = collector
            return collector
        }
    }

    private final class SharedState: @unchecked Sendable {
        let lock = NSLock()
        var collector: SyslogCollector?
    }
    private static let sharedState = SharedState()

    private init() throws {
        try LabProcess.requireRoot()
        let path = Self.socketPath
        // lstat, not fileExists: a symbolic link to a journal socket that is not there (left by
        // a systemd that ran in a container) follows to nothing, yet still blocks bind(2).
        var info = stat()
        if lstat(path, &info) == 0 {
            if Self.someoneListens(at: path) {
                let owner = (try? LabProcess.run(["ss", "-xlpn"]))?.output
                    .split(separator: "\n").first { $0.contains(" \(path) ") }.map { " (\($0))" } ?? ""
                throw LabError("""
                    another program already listens on \(path)\(owner); the end-to-end lab reads the \
                    daemon's syslog lines by listening there itself. Stop it for the test run (a syslog \
                    daemon: `systemctl stop rsyslog syslog.socket`; another test run: wait for it), or \
                    run the tests where none runs (CI).
                    """)
            }
            unlink(path)  // a stale socket left by a dead listener
        }
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw LabError("socket(AF_UNIX, SOCK_DGRAM): \(String(cString: strerror(errno)))") }
        var buffer: Int32 = 4 << 20
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buffer, socklen_t(MemoryLayout<Int32>.size))
        var on: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_PASSCRED, &on, socklen_t(MemoryLayout<Int32>.size))
        guard Self.withAddress(path, { bind(fd, $0, $1) }) == 0 else {
            let reason = String(cString: strerror(errno))
            close(fd)
            throw LabError("cannot bind \(path): \(reason)")
        }
        // The daemon drops privileges (the lab runs it as nobody): anyone may log.
        chmod(path, 0o666)
        self.fd = fd
        let thread = Thread { [self] in self.receiveLoop() }
        thread.name = "lab-syslog"
        thread.start()
        atexit { unlink(SyslogCollector.socketPath) }
    }

    private func receiveLoop() {
        var buffer = [UInt8](repeating: 0, count: 65536)
        // Room for one cmsghdr + struct ucred (SCM_CREDENTIALS), generously aligned.
        var control = [UInt8](repeating: 0, count: 64)
        while true {
            var senderPID: pid_t?
            let count = buffer.withUnsafeMutableBytes { data -> Int in
                control.withUnsafeMutableBytes { controlBytes -> Int in
                    var vector = iovec(iov_base: data.baseAddress, iov_len: data.count)
                    return withUnsafeMutablePointer(to: &vector) { vectorPointer -> Int in
                        var header = msghdr()
                        header.msg_iov = vectorPointer
                        header.msg_iovlen = 1
                        header.msg_control = controlBytes.baseAddress
                        header.msg_controllen = controlBytes.count
                        let received = recvmsg(fd, &header, 0)
                        if received >= 0 { senderPID = Self.credentialsPID(header) }
                        return received
                    }
                }
            }
            if count < 0 {
                if errno == EINTR { continue }
                return
            }
            var record = SyslogRecord(raw: String(decoding: buffer[0..<count], as: UTF8.self))
            record.senderPID = senderPID ?? record.pid
            record.senderProcessGroup = record.senderPID.map { getpgid($0) }.flatMap { $0 > 0 ? $0 : nil }
            lock.withLock { records.append(record) }
        }
    }

    /// The pid from an SCM_CREDENTIALS control message: a cmsghdr, then struct ucred
    /// { pid_t pid; uid_t uid; gid_t gid; }. Glibc hides `struct ucred` and SCM_CREDENTIALS
    /// (2) behind _GNU_SOURCE, so they are spelled out here.
    private static func credentialsPID(_ header: msghdr) -> pid_t? {
        let scmCredentials: Int32 = 2
        let dataOffset = (MemoryLayout<cmsghdr>.size + MemoryLayout<Int>.size - 1) & ~(MemoryLayout<Int>.size - 1)
        guard let control = header.msg_control,
              header.msg_controllen >= dataOffset + 3 * MemoryLayout<Int32>.size else { return nil }
        let cmsg = control.load(as: cmsghdr.self)
        guard cmsg.cmsg_level == SOL_SOCKET, cmsg.cmsg_type == scmCredentials else { return nil }
        return control.loadUnaligned(fromByteOffset: dataOffset, as: Int32.self)
    }

    /// How many records have arrived so far: a mark to read "everything after now".
    var count: Int { lock.withLock { records.count } }

    /// Records that arrived after `mark` (a value of `count`).
    func records(since mark: Int) -> [SyslogRecord] {
        lock.withLock { mark < records.count ? Array(records[mark...]) : [] }
    }

    private static func someoneListens(at path: String) -> Bool {
        let probe = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        guard probe >= 0 else { return false }
        defer { close(probe) }
        return withAddress(path) { connect(probe, $0, $1) } == 0
    }

    private static func withAddress(_ path: String, _ body: (UnsafePointer<sockaddr>, socklen_t) -> Int32) -> Int32 {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (index, byte) in bytes.prefix(raw.count - 1).enumerated() { raw[index] = byte }
        }
        return withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                body($0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
    }
}
