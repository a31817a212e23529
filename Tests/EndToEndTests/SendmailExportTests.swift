// `connector-milter export sendmail` checked by Sendmail 8.17 itself (the SendmailLab's
// unpacked Debian packages): the exported access map and mailertable are built with the lab's
// makemap, the sendmail.mc.snippet goes into the lab's .mc, and then
// - address-test mode (`sendmail -bt`) shows that Sendmail reads every entry as meant: the
//   map values, the mailer and host list ruleset 0 resolves to, and what tls_rcpt decides
//   for a given {verify}/{cn_subject};
// - a real Sendmail delivers a message routed by the exported mailertable through the
//   exported esmtpPORT mailer to the lab's smtp-sink, and defers (keeps queued) a message
//   whose TLS_Rcpt: requirement the sink (no STARTTLS) cannot meet.
// No milter takes part. Everything listens on 127.0.0.1; every process is stopped by PID.

import Foundation
import Glibc
import XCTest
@testable import ConnectorReview
import ConnectorPolicy

final class SendmailExportTests: XCTestCase {
    /// Exports `policy` with the real command into `directory`, builds both maps with the
    /// lab's makemap (`-C cf`) and returns the .mc lines to use instead of the milter lines:
    /// the snippet, with the map paths pointed at `directory`.
    private func export(_ policy: String, into directory: String, lab: SendmailLab) throws -> String {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let policyPath = directory + "/policy.yaml"
        try policy.write(toFile: policyPath, atomically: true, encoding: .utf8)
        let exported = try LabProcess.run([try ConnectorMilterBinary.binaryPath(), "export", "sendmail", "--config", policyPath,
                                           "--output", directory], timeout: 30)
        XCTAssertEqual(exported.status, 0, exported.output)
        for map in ["access", "mailertable"] {
            let result = try LabProcess.run(["sh", "-c", "exec \"$0\" -C \"$1\" hash \"$2\" < \"$2\"",
                                             lab.root.path + "/usr/sbin/makemap", lab.cfPath, directory + "/" + map],
                                            environment: lab.environment, timeout: 30)
            XCTAssertEqual(result.status, 0, "makemap \(map):\n\(result.output)\n\((try? String(contentsOfFile: directory + "/" + map, encoding: .utf8)) ?? "")")
        }
        let snippet = try String(contentsOfFile: directory + "/sendmail.mc.snippet", encoding: .utf8)
        XCTAssertTrue(snippet.contains("FEATURE(`access_db')dnl"), snippet)
        XCTAssertTrue(snippet.contains("FEATURE(`mailertable')dnl"), snippet)
        return snippet
            .replacingOccurrences(of: "FEATURE(`access_db')dnl", with: "FEATURE(`access_db', `hash -o \(directory)/access')dnl")
            .replacingOccurrences(of: "FEATURE(`mailertable')dnl", with: "FEATURE(`mailertable', `hash -o \(directory)/mailertable')dnl")
            .replacingOccurrences(of: "/etc/mail/relay-domains", with: directory + "/relay-domains")
            // The lab's CA, not the system's, is the one its certificates come from.
            .split(separator: "\n").filter { !$0.contains("confCACERT") }.joined(separator: "\n")
    }

    /// Runs `sendmail -bt` on `cf` with `input` and returns its output.
    private func addressTest(_ lab: SendmailLab, cf: String, _ input: [String]) throws -> String {
        let result = try LabProcess.run(lab.command(["-bt"], cf: cf), stdin: input.joined(separator: "\n") + "\n",
                                        environment: lab.environment, timeout: 30)
        XCTAssertEqual(result.status, 0, result.output)
        XCTAssertFalse(result.output.contains(".cf: line "), result.output)
        return result.output
    }

    /// Relay control from `export sendmail` (no promiscuous_relay): what check_rcpt decides for
    /// the organization's addresses and certificate names, strangers and the accepted domains.
    func test_exportedRelayControlIsSendmailsOwn() throws {
        let postfix = try PostfixLab.start()
        var keep = true
        defer { postfix.stop(removeDirectory: !keep) }
        let policy = """
            organization:
              acceptedDomains: [contoso.com, "*.contoso.net"]
            connectors:
              - name: Contoso on-premises
                direction: inbound
                type: onPremises
                senderIPAddresses: [192.0.2.0/24, 198.51.100.128/25, "2001:db8:25::/48"]
              - name: Contoso relay by certificate
                direction: inbound
                type: onPremises
                tlsSenderCertificateName: "*.contoso.com"
              - name: Branch relay
                direction: inbound
                type: onPremises
                tlsSenderCertificateName: relay.branch.example
            """
        let sendmail = try SendmailLab.start(beside: postfix, milterLines: "dnl no milter")
        defer { sendmail.stop() }
        let directory = sendmail.directory + "/relay"
        let lines = try export(policy, into: directory, lab: sendmail)
        let mc = try sendmail.makeMc(milterLines: lines)
        XCTAssertTrue(mc.contains("FEATURE(`promiscuous_relay')dnl"), "the lab template changed")
        let cf = sendmail.directory + "/relay.cf"
        try sendmail.buildCf(mc: mc.replacingOccurrences(of: "FEATURE(`promiscuous_relay')dnl", with: ""),
                             mcPath: sendmail.directory + "/relay.mc", cfPath: cf)
        // (client address, {verify}, {cn_subject}, recipient) -> relayed?
        let cases: [(String, String, String, String, Bool)] = [
            ("192.0.2.10", "NONE", "", "partner@example.net", true),
            ("198.51.100.200", "NONE", "", "partner@example.net", true),
            ("198.51.100.20", "NONE", "", "partner@example.net", false),
            ("IPv6:2001:db8:25:0:0:0:0:10", "NONE", "", "partner@example.net", true),
            ("198.18.0.9", "NONE", "", "partner@example.net", false),
            ("198.18.0.9", "NONE", "", "user@contoso.com", true),
            ("198.18.0.9", "NONE", "", "user@deep.sub.contoso.net", true),
            ("198.18.0.9", "NONE", "", "user@contoso.net", true),
            ("198.18.0.9", "OK", "relay.contoso.com", "partner@example.net", true),
            ("198.18.0.9", "OK", "a.b.contoso.com", "partner@example.net", true),
            ("198.18.0.9", "OK", "RELAY.BRANCH.EXAMPLE", "partner@example.net", true),
            ("198.18.0.9", "FAIL", "relay.contoso.com", "partner@example.net", false),
            ("198.18.0.9", "OK", "relay.contoso.com.evil.example", "partner@example.net", false),
            ("198.18.0.9", "OK", "evil+22+20cert=+22relay.contoso.com", "partner@example.net", false),
            ("198.18.0.9", "OK", "other.branch.example", "partner@example.net", false),
        ]
        var input: [String] = []
        for (address, verify, name, recipient, _) in cases {
            input += [".D{client_addr}" + address, ".D{verify}" + verify, ".D{cn_subject}" + name, "check_rcpt <\(recipient)>"]
        }
        let output = try addressTest(sendmail, cf: cf, input)
        let answers = output.split(separator: "\n").filter { $0.hasPrefix("check_rcpt ") && $0.contains("returns:") }.map(String.init)
        print(answers.joined(separator: "\n"))
        XCTAssertEqual(answers.count, cases.count, output)
        for (answer, c) in zip(answers, cases) {
            let denied = answer.contains("$# error") && answer.contains("Relaying denied")
            XCTAssertEqual(!denied, c.4, "\(c): \(answer)")
        }
        keep = false
    }

    func test_exportedTablesAreReadBySendmailAsMeant() throws {
        let began = Date()
        let postfix = try PostfixLab.start()
        var keep = true
        defer { postfix.stop(removeDirectory: !keep) }
        // 1. Address-test mode on the richer policy: every syntax the export writes.
        let policy = """
            organization:
              acceptedDomains: [contoso.com, "*.contoso.net"]
            connectors:
              - name: To Fabrikam Bank
                direction: outbound
                type: partner
                recipientDomains: [fabrikam.com]
                smartHosts: ["[192.0.2.10]", "[192.0.2.11]"]
                tlsSettings: domainValidation
                tlsDomain: mx.fabrikam.com
              - name: Tailspin
                direction: outbound
                type: partner
                recipientDomains: ["*.tailspin.example"]
                smartHosts: ["[2001:db8::25]:2525", "[192.0.2.26]:2525"]
                tlsSettings: encryptionOnly
              - name: Woodgrove
                direction: outbound
                type: partner
                recipientDomains: [woodgrove.example]
                tlsSettings: certificateValidation
              - name: Tailspin sales, by MX without TLS
                direction: outbound
                type: partner
                recipientDomains: ["*.sales.tailspin.example"]
              - name: Direct, by MX without TLS
                direction: outbound
                type: partner
                recipientDomains: [direct.example]
              - name: Everything else
                direction: outbound
                type: partner
                recipientDomains: ["*"]
                smartHosts: ["[192.0.2.99]"]
                tlsSettings: encryptionOnly
            """
        let sendmail = try SendmailLab.start(beside: postfix, milterLines: "dnl no milter")
        defer { sendmail.stop() }
        let mapsDirectory = sendmail.directory + "/export1"
        let lines = try export(policy, into: mapsDirectory, lab: sendmail)
        let cf = sendmail.directory + "/export1.cf"
        try sendmail.buildCf(mc: try sendmail.makeMc(milterLines: lines), mcPath: sendmail.directory + "/export1.mc", cfPath: cf)
        let output = try addressTest(sendmail, cf: cf, [
            "/map access TLS_Rcpt:fabrikam.com",
            "/map access TLS_Rcpt:tailspin.example",
            "/map access TLS_Rcpt:woodgrove.example",
            "/map access TLS_Rcpt:",
            "/map access TLS_Srv:192.0.2.10",
            "/map access TLS_Srv:IPv6:2001:db8::25",
            "/map mailertable fabrikam.com",
            "/map mailertable .tailspin.example",
            "/map mailertable .",
            "3,0 user@fabrikam.com",
            "3,0 user@a.tailspin.example",
            "3,0 user@elsewhere.example",
            "3,0 user@sales.tailspin.example",
            "3,0 user@b.a.sales.tailspin.example",
            "3,0 user@direct.example",
            ".D{verify}OK",
            ".D{cn_subject}mx.fabrikam.com",
            "tls_rcpt user@fabrikam.com",
            ".D{cn_subject}mx.evil.example",
            "tls_rcpt user@fabrikam.com",
            ".D{verify}NONE",
            "tls_rcpt user@a.tailspin.example",
            "tls_rcpt user@woodgrove.example",
            "tls_rcpt user@elsewhere.example",
            "tls_rcpt user@sales.tailspin.example",
            "tls_rcpt user@b.a.sales.tailspin.example",
            "tls_rcpt user@direct.example",
        ])
        let text = output.replacingOccurrences(of: "\t", with: " ")
        for expected in [
            "map_lookup: access (TLS_Rcpt:fabrikam.com) returns VERIFY+CN:mx.fabrikam.com",
            "map_lookup: access (TLS_Rcpt:tailspin.example) returns ENCR:128",
            "map_lookup: access (TLS_Rcpt:woodgrove.example) returns VERIFY",
            "map_lookup: access (TLS_Rcpt:) returns ENCR:128",
            "map_lookup: access (TLS_Srv:192.0.2.10) returns VERIFY+CN:mx.fabrikam.com",
            "map_lookup: access (TLS_Srv:IPv6:2001:db8::25) returns ENCR:128",
            "map_lookup: mailertable (fabrikam.com) returns esmtp:[192.0.2.10]:[192.0.2.11]",
            "map_lookup: mailertable (.tailspin.example) returns esmtp2525:[IPv6:2001:db8::25]:[192.0.2.26]",
            "map_lookup: mailertable (.) returns esmtp:[192.0.2.99]",
            "$# esmtp $@ [ 192 . 0 . 2 . 10 ] : [ 192 . 0 . 2 . 11 ] $: user < @ fabrikam . com . >",
            "$# esmtp2525 $@ [ IPv6 : 2001 : db8 : : 25 ] : [ 192 . 0 . 2 . 26 ] $: user < @ a . tailspin . example . >",
            "$# esmtp $@ [ 192 . 0 . 2 . 99 ] $: user < @ elsewhere . example . >",
            // No smart hosts under a routed parent: esmtp:%0 / esmtp:%1%0, the domain's own MX.
            "$# esmtp $@ sales . tailspin . example $: user < @ sales . tailspin . example . >",
            "$# esmtp $@ b . a . sales . tailspin . example $: user < @ b . a . sales . tailspin . example . >",
            "$# esmtp $@ direct . example $: user < @ direct . example . >",
        ] {
            XCTAssertTrue(text.contains(expected), "missing \"\(expected)\" in:\n\(text)")
        }
        // tls_rcpt answers, in order: OK, CN mismatch, three refusals of a clear connection, ...
        let tlsAnswers = text.split(separator: "\n").filter { $0.hasPrefix("tls_rcpt ") && $0.contains("returns:") }
            .map { String($0) }
        XCTAssertEqual(tlsAnswers.count, 8, text)
        if tlsAnswers.count == 8 {
            XCTAssertTrue(tlsAnswers[0].hasSuffix("returns: OK"), tlsAnswers[0])
            XCTAssertTrue(tlsAnswers[1].contains("$# error") && tlsAnswers[1].contains("does not match"), tlsAnswers[1])
            // ENCR:128 without TLS: 0 bits; VERIFY without TLS: no STARTTLS; "*" is TLS_Rcpt:'s.
            XCTAssertTrue(tlsAnswers[2].contains("$# error") && tlsAnswers[2].contains("encryption too weak \" 0 \" less than \" 128"), tlsAnswers[2])
            XCTAssertTrue(tlsAnswers[3].contains("$# error") && tlsAnswers[3].contains("other side does not support STARTTLS"), tlsAnswers[3])
            XCTAssertTrue(tlsAnswers[4].contains("$# error") && tlsAnswers[4].contains("encryption too weak \" 0 \" less than \" 128"), tlsAnswers[4])
            // TLS_Rcpt:sales.tailspin.example OK overrides tailspin.example's ENCR:128 for the
            // domain and its subdomains; direct.example's subdomains are "*"'s, so it inherits (a note).
            XCTAssertTrue(tlsAnswers[5].hasSuffix("returns: OK"), tlsAnswers[5])
            XCTAssertTrue(tlsAnswers[6].hasSuffix("returns: OK"), tlsAnswers[6])
            XCTAssertTrue(tlsAnswers[7].contains("encryption too weak"), tlsAnswers[7])
        }

        // 2. Real deliveries with a second policy: fabrikam.com through the exported
        // esmtpPORT mailer to the sink; tailspin.example needs TLS (TLS_Rcpt:), which the
        // sink cannot give: it goes the lab's SMART_HOST way to the same sink and must stay queued.
        let deliveryPolicy = """
            organization:
              acceptedDomains: [contoso.com]
            connectors:
              - name: To Fabrikam through the sink
                direction: outbound
                type: partner
                recipientDomains: [fabrikam.com]
                smartHosts: ["[127.0.0.1]:\(postfix.sinkPort)"]
              - name: A host list, the first one down
                direction: outbound
                type: partner
                recipientDomains: [list.example]
                smartHosts: ["[::1]:\(postfix.sinkPort)", "[127.0.0.1]:\(postfix.sinkPort)"]
              - name: Tailspin needs TLS
                direction: outbound
                type: partner
                recipientDomains: [tailspin.example]
                tlsSettings: encryptionOnly
            """
        sendmail.stop()
        let deliveryLines = try export(deliveryPolicy, into: sendmail.directory + "/export2", lab: sendmail)
        let delivering = try SendmailLab.start(beside: postfix, milterLines: deliveryLines)
        defer { delivering.stop() }
        let mc = try String(contentsOfFile: delivering.mcPath, encoding: .utf8)
        XCTAssertTrue(mc.contains("Mesmtp\(postfix.sinkPort),"), mc)

        let routed = try delivering.swaks(SwaksOptions(from: "a@example.org", to: ["user@fabrikam.com"]))
        let routedID = try XCTUnwrap(routed.sendmailQueueID, routed.text)
        let message = try delivering.waitForDelivery(queueID: routedID)
        XCTAssertTrue(message.raw.contains("user@fabrikam.com"), message.raw)
        try delivering.waitForLog(matching: "^\(routedID): to=<user@fabrikam.com>.*mailer=esmtp\(postfix.sinkPort), .*stat=Sent")

        // esmtpPORT:[IPv6:::1]:[127.0.0.1]: nothing listens on [::1], the next host takes it.
        let listed = try delivering.swaks(SwaksOptions(from: "a@example.org", to: ["user@list.example"]))
        let listedID = try XCTUnwrap(listed.sendmailQueueID, listed.text)
        _ = try delivering.waitForDelivery(queueID: listedID)
        try delivering.waitForLog(matching: "^\(listedID): to=<user@list.example>.*mailer=esmtp\(postfix.sinkPort), "
                                  + ".*relay=\\[127.0.0.1\\].*stat=Sent")

        let strict = try delivering.swaks(SwaksOptions(from: "a@example.org", to: ["user@tailspin.example"]))
        let strictID = try XCTUnwrap(strict.sendmailQueueID, strict.text)
        try delivering.waitForLog(matching: "^\(strictID): ruleset=tls_rcpt, arg1=user@tailspin.example, .*"
                                  + "reject=454 4.7.0 encryption too weak 0 less than 128", timeout: 15)
        try delivering.waitForLog(matching: "^\(strictID): to=<user@tailspin.example>.*stat=Deferred", timeout: 15)
        XCTAssertFalse(delivering.deliveries().contains { $0.sendmailQueueID == strictID }, "sent in clear")
        let queue = try LabProcess.run(delivering.command(["-bp"]), environment: delivering.environment, timeout: 30)
        XCTAssertTrue(queue.output.contains(strictID) && queue.output.contains("<user@tailspin.example>"), queue.output)
        XCTAssertFalse(queue.output.contains(routedID), queue.output)

        keep = (testRun?.totalFailureCount ?? 0) > 0
        if keep { print("lab directory kept: \(postfix.directory)") }
        print("Sendmail export checked in " + String(format: "%.1f s", Date().timeIntervalSince(began)))
    }
}
