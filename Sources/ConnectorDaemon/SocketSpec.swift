/// Where the milter listens, as an admin writes it (and libmilter reads it):
/// `unix:/path` (or `local:/path`), `inet:PORT@HOST`, `inet6:PORT@HOST`.
package enum SocketSpec: Equatable, Sendable, CustomStringConvertible {
    case unix(path: String)
    case inet(port: UInt16, host: String)
    case inet6(port: UInt16, host: String)

    /// sun_path holds 108 bytes including the terminating NUL.
    static let maximumUnixPathLength = 107

    /// Parses the admin's text. A relative unix path is resolved against `directory`, because
    /// the daemon changes to "/" and its worker would otherwise look elsewhere. The host is
    /// required: a milter answering on every interface is a decision to write down
    /// (`inet:8891@0.0.0.0`), not a default.
    package init(parsing text: String, relativeTo directory: String? = nil) throws(SocketSpecError) {
        guard let colon = text.firstIndex(of: ":") else { throw .malformed(text) }
        let scheme = text[..<colon].lowercased()
        let rest = String(text[text.index(after: colon)...])
        switch scheme {
        case "unix", "local":
            guard !rest.isEmpty else { throw .malformed(text) }
            var path = rest
            if !path.hasPrefix("/") {
                guard let directory else { throw .relativePath(text) }
                path = directory.hasSuffix("/") ? directory + path : directory + "/" + path
            }
            guard path.utf8.count <= SocketSpec.maximumUnixPathLength else { throw .pathTooLong(path) }
            self = .unix(path: path)
        case "inet", "inet6":
            guard let at = rest.firstIndex(of: "@") else { throw .missingHost(text) }
            let host = String(rest[rest.index(after: at)...])
            guard let port = UInt16(rest[..<at]), port > 0 else { throw .badPort(text) }
            guard !host.isEmpty, !host.contains(where: { $0 == " " || $0 == "@" }) else { throw .missingHost(text) }
            self = scheme == "inet" ? .inet(port: port, host: host) : .inet6(port: port, host: host)
        default:
            throw .malformed(text)
        }
    }

    /// The form smfi_setconn takes.
    var libmilterSpec: String {
        switch self {
        case .unix(let path): "unix:\(path)"
        case .inet(let port, let host): "inet:\(port)@\(host)"
        case .inet6(let port, let host): "inet6:\(port)@\(host)"
        }
    }

    var unixPath: String? {
        if case .unix(let path) = self { path } else { nil }
    }

    package var description: String { libmilterSpec }
}

package enum SocketSpecError: Error, Equatable, CustomStringConvertible {
    case malformed(String)
    case relativePath(String)
    case pathTooLong(String)
    case badPort(String)
    case missingHost(String)

    package var description: String {
        let forms = "unix:/path, local:/path, inet:PORT@HOST or inet6:PORT@HOST"
        switch self {
        case .malformed(let text): return "invalid socket \"\(text)\": expected \(forms)"
        case .relativePath(let text): return "invalid socket \"\(text)\": the path must be absolute"
        case .pathTooLong(let path):
            return "socket path \(path) is longer than \(SocketSpec.maximumUnixPathLength) bytes"
        case .badPort(let text): return "invalid socket \"\(text)\": the port must be 1-65535"
        case .missingHost(let text):
            return "invalid socket \"\(text)\": name the address to listen on, e.g. inet:8891@127.0.0.1"
        }
    }
}
