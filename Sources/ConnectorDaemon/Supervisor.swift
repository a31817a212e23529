#if canImport(Glibc)
import Glibc
#endif

/// The parent process: it owns the pidfile and the signals, and keeps one worker (the same
/// executable with `--worker`) alive. It never loads the policy and never speaks milter, so
/// it stays single-threaded, which is what makes fork() and sigwait() safe here.
///
/// Why two processes: libmilter stops on SIGHUP (MTA-FACTS), and the daemon must reload on
/// it instead; and a worker that dies (kill -9, a crash) is restarted without the admin.
public enum Supervisor {
    /// Blocked before any thread exists, in both processes (the worker inherits the mask
    /// through posix_spawn); then only sigwait sees them.
    /// SIGUSR2 is the supervisor's "stop" to the worker: libmilter's own SIGTERM handling
    /// neither waits for open sessions nor returns sooner than about 5 s.
    static let handledSignals: [Int32] = [SIGHUP, SIGUSR1, SIGUSR2, SIGTERM, SIGINT, SIGCHLD]

    static var handledSet: sigset_t {
        var set = sigset_t()
        sigemptyset(&set)
        for signal in handledSignals { sigaddset(&set, signal) }
        return set
    }

    public static func blockSignals() {
        var set = handledSet
        sigprocmask(SIG_BLOCK, &set, nil)
    }

    /// A worker that takes longer than this to report readiness is killed.
    static let startupTimeout: Int32 = 60
    /// A worker asked to stop is killed after this many seconds (libmilter itself gives its
    /// threads about 5 s).
    static let stopTimeout: Double = 30
    /// A worker that dies sooner than this after starting makes the restart delay grow.
    static let stableUptime: Double = 10
    static let maximumRestartDelay: Double = 30

    public static func run(_ options: DaemonOptions) -> Int32 {
        var parent: DaemonParent?
        if !options.foreground {
            do {
                try requireSingleThread()
                parent = try DaemonParent.daemonize()   // the original process exits inside
            } catch {
                writeStderr(error.message)
                return error.exit.rawValue
            }
        }
        _ = executablePath  // resolved while the binary is surely the one running
        let log = options.makeLog()
        func fail(_ error: DaemonError) -> Int32 {
            if options.log != .stderr { writeStderr(error.message) }
            log.log(.error, error.message)
            parent?.report(error.exit.rawValue)
            return error.exit.rawValue
        }

        // Refuse to replace a live daemon's socket; a dead one's is left for the worker
        // (smfi_opensocket(true) removes it).
        for path in [options.socket.unixPath, options.mapsSocket?.unixPath, options.policySocket?.unixPath].compactMap({ $0 }) {
            do { try checkNoLiveSocket(at: path) } catch { return fail(error) }
        }
        if let pidfile = options.pidfile {
            do { try writePidfile(pidfile) } catch { return fail(error) }
        }
        let socketPaths = [options.socket.unixPath, options.mapsSocket?.unixPath, options.policySocket?.unixPath].compactMap { $0 }
        // The sockets of the last worker that became ready. A stopping worker leaves its
        // socket on disk unanswered while it drains; a daemon started meanwhile takes the
        // path over, and that new socket is not ours to remove.
        var workerSockets: [String: SocketIdentity] = [:]
        func recordSockets() {
            for path in socketPaths { workerSockets[path] = SocketIdentity(path: path) }
        }
        func exitCleanly(_ code: Int32) -> Int32 {
            if let pidfile = options.pidfile { unlink(pidfile) }
            // The worker cannot remove its socket once it is no longer root (libmilter tries);
            // no worker is alive now, so the socket is ours to remove.
            for path in socketPaths {
                if let known = workerSockets[path], SocketIdentity(path: path) != known { continue }
                removeSocket(at: path)
            }
            return code
        }

        var worker: pid_t
        switch startWorker(options) {
        case .ready(let pid):
            worker = pid
            recordSockets()
        case .failed(let error):
            // The worker has said why on stderr and in the log; no restart loop at startup.
            log.log(.error, "worker failed to start: \(error.message)")
            parent?.report(error.exit.rawValue)
            return exitCleanly(error.exit.rawValue)
        }
        parent?.report(Sysexit.ok.rawValue)
        if parent != nil { detachStandardStreams() }
        log.log(.info, "supervisor \(getpid()) started worker \(worker)")

        var current: pid_t? = worker
        var startedAt = MonotonicClock.now()
        var restartAt: Double?
        var nextDelay = 1.0
        // Workers that died: the next one is told, and reports it in its metrics.
        var respawn = options
        var set = handledSet
        while true {
            var signal: Int32
            if let due = restartAt {
                var timeout = timespec(interval: max(0, due - MonotonicClock.now()))
                signal = sigtimedwait(&set, nil, &timeout)
            } else {
                signal = sigwaitinfo(&set, nil)
            }
            if signal < 0 {
                guard errno == EAGAIN, restartAt != nil else { continue }
                // Time to restart.
                switch startWorker(respawn) {
                case .ready(let pid):
                    log.log(.notice, "worker \(pid) started")
                    recordSockets()
                    (current, startedAt, restartAt) = (pid, MonotonicClock.now(), nil)
                case .failed(let error):
                    log.log(.error, "worker failed to start (\(error.message)); next attempt in \(Int(nextDelay)) s")
                    restartAt = MonotonicClock.now() + nextDelay
                    nextDelay = min(nextDelay * 2, maximumRestartDelay)
                }
                continue
            }
            switch signal {
            case SIGHUP, SIGUSR1:
                if let pid = current {
                    log.log(.info, "reload requested (\(signalName(signal))): signalling worker \(pid)")
                    kill(pid, SIGUSR1)
                } else {
                    log.log(.info, "reload requested while the worker is down: the next worker loads the file anyway")
                }
            case SIGTERM, SIGINT:
                log.log(.notice, "stopping (\(signalName(signal)))")
                if let pid = current { stopWorker(pid, log: log) }
                return exitCleanly(Sysexit.ok.rawValue)
            case SIGCHLD:
                for (pid, status) in reapChildren() where pid == current {
                    current = nil
                    respawn.workerRestarts += 1
                    let uptime = MonotonicClock.now() - startedAt
                    if uptime >= stableUptime { nextDelay = 1 }
                    log.log(.error, "worker \(pid) \(describe(status: status)) after \(Int(uptime)) s; "
                            + "restarting in \(Int(nextDelay)) s")
                    restartAt = MonotonicClock.now() + nextDelay
                    nextDelay = min(nextDelay * 2, maximumRestartDelay)
                }
            default:
                break
            }
        }
    }

    // MARK: - Worker

    enum Start {
        case ready(pid_t)
        case failed(DaemonError)
    }

    /// Spawns the worker and waits for its readiness byte. EOF instead means it failed: its
    /// exit code is the answer.
    static func startWorker(_ options: DaemonOptions) -> Start {
        let pid: pid_t, readiness: Int32
        do {
            (pid, readiness) = try spawnWorker(arguments: options.workerArguments)
        } catch {
            return .failed(error)
        }
        defer { close(readiness) }
        var poller = pollfd(fd: readiness, events: Int16(POLLIN), revents: 0)
        var ready = false, timedOut = false
        let deadline = MonotonicClock.now() + Double(startupTimeout)
        do {
            // Retried after a signal with what is left of the time, not the whole of it.
            let polled = try SystemCall.retrying("poll") {
                poll(&poller, 1, Int32(max(0, (deadline - MonotonicClock.now()) * 1000)))
            }
            if polled == 0 {
                timedOut = true
            } else {
                var byte: UInt8 = 0
                // 0: EOF, the worker is exiting without readiness
                ready = try SystemCall.retrying("read") { read(readiness, &byte, 1) } == 1
            }
        } catch {
            timedOut = error.call == "poll"
        }
        if ready { return .ready(pid) }
        if timedOut { kill(pid, SIGKILL) }
        var status: Int32 = 0
        _ = try? SystemCall.waitForChild(pid, status: &status)
        if timedOut {
            return .failed(DaemonError(.tempFail, "worker \(pid) did not become ready within \(startupTimeout) s"))
        }
        let code = exitCode(status: status) ?? Sysexit.software.rawValue
        return .failed(DaemonError(Sysexit(rawValue: code) ?? .software, "worker \(pid) \(describe(status: status))"))
    }

    /// This executable's real path, so the worker shows up as connector-milter in ps and
    /// pgrep (spawned as /proc/self/exe, its name would be "exe").
    static let executablePath: String = {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let count = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        guard count > 0 else { return "/proc/self/exe" }
        return String(decoding: buffer[..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }()

    /// This executable with the normalized arguments plus --worker. The readiness pipe's write
    /// end becomes descriptor 3; everything else we opened is close-on-exec.
    static func spawnWorker(arguments: [String]) throws(DaemonError) -> (pid_t, Int32) {
        var (readEnd, writeEnd): (Int32, Int32)
        do {
            (readEnd, writeEnd) = try SystemCall.makePipe()
        } catch {
            throw DaemonError(.osError, "pipe", error)
        }
        if writeEnd == Worker.readinessDescriptor {
            // dup2 onto itself would keep close-on-exec: move it out of the way first.
            let moved = fcntl(writeEnd, F_DUPFD_CLOEXEC, 10)
            close(writeEnd)
            writeEnd = moved
        }
        defer { close(writeEnd) }

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, writeEnd, Worker.readinessDescriptor)

        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var mask = handledSet
        posix_spawnattr_setsigmask(&attributes, &mask)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        sigaddset(&defaults, SIGPIPE)
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))

        let argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
        defer { for argument in argv { free(argument) } }
        var pid: pid_t = 0
        // After a package upgrade the path is the new binary; if it is gone, the old one.
        let path = access(executablePath, X_OK) == 0 ? executablePath : "/proc/self/exe"
        let result = posix_spawn(&pid, path, &actions, &attributes, argv, environ)
        guard result == 0 else {
            close(readEnd)
            throw DaemonError.system(.osError, "cannot start the worker", errno: result)
        }
        return (pid, readEnd)
    }

    /// SIGUSR2: the worker stops taking connections, lets the open ones finish (for a
    /// while) and exits; SIGKILL if it lingers.
    static func stopWorker(_ pid: pid_t, log: LogSink) {
        kill(pid, SIGUSR2)
        let deadline = MonotonicClock.now() + stopTimeout
        var children = sigset_t()
        sigemptyset(&children)
        sigaddset(&children, SIGCHLD)
        while true {
            var status: Int32 = 0
            do {
                if try SystemCall.waitForChild(pid, status: &status, options: WNOHANG) == pid { return }
            } catch where error.errno == ECHILD {
                return
            } catch {}
            let remaining = deadline - MonotonicClock.now()
            if remaining <= 0 { break }
            var timeout = timespec(interval: min(remaining, 1))
            _ = sigtimedwait(&children, nil, &timeout)
        }
        log.log(.warning, "worker \(pid) did not stop within \(Int(stopTimeout)) s: killing it")
        kill(pid, SIGKILL)
        _ = try? SystemCall.waitForChild(pid, status: nil)
    }

    static func reapChildren() -> [(pid_t, Int32)] {
        var reaped: [(pid_t, Int32)] = []
        while true {
            var status: Int32 = 0
            guard let pid = try? SystemCall.waitForChild(-1, status: &status, options: WNOHANG), pid > 0 else {
                return reaped
            }
            reaped.append((pid, status))
        }
    }

    // MARK: - Socket and pidfile

    /// A socket someone answers on belongs to a live milter: leave it. A path that is not a
    /// socket is not ours to delete.
    static func checkNoLiveSocket(at path: String) throws(DaemonError) {
        var info = stat()
        guard lstat(path, &info) == 0 else {
            if errno == ENOENT { return }
            throw DaemonError.system(.cantCreate, "cannot inspect \(path)")
        }
        guard info.st_mode & S_IFMT == S_IFSOCK else {
            throw DaemonError(.cantCreate, "\(path) exists and is not a socket; not replacing it")
        }
        let descriptor: Int32
        do {
            descriptor = try SystemCall.unixStreamSocket()
        } catch {
            throw DaemonError(.osError, "socket", error)
        }
        defer { close(descriptor) }
        do {
            try SystemCall.connect(descriptor, unixPath: path)
        } catch where error.errno == ECONNREFUSED {
            return  // stale: left by a dead daemon
        } catch {
            throw DaemonError(.cantCreate, "cannot check whether \(path) is in use", error)
        }
        throw DaemonError(.cantCreate, "another daemon is already listening on \(path); not starting a second one")
    }

    /// Which file a path names, to tell one socket from another made later at the same path.
    struct SocketIdentity: Equatable {
        let device: UInt64
        let inode: UInt64

        init?(path: String) {
            var info = stat()
            guard lstat(path, &info) == 0 else { return nil }
            (device, inode) = (UInt64(info.st_dev), UInt64(info.st_ino))
        }
    }

    static func removeSocket(at path: String) {
        var info = stat()
        if lstat(path, &info) == 0 && info.st_mode & S_IFMT == S_IFSOCK { unlink(path) }
    }

    static func writePidfile(_ path: String) throws(DaemonError) {
        let descriptor = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0o644)
        guard descriptor >= 0 else { throw DaemonError.system(.cantCreate, "cannot write pidfile \(path)") }
        defer { close(descriptor) }
        do {
            try SystemCall.writeAll(descriptor, "\(getpid())\n")
        } catch {
            throw DaemonError(.cantCreate, "cannot write pidfile \(path)", error)
        }
    }

    // MARK: - Helpers

    /// fork() copies only the calling thread: with another thread alive (one that Dispatch,
    /// Foundation or Swift concurrency started), the child could inherit a held lock.
    static func requireSingleThread() throws(DaemonError) {
        guard let directory = opendir("/proc/self/task") else { return }
        defer { closedir(directory) }
        var threads = 0
        while let entry = readdir(directory) {
            if entry.pointee.d_name.0 != UInt8(ascii: ".") { threads += 1 }
        }
        if threads > 1 {
            throw DaemonError(.software, "internal error: \(threads) threads exist before fork()")
        }
    }

    static func exitCode(status: Int32) -> Int32? {
        status & 0x7F == 0 ? (status >> 8) & 0xFF : nil
    }

    static func describe(status: Int32) -> String {
        if let code = exitCode(status: status) { return "exited with status \(code)" }
        let signal = status & 0x7F
        return "was killed by signal \(signal) (\(signalName(signal)))"
    }

    static func signalName(_ signal: Int32) -> String {
        switch signal {
        case SIGHUP: "SIGHUP"
        case SIGINT: "SIGINT"
        case SIGKILL: "SIGKILL"
        case SIGSEGV: "SIGSEGV"
        case SIGTERM: "SIGTERM"
        case SIGUSR1: "SIGUSR1"
        case SIGABRT: "SIGABRT"
        case SIGILL: "SIGILL"
        case SIGTRAP: "SIGTRAP"
        case SIGBUS: "SIGBUS"
        default: "signal \(signal)"
        }
    }
}

/// The link from the daemon back to the process the admin started: that process waits
/// until the daemon is ready (exit 0) or has failed (its exit code), so `run` in a shell or
/// a Type=forking unit reports startup errors.
struct DaemonParent {
    let descriptor: Int32

    /// Forks; the original process waits for one status byte and exits with it. Returns in
    /// the daemon, which is a session leader with no terminal, in "/".
    static func daemonize() throws(DaemonError) -> DaemonParent {
        let ends: (read: Int32, write: Int32)
        do {
            ends = try SystemCall.makePipe()
        } catch {
            throw DaemonError(.osError, "pipe", error)
        }
        let pid = fork()
        if pid < 0 { throw DaemonError.system(.osError, "fork") }
        if pid > 0 {
            close(ends.write)
            var byte: UInt8 = 0
            if (try? SystemCall.retrying("read", { read(ends.read, &byte, 1) })) == 1 { exit(Int32(byte)) }
            writeStderr("the daemon exited during startup without saying why")
            exit(Sysexit.osError.rawValue)
        }
        close(ends.read)
        closeInheritedDescriptors(keeping: ends.write)
        setsid()
        chdir("/")
        // The original process may be gone (killed while waiting): a write to its pipe must
        // fail with EPIPE, not kill the daemon. Workers get SIGPIPE back to default.
        signal(SIGPIPE, SIG_IGN)
        return DaemonParent(descriptor: ends.write)
    }

    /// A daemon keeps nothing of the shell that started it but its standard streams (which
    /// it detaches once ready): an inherited descriptor would otherwise live on in it and in
    /// every worker, keeping pipes open and files busy.
    private static func closeInheritedDescriptors(keeping kept: Int32) {
        guard let directory = opendir("/proc/self/fd") else { return }
        var descriptors: [Int32] = []
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if let descriptor = Int32(name), descriptor > STDERR_FILENO, descriptor != kept { descriptors.append(descriptor) }
        }
        let own = dirfd(directory)
        closedir(directory)
        for descriptor in descriptors where descriptor != own { close(descriptor) }
    }

    func report(_ code: Int32) {
        var byte = UInt8(truncatingIfNeeded: code)
        // The original process may be gone: then nobody is left to tell.
        _ = try? SystemCall.retrying("write") { write(descriptor, &byte, 1) }
        close(descriptor)
    }
}

extension timespec {
    init(interval: Double) {
        let seconds = interval.rounded(.down)
        self.init(tv_sec: Int(seconds), tv_nsec: Int((interval - seconds) * 1e9))
    }
}
