// Faults and privileges (issue 7), with the real daemon behind a real Postfix: the policy file
// gone or unreadable at a reload, a socket directory that is missing or not writable, a second
// daemon on a live socket, the worker killed with -9 under 50 open sessions, what the worker
// may do once it runs as --user, and the systemd unit's hardening.
//
// PostfixMilterTests covers a broken policy at reload and kill -9 of one session; these extend
// them. One lab and one daemon serve the class.

import ConnectorPolicy
import Foundation
import Glibc
import XCTest

final class FaultTests: XCTestCase {
    private static let lab = SharedLab(policy: labPolicy)

    override class func tearDown() {
        lab.stop()
        super.tearDown()
    }

    private func lab() throws -> PostfixLab { try Self.lab.shared() }

    private func worker(_ lab: PostfixLab) throws -> pid_t {
        let supervisor = try XCTUnwrap(lab.daemon)
        var worker: pid_t?
        _ = waitFor(timeout: 15) {
            worker = ProcessInfoReader.children(of: supervisor.pid).first
            return worker != nil
        }
        return try XCTUnwrap(worker, "no worker process")
    }

    /// A message from a stranger to a foreign domain and one to contoso.com: the lab policy
    /// refuses the first (Postfix, after the daemon's policy service) and the milter accepts the second.
    private func assertLabPolicyJudges(_ lab: PostfixLab, tag: String, file: StaticString = #filePath, line: UInt = #line) throws {
        var o = SwaksOptions(from: "a@example.org", to: ["\(tag)@far.example", "\(tag)@contoso.com"])
        o.xclientAddress = "198.18.0.9"
        o.xclientName = "client.example"
        let t = try lab.swaks(o)
        XCTAssertEqual(t.rcptReply(for: "\(tag)@far.example")?.text, PostfixLab.relayAccessDenied("\(tag)@far.example"), t.text,
                       file: file, line: line)
        XCTAssertNotNil(t.queueID, t.text, file: file, line: line)
        _ = try lab.waitForLog(matching: "verdict=accept .*rcpt=<\(tag)@contoso\\.com>")
    }

    private func daemonRun(_ arguments: [String], as user: String? = nil, timeout: TimeInterval = 20) throws -> (status: Int32, output: String) {
        var command = [try ConnectorMilterBinary.binaryPath(), "run", "--foreground", "--log", "stderr"] + arguments
        if let user {
            command = ["setpriv", "--reuid=\(user)", "--regid=\(user == "nobody" ? "nogroup" : user)", "--clear-groups"] + command
        }
        let result = try LabProcess.run(command, timeout: timeout)
        return (result.status, result.output)
    }

    // MARK: - Reload faults

    func test_policyFileUnreadableOrDeletedAtReload_keepsTheRunningPolicyAndLogsWhy() throws {
        let lab = try lab()
        let daemon = try XCTUnwrap(lab.daemon)
        let path = lab.directory + "/connectors.yaml"
        let worker = try worker(lab)
        defer {
            try? labPolicy.write(toFile: path, atomically: true, encoding: .utf8)
            chmod(path, 0o644)
        }
        func failures() -> Int { lab.logLines().filter { $0.contains("policy reload from \(path) failed") }.count }

        // Unreadable for the worker (which runs as nobody): mode 0600, owner root.
        chmod(path, 0o600)
        daemon.signal(SIGHUP)
        XCTAssertTrue(waitFor { failures() == 1 }, lab.syslogDump())
        let reason = lab.logLines().last { $0.contains(path) && !$0.contains("failed, keeping") }
        XCTAssertNotNil(reason, lab.syslogDump())
        print("fault: unreadable policy at reload: \(reason ?? "?")")
        try assertLabPolicyJudges(lab, tag: "unreadable")

        // Deleted.
        unlink(path)
        daemon.signal(SIGUSR1)
        XCTAssertTrue(waitFor { failures() == 2 }, lab.syslogDump())
        try assertLabPolicyJudges(lab, tag: "deleted")
        XCTAssertEqual(try self.worker(lab), worker, "a failed reload must not cost the worker")

        // Back: the next reload applies.
        try labPolicy.write(toFile: path, atomically: true, encoding: .utf8)
        chmod(path, 0o644)
        let applied = lab.logLines().filter { $0.contains("policy reloaded") }.count
        daemon.signal(SIGHUP)
        XCTAssertTrue(waitFor { lab.logLines().filter { $0.contains("policy reloaded") }.count > applied }, lab.syslogDump())
        try assertLabPolicyJudges(lab, tag: "restored")
    }

    // MARK: - Start faults

    func test_socketDirectoryMissing_failsWithAClearErrorAndExit73() throws {
        let lab = try lab()
        let result = try daemonRun(["--config", lab.directory + "/connectors.yaml",
                                    "--socket", "unix:" + lab.directory + "/no-such-dir/milter.sock",
                                    "--user", "nobody", "--group", "postfix"])
        XCTAssertEqual(result.status, 73, result.output)
        XCTAssertTrue(result.output.contains("socket directory \(lab.directory)/no-such-dir is not usable"), result.output)
    }

    /// Root may write anywhere, so run the daemon as nobody (no --user) on a root-owned 0755 directory.
    func test_socketDirectoryNotWritable_failsWithAClearErrorAndExit73() throws {
        let lab = try lab()
        let directory = lab.directory + "/readonly"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        chmod(directory, 0o755)
        let result = try daemonRun(["--config", lab.directory + "/connectors.yaml", "--socket", "unix:" + directory + "/milter.sock"],
                                   as: "nobody")
        XCTAssertEqual(result.status, 73, result.output)
        XCTAssertTrue(result.output.contains("cannot create the socket in \(directory)"), result.output)
        XCTAssertFalse(FileManager.default.fileExists(atPath: directory + "/milter.sock"))
    }

    func test_secondDaemonOnALiveSocket_isRefusedWithExit73AndTheFirstServesOn() throws {
        let lab = try lab()
        let before = try FileManager.default.attributesOfItem(atPath: lab.milterSocketPath)[.systemFileNumber] as? Int
        let result = try daemonRun(["--config", lab.directory + "/connectors.yaml", "--socket", lab.milterSocket,
                                    "--user", "nobody", "--group", "postfix", "--pidfile", lab.directory + "/second.pid"])
        XCTAssertEqual(result.status, 73, result.output)
        XCTAssertTrue(result.output.contains("another daemon is already listening on \(lab.milterSocketPath)"), result.output)
        let after = try FileManager.default.attributesOfItem(atPath: lab.milterSocketPath)[.systemFileNumber] as? Int
        XCTAssertEqual(before, after, "the live socket must not be replaced")
        XCTAssertTrue(lab.daemon?.isRunning ?? false)
        try assertLabPolicyJudges(lab, tag: "second-daemon")
    }

    // MARK: - kill -9 under load

    /// 50 sessions wait at MAIL FROM (each an smtpd with its own milter connection); the worker
    /// dies; every one of them gets a 4xx for its RCPT (milter_default_action = tempfail); the
    /// supervisor starts another worker; each "sender" retries until its message is queued,
    /// and all 50 are delivered, each exactly once.
    func test_workerKilledUnderFiftyOpenSessions_everyMessageIsDeliveredOnRetry() throws {
        let lab = try lab()
        let supervisor = try XCTUnwrap(lab.daemon)
        let worker = try worker(lab)
        let count = 50
        var sessions: [RawSMTPClient] = []
        defer { for s in sessions { s.close() } }
        for _ in 0..<count {
            let client = try lab.openSMTP()
            XCTAssertEqual(try client.send("EHLO sender.lab.test").code, 250)
            XCTAssertEqual(try client.send("MAIL FROM:<bulk@example.org>").code, 250, client.transcript)
            sessions.append(client)
        }
        kill(worker, SIGKILL)
        var codes: [Int: Int] = [:]
        for (i, client) in sessions.enumerated() {
            let reply = try client.send("RCPT TO:<kill9-\(i)@contoso.com>")
            codes[reply.code, default: 0] += 1
            XCTAssertEqual(reply.code / 100, 4, "with the milter gone Postfix must tempfail: \(reply.text)")
            client.quit()
        }
        print("fault: kill -9 under \(count) open sessions: RCPT replies \(codes)")
        sessions.removeAll()

        // The senders retry, each until its message is queued.
        var queued = Set<Int>()
        var attempts = 0
        let began = Date()
        while queued.count < count && Date().timeIntervalSince(began) < 60 {
            for i in 0..<count where !queued.contains(i) {
                attempts += 1
                let t = try lab.swaks(SwaksOptions(from: "bulk@example.org", to: ["kill9-\(i)@contoso.com"]))
                if t.queued { queued.insert(i) } else { usleep(200_000); break }
            }
        }
        XCTAssertEqual(queued.count, count, "not every sender got its message queued within 60 s")
        let newWorker = try self.worker(lab)
        XCTAssertNotEqual(newWorker, worker)
        XCTAssertTrue(supervisor.isRunning)

        var delivered: [String: Int] = [:]
        _ = waitFor(timeout: 30) {
            delivered = [:]
            for message in lab.deliveries() {
                for rcpt in message.recipients where rcpt.hasPrefix("kill9-") { delivered[rcpt, default: 0] += 1 }
            }
            return delivered.count >= count
        }
        print("fault: kill -9: \(queued.count) queued after \(attempts) attempts in \(String(format: "%.1f", Date().timeIntervalSince(began))) s, \(delivered.count) delivered")
        XCTAssertEqual(delivered.count, count, "every message delivered")
        XCTAssertEqual(delivered.values.filter { $0 != 1 }.count, 0, "each exactly once: \(delivered.filter { $0.value != 1 })")
        let accepted = Set(lab.verdictLines().filter { $0.contains("verdict=accept") }.compactMap { line -> String? in
            guard let range = line.range(of: #"rcpt=<kill9-[0-9]+@contoso.com>"#, options: .regularExpression) else { return nil }
            return String(line[range])
        })
        XCTAssertEqual(accepted.count, count, "one accept verdict line per delivered message")
    }

    // MARK: - Privileges

    func test_workerRunsAsTheUserWithoutCapabilities_andCannotWriteThePolicy() throws {
        let lab = try lab()
        let supervisor = try XCTUnwrap(lab.daemon)
        let worker = try worker(lab)
        let nobody = try XCTUnwrap(getpwnam("nobody")).pointee.pw_uid
        let postfix = try XCTUnwrap(getgrnam("postfix")).pointee.gr_gid
        // Real, effective, saved and filesystem ids: all dropped for good.
        XCTAssertEqual(ProcessInfoReader.status(worker, "Uid"), Array(repeating: String(nobody), count: 4))
        XCTAssertEqual(ProcessInfoReader.status(worker, "Gid"), Array(repeating: String(postfix), count: 4))
        // --group, and the user's own primary group (so a policy `root:USER 0640` stays readable).
        let nobodysGroup = try XCTUnwrap(getpwnam("nobody")).pointee.pw_gid
        XCTAssertTrue(Set(ProcessInfoReader.status(worker, "Groups") ?? []).isSubset(of: [String(postfix), String(nobodysGroup)]),
                      "no supplementary group but --group and the user's own: \(ProcessInfoReader.status(worker, "Groups") ?? [])")
        for set in ["CapInh", "CapPrm", "CapEff", "CapAmb"] {
            XCTAssertEqual(ProcessInfoReader.status(worker, set), ["0000000000000000"], set)
        }
        XCTAssertEqual(ProcessInfoReader.status(supervisor.pid, "Uid")?.first, "0", "the supervisor stays root to restart the worker")

        // The policy: root's, 0644. The worker's uid cannot write it (access(2) as nobody).
        let policy = lab.directory + "/connectors.yaml"
        var info = stat()
        XCTAssertEqual(stat(policy, &info), 0)
        XCTAssertEqual(info.st_uid, 0)
        XCTAssertEqual(info.st_mode & 0o777, 0o644)
        let write = try LabProcess.run(["setpriv", "--reuid=nobody", "--regid=postfix", "--clear-groups", "test", "-w", policy])
        XCTAssertNotEqual(write.status, 0, "nobody must not be able to write \(policy)")
        let read = try LabProcess.run(["setpriv", "--reuid=nobody", "--regid=postfix", "--clear-groups", "test", "-r", policy])
        XCTAssertEqual(read.status, 0, "the worker must read the policy to reload it")

        // The socket: nobody:postfix, 0660.
        XCTAssertEqual(lstat(lab.milterSocketPath, &info), 0)
        XCTAssertEqual(info.st_mode & S_IFMT, S_IFSOCK)
        XCTAssertEqual(info.st_mode & 0o7777, 0o660)
        XCTAssertEqual(info.st_uid, nobody)
        XCTAssertEqual(info.st_gid, postfix)
    }

    /// The unit's hardening, read from packaging/connector-milter.service.
    func test_systemdUnitHardening() throws {
        let text = try String(contentsOfFile: LabPaths.repositoryRoot + "/packaging/connector-milter.service", encoding: .utf8)
        var settings: [String: [String]] = [:]
        var logical = ""
        for raw in text.split(separator: "\n", omittingEmptySubsequences: false) {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.hasPrefix("#") || line.hasPrefix(";") { continue }
            if line.hasSuffix("\\") { logical += line.dropLast() + " "; continue }
            logical += line
            defer { logical = "" }
            guard let equals = logical.firstIndex(of: "="), !logical.hasPrefix("[") else { continue }
            settings[String(logical[..<equals]), default: []].append(String(logical[logical.index(after: equals)...]))
        }
        let expected: [String: String] = [
            "NoNewPrivileges": "yes", "ProtectSystem": "strict", "PrivateTmp": "yes", "PrivateDevices": "yes",
            "ProtectHome": "yes", "ProtectKernelTunables": "yes", "ProtectKernelModules": "yes",
            "ProtectKernelLogs": "yes", "ProtectControlGroups": "yes", "RestrictNamespaces": "yes",
            "RestrictRealtime": "yes", "RestrictSUIDSGID": "yes", "LockPersonality": "yes",
            "MemoryDenyWriteExecute": "yes", "SystemCallArchitectures": "native", "Restart": "on-failure",
        ]
        for (key, value) in expected.sorted(by: { $0.key < $1.key }) {
            XCTAssertEqual(settings[key], [value], key)
        }
        // Exactly the capabilities the supervisor needs: no CAP_DAC_OVERRIDE, CAP_SYS_ADMIN, CAP_NET_ADMIN...
        let capabilities = Set((settings["CapabilityBoundingSet"]?.first ?? "").split(separator: " ").map(String.init))
        XCTAssertEqual(capabilities, ["CAP_SETUID", "CAP_SETGID", "CAP_CHOWN", "CAP_KILL"])
        XCTAssertEqual(Set((settings["RestrictAddressFamilies"]?.first ?? "").split(separator: " ").map(String.init)),
                       ["AF_UNIX", "AF_INET", "AF_INET6"])
        // Writable only where the sockets and the pidfile live; the policy stays read-only.
        let writable = (settings["ReadWritePaths"] ?? []).flatMap { $0.split(separator: " ").map(String.init) }
        XCTAssertFalse(writable.contains { "/etc/connector-milter".hasPrefix($0) || $0.hasPrefix("/etc") }, "\(writable)")
        // A bad policy stops a start and a reload before the signal.
        XCTAssertTrue(settings["ExecStartPre"]?.contains { $0.contains("connector-milter check") } ?? false)
        XCTAssertEqual(settings["ExecReload"]?.first.map { $0.contains("connector-milter check") }, true)
        XCTAssertTrue(settings["ExecReload"]?.last?.contains("-USR1") ?? false)
        // The socket's group follows the MTA (/etc/default/connector-milter); Postfix's by default.
        XCTAssertTrue(settings["ExecStart"]?.first?.contains("--user connector-milter --group ${SOCKET_GROUP}") ?? false)
        XCTAssertTrue(settings["Environment"]?.contains("SOCKET_GROUP=postfix") ?? false)
    }
}
