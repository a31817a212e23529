import XCTest
import ConnectorPolicy
@testable import ConnectorDaemon
#if canImport(Glibc)
import Glibc
#endif

/// The socketmap endpoint: netstrings, replies, and a real unix socket served in-process.
final class MapsServerTests: XCTestCase {
    private static let policy = """
        organization:
          acceptedDomains: [contoso.com]
        connectors:
          - name: To Fabrikam Bank
            direction: outbound
            type: partner
            recipientDomains: [fabrikam.com]
            smartHosts: ["[203.0.113.25]:2525"]
            tlsSettings: domainValidation
            tlsDomain: mx.fabrikam.com
        """

    func testNetstringsParseOnlyWhatIsWholeAndWellFormed() {
        let limit = 10240
        func parse(_ text: String) -> Netstring.Parsed { Netstring.parse(ArraySlice(Array(text.utf8)), limit: limit) }
        XCTAssertEqual(parse("5:hello,"), .complete(payload: Array("hello".utf8), consumed: 8))
        XCTAssertEqual(parse("5:hello,3:abc,"), .complete(payload: Array("hello".utf8), consumed: 8))
        XCTAssertEqual(parse("0:,"), .complete(payload: [], consumed: 3))
        XCTAssertEqual(parse(""), .incomplete)
        XCTAssertEqual(parse("12"), .incomplete)
        XCTAssertEqual(parse("5:hel"), .incomplete)
        XCTAssertEqual(parse("5:hello"), .incomplete)
        XCTAssertEqual(parse("5:helloX"), .malformed("a netstring ends with \",\" after its length"))
        XCTAssertEqual(parse(":abc,"), .malformed("a netstring starts with its length in decimal digits"))
        XCTAssertEqual(parse("x5:hello,"), .malformed("a netstring starts with its length in decimal digits"))
        XCTAssertEqual(parse("10241:"), .tooLong(10241))
        if case .tooLong = parse("123456789") {} else { XCTFail("a length with too many digits is refused before its colon") }
        XCTAssertEqual(Netstring.encode(Array("OK encrypt".utf8)), Array("10:OK encrypt,".utf8))
    }

    func testRepliesFollowSocketmapTable5() throws {
        let maps = OutboundMaps(PolicySet(try PolicyParser.parse(Self.policy, file: "t.yaml").get()))
        func reply(_ request: String) -> String { Socketmap.reply(to: Array(request.utf8), maps: maps) }
        XCTAssertEqual(reply("tls-policy fabrikam.com"), "OK secure match=mx.fabrikam.com")
        XCTAssertEqual(reply("tls-policy [203.0.113.25]:2525"), "OK secure match=mx.fabrikam.com")
        XCTAssertEqual(reply("transport ap@fabrikam.com"), "OK smtp:[203.0.113.25]:2525")
        XCTAssertEqual(reply("tls-policy example.org"), "NOTFOUND ")
        XCTAssertEqual(reply("tls-policy "), "NOTFOUND ")
        XCTAssertEqual(reply("transport"), "PERM malformed request: expected \"NAME KEY\"")
        XCTAssertEqual(reply("bogus\u{1} key"), "PERM unknown map \"bogus?\" (this socket serves tls-policy, transport, relay-domains)")
    }

    func testAServedSocketAnswersSurvivesBadPeersAndFollowsTheCurrentPolicy() throws {
        var template = Array("/tmp/maps-test.XXXXXX".utf8CString)
        let directory = String(cString: try XCTUnwrap(mkdtemp(&template)))
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/maps.sock"
        let listener = try MapsServer.listen(on: .unix(path: path), identity: Identity())
        defer { close(listener) }
        var info = stat()
        XCTAssertEqual(lstat(path, &info), 0)
        XCTAssertEqual(info.st_mode & 0o777, 0o660, "the socket follows the milter socket's mode")

        let first = PolicySet(try PolicyParser.parse(Self.policy, file: "t.yaml").get())
        let second = PolicySet(try PolicyParser.parse(Self.policy.replacingOccurrences(
            of: "tlsSettings: domainValidation\n    tlsDomain: mx.fabrikam.com", with: "tlsSettings: encryptionOnly"),
            file: "t.yaml").get())
        let current = PolicyBox(first)
        let server = MapsServer(listener: listener, policy: { current.value }, log: MemoryLog())

        // Several lookups on one connection, as Postfix does, one of them split across writes.
        let client = try UnixClient(path: path)
        try client.write("23:tls-policy fabrikam.com,24:transport a@fabrikam.com,12:tls-pol")
        try client.write("icy x,")
        let replies = try client.read(until: 3, serving: server)
        XCTAssertEqual(replies, ["OK secure match=mx.fabrikam.com", "OK smtp:[203.0.113.25]:2525", "NOTFOUND "])

        // A reload shows at the next lookup, on the same connection.
        current.value = second
        try client.write("23:tls-policy fabrikam.com,")
        XCTAssertEqual(try client.read(until: 1, serving: server), ["OK encrypt"])

        // Malformed and oversized requests: a PERM reply, then the connection is closed.
        for bad in ["hello,", "99999:x", "5:abcdeX"] {
            let peer = try UnixClient(path: path)
            try peer.write(bad)
            let answer = try peer.read(until: 1, serving: server)
            XCTAssertTrue(answer.first?.hasPrefix("PERM ") ?? false, "\(bad): \(answer)")
            XCTAssertTrue(try peer.isClosed(serving: server), "\(bad): connection left open")
        }
        // A peer that vanishes mid-request costs nothing.
        try UnixClient(path: path).write("50:tls-policy half")
        server.serveOnce(timeout: 50)

        // And the first client is still served.
        try client.write("23:tls-policy fabrikam.com,")
        XCTAssertEqual(try client.read(until: 1, serving: server), ["OK encrypt"])
    }
}

private final class PolicyBox: @unchecked Sendable {
    var value: PolicySet
    init(_ value: PolicySet) { self.value = value }
}

private struct MemoryLog: LogSink {
    func log(_ priority: LogPriority, _ message: String) {}
}

/// A blocking unix-socket client; `read` drives the server between attempts, since both live
/// on the test's thread.
private final class UnixClient {
    let descriptor: Int32
    private var buffer: [UInt8] = []

    init(path: String) throws {
        descriptor = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (index, byte) in path.utf8.enumerated() { raw[index] = byte }
        }
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard connected == 0 else { throw POSIXError(.ECONNREFUSED) }
        _ = fcntl(descriptor, F_SETFL, fcntl(descriptor, F_GETFL) | O_NONBLOCK)
    }

    deinit { close(descriptor) }

    func write(_ text: String) throws {
        let bytes = Array(text.utf8)
        guard send(descriptor, bytes, bytes.count, Int32(MSG_NOSIGNAL)) == bytes.count else { throw POSIXError(.EIO) }
    }

    /// Serves and reads until `count` whole replies arrived (or 2 s passed).
    func read(until count: Int, serving server: MapsServer) throws -> [String] {
        var replies: [String] = []
        let deadline = Date().addingTimeInterval(2)
        while replies.count < count && Date() < deadline {
            server.serveOnce(timeout: 20)
            var chunk = [UInt8](repeating: 0, count: 4096)
            let got = recv(descriptor, &chunk, chunk.count, 0)
            if got > 0 { buffer += chunk[..<got] }
            while case .complete(let payload, let consumed) = Netstring.parse(buffer[...], limit: 100_000) {
                replies.append(String(decoding: payload, as: UTF8.self))
                buffer.removeFirst(consumed)
            }
        }
        return replies
    }

    /// True once the server has closed its end.
    func isClosed(serving server: MapsServer) throws -> Bool {
        let deadline = Date().addingTimeInterval(2)
        while Date() < deadline {
            server.serveOnce(timeout: 20)
            var byte: UInt8 = 0
            let got = recv(descriptor, &byte, 1, 0)
            if got == 0 { return true }
        }
        return false
    }
}
