import XCTest
import ConnectorPolicy
@testable import ConnectorDaemon
#if canImport(Glibc)
import Glibc
#endif

/// `make bench-maps`: socketmap lookups per second over a real unix socket, one client asking
/// one question at a time as a Postfix smtp(8) process does, against the server thread the
/// daemon runs. In `make test` it runs small (a few thousand lookups, checking that every
/// answer over the socket is the one the maps give); CONNECTOR_BENCH=1 makes it the benchmark.
/// It prints figures and asserts none: speed is measured, not asserted.
final class MapsServerBenchmark: XCTestCase {
    func testLookupLatency() throws {
        let full = ProcessInfo.processInfo.environment["CONNECTOR_BENCH"] == "1"
        let rounds = full ? 100_000 : 2_000
        print(String(format: "baseline: a bare unix-socket round trip between two threads: %.1f µs",
                     try echoRoundTrip(rounds: rounds) * 1e6))
        for connectors in full ? [10, 10_000] : [10, 500] {
            let (perLookup, answering, lookups) = try measure(connectors: connectors, lookups: rounds)
            print(String(format: "maps socket: %5d outbound connectors, %d lookups: %.1f µs per lookup (%.0f lookups/s); "
                         + "answering alone: %.1f µs", connectors, lookups, perLookup * 1e6, 1 / perLookup, answering * 1e6))
        }
    }

    /// What any socketmap server costs at least here: one request and one reply between two
    /// threads over a unix socket pair, with nothing computed.
    private func echoRoundTrip(rounds: Int = 100_000) throws -> Double {
        var pair: [Int32] = [0, 0]
        XCTAssertEqual(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &pair), 0)
        let (client, server) = (pair[0], pair[1])
        defer { close(client); close(server) }
        Thread.detachNewThread {
            var byte: UInt8 = 0
            while recv(server, &byte, 1, 0) == 1 { _ = send(server, &byte, 1, 0) }
        }
        var byte: UInt8 = 1
        let start = MonotonicClock.now()
        for _ in 0..<rounds {
            _ = send(client, &byte, 1, 0)
            _ = recv(client, &byte, 1, 0)
        }
        return (MonotonicClock.now() - start) / Double(rounds)
    }

    private func measure(connectors: Int, lookups: Int) throws -> (Double, Double, Int) {
        var yaml = "organization:\n  acceptedDomains: [contoso.com]\nconnectors:\n"
        for i in 0..<connectors {
            yaml += """
                  - name: Partner \(i)
                    direction: outbound
                    type: partner
                    recipientDomains: [partner\(i).example, "*.sub\(i).example"]
                    smartHosts: ["[10.\(i / 65536 % 256).\(i / 256 % 256).\(i % 256)]:2525"]
                    tlsSettings: domainValidation
                    tlsDomain: mx.partner\(i).example

                """
        }
        let set = PolicySet(try PolicyParser.parse(yaml, file: "bench.yaml").get())
        var template = Array("/tmp/maps-bench.XXXXXX".utf8CString)
        let directory = String(cString: try XCTUnwrap(mkdtemp(&template)))
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/maps.sock"
        let listener = try MapsServer.listen(on: .unix(path: path), identity: Identity())
        let server = MapsServer(listener: listener, policy: { set }, log: StderrSink())
        Thread.detachNewThread { server.run() }

        let descriptor = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(descriptor) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (index, byte) in path.utf8.enumerated() { raw[index] = byte }
        }
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        XCTAssertEqual(connected, 0)

        // A mix of what Postfix asks: domains (hits, subdomain hits, misses), next hops, addresses.
        let requests: [[UInt8]] = (0..<1000).map { n in
            let i = (n * 7919) % connectors
            let request: String
            switch n % 5 {
            case 0: request = "tls-policy partner\(i).example"
            case 1: request = "tls-policy a.sub\(i).example"
            case 2: request = "tls-policy [10.\(i / 65536 % 256).\(i / 256 % 256).\(i % 256)]:2525"
            case 3: request = "transport user@partner\(i).example"
            default: request = "tls-policy nobody\(n).example"
            }
            return Netstring.encode(Array(request.utf8))
        }
        var reply = [UInt8](repeating: 0, count: 4096)
        @discardableResult
        func ask(_ request: [UInt8]) -> [UInt8]? {
            _ = send(descriptor, request, request.count, 0)
            var have = 0
            // Read until the reply netstring is whole (length prefix, payload, ',').
            while true {
                let got = reply.withUnsafeMutableBytes { recv(descriptor, $0.baseAddress! + have, $0.count - have, 0) }
                guard got > 0 else { return nil }
                have += got
                if case .complete(let payload, _) = Netstring.parse(reply[..<have], limit: 100_000) { return payload }
            }
        }
        let maps = OutboundMaps(set)
        let payloads = requests.map { request -> [UInt8] in
            guard case .complete(let payload, _) = Netstring.parse(request[...], limit: 100_000) else { return [] }
            return payload
        }
        // Every answer over the socket is the one the maps give (this also warms the server up).
        for (request, payload) in zip(requests, payloads) {
            XCTAssertEqual(ask(request).map { String(decoding: $0, as: UTF8.self) }, Socketmap.reply(to: payload, maps: maps))
        }
        let computeStart = MonotonicClock.now()
        for n in 0..<lookups { _ = Socketmap.reply(to: payloads[n % payloads.count], maps: maps) }
        let answering = (MonotonicClock.now() - computeStart) / Double(lookups)
        let start = MonotonicClock.now()
        for n in 0..<lookups { ask(requests[n % requests.count]) }
        let elapsed = MonotonicClock.now() - start
        return (elapsed / Double(lookups), answering, lookups)
    }
}
