// IPv4 and IPv6 addresses and prefixes, parsed in pure Swift so the policy module needs no
// sockets and the parser can be fuzzed.

public struct IPAddress: Sendable, Hashable, CustomStringConvertible {
    public enum Family: Sendable, Hashable { case v4, v6 }

    public let family: Family
    /// The address in the low 32 bits (IPv4) or all 128 bits (IPv6).
    public let bits: UInt128

    public init(v4 bits: UInt32) { family = .v4; self.bits = UInt128(bits) }
    public init(v6 bits: UInt128) { family = .v6; self.bits = bits }

    public var width: Int { family == .v4 ? 32 : 128 }

    /// Parses `192.0.2.1`, `2001:db8::1`, `::ffff:192.0.2.1` (read as IPv4, as the client it is),
    /// and Postfix's `IPv6:2001:db8::1`. Rejects zone ids, leading zeros in IPv4 octets
    /// (ambiguous: octal to some tools) and anything else.
    public init?(_ text: some StringProtocol) {
        // Bytes, not Characters: this runs for every connection, and a StringProtocol search
        // would go through Foundation.
        var s = Substring(text)
        if s.utf8.count > 6, s.utf8.prefix(5).elementsEqual("ipv6:".utf8, by: { DomainName.lowercasedASCII($0) == $1 }) {
            s = s.dropFirst(5)
        }
        if s.utf8.contains(UInt8(ascii: ":")) {
            guard let v6 = IPAddress.parseV6(s) else { return nil }
            if v6 >> 32 == 0xFFFF { self.init(v4: UInt32(truncatingIfNeeded: v6)); return }
            self.init(v6: v6)
        } else {
            guard let v4 = IPAddress.parseV4(s) else { return nil }
            self.init(v4: v4)
        }
    }

    static func parseV4(_ s: Substring) -> UInt32? { parseV4(bytes: s.utf8) }

    /// Four decimal octets: one to three digits, no leading zero, at most 255.
    static func parseV4<Bytes: Collection<UInt8>>(bytes: Bytes) -> UInt32? {
        var value: UInt32 = 0, octet: UInt32 = 0, digits = 0, dots = 0
        for byte in bytes {
            switch byte {
            case UInt8(ascii: "."):
                guard digits > 0, dots < 3 else { return nil }
                value = value << 8 | octet
                dots += 1
                octet = 0
                digits = 0
            case UInt8(ascii: "0")...UInt8(ascii: "9"):
                guard !(digits == 1 && octet == 0), digits < 3 else { return nil }
                octet = octet * 10 + UInt32(byte - UInt8(ascii: "0"))
                guard octet <= 255 else { return nil }
                digits += 1
            default:
                return nil
            }
        }
        guard digits > 0, dots == 3 else { return nil }
        return value << 8 | octet
    }

    /// Eight groups of one to four hex digits, at most one `::` for a run of zero groups, and
    /// an IPv4 tail in place of the last two groups.
    static func parseV6(_ s: Substring) -> UInt128? {
        guard s.utf8.count <= 45 else { return nil }
        let bytes = Array(s.utf8)
        let colon = UInt8(ascii: ":")
        guard let gap = bytes.indices.dropLast().first(where: { bytes[$0] == colon && bytes[$0 + 1] == colon }) else {
            guard let all = groups(bytes[...], allowV4Tail: true), all.count == 8 else { return nil }
            return all.value
        }
        let rest = bytes[(gap + 2)...]
        guard rest.first != colon,
              let head = groups(bytes[..<gap], allowV4Tail: false),
              let tail = groups(rest, allowV4Tail: true),
              head.count + tail.count <= 7 else { return nil }
        return head.value << (16 * (8 - head.count)) | tail.value
    }

    /// The colon-separated groups of `text` as one number, and how many 16-bit groups it holds.
    private static func groups(_ text: ArraySlice<UInt8>, allowV4Tail: Bool) -> (value: UInt128, count: Int)? {
        if text.isEmpty { return (0, 0) }
        var value: UInt128 = 0, count = 0
        var start = text.startIndex
        while true {
            let end = text[start...].firstIndex(of: UInt8(ascii: ":")) ?? text.endIndex
            let piece = text[start..<end]
            if end == text.endIndex, allowV4Tail, piece.contains(UInt8(ascii: ".")) {
                guard let v4 = parseV4(bytes: piece) else { return nil }
                value = value << 32 | UInt128(v4)
                count += 2
            } else {
                guard !piece.isEmpty, piece.count <= 4 else { return nil }
                var group: UInt128 = 0
                for byte in piece {
                    guard let digit = hexDigit(byte) else { return nil }
                    group = group << 4 | UInt128(digit)
                }
                value = value << 16 | group
                count += 1
            }
            guard count <= 8 else { return nil }
            if end == text.endIndex { return (value, count) }
            start = text.index(after: end)
        }
    }

    private static func hexDigit(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
        default: nil
        }
    }

    public var description: String {
        switch family {
        case .v4:
            let v = UInt32(truncatingIfNeeded: bits)
            return "\(v >> 24).\(v >> 16 & 0xFF).\(v >> 8 & 0xFF).\(v & 0xFF)"
        case .v6:
            var groups: [UInt16] = (0..<8).map { UInt16(truncatingIfNeeded: bits >> (112 - 16 * $0)) }
            // RFC 5952: compress the longest run of two or more zero groups.
            var bestStart = -1, bestLen = 0, i = 0
            while i < 8 {
                if groups[i] == 0 {
                    var j = i
                    while j < 8 && groups[j] == 0 { j += 1 }
                    if j - i > bestLen && j - i >= 2 { bestStart = i; bestLen = j - i }
                    i = j
                } else { i += 1 }
            }
            func hex(_ g: ArraySlice<UInt16>) -> String { g.map { String($0, radix: 16) }.joined(separator: ":") }
            if bestStart < 0 { return hex(groups[...]) }
            let left = hex(groups[..<bestStart]), right = hex(groups[(bestStart + bestLen)...])
            groups.removeAll()
            return left + "::" + right
        }
    }
}

/// An address block: `192.0.2.0/24`, `2001:db8:25::/48`, or a single address.
public struct IPPrefix: Sendable, Hashable, CustomStringConvertible {
    public let address: IPAddress
    public let length: Int

    public enum ParseError: Error, Equatable, CustomStringConvertible {
        case notAnAddress(String)
        case badLength(String, max: Int)
        case hostBitsSet(String, suggestion: String)

        public var description: String {
            switch self {
            case .notAnAddress(let t): return "\"\(t)\" is not an IPv4 or IPv6 address"
            case .badLength(let t, let max): return "prefix length \"\(t)\" must be a number from 0 to \(max)"
            case .hostBitsSet(let t, let s): return "\"\(t)\" has bits set beyond its prefix length; did you mean \(s)?"
            }
        }
    }

    public init(address: IPAddress, length: Int) {
        self.address = address
        self.length = length
    }

    public static func parse(_ text: String) -> Result<IPPrefix, ParseError> {
        let parts = text.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
        // A mapped IPv4 address with a /96+ length would be misread; prefixes keep their family.
        guard let addr = IPAddress(parts[0]) else { return .failure(.notAnAddress(String(parts[0]))) }
        guard parts.count == 2 else { return .success(IPPrefix(address: addr, length: addr.width)) }
        guard parts[1].utf8.count <= 3, parts[1].utf8.allSatisfy({ $0 >= 48 && $0 <= 57 }),
              let len = Int(parts[1]), len <= addr.width else {
            return .failure(.badLength(String(parts[1]), max: addr.width))
        }
        let prefix = IPPrefix(address: addr, length: len)
        if prefix.network.bits != addr.bits {
            return .failure(.hostBitsSet(text, suggestion: "\(prefix.network)/\(len)"))
        }
        return .success(prefix)
    }

    var network: IPAddress {
        let hostBits = address.width - length
        let mask: UInt128 = hostBits >= 128 ? 0 : ~((UInt128(1) << hostBits) - 1)
        let masked = address.bits & mask
        return address.family == .v4 ? IPAddress(v4: UInt32(truncatingIfNeeded: masked)) : IPAddress(v6: masked)
    }

    public func contains(_ other: IPAddress) -> Bool {
        guard other.family == address.family else { return false }
        let hostBits = address.width - length
        if hostBits >= address.width { return true }
        return other.bits >> hostBits == address.bits >> hostBits
    }

    public var description: String {
        length == address.width ? address.description : "\(address)/\(length)"
    }
}
