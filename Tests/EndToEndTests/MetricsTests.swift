// `run --metrics` (issue 15, docs/metrics.md) with the real daemon behind a real Postfix,
// scraped with curl: a known sequence of sessions, reloads and socketmap lookups shows exactly
// those counts; a worker killed with -9 comes back with its counters reset and the restart
// counted; a taken port or a bad endpoint stops the start with a clear message.

import Foundation
import Glibc
import XCTest

final class MetricsTests: LabTestCase {
    private static let policy = """
        organization:
          acceptedDomains: [contoso.com]
        connectors:
          - name: Fabrikam Bank
            direction: inbound
            type: partner
            senderDomains: [fabrikam.com]
            requireTls: true
          - name: To Woodgrove
            direction: outbound
            type: partner
            recipientDomains: [woodgrove.example]
            tlsSettings: encryptionOnly

        """

    /// The same connectors, every one judged in monitor mode.
    private static let monitorPolicy = policy.replacingOccurrences(
        of: "connectors:\n", with: "settings:\n  mode: monitor\nconnectors:\n")

    private struct Endpoint {
        let port: UInt16
        var url: String { "http://127.0.0.1:\(port)/metrics" }
    }

    private func startDaemon(_ lab: PostfixLab) throws -> (Endpoint, String) {
        let endpoint = Endpoint(port: try LabProcess.freeTCPPort())
        let policyPath = try lab.writeFile("connectors.yaml", contents: Self.policy)
        try lab.startDaemon(config: policyPath, extraArgs: [
            "--maps-socket", "unix:" + mapsSocket(lab), "--metrics", "inet:\(endpoint.port)@127.0.0.1",
        ])
        XCTAssertTrue(LabProcess.waitUntil(timeout: 10) { LabProcess.isListening(port: endpoint.port) },
                      "nothing listens on the metrics port")
        return (endpoint, policyPath)
    }

    private func mapsSocket(_ lab: PostfixLab) -> String { lab.runDirectory + "/maps.sock" }

    // MARK: - Scraping

    /// Every sample of one scrape, keyed as exposed: `name{labels}` or `name`.
    private func scrape(_ endpoint: Endpoint, file: StaticString = #filePath, line: UInt = #line) throws -> [String: Double] {
        let curl = try LabProcess.require("curl", package: "curl")
        let result = try LabProcess.run([curl, "-sS", "--max-time", "5", "-D", "-", endpoint.url])
        // Thrown, not asserted: a caller waiting for a (new) worker to listen polls through it.
        guard result.status == 0 else { throw ScrapeFailed(description: "curl exited \(result.status): \(result.output)") }
        let parts = result.output.components(separatedBy: "\r\n\r\n")
        XCTAssertTrue(parts[0].hasPrefix("HTTP/1.1 200 OK"), result.output, file: file, line: line)
        XCTAssertTrue(parts[0].contains("Content-Type: text/plain; version=0.0.4"), parts[0], file: file, line: line)
        var samples: [String: Double] = [:]
        for sample in parts.dropFirst().joined().split(separator: "\n") where !sample.hasPrefix("#") {
            guard let space = sample.lastIndex(of: " "), let value = Double(sample[sample.index(after: space)...]) else {
                XCTFail("not a sample: \(sample)", file: file, line: line)
                continue
            }
            samples[String(sample[..<space])] = value
        }
        return samples
    }

    private struct ScrapeFailed: Error, CustomStringConvertible {
        let description: String
    }

    private static func decisions(_ inbound: String, _ verdict: String, _ reason: String, _ mode: String) -> String {
        #"connector_milter_decisions_total{inbound="\#(inbound)",verdict="\#(verdict)",reason="\#(reason)",mode="\#(mode)"}"#
    }

    private static func lookups(_ map: String, _ result: String) -> String {
        #"connector_milter_socketmap_lookups_total{map="\#(map)",result="\#(result)"}"#
    }

    /// What changed between two scrapes, for every series either has (counters and gauges).
    private func deltas(_ before: [String: Double], _ after: [String: Double]) -> [String: Double] {
        var changed: [String: Double] = [:]
        for key in Set(before.keys).union(after.keys) {
            let delta = (after[key] ?? 0) - (before[key] ?? 0)
            if delta != 0 { changed[key] = delta }
        }
        return changed
    }

    private func postmap(_ lab: PostfixLab, _ key: String, map: String) throws -> Int32 {
        let postmap = try LabProcess.require("postmap", package: "postfix")
        return try LabProcess.run([postmap, "-c", lab.configDirectory, "-q", key,
                                   "socketmap:unix:\(mapsSocket(lab)):\(map)"]).status
    }

    private func waitForOpenSessions(_ endpoint: Endpoint, _ count: Double) throws -> [String: Double] {
        var samples: [String: Double] = [:]
        _ = try LabProcess.waitUntil(timeout: 10, interval: 0.2) {
            samples = try scrape(endpoint)
            return samples["connector_milter_sessions_open"] == count
        }
        return samples
    }

    // MARK: - Tests

    func test_scrapeAfterAKnownSequence_showsExactlyThoseCounts() throws {
        let lab = try startLab()
        let (endpoint, policyPath) = try startDaemon(lab)
        let daemon = try XCTUnwrap(lab.daemon)
        let before = try scrape(endpoint)
        XCTAssertEqual(before["connector_milter_policy_generation"], 1)
        XCTAssertEqual(before["connector_milter_policy_connectors"], 2)
        XCTAssertEqual(before["connector_milter_worker_restarts_total"], 0)
        XCTAssertEqual(before[#"connector_milter_policy_reloads_total{result="refused"}"#], 0)
        XCTAssertGreaterThan(before["connector_milter_policy_loaded_timestamp_seconds"] ?? 0, Date().timeIntervalSince1970 - 120)

        // Three sessions, one recipient each, enforced: accepted, refused, tempfailed.
        let accepted = try lab.swaks(SwaksOptions(from: "someone@example.org", to: ["user@contoso.com"]))
        XCTAssertNotNil(accepted.queueID, accepted.text)
        let relay = try lab.swaks(SwaksOptions(from: "someone@example.org", to: ["x@far.example"]))
        XCTAssertEqual(relay.rcptReply(for: "x@far.example")?.text, "550 5.7.64 Relay access denied", relay.text)
        let cleartext = try lab.swaks(SwaksOptions(from: "ap@fabrikam.com", to: ["user@contoso.com"]))
        XCTAssertEqual(cleartext.rcptReply(for: "user@contoso.com")?.text, "454 4.7.0 TLS required", cleartext.text)
        _ = try lab.waitForVerdicts(count: 3)

        // A good reload into monitor mode, then the refused message again: accepted, would reject.
        try Self.monitorPolicy.write(toFile: policyPath, atomically: true, encoding: .utf8)
        daemon.signal(SIGHUP)
        _ = try lab.waitForLog(matching: "policy reloaded from")
        let monitored = try lab.swaks(SwaksOptions(from: "someone@example.org", to: ["y@far.example"]))
        XCTAssertNotNil(monitored.queueID, monitored.text)
        _ = try lab.waitForVerdicts(count: 4)

        // A broken reload: refused, the monitor policy stays.
        try "connectors: [".write(toFile: policyPath, atomically: true, encoding: .utf8)
        daemon.signal(SIGHUP)
        _ = try lab.waitForLog(matching: "policy reload from .* failed")

        // Socketmap lookups through Postfix's own client: found, not found, an unknown map.
        XCTAssertEqual(try postmap(lab, "woodgrove.example", map: "tls-policy"), 0)
        XCTAssertEqual(try postmap(lab, "nowhere.example", map: "transport"), 1)
        XCTAssertNotEqual(try postmap(lab, "nowhere.example", map: "no-such-map"), 0)

        let after = try waitForOpenSessions(endpoint, 0)
        let changed = deltas(before, after).filter { !$0.key.contains("timestamp") && !$0.key.contains("load_duration") }
        let judging = "connector_milter_judging_duration_seconds"
        let expected: [String: Double] = [
            Self.decisions("none", "accept", "none", "enforce"): 1,
            Self.decisions("none", "reject", "relay-denied", "enforce"): 1,
            Self.decisions("Fabrikam Bank", "tempfail", "tls-required", "enforce"): 1,
            Self.decisions("none", "accept", "relay-denied", "monitor"): 1,
            #"connector_milter_would_decisions_total{inbound="none",would="reject",reason="relay-denied"}"#: 1,
            "connector_milter_sessions_total": 4,
            "\(judging)_count": 4,
            #"\#(judging)_bucket{le="+Inf"}"#: 4,
            #"connector_milter_policy_reloads_total{result="applied"}"#: 1,
            #"connector_milter_policy_reloads_total{result="refused"}"#: 1,
            "connector_milter_policy_generation": 1,
            Self.lookups("tls-policy", "ok"): 1,
            Self.lookups("transport", "notfound"): 1,
            Self.lookups("unknown", "perm"): 1,
        ]
        // The judging sum and its finite buckets depend on the machine; Postfix's own
        // relay_domains lookups (relay control, once per recipient it classifies, minus what its
        // smtpd caches) are not the test's to count. The rest is exact.
        let exact = changed.filter { !$0.key.hasPrefix(judging + "_sum") && !($0.key.hasPrefix(judging + "_bucket") && !$0.key.contains("+Inf"))
            && !$0.key.contains(#"map="relay-domains""#) }
        XCTAssertEqual(exact, expected, "after:\n\(after.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: "\n"))")
        XCTAssertGreaterThan(changed["\(judging)_sum"] ?? 0, 0)
        XCTAssertEqual(after["connector_milter_sessions_open"], 0)
    }

    func test_workerKilled_restartIsCountedAndTheWorkersCountersReset() throws {
        let lab = try startLab()
        let (endpoint, _) = try startDaemon(lab)
        let supervisor = try XCTUnwrap(lab.daemon)
        let sent = try lab.swaks(SwaksOptions(from: "someone@example.org", to: ["user@contoso.com"]))
        XCTAssertNotNil(sent.queueID, sent.text)
        _ = try lab.waitForVerdicts(count: 1)
        let before = try waitForOpenSessions(endpoint, 0)
        XCTAssertEqual(before["connector_milter_sessions_total"], 1)
        XCTAssertEqual(before[Self.decisions("none", "accept", "none", "enforce")], 1)
        XCTAssertEqual(before["connector_milter_worker_restarts_total"], 0)

        let worker = try XCTUnwrap(ProcessInfoReader.children(of: supervisor.pid).first)
        kill(worker, SIGKILL)
        var after: [String: Double] = [:]
        XCTAssertTrue(LabProcess.waitUntil(timeout: 15, interval: 0.2) {
            guard let next = ProcessInfoReader.children(of: supervisor.pid).first, next != worker,
                  let samples = try? scrape(endpoint) else { return false }
            after = samples
            return true
        }, "no new worker served the metrics: \(lab.syslogDump())")
        XCTAssertEqual(after["connector_milter_worker_restarts_total"], 1)
        XCTAssertEqual(after["connector_milter_sessions_total"], 0, "a new worker starts its counters at 0")
        XCTAssertNil(after[Self.decisions("none", "accept", "none", "enforce")])
        XCTAssertEqual(after["connector_milter_policy_generation"], 1)
        XCTAssertEqual(after["connector_milter_judging_duration_seconds_count"], 0)
        XCTAssertGreaterThan(after["connector_milter_worker_start_time_seconds"] ?? 0,
                             before["connector_milter_worker_start_time_seconds"] ?? .infinity)

        // And the new worker counts from there.
        let again = try lab.swaks(SwaksOptions(from: "someone@example.org", to: ["user@contoso.com"]))
        XCTAssertNotNil(again.queueID, again.text)
        _ = try lab.waitForVerdicts(count: 2)
        let last = try waitForOpenSessions(endpoint, 0)
        XCTAssertEqual(last[Self.decisions("none", "accept", "none", "enforce")], 1)
        XCTAssertEqual(last["connector_milter_worker_restarts_total"], 1)
    }

    func test_onlyGetMetricsIsServed() throws {
        let lab = try startLab()
        let (endpoint, _) = try startDaemon(lab)
        let curl = try LabProcess.require("curl", package: "curl")
        func status(_ arguments: [String]) throws -> String {
            try LabProcess.run([curl, "-sS", "--max-time", "5", "-o", "/dev/null", "-w", "%{http_code}"] + arguments).output
        }
        XCTAssertEqual(try status(["http://127.0.0.1:\(endpoint.port)/"]), "404")
        XCTAssertEqual(try status(["http://127.0.0.1:\(endpoint.port)/metricsx"]), "404")
        XCTAssertEqual(try status(["-X", "POST", "-d", "x", endpoint.url]), "405")
        XCTAssertEqual(try status(["-H", "X-Big: " + String(repeating: "a", count: 9000), endpoint.url]), "431")
        XCTAssertEqual(try status([endpoint.url + "?name[]=x"]), "200")
        XCTAssertTrue(lab.daemon?.isRunning ?? false)
    }

    func test_metricsPortInUseOrBadEndpoint_failsWithAClearMessage() throws {
        let lab = try startLab()
        let policyPath = try lab.writeFile("connectors.yaml", contents: Self.policy)
        let binary = try ConnectorMilterBinary.binaryPath()
        func run(_ metrics: String) throws -> CommandResult {
            try LabProcess.run([binary, "run", "--foreground", "--log", "stderr", "--config", policyPath,
                                "--socket", lab.milterSocket, "--user", "nobody", "--group", "postfix",
                                "--metrics", metrics], timeout: 20)
        }
        // Someone else holds the port.
        let holder = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(holder) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(holder, $0, length) == 0 && listen(holder, 1) == 0 && getsockname(holder, $0, &length) == 0
            }
        }
        XCTAssertTrue(bound)
        let port = UInt16(bigEndian: address.sin_port)
        let taken = try run("inet:\(port)@127.0.0.1")
        XCTAssertEqual(taken.status, 73, taken.output)
        XCTAssertTrue(taken.output.contains("cannot listen on the metrics socket inet:\(port)@127.0.0.1: the port is in use"),
                      taken.output)
        XCTAssertFalse(FileManager.default.fileExists(atPath: lab.milterSocketPath), "a failed start leaves no socket")

        let unix = try run("unix:/tmp/metrics.sock")
        XCTAssertEqual(unix.status, 64, unix.output)
        XCTAssertTrue(unix.output.contains("inet:PORT@ADDR"), unix.output)
        let hostless = try run("inet:9187")
        XCTAssertEqual(hostless.status, 64, hostless.output)
        XCTAssertTrue(hostless.output.contains("name the address to listen on"), hostless.output)
    }
}
