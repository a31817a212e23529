// The message of a verdict line: `QUEUEID: verdict=...`, its `key=value` fields and quoted
// values, read exactly as `VerdictLine.format` writes them.

import ConnectorPolicy
import Foundation

extension VerdictLineReader {
    private static let verdictKey = Array("verdict=".utf8)
    private static let priorityPrefixes = ["error: ", "warning: ", "notice: ", "info: ", "debug: "].map { Array($0.utf8) }

    static func parseMessage(_ b: UnsafeBufferPointer<UInt8>, from start: Int, end: Int, time: TimeSlice?,
                             host: Range<Int>?, complete: Bool, clock: inout LogClock,
                             keys: inout [String]?) -> Line {
        // `--log stderr` writes the priority first ("info: QUEUEID: verdict=..."): skip it.
        var start = start
        for word in priorityPrefixes where start + word.count <= end
            && zip(b[start..<(start + word.count)], word).allSatisfy({ $0 == $1 }) {
            start += word.count
            break
        }
        // `QUEUEID: verdict=`: the queue id is bare or, if the MTA gave an odd one, quoted.
        var i = start
        var queueID: String?
        if i < end, b[i] == UInt8(ascii: "\"") {
            guard case .value(let value, let next) = quotedValue(b, from: i, end: end) else { return .other }
            queueID = value.text
            i = next
        } else {
            while i < end, b[i] != UInt8(ascii: ":"), b[i] != 0x20 { i += 1 }
            guard i > start else { return .other }
            let id = String(decoding: UnsafeBufferPointer(rebasing: b[start..<i]), as: UTF8.self)
            queueID = id == "NOQUEUE" ? nil : id
        }
        guard i + 2 + verdictKey.count <= end, b[i] == UInt8(ascii: ":"), b[i + 1] == 0x20,
              zip(b[(i + 2)..<(i + 2 + verdictKey.count)], verdictKey).allSatisfy({ $0 == $1 }) else { return .other }
        // From here on the line is ours and claims to be a verdict line: it parses, or it is malformed.
        if !complete { return .malformed("line longer than \(maximumLineLength) bytes, cut") }
        var fields = FieldSlots()
        var nextSlot = 0
        i += 2
        while true {
            let keyStart = i
            while i < end, isKeyByte(b[i]) { i += 1 }
            guard i > keyStart, i < end, b[i] == UInt8(ascii: "=") else {
                return .malformed("expected key=value at byte \(keyStart + 1)")
            }
            let keyBytes = UnsafeBufferPointer(rebasing: b[keyStart..<i])
            let slot = FieldSlots.index(of: keyBytes, hint: nextSlot)
            if let slot { nextSlot = slot + 1 }
            // Only for messages: the common case compares bytes and makes no String.
            var key: String { slot.map { FieldSlots.keys[$0] } ?? String(decoding: keyBytes, as: UTF8.self) }
            keys?.append(key)
            i += 1
            let value: Value
            if i < end, b[i] == UInt8(ascii: "\"") {
                switch quotedValue(b, from: i, end: end) {
                case .value(let v, let next): value = v; i = next
                case .failure(let why): return .malformed("\(key): \(why)")
                }
            } else {
                let valueStart = i
                while i < end, b[i] != 0x20 {
                    // What the writer would have quoted; `=` is let through for older writers.
                    if b[i] == UInt8(ascii: "\"") || b[i] == UInt8(ascii: "\\") || b[i] < 0x20 {
                        return .malformed("\(key): unquoted value holds a quote, a backslash or a control character")
                    }
                    i += 1
                }
                value = Value(text: String(decoding: UnsafeBufferPointer(rebasing: b[valueStart..<i]), as: UTF8.self),
                              quoted: false)
            }
            if let slot {
                guard fields.values[slot] == nil else { return .malformed("\(key) appears twice") }
                fields.values[slot] = value
            }
            if i == end { break }
            guard b[i] == 0x20, i + 1 < end else { return .malformed("expected a space at byte \(i + 1)") }
            i += 1
        }
        var record: VerdictRecord
        switch fields.record(queueID: queueID) {
        case .success(let r): record = r
        case .failure(let why): return .malformed(why.message)
        }
        if let time { record.timestamp = time.seconds(b, clock: &clock) }
        if let host { record.host = String(decoding: UnsafeBufferPointer(rebasing: b[host]), as: UTF8.self) }
        return .verdict(record)
    }

    struct Value {
        var text: String
        var quoted: Bool
        /// Cut by the writer at `VerdictLine.maximumValueLength`.
        var truncated = false
    }

    enum QuotedResult {
        case value(Value, next: Int)
        case failure(String)
    }

    /// A value as `VerdictLine.quoted` writes it: `"..."` with `\"`, `\\`, `\xHH`, `\u{H...}`.
    static func quotedValue(_ b: UnsafeBufferPointer<UInt8>, from start: Int, end: Int) -> QuotedResult {
        var out: [UInt8] = []
        var i = start + 1
        while i < end {
            let c = b[i]
            if c == UInt8(ascii: "\"") {
                var value = Value(text: String(decoding: out, as: UTF8.self), quoted: true)
                // The writer keeps 512 scalars and adds "...": nothing else is 515 scalars long
                // and ends so, since a longer value would have been cut too.
                if out.count >= VerdictLine.maximumValueLength + 3, value.text.hasSuffix("..."),
                   value.text.unicodeScalars.count == VerdictLine.maximumValueLength + 3 {
                    value.truncated = true
                }
                return .value(value, next: i + 1)
            }
            if c < 0x20 || c == 0x7F { return .failure("raw control character in a quoted value") }
            if c != UInt8(ascii: "\\") { out.append(c); i += 1; continue }
            guard i + 1 < end else { break }
            switch b[i + 1] {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"):
                out.append(b[i + 1])
                i += 2
            case UInt8(ascii: "x"):
                guard i + 3 < end, let hi = hexValue(b[i + 2]), let lo = hexValue(b[i + 3]) else {
                    return .failure("bad \\x escape")
                }
                // The writer uses \x only below 0x80, where a byte is a whole scalar.
                let scalar = hi << 4 | lo
                guard scalar < 0x80 else { return .failure("\\x escape above 7F") }
                out.append(scalar)
                i += 4
            case UInt8(ascii: "u"):
                guard i + 2 < end, b[i + 2] == UInt8(ascii: "{") else { return .failure("bad \\u escape") }
                var j = i + 3
                var code: UInt32 = 0
                while j < end, j - (i + 3) < 6, let digit = hexValue(b[j]) { code = code << 4 | UInt32(digit); j += 1 }
                guard j > i + 3, j < end, b[j] == UInt8(ascii: "}"), let scalar = Unicode.Scalar(code) else {
                    return .failure("bad \\u{...} escape")
                }
                out.append(contentsOf: Array(String(Character(scalar)).utf8))
                i = j + 1
            default:
                return .failure("unknown escape \\\(Character(Unicode.Scalar(b[i + 1])))")
            }
        }
        return .failure("quoted value does not end (line cut short?)")
    }

    @inline(__always) private static func isKeyByte(_ c: UInt8) -> Bool {
        (c >= UInt8(ascii: "a") && c <= UInt8(ascii: "z")) || c == UInt8(ascii: "_")
    }

    private static func hexValue(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return c - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return c - UInt8(ascii: "A") + 10
        default: return nil
        }
    }
}


/// The known fields of one line, then their meaning.
private struct FieldSlots {
    static let keys = VerdictLine.keys
    var values = [VerdictLineReader.Value?](repeating: nil, count: keys.count)

    private static let keyBytes = keys.map { Array($0.utf8) }

    /// The slot of a key, trying `hint` first: a line written by `VerdictLine` has its keys
    /// in slot order, so the guess is nearly always right.
    static func index(of key: UnsafeBufferPointer<UInt8>, hint: Int) -> Int? {
        func matches(_ i: Int) -> Bool {
            keyBytes[i].count == key.count && keyBytes[i].withUnsafeBufferPointer { memcmp($0.baseAddress!, key.baseAddress!, key.count) == 0 }
        }
        if hint < keyBytes.count, matches(hint) { return hint }
        return keyBytes.indices.first(where: matches)
    }

    static func index(of key: String) -> Int? { keys.firstIndex(of: key) }

    struct Failure: Error { let message: String }

    func record(queueID: String?) -> Result<VerdictRecord, Failure> {
        var missing: [String] = []
        func value(_ key: String) throws(Failure) -> VerdictLineReader.Value {
            guard let v = values[Self.index(of: key)!] else { throw Failure(message: "no \(key)= field") }
            return v
        }
        func text(_ key: String) throws(Failure) -> String {
            let v = try value(key)
            if v.truncated { missing.append(key) }
            return v.text
        }
        func enumValue<T: RawRepresentable>(_ key: String, _: T.Type) throws(Failure) -> T where T.RawValue == String {
            let v = try value(key)
            guard !v.quoted, let e = T(rawValue: v.text) else { throw Failure(message: "\(key)=\(VerdictLine.quoteIfNeeded(v.text)) is not a known value") }
            return e
        }
        /// `none` bare, or a quoted name.
        func name(_ key: String) throws(Failure) -> String? {
            let v = try value(key)
            if v.quoted { return v.text }
            guard v.text == "none" else { throw Failure(message: "\(key)= must be \"NAME\" in quotes or none") }
            return nil
        }
        /// `<address>`, quoted or not; a cut one has lost its `>` to the "...".
        func address(_ key: String) throws(Failure) -> String {
            let v = try value(key)
            // On the UTF-8 view: the brackets are ASCII, and Character operations cost
            // grapheme breaking on every line.
            let utf8 = v.text.utf8
            if v.truncated, utf8.first == UInt8(ascii: "<") {
                missing.append(key)
                return String(Substring(utf8.dropFirst().dropLast(3)))
            }
            guard utf8.count >= 2, utf8.first == UInt8(ascii: "<"), utf8.last == UInt8(ascii: ">") else {
                throw Failure(message: "\(key)= must be an address in angle brackets")
            }
            return String(Substring(utf8.dropFirst().dropLast()))
        }
        do throws(Failure) {
            let verdict = try enumValue("verdict", Verdict.self)
            let would = try values[1] == nil ? nil : enumValue("would", Verdict.self)
            let reason = values[2]?.text
            let direction = try enumValue("direction", MessageDirection.self)
            let inbound = try name("inbound")
            let inboundType = try enumValue("inbound_type", InboundType.self)
            // NAME[ADDRESS]: the address is the last bracketed part, since a name has no "[".
            let client = try text("client").utf8
            guard client.last == UInt8(ascii: "]"), let open = client.lastIndex(of: UInt8(ascii: "[")) else {
                throw Failure(message: "client= must be NAME[ADDRESS]")
            }
            let clientName = String(Substring(client[..<open]))
            let addressText = Substring(client[client.index(after: open)..<client.index(before: client.endIndex)])
            var clientAddress: IPAddress? = nil
            if addressText != "unknown" {
                guard let a = IPAddress(addressText) else { throw Failure(message: "client= address \"\(addressText)\" is not an IP address") }
                clientAddress = a
            }
            let tlsValue = try value("tls")
            if tlsValue.truncated { missing.append("tls") }
            let tls: String? = (!tlsValue.quoted && tlsValue.text == "none") ? nil : tlsValue.text
            let certValue = try value("cert")
            if certValue.truncated { missing.append("cert") }
            let cert: String? = certValue.quoted ? certValue.text : nil
            if !certValue.quoted && certValue.text != "none" { throw Failure(message: "cert= must be \"NAME\" in quotes or none") }
            let from = try address("from")
            let rcpt = try address("rcpt")
            let outbound = try name("outbound")
            let outboundTypeValue = try value("outbound_type")
            let outboundType: ConnectorType?
            if outboundTypeValue.text == "none" && !outboundTypeValue.quoted {
                outboundType = nil
            } else {
                outboundType = try enumValue("outbound_type", ConnectorType.self)
            }
            let mode = try enumValue("mode", Mode.self)
            var auth: String? = nil
            if let a = values[14] {
                if a.quoted { auth = a.text } else if a.text != "none" { throw Failure(message: "auth= must be \"LOGIN\" in quotes or none") }
                if a.truncated { missing.append("auth") }
            } else {
                missing.append("auth")
            }
            var originalClient: IPAddress? = nil
            if let o = values[15] {
                if o.quoted || (o.text != "none" && IPAddress(o.text) == nil) {
                    throw Failure(message: "original_client= must be an IP address or none")
                }
                originalClient = o.text == "none" ? nil : IPAddress(o.text)
            }
            var record = VerdictRecord(
                timestamp: nil, host: nil, queueID: queueID, verdict: verdict, would: would, reason: reason,
                direction: direction, inbound: inbound, inboundType: inboundType, clientName: clientName,
                clientAddress: clientAddress, tlsVersion: tls, certificate: cert, from: from, recipient: rcpt,
                outbound: outbound, outboundType: outboundType, mode: mode, authenticatedUser: auth,
                missingFacts: missing)
            record.originalClient = originalClient
            record.hasOriginalClientField = values[15] != nil
            return .success(record)
        } catch {
            return .failure(error)
        }
    }
}
