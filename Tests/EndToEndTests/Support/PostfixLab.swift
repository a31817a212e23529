// A private mail system for one end-to-end test, in its own temporary directory:
//
//   swaks / RawSMTPClient --> Postfix smtpd (127.0.0.1:free port, STARTTLS, XCLIENT)
//                               | smtpd_milters = unix:LAB/run/milter.sock
//                               v
//                             connector-milter (or the C pass-through milter, or none)
//   Postfix smtp --> smtp-sink (127.0.0.1:free port), one file per delivered message
//   syslog(3) --> /dev/log --> SyslogCollector (in this process)
//   Postfix's own log --> LAB/log/maillog (maillog_file + postlogd, no syslog needed)
//
// Postfix's main.cf and master.cf come from Tests/EndToEndTests/Fixtures/postfix/*.in,
// the same templates bench/lab.sh uses. Every process is stopped by the PID the lab
// recorded. Needs root (a private Postfix and /dev/log); see LabProcess.requireRoot.

import Foundation
import Glibc

final class PostfixLab: @unchecked Sendable {
    struct Configuration: Sendable {
        enum Milter: Sendable {
            /// No smtpd_milters at all.
            case none
            /// smtpd_milters = unix:LAB/run/milter.sock (start a milter there, or Postfix
            /// applies milter_default_action = tempfail).
            case labSocket
            /// smtpd_milters = this value verbatim (e.g. "inet:127.0.0.1:PORT").
            case custom(String)
        }

        /// Postfix's own relay control (main.cf.in).
        enum RelayControl: Sendable {
            /// The documented setup: the daemon's policy service (LAB/run/policy.sock) and
            /// relay-domains socketmap (LAB/run/maps.sock); startDaemon serves both.
            case connectors
            /// Stock Postfix: only the host relays, mail for these domains is taken from anyone
            /// (for labs that run no connector-milter).
            case stock(relayDomains: String)
        }

        var milter: Milter = .labSocket
        var relayControl: RelayControl = .connectors
        /// CN of the CA-signed (and of the self-signed) client certificate.
        var clientCommonName = "relay.contoso.com"
        /// main.cf parameters added after the template's (a later line wins in Postfix).
        var mainCf: [String: String] = [:]

        init(milter: Milter = .labSocket, relayControl: RelayControl = .connectors) {
            self.milter = milter
            self.relayControl = relayControl
        }

        /// A lab without connector-milter: stock relay control (only the host relays, no relay_domains).
        static func withoutConnectors(milter: Milter = .labSocket) -> Configuration {
            Configuration(milter: milter, relayControl: .stock(relayDomains: ""))
        }
    }

    let configuration: Configuration
    /// The lab's directory (0755, under the system temp dir).
    let directory: String
    /// Postfix's SMTP server: 127.0.0.1:smtpPort.
    let smtpPort: UInt16
    /// smtp-sink: 127.0.0.1:sinkPort.
    let sinkPort: UInt16
    let certificates: LabCertificates
    /// How long `start` took, in seconds, and its steps.
    private(set) var startupDuration: TimeInterval = 0
    private(set) var startupSteps: [(step: String, seconds: TimeInterval)] = []

    var configDirectory: String { directory + "/etc" }
    var maillogPath: String { directory + "/log/maillog" }
    var sinkDirectory: String { directory + "/sink" }
    /// A directory anyone may write (sockets, pid files): the daemon drops privileges.
    var runDirectory: String { directory + "/run" }
    var milterSocketPath: String { runDirectory + "/milter.sock" }
    /// Postfix's own refusal of a relay attempt (reject_unauth_destination, after the daemon's
    /// policy service said DUNNO): what a stranger gets; the milter never sees that recipient.
    static func relayAccessDenied(_ recipient: String) -> String { "554 5.7.1 <\(recipient)>: Relay access denied" }
    /// The daemon's policy service and socketmap, as main.cf names them (RelayControl.connectors).
    var policySocketPath: String { runDirectory + "/policy.sock" }
    var mapsSocketPath: String { runDirectory + "/maps.sock" }
    /// "unix:LAB/run/milter.sock": what Postfix's smtpd_milters names with `.labSocket`.
    var milterSocket: String { "unix:" + milterSocketPath }

    private let syslog: SyslogCollector
    private let syslogMark: Int
    private let lock = NSLock()
    private var masterPID: pid_t?
    private var sinkPID: pid_t?
    private var milters: [LabMilterProcess] = []
    private var stopped = false

    // MARK: - Starting and stopping

    /// Creates the directory, certificates and configuration, starts smtp-sink and Postfix.
    static func start(_ configuration: Configuration = Configuration()) throws -> PostfixLab {
        try LabProcess.requireRoot()
        for (tool, package) in [("postfix", "postfix"), ("postconf", "postfix"), ("smtp-sink", "postfix"),
                                ("swaks", "swaks"), ("openssl", "openssl")] {
            _ = try LabProcess.require(tool, package: package)
        }
        let began = Date()
        let syslog = try SyslogCollector.shared()
        var template = Array("/tmp/connector-lab.XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else {
            throw LabError("mkdtemp: \(String(cString: strerror(errno)))")
        }
        let directory = String(cString: made)
        chmod(directory, 0o755)  // Postfix's daemons run as postfix and must reach their files
        let prepared = Date()
        let lab = try PostfixLab(configuration: configuration, directory: directory, syslog: syslog)
        lab.startupSteps.append(("directory, certificates, configuration", Date().timeIntervalSince(prepared)))
        do {
            var step = Date()
            try lab.startSink()
            lab.startupSteps.append(("smtp-sink", Date().timeIntervalSince(step)))
            step = Date()
            try lab.startPostfix()
            lab.startupSteps.append(("postfix", Date().timeIntervalSince(step)))
        } catch {
            lab.stop(removeDirectory: false)
            throw LabError("lab in \(directory) did not start: \(error)\n--- maillog:\n\(lab.maillog())")
        }
        lab.startupDuration = Date().timeIntervalSince(began)
        return lab
    }

    private init(configuration: Configuration, directory: String, syslog: SyslogCollector) throws {
        self.configuration = configuration
        self.directory = directory
        self.syslog = syslog
        self.syslogMark = syslog.count
        let fm = FileManager.default
        for sub in ["etc", "queue", "data", "log", "sink", "run", "certs"] {
            try fm.createDirectory(atPath: directory + "/" + sub, withIntermediateDirectories: true)
        }
        chmod(directory + "/run", 0o1777)
        try Self.chown(directory + "/data", user: "postfix")  // master.lock and tlsmgr's files
        try Self.chown(directory + "/sink", user: "nobody")   // smtp-sink -u nobody writes here
        _ = FileManager.default.createFile(atPath: directory + "/log/maillog", contents: nil)
        smtpPort = try LabProcess.freeTCPPort()
        var sink = try LabProcess.freeTCPPort()
        while sink == smtpPort { sink = try LabProcess.freeTCPPort() }
        sinkPort = sink
        certificates = try LabCertificates.generate(in: directory + "/certs",
                                                    clientCommonName: configuration.clientCommonName)
        try writePostfixConfiguration()
    }

    private func writePostfixConfiguration() throws {
        var milterLines = ""
        switch configuration.milter {
        case .none: break
        case .labSocket: milterLines = "smtpd_milters = \(milterSocket)"
        case .custom(let value): milterLines = "smtpd_milters = \(value)"
        }
        let relayPolicy, relayDomains: String
        switch configuration.relayControl {
        case .connectors:
            relayPolicy = "check_policy_service unix:\(policySocketPath), "
            relayDomains = "socketmap:unix:\(mapsSocketPath):relay-domains"
        case .stock(let domains):
            relayPolicy = ""
            relayDomains = domains
        }
        let substitutions = ["@LAB@": directory, "@SMTP_PORT@": String(smtpPort), "@SINK_PORT@": String(sinkPort),
                             "@MILTER_LINES@": milterLines, "@RELAY_POLICY@": relayPolicy, "@RELAY_DOMAINS@": relayDomains]
        for name in ["main.cf", "master.cf"] {
            let templatePath = LabPaths.fixtures + "/postfix/\(name).in"
            guard var text = try? String(contentsOfFile: templatePath, encoding: .utf8) else {
                throw LabError("cannot read the Postfix template \(templatePath)")
            }
            for (key, value) in substitutions { text = text.replacingOccurrences(of: key, with: value) }
            if name == "main.cf" && !configuration.mainCf.isEmpty {
                text += "\n# Test-specific parameters\n"
                for (key, value) in configuration.mainCf.sorted(by: { $0.key < $1.key }) { text += "\(key) = \(value)\n" }
            }
            try text.write(toFile: configDirectory + "/" + name, atomically: true, encoding: .utf8)
        }
        try backdateConfiguration()
    }

    /// Postfix will not read a table or main.cf modified in the last second or two: it
    /// pauses, 300 ms at a time, "to let it settle down" (util/load_file.c). That cost
    /// ~1.5 s per start and per reload; a freshly written file is made 10 s old instead.
    private func backdateConfiguration() throws {
        var times = [timeval(tv_sec: time(nil) - 10, tv_usec: 0), timeval(tv_sec: time(nil) - 10, tv_usec: 0)]
        for name in ["main.cf", "master.cf"] {
            guard utimes(configDirectory + "/" + name, &times) == 0 else {
                throw LabError("utimes \(configDirectory)/\(name): \(String(cString: strerror(errno)))")
            }
        }
    }

    private func startSink() throws {
        let pid = try LabProcess.spawn(
            ["smtp-sink", "-u", "nobody", "-d", sinkDirectory + "/%Y%m%d%H%M%S.", "127.0.0.1:\(sinkPort)", "256"],
            outputPath: directory + "/log/smtp-sink.out")
        lock.withLock { sinkPID = pid }
        guard LabProcess.waitUntil(timeout: 10, { LabProcess.isListening(port: sinkPort) || !LabProcess.isAlive(pid) }),
              LabProcess.isAlive(pid) else {
            let output = (try? String(contentsOfFile: directory + "/log/smtp-sink.out", encoding: .utf8)) ?? ""
            throw LabError("smtp-sink did not start on 127.0.0.1:\(sinkPort):\n\(output)")
        }
    }

    private func startPostfix() throws {
        let pid = try Self.startMaster(directory: directory, configDirectory: configDirectory)
        lock.withLock { masterPID = pid }
        guard LabProcess.waitUntil(timeout: 10, { LabProcess.isListening(port: smtpPort) }) else {
            throw LabError("Postfix does not listen on 127.0.0.1:\(smtpPort)")
        }
    }

    /// Starts a private Postfix master for DIRECTORY/queue and returns its pid.
    /// What `postfix -c DIR start` does, minus its `postfix check` pass (1.8 s of chown and
    /// chmod over Postfix's file list): make the queue directories as post-install would, then
    /// run master -w, which returns once master is up and in the background. LabSmokeTests runs
    /// the full `postfix check` on the lab's configuration once.
    static func startMaster(directory: String, configDirectory: String) throws -> pid_t {
        let queue = directory + "/queue"
        for name in ["active", "bounce", "corrupt", "defer", "deferred", "flush", "hold", "incoming",
                     "private", "saved", "trace", "maildrop", "public", "pid"] {
            let path = queue + "/" + name
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
            switch name {
            case "pid": chmod(path, 0o755)
            case "maildrop": try chown(path, user: "postfix", group: "postdrop"); chmod(path, 0o730)
            case "public": try chown(path, user: "postfix", group: "postdrop"); chmod(path, 0o710)
            default: try chown(path, user: "postfix", group: "root"); chmod(path, 0o700)
            }
        }
        let master = try postfixDaemonDirectory(configDirectory: configDirectory) + "/master"
        try LabProcess.check([master, "-c", configDirectory, "-w"], timeout: 30)
        let pidFile = queue + "/pid/master.pid"
        guard let pid = (try? String(contentsOfFile: pidFile, encoding: .utf8))
            .flatMap({ pid_t($0.trimmingCharacters(in: .whitespacesAndNewlines)) }) else {
            throw LabError("Postfix wrote no \(pidFile)")
        }
        return pid
    }

    /// Where Postfix keeps master and its daemons (Debian: /usr/lib/postfix/sbin).
    static func postfixDaemonDirectory(configDirectory: String) throws -> String {
        try daemonDirectoryLock.withLock {
            if let cached = cachedDaemonDirectory { return cached }
            // -c: the lab's own files (a machine whose postfix package was installed with
            // "No configuration" may lack /etc/postfix/main.cf, and postconf warns).
            let result = try LabProcess.check(["postconf", "-c", configDirectory, "-d", "-h", "daemon_directory"])
            let value = result.output.split(separator: "\n").last.map(String.init) ?? ""
            guard FileManager.default.isExecutableFile(atPath: value + "/master") else {
                throw LabError("no Postfix master in \(value) (postconf -d -h daemon_directory)")
            }
            cachedDaemonDirectory = value
            return value
        }
    }
    private static let daemonDirectoryLock = NSLock()
    nonisolated(unsafe) private static var cachedDaemonDirectory: String?

    /// Stops every process the lab started (milters, Postfix and all its daemons, smtp-sink)
    /// by PID, then removes the directory unless told not to. Idempotent.
    func stop(removeDirectory: Bool = true) {
        let (master, sink, milters, already) = lock.withLock { () -> (pid_t?, pid_t?, [LabMilterProcess], Bool) in
            defer { stopped = true }
            return (masterPID, sinkPID, self.milters, stopped)
        }
        if !already {
            // SIGTERM to everything at once: the waits then overlap.
            var postfixMembers: [pid_t] = []
            if let master {
                postfixMembers = LabProcess.processGroupMembers(master)
                kill(master, SIGTERM)  // master passes it on to its process group
            }
            for milter in milters where milter.isRunning { milter.signal(SIGTERM) }
            if let sink { kill(sink, SIGTERM) }
            for milter in milters { milter.stop(grace: 10) }
            if let master {
                LabProcess.terminate(master, grace: 10)
                for pid in postfixMembers + LabProcess.processGroupMembers(master) {
                    LabProcess.terminate(pid, grace: 2)
                }
            }
            if let sink { LabProcess.terminate(sink, grace: 5) }
            // Keep the daemon's log lines beside the rest, for a kept directory.
            let lines = syslog.records(since: syslogMark).map(\.raw).joined(separator: "\n")
            try? lines.write(toFile: directory + "/log/syslog", atomically: true, encoding: .utf8)
        }
        if removeDirectory {
            try? FileManager.default.removeItem(atPath: directory)
        }
    }

    deinit { stop(removeDirectory: false) }

    // MARK: - Postfix

    /// Sets main.cf parameters (`postconf -e`) and reloads Postfix.
    func postconf(_ settings: [String: String], reload: Bool = true) throws {
        try LabProcess.check(["postconf", "-c", configDirectory, "-e"]
                             + settings.sorted(by: { $0.key < $1.key }).map { "\($0.key)=\($0.value)" })
        try backdateConfiguration()
        if reload { try self.reload() }
    }

    /// `postfix reload`: new smtpd processes read the new main.cf; sessions in progress finish.
    func reload() throws {
        let mark = maillogLines().count
        try LabProcess.check(["postfix", "-c", configDirectory, "reload"])
        _ = try? waitForMaillog(containing: "reload -- version", after: mark, timeout: 10)
    }

    /// Postfix's log (maillog_file).
    func maillog() -> String {
        (try? String(contentsOfFile: maillogPath, encoding: .utf8)) ?? ""
    }

    func maillogLines() -> [String] {
        maillog().split(separator: "\n").map(String.init)
    }

    /// Waits for a maillog line containing `text` (after line number `after`); returns it.
    @discardableResult
    func waitForMaillog(containing text: String, after: Int = 0, timeout: TimeInterval = 10) throws -> String {
        var found: String?
        _ = LabProcess.waitUntil(timeout: timeout) {
            found = maillogLines().dropFirst(after).first { $0.contains(text) }
            return found != nil
        }
        guard let found else {
            throw LabError("no maillog line containing \"\(text)\" within \(timeout) s; maillog:\n\(maillog())")
        }
        return found
    }

    /// Waits for a maillog line matching a regular expression; returns it.
    @discardableResult
    func waitForMaillog(matching pattern: String, timeout: TimeInterval = 10) throws -> String {
        let regex = try NSRegularExpression(pattern: pattern)
        var found: String?
        _ = LabProcess.waitUntil(timeout: timeout) {
            found = maillogLines().first { regex.firstMatch(in: $0, range: NSRange($0.startIndex..., in: $0)) != nil }
            return found != nil
        }
        guard let found else {
            throw LabError("no maillog line matching /\(pattern)/ within \(timeout) s; maillog:\n\(maillog())")
        }
        return found
    }

    // MARK: - Delivered mail (smtp-sink)

    /// Every message smtp-sink has fully received, oldest first, as raw text (smtp-sink's
    /// X-Client-Addr/X-Mail-Args/X-Rcpt-Args lines, then the message as Postfix sent it).
    func deliveredMessages() -> [String] {
        deliveries().map(\.raw)
    }

    /// Every message smtp-sink has fully received, oldest first, parsed.
    func deliveries() -> [DeliveredMessage] {
        let fm = FileManager.default
        let log = maillog()
        let names = (try? fm.contentsOfDirectory(atPath: sinkDirectory)) ?? []
        let messages = names.compactMap { name -> (Date, String, DeliveredMessage)? in
            let path = sinkDirectory + "/" + name
            guard let data = fm.contents(atPath: path) else { return nil }
            let message = DeliveredMessage(path: path, raw: String(decoding: data, as: UTF8.self))
            // smtp-sink writes the file while the message arrives; it is complete once
            // Postfix has logged the sink's 250 for that queue id.
            guard let queueID = message.queueID,
                  log.range(of: "\(queueID): to=<[^\n]*status=sent", options: .regularExpression) != nil else {
                return nil
            }
            let modified = (try? fm.attributesOfItem(atPath: path))?[.modificationDate] as? Date
            return (modified ?? .distantPast, name, message)
        }
        return messages.sorted { ($0.0, $0.1) < ($1.0, $1.1) }.map(\.2)
    }

    /// Waits until at least `count` messages have been delivered; returns all of them.
    @discardableResult
    func waitForDeliveries(count: Int = 1, timeout: TimeInterval = 15) throws -> [DeliveredMessage] {
        var delivered: [DeliveredMessage] = []
        _ = LabProcess.waitUntil(timeout: timeout, interval: 0.05) {
            delivered = deliveries()
            return delivered.count >= count
        }
        guard delivered.count >= count else {
            throw LabError("\(delivered.count) of \(count) message(s) delivered within \(timeout) s; maillog:\n\(maillog())")
        }
        return delivered
    }

    /// Waits for the delivery of the message Postfix queued under `queueID`.
    func waitForDelivery(queueID: String, timeout: TimeInterval = 15) throws -> DeliveredMessage {
        var found: DeliveredMessage?
        _ = LabProcess.waitUntil(timeout: timeout, interval: 0.05) {
            found = deliveries().first { $0.queueID == queueID }
            return found != nil
        }
        guard let found else {
            throw LabError("message \(queueID) not delivered within \(timeout) s; maillog:\n\(maillog())")
        }
        return found
    }

    // MARK: - Syslog (the daemon's lines)

    /// Every syslog record received since this lab started, from any program on the machine.
    func syslogRecords() -> [SyslogRecord] {
        syslog.records(since: syslogMark)
    }

    /// Records sent by processes this lab started (the milters, and their children): each
    /// was spawned as its own process group. Other daemons on a shared machine log to
    /// /dev/log too.
    func labSyslogRecords() -> [SyslogRecord] {
        let groups = Set(lock.withLock { milters.map(\.pid) })
        return syslogRecords().filter { record in
            record.senderProcessGroup.map(groups.contains) ?? false || record.senderPID.map(groups.contains) ?? false
        }
    }

    /// Messages logged by `ident` (default: the daemon) since this lab started; by default
    /// only those from processes the lab started.
    func logLines(ident: String = "connector-milter", fromLabProcessesOnly: Bool = true) -> [String] {
        (fromLabProcessesOnly ? labSyslogRecords() : syslogRecords()).filter { $0.ident == ident }.map(\.message)
    }

    /// The daemon's verdict lines (SPEC section 6), oldest first.
    func verdictLines(fromLabProcessesOnly: Bool = true) -> [String] {
        logLines(fromLabProcessesOnly: fromLabProcessesOnly).filter { $0.contains("verdict=") }
    }

    /// Waits for a daemon log line matching a regular expression; returns it.
    @discardableResult
    func waitForLog(matching pattern: String, ident: String = "connector-milter", fromLabProcessesOnly: Bool = true,
                    timeout: TimeInterval = 10) throws -> String {
        let regex = try NSRegularExpression(pattern: pattern)
        var found: String?
        _ = LabProcess.waitUntil(timeout: timeout) {
            found = logLines(ident: ident, fromLabProcessesOnly: fromLabProcessesOnly).first {
                regex.firstMatch(in: $0, range: NSRange($0.startIndex..., in: $0)) != nil
            }
            return found != nil
        }
        guard let found else {
            throw LabError("no \(ident) syslog line matching /\(pattern)/ within \(timeout) s; syslog since lab start:\n\(syslogDump())")
        }
        return found
    }

    /// Every record since the lab started, marking those from the lab's processes.
    func syslogDump() -> String {
        let mine = Set(labSyslogRecords().map(\.raw))
        return syslogRecords().map { (mine.contains($0.raw) ? "lab   " : "other ") + $0.description }.joined(separator: "\n")
    }

    /// Waits until at least `count` verdict lines have been logged; returns them all.
    @discardableResult
    func waitForVerdicts(count: Int, fromLabProcessesOnly: Bool = true, timeout: TimeInterval = 10) throws -> [String] {
        var lines: [String] = []
        _ = LabProcess.waitUntil(timeout: timeout) {
            lines = verdictLines(fromLabProcessesOnly: fromLabProcessesOnly)
            return lines.count >= count
        }
        guard lines.count >= count else {
            throw LabError("\(lines.count) of \(count) verdict line(s) within \(timeout) s; syslog since lab start:\n\(syslogDump())")
        }
        return lines
    }

    // MARK: - SMTP clients

    /// Runs swaks against the lab's Postfix.
    func swaks(_ options: SwaksOptions = SwaksOptions()) throws -> SMTPTranscript {
        try Swaks.run(options, port: smtpPort)
    }

    /// A plain session (banner read); send commands with `send`.
    func openSMTP() throws -> RawSMTPClient {
        try RawSMTPClient.plain(port: smtpPort)
    }

    /// EHLO, STARTTLS (with `certificate`), and nothing more: the next command goes straight
    /// into TLS with no second EHLO.
    func openSMTPAfterStartTLS(ehlo: String = "client.lab.test", certificate: LabCertificate? = nil) throws -> RawSMTPClient {
        try RawSMTPClient.startTLS(port: smtpPort, ehlo: ehlo, certificate: certificate,
                                   errorLog: directory + "/log/s_client.err")
    }

    /// EHLO, STARTTLS, then MAIL/RCPT.../DATA without a second EHLO; QUIT. The message is
    /// sent only when some recipient was accepted.
    func sendAfterStartTLSWithoutEHLO(from: String, to: [String], ehlo: String = "client.lab.test",
                                      certificate: LabCertificate? = nil,
                                      message: String? = nil) throws -> SMTPTranscript {
        let client = try openSMTPAfterStartTLS(ehlo: ehlo, certificate: certificate)
        defer { client.quit() }
        let mail = try client.send("MAIL FROM:<\(from)>")
        guard mail.isPositive else { return client.result(exitCode: 1) }
        var accepted = 0
        for rcpt in to where try client.send("RCPT TO:<\(rcpt)>").isPositive { accepted += 1 }
        guard accepted > 0 else { return client.result(exitCode: 1) }
        let body = message ?? """
            From: <\(from)>
            To: \(to.map { "<\($0)>" }.joined(separator: ", "))
            Subject: lab message sent after STARTTLS without EHLO

            Hello.
            """
        let final = try client.sendData(body)
        client.quit()
        return client.result(exitCode: final.isPositive && accepted == to.count ? 0 : 1)
    }

    // MARK: - Milters

    /// Writes a file (e.g. a policy) into the lab directory, readable by all; returns its path.
    @discardableResult
    func writeFile(_ name: String, contents: String) throws -> String {
        let path = directory + "/" + name
        try contents.write(toFile: path, atomically: true, encoding: .utf8)
        chmod(path, 0o644)
        return path
    }

    /// Starts `connector-milter run --foreground --config CONFIG --socket unix:LAB/run/milter.sock
    /// --log syslog --pidfile LAB/run/connector-milter.pid --user USER --group GROUP EXTRA...`
    /// and waits until it has created its socket. Throws (with its output) if it exits first.
    /// `user`/`group` nil leaves the option out. The default `nobody`/`postfix` gives a socket
    /// Postfix (group postfix) can use, the production setup.
    @discardableResult
    /// `binary` overrides ConnectorMilterBinary.binaryPath() (for a stand-in).
    func startDaemon(config: String, extraArgs: [String] = [], user: String? = "nobody", group: String? = "postfix",
                     log: String = "syslog", binary: String? = nil, timeout: TimeInterval = 15) throws -> LabMilterProcess {
        let isStandIn = binary != nil
        let binary = try binary ?? ConnectorMilterBinary.binaryPath()
        var arguments = [binary, "run", "--foreground", "--config", config, "--socket", milterSocket,
                         "--log", log, "--pidfile", runDirectory + "/connector-milter.pid"]
        if let user { arguments += ["--user", user] }
        if let group { arguments += ["--group", group] }
        // The relay control main.cf names (a stand-in binary serves no such thing).
        if case .connectors = configuration.relayControl, !isStandIn {
            if !extraArgs.contains("--policy-socket") { arguments += ["--policy-socket", "unix:" + policySocketPath] }
            if !extraArgs.contains("--maps-socket") { arguments += ["--maps-socket", "unix:" + mapsSocketPath] }
        }
        return try startMilter(arguments + extraArgs, name: "connector-milter", pidfile: runDirectory + "/connector-milter.pid",
                               timeout: timeout)
    }

    /// Starts the daemon with a policy given as YAML text (written to LAB/connectors.yaml).
    @discardableResult
    func startDaemon(policy yaml: String, extraArgs: [String] = []) throws -> LabMilterProcess {
        try startDaemon(config: try writeFile("connectors.yaml", contents: yaml), extraArgs: extraArgs)
    }

    /// The daemon started last, if any.
    var daemon: LabMilterProcess? {
        lock.withLock { milters.last { $0.outputPath.hasSuffix("connector-milter.out") } }
    }

    /// Stops the daemon started last (SIGTERM, SIGKILL after `grace` s); returns its exit status.
    @discardableResult
    func stopDaemon(grace: TimeInterval = 10) -> Int32? {
        daemon?.stop(grace: grace)
    }

    /// Starts bench/passthrough-milter.c on the lab socket. With `addHeader` it stamps
    /// "X-Passthrough-Milter: seen" on every message, proof that Postfix consulted it.
    @discardableResult
    func startPassthroughMilter(addHeader: Bool = true, timeout: TimeInterval = 15) throws -> LabMilterProcess {
        var arguments = [try PassthroughMilter.binaryPath(), "-g", "postfix"]
        if addHeader { arguments.append("-H") }
        return try startMilter(arguments + [milterSocket], name: "passthrough-milter", pidfile: nil, timeout: timeout)
    }

    private func startMilter(_ arguments: [String], name: String, pidfile: String?,
                             timeout: TimeInterval) throws -> LabMilterProcess {
        let outputPath = directory + "/log/\(name).out"
        let staleInode = Self.socketInode(milterSocketPath)
        let pid = try LabProcess.spawn(arguments, outputPath: outputPath)
        let milter = LabMilterProcess(pid: pid, socket: milterSocket, outputPath: outputPath, pidfile: pidfile)
        lock.withLock { milters.append(milter) }
        let ready = LabProcess.waitUntil(timeout: timeout) {
            guard milter.isRunning else { return true }
            if let inode = Self.socketInode(milterSocketPath), inode != staleInode { return true }
            return false
        }
        guard ready, milter.isRunning else {
            let status = milter.waitForExit(timeout: 1).map { "exited \($0)" } ?? (ready ? "died" : "still running, no socket")
            throw LabError("""
                \(name) did not create \(milterSocketPath) within \(Int(timeout)) s (\(status)).
                command: \(arguments.joined(separator: " "))
                output:
                \(milter.output)
                syslog since lab start:
                \(syslogDump())
                """)
        }
        return milter
    }

    private static func socketInode(_ path: String) -> UInt? {
        var info = stat()
        guard lstat(path, &info) == 0, (info.st_mode & S_IFMT) == S_IFSOCK else { return nil }
        return UInt(info.st_ino)
    }

    static func chown(_ path: String, user: String, group: String? = nil) throws {
        guard let entry = getpwnam(user) else { throw LabError("no user \(user) on this machine (is postfix installed?)") }
        var gid = entry.pointee.pw_gid
        if let group {
            guard let groupEntry = getgrnam(group) else { throw LabError("no group \(group) on this machine") }
            gid = groupEntry.pointee.gr_gid
        }
        guard Glibc.chown(path, entry.pointee.pw_uid, gid) == 0 else {
            throw LabError("chown \(user) \(path): \(String(cString: strerror(errno)))")
        }
    }
}

/// One message as smtp-sink dumped it.
struct DeliveredMessage: Sendable, CustomStringConvertible {
    let path: String
    /// The file's text, line ends normalised to "\n".
    let raw: String

    init(path: String, raw: String) {
        self.path = path
        // "\r\n" is one Character in Swift: splitting on "\n" would not see it.
        self.raw = raw.replacingOccurrences(of: "\r\n", with: "\n")
    }

    var description: String { raw }

    /// The header section: smtp-sink's X-Client-Addr/X-Helo-Args/X-Mail-Args/X-Rcpt-Args
    /// lines, then the message's own headers.
    var headerSection: String {
        if let range = raw.range(of: "\n\n") { return String(raw[..<range.lowerBound]) }
        return raw
    }

    var body: String {
        if let range = raw.range(of: "\n\n") { return String(raw[range.upperBound...]) }
        return ""
    }

    /// (name, unfolded value) for every header line, in order.
    var headers: [(name: String, value: String)] {
        var result: [(String, String)] = []
        for line in headerSection.split(separator: "\n", omittingEmptySubsequences: false) {
            let text = String(line)
            if let first = text.first, first == " " || first == "\t", !result.isEmpty {
                result[result.count - 1].1 += " " + text.trimmingCharacters(in: .whitespaces)
            } else if let colon = text.firstIndex(of: ":") {
                result.append((String(text[..<colon]), text[text.index(after: colon)...].trimmingCharacters(in: .whitespaces)))
            }
        }
        return result
    }

    /// Values of every header with this name (case-insensitive), in order.
    func headerValues(_ name: String) -> [String] {
        headers.filter { $0.name.lowercased() == name.lowercased() }.map(\.value)
    }

    /// The first value of a header, or nil.
    func header(_ name: String) -> String? { headerValues(name).first }

    /// MAIL FROM as Postfix relayed it, without brackets ("" for the null sender).
    var mailFrom: String? {
        header("X-Mail-Args")?.split(separator: " ").first.map { $0.trimmingCharacters(in: CharacterSet(charactersIn: "<>")) }
    }

    /// RCPT TO addresses as Postfix relayed them.
    var recipients: [String] {
        headerValues("X-Rcpt-Args").compactMap {
            $0.split(separator: " ").first.map { $0.trimmingCharacters(in: CharacterSet(charactersIn: "<>")) }
        }
    }

    /// The lab Postfix's queue id, from its Received header ("by mx.lab.test (Postfix) with ESMTPS id X").
    var queueID: String? {
        guard let match = raw.range(of: #"by mx\.lab\.test \(Postfix\) with [A-Z]+ id [0-9A-Za-z]+"#,
                                    options: .regularExpression) else { return nil }
        return raw[match].split(separator: " ").last.map(String.init)
    }
}
