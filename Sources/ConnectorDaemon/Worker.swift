#if canImport(Glibc)
import Glibc
#endif
import ConnectorPolicy
import Milter

/// The worker process: the one that speaks milter. It creates the socket as root, gives
/// it away, drops privileges, loads the policy as the unprivileged user (so a reload, which
/// runs as that user too, can read what the start could), reports readiness to the
/// supervisor on descriptor 3, and runs libmilter.
///
/// Signals: it inherits the supervisor's blocked mask. libmilter sigwaits SIGHUP, SIGTERM
/// and SIGINT in its own thread (and stops on them); SIGUSR1 and SIGUSR2 stay blocked and one
/// thread of ours sigwaits them: SIGUSR1 reloads, SIGUSR2 stops gracefully. The supervisor
/// never forwards SIGHUP, only SIGUSR1, and stops the worker with SIGUSR2.
public enum Worker {
    /// The write end of the readiness pipe, placed here by the supervisor's posix_spawn.
    static let readinessDescriptor: Int32 = 3

    public static func run(_ options: DaemonOptions) -> Int32 {
        let log = options.makeLog()
        do {
            try serve(options, log: log)
            log.log(.notice, "stopped")
            return Sysexit.ok.rawValue
        } catch {
            // Until readiness, stderr is the admin's terminal (or the journal): say it there
            // too, not only in syslog.
            if options.log != .stderr { writeStderr(error.message, prefixed: error.exit != .config) }
            for line in error.message.split(separator: "\n") { log.log(.error, String(line)) }
            return error.exit.rawValue
        }
    }

    private static func serve(_ options: DaemonOptions, log: LogSink) throws(DaemonError) {
        var configuration = ConnectorSessionFactory.configuration
        configuration.errorHandler = { message in log.log(.error, "milter: \(message)") }
        do {
            // Before the socket (libmilter wants it so), and so before the policy exists: the
            // sessions' factory comes with `main`, once the policy is loaded.
            try MilterServer.register(configuration)
        } catch {
            throw DaemonError(.software, "cannot register with libmilter: \(error)")
        }

        // The maps socket first: once the milter socket exists (what tests and admins watch
        // for), so does this one.
        var mapsListener: Int32?
        if let maps = options.mapsSocket {
            if let path = maps.unixPath { try checkSocketDirectory(of: path) }
            mapsListener = try MapsServer.listen(on: maps, identity: options.identity)
        }
        var policyListener: Int32?
        if let policySocket = options.policySocket {
            if let path = policySocket.unixPath { try checkSocketDirectory(of: path) }
            policyListener = try MapsServer.listen(on: policySocket, identity: options.identity, name: "policy socket")
        }
        // Metrics: bound as root too (docs/metrics.md); served once the policy is loaded.
        var metricsListener: Int32?
        if let spec = options.metricsSocket { metricsListener = try MetricsServer.listen(on: spec) }
        let metrics = options.metricsSocket.map { _ in
            WorkerMetrics(workerRestarts: options.workerRestarts, openSessions: { MilterServer.openSessions })
        }
        if let path = options.socket.unixPath {
            try checkSocketDirectory(of: path)
            // Born 0660 (libmilter never chmods; the umask decides), so there is no moment
            // when others could connect; the chmod below makes it explicit.
            umask(0o117)
        }
        do {
            // The supervisor proved any existing socket dead, so libmilter may remove it.
            try MilterServer.openSocket(options.socket.libmilterSpec, removeExisting: true)
        } catch {
            throw DaemonError(.cantCreate, "cannot listen on \(options.socket): \(error)")
        }
        umask(0o022)
        if let path = options.socket.unixPath {
            try options.identity.takeOwnership(ofSocket: path)
        }
        try options.identity.drop()

        let store: PolicyStore
        let loadStarted = MonotonicClock.now()
        do {
            store = try PolicyStore(path: options.configPath)
        } catch {
            throw DaemonError(.config, String(describing: error))
        }
        metrics?.policyLoaded(connectors: store.current.policy.connectors.count,
                              seconds: MonotonicClock.now() - loadStarted, isReload: false)
        try startThread { reloadOnSignal(store: store, path: options.configPath, log: log, metrics: metrics) }
        if let mapsListener, let spec = options.mapsSocket {
            let server = MapsServer(listener: mapsListener, policy: { store.current }, log: log, metrics: metrics)
            try startThread { server.run() }
            log.log(.notice, "serving the socketmap tables \(OutboundMapName.allCases.map(\.rawValue).joined(separator: ", ")) on \(spec)")
        }

        if let metricsListener, let metrics, let spec = options.metricsSocket {
            let server = MetricsServer(listener: metricsListener, metrics: metrics, log: log)
            try startThread { server.run() }
            log.log(.notice, "serving metrics on \(spec) (GET /metrics)")
        }
        if let policyListener, let spec = options.policySocket {
            let server = MapsServer(listener: policyListener, dialect: .policyDelegation, policy: { store.current }, log: log)
            try startThread { server.run() }
            log.log(.notice, "serving Postfix's policy delegation (relay control) on \(spec)")
        }

        reportReadiness()
        if !options.foreground { detachStandardStreams() }
        log.log(.notice, "listening on \(options.socket) (libmilter \(MilterServer.libraryVersion)), "
                + "policy \(options.configPath): \(ConnectorSessionFactory.describe(store))")
        do {
            try MilterServer.main(serving: ConnectorSessionFactory(store: store, log: log, metrics: metrics))
        } catch {
            throw DaemonError(.osError, "libmilter stopped: \(error)")
        }
    }

    /// libmilter only says "smfi_opensocket failed": name the usual cause ourselves.
    private static func checkSocketDirectory(of path: String) throws(DaemonError) {
        let directory = path.split(separator: "/", omittingEmptySubsequences: false).dropLast().joined(separator: "/")
        let parent = directory.isEmpty ? "/" : directory
        var info = stat()
        guard stat(parent, &info) == 0 else {
            throw DaemonError.system(.cantCreate, "socket directory \(parent) is not usable")
        }
        guard info.st_mode & S_IFMT == S_IFDIR else {
            throw DaemonError(.cantCreate, "socket directory \(parent) is not a directory")
        }
        guard access(parent, W_OK | X_OK) == 0 else {
            throw DaemonError.system(.cantCreate, "cannot create the socket in \(parent)")
        }
    }

    /// How long a stopping worker waits for open SMTP sessions to end.
    static let stopGrace: Double = 20

    /// SIGUSR1 (the supervisor's forward of SIGHUP or SIGUSR1): reload, or keep the running
    /// policy and say why. Sessions in progress keep the policy they started with.
    /// SIGUSR2 (the supervisor's SIGTERM or SIGINT): stop gracefully.
    private static func reloadOnSignal(store: PolicyStore, path: String, log: LogSink, metrics: WorkerMetrics?) {
        var set = sigset_t()
        sigemptyset(&set)
        sigaddset(&set, SIGUSR1)
        sigaddset(&set, SIGUSR2)
        while true {
            var signal: Int32 = 0
            guard sigwait(&set, &signal) == 0 else { continue }
            if signal == SIGUSR2 { stopGracefully(log: log) }
            let started = MonotonicClock.now()
            do {
                let fresh = try store.reload()
                metrics?.policyLoaded(connectors: fresh.policy.connectors.count, seconds: MonotonicClock.now() - started,
                                      isReload: true)
                log.log(.notice, "policy reloaded from \(path): \(ConnectorSessionFactory.describe(store))")
            } catch {
                metrics?.reloadRefused()
                log.log(.error, "policy reload from \(path) failed, keeping the running policy:")
                for line in String(describing: error).split(separator: "\n") { log.log(.error, String(line)) }
            }
        }
    }

    /// Stops accepting, waits for the MTA connections open at that moment to end (at most
    /// `stopGrace` seconds: an MTA may keep a connection for minutes) and exits. smfi_stop is
    /// not called: it, like libmilter's own SIGTERM handling, drops the open sessions.
    /// Once the listener is gone, the MTA's new connections fail and it applies its default
    /// action (Postfix `milter_default_action = tempfail`, Sendmail `F=T`): those senders
    /// retry. Sessions still open at the deadline are cut and tempfailed the same way.
    private static func stopGracefully(log: LogSink) -> Never {
        let deadline = MonotonicClock.now() + stopGrace
        let refusing = MilterServer.stopAccepting()
        if !refusing {
            log.log(.warning, "stopping: cannot stop libmilter from accepting; new connections are served until the sessions end")
        }
        var open = MilterServer.openSessions
        if open > 0 { log.log(.notice, "stopping: waiting up to \(Int(stopGrace)) s for \(open) open sessions") }
        // Zero twice in a row: a connection libmilter accepted just before the listener went
        // is counted only once its first command (negotiation) reaches us, a moment later.
        var zeroSeen = false
        while MonotonicClock.now() < deadline {
            if open == 0 {
                if zeroSeen { break }
                zeroSeen = true
            } else {
                zeroSeen = false
            }
            usleep(50_000)
            open = MilterServer.openSessions
        }
        log.log(.notice, open > 0 ? "stopped with \(open) sessions still open" : "stopped")
        _exit(Sysexit.ok.rawValue)
    }

    private static func reportReadiness() {
        // Only into the supervisor's pipe: run by hand, descriptor 3 may be anything.
        var info = stat()
        guard fstat(readinessDescriptor, &info) == 0, info.st_mode & S_IFMT == S_IFIFO else { return }
        var byte: UInt8 = 0
        // A supervisor that is gone cannot be told; it is its own exit that ends us.
        _ = try? SystemCall.retrying("write") { write(readinessDescriptor, &byte, 1) }
        close(readinessDescriptor)
    }

    private static func startThread(_ body: @escaping @Sendable () -> Void) throws(DaemonError) {
        final class Body { let run: @Sendable () -> Void; init(_ run: @escaping @Sendable () -> Void) { self.run = run } }
        let argument = Unmanaged.passRetained(Body(body)).toOpaque()
        var thread = pthread_t()
        let result = pthread_create(&thread, nil, { argument in
            Unmanaged<Body>.fromOpaque(argument!).takeRetainedValue().run()
            return nil
        }, argument)
        guard result == 0 else {
            Unmanaged<Body>.fromOpaque(argument).release()
            throw DaemonError.system(.osError, "pthread_create", errno: result)
        }
        pthread_detach(thread)
    }
}

/// Standard streams onto /dev/null, once a daemon has no terminal to talk to.
func detachStandardStreams() {
    let null = open("/dev/null", O_RDWR)
    guard null >= 0 else { return }
    for descriptor in [STDIN_FILENO, STDOUT_FILENO, STDERR_FILENO] { dup2(null, descriptor) }
    if null > STDERR_FILENO { close(null) }
}

/// Policy errors go out as they are ("FILE:LINE:COLUMN: message", like `check`); other
/// messages are led by the program's name.
public func writeStderr(_ message: String, prefixed: Bool = true) {
    let text = message.split(separator: "\n", omittingEmptySubsequences: false)
        .map { (prefixed ? "connector-milter: " : "") + "\($0)\n" }.joined()
    try? SystemCall.writeAll(STDERR_FILENO, text)
}
