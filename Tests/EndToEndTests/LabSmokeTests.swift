// Proof that the end-to-end lab works, without connector-milter: Postfix with STARTTLS,
// client certificates, XCLIENT and a sink; the C pass-through milter on the lab socket;
// the /dev/log collector. If these fail, the connector-milter end-to-end tests cannot pass.

import Foundation
import Glibc
import XCTest

final class LabSmokeTests: LabTestCase {
    func testPostfixAcceptsTheLabConfiguration() throws {
        // The lab starts master directly; `postfix check` is what `postfix start` would add.
        let lab = try startLab()
        print("lab started in \(String(format: "%.3f", lab.startupDuration)) s: "
              + lab.startupSteps.map { "\($0.step) \(String(format: "%.3f", $0.seconds))" }.joined(separator: ", "))
        let mark = lab.maillogLines().count
        let check = try LabProcess.run(["postfix", "-c", lab.configDirectory, "check"])
        XCTAssertEqual(check.status, 0, check.output)
        XCTAssertEqual(check.output, "")
        let complaints = lab.maillogLines().dropFirst(mark).filter { $0.contains("warning:") || $0.contains("fatal:") }
        XCTAssertEqual(complaints, [])
        let effective = try LabProcess.check(["postconf", "-c", lab.configDirectory, "-h",
                                              "smtpd_milters", "milter_protocol", "milter_default_action",
                                              "milter_connect_macros", "smtpd_tls_ask_ccert"]).output
        XCTAssertEqual(effective.split(separator: "\n"), [
            Substring(lab.milterSocket), "6", "tempfail", "j {daemon_name} {daemon_addr} v _", "yes",
        ])
    }

    func testPlainMailIsRelayedToTheSink() throws {
        let lab = try startLab(PostfixLab.Configuration.withoutConnectors(milter: .none))
        print("lab started in \(String(format: "%.2f", lab.startupDuration)) s")

        var options = SwaksOptions(from: "alice@fabrikam.com", to: ["bob@contoso.com", "carol@example.net"])
        options.headers = ["X-Lab-Test: plain"]
        let transcript = try lab.swaks(options)

        XCTAssertEqual(transcript.exitCode, 0, transcript.text)
        XCTAssertEqual(transcript.rcptReplies.map(\.code), [250, 250])
        XCTAssertEqual(transcript.mailReply?.enhancedCode, "2.1.0")
        let queueID = try XCTUnwrap(transcript.queueID, transcript.text)
        let message = try lab.waitForDelivery(queueID: queueID)
        XCTAssertEqual(message.mailFrom, "alice@fabrikam.com")
        XCTAssertEqual(message.recipients, ["bob@contoso.com", "carol@example.net"])
        XCTAssertEqual(message.header("X-Lab-Test"), "plain")
        XCTAssertEqual(lab.deliveredMessages().count, 1)
        XCTAssertTrue(lab.maillog().contains("\(queueID): client=localhost[127.0.0.1]"), lab.maillog())
    }

    func testCASignedClientCertificateIsVerified() throws {
        let lab = try startLab(PostfixLab.Configuration.withoutConnectors(milter: .none))
        var options = SwaksOptions()
        options.clientCertificate = lab.certificates.client
        let transcript = try lab.swaks(options)

        XCTAssertEqual(transcript.exitCode, 0, transcript.text)
        XCTAssertTrue(transcript.exchanges.contains { $0.verb == "RCPT" && $0.tls }, "RCPT was not sent inside TLS")
        try lab.waitForMaillog(containing: "Trusted TLS connection established from localhost[127.0.0.1]: TLSv1.3")
        let message = try lab.waitForDelivery(queueID: try XCTUnwrap(transcript.queueID))
        let received = message.headerValues("Received").joined(separator: "\n")
        XCTAssertTrue(received.contains(#"(Client CN "relay.contoso.com", Issuer "Connector Lab CA" (verified OK))"#), received)
    }

    func testClientCommonNameIsAParameter() throws {
        var configuration = PostfixLab.Configuration.withoutConnectors(milter: .none)
        configuration.clientCommonName = "mail.fabrikam.com"
        let lab = try startLab(configuration)
        let second = try lab.certificates.issueClient(commonName: "edge.contoso.net", name: "edge")
        for (certificate, name) in [(lab.certificates.client, "mail.fabrikam.com"), (second, "edge.contoso.net")] {
            var options = SwaksOptions()
            options.clientCertificate = certificate
            let transcript = try lab.swaks(options)
            XCTAssertEqual(transcript.exitCode, 0, transcript.text)
            let message = try lab.waitForDelivery(queueID: try XCTUnwrap(transcript.queueID))
            XCTAssertTrue(message.headerValues("Received").joined().contains(#"Client CN "\#(name)""#), message.raw)
        }
    }

    func testSelfSignedClientCertificateIsNotVerified() throws {
        let lab = try startLab(PostfixLab.Configuration.withoutConnectors(milter: .none))
        var options = SwaksOptions()
        options.clientCertificate = lab.certificates.selfSignedClient
        let transcript = try lab.swaks(options)

        XCTAssertEqual(transcript.exitCode, 0, transcript.text)
        try lab.waitForMaillog(containing: "Untrusted TLS connection established from localhost[127.0.0.1]")
        let message = try lab.waitForDelivery(queueID: try XCTUnwrap(transcript.queueID))
        XCTAssertTrue(message.headerValues("Received").joined().contains("(not verified)"), message.raw)
    }

    func testXclientPresentsIPv4AndIPv6ClientsAndALogin() throws {
        // XCLIENT's clients are not the host: they may send to contoso.com only.
        let lab = try startLab(PostfixLab.Configuration(milter: .none, relayControl: .stock(relayDomains: "contoso.com")))

        var v4 = SwaksOptions()
        v4.xclientAddress = "203.0.113.5"
        v4.xclientName = "mail.fabrikam.com"
        v4.xclientLogin = "alice"
        let first = try lab.swaks(v4)
        XCTAssertEqual(first.exitCode, 0, first.text)
        XCTAssertEqual(first.replies(to: "XCLIENT").first?.code, 220, first.text)
        try lab.waitForMaillog(containing:
            "\(try XCTUnwrap(first.queueID)): client=mail.fabrikam.com[203.0.113.5], sasl_method=XCLIENT, sasl_username=alice")

        var v6 = SwaksOptions()
        v6.xclientAddress = "2001:db8::1"  // sent as IPv6:2001:db8::1
        v6.xclientName = "relay.contoso.com"
        v6.clientCertificate = lab.certificates.client  // STARTTLS first, XCLIENT inside TLS
        let second = try lab.swaks(v6)
        XCTAssertEqual(second.exitCode, 0, second.text)
        try lab.waitForMaillog(containing: "\(try XCTUnwrap(second.queueID)): client=relay.contoso.com[2001:db8::1]")
        let message = try lab.waitForDelivery(queueID: try XCTUnwrap(second.queueID))
        let received = message.headerValues("Received").joined(separator: "\n")
        XCTAssertTrue(received.contains("(relay.contoso.com [IPv6:2001:db8::1])"), received)
        XCTAssertTrue(received.contains("(verified OK)"), "TLS state survives XCLIENT:\n\(received)")
    }

    func testMailRightAfterStartTLSWithoutASecondEhlo() throws {
        let lab = try startLab(PostfixLab.Configuration.withoutConnectors(milter: .none))
        let transcript = try lab.sendAfterStartTLSWithoutEHLO(
            from: "alice@contoso.com", to: ["bob@contoso.com"], certificate: lab.certificates.client)

        XCTAssertEqual(transcript.exitCode, 0, transcript.text)
        XCTAssertEqual(transcript.exchanges.first?.verb, "MAIL", "the first command after STARTTLS must be MAIL:\n\(transcript)")
        XCTAssertEqual(transcript.rcptReplies.map(\.code), [250])
        let queueID = try XCTUnwrap(transcript.queueID, transcript.text)
        try lab.waitForMaillog(containing: "ehlo=1 starttls=1 mail=1 rcpt=1 data=1 quit=1")
        let message = try lab.waitForDelivery(queueID: queueID)
        XCTAssertTrue(message.headerValues("Received").joined().contains(#"Client CN "relay.contoso.com""#), message.raw)
    }

    func testRefusedRecipientsAreReportedPerRcpt() throws {
        var configuration = PostfixLab.Configuration.withoutConnectors(milter: .none)
        configuration.mainCf["smtpd_recipient_restrictions"] =
            "check_recipient_access inline:{{refused.example = 550 5.7.1 Refused by lab}}"
        let lab = try startLab(configuration)
        let transcript = try lab.swaks(SwaksOptions(to: ["a@refused.example", "b@contoso.com"]))

        XCTAssertEqual(transcript.rcptReply(for: "a@refused.example")?.text, "550 5.7.1 <a@refused.example>: Recipient address rejected: Refused by lab")
        XCTAssertEqual(transcript.rcptReply(for: "b@contoso.com")?.code, 250)
        XCTAssertTrue(transcript.queued, "swaks goes on to DATA when one recipient is accepted:\n\(transcript)")

        // postconf + reload: the refusal moves to the other domain.
        try lab.postconf(["smtpd_recipient_restrictions": "check_recipient_access inline:{{contoso.com = 450 4.7.1 Later}}"])
        let after = try lab.swaks(SwaksOptions(to: ["b@contoso.com"]))
        XCTAssertEqual(after.rcptReplies.first?.code, 450, after.text)
        XCTAssertEqual(after.rcptReplies.first?.enhancedCode, "4.7.1")
        XCTAssertFalse(after.queued)
        XCTAssertNotEqual(after.exitCode, 0)
    }

    func testPassthroughMilterIsConsultedOnTheLabSocket() throws {
        let lab = try startLab(.withoutConnectors())  // smtpd_milters = unix:LAB/run/milter.sock
        let milter = try lab.startPassthroughMilter(addHeader: true)
        XCTAssertTrue(milter.isRunning)

        var options = SwaksOptions()
        options.clientCertificate = lab.certificates.client
        let transcript = try lab.swaks(options)
        XCTAssertEqual(transcript.exitCode, 0, transcript.text)
        let message = try lab.waitForDelivery(queueID: try XCTUnwrap(transcript.queueID))
        XCTAssertEqual(message.header("X-Passthrough-Milter"), "seen", message.raw)

        // No milter behind the socket: milter_default_action = tempfail.
        XCTAssertEqual(milter.stop(), 0, milter.output)
        let refused = try lab.swaks()
        XCTAssertNotEqual(refused.exitCode, 0)
        let firstRefusal = refused.exchanges.compactMap(\.reply).first { !$0.isPositive }
        XCTAssertEqual(firstRefusal?.text, "451 4.7.1 Service unavailable - try again later", refused.text)
    }

    func testSyslogLinesOfTheDaemonIdentAreCollected() throws {
        let lab = try startLab(PostfixLab.Configuration.withoutConnectors(milter: .none))
        let logger = try LabProcess.require("logger", package: "bsdutils")
        let line = "NOQUEUE: verdict=reject reason=relay-denied direction=incoming inbound=none rcpt=<x@example.net>"
        try LabProcess.check([logger, "-u", SyslogCollector.socketPath, "-t", "connector-milter", "-p", "mail.info", line])
        try LabProcess.check([logger, "-u", SyslogCollector.socketPath, "-t", "other", "-p", "mail.info", "verdict=ignored"])

        // logger is not a process the lab started: its lines count only when asked for.
        XCTAssertEqual(try lab.waitForLog(matching: "reason=relay-denied", fromLabProcessesOnly: false), line)
        XCTAssertEqual(try lab.waitForVerdicts(count: 1, fromLabProcessesOnly: false), [line])
        XCTAssertEqual(lab.verdictLines(), [])
        let record = try XCTUnwrap(lab.syslogRecords().first { $0.ident == "connector-milter" })
        XCTAssertEqual(record.facility, SyslogRecord.mailFacility)
        XCTAssertNotNil(record.senderPID)
        XCTAssertFalse(lab.verdictLines(fromLabProcessesOnly: false).contains("verdict=ignored"))
    }

    func testSyslog3FromAnUnprivilegedProcessReachesTheCollector() throws {
        // What the daemon does: openlog(ident, LOG_PID, LOG_MAIL) + syslog(3) after dropping
        // privileges to nobody.
        let lab = try startLab(PostfixLab.Configuration.withoutConnectors(milter: .none))
        let source = try lab.writeFile("syslog-writer.c", contents: """
            #include <syslog.h>
            #include <unistd.h>
            int main(void) {
                if (setgid(65534) != 0 || setuid(65534) != 0) return 71;
                openlog("connector-milter", LOG_PID, LOG_MAIL);
                syslog(LOG_INFO, "NOQUEUE: verdict=accept from=<a@b> note=\\"x=y\\"");
                return 0;
            }
            """)
        let binary = lab.directory + "/syslog-writer"
        let compiler = try XCTUnwrap(["gcc", "cc", "clang"].lazy.compactMap(LabProcess.which).first, "no C compiler")
        try LabProcess.check([compiler, "-o", binary, source])
        try LabProcess.check([binary])
        XCTAssertEqual(try lab.waitForVerdicts(count: 1, fromLabProcessesOnly: false), [#"NOQUEUE: verdict=accept from=<a@b> note="x=y""#])
        let record = try XCTUnwrap(lab.syslogRecords().first { $0.ident == "connector-milter" })
        XCTAssertEqual(record.facility, SyslogRecord.mailFacility)
        XCTAssertEqual(record.severity, 6)  // LOG_INFO
        XCTAssertNotNil(record.pid)
    }

    func testStartDaemonSpawnsTheSpecRunCommandAndStopsItByPID() throws {
        // A stand-in for connector-milter (which is written in parallel): it checks the
        // SPEC section 5 `run` arguments the lab passes, logs like the daemon, and serves the
        // socket with the pass-through milter.
        let lab = try startLab(.withoutConnectors())
        let passthrough = try PassthroughMilter.binaryPath()
        let standIn = try lab.writeFile("connector-milter-stand-in", contents: """
            #!/bin/bash
            set -eu
            [ "$1" = run ] || { echo "expected run, got $1" >&2; exit 64; }
            shift
            while [ $# -gt 0 ]; do
              case $1 in
                --foreground) ;;
                --config) config=$2; shift ;;
                --socket) socket=$2; shift ;;
                --log) log=$2; shift ;;
                --pidfile) pidfile=$2; shift ;;
                --user) user=$2; shift ;;
                --group) group=$2; shift ;;
                *) echo "unexpected argument $1" >&2; exit 64 ;;
              esac
              shift
            done
            [ -r "$config" ] && [ "$log" = syslog ] && [ "$user" = nobody ] || exit 78
            echo $$ > "$pidfile"
            # logger stays alive a second after sending: the collector learns the sender's process
            # group from its pid when the line arrives, which fails once the sender has exited.
            { echo "starting with $config on $socket"; sleep 1; } | logger -u /dev/log -t "connector-milter[$$]" -p mail.info
            exec \(passthrough) -g "$group" -H "${socket}"
            """)
        chmod(standIn, 0o755)
        let policy = try lab.writeFile("connectors.yaml", contents: "connectors: []\n")

        let daemon = try lab.startDaemon(config: policy, binary: standIn)
        XCTAssertTrue(daemon.isRunning)
        XCTAssertEqual(try String(contentsOfFile: lab.runDirectory + "/connector-milter.pid", encoding: .utf8),
                       "\(daemon.pid)\n")
        XCTAssertEqual(try lab.waitForLog(matching: "^starting with "), "starting with \(policy) on \(lab.milterSocket)")
        let record = try XCTUnwrap(lab.labSyslogRecords().first { $0.ident == "connector-milter" })
        XCTAssertEqual(record.pid, daemon.pid)
        XCTAssertEqual(record.senderProcessGroup, daemon.pid)

        let transcript = try lab.swaks()
        XCTAssertEqual(transcript.exitCode, 0, transcript.text)
        XCTAssertEqual(try lab.waitForDelivery(queueID: try XCTUnwrap(transcript.queueID)).header("X-Passthrough-Milter"), "seen")

        let began = Date()
        XCTAssertEqual(lab.stopDaemon(), 0, daemon.output)
        print("libmilter stopped \(String(format: "%.1f", Date().timeIntervalSince(began))) s after SIGTERM")
        XCTAssertFalse(daemon.isRunning)
    }

    func testStartDaemonReportsADaemonThatExitsAtOnce() throws {
        let lab = try startLab(.withoutConnectors())
        let failing = try lab.writeFile("failing-daemon", contents: "#!/bin/sh\necho 'policy.yaml:3:5: unknown key' >&2\nexit 78\n")
        chmod(failing, 0o755)
        XCTAssertThrowsError(try lab.startDaemon(config: "/nonexistent.yaml", binary: failing)) { error in
            let text = String(describing: error)
            XCTAssertTrue(text.contains("exited 78"), text)
            XCTAssertTrue(text.contains("policy.yaml:3:5: unknown key"), text)
        }
    }
}
