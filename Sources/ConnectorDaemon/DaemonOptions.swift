#if canImport(Glibc)
import Glibc
#endif

/// Where the daemon's own log lines and verdict lines go.
public enum LogDestination: String, CaseIterable, Sendable {
    case syslog, stderr
}

/// The options of `run`, checked and with absolute paths (the daemon changes to "/").
public struct DaemonOptions: Sendable {
    /// Where `run`, `check` and the other commands look for the policy without --config.
    public static let defaultPolicyPath = "/etc/connector-milter/connectors.yaml"

    var configPath: String
    var socket: SocketSpec
    /// The socketmap endpoint (MapsServer), if any.
    var mapsSocket: SocketSpec?
    /// Postfix's policy delegation for relay control (MapsServer, PolicyDelegation), if any.
    var policySocket: SocketSpec?
    var user: String?
    var group: String?
    var identity: Identity
    var pidfile: String?
    var log: LogDestination
    var foreground: Bool
    /// The Prometheus endpoint (MetricsServer), if any; inet or inet6 only.
    var metricsSocket: SocketSpec?
    /// Workers that died before this one: the supervisor's count, given to each worker it
    /// spawns so that one endpoint shows it (docs/metrics.md).
    var workerRestarts = 0

    public init(config: String, socket socketText: String, mapsSocket mapsSocketText: String?, user: String?,
                group: String?, pidfile: String?, log: LogDestination, foreground: Bool,
                policySocket policySocketText: String? = nil, metrics metricsText: String? = nil,
                workerRestarts: Int = 0) throws(DaemonError) {
        let directory = currentDirectory()
        configPath = absolutePath(config, relativeTo: directory)
        do {
            socket = try SocketSpec(parsing: socketText, relativeTo: directory)
        } catch {
            throw DaemonError(.usage, error.description)
        }
        if let text = mapsSocketText {
            do {
                mapsSocket = try SocketSpec(parsing: text, relativeTo: directory)
            } catch {
                throw DaemonError(.usage, "--maps-socket: \(error.description)")
            }
        }
        if let text = policySocketText {
            do {
                policySocket = try SocketSpec(parsing: text, relativeTo: directory)
            } catch {
                throw DaemonError(.usage, "--policy-socket: \(error.description)")
            }
        }
        self.user = user
        self.group = group
        identity = try Identity.resolve(user: user, group: group)
        try identity.checkCanSwitch()
        self.pidfile = pidfile.map { absolutePath($0, relativeTo: directory) }
        self.log = log
        self.foreground = foreground
        if let metricsText { metricsSocket = try MetricsSocket.parse(metricsText) }
        self.workerRestarts = workerRestarts
    }

    func makeLog() -> LogSink {
        switch log {
        case .syslog: SyslogSink()
        case .stderr: StderrSink()
        }
    }

    /// The worker's command line: these options, normalized, plus --worker.
    var workerArguments: [String] {
        var arguments = [CommandLine.arguments.first ?? "connector-milter", "run",
                         "--config", configPath, "--socket", socket.libmilterSpec, "--log", log.rawValue]
        if let mapsSocket { arguments += ["--maps-socket", mapsSocket.libmilterSpec] }
        if let policySocket { arguments += ["--policy-socket", policySocket.libmilterSpec] }
        if let user { arguments += ["--user", user] }
        if let group { arguments += ["--group", group] }
        if foreground { arguments.append("--foreground") }
        if let metricsSocket { arguments += ["--metrics", metricsSocket.libmilterSpec, "--worker-restarts", String(workerRestarts)] }
        arguments.append("--worker")
        return arguments
    }
}

public func currentDirectory() -> String {
    var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
    guard getcwd(&buffer, buffer.count) != nil else { return "/" }
    return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

public func absolutePath(_ path: String, relativeTo directory: String) -> String {
    if path.hasPrefix("/") { return path }
    return directory.hasSuffix("/") ? directory + path : directory + "/" + path
}
