#if canImport(Glibc)
import Glibc
#endif
import ConnectorPolicy

// The Postfix socketmap endpoint (`run --maps-socket`, docs/outbound-maps.md): Postfix's smtp(8)
// asks `tls-policy` for smtp_tls_policy_maps and trivial-rewrite(8) asks `transport` for
// transport_maps; the answers come from OutboundMaps over the policy in force, so a reload
// changes them at the next lookup.
//
// Protocol (socketmap_table(5)): one netstring per request, `NAME KEY`; one netstring per
// reply, `OK DATA`, `NOTFOUND `, `TEMP REASON`, `TIMEOUT REASON` or `PERM REASON`. Postfix
// keeps a connection open for many lookups (closing it after 10 s idle or 100 s in all) and
// reconnects once when a connection breaks, so a server may close at any time between replies.
//
// One thread serves every connection with poll(2): a lookup costs microseconds, so there is
// nothing to wait for but the peers, and one thread bounds what any number of them can cost.

/// The socketmap server: one thread, one poll loop, any number of connections up to a limit.
/// The same loop serves Postfix's policy delegation on the policy socket (PolicyDelegation.swift).
final class MapsServer: @unchecked Sendable {
    /// What a socket speaks: the framing of requests and who answers them.
    enum Dialect: Sendable {
        case socketmap, policyDelegation

        var socketName: String { self == .socketmap ? "maps socket" : "policy socket" }
    }

    static let maximumRequestLength = Socketmap.maximumRequestLength
    /// Connections beyond this are closed at once; Postfix then defers the lookup's mail
    /// ("table lookup failure") and retries, which is safe.
    static let maximumConnections = 1000
    /// Postfix drops its own connections after 100 s; an idle peer after this long is not Postfix.
    static let idleTimeout = 300.0
    /// Replies waiting for a slow reader; beyond this the server stops reading its requests.
    static let maximumPendingOutput = 64 * 1024

    private let listener: Int32
    private let dialect: Dialect
    private let policy: @Sendable () -> PolicySet
    private let log: LogSink
    private let metrics: WorkerMetrics?
    private var connections: [Connection] = []
    private var cached: (set: PolicySet, maps: OutboundMaps)?
    private var lastComplaint = 0.0

    private final class Connection {
        /// -1 once closed; the end of the round removes it.
        var descriptor: Int32
        var input: [UInt8] = []
        var output: [UInt8] = []
        var closeWhenFlushed = false
        var lastActive: Double
        init(descriptor: Int32, now: Double) { self.descriptor = descriptor; lastActive = now }
    }

    /// `policy` is read at every lookup (PolicyStore.current), so a reload applies at once.
    init(listener: Int32, dialect: Dialect = .socketmap, policy: @escaping @Sendable () -> PolicySet, log: LogSink,
         metrics: WorkerMetrics? = nil) {
        self.listener = listener
        self.dialect = dialect
        self.policy = policy
        self.log = log
        self.metrics = metrics
        _ = fcntl(listener, F_SETFL, fcntl(listener, F_GETFL) | O_NONBLOCK)
    }

    /// Serves until the process ends.
    func run() -> Never {
        while true { serveOnce(timeout: 1000) }
    }

    /// One round of poll and the work it reports (tests drive the server with this too).
    func serveOnce(timeout: Int32) {
        var descriptors = [pollfd(fd: listener, events: Int16(POLLIN), revents: 0)]
        for connection in connections {
            // A connection with replies still unsent is not read: a peer that writes
            // without reading cannot make us buffer without bound.
            let events = connection.output.isEmpty ? POLLIN : POLLOUT
            descriptors.append(pollfd(fd: connection.descriptor, events: Int16(events), revents: 0))
        }
        // An interrupted poll is one round with nothing to do: the caller polls again.
        let ready = (try? SystemCall.retrying("poll") { poll(&descriptors, nfds_t(descriptors.count), timeout) }) ?? 0
        let now = MonotonicClock.now()
        if ready > 0 {
            for (index, polled) in descriptors.enumerated().dropFirst() where polled.revents != 0 {
                let connection = connections[index - 1]
                connection.lastActive = now
                if polled.revents & Int16(POLLOUT) != 0 {
                    flush(connection)
                    if connection.output.isEmpty && !connection.closeWhenFlushed { process(connection) }
                } else {
                    receive(connection)
                }
            }
            if descriptors[0].revents != 0 { acceptConnections(now: now) }
        }
        connections.removeAll { connection in
            let idle = now - connection.lastActive > Self.idleTimeout
            let done = connection.closeWhenFlushed && connection.output.isEmpty
            guard idle || done || connection.descriptor < 0 else { return false }
            drop(connection)
            return true
        }
    }

    private func acceptConnections(now: Double) {
        while true {
            // Glibc does not export accept4: accept, then set the flags (only this thread
            // accepts, and the worker never execs, so close-on-exec is belt and braces).
            let descriptor: Int32
            do {
                descriptor = try SystemCall.retrying("accept") { accept(listener, nil, nil) }
            } catch where error.errno == ECONNABORTED {
                continue
            } catch {
                if !error.wouldBlock { complain(now: now, "\(dialect.socketName): \(error)") }
                return
            }
            _ = fcntl(descriptor, F_SETFL, fcntl(descriptor, F_GETFL) | O_NONBLOCK)
            _ = fcntl(descriptor, F_SETFD, FD_CLOEXEC)
            guard connections.count < Self.maximumConnections else {
                close(descriptor)
                complain(now: now, "\(dialect.socketName): \(Self.maximumConnections) connections open, refusing more")
                continue
            }
            connections.append(Connection(descriptor: descriptor, now: now))
        }
    }

    private func receive(_ connection: Connection) {
        var buffer = [UInt8](repeating: 0, count: 16 * 1024)
        let count: Int
        do {
            count = try SystemCall.retrying("recv") {
                buffer.withUnsafeMutableBytes { recv(connection.descriptor, $0.baseAddress, $0.count, 0) }
            }
        } catch where error.wouldBlock {
            return
        } catch {
            count = 0
        }
        guard count > 0 else {  // EOF or an error: the peer is gone, mid-request or not
            drop(connection)
            return
        }
        connection.input += buffer[..<count]
        process(connection)
    }

    /// Answers every complete request in the input, in order, while the output is small.
    private func process(_ connection: Connection) {
        var consumed = 0
        parsing: while !connection.closeWhenFlushed && connection.output.count < Self.maximumPendingOutput {
            if dialect == .policyDelegation {
                switch PolicyDelegation.parse(connection.input[consumed...]) {
                case .complete(let attributes, let length):
                    consumed += length
                    connection.output += PolicyDelegation.reply(to: attributes, policy: policy())
                case .incomplete:
                    break parsing
                case .malformed(let reason):
                    // The protocol has no error reply: close, and Postfix applies
                    // smtpd_policy_service_default_action (a tempfail) after its retries.
                    connection.closeWhenFlushed = true
                    complain(now: MonotonicClock.now(), "policy socket: \(reason); closing the connection")
                }
                continue parsing
            }
            switch Netstring.parse(connection.input[consumed...], limit: Self.maximumRequestLength) {
            case .complete(let payload, let length):
                consumed += length
                let reply = Socketmap.reply(to: payload, maps: currentMaps())
                metrics?.socketmapLookup(request: payload, reply: reply)
                connection.output += Netstring.encode(Array(reply.utf8))
            case .incomplete:
                break parsing
            case .malformed(let reason):
                refuse(connection, "PERM malformed request: \(reason)")
            case .tooLong:
                refuse(connection, "PERM request longer than \(Self.maximumRequestLength) bytes")
            }
        }
        if connection.closeWhenFlushed {
            connection.input.removeAll()
        } else {
            connection.input.removeFirst(consumed)
        }
        flush(connection)
    }

    /// A protocol error: say why, then close (the stream cannot be resynchronized).
    private func refuse(_ connection: Connection, _ reply: String) {
        connection.output += Netstring.encode(Array(reply.utf8))
        connection.closeWhenFlushed = true
        complain(now: MonotonicClock.now(), "maps socket: \(reply.dropFirst(5)); closing the connection")
    }

    private func flush(_ connection: Connection) {
        guard connection.descriptor >= 0 else { return }
        if !SystemCall.sendPending(connection.descriptor, &connection.output) { drop(connection) }
    }

    private func drop(_ connection: Connection) {
        if connection.descriptor >= 0 { close(connection.descriptor) }
        connection.descriptor = -1
        connection.output.removeAll()
    }

    /// The maps of the policy in force, rebuilt once per reload.
    private func currentMaps() -> OutboundMaps {
        let set = policy()
        if let cached, cached.set === set { return cached.maps }
        let maps = OutboundMaps(set)
        cached = (set, maps)
        return maps
    }

    /// At most one line a second: a misbehaving peer must not flood the log.
    private func complain(now: Double, _ message: String) {
        guard now - lastComplaint >= 1 else { return }
        lastComplaint = now
        log.log(.warning, message)
    }

    // MARK: - The listening socket

    /// Creates the listening socket, before privileges are dropped: a unix socket is born
    /// 0660 and given to --user/--group like the milter socket, so the MTA's group connects
    /// and nobody else does. The supervisor has proved any socket file at the path dead.
    static func listen(on spec: SocketSpec, identity: Identity, name: String = "maps socket") throws(DaemonError) -> Int32 {
        switch spec {
        case .unix(let path):
            var info = stat()
            if lstat(path, &info) == 0 {
                guard info.st_mode & S_IFMT == S_IFSOCK else {
                    throw DaemonError(.cantCreate, "\(path) exists and is not a socket; not replacing it")
                }
                unlink(path)
            }
            let descriptor: Int32
            do {
                descriptor = try SystemCall.unixStreamSocket()
            } catch {
                throw DaemonError(.osError, "socket", error)
            }
            let previous = umask(0o117)  // born 0660: never a moment when others could connect
            let bound = Result { () throws(SystemCallError) in try SystemCall.bind(descriptor, unixPath: path) }
            umask(previous)
            if case .failure(let error) = bound {
                close(descriptor)
                throw DaemonError(.cantCreate, "cannot create the \(name) \(path)", error)
            }
            do {
                try identity.takeOwnership(ofSocket: path)
            } catch {
                close(descriptor)
                throw error
            }
            return try startListening(descriptor, spec, name)
        case .inet(let port, let host), .inet6(let port, let host):
            var hints = addrinfo()
            hints.ai_family = { if case .inet = spec { AF_INET } else { AF_INET6 } }()
            hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
            hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV
            var result: UnsafeMutablePointer<addrinfo>?
            let bare = host.hasPrefix("[") && host.hasSuffix("]") ? String(host.dropFirst().dropLast()) : host
            guard getaddrinfo(bare, String(port), &hints, &result) == 0, let info = result else {
                throw DaemonError(.usage, "cannot resolve the \(name) address \(host)")
            }
            defer { freeaddrinfo(result) }
            let descriptor = socket(info.pointee.ai_family, info.pointee.ai_socktype | Int32(SOCK_CLOEXEC.rawValue), 0)
            guard descriptor >= 0 else { throw DaemonError.system(.osError, "socket") }
            var on: Int32 = 1
            setsockopt(descriptor, SOL_SOCKET, SO_REUSEADDR, &on, socklen_t(MemoryLayout<Int32>.size))
            guard bind(descriptor, info.pointee.ai_addr, info.pointee.ai_addrlen) == 0 else {
                let error = DaemonError.system(.cantCreate, "cannot listen on the \(name) \(spec)")
                close(descriptor)
                throw error
            }
            return try startListening(descriptor, spec, name)
        }
    }

    private static func startListening(_ descriptor: Int32, _ spec: SocketSpec, _ name: String) throws(DaemonError) -> Int32 {
        guard Glibc.listen(descriptor, 128) == 0 else {
            let error = DaemonError.system(.cantCreate, "cannot listen on the \(name) \(spec)")
            close(descriptor)
            throw error
        }
        return descriptor
    }
}
