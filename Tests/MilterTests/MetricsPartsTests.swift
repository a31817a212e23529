import XCTest
import ConnectorPolicy
@testable import ConnectorDaemon

/// The pure parts of `run --metrics`: the HTTP request reader, the endpoint spec, and what the
/// instruments expose for known events (the daemon end to end is in EndToEndTests/MetricsTests).
final class MetricsPartsTests: XCTestCase {
    private func answer(_ text: String) -> MetricsRequest.Answer { MetricsRequest.answer(to: ArraySlice(Array(text.utf8))) }

    func testOnlyAWholeGetOfMetricsIsServed() {
        XCTAssertEqual(answer("GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n"), .metrics)
        XCTAssertEqual(answer("GET /metrics HTTP/1.0\n\n"), .metrics)
        XCTAssertEqual(answer("GET /metrics?name[]=up HTTP/1.1\r\n\r\n"), .metrics)
        XCTAssertEqual(answer("GET /metrics HTTP/1.1\r\nHost: x\r\n"), .incomplete)
        XCTAssertEqual(answer(""), .incomplete)
        XCTAssertEqual(answer("GET / HTTP/1.1\r\n\r\n"), .error(status: 404, reason: "Not Found", allow: nil))
        XCTAssertEqual(answer("GET /metrics/ HTTP/1.1\r\n\r\n"), .error(status: 404, reason: "Not Found", allow: nil))
        XCTAssertEqual(answer("POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n"),
                       .error(status: 405, reason: "Method Not Allowed", allow: "GET"))
        XCTAssertEqual(answer("get /metrics HTTP/1.1\r\n\r\n"), .error(status: 405, reason: "Method Not Allowed", allow: "GET"))
        for bad in ["GET /metrics\r\n\r\n", "GET  /metrics HTTP/1.1\r\n\r\n", "GET /metrics HTTP/2\r\n\r\n", "\r\n\r\n",
                    "\u{16}\u{03}\u{01}\r\n\r\n"] {
            XCTAssertEqual(answer(bad), .error(status: 400, reason: "Bad Request", allow: nil), bad.debugDescription)
        }
    }

    func testAnEndlessHeadIsRefusedOnceItPassesTheLimit() {
        let long = "GET /metrics HTTP/1.1\r\nX: " + String(repeating: "a", count: MetricsRequest.maximumLength)
        XCTAssertEqual(answer(long), .error(status: 431, reason: "Request Header Fields Too Large", allow: nil))
        XCTAssertEqual(answer(long + "\r\n\r\n"), .error(status: 431, reason: "Request Header Fields Too Large", allow: nil))
        XCTAssertEqual(MetricsRequest.answer(to: ArraySlice(Array(long.utf8.prefix(MetricsRequest.maximumLength)))), .incomplete)
    }

    func testResponseHasItsLengthAndCloses() {
        let response = String(decoding: MetricsRequest.response(status: 405, reason: "Method Not Allowed", contentType: "text/plain",
                                                                body: Array("no\n".utf8), allow: "GET"), as: UTF8.self)
        XCTAssertEqual(response, "HTTP/1.1 405 Method Not Allowed\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n"
                       + "Allow: GET\r\nConnection: close\r\n\r\nno\n")
    }

    func testTheEndpointIsInetOnlyWithAnAddress() throws {
        XCTAssertEqual(try MetricsSocket.parse("inet:9187@127.0.0.1"), .inet(port: 9187, host: "127.0.0.1"))
        XCTAssertEqual(try MetricsSocket.parse("inet6:9187@[::1]"), .inet6(port: 9187, host: "[::1]"))
        for (text, needle) in [("unix:/run/m.sock", "inet:PORT@ADDR"), ("local:/x", "inet:PORT@ADDR"), ("9187", "inet:PORT@ADDR"),
                               ("inet:9187", "name the address"), ("inet:0@127.0.0.1", "1-65535"),
                               ("inet:99999@127.0.0.1", "1-65535"), ("http://127.0.0.1:9187", "inet:PORT@ADDR")] {
            XCTAssertThrowsError(try MetricsSocket.parse(text), text) { error in
                let error = error as! DaemonError
                XCTAssertEqual(error.exit, .usage, text)
                XCTAssertTrue(error.message.contains(needle), "\(text): \(error.message)")
            }
        }
    }

    func testTheWorkerAsksTheSupervisorsCountOnlyWithMetrics() throws {
        var options = try DaemonOptions(config: "/p.yaml", socket: "unix:/m.sock", mapsSocket: nil, user: nil, group: nil,
                                        pidfile: nil, log: .syslog, foreground: false, metrics: "inet:9187@127.0.0.1")
        options.workerRestarts = 3
        XCTAssertEqual(Array(options.workerArguments.suffix(5)), ["--metrics", "inet:9187@127.0.0.1", "--worker-restarts", "3", "--worker"])
        let without = try DaemonOptions(config: "/p.yaml", socket: "unix:/m.sock", mapsSocket: nil, user: nil, group: nil,
                                         pidfile: nil, log: .syslog, foreground: false)
        XCTAssertFalse(without.workerArguments.contains("--metrics"))
    }

    // MARK: - The instruments

    private static let policy = """
        organization:
          acceptedDomains: [contoso.com]
        connectors:
          - name: Fabrikam "Bank"
            direction: inbound
            type: partner
            senderDomains: [fabrikam.com]
            requireTls: true
          - name: Tailspin trial
            direction: inbound
            type: partner
            mode: monitor
            senderDomains: [tailspin.example]
            requireTls: true
        """

    private func samples(_ metrics: WorkerMetrics) -> [String: Double] {
        var found: [String: Double] = [:]
        for line in String(decoding: metrics.exposition(), as: UTF8.self).split(separator: "\n") where !line.hasPrefix("#") {
            let space = line.lastIndex(of: " ")!
            found[String(line[..<space])] = Double(line[line.index(after: space)...])
        }
        return found
    }

    func testDecisionsAreCountedByConnectorVerdictReasonAndMode() throws {
        let set = PolicySet(try PolicyParser.parse(Self.policy, file: "t.yaml").get())
        let metrics = WorkerMetrics(workerRestarts: 2, openSessions: { 7 })
        let stranger = SessionFacts()
        let judged = [
            set.judge(session: stranger, from: EmailAddress(parsing: "a@example.org"), recipient: EmailAddress(parsing: "u@contoso.com")),
            set.judge(session: stranger, from: EmailAddress(parsing: "a@example.org"), recipient: EmailAddress(parsing: "u@contoso.com")),
            set.judge(session: stranger, from: EmailAddress(parsing: "a@example.org"), recipient: EmailAddress(parsing: "u@far.example")),
            set.judge(session: stranger, from: EmailAddress(parsing: "b@fabrikam.com"), recipient: EmailAddress(parsing: "u@contoso.com")),
            set.judge(session: stranger, from: EmailAddress(parsing: "c@tailspin.example"), recipient: EmailAddress(parsing: "u@contoso.com")),
        ]
        for decision in judged {
            metrics.judged(since: metrics.startJudging())
            metrics.decided(decision)
        }
        metrics.sessionOpened()
        metrics.policyLoaded(connectors: 2, seconds: 0.25, isReload: false)
        metrics.policyLoaded(connectors: 2, seconds: 0.5, isReload: true)
        metrics.reloadRefused()
        metrics.socketmapLookup(request: Array("transport x.example".utf8), reply: "NOTFOUND ")
        metrics.socketmapLookup(request: Array("tls-policy woodgrove.example".utf8), reply: "OK encrypt")
        metrics.socketmapLookup(request: Array("nonsense".utf8), reply: "PERM malformed request")

        let s = samples(metrics)
        XCTAssertEqual(s[#"connector_milter_decisions_total{inbound="none",verdict="accept",reason="none",mode="enforce"}"#], 2)
        XCTAssertEqual(s[#"connector_milter_decisions_total{inbound="none",verdict="reject",reason="relay-denied",mode="enforce"}"#], 1)
        // The library escapes the administrator's quotes.
        XCTAssertEqual(s[#"connector_milter_decisions_total{inbound="Fabrikam \"Bank\"",verdict="tempfail",reason="tls-required",mode="enforce"}"#], 1)
        XCTAssertEqual(s[#"connector_milter_decisions_total{inbound="Tailspin trial",verdict="accept",reason="tls-required",mode="monitor"}"#], 1)
        XCTAssertEqual(s[#"connector_milter_would_decisions_total{inbound="Tailspin trial",would="tempfail",reason="tls-required"}"#], 1)
        XCTAssertEqual(s.keys.filter { $0.hasPrefix("connector_milter_would_decisions_total") }.count, 1)
        XCTAssertEqual(s["connector_milter_judging_duration_seconds_count"], 5)
        XCTAssertEqual(s["connector_milter_sessions_total"], 1)
        XCTAssertEqual(s["connector_milter_sessions_open"], 7)
        XCTAssertEqual(s["connector_milter_worker_restarts_total"], 2)
        XCTAssertEqual(s["connector_milter_policy_generation"], 2)
        XCTAssertEqual(s["connector_milter_policy_load_duration_seconds"], 0.5)
        XCTAssertEqual(s[#"connector_milter_policy_reloads_total{result="applied"}"#], 1)
        XCTAssertEqual(s[#"connector_milter_policy_reloads_total{result="refused"}"#], 1)
        XCTAssertEqual(s[#"connector_milter_socketmap_lookups_total{map="transport",result="notfound"}"#], 1)
        XCTAssertEqual(s[#"connector_milter_socketmap_lookups_total{map="tls-policy",result="ok"}"#], 1)
        XCTAssertEqual(s[#"connector_milter_socketmap_lookups_total{map="unknown",result="perm"}"#], 1)
        // Nothing is ever labelled by a client or an address.
        XCTAssertFalse(s.keys.contains { $0.contains("@") || $0.contains("contoso") || $0.contains("example") })
    }

    /// The price of one decision on the milter's thread: the bar is "tiny" next to judging.
    func testTheCostPerDecisionIsTiny() throws {
        let set = PolicySet(try PolicyParser.parse(Self.policy, file: "t.yaml").get())
        let decision = set.judge(session: SessionFacts(), from: EmailAddress(parsing: "a@example.org"),
                                 recipient: EmailAddress(parsing: "u@contoso.com"))
        let metrics = WorkerMetrics(workerRestarts: 0, openSessions: { 0 })
        let rounds = 200_000
        let start = WorkerMetrics.monotonicNanoseconds()
        for _ in 0..<rounds {
            metrics.judged(since: metrics.startJudging())
            metrics.decided(decision)
        }
        let perDecision = Double(WorkerMetrics.monotonicNanoseconds() - start) / Double(rounds)
        print("metrics: \(Int(perDecision)) ns per decision (histogram observation + counter), debug build")
        XCTAssertLessThan(perDecision, 20_000)
    }
}
