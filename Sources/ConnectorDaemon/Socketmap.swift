import ConnectorPolicy

// The socketmap protocol without the sockets (socketmap_table(5)): netstrings in, the answer of
// OutboundMaps out. Apart from MapsServer.swift so that the fuzz target compiles this file alone.

/// Netstrings (D. J. Bernstein): `LENGTH:BYTES,` with LENGTH in decimal.
package enum Netstring {
    package enum Parsed: Equatable {
        /// A whole netstring: its payload and how many bytes it took.
        case complete(payload: [UInt8], consumed: Int)
        /// More bytes are needed.
        case incomplete
        /// Not a netstring, or longer than allowed: answer with an error and close.
        case malformed(String)
        case tooLong(Int)
    }

    package static func encode(_ payload: some Collection<UInt8>) -> [UInt8] {
        Array("\(payload.count):".utf8) + payload + [UInt8(ascii: ",")]
    }

    /// Parses the netstring at the start of `buffer`, refusing a payload above `limit` bytes
    /// as soon as its length is read, before any of it is buffered.
    package static func parse(_ buffer: ArraySlice<UInt8>, limit: Int) -> Parsed {
        let maximumDigits = String(limit).utf8.count
        var length = 0
        var digits = 0
        var index = buffer.startIndex
        while index < buffer.endIndex {
            let byte = buffer[index]
            if byte == UInt8(ascii: ":") { break }
            guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") else {
                return .malformed("a netstring starts with its length in decimal digits")
            }
            digits += 1
            guard digits <= maximumDigits else { return .tooLong(length) }
            length = length * 10 + Int(byte - UInt8(ascii: "0"))
            index += 1
        }
        if index == buffer.endIndex { return .incomplete }
        guard digits > 0 else { return .malformed("a netstring starts with its length in decimal digits") }
        guard length <= limit else { return .tooLong(length) }
        let payloadStart = index + 1
        let end = payloadStart + length  // the ','
        guard end < buffer.endIndex else { return .incomplete }
        guard buffer[end] == UInt8(ascii: ",") else { return .malformed("a netstring ends with \",\" after its length") }
        return .complete(payload: Array(buffer[payloadStart..<end]), consumed: end + 1 - buffer.startIndex)
    }
}

/// What the socketmap answers, without the sockets.
package enum Socketmap {
    /// Requests are a map name and a domain or an address: 10 KiB is far beyond any of them.
    package static let maximumRequestLength = 10 * 1024

    /// The answer to one request payload (`NAME KEY`), as the reply payload.
    package static func reply(to request: [UInt8], maps: OutboundMaps) -> String {
        guard let space = request.firstIndex(of: UInt8(ascii: " ")) else {
            return "PERM malformed request: expected \"NAME KEY\""
        }
        let name = String(decoding: request[..<space], as: UTF8.self)
        guard let map = OutboundMapName(rawValue: name) else {
            let known = OutboundMapName.allCases.map(\.rawValue).joined(separator: ", ")
            return "PERM unknown map \"\(printable(name))\" (this socket serves \(known))"
        }
        let key = String(decoding: request[(space + 1)...], as: UTF8.self)
        guard let value = maps.lookup(map, key: key) else { return "NOTFOUND " }
        return "OK " + value
    }

    /// A name from the peer, safe to echo in a reply or a log line.
    static func printable(_ text: String) -> String {
        String(text.unicodeScalars.prefix(64).map { $0.value >= 0x20 && $0.value < 0x7F ? Character($0) : "?" })
    }
}
