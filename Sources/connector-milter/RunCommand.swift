import ArgumentParser
#if canImport(Glibc)
import Glibc
#endif
import ConnectorDaemon


extension LogDestination: ExpressibleByArgument {}

/// `connector-milter run`: the daemon (docs/daemon.md).
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
    var config = defaultPolicyPath

    @Option(help: ArgumentHelp("Where the MTA connects: unix:/path, local:/path, inet:PORT@HOST or inet6:PORT@HOST.",
                               valueName: "spec"))
    var socket: String

    @Option(name: .customLong("maps-socket"),
            help: ArgumentHelp("Also serve the outbound connectors as Postfix socketmap tables (tls-policy, transport) "
                               + "here: unix:/path, inet:PORT@HOST or inet6:PORT@HOST.", valueName: "spec"))
    var mapsSocket: String?

    @Option(name: .customLong("policy-socket"),
            help: ArgumentHelp("Also serve Postfix's policy delegation here, for check_policy_service in "
                               + "smtpd_relay_restrictions: OK when the connectors let the client relay, else DUNNO. "
                               + "unix:/path, inet:PORT@HOST or inet6:PORT@HOST.", valueName: "spec"))
    var policySocket: String?

    @Option(help: ArgumentHelp("Serve Prometheus metrics (GET /metrics over HTTP) here: inet:PORT@ADDR or "
                               + "inet6:PORT@ADDR, e.g. inet:9187@127.0.0.1. Off by default.", valueName: "spec"))
    var metrics: String?

    /// Set by the supervisor: workers that died before this one, for the metrics.
    @Option(name: .customLong("worker-restarts"), help: .private)
    var workerRestarts = 0

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
        if let policySocket {
            do {
                let policy = try SocketSpec(parsing: policySocket, relativeTo: currentDirectory())
                if policy == milterSocket { throw ValidationError("--policy-socket must differ from --socket") }
                if let mapsSocket, policy == (try? SocketSpec(parsing: mapsSocket, relativeTo: currentDirectory())) {
                    throw ValidationError("--policy-socket must differ from --maps-socket")
                }
            } catch let error as SocketSpecError {
                throw ValidationError("--policy-socket: \(error.description)")
            }
        }
        if let metrics {
            let endpoint: SocketSpec
            do {
                endpoint = try MetricsSocket.parse(metrics)
            } catch {
                throw ValidationError(error.message)
            }
            let others = [milterSocket] + [mapsSocket.flatMap { try? SocketSpec(parsing: $0, relativeTo: currentDirectory()) }].compactMap { $0 }
            if others.contains(endpoint) { throw ValidationError("--metrics must differ from --socket and --maps-socket") }
        }
        if workerRestarts < 0 { throw ValidationError("--worker-restarts cannot be negative") }
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
            options = try DaemonOptions(config: config, socket: socket, mapsSocket: mapsSocket, user: user,
                                        group: group, pidfile: pidfile, log: log, foreground: foreground,
                                        policySocket: policySocket, metrics: metrics, workerRestarts: workerRestarts)
        } catch {
            writeStderr(error.message)
            throw ExitCode(error.exit.rawValue)
        }
        let code = worker ? Worker.run(options) : Supervisor.run(options)
        // Straight out: libmilter's threads may still be winding down in the worker.
        Glibc.exit(code)
    }
}

