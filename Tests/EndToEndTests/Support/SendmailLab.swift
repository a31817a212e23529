// A private Sendmail 8.17 beside a PostfixLab, sharing its directory, certificates,
// smtp-sink, syslog collector and milter socket, so one connector-milter daemon judges both:
//
//   swaks --local-interface 127.0.x.y --> Sendmail (127.0.0.1:free port, STARTTLS)
//                                            | INPUT_MAIL_FILTER S=unix:LAB/run/milter.sock, F=T
//                                            v
//                                          connector-milter (started through the PostfixLab)
//   Sendmail's relay mailer --> the lab's smtp-sink
//   Sendmail's own log --> /dev/log --> SyslogCollector (ident sm-lab-PORT)
//
// Sendmail has no XCLIENT: a test picks the client address by binding its socket to another
// loopback address (all of 127.0.0.0/8 is local on Linux).
//
// Debian's sendmail packages conflict with postfix, so they are never installed: `apt-get
// download` fetches them and `dpkg -x` unpacks them into a private root, cached by version
// (SendmailPackages). No mirror means a loud failure, not a skip. Pitfalls met on the way
// (see MTA-FACTS.md, Sendmail):
// - the binary is set-gid mail: the loader would ignore LD_LIBRARY_PATH (which finds the
//   unpacked libwrap0), so the private copy loses that bit;
// - with an unqualified host name every start sleeps 60 s: Sendmail runs in its own UTS
//   namespace (`unshare -u`) named mx-sendmail.lab.test;
// - the lab lives under /tmp: DontBlameSendmail=TrustStickyBit;
// - with a server key others may read, Sendmail silently offers no STARTTLS: the key is
//   copied, mode 0600;
// - a smart host Sendmail counts as itself ([127.0.0.1]) is dropped unless given a mailer.
// The .mc is Tests/EndToEndTests/Fixtures/sendmail/lab.mc.in.

import Foundation
import Glibc

/// Debian's Sendmail, unpacked (not installed) under /tmp/connector-sendmail-root/<versions>.
enum SendmailPackages {
    /// sendmail-bin's binary links libwrap.so.0, which the image may lack (liblockfile1, the
    /// other library that comes up, is used by mail.local and vacation only, not by sendmail).
    static let packages = ["sendmail-bin", "sendmail-base", "sendmail-cf", "libwrap0"]
    static let cacheDirectory = "/tmp/connector-sendmail-root"

    struct Root: Sendable {
        let path: String
        /// sendmail-bin's version, e.g. 8.17.1.9-2+deb12u2.
        let version: String
        var binary: String { path + "/usr/libexec/sendmail/sendmail" }
        /// _CF_DIR_ for m4 (with its trailing slash).
        var cfDirectory: String { path + "/usr/share/sendmail/cf/" }
        var libraryPath: String { path + "/usr/lib/x86_64-linux-gnu:" + path + "/lib/x86_64-linux-gnu" }
    }

    /// The unpacked root, fetched and unpacked on first use (a few seconds), then reused by
    /// every test and test run until Debian's candidate versions change.
    static func root() throws -> Root {
        try lock.withLock {
            if let cached { return cached }
            let root = try prepare()
            cached = root
            return root
        }
    }

    private static let lock = NSLock()
    nonisolated(unsafe) private static var cached: Root?

    private static func prepare() throws -> Root {
        for (tool, package) in [("apt-cache", "apt"), ("apt-get", "apt"), ("dpkg", "dpkg"), ("m4", "m4"),
                                ("unshare", "util-linux"), ("hostname", "hostname")] {
            _ = try LabProcess.require(tool, package: package)
        }
        let versions = try candidateVersions()
        let key = packages.map { "\($0)=\(versions[$0]!)" }.joined(separator: " ")
        let sendmailVersion = versions["sendmail-bin"]!
        let final = cacheDirectory + "/\(sendmailVersion)-\(fnv1a(key))"
        let root = Root(path: final + "/root", version: sendmailVersion)
        if FileManager.default.isExecutableFile(atPath: root.binary) { return root }

        try FileManager.default.createDirectory(atPath: cacheDirectory, withIntermediateDirectories: true)
        chmod(cacheDirectory, 0o755)
        var template = Array("\(cacheDirectory)/staging.XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else { throw LabError("mkdtemp in \(cacheDirectory): \(String(cString: strerror(errno)))") }
        let staging = String(cString: made)
        chmod(staging, 0o755)
        defer { try? FileManager.default.removeItem(atPath: staging) }
        // apt-get download writes into the current directory; as root it would hand the
        // download to the _apt user, who may not write there.
        let download = try LabProcess.run(
            ["sh", "-c", "cd \"$0\" && exec apt-get -q -o APT::Sandbox::User=root download \"$@\"", staging]
                + packages.map { "\($0)=\(versions[$0]!)" }, timeout: 180)
        guard download.succeeded else {
            throw LabError("""
                the Sendmail end-to-end tests need Debian's sendmail packages and could not fetch them \
                (`apt-get download \(key)` exited \(download.status)); check the Debian mirror \
                (apt-get update). Output:
                \(download.output)
                """)
        }
        let debs = try FileManager.default.contentsOfDirectory(atPath: staging).filter { $0.hasSuffix(".deb") }.sorted()
        guard debs.count == packages.count else {
            throw LabError("apt-get download fetched \(debs) for \(packages)\n\(download.output)")
        }
        for deb in debs {
            try LabProcess.check(["dpkg", "-x", staging + "/" + deb, staging + "/root"])
        }
        let unpacked = Root(path: staging + "/root", version: sendmailVersion)
        guard FileManager.default.isExecutableFile(atPath: unpacked.binary) else {
            throw LabError("no \(unpacked.binary) in the unpacked sendmail-bin (\(debs))")
        }
        // Set-gid mail: the loader would ignore LD_LIBRARY_PATH (secure-execution mode).
        guard chmod(unpacked.binary, 0o755) == 0 else {
            throw LabError("chmod \(unpacked.binary): \(String(cString: strerror(errno)))")
        }
        try FileManager.default.createDirectory(atPath: final, withIntermediateDirectories: true)
        // Another test run may have won the race: its root is as good as ours.
        if rename(staging + "/root", final + "/root") != 0, !FileManager.default.isExecutableFile(atPath: root.binary) {
            throw LabError("rename to \(final)/root: \(String(cString: strerror(errno)))")
        }
        return root
    }

    /// The versions apt would fetch, from the local package lists; a machine without lists
    /// (a fresh image whose packages were all installed already) gets `apt-get update` once.
    private static func candidateVersions() throws -> [String: String] {
        if let versions = try? candidateVersions(update: false) { return versions }
        return try candidateVersions(update: true)
    }

    private static func candidateVersions(update: Bool) throws -> [String: String] {
        if update {
            let result = try LabProcess.run(["apt-get", "update", "-q"], timeout: 180)
            guard result.succeeded else {
                throw LabError("""
                    the Sendmail end-to-end tests fetch Debian's sendmail packages, and `apt-get update` \
                    failed (exit \(result.status)); check the Debian mirror:
                    \(result.output)
                    """)
            }
        }
        let policy = try LabProcess.check(["apt-cache", "policy"] + packages)
        var versions: [String: String] = [:]
        var current: String?
        for line in policy.output.split(separator: "\n") {
            if !line.hasPrefix(" "), line.hasSuffix(":") {
                current = String(line.dropLast())
            } else if let current, line.trimmingCharacters(in: .whitespaces).hasPrefix("Candidate:") {
                let value = line.split(separator: ":", maxSplits: 1)[1].trimmingCharacters(in: .whitespaces)
                if value != "(none)" { versions[current] = value }
            }
        }
        let missing = packages.filter { versions[$0] == nil }
        guard missing.isEmpty else {
            throw LabError("""
                apt knows no version of \(missing.joined(separator: ", ")) even after `apt-get update`: \
                the Sendmail end-to-end tests fetch Debian's sendmail packages with apt-get download from \
                the Debian mirror. apt-cache policy said:
                \(policy.output)
                """)
        }
        return versions
    }

    private static func fnv1a(_ text: String) -> String {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in text.utf8 {
            hash ^= UInt64(byte)
            hash = hash &* 0x100_0000_01b3
        }
        return String(hash, radix: 16)
    }
}

final class SendmailLab: @unchecked Sendable {
    /// Sendmail's name for itself ($j), in its own UTS namespace.
    static let hostName = "mx-sendmail.lab.test"

    let postfix: PostfixLab
    let root: SendmailPackages.Root
    /// LAB/sendmail: sendmail.cf, the queue, certificates.
    let directory: String
    /// Sendmail's SMTP server: 127.0.0.1:smtpPort.
    let smtpPort: UInt16
    /// Sendmail's syslog ident (-L), unique to this lab.
    let ident: String
    private(set) var startupDuration: TimeInterval = 0

    var cfPath: String { directory + "/sendmail.cf" }
    var mcPath: String { directory + "/sendmail.mc" }
    var outputPath: String { postfix.directory + "/log/sendmail.out" }

    private let lock = NSLock()
    private var pid: pid_t?
    private var stopped = false

    /// The milter lines of the lab: the PostfixLab's socket, fail closed (F=T).
    static func milterLines(socket: String) -> String {
        "INPUT_MAIL_FILTER(`connector', `S=\(socket), F=T, T=C:10s;S:10s;R:10s;E:30s')dnl"
    }

    /// Unpacks Sendmail if needed, writes its configuration in LAB/sendmail and starts it on
    /// a free port, with `milterLines` in its .mc (default: the lab socket, F=T).
    static func start(beside postfix: PostfixLab, milterLines: String? = nil) throws -> SendmailLab {
        let began = Date()
        let root = try SendmailPackages.root()
        let lab = try SendmailLab(postfix: postfix, root: root)
        do {
            try lab.writeConfiguration(milterLines: milterLines ?? Self.milterLines(socket: postfix.milterSocket))
            try lab.startSendmail()
        } catch {
            lab.stop()
            throw LabError("Sendmail in \(lab.directory) did not start: \(error)\n--- its log:\n\(lab.logLines().joined(separator: "\n"))")
        }
        lab.startupDuration = Date().timeIntervalSince(began)
        return lab
    }

    private init(postfix: PostfixLab, root: SendmailPackages.Root) throws {
        self.postfix = postfix
        self.root = root
        directory = postfix.directory + "/sendmail"
        var port = try LabProcess.freeTCPPort()
        while port == postfix.smtpPort || port == postfix.sinkPort { port = try LabProcess.freeTCPPort() }
        smtpPort = port
        ident = "sm-lab-\(port)"
        let fm = FileManager.default
        for sub in ["queue", "certs"] {
            try fm.createDirectory(atPath: directory + "/" + sub, withIntermediateDirectories: true)
        }
        chmod(directory + "/queue", 0o700)
        // With a key file others may read (the lab's are 0644) Sendmail offers no STARTTLS.
        let certificates = postfix.certificates
        for (source, name, mode) in [(certificates.ca.certificatePath, "ca.crt", 0o644),
                                     (certificates.server.certificatePath, "server.crt", 0o644),
                                     (certificates.server.keyPath, "server.key", 0o600)] {
            try? fm.removeItem(atPath: directory + "/certs/" + name)  // a second lab beside the same PostfixLab
            try fm.copyItem(atPath: source, toPath: directory + "/certs/" + name)
            chmod(directory + "/certs/" + name, mode_t(mode))
        }
        try "hosts files\naliases files\n".write(toFile: directory + "/service.switch", atomically: true, encoding: .utf8)
        try "".write(toFile: directory + "/helpfile", atomically: true, encoding: .utf8)
    }

    /// The lab's .mc from the fixture template, with `milterLines` in place.
    func makeMc(milterLines: String) throws -> String {
        let templatePath = LabPaths.fixtures + "/sendmail/lab.mc.in"
        guard var text = try? String(contentsOfFile: templatePath, encoding: .utf8) else {
            throw LabError("cannot read the Sendmail template \(templatePath)")
        }
        for (key, value) in ["@SENDMAIL_DIR@": directory, "@HOSTNAME@": Self.hostName,
                             "@SMTP_PORT@": String(smtpPort), "@SINK_PORT@": String(postfix.sinkPort),
                             "@MILTER_LINES@": milterLines] {
            text = text.replacingOccurrences(of: key, with: value)
        }
        return text
    }

    /// Builds a sendmail.cf from .mc text with m4 and Debian's sendmail-cf macros.
    func buildCf(mc: String, mcPath: String, cfPath: String) throws {
        try mc.write(toFile: mcPath, atomically: true, encoding: .utf8)
        // m4 writes the cf on stdout and warnings (promiscuous_relay's) on stderr.
        let result = try LabProcess.run(["sh", "-c", "exec m4 -D_CF_DIR_=\"$0\" \"$0/m4/cf.m4\" \"$1\" > \"$2\"",
                                         root.cfDirectory, mcPath, cfPath])
        guard result.succeeded else {
            throw LabError("m4 could not build \(cfPath) from \(mcPath) (exit \(result.status)):\n\(result.output)")
        }
        chmod(cfPath, 0o644)
    }

    private func writeConfiguration(milterLines: String) throws {
        try buildCf(mc: try makeMc(milterLines: milterLines), mcPath: mcPath, cfPath: cfPath)
    }

    /// The command that runs this Sendmail with `arguments`: in its own UTS namespace with a
    /// qualified host name, reading the private configuration.
    func command(_ arguments: [String], cf: String? = nil) -> [String] {
        ["unshare", "-u", "sh", "-c", "hostname \"$0\" && exec \"$@\"", Self.hostName,
         root.binary, "-C", cf ?? cfPath] + arguments
    }

    var environment: [String: String] { ["LD_LIBRARY_PATH": root.libraryPath] }

    private func startSendmail() throws {
        // -bD: the daemon in the foreground, so the PID we spawn (unshare and sh exec) is the
        // daemon's, and its per-connection children stay in its process group.
        let pid = try LabProcess.spawn(command(["-bD", "-L", ident]), outputPath: outputPath, environment: environment)
        lock.withLock { self.pid = pid }
        guard LabProcess.waitUntil(timeout: 20, { LabProcess.isListening(port: smtpPort) || !LabProcess.isAlive(pid) }),
              LabProcess.isAlive(pid) else {
            let output = (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? ""
            throw LabError("Sendmail does not listen on 127.0.0.1:\(smtpPort) (\(LabProcess.isAlive(pid) ? "running" : "exited")):\n\(output)")
        }
    }

    var processID: pid_t? { lock.withLock { pid } }

    /// Stops Sendmail and its children by PID. Idempotent. (The PostfixLab owns the directory.)
    /// Stops a Sendmail lab shared by a test class and the PostfixLab beside it, keeping the
    /// directory when a test failed or CONNECTOR_LAB_KEEP is set.
    static func stopShared(_ sendmail: SendmailLab, beside postfix: PostfixLab, failed: Bool) {
        let keep = failed || (ProcessInfo.processInfo.environment["CONNECTOR_LAB_KEEP"].map { !$0.isEmpty && $0 != "0" } ?? false)
        sendmail.stop()
        postfix.stop(removeDirectory: !keep)
        if keep { print("lab directory kept: \(postfix.directory) (sendmail/, log/, sink/ ...)") }
    }

    func stop() {
        let pid = lock.withLock { () -> pid_t? in
            defer { stopped = true }
            return stopped ? nil : self.pid
        }
        guard let pid else { return }
        let members = LabProcess.processGroupMembers(pid)
        LabProcess.terminate(pid, grace: 10)
        for member in members + LabProcess.processGroupMembers(pid) { LabProcess.terminate(member, grace: 2) }
    }

    deinit { stop() }

    // MARK: - SMTP clients

    /// Swaks options for a client bound to `localAddress` (a 127.0.0.0/8 address).
    static func options(_ options: SwaksOptions, from localAddress: String?) -> SwaksOptions {
        var options = options
        if let localAddress { options.extraArguments += ["--local-interface", localAddress] }
        return options
    }

    /// Runs swaks against this Sendmail, from `localAddress` when given.
    func swaks(_ options: SwaksOptions = SwaksOptions(), from localAddress: String? = nil) throws -> SMTPTranscript {
        try Swaks.run(Self.options(options, from: localAddress), port: smtpPort)
    }

    /// A plain session from 127.0.0.1 (banner read).
    func openSMTP() throws -> RawSMTPClient {
        try RawSMTPClient.plain(port: smtpPort)
    }

    /// EHLO, STARTTLS, then MAIL/RCPT.../DATA without a second EHLO; QUIT (from 127.0.0.1).
    func sendAfterStartTLSWithoutEHLO(from: String, to: [String], certificate: LabCertificate? = nil) throws -> SMTPTranscript {
        let client = try RawSMTPClient.startTLS(port: smtpPort, ehlo: "client.lab.test", certificate: certificate,
                                                errorLog: postfix.directory + "/log/s_client-sendmail.err")
        defer { client.quit() }
        guard try client.send("MAIL FROM:<\(from)>").isPositive else { return client.result(exitCode: 1) }
        var accepted = 0
        for rcpt in to where try client.send("RCPT TO:<\(rcpt)>").isPositive { accepted += 1 }
        guard accepted > 0 else { return client.result(exitCode: 1) }
        let final = try client.sendData("From: <\(from)>\nSubject: sent after STARTTLS without EHLO\n\nHello.")
        client.quit()
        return client.result(exitCode: final.isPositive && accepted == to.count ? 0 : 1)
    }

    // MARK: - Sendmail's log and deliveries

    /// Sendmail's own syslog lines (this lab's ident), oldest first.
    func logLines() -> [String] {
        postfix.syslogRecords().filter { $0.ident == ident }.map(\.message)
    }

    /// Waits for a Sendmail log line matching a regular expression; returns it.
    @discardableResult
    func waitForLog(matching pattern: String, timeout: TimeInterval = 10) throws -> String {
        let regex = try NSRegularExpression(pattern: pattern)
        var found: String?
        _ = LabProcess.waitUntil(timeout: timeout) {
            found = logLines().first { regex.firstMatch(in: $0, range: NSRange($0.startIndex..., in: $0)) != nil }
            return found != nil
        }
        guard let found else {
            throw LabError("no \(ident) syslog line matching /\(pattern)/ within \(timeout) s; Sendmail's log:\n\(logLines().joined(separator: "\n"))")
        }
        return found
    }

    /// Messages this Sendmail relayed to the sink and logged as sent, oldest first.
    func deliveries() -> [DeliveredMessage] {
        let sent = logLines().filter { $0.contains("stat=Sent") }
        let directory = postfix.sinkDirectory
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).sorted()
        return names.compactMap { name in
            guard let data = FileManager.default.contents(atPath: directory + "/" + name) else { return nil }
            let message = DeliveredMessage(path: directory + "/" + name, raw: String(decoding: data, as: UTF8.self))
            // smtp-sink writes while the message arrives: complete once Sendmail logged it sent.
            guard let queueID = message.sendmailQueueID, sent.contains(where: { $0.hasPrefix(queueID + ": ") }) else { return nil }
            return message
        }
    }

    /// Waits for the delivery of the message Sendmail accepted under `queueID`.
    func waitForDelivery(queueID: String, timeout: TimeInterval = 15) throws -> DeliveredMessage {
        var found: DeliveredMessage?
        _ = LabProcess.waitUntil(timeout: timeout, interval: 0.05) {
            found = deliveries().first { $0.sendmailQueueID == queueID }
            return found != nil
        }
        guard let found else {
            throw LabError("message \(queueID) not delivered within \(timeout) s; Sendmail's log:\n\(logLines().joined(separator: "\n"))")
        }
        return found
    }
}

extension DeliveredMessage {
    /// The lab Sendmail's queue id, from its Received header
    /// ("by mx-sendmail.lab.test (8.17.1.9/8.17.1.9) with ESMTPS id 6AT1JfBb014979").
    var sendmailQueueID: String? {
        guard let match = raw.range(of: #"by mx-sendmail\.lab\.test \([^)]*\) with [A-Z]+ id [0-9A-Za-z]+"#,
                                    options: .regularExpression) else { return nil }
        return raw[match].split(separator: " ").last.map(String.init)
    }
}

extension SMTPTranscript {
    /// Sendmail's queue id from "250 2.0.0 6AT1JfBb014979 Message accepted for delivery".
    var sendmailQueueID: String? {
        guard let reply = dataReply, reply.code == 250, reply.text.hasSuffix("Message accepted for delivery") else { return nil }
        return reply.lines.first?.split(separator: " ").dropFirst().first.map(String.init)
    }
}
