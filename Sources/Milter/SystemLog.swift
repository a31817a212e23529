import CMilterShim
#if canImport(Glibc)
import Glibc
#endif

/// syslog(3) for the rest of the program, which does not import the C modules:
/// `syslog` itself is variadic, so every message goes through `cm_syslog` ("%s", message).
public enum SystemLog {
    public enum Priority: Sendable {
        case error, warning, notice, info, debug

        var value: Int32 {
            switch self {
            case .error: LOG_ERR
            case .warning: LOG_WARNING
            case .notice: LOG_NOTICE
            case .info: LOG_INFO
            case .debug: LOG_DEBUG
            }
        }
    }

    /// openlog(ident, LOG_PID, LOG_MAIL). openlog keeps the ident pointer, so it is copied
    /// once and never freed.
    public static func open(ident: String) {
        openlog(strdup(ident), LOG_PID | LOG_NDELAY, LOG_MAIL)
    }

    public static func write(priority: Priority, message: String) {
        cm_syslog(priority.value, message)
    }
}
