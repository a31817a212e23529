#if canImport(Glibc)
import Glibc
#endif

/// Exit codes from sysexits(3), which init scripts, systemd and admins read.
public enum Sysexit: Int32, Sendable {
    case ok = 0
    case usage = 64         // EX_USAGE: bad command line
    case dataError = 65     // EX_DATAERR: input data was incorrect (a corrupt gzip log)
    case noInput = 66       // EX_NOINPUT: an input file did not exist or was not readable
    case unavailable = 69   // EX_UNAVAILABLE: a service we need is missing
    case software = 70      // EX_SOFTWARE: internal error
    case osError = 71       // EX_OSERR: fork, exec, pipe... failed
    case cantCreate = 73    // EX_CANTCREAT: socket or pidfile cannot be created, or is taken
    case tempFail = 75      // EX_TEMPFAIL
    case noPermission = 77  // EX_NOPERM: cannot switch user, cannot read
    case config = 78        // EX_CONFIG: invalid policy file
}

/// A failure that ends the process: what to tell the admin, and the exit code.
public struct DaemonError: Error, CustomStringConvertible {
    public let exit: Sysexit
    public let message: String

    init(_ exit: Sysexit, _ message: String) {
        self.exit = exit
        self.message = message
    }

    /// A system call's failure, with errno's text.
    static func system(_ exit: Sysexit, _ what: String, errno code: Int32 = errno) -> DaemonError {
        DaemonError(exit, what, SystemCallError(call: what, errno: code))
    }

    public var description: String { message }
}
