// The Debian package, installed with apt into a clean Debian 12 root and run by that root's
// systemd, with the root's own Postfix (then Sendmail), configured the way docs/install.md
// tells an administrator. Everything the unit, the maintainer scripts and the package's
// Depends do is exercised, not read.
//
// Mail goes to root@localhost: localhost is in Postfix's and Sendmail's local domains, so the
// MTAs' stock relay control lets it through to the milter; the test policy accepts localhost.

import Foundation
import XCTest

final class CleanRootTests: XCTestCase {
    private var roots: [CleanRoot] = []

    override func tearDown() {
        let failed = (testRun?.totalFailureCount ?? 0) > 0
        for root in roots {
            root.stop(removeDirectory: !failed)
            if failed { print("clean root kept: \(root.root) (var/log/mail.log, systemd.out beside it)") }
        }
        roots.removeAll()
        super.tearDown()
    }

    /// Enforcing: Fabrikam's mail only from 192.0.2.0/24 (so from 127.0.0.1 it is refused),
    /// Tailspin's only over TLS (in clear: tempfail), anyone else's accepted.
    static let enforcingPolicy = """
        organization:
          acceptedDomains: [localhost]
        settings:
          mode: enforce
        connectors:
          - name: Fabrikam Bank
            direction: inbound
            type: partner
            senderDomains: [fabrikam.example]
            senderIPAddresses: [192.0.2.0/24]
            restrictDomainsToIPAddresses: true
          - name: Tailspin Toys
            direction: inbound
            type: partner
            senderDomains: [tailspin.example]
            requireTls: true

        """
    /// The same with Fabrikam's servers on 127.0.0.0/8: its mail is accepted from now on.
    static let changedPolicy = enforcingPolicy.replacingOccurrences(of: "[192.0.2.0/24]", with: "[127.0.0.0/8]")
    static let brokenPolicy = enforcingPolicy.replacingOccurrences(of: "mode: enforce", with: "mode: Enforce")

    static let policyPath = "/etc/connector-milter/connectors.yaml"

    // MARK: - Postfix

    func test_postfixHost_installRunReloadRemovePurge() throws {
        let deb = try DebianPackage.path()
        let root = try CleanRoot.make(name: "postfix", packages: ["/root/" + (deb as NSString).lastPathComponent, "postfix", "swaks"],
                                      debconf: ["postfix postfix/main_mailer_type select Internet Site",
                                                "postfix postfix/mailname string \(CleanRoot.hostname)"],
                                      copying: deb)
        roots.append(root)
        try root.boot()

        // Installed through apt, with systemd running: a Depends missing from the package
        // fails here, since the root has only what minbase and the Depends bring.
        try root.check(["apt-get", "install", "-y", "-q", "--no-install-recommends",
                        "/root/" + (deb as NSString).lastPathComponent, "postfix", "swaks"], timeout: 600)
        try checkInstalled(root, deb: deb)
        XCTAssertTrue(waitFor(timeout: 10) { (try? root.run(["systemctl", "is-active", "connector-milter"]).output) == "active\n" },
                      "the package starts the daemon on install: " + journal(root))

        // The socket where Postfix's chrooted smtpd finds it, for the postfix group only.
        try assertOwner(root, "/var/spool/postfix/connector-milter", "root postfix 750 directory")
        try assertOwner(root, "/var/spool/postfix/connector-milter/milter.sock", "connector-milter postfix 660 socket")

        // main.cf as docs/install.md says: its `postconf -e` lines and the systemctl commands after them.
        let lines = try installGuideLines(prefix: "postconf -e ")
        XCTAssertTrue(lines.contains { $0.contains("smtpd_milters = unix:/connector-milter/milter.sock") }, "\(lines)")
        XCTAssertTrue(lines.contains { $0.contains("milter_default_action = tempfail") }, "\(lines)")
        for line in lines { try root.shell(line) }
        try root.check(["systemctl", "enable", "--now", "connector-milter"])
        try root.check(["systemctl", "reload", "postfix"])
        XCTAssertEqual(try root.run(["postconf", "-h", "smtpd_milters"]).output, "unix:/connector-milter/milter.sock\n")

        try checkMail(root, queuedReply: "Ok: queued as", tempfails: true)
        try checkRelayControl(root, milterLine: lines.first { $0.contains("smtpd_milters") }!)

        // Stopped: Postfix tempfails (milter_default_action), nothing passes unjudged.
        try root.check(["systemctl", "stop", "connector-milter"])
        XCTAssertEqual(try root.run(["systemctl", "is-active", "connector-milter"]).output, "inactive\n")
        XCTAssertFalse(root.exists("/var/spool/postfix/connector-milter/milter.sock"), "the socket goes with the daemon")
        let stopped = try root.send(from: "x@example.org", to: "root@localhost")
        XCTAssertTrue(stopped.rcpt.hasPrefix("4") || stopped.last.hasPrefix("4"), "with the milter stopped, Postfix tempfails:\n\(stopped.transcript)")

        try checkRemoveAndPurge(root, extraDirectories: ["/var/spool/postfix/connector-milter"])
    }

    // MARK: - Sendmail

    func test_sendmailHost_installRunRefuseAccept() throws {
        let deb = try DebianPackage.path()
        // No DNS in the root's network namespace: Sendmail resolves the sender domains (it
        // tempfails unresolvable ones) from /etc/hosts.
        let root = try CleanRoot.make(name: "sendmail", packages: ["/root/" + (deb as NSString).lastPathComponent, "sendmail", "swaks"],
                                      hosts: ["127.0.0.2 example.org fabrikam.example tailspin.example"], copying: deb)
        roots.append(root)
        try root.boot()
        try root.check(["apt-get", "install", "-y", "-q", "--no-install-recommends",
                        "/root/" + (deb as NSString).lastPathComponent, "sendmail", "swaks"], timeout: 600)
        try checkInstalled(root, deb: deb)
        XCTAssertNil(getgrnamInRoot(root, "postfix"), "a Sendmail host has no postfix group")
        // Postfix's default socket cannot work here; the journal says what to change.
        XCTAssertTrue(waitFor(timeout: 10) { self.journal(root).contains("no group postfix for the socket: set SOCKET and SOCKET_GROUP") },
                      journal(root))

        // /etc/default/connector-milter: the four Sendmail lines uncommented, as docs/install.md says.
        let defaults = root.read("/etc/default/connector-milter")
        XCTAssertTrue(defaults.contains("\n#SOCKET=/run/connector-milter/milter.sock\n"), defaults)
        XCTAssertTrue(defaults.contains("\n#SOCKET_GROUP=connector-milter\n"), defaults)
        XCTAssertTrue(defaults.contains("\n#POLICY_SOCKET=/run/connector-milter/policy.sock\n"), defaults)
        XCTAssertTrue(defaults.contains("\n#MAPS_SOCKET=/run/connector-milter/maps.sock\n"), defaults)
        try root.write("/etc/default/connector-milter", defaults
            .replacingOccurrences(of: "\n#SOCKET=/run/connector-milter/milter.sock\n", with: "\nSOCKET=/run/connector-milter/milter.sock\n")
            .replacingOccurrences(of: "\n#SOCKET_GROUP=connector-milter\n", with: "\nSOCKET_GROUP=connector-milter\n")
            .replacingOccurrences(of: "\n#POLICY_SOCKET=", with: "\nPOLICY_SOCKET=")
            .replacingOccurrences(of: "\n#MAPS_SOCKET=", with: "\nMAPS_SOCKET="))
        try root.check(["systemctl", "restart", "connector-milter"])
        XCTAssertTrue(waitFor(timeout: 10) { root.exists("/run/connector-milter/milter.sock") }, journal(root))
        try assertOwner(root, "/run/connector-milter/milter.sock", "connector-milter connector-milter 660 socket")

        // sendmail.mc: the package's example lines before MAILER_DEFINITIONS, then rebuilt.
        let example = root.read("/usr/share/doc/connector-milter/examples/sendmail.mc")
        XCTAssertTrue(example.contains("INPUT_MAIL_FILTER(`connector-milter', `S=unix:/run/connector-milter/milter.sock, F=T"), example)
        let mc = root.read("/etc/mail/sendmail.mc")
        let marker = "\nMAILER_DEFINITIONS\n"
        XCTAssertTrue(mc.contains(marker), mc)
        try root.write("/etc/mail/sendmail.mc", mc.replacingOccurrences(of: marker, with: "\n" + example + "MAILER_DEFINITIONS\n"))
        try root.check(["make", "-C", "/etc/mail"])
        try root.check(["systemctl", "restart", "sendmail"])

        try checkMail(root, queuedReply: "Message accepted for delivery", tempfails: true)
        try checkRemoveAndPurge(root, extraDirectories: [])
    }

    // MARK: - Shared steps

    /// The program runs on the target, prints the package's version, and the package made
    /// its user and gave it the policy.
    private func checkInstalled(_ root: CleanRoot, deb: String) throws {
        let version = try root.check(["connector-milter", "--version"]).output
        XCTAssertEqual(version, DebianPackage.version(of: deb) + "\n", "one version: the package's is the program's")
        XCTAssertFalse(root.exists("/usr/bin/swift") || root.exists("/usr/lib/swift"), "no Swift on the target")
        XCTAssertTrue(try root.run(["getent", "passwd", "connector-milter"]).output.contains(":/nonexistent:/usr/sbin/nologin"))
        try assertOwner(root, Self.policyPath, "root connector-milter 640 regular file")
        XCTAssertEqual(try root.run(["dpkg-query", "-W", "-f=${Conffiles}", "connector-milter"]).output.contains(Self.policyPath), true)
        let check = try root.run(["connector-milter", "check", "--config", Self.policyPath])
        XCTAssertEqual(check.status, 0, check.output)
        XCTAssertTrue(check.output.contains("mode monitor"), check.output)
        XCTAssertTrue(try root.run(["systemctl", "is-enabled", "connector-milter"]).output == "enabled\n")
        XCTAssertTrue(root.exists("/usr/share/man/man5/connectors.yaml.5.gz"))
        XCTAssertTrue(root.exists("/usr/share/man/man8/connector-milter.8.gz"))
        XCTAssertTrue(root.exists("/usr/share/doc/connector-milter/copyright"))
    }

    /// As shipped nothing is refused; then the enforcing policy refuses, tempfails and
    /// accepts; a broken reload is refused and changes nothing; a changed one applies.
    private func checkMail(_ root: CleanRoot, queuedReply: String, tempfails: Bool) throws {
        // As shipped (monitor mode, accepted domain example.com): localhost is not accepted,
        // so enforce mode would refuse to relay; monitor mode logs that and accepts.
        let shipped = try root.send(from: "x@example.org", to: "root@localhost")
        XCTAssertTrue(shipped.last.contains(queuedReply), shipped.transcript)
        let monitored = try XCTUnwrap(root.waitForVerdict(from: "x@example.org"), root.read("/var/log/mail.log"))
        XCTAssertTrue(monitored.contains("verdict=accept would=reject reason=relay-denied"), monitored)
        XCTAssertTrue(monitored.contains("mode=monitor"), monitored)

        try reload(root, to: Self.enforcingPolicy)
        var seen = root.verdictLines().count
        let refused = try root.send(from: "x@fabrikam.example", to: "root@localhost")
        XCTAssertTrue(refused.rcpt.hasPrefix("550 5.7.51"), refused.transcript)
        let refusal = try XCTUnwrap(root.waitForVerdict(from: "x@fabrikam.example", after: seen), root.read("/var/log/mail.log"))
        XCTAssertTrue(refusal.contains("verdict=reject reason=partner-restricted"), refusal)

        if tempfails {
            seen = root.verdictLines().count
            let tempfailed = try root.send(from: "x@tailspin.example", to: "root@localhost")
            XCTAssertTrue(tempfailed.rcpt.hasPrefix("454 4.7.0 TLS required") || tempfailed.rcpt.contains("454 4.7.0"), tempfailed.transcript)
            let line = try XCTUnwrap(root.waitForVerdict(from: "x@tailspin.example", after: seen))
            XCTAssertTrue(line.contains("verdict=tempfail reason=tls-required") && line.contains("inbound=\"Tailspin Toys\""), line)
        }

        seen = root.verdictLines().count
        let accepted = try root.send(from: "x@example.org", to: "root@localhost")
        XCTAssertTrue(accepted.last.contains(queuedReply), accepted.transcript)
        let acceptance = try XCTUnwrap(root.waitForVerdict(from: "x@example.org", after: seen))
        XCTAssertTrue(acceptance.contains("verdict=accept direction=incoming") && acceptance.contains("mode=enforce"), acceptance)
        XCTAssertFalse(acceptance.contains("would="), acceptance)
        XCTAssertFalse(acceptance.contains("NOQUEUE"), "an acceptance carries the queue id: \(acceptance)")

        // A broken policy: `systemctl reload` fails and says why; the daemon keeps its policy.
        try root.write(Self.policyPath, Self.brokenPolicy)
        let broken = try root.run(["systemctl", "reload", "connector-milter"])
        XCTAssertNotEqual(broken.status, 0, "reload of a broken policy must fail")
        XCTAssertTrue(journal(root).contains("\(Self.policyPath):4:9: mode must be one of: enforce, monitor"), journal(root))
        XCTAssertEqual(try root.run(["systemctl", "is-active", "connector-milter"]).output, "active\n")
        seen = root.verdictLines().count
        XCTAssertTrue(try root.send(from: "x@fabrikam.example", to: "root@localhost").rcpt.hasPrefix("550 5.7.51"), "old policy kept")
        XCTAssertNotNil(root.waitForVerdict(from: "x@fabrikam.example", after: seen))

        // A changed policy applies: Fabrikam's mail from 127.0.0.1 is accepted now.
        try reload(root, to: Self.changedPolicy)
        seen = root.verdictLines().count
        let flipped = try root.send(from: "x@fabrikam.example", to: "root@localhost")
        XCTAssertTrue(flipped.last.contains(queuedReply), flipped.transcript)
        let line = try XCTUnwrap(root.waitForVerdict(from: "x@fabrikam.example", after: seen))
        XCTAssertTrue(line.contains("verdict=accept") && line.contains("inbound=\"Fabrikam Bank\""), line)

        // What docs/install.md offers to read the lines with.
        let report = try root.run(["connector-milter", "report", "/var/log/mail.log"])
        XCTAssertEqual(report.status, 0, report.output)
        XCTAssertTrue(report.output.contains("Fabrikam Bank"), report.output)
    }

    /// Postfix's stock relay control with the guide's lines: an onPremises address relays to
    /// the internet, a stranger may not, mail for an accepted domain is taken from anyone; and
    /// with the milter line removed a stranger is still refused.
    private func checkRelayControl(_ root: CleanRoot, milterLine: String) throws {
        try reload(root, to: Self.relayPolicy)
        for address in ["192.0.2.10", "198.51.100.9"] {
            try root.inNetworkNamespace(["ip", "address", "add", address + "/32", "dev", "lo"])
        }
        XCTAssertEqual(try root.run(["postconf", "-h", "mynetworks"]).output, "127.0.0.0/8 [::1]/128\n")

        let onPremises = try root.send(from: "alice@contoso.example", to: "partner@example.net", source: "192.0.2.10")
        XCTAssertTrue(onPremises.rcpt.hasPrefix("250"), "the on-premises server relays:\n\(onPremises.transcript)")
        let stranger = try root.send(from: "x@example.org", to: "victim@example.net", source: "198.51.100.9")
        XCTAssertTrue(stranger.rcpt.hasPrefix("554 5.7.1"), "a stranger may not relay:\n\(stranger.transcript)")
        let inbound = try root.send(from: "x@example.org", to: "user@contoso.example", source: "198.51.100.9")
        XCTAssertTrue(inbound.rcpt.hasPrefix("250"), "mail for an accepted domain is taken from anyone:\n\(inbound.transcript)")

        // Without the milter, Postfix's own relay control still refuses the stranger.
        try root.check(["postconf", "-e", "smtpd_milters ="])
        try root.check(["systemctl", "reload", "postfix"])
        let unfiltered = try root.send(from: "x@example.org", to: "victim@example.net", source: "198.51.100.9")
        XCTAssertTrue(unfiltered.rcpt.hasPrefix("554 5.7.1"), "no open relay without the milter:\n\(unfiltered.transcript)")
        try root.shell(milterLine)
        try root.check(["systemctl", "reload", "postfix"])
    }

    static let relayPolicy = """
        organization:
          acceptedDomains: [contoso.example, localhost]
        connectors:
          - name: Contoso on-premises
            direction: inbound
            type: onPremises
            senderIPAddresses: [192.0.2.0/24]

        """

    /// Writes the policy and reloads through systemd; waits for the daemon's "reloaded" line.
    private func reload(_ root: CleanRoot, to policy: String) throws {
        let before = reloadCount(root)
        try root.write(Self.policyPath, policy)
        try root.check(["systemctl", "reload", "connector-milter"])
        XCTAssertTrue(waitFor(timeout: 10) { self.reloadCount(root) > before }, "no reload line:\n" + root.read("/var/log/mail.log"))
    }

    private func reloadCount(_ root: CleanRoot) -> Int {
        root.read("/var/log/mail.log").components(separatedBy: "policy reloaded from \(Self.policyPath)").count - 1
    }

    /// remove keeps the conffiles and the user; purge takes the user, directories and conffiles.
    private func checkRemoveAndPurge(_ root: CleanRoot, extraDirectories: [String]) throws {
        let edited = root.read(Self.policyPath)
        try root.check(["apt-get", "remove", "-y", "-q", "connector-milter"])
        XCTAssertNotEqual(try root.run(["systemctl", "is-active", "connector-milter"]).output, "active\n")
        XCTAssertFalse(root.exists("/usr/sbin/connector-milter"))
        XCTAssertEqual(root.read(Self.policyPath), edited, "remove keeps the edited policy")
        XCTAssertTrue(root.exists("/etc/default/connector-milter"))

        try root.check(["apt-get", "purge", "-y", "-q", "connector-milter"])
        for path in ["/etc/connector-milter", "/etc/default/connector-milter", "/run/connector-milter"] + extraDirectories {
            XCTAssertFalse(root.exists(path), "purge leaves \(path)")
        }
        XCTAssertNotEqual(try root.run(["getent", "passwd", "connector-milter"]).status, 0, "purge removes the user")
        XCTAssertNotEqual(try root.run(["getent", "group", "connector-milter"]).status, 0, "purge removes the group")
        XCTAssertFalse(root.exists("/etc/systemd/system/multi-user.target.wants/connector-milter.service"))
    }

    // MARK: - Helpers

    /// The lines of docs/install.md that start with `prefix` (the administrator's commands).
    private func installGuideLines(prefix: String) throws -> [String] {
        let text = try String(contentsOfFile: LabPaths.repositoryRoot + "/docs/install.md", encoding: .utf8)
        return text.split(separator: "\n").map(String.init).filter { $0.hasPrefix(prefix) }
    }

    /// "USER GROUP MODE TYPE" of a path in the root, as stat(1) there says.
    private func assertOwner(_ root: CleanRoot, _ path: String, _ expected: String, line: UInt = #line) throws {
        let result = try root.run(["stat", "-c", "%U %G %a %F", path])
        XCTAssertEqual(result.output.trimmingCharacters(in: .whitespacesAndNewlines), expected, path, line: line)
    }

    private func getgrnamInRoot(_ root: CleanRoot, _ group: String) -> String? {
        guard let result = try? root.run(["getent", "group", group]), result.succeeded else { return nil }
        return result.output
    }

    private func journal(_ root: CleanRoot) -> String {
        (try? root.run(["journalctl", "-u", "connector-milter", "--no-pager"]).output) ?? ""
    }
}
