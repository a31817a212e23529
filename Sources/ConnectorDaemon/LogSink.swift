#if canImport(Glibc)
import Glibc
#endif
import Milter

enum LogPriority: Sendable, Comparable {
    case error, warning, notice, info, debug
}

/// Where the daemon's lines go. Every sink writes one line per message: control
/// characters are escaped, never written raw (docs/verdict-line.md).
protocol LogSink: Sendable {
    func log(_ priority: LogPriority, _ message: String)
}

/// syslog, facility mail, ident "connector-milter", with the pid (docs/verdict-line.md).
struct SyslogSink: LogSink {
    init(ident: String = "connector-milter") {
        SystemLog.open(ident: ident)
    }

    func log(_ priority: LogPriority, _ message: String) {
        SystemLog.write(priority: priority.systemLogPriority, message: LogLine.escapingControlCharacters(message))
    }
}

/// One line per message on standard error, led by a UTC timestamp, the program and pid and
/// the priority. Each line is one write(2), so lines from different threads never interleave.
struct StderrSink: LogSink {
    func log(_ priority: LogPriority, _ message: String) {
        let line = "\(LogLine.timestamp()) connector-milter[\(getpid())]: \(priority): "
            + LogLine.escapingControlCharacters(message) + "\n"
        // A log line that cannot be written has nowhere else to go.
        try? SystemCall.writeAll(STDERR_FILENO, line)
    }
}

/// Keeps lines in memory, for tests.
final class MemoryLogSink: LogSink, @unchecked Sendable {
    private let lock = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private var storage: [(LogPriority, String)] = []

    init() { pthread_mutex_init(lock, nil) }

    deinit {
        pthread_mutex_destroy(lock)
        lock.deallocate()
    }

    func log(_ priority: LogPriority, _ message: String) {
        pthread_mutex_lock(lock)
        storage.append((priority, message))
        pthread_mutex_unlock(lock)
    }

    var lines: [(priority: LogPriority, message: String)] {
        pthread_mutex_lock(lock)
        defer { pthread_mutex_unlock(lock) }
        return storage.map { ($0.0, $0.1) }
    }
}

extension LogPriority: CustomStringConvertible {
    var description: String {
        switch self {
        case .error: "error"
        case .warning: "warning"
        case .notice: "notice"
        case .info: "info"
        case .debug: "debug"
        }
    }

    var systemLogPriority: SystemLog.Priority {
        switch self {
        case .error: .error
        case .warning: .warning
        case .notice: .notice
        case .info: .info
        case .debug: .debug
        }
    }
}

enum LogLine {
    /// "\n" becomes "\\n", "\t" "\\t", other control characters "\\xHH": the line stays one
    /// line and nothing a client sent can forge another.
    static func escapingControlCharacters(_ message: String) -> String {
        guard message.unicodeScalars.contains(where: isControl) else { return message }
        var out = ""
        for scalar in message.unicodeScalars {
            switch scalar {
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where isControl(scalar):
                let hex = String(scalar.value, radix: 16, uppercase: true)
                out += "\\x" + (hex.count < 2 ? "0" + hex : hex)
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out
    }

    private static func isControl(_ scalar: Unicode.Scalar) -> Bool {
        scalar.value < 0x20 || scalar.value == 0x7F || (0x80..<0xA0).contains(scalar.value)
    }

    /// "2025-01-31T12:34:56.789Z".
    static func timestamp() -> String {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        var seconds = now.tv_sec
        var parts = tm()
        gmtime_r(&seconds, &parts)
        func pad(_ value: Int32, _ width: Int) -> String {
            let text = String(value)
            return String(repeating: "0", count: max(0, width - text.count)) + text
        }
        return "\(pad(parts.tm_year + 1900, 4))-\(pad(parts.tm_mon + 1, 2))-\(pad(parts.tm_mday, 2))T"
            + "\(pad(parts.tm_hour, 2)):\(pad(parts.tm_min, 2)):\(pad(parts.tm_sec, 2))."
            + "\(pad(Int32(now.tv_nsec / 1_000_000), 3))Z"
    }
}
