import XCTest
import ConnectorPolicy
@testable import ConnectorDaemon
#if canImport(Glibc)
import Glibc
#endif

/// Postfix's policy delegation for relay control: request framing, the answer, and a real
/// unix socket served in-process by the same loop as the socketmap.
final class PolicyDelegationTests: XCTestCase {
    private static let policy = """
        organization:
          acceptedDomains: [contoso.com]
        connectors:
          - name: Contoso on-premises
            direction: inbound
            type: onPremises
            senderIPAddresses: [192.0.2.0/24, "2001:db8:25::/48"]
            tlsSenderCertificateName: "*.contoso.com"
            requireTls: true
        """
    private let set = PolicySet(try! PolicyParser.parse(policy, file: "t.yaml").get())

    /// A request as Postfix 3.7 sends it at RCPT TO (a subset of its attributes, same forms).
    private static func request(client: String = "198.51.100.9", sender: String = "a@example.org",
                                recipient: String = "b@example.net", tls: String = "", cert: String = "",
                                sasl: String = "") -> String {
        """
        request=smtpd_access_policy
        protocol_state=RCPT
        protocol_name=ESMTP
        client_address=\(client)
        client_name=unknown
        reverse_client_name=unknown
        helo_name=client.example
        sender=\(sender)
        recipient=\(recipient)
        recipient_count=0
        queue_id=
        instance=1a2b.6767a1b2.3c4d.0
        size=0
        sasl_method=\(sasl.isEmpty ? "" : "PLAIN")
        sasl_username=\(sasl)
        sasl_sender=
        ccert_subject=\(cert)
        ccert_issuer=\(cert.isEmpty ? "" : "Connector Lab CA")
        ccert_fingerprint=
        encryption_protocol=\(tls)
        encryption_cipher=
        encryption_keysize=0
        etrn_domain=
        server_address=127.0.0.1
        server_port=25


        """
    }

    private func action(_ request: String) -> String {
        guard case .complete(let attributes, _) = PolicyDelegation.parse(ArraySlice(Array(request.utf8))) else {
            XCTFail("not parsed: \(request)")
            return ""
        }
        return PolicyDelegation.action(for: attributes, policy: set)
    }

    func testOKOnlyForTheOrganizationsOwnClients() {
        let cases: [(String, String, String)] = [
            ("an onPremises address with an accepted sender relays", Self.request(client: "192.0.2.10", sender: "ceo@contoso.com"), "OK"),
            ("an onPremises IPv6 address relays", Self.request(client: "2001:db8:25::10", sender: "ceo@contoso.com"), "OK"),
            ("an onPremises address relays a bounce", Self.request(client: "192.0.2.10", sender: ""), "OK"),
            ("an onPremises address with a foreign sender does not relay",
             Self.request(client: "192.0.2.10", sender: "x@example.org"), "DUNNO"),
            ("a verified certificate of the organization relays from anywhere",
             Self.request(tls: "TLSv1.3", cert: "relay.contoso.com"), "OK"),
            ("a certificate name without TLS proves nothing", Self.request(cert: "relay.contoso.com"), "DUNNO"),
            ("another certificate name does not relay", Self.request(tls: "TLSv1.3", cert: "mx.example.org"), "DUNNO"),
            ("an authenticated client relays", Self.request(sasl: "alice"), "OK"),
            ("a stranger is left to the next restriction", Self.request(), "DUNNO"),
            ("a stranger claiming our sender is left to the next restriction", Self.request(sender: "ceo@contoso.com"), "DUNNO"),
            ("a request of another kind", Self.request(client: "192.0.2.10", sender: "ceo@contoso.com")
                .replacingOccurrences(of: "request=smtpd_access_policy", with: "request=other"), "DUNNO"),
            ("no recipient (asked at another stage)", Self.request(client: "192.0.2.10", sender: "ceo@contoso.com", recipient: ""), "DUNNO"),
            ("a client address that is no address", Self.request(client: "not-an-address", sender: "ceo@contoso.com"), "DUNNO"),
        ]
        for (name, request, expected) in cases {
            XCTAssertEqual(action(request), expected, name)
        }
    }

    func testRequestsParseOnlyWhenWholeAndWellFormed() {
        func parse(_ text: String, limit: Int = PolicyDelegation.maximumRequestLength) -> PolicyDelegation.Parsed {
            PolicyDelegation.parse(ArraySlice(Array(text.utf8)), limit: limit)
        }
        XCTAssertEqual(parse("a=1\nb=x=y\n\nc=2\n\n"), .complete(["a": "1", "b": "x=y"], consumed: 11))
        XCTAssertEqual(parse("a=1\r\nb=\r\n\r\n"), .complete(["a": "1", "b": ""], consumed: 11))
        XCTAssertEqual(parse("a=1\na=2\n\n"), .complete(["a": "2"], consumed: 9))
        XCTAssertEqual(parse(""), .incomplete)
        XCTAssertEqual(parse("a=1\nb=2"), .incomplete)
        XCTAssertEqual(parse("a=1\n"), .incomplete)
        XCTAssertEqual(parse("\n"), .malformed("empty request"))
        XCTAssertEqual(parse("hello\n\n"), .malformed("expected name=value lines"))
        XCTAssertEqual(parse("=x\n\n"), .malformed("expected name=value lines"))
        XCTAssertEqual(parse(String(repeating: "a", count: 100), limit: 64), .malformed("request longer than 64 bytes"))
        XCTAssertEqual(parse("a=" + String(repeating: "b", count: 100) + "\n\n", limit: 64), .malformed("request longer than 64 bytes"))
    }

    func testAServedSocketAnswersEachRequestAndClosesOnGarbage() throws {
        var template = Array("/tmp/policy-test.XXXXXX".utf8CString)
        let directory = String(cString: try XCTUnwrap(mkdtemp(&template)))
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/policy.sock"
        let listener = try MapsServer.listen(on: .unix(path: path), identity: Identity(), name: "policy socket")
        defer { close(listener) }
        var info = stat()
        XCTAssertEqual(lstat(path, &info), 0)
        XCTAssertEqual(info.st_mode & 0o777, 0o660, "the socket follows the milter socket's mode")
        let set = self.set
        let server = MapsServer(listener: listener, dialect: .policyDelegation, policy: { set }, log: SilentLog())

        // Two requests on one connection, the second split across writes, as Postfix may.
        let client = try RawClient(path: path)
        let second = Self.request()
        try client.write(Self.request(client: "192.0.2.10", sender: "ceo@contoso.com") + second.prefix(40))
        try client.write(String(second.dropFirst(40)))
        XCTAssertEqual(try client.read(until: "action=OK\n\naction=DUNNO\n\n", serving: server), "action=OK\n\naction=DUNNO\n\n")

        // Garbage: no reply (the protocol has none), the connection is closed.
        let peer = try RawClient(path: path)
        try peer.write("GET / HTTP/1.0\r\n\r\n")
        XCTAssertTrue(try peer.isClosed(serving: server))

        // The first client is still served.
        try client.write(Self.request(tls: "TLSv1.3", cert: "relay.contoso.com"))
        XCTAssertEqual(try client.read(until: "action=OK\n\n", serving: server), "action=OK\n\n")
    }
}

private struct SilentLog: LogSink {
    func log(_ priority: LogPriority, _ message: String) {}
}

/// A non-blocking unix-socket client; reads drive the server, since both live on this thread.
private final class RawClient {
    let descriptor: Int32
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

    /// What arrived once it is as long as `expected` (or after 2 s).
    func read(until expected: String, serving server: MapsServer) throws -> String {
        var received: [UInt8] = []
        let deadline = Date().addingTimeInterval(2)
        while received.count < expected.utf8.count && Date() < deadline {
            server.serveOnce(timeout: 20)
            var chunk = [UInt8](repeating: 0, count: 4096)
            let got = recv(descriptor, &chunk, chunk.count, 0)
            if got > 0 { received += chunk[..<got] }
        }
        return String(decoding: received, as: UTF8.self)
    }

    func isClosed(serving server: MapsServer) throws -> Bool {
        let deadline = Date().addingTimeInterval(2)
        while Date() < deadline {
            server.serveOnce(timeout: 20)
            var byte: UInt8 = 0
            if recv(descriptor, &byte, 1, 0) == 0 { return true }
        }
        return false
    }
}
