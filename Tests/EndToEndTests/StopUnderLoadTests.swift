// A stop under steady load (issue 15): Postfix with ten senders that never pause, each
// message on its own SMTP connection (and so its own milter connection), and SIGTERM to the
// supervisor. The worker must stop accepting at once, let the sessions open at the signal
// finish, and exit within seconds, not at the 20 s grace; Postfix must lose nothing, and a
// sender that meets the stopped milter must get a 4xx (milter_default_action = tempfail),
// never a 5xx. Its own lab: the daemon does not survive the test.

import Foundation
import Glibc
import XCTest

final class StopUnderLoadTests: XCTestCase {
    /// What one sender saw over the test.
    private final class SenderLog: @unchecked Sendable {
        private let lock = NSLock()
        private var accepted: [String] = []      // recipients whose message got 250 after DATA
        private var tempfailed = 0
        private var permanent: [String] = []     // any 5xx, with its command: a defect
        private var broken: [String] = []        // connection errors from Postfix itself

        func accept(_ recipient: String) { lock.withLock { accepted.append(recipient) } }
        func tempfail() { lock.withLock { tempfailed += 1 } }
        func permanentFailure(_ what: String) { lock.withLock { permanent.append(what) } }
        func connectionFailure(_ what: String) { lock.withLock { broken.append(what) } }
        var snapshot: (accepted: [String], tempfailed: Int, permanent: [String], broken: [String]) {
            lock.withLock { (accepted, tempfailed, permanent, broken) }
        }
    }

    func test_sigtermUnderTenContinuousSessions_drainsInSecondsAndLosesNothing() throws {
        let lab = try PostfixLab.start()
        defer { lab.stop() }
        let daemon = try lab.startDaemon(policy: labPolicy)

        let senders = 10
        let log = SenderLog()
        let stop = Atomic(false)
        let group = DispatchGroup()
        for sender in 0..<senders {
            group.enter()
            Thread.detachNewThread {
                defer { group.leave() }
                var attempt = 0
                while !stop.value {
                    attempt += 1
                    let recipient = "drain-\(sender)-\(attempt)@contoso.com"
                    Self.send(to: recipient, port: lab.smtpPort, log: log)
                }
            }
        }
        defer { stop.value = true; group.wait() }

        // Steady state first: mail flows through the daemon.
        XCTAssertTrue(waitFor(timeout: 20) { log.snapshot.accepted.count >= 50 }, "no steady flow: \(log.snapshot)")
        let began = Date()
        daemon.signal(SIGTERM)
        let status = daemon.waitForExit(timeout: 30)
        let stopSeconds = Date().timeIntervalSince(began)
        // Some more load after the exit: those senders must be tempfailed, never refused.
        usleep(500_000)
        stop.value = true
        group.wait()

        let lines = lab.logLines()
        let waiting = lines.first { $0.hasPrefix("stopping: waiting up to") } ?? "stopping: no session open at the signal"
        print("stop under load: exited \(status.map(String.init) ?? "-") after \(String(format: "%.2f", stopSeconds)) s; \(waiting)")
        XCTAssertEqual(status, 0, lab.syslogDump())
        XCTAssertLessThan(stopSeconds, 5, "the drain must end with the sessions open at the signal, not at the 20 s grace")
        XCTAssertTrue(lab.syslogDump().split(separator: "\n").contains { $0.hasSuffix("]: stopped") }, lab.syslogDump())
        XCTAssertFalse(lines.contains { $0.contains("still open") }, "a session open at the signal was cut:\n\(lab.syslogDump())")
        XCTAssertFalse(lines.contains { $0.contains("accept() returned") }, "libmilter complained:\n\(lab.syslogDump())")

        let seen = log.snapshot
        print("stop under load: \(seen.accepted.count) messages accepted by Postfix, \(seen.tempfailed) attempts tempfailed")
        XCTAssertEqual(seen.permanent, [], "a sender got a permanent refusal")
        XCTAssertEqual(seen.broken, [], "Postfix itself failed a sender")
        XCTAssertGreaterThan(seen.tempfailed, 0, "senders after the stop must have met a tempfail (the milter is gone)")

        // Every message Postfix accepted reaches the sink, each exactly once.
        var delivered: [String: Int] = [:]
        _ = waitFor(timeout: 60) {
            delivered = [:]
            for message in lab.deliveries() {
                for rcpt in message.recipients where rcpt.hasPrefix("drain-") { delivered[rcpt, default: 0] += 1 }
            }
            return delivered.count >= seen.accepted.count
        }
        XCTAssertEqual(Set(delivered.keys), Set(seen.accepted), "accepted and delivered differ")
        XCTAssertEqual(delivered.values.filter { $0 != 1 }.count, 0, "delivered more than once: \(delivered.filter { $0.value != 1 })")
        XCTAssertFalse(FileManager.default.fileExists(atPath: lab.milterSocketPath), "the supervisor removes the socket")
    }

    /// While a session holds the drain open, a new SMTP client is tempfailed at once (its
    /// smtpd cannot reach the milter), and the held session still gets its message through.
    func test_duringTheDrain_newConnectionsAreRefusedAndTheOpenSessionFinishes() throws {
        let lab = try PostfixLab.start()
        defer { lab.stop() }
        let daemon = try lab.startDaemon(policy: labPolicy)
        let held = try lab.openSMTP()
        XCTAssertEqual(try held.send("EHLO client.lab.test").code, 250)
        XCTAssertEqual(try held.send("MAIL FROM:<a@example.org>").code, 250)
        daemon.signal(SIGTERM)
        _ = try lab.waitForLog(matching: "stopping: waiting up to 20 s for 1 open sessions")

        let began = Date()
        let newcomer = try lab.openSMTP()
        _ = try newcomer.send("EHLO late.lab.test")
        let mail = try newcomer.send("MAIL FROM:<late@example.org>")
        let rcpt = mail.code == 250 ? try newcomer.send("RCPT TO:<late@contoso.com>") : mail
        newcomer.quit()
        print("drain: a new client during the drain got \(rcpt) after \(String(format: "%.2f", Date().timeIntervalSince(began))) s")
        XCTAssertEqual(rcpt.code / 100, 4, "a connection during the drain must be tempfailed: \(newcomer.transcript)")
        XCTAssertTrue(daemon.isRunning, "the held session keeps the daemon draining")

        XCTAssertEqual(try held.send("RCPT TO:<held@contoso.com>").code, 250)
        let queued = try held.sendData("Subject: held across the stop\n\nHello.")
        XCTAssertEqual(queued.code, 250)
        held.quit()
        XCTAssertEqual(daemon.waitForExit(timeout: 10), 0)
        // The worker's last line may reach the lab's syslog after the worker is gone, when the
        // lab no longer knows its pid as its own: look for it in everything the lab received.
        XCTAssertTrue(lab.syslogDump().split(separator: "\n").contains { $0.hasSuffix("]: stopped") }, lab.syslogDump())
        XCTAssertEqual(try lab.waitForDeliveries(count: 1).flatMap(\.recipients).filter { $0.hasPrefix("late") }, [])
        XCTAssertTrue(lab.deliveries().contains { $0.recipients == ["held@contoso.com"] })
    }

    /// One message on one connection; every reply classified.
    private static func send(to recipient: String, port: UInt16, log: SenderLog) {
        let client: RawSMTPClient
        do {
            client = try RawSMTPClient.plain(port: port, timeout: 30)
        } catch {
            log.connectionFailure("connect: \(error)")
            return
        }
        defer { client.quit() }
        do {
            for command in ["EHLO sender.lab.test", "MAIL FROM:<bulk@example.org>", "RCPT TO:<\(recipient)>"] {
                let reply = try client.send(command)
                if reply.code / 100 == 2 { continue }
                if reply.code / 100 == 4 { log.tempfail() } else { log.permanentFailure("\(command): \(reply)") }
                return
            }
            let final = try client.sendData("Subject: stop under load\nTo: <\(recipient)>\n\nHello.")
            switch final.code / 100 {
            case 2: log.accept(recipient)
            case 4: log.tempfail()
            default: log.permanentFailure("DATA: \(final)")
            }
        } catch {
            log.connectionFailure("\(recipient): \(error)\n\(client.transcript)")
        }
    }

    /// A flag the senders poll.
    private final class Atomic<Value>: @unchecked Sendable {
        private let lock = NSLock()
        private var stored: Value
        init(_ value: Value) { stored = value }
        var value: Value {
            get { lock.withLock { stored } }
            set { lock.withLock { stored = newValue } }
        }
    }
}
