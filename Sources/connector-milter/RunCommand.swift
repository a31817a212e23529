import ArgumentParser
#if canImport(Glibc)
import Glibc
#endif
import Milter

// ─────────────────────────────────────────────────────────────────────────────────────────
// PLUG-IN POINT: the policy engine's sessions, and how libmilter should serve them.
// (UnconfiguredSessionFactory() answers every connection "451 4.3.5 Server configuration
// problem": the fail-closed stand-in used before the engine existed.)
extension Run {
    static let plugIn = WorkerPlugIn(
        makeFactory: { store, log in ConnectorSessionFactory(store: store, log: log) },
        describePolicy: { store in "\(store.current.policy.connectors.count) connectors" },
        configuration: ConnectorSessionFactory.configuration)
}
// ─────────────────────────────────────────────────────────────────────────────────────────

enum LogDestination: String, ExpressibleByArgument, CaseIterable, Sendable {
    case syslog, stderr
}

/// `connector-milter run` (SPEC section 5).
struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run the milter daemon.",
        discussion: """
            Without --foreground the daemon detaches and this command exits once the milter \
            listens (0) or with the reason it could not start: 64 usage, 73 socket or pidfile \
            cannot be created or another milter already listens, 77 cannot switch user, \
            78 invalid policy. SIGHUP or SIGUSR1 reloads the policy (an invalid file keeps \
            the running one); SIGTERM or SIGINT stops, letting open sessions finish (up to 20 s).
            """)

    @Option(help: ArgumentHelp("The policy file.", valueName: "file"))
    var config = "/etc/connector-milter/connectors.yaml"

    @Option(help: ArgumentHelp("Where the MTA connects: unix:/path, local:/path, inet:PORT@HOST or inet6:PORT@HOST.",
                               valueName: "spec"))
    var socket: String

    @Option(name: .customLong("maps-socket"),
            help: ArgumentHelp("Also serve the outbound connectors as Postfix socketmap tables (tls-policy, transport) "
                               + "here: unix:/path, inet:PORT@HOST or inet6:PORT@HOST.", valueName: "spec"))
    var mapsSocket: String?

    @Option(help: ArgumentHelp("Run as this user after creating the socket (needs root).", valueName: "user"))
    var user: String?

    @Option(help: ArgumentHelp("The socket's group (e.g. the MTA's) and the group to run as.", valueName: "group"))
    var group: String?

    @Option(help: ArgumentHelp("Write the supervisor's pid here.", valueName: "file"))
    var pidfile: String?

    @Option(help: "Where log lines go: syslog (facility mail) or stderr (needs --foreground).")
    var log: LogDestination = .syslog

    @Flag(help: "Do not detach (for systemd Type=simple, or a terminal).")
    var foreground = false

    /// Set by the supervisor on the process it spawns.
    @Flag(help: .private)
    var worker = false

    func validate() throws {
        let milterSocket: SocketSpec
        do {
            milterSocket = try SocketSpec(parsing: socket, relativeTo: currentDirectory())
        } catch {
            throw ValidationError(error.description)
        }
        if let mapsSocket {
            do {
                let maps = try SocketSpec(parsing: mapsSocket, relativeTo: currentDirectory())
                if maps == milterSocket { throw ValidationError("--maps-socket must differ from --socket") }
            } catch let error as SocketSpecError {
                throw ValidationError("--maps-socket: \(error.description)")
            }
        }
        if log == .stderr && !foreground && !worker {
            throw ValidationError("--log stderr needs --foreground: a detached daemon has no terminal")
        }
        if let pidfile, pidfile.isEmpty { throw ValidationError("--pidfile needs a file name") }
        do {
            _ = try Identity.resolve(user: user, group: group)
        } catch {
            throw ValidationError(error.message)
        }
    }

    func run() throws {
        // First, before anything can start a thread: every thread inherits this mask.
        Supervisor.blockSignals()

        let options: DaemonOptions
        do {
            options = try DaemonOptions(self)
        } catch {
            writeStderr(error.message)
            throw error.exit.exitCode
        }
        let code = worker ? Worker.run(options, plugIn: Run.plugIn) : Supervisor.run(options)
        // Straight out: libmilter's threads may still be winding down in the worker.
        Glibc.exit(code)
    }
}

/// The options of `run`, checked and with absolute paths (the daemon changes to "/").
struct DaemonOptions: Sendable {
    var configPath: String
    var socket: SocketSpec
    /// The socketmap endpoint (MapsServer), if any.
    var mapsSocket: SocketSpec?
    var user: String?
    var group: String?
    var identity: Identity
    var pidfile: String?
    var log: LogDestination
    var foreground: Bool

    init(_ run: Run) throws(DaemonError) {
        let directory = currentDirectory()
        configPath = absolutePath(run.config, relativeTo: directory)
        do {
            socket = try SocketSpec(parsing: run.socket, relativeTo: directory)
        } catch {
            throw DaemonError(.usage, error.description)
        }
        if let text = run.mapsSocket {
            do {
                mapsSocket = try SocketSpec(parsing: text, relativeTo: directory)
            } catch {
                throw DaemonError(.usage, "--maps-socket: \(error.description)")
            }
        }
        user = run.user
        group = run.group
        identity = try Identity.resolve(user: run.user, group: run.group)
        try identity.checkCanSwitch()
        pidfile = run.pidfile.map { absolutePath($0, relativeTo: directory) }
        log = run.log
        foreground = run.foreground
    }

    func makeLog() -> LogSink {
        switch log {
        case .syslog: SyslogSink()
        case .stderr: StderrSink()
        }
    }

    /// The worker's command line: these options, normalized, plus --worker.
    var workerArguments: [String] {
        var arguments = [CommandLine.arguments.first ?? "connector-milter", Run.configuration.commandName ?? "run",
                         "--config", configPath, "--socket", socket.libmilterSpec, "--log", log.rawValue]
        if let mapsSocket { arguments += ["--maps-socket", mapsSocket.libmilterSpec] }
        if let user { arguments += ["--user", user] }
        if let group { arguments += ["--group", group] }
        if foreground { arguments.append("--foreground") }
        arguments.append("--worker")
        return arguments
    }
}

func currentDirectory() -> String {
    var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
    guard getcwd(&buffer, buffer.count) != nil else { return "/" }
    return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

func absolutePath(_ path: String, relativeTo directory: String) -> String {
    if path.hasPrefix("/") { return path }
    return directory.hasSuffix("/") ? directory + path : directory + "/" + path
}
