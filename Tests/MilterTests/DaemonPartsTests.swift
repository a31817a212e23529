import XCTest
@testable import Milter
@testable import ConnectorDaemon
#if canImport(Glibc)
import Glibc
#endif

/// The small pieces of the daemon and the bridge that need no MTA.
final class DaemonPartsTests: XCTestCase {
    func testSocketSpecsAcceptTheSpecForms() throws {
        XCTAssertEqual(try SocketSpec(parsing: "unix:/run/connector-milter/milter.sock"),
                       .unix(path: "/run/connector-milter/milter.sock"))
        XCTAssertEqual(try SocketSpec(parsing: "local:/run/m.sock").libmilterSpec, "unix:/run/m.sock")
        XCTAssertEqual(try SocketSpec(parsing: "inet:8891@127.0.0.1"), .inet(port: 8891, host: "127.0.0.1"))
        XCTAssertEqual(try SocketSpec(parsing: "inet6:8891@[::1]").libmilterSpec, "inet6:8891@[::1]")
        XCTAssertEqual(try SocketSpec(parsing: "unix:m.sock", relativeTo: "/var/run"), .unix(path: "/var/run/m.sock"))
    }

    func testSocketSpecsRefuseWhatLibmilterWouldMisread() {
        let cases: [(String, SocketSpecError)] = [
            ("/run/m.sock", .malformed("/run/m.sock")),
            ("tcp:25@host", .malformed("tcp:25@host")),
            ("unix:", .malformed("unix:")),
            ("unix:m.sock", .relativePath("unix:m.sock")),
            ("inet:8891", .missingHost("inet:8891")),
            ("inet:0@127.0.0.1", .badPort("inet:0@127.0.0.1")),
            ("inet:65536@127.0.0.1", .badPort("inet:65536@127.0.0.1")),
            ("inet:smtp@127.0.0.1", .badPort("inet:smtp@127.0.0.1")),
            ("unix:/" + String(repeating: "a", count: 120), .pathTooLong("/" + String(repeating: "a", count: 120))),
        ]
        for (text, expected) in cases {
            XCTAssertThrowsError(try SocketSpec(parsing: text), text) { error in
                XCTAssertEqual(error as? SocketSpecError, expected, text)
            }
        }
    }

    func testLogLinesNeverCarryRawControlCharacters() {
        XCTAssertEqual(LogLine.escapingControlCharacters("plain line"), "plain line")
        XCTAssertEqual(LogLine.escapingControlCharacters("a\nb\r\tc\u{1B}d\u{7F}"), "a\\nb\\r\\tc\\x1Bd\\x7F")
    }

    func testTimestampsAreUTCWithMilliseconds() {
        let stamp = LogLine.timestamp()
        XCTAssertEqual(stamp.count, "2025-01-31T12:34:56.789Z".count, stamp)
        XCTAssertTrue(stamp.hasSuffix("Z"))
    }

    func testMemoryLogSinkKeepsLinesInOrder() {
        let sink = MemoryLogSink()
        sink.log(.error, "one")
        sink.log(.notice, "two")
        XCTAssertEqual(sink.lines.map(\.message), ["one", "two"])
        XCTAssertEqual(sink.lines.map(\.priority), [.error, .notice])
    }

    func testClientAddressesAreTextAndMappedIPv4IsPlainIPv4() {
        func text(_ family: Int32, _ presentation: String) -> String? {
            var storage = sockaddr_in6()
            withUnsafeMutableBytes(of: &storage) { raw in
                raw.storeBytes(of: sa_family_t(family), toByteOffset: 0, as: sa_family_t.self)
                let offset = family == AF_INET ? MemoryLayout<sockaddr_in>.offset(of: \.sin_addr)!
                                               : MemoryLayout<sockaddr_in6>.offset(of: \.sin6_addr)!
                _ = inet_pton(family, presentation, raw.baseAddress! + offset)
            }
            return withUnsafeMutablePointer(to: &storage) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { MilterServer.textualAddress($0) }
            }
        }
        XCTAssertEqual(text(AF_INET, "203.0.113.5"), "203.0.113.5")
        XCTAssertEqual(text(AF_INET6, "2001:db8::1"), "2001:db8::1")
        XCTAssertEqual(text(AF_INET6, "::ffff:192.0.2.7"), "192.0.2.7")
        XCTAssertEqual(text(AF_UNIX, ""), nil)
        XCTAssertNil(MilterServer.textualAddress(nil))
    }

    func testWorkerArgumentsAreNormalizedAndMarked() throws {
        let options = try DaemonOptions(config: "policy.yaml", socket: "unix:m.sock", mapsSocket: nil, user: nil,
                                        group: nil, pidfile: nil, log: .stderr, foreground: true)
        let arguments = Array(options.workerArguments.dropFirst())
        XCTAssertEqual(arguments.first, "run")
        XCTAssertEqual(arguments.last, "--worker")
        XCTAssertTrue(options.configPath.hasPrefix("/"))
        XCTAssertTrue(options.socket.unixPath?.hasPrefix("/") == true)
        XCTAssertTrue(arguments.contains("--foreground"))
        // The run command parses these back (every end-to-end test starts a worker with them).
        XCTAssertEqual(arguments, ["run", "--config", options.configPath, "--socket", options.socket.libmilterSpec,
                                   "--log", "stderr", "--foreground", "--worker"])
    }
}
