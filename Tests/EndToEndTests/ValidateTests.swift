// `connector-milter validate` against real MTAs: what it predicts, Postfix then does.
//
// Outbound: a ReceiverLab (127.0.0.2: right name, wrong name, self-signed, expired, no
// STARTTLS) and one connector per case; `validate` runs first and says "delivers" or not for
// each, then one message per connector goes through the sender lab's Postfix, which asks the
// daemon's socketmap: each is delivered exactly where validate said so, and deferred
// elsewhere. Wiring: a lab Postfix broken one way at a time gives the finding, the fix line
// it prints is run as printed, and then no finding is left. Sendmail: the lab's .mc compiled
// with m4, with and without each mistake. Only loopback is ever connected to.

import Foundation
import Glibc
import XCTest

final class ValidateTests: LabTestCase {
    private var receivers: [ReceiverLab] = []

    override func tearDown() {
        let keep = (testRun?.totalFailureCount ?? 0) > 0
            || (ProcessInfo.processInfo.environment["CONNECTOR_LAB_KEEP"].map { !$0.isEmpty && $0 != "0" } ?? false)
        for receiver in receivers {
            receiver.stop(removeDirectory: !keep)
            if keep { print("receiver directory kept: \(receiver.directory)") }
        }
        receivers.removeAll()
        super.tearDown()
    }

    // MARK: - Outbound: validate's verdict against Postfix's delivery

    func testValidatePredictsWherePostfixDeliversAndWhereItDefers() throws {
        let began = Date()
        let receiver = try ReceiverLab.start()
        receivers.append(receiver)
        let closedPort = try LabProcess.freeTCPPort()
        // name, recipient domain, smart host, TLS lines, the outcome we expect of both.
        let cases: [(name: String, domain: String, host: String, tls: String, delivers: Bool)] = [
            ("Right name", "fabrikam.test", receiver.smartHost(.good),
             "tlsSettings: domainValidation\n    tlsDomain: mx.fabrikam.test", true),
            ("Wrong name", "wrongname.test", receiver.smartHost(.wrongname),
             "tlsSettings: domainValidation\n    tlsDomain: mx.fabrikam.test", false),
            ("Self-signed, encryption only", "selfsigned.test", receiver.smartHost(.selfsigned),
             "tlsSettings: encryptionOnly", true),
            ("Expired", "expired.test", receiver.smartHost(.expired),
             "tlsSettings: domainValidation\n    tlsDomain: mx.fabrikam.test", false),
            ("No STARTTLS, encryption only", "plain.test", receiver.smartHost(.plain), "tlsSettings: encryptionOnly", false),
            // Shares the plain host with the one above: Postfix keeps one TLS policy per next
            // hop, the stricter (encrypt), so this connector's mail defers too.
            ("No STARTTLS, no TLS settings", "plain2.test", receiver.smartHost(.plain), "", false),
            ("Nobody listens", "closed.test", "[127.0.0.2]:\(closedPort)", "", false),
        ]
        let connectors = cases.map { c in
            """
              - name: \(c.name)
                direction: outbound
                type: partner
                recipientDomains: [\(c.domain)]
                smartHosts: ["\(c.host)"]
            \(c.tls.isEmpty ? "" : "    " + c.tls)
            """
        }.joined(separator: "\n")
        let (sender, policyPath) = try startSender(receiver: receiver, connectors: connectors)

        // validate first: the CA file comes from the lab's smtp_tls_CAfile through postconf.
        let binary = try ConnectorMilterBinary.binaryPath()
        let validated = try LabProcess.run([binary, "validate", "--config", policyPath, "--postfix-config",
                                            sender.configDirectory, "--format", "json", "--timeout", "5"], timeout: 120)
        XCTAssertEqual(validated.status, 1, validated.output)
        let report = try Self.json(validated.output)
        let verdicts = Dictionary(uniqueKeysWithValues: try XCTUnwrap(report["connectors"] as? [[String: Any]], validated.output)
            .map { ($0["connector"] as? String ?? "?", $0["delivers"] as? Bool ?? false) })

        // Then Postfix: one message per connector.
        var queueIDs: [String: String] = [:]
        for c in cases { queueIDs[c.name] = try send(sender, to: "user@\(c.domain)") }
        var table = "| connector | receiver | validate | Postfix |\n|---|---|---|---|\n"
        for c in cases {
            let queueID = try XCTUnwrap(queueIDs[c.name])
            let line = try sender.waitForMaillog(matching: #"\#(queueID): to=<user@\#(NSRegularExpression.escapedPattern(for: c.domain))>.*status=(sent|deferred)"#,
                                                 timeout: 30)
            let postfixDelivered = line.contains("status=sent")
            let predicted = try XCTUnwrap(verdicts[c.name], "validate said nothing of \(c.name): \(validated.output)")
            XCTAssertEqual(predicted, postfixDelivered, "\(c.name): validate said \(predicted), Postfix: \(line)\n\(validated.output)")
            XCTAssertEqual(postfixDelivered, c.delivers, "\(c.name): \(line)")
            if postfixDelivered { XCTAssertTrue(line.contains("relay=127.0.0.2[127.0.0.2]:"), line) }
            let reason = line.range(of: #"\(.*\)$"#, options: .regularExpression).map { String(line[$0]) } ?? ""
            table += "| \(c.name) | \(c.host) | \(predicted ? "delivers" : "does not") | "
                + "\(postfixDelivered ? "sent" : "deferred \(reason.prefix(70))") |\n"
        }
        print("validate vs Postfix:\n" + table)
        // What was deferred is still queued.
        let queue = try LabProcess.check(["postqueue", "-c", sender.configDirectory, "-p"]).output
        for c in cases where !c.delivers { XCTAssertTrue(queue.contains(queueIDs[c.name]!), "\(c.name): \(queue)") }

        // The reasons validate gives, in Postfix's words where it has them.
        let hosts = (report["connectors"] as? [[String: Any]] ?? []).reduce(into: [String: [String: Any]]()) {
            $0[$1["connector"] as? String ?? ""] = ($1["hosts"] as? [[String: Any]])?.first
        }
        XCTAssertEqual(hosts["Right name"]?["trust"] as? String, "Verified")
        XCTAssertEqual(hosts["Right name"]?["certificateNames"] as? [String], ["mx.fabrikam.test"])
        XCTAssertEqual(hosts["Right name"]?["trustedChain"] as? Bool, true)
        XCTAssertTrue((hosts["Wrong name"]?["reason"] as? String ?? "").contains("hostname mismatch"), validated.output)
        XCTAssertEqual(hosts["Wrong name"]?["nameMatch"] as? Bool, false)
        XCTAssertTrue((hosts["Expired"]?["reason"] as? String ?? "").contains("certificate has expired"), validated.output)
        XCTAssertEqual(hosts["Expired"]?["trustedChain"] as? Bool, false)
        XCTAssertLessThan(hosts["Expired"]?["daysToExpiry"] as? Int ?? 0, 0)
        XCTAssertEqual(hosts["Self-signed, encryption only"]?["trustedChain"] as? Bool, false)
        XCTAssertTrue((hosts["No STARTTLS, encryption only"]?["reason"] as? String ?? "").hasPrefix("TLS is required, but was not offered"))
        XCTAssertTrue((hosts["No STARTTLS, no TLS settings"]?["warnings"] as? [String] ?? []).contains { $0.contains("shared with connector") },
                      validated.output)
        XCTAssertTrue((hosts["Nobody listens"]?["reason"] as? String ?? "").contains("Connection refused"), validated.output)

        // One connector that delivers: exit 0, and the text form says so.
        let one = try LabProcess.run([binary, "validate", "--config", policyPath, "--postfix-config", sender.configDirectory,
                                      "--connector", "Right name"], timeout: 60)
        XCTAssertEqual(one.status, 0, one.output)
        XCTAssertTrue(one.output.contains("verdict: delivers under this connector"), one.output)
        print("validate outbound test: \(String(format: "%.1f", Date().timeIntervalSince(began))) s")
    }

    /// validationRecipients against a Postfix whose milter (the daemon) refuses relaying for a
    /// client no onPremises connector names: the accepted domain's recipient is taken, the
    /// foreign one refused, and no message is sent.
    func testValidationRecipientsAreAskedAfterStartTLSAndNothingIsSent() throws {
        let lab = try startLab()
        func policy(_ recipients: String) -> String {
            """
            organization:
              acceptedDomains: [contoso.com]
            connectors:
              - name: Self
                direction: outbound
                type: partner
                recipientDomains: [fabrikam.test]
                smartHosts: ["[127.0.0.1]:\(lab.smtpPort)"]
                tlsSettings: encryptionOnly
                validationRecipients: [\(recipients)]
            """
        }
        let policyPath = try lab.writeFile("connectors.yaml", contents: policy("anne@contoso.com, bob@elsewhere.test"))
        try lab.startDaemon(config: policyPath)
        let binary = try ConnectorMilterBinary.binaryPath()
        let refused = try LabProcess.run([binary, "validate", "--config", policyPath, "--postfix-config", lab.configDirectory])
        XCTAssertEqual(refused.status, 1, refused.output)
        XCTAssertTrue(refused.output.contains("RCPT TO:<anne@contoso.com>: 250 2.1.5 Ok"), refused.output)
        XCTAssertTrue(refused.output.range(of: #"RCPT TO:<bob@elsewhere\.test>: 5\d\d "#, options: .regularExpression) != nil,
                      refused.output)
        XCTAssertTrue(refused.output.contains("does not deliver: the host refuses RCPT TO:<bob@elsewhere.test>"), refused.output)
        // The daemon judged the refused recipient (an accepted one is logged with its message,
        // and there is none): the RCPT really went through the session.
        let verdicts = try lab.waitForVerdicts(count: 1)
        XCTAssertTrue(verdicts.contains { $0.contains("verdict=reject") && $0.contains("bob@elsewhere.test") }, "\(verdicts)")
        XCTAssertTrue(lab.maillog().contains("TLS connection established from localhost[127.0.0.1]"), lab.maillog())

        try lab.writeFile("connectors.yaml", contents: policy("anne@contoso.com"))
        let accepted = try LabProcess.run([binary, "validate", "--config", policyPath, "--postfix-config", lab.configDirectory])
        XCTAssertEqual(accepted.status, 0, accepted.output)
        XCTAssertTrue(accepted.output.contains("verdict: delivers under this connector"), accepted.output)
        // RSET and QUIT, never DATA: nothing was queued or delivered.
        XCTAssertFalse(lab.maillog().contains("message-id="), lab.maillog())
        XCTAssertEqual(lab.deliveries().count, 0)
    }

    // MARK: - Inbound: a client certificate

    func testACertificateIsMatchedToItsConnectorOnlyWhenTheCATrustsIt() throws {
        let lab = try startLab(PostfixLab.Configuration(milter: .none))
        let policyPath = try lab.writeFile("connectors.yaml", contents: """
            organization:
              acceptedDomains: [contoso.com]
            connectors:
              - name: Contoso relays
                direction: inbound
                type: onPremises
                tlsSenderCertificateName: "*.contoso.com"
            """)
        let binary = try ConnectorMilterBinary.binaryPath()
        let trusted = try LabProcess.run([binary, "validate", "--config", policyPath, "--postfix-config", lab.configDirectory,
                                          "--certificate", lab.certificates.client.certificatePath])
        XCTAssertEqual(trusted.status, 0, trusted.output)
        XCTAssertTrue(trusted.output.contains("identifies connector \"Contoso relays\" (onPremises)"), trusted.output)
        XCTAssertTrue(trusted.output.contains("name the MTA passes: relay.contoso.com"), trusted.output)
        let untrusted = try LabProcess.run([binary, "validate", "--config", policyPath, "--postfix-config", lab.configDirectory,
                                            "--certificate", lab.certificates.selfSignedClient.certificatePath])
        XCTAssertEqual(untrusted.status, 1, untrusted.output)
        XCTAssertTrue(untrusted.output.contains("does not trust it"), untrusted.output)
    }

    // MARK: - Postfix wiring

    func testEachPostfixWiringMistakeGivesItsFindingAndItsFixClearsIt() throws {
        let lab = try startLab()
        let maps = lab.runDirectory + "/maps.sock"
        let policy = """
            organization:
              acceptedDomains: [contoso.com]
            connectors:
              - name: Contoso relays
                direction: inbound
                type: onPremises
                tlsSenderCertificateName: relay.contoso.com
              - name: Fabrikam
                direction: outbound
                type: partner
                recipientDomains: [fabrikam.test]
                smartHosts: ["[127.0.0.2]:2525"]
                tlsSettings: encryptionOnly
            """
        let policyPath = try lab.writeFile("connectors.yaml", contents: policy)
        try lab.startDaemon(config: policyPath, extraArgs: ["--maps-socket", "unix:" + maps])
        try lab.postconf(["smtp_tls_policy_maps": "socketmap:unix:\(maps):tls-policy",
                          "transport_maps": "socketmap:unix:\(maps):transport",
                          "smtp_tls_CAfile": lab.certificates.ca.certificatePath], reload: false)
        let binary = try ConnectorMilterBinary.binaryPath()
        func validate() throws -> (status: Int32, findings: [[String: Any]], output: String) {
            let result = try LabProcess.run([binary, "validate", "--config", policyPath, "--mta", "postfix",
                                             "--postfix-config", lab.configDirectory, "--socket", lab.milterSocket,
                                             "--maps-socket", "unix:" + maps, "--format", "json"])
            let wiring = try Self.json(result.output)["wiring"] as? [String: Any]
            return (result.status, wiring?["findings"] as? [[String: Any]] ?? [], result.output)
        }
        let clean = try validate()
        XCTAssertEqual(clean.status, 0, clean.output)
        XCTAssertEqual(clean.findings.count, 0, clean.output)

        let smtpService = "127.0.0.1:\(lab.smtpPort)"
        // Each mistake: how to make it, what the finding says.
        let mistakes: [(String, [String], String)] = [
            ("smtpd_milters on another socket", ["postconf", "-c", lab.configDirectory, "-e", "smtpd_milters = inet:127.0.0.1:9"],
             "does not name the daemon's socket"),
            ("smtpd chrooted", ["postconf", "-c", lab.configDirectory, "-F", "\(smtpService)/inet/chroot = y"], "smtpd is chrooted"),
            ("milter_default_action = accept", ["postconf", "-c", lab.configDirectory, "-e", "milter_default_action = accept"],
             "milter_default_action = accept"),
            ("milter_protocol = 2", ["postconf", "-c", lab.configDirectory, "-e", "milter_protocol = 2"], "milter_protocol = 2"),
            ("no client certificates", ["postconf", "-c", lab.configDirectory, "-e", "smtpd_tls_ask_ccert = no"],
             "smtpd_tls_ask_ccert = no"),
            ("no TLS policy map", ["postconf", "-c", lab.configDirectory, "-e", "smtp_tls_policy_maps ="], "smtp_tls_policy_maps is empty"),
            ("no transport map", ["postconf", "-c", lab.configDirectory, "-e", "transport_maps ="], "transport_maps is empty"),
            ("socket Postfix cannot open", ["chmod", "0600", lab.milterSocketPath], "cannot connect to \(lab.milterSocketPath)"),
        ]
        var table = "| mistake | finding | fix run |\n|---|---|---|\n"
        for (name, breakIt, expected) in mistakes {
            try LabProcess.check(breakIt)
            let broken = try validate()
            XCTAssertEqual(broken.status, 1, "\(name): \(broken.output)")
            let finding = broken.findings.first { ($0["message"] as? String ?? "").contains(expected) }
            let fixes = finding?["fix"] as? [String] ?? []
            // The first fix line that is a command: run it exactly as printed.
            guard let fix = fixes.lazy.map({ $0.hasPrefix("or: ") ? String($0.dropFirst(4)) : $0 })
                .first(where: { $0.hasPrefix("postconf ") || $0.hasPrefix("chgrp ") }) else {
                XCTFail("\(name): no runnable fix in \(broken.output)")
                continue
            }
            XCTAssertEqual(broken.findings.count, 1, "\(name): \(broken.output)")
            try LabProcess.check(["sh", "-c", fix])
            let fixed = try validate()
            XCTAssertEqual(fixed.status, 0, "\(name): after `\(fix)`: \(fixed.output)")
            XCTAssertEqual(fixed.findings.count, 0, "\(name): after `\(fix)`: \(fixed.output)")
            table += "| \(name) | \(finding?["message"] as? String ?? "") | `\(fix)` |\n"
        }
        print("Postfix wiring:\n" + table)

        // Exported tables instead of the socketmap: fresh, then stale after a policy change.
        let tables = lab.directory + "/tables"
        try LabProcess.check([binary, "export", "postfix", "--config", policyPath, "--output", tables])
        try LabProcess.check(["postmap", "-c", lab.configDirectory, tables + "/tls_policy"])
        try LabProcess.check(["postmap", "-c", lab.configDirectory, tables + "/transport"])
        try lab.postconf(["smtp_tls_policy_maps": "hash:\(tables)/tls_policy", "transport_maps": "hash:\(tables)/transport"],
                         reload: false)
        let fresh = try validate()
        XCTAssertEqual(fresh.findings.count, 0, fresh.output)
        try lab.writeFile("connectors.yaml", contents: policy.replacingOccurrences(
            of: "tlsSettings: encryptionOnly", with: "tlsSettings: domainValidation\n    tlsDomain: mx.fabrikam.test"))
        let stale = try validate()
        XCTAssertEqual(stale.status, 1, stale.output)
        let finding = try XCTUnwrap(stale.findings.first { ($0["message"] as? String ?? "").contains("is stale") }, stale.output)
        // The fix: export again, postmap, reload: with this binary, and the lab's postfix.
        let fix = try XCTUnwrap((finding["fix"] as? [String])?.first)
        XCTAssertTrue(fix.hasPrefix("connector-milter export postfix --config \(policyPath) --output \(tables) && "
                                    + "postmap -c \(lab.configDirectory) "), fix)
        try LabProcess.check(["sh", "-c", binary + fix.dropFirst("connector-milter".count)])
        let refreshed = try validate()
        XCTAssertEqual(refreshed.findings.count, 0, refreshed.output)
        XCTAssertEqual(refreshed.status, 0, refreshed.output)
    }

    // MARK: - Sendmail wiring

    func testSendmailWiringIsReadFromTheCompiledCf() throws {
        let lab = try startLab(PostfixLab.Configuration(milter: .none))
        let policyPath = try lab.writeFile("connectors.yaml", contents: """
            organization:
              acceptedDomains: [contoso.com]
            connectors:
              - name: Contoso relays
                direction: inbound
                type: onPremises
                tlsSenderCertificateName: relay.contoso.com
            """)
        try lab.startDaemon(config: policyPath)
        let root = try SendmailPackages.root()
        let template = try String(contentsOfFile: LabPaths.fixtures + "/sendmail/lab.mc.in", encoding: .utf8)
        let binary = try ConnectorMilterBinary.binaryPath()
        func findings(milterLines: String) throws -> (Int32, String) {
            var mc = template
            for (key, value) in ["@SENDMAIL_DIR@": lab.directory + "/sendmail", "@HOSTNAME@": "mx-sendmail.lab.test",
                                 "@SMTP_PORT@": "2525", "@SINK_PORT@": String(lab.sinkPort), "@MILTER_LINES@": milterLines] {
                mc = mc.replacingOccurrences(of: key, with: value)
            }
            let mcPath = try lab.writeFile("validate.mc", contents: mc)
            let cfPath = lab.directory + "/validate.cf"
            try LabProcess.check(["sh", "-c", "exec m4 -D_CF_DIR_=\"$0\" \"$0/m4/cf.m4\" \"$1\" > \"$2\"",
                                  root.cfDirectory, mcPath, cfPath])
            let result = try LabProcess.run([binary, "validate", "--config", policyPath, "--mta", "sendmail",
                                             "--sendmail-cf", cfPath, "--socket", lab.milterSocket])
            return (result.status, result.output)
        }
        let good = try findings(milterLines: "INPUT_MAIL_FILTER(`connector', `S=\(lab.milterSocket), F=T, T=S:30s')dnl")
        XCTAssertEqual(good.0, 0, good.1)
        XCTAssertTrue(good.1.contains("sendmail wiring (\(lab.directory)/validate.cf): no finding"), good.1)
        let cases: [(String, String)] = [
            ("INPUT_MAIL_FILTER(`connector', `S=\(lab.milterSocket), F=R, T=S:30s')dnl", "has F=R"),
            ("MAIL_FILTER(`connector', `S=\(lab.milterSocket), F=T')dnl", "not in O InputMailFilters"),
            ("INPUT_MAIL_FILTER(`connector', `S=unix:/tmp/elsewhere.sock, F=T')dnl", "none on the daemon's socket"),
        ]
        for (lines, expected) in cases {
            let (status, output) = try findings(milterLines: lines)
            XCTAssertEqual(status, 1, output)
            XCTAssertTrue(output.contains(expected), "\(lines): \(output)")
            // The fix: the INPUT_MAIL_FILTER line it prints, in place of ours.
            let fixLine = try XCTUnwrap(output.split(separator: "\n").first { $0.contains("fix: ") && $0.contains("INPUT_MAIL_FILTER(") })
            let mcLine = String(fixLine[fixLine.range(of: "INPUT_MAIL_FILTER(")!.lowerBound...])
            let (fixedStatus, fixedOutput) = try findings(milterLines: mcLine)
            XCTAssertEqual(fixedStatus, 0, "\(mcLine): \(fixedOutput)")
        }
    }

    // MARK: - Helpers

    /// The sender lab: Postfix asks the daemon's socketmap; the receiver's CA is its
    /// smtp_tls_CAfile; one delivery per smtp(8) process.
    private func startSender(receiver: ReceiverLab, connectors: String) throws -> (PostfixLab, String) {
        var configuration = PostfixLab.Configuration()
        configuration.mainCf = ["smtp_tls_CAfile": receiver.caFile, "smtp_tls_loglevel": "1", "max_use": "1"]
        let sender = try startLab(configuration)
        let policyPath = try sender.writeFile("connectors.yaml", contents: """
            organization:
              acceptedDomains: [contoso.com]
            connectors:
              - name: Lab clients
                direction: inbound
                type: onPremises
                senderIPAddresses: [127.0.0.1]
            \(connectors)
            """)
        let maps = sender.runDirectory + "/maps.sock"
        try sender.startDaemon(config: policyPath, extraArgs: ["--maps-socket", "unix:" + maps])
        try sender.postconf(["smtp_tls_policy_maps": "socketmap:unix:\(maps):tls-policy",
                             "transport_maps": "socketmap:unix:\(maps):transport"])
        return (sender, policyPath)
    }

    private func send(_ sender: PostfixLab, to recipient: String) throws -> String {
        let transcript = try sender.swaks(SwaksOptions(from: "alice@contoso.com", to: [recipient]))
        XCTAssertEqual(transcript.exitCode, 0, transcript.text)
        return try XCTUnwrap(transcript.queueID, transcript.text)
    }

    /// The JSON document in a command's output (stderr may precede it).
    static func json(_ output: String) throws -> [String: Any] {
        guard let start = output.firstIndex(of: "{"), let end = output.lastIndex(of: "}") else {
            throw LabError("no JSON in:\n\(output)")
        }
        let object = try JSONSerialization.jsonObject(with: Data(output[start...end].utf8))
        guard let document = object as? [String: Any] else { throw LabError("not a JSON object:\n\(output)") }
        return document
    }
}
