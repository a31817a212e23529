#if canImport(Glibc)
import Glibc
#endif

// The metrics endpoint (`run --metrics inet:PORT@ADDR`, docs/metrics.md): HTTP/1.x, `GET
// /metrics` only, one response per connection, then close. Prometheus asks every few seconds;
// nothing else should ask at all, so the server is as small as it can be: one thread, one
// poll loop (like MapsServer), bounded requests, bounded connections, a deadline on each.
// It never touches the milter's threads: a scrape reads counters, it does not wait for them.

/// What to answer to the bytes a client has sent so far.
package enum MetricsRequest {
    /// The request head may not exceed this; Prometheus sends a few hundred bytes.
    package static let maximumLength = 8 * 1024

    package enum Answer: Equatable {
        /// The head is not complete yet: read more.
        case incomplete
        case metrics
        case error(status: Int, reason: String, allow: String?)
    }

    /// Reads the request head (up to the blank line). Only the request line matters: headers
    /// are read only to be consumed, so that closing after the reply does not reset it.
    package static func answer(to received: ArraySlice<UInt8>) -> Answer {
        guard let headEnd = endOfHead(received) else {
            return received.count > maximumLength ? .error(status: 431, reason: "Request Header Fields Too Large", allow: nil)
                                                  : .incomplete
        }
        guard headEnd - received.startIndex <= maximumLength else {
            return .error(status: 431, reason: "Request Header Fields Too Large", allow: nil)
        }
        let lineEnd = received[..<headEnd].firstIndex(of: UInt8(ascii: "\n")) ?? headEnd
        var line = received[received.startIndex..<lineEnd]
        if line.last == UInt8(ascii: "\r") { line = line.dropLast() }
        let parts = line.split(separator: UInt8(ascii: " "), omittingEmptySubsequences: false)
        guard parts.count == 3, parts[2].starts(with: Array("HTTP/1.".utf8)), !parts[0].isEmpty, !parts[1].isEmpty else {
            return .error(status: 400, reason: "Bad Request", allow: nil)
        }
        guard parts[0].elementsEqual("GET".utf8) else {
            return .error(status: 405, reason: "Method Not Allowed", allow: "GET")
        }
        // A query string (`/metrics?x=y`) is allowed and ignored; nothing else is served.
        let path = parts[1].prefix { $0 != UInt8(ascii: "?") }
        guard path.elementsEqual("/metrics".utf8) else {
            return .error(status: 404, reason: "Not Found", allow: nil)
        }
        return .metrics
    }

    /// The index just past the blank line that ends the head (CRLF CRLF, or LF LF from a
    /// lenient client), if it has arrived.
    static func endOfHead(_ bytes: ArraySlice<UInt8>) -> Int? {
        var index = bytes.startIndex
        while let newline = bytes[index...].firstIndex(of: UInt8(ascii: "\n")) {
            let next = newline + 1
            if next < bytes.endIndex, bytes[next] == UInt8(ascii: "\n") { return next + 1 }
            if next + 1 < bytes.endIndex, bytes[next] == UInt8(ascii: "\r"), bytes[next + 1] == UInt8(ascii: "\n") {
                return next + 2
            }
            index = next
        }
        return nil
    }

    /// A whole HTTP/1.1 response that closes the connection.
    package static func response(status: Int, reason: String, contentType: String, body: [UInt8],
                                 allow: String? = nil) -> [UInt8] {
        var head = "HTTP/1.1 \(status) \(reason)\r\nContent-Type: \(contentType)\r\nContent-Length: \(body.count)\r\n"
        if let allow { head += "Allow: \(allow)\r\n" }
        head += "Connection: close\r\n\r\n"
        return Array(head.utf8) + body
    }
}

/// The HTTP side: accepts, reads one request head, answers, closes.
final class MetricsServer: @unchecked Sendable {
    static let maximumConnections = 16
    /// From accept to the last byte of the reply. A scraper that is slower than this is not
    /// one: it is dropped.
    static let deadline = 10.0

    private let listener: Int32
    private let metrics: WorkerMetrics
    private let log: LogSink
    private var connections: [Connection] = []
    private var lastComplaint = 0.0

    private final class Connection {
        var descriptor: Int32
        var input: [UInt8] = []
        var output: [UInt8] = []
        var answered = false
        let deadline: Double
        init(descriptor: Int32, deadline: Double) { self.descriptor = descriptor; self.deadline = deadline }
    }

    init(listener: Int32, metrics: WorkerMetrics, log: LogSink) {
        self.listener = listener
        self.metrics = metrics
        self.log = log
        _ = fcntl(listener, F_SETFL, fcntl(listener, F_GETFL) | O_NONBLOCK)
    }

    func run() -> Never {
        while true { serveOnce(timeout: 1000) }
    }

    func serveOnce(timeout: Int32) {
        var descriptors = [pollfd(fd: listener, events: Int16(POLLIN), revents: 0)]
        for connection in connections {
            descriptors.append(pollfd(fd: connection.descriptor, events: Int16(connection.answered ? POLLOUT : POLLIN),
                                      revents: 0))
        }
        let ready = (try? SystemCall.retrying("poll") { poll(&descriptors, nfds_t(descriptors.count), timeout) }) ?? 0
        if ready > 0 {
            for (index, polled) in descriptors.enumerated().dropFirst() where polled.revents != 0 {
                let connection = connections[index - 1]
                if connection.answered { flush(connection) } else { receive(connection) }
            }
            if descriptors[0].revents != 0 { acceptConnections() }
        }
        let now = MonotonicClock.now()
        connections.removeAll { connection in
            let done = connection.answered && connection.output.isEmpty
            guard done || connection.descriptor < 0 || now > connection.deadline else { return false }
            drop(connection)
            return true
        }
    }

    private func acceptConnections() {
        while true {
            let descriptor: Int32
            do {
                descriptor = try SystemCall.retrying("accept") { accept(listener, nil, nil) }
            } catch where error.errno == ECONNABORTED {
                continue
            } catch {
                if !error.wouldBlock { complain("metrics socket: \(error)") }
                return
            }
            _ = fcntl(descriptor, F_SETFL, fcntl(descriptor, F_GETFL) | O_NONBLOCK)
            _ = fcntl(descriptor, F_SETFD, FD_CLOEXEC)
            guard connections.count < Self.maximumConnections else {
                close(descriptor)
                complain("metrics socket: \(Self.maximumConnections) connections open, refusing more")
                continue
            }
            connections.append(Connection(descriptor: descriptor, deadline: MonotonicClock.now() + Self.deadline))
        }
    }

    private func receive(_ connection: Connection) {
        var buffer = [UInt8](repeating: 0, count: 4096)
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
        guard count > 0 else {
            drop(connection)
            return
        }
        connection.input += buffer[..<count]
        let reply: [UInt8]
        switch MetricsRequest.answer(to: connection.input[...]) {
        case .incomplete:
            return
        case .metrics:
            reply = MetricsRequest.response(status: 200, reason: "OK", contentType: WorkerMetrics.contentType,
                                            body: metrics.exposition())
        case .error(let status, let reason, let allow):
            reply = MetricsRequest.response(status: status, reason: reason, contentType: "text/plain; charset=utf-8",
                                            body: Array("\(status) \(reason)\n".utf8), allow: allow)
        }
        connection.input.removeAll()
        connection.output = reply
        connection.answered = true
        flush(connection)
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

    /// At most one line a second: a misbehaving client must not flood the log.
    private func complain(_ message: String) {
        let now = MonotonicClock.now()
        guard now - lastComplaint >= 1 else { return }
        lastComplaint = now
        log.log(.warning, message)
    }

    // MARK: - The listening socket

    /// Binds `inet:PORT@ADDR` or `inet6:PORT@ADDR`, as root before privileges drop (so a
    /// port below 1024 works too). A port someone else holds is exit 73, like the milter socket.
    static func listen(on spec: SocketSpec) throws(DaemonError) -> Int32 {
        let family: Int32, port: UInt16, host: String
        switch spec {
        case .inet(let p, let h): (family, port, host) = (AF_INET, p, h)
        case .inet6(let p, let h): (family, port, host) = (AF_INET6, p, h)
        case .unix: throw DaemonError(.usage, "--metrics: \(MetricsSocket.inetOnly)")
        }
        var hints = addrinfo()
        hints.ai_family = family
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV
        var result: UnsafeMutablePointer<addrinfo>?
        let bare = host.hasPrefix("[") && host.hasSuffix("]") ? String(host.dropFirst().dropLast()) : host
        guard getaddrinfo(bare, String(port), &hints, &result) == 0, let info = result else {
            throw DaemonError(.usage, "--metrics: cannot resolve the address \(host)")
        }
        defer { freeaddrinfo(result) }
        let descriptor = socket(info.pointee.ai_family, info.pointee.ai_socktype | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard descriptor >= 0 else { throw DaemonError.system(.osError, "socket") }
        // A restarted worker rebinds while the dead one's connections sit in TIME_WAIT.
        var on: Int32 = 1
        setsockopt(descriptor, SOL_SOCKET, SO_REUSEADDR, &on, socklen_t(MemoryLayout<Int32>.size))
        guard bind(descriptor, info.pointee.ai_addr, info.pointee.ai_addrlen) == 0,
              Glibc.listen(descriptor, 16) == 0 else {
            let code = errno
            close(descriptor)
            let why = code == EADDRINUSE ? "the port is in use by another process" : String(cString: strerror(code))
            throw DaemonError(.cantCreate, "cannot listen on the metrics socket \(spec): \(why)")
        }
        return descriptor
    }
}

/// The `--metrics` spec: a SocketSpec that must be inet or inet6.
package enum MetricsSocket {
    static let inetOnly = "the metrics endpoint is HTTP over TCP: inet:PORT@ADDR or inet6:PORT@ADDR, e.g. inet:9187@127.0.0.1"

    package static func parse(_ text: String) throws(DaemonError) -> SocketSpec {
        let spec: SocketSpec
        do {
            spec = try SocketSpec(parsing: text)
        } catch {
            if case .missingHost = error {
                throw DaemonError(.usage, "--metrics: invalid endpoint \"\(text)\": name the address to listen on, e.g. inet:9187@127.0.0.1")
            }
            if case .badPort = error {
                throw DaemonError(.usage, "--metrics: invalid endpoint \"\(text)\": the port must be 1-65535")
            }
            throw DaemonError(.usage, "--metrics: invalid endpoint \"\(text)\": \(inetOnly)")
        }
        if case .unix = spec { throw DaemonError(.usage, "--metrics: invalid endpoint \"\(text)\": \(inetOnly)") }
        return spec
    }
}
