// Reads verdict lines (SPEC section 6) back out of syslog files, for `report` and `simulate`.
//
// The input is whatever the administrator's syslog daemon made of our lines, mixed with every
// other program's: RFC 3164 files (`Nov 29 01:02:03 host connector-milter[123]: ...`),
// rsyslog's high-precision and RFC 5424 formats, journalctl's short-iso output, and bare
// messages as `connector-milter classify` prints them. Only lines whose tag is
// `connector-milter` and whose message has the shape `QUEUEID: verdict=` are verdict lines; any
// such line that does not parse exactly as `VerdictLine.format` writes it is *malformed*, and
// is counted rather than guessed at.
//
// A local user can write any line into syslog under our tag (logger -t connector-milter), so
// these reports are as trustworthy as the log, no more. Parsing is strict so that at least a
// value cannot smuggle in a second field.
//
// Works on bytes, not Strings: a gigabyte of log is mostly other programs' lines, and those
// are dismissed after looking at the first few dozen bytes.

import ConnectorPolicy
import Foundation

/// One verdict line, read back: the decision that was logged and the facts it was made on.
public struct VerdictRecord: Sendable, Equatable {
    /// Seconds since 1970-01-01 UTC; nil for a line without a timestamp (a bare message).
    public var timestamp: Int64?
    /// The host the syslog header names, if any (queue ids are unique per host only).
    public var host: String?
    /// nil for `NOQUEUE`.
    public var queueID: String?
    public var verdict: Verdict
    public var would: Verdict?
    /// A `RefusalReason` raw value, kept as text so that reasons added later still count.
    public var reason: String?
    public var direction: MessageDirection
    /// The inbound connector's name; nil for `inbound=none`.
    public var inbound: String?
    public var inboundType: InboundType
    public var clientName: String
    /// nil when the daemon did not know it (`client=NAME[unknown]`).
    public var clientAddress: IPAddress?
    public var tlsVersion: String?
    public var certificate: String?
    /// MAIL FROM without angle brackets; empty for the null sender.
    public var from: String
    /// RCPT TO without angle brackets.
    public var recipient: String
    public var outbound: String?
    public var outboundType: ConnectorType?
    public var mode: Mode
    public var authenticatedUser: String?
    /// Facts the judge reads that this line does not fully give, by key: `auth` for lines
    /// written before that field existed, and any value cut at `VerdictLine.maximumValueLength`.
    public var missingFacts: [String]

    /// The session as the judge saw it, as far as the line tells.
    public var sessionFacts: SessionFacts {
        SessionFacts(clientAddress: clientAddress, clientName: clientName, tlsVersion: tlsVersion,
                     verifiedCertificateName: certificate, authenticatedUser: authenticatedUser)
    }

    public var sender: EmailAddress { EmailAddress(parsing: "<" + from + ">") }
    public var recipientAddress: EmailAddress { EmailAddress(parsing: "<" + recipient + ">") }

    /// The recipient was (or, in monitor mode, would have been) refused.
    public var isRefusal: Bool { reason != nil || verdict != .accept }

    /// `reject`, `accept`, or `accept (would reject)` in monitor mode.
    public var outcome: String {
        would.map { "\(verdict.rawValue) (would \($0.rawValue))" } ?? verdict.rawValue
    }
}

public enum VerdictLineReader {
    /// The syslog tag (ident) the daemon logs under.
    public static let ident = "connector-milter"

    /// Lines longer than this are cut by `LogLineSplitter`; no verdict line comes near it.
    public static let maximumLineLength = 1 << 20

    public enum Line: Sendable, Equatable {
        case verdict(VerdictRecord)
        /// Another program's line, or one of the daemon's other messages.
        case other
        /// Tagged as ours and shaped like a verdict line, but not readable as one.
        case malformed(String)
    }

    /// Reads one message as the daemon logs it, without a syslog header:
    /// `4ABC: verdict=accept direction=...`. For tests and for lines taken from a syslog
    /// collector that has already split off the header.
    public static func parse(message: String) -> Line {
        var clock = LogClock(now: Date(), timeZone: TimeZone(identifier: "UTC")!)
        return parse(line: message, clock: &clock)
    }

    /// Reads one log line (a newline is not part of it).
    public static func parse(line: String, clock: inout LogClock) -> Line {
        var text = line
        return text.withUTF8 { parse(bytes: $0, complete: true, clock: &clock) }
    }

    /// Problems that make `message` differ from what `VerdictLine.format` writes: unreadable,
    /// fields missing, unknown or out of order. Empty for a conforming line. Point it at the
    /// verdict lines captured from a real MTA to check that they survive the trip intact.
    public static func conformanceProblems(_ message: String) -> [String] {
        var keys: [String]? = []
        var text = message
        let line = text.withUTF8 { bytes -> Line in
            var clock = LogClock(now: Date(), timeZone: TimeZone(identifier: "UTC")!)
            return parseLine(bytes, complete: true, clock: &clock, keys: &keys)
        }
        let keyList = keys ?? []
        switch line {
        case .other: return ["not a verdict line"]
        case .malformed(let why): return [why]
        case .verdict(let record):
            var problems: [String] = []
            let unknown = keyList.filter { !VerdictLine.keys.contains($0) }
            if !unknown.isEmpty { problems.append("unknown keys: \(unknown.joined(separator: ", "))") }
            let expected = VerdictLine.keys.filter {
                ($0 != "would" || record.would != nil) && ($0 != "reason" || record.reason != nil)
            }
            if keyList != expected {
                problems.append("keys are \(keyList.joined(separator: " ")); expected \(expected.joined(separator: " "))")
            }
            if message.unicodeScalars.contains(where: VerdictLine.isUnsafe) {
                problems.append("the line holds a raw control character")
            }
            return problems
        }
    }

    // MARK: - The syslog header

    /// Reads one line. `complete` is false for a line `LogLineSplitter` had to cut.
    public static func parse(bytes b: UnsafeBufferPointer<UInt8>, complete: Bool, clock: inout LogClock) -> Line {
        var keys: [String]? = nil
        return parseLine(b, complete: complete, clock: &clock, keys: &keys)
    }

    /// `keys`, when not nil, collects every key of a verdict line in order (for conformance checks).
    private static func parseLine(_ b: UnsafeBufferPointer<UInt8>, complete: Bool, clock: inout LogClock,
                                  keys: inout [String]?) -> Line {
        var end = b.count
        while end > 0, b[end - 1] == 0x0D || b[end - 1] == 0x20 { end -= 1 }  // CRLF files, trailing blanks
        var i = 0
        // `<PRI>` as a raw datagram or some collectors write it.
        var hasPriority = false
        if end > 2, b[0] == UInt8(ascii: "<") {
            var j = 1
            while j < end, j <= 4, isDigit(b[j]) { j += 1 }
            if j > 1, j < end, b[j] == UInt8(ascii: ">") { i = j + 1; hasPriority = true }
        }
        if hasPriority, i + 1 < end, b[i] == UInt8(ascii: "1"), b[i + 1] == 0x20 {
            return parse5424(b, from: i + 2, end: end, complete: complete, clock: &clock, keys: &keys)
        }

        let time: TimeSlice
        if let t = TimeSlice.rfc3164(b, at: i, end: end) {
            time = t
        } else if let t = TimeSlice.iso(b, at: i, end: end) {
            time = t
        } else {
            // No header: a bare message, as `classify` prints it.
            return parseMessage(b, from: i, end: end, time: nil, host: nil, complete: complete, clock: &clock, keys: &keys)
        }
        i = time.end
        guard i < end, b[i] == 0x20 else { return .other }
        i += 1
        // `host tag: msg`, or `tag: msg` for a datagram straight from syslog(3), which has no host.
        var token = i..<scanToken(b, from: i, end: end)
        var host: Range<Int>? = nil
        if !(token.count > 1 && b[token.upperBound - 1] == UInt8(ascii: ":")) {
            host = token
            let start = token.upperBound + 1
            guard start < end else { return .other }
            token = start..<scanToken(b, from: start, end: end)
        }
        guard isOurTag(b, token, colon: true) else { return .other }
        i = token.upperBound
        guard i < end, b[i] == 0x20 else { return .other }
        return parseMessage(b, from: i + 1, end: end, time: time, host: host, complete: complete, clock: &clock, keys: &keys)
    }

    /// `<PRI>1 TIMESTAMP HOST APP-NAME PROCID MSGID STRUCTURED-DATA MSG` (RFC 5424 section 6).
    private static func parse5424(_ b: UnsafeBufferPointer<UInt8>, from start: Int, end: Int, complete: Bool,
                                  clock: inout LogClock, keys: inout [String]?) -> Line {
        var fields: [Range<Int>] = []
        var i = start
        while fields.count < 5 {
            guard i < end else { return .other }
            let stop = scanToken(b, from: i, end: end)
            fields.append(i..<stop)
            i = stop + 1
        }
        guard isOurTag(b, fields[2], colon: false), i < end else { return .other }
        // Structured data: `-`, or one or more `[id param="value"...]` with `\]` escapes.
        if b[i] == UInt8(ascii: "-") {
            i += 1
        } else {
            while i < end, b[i] == UInt8(ascii: "[") {
                i += 1
                while i < end, b[i] != UInt8(ascii: "]") { i += b[i] == UInt8(ascii: "\\") ? 2 : 1 }
                i += 1
            }
        }
        guard i < end, b[i] == 0x20 else { return .other }
        i += 1
        if i + 2 < end, b[i] == 0xEF, b[i + 1] == 0xBB, b[i + 2] == 0xBF { i += 3 }  // the optional BOM
        let stamp = fields[0]
        let time = (stamp.count == 1 && b[stamp.lowerBound] == UInt8(ascii: "-")) ? nil : TimeSlice.iso(b, at: stamp.lowerBound, end: stamp.upperBound)
        let host = (fields[1].count == 1 && b[fields[1].lowerBound] == UInt8(ascii: "-")) ? nil : fields[1]
        return parseMessage(b, from: i, end: end, time: time, host: host, complete: complete, clock: &clock, keys: &keys)
    }

    /// `connector-milter:` or `connector-milter[PID]:` (the colon only in BSD-style headers).
    private static func isOurTag(_ b: UnsafeBufferPointer<UInt8>, _ token: Range<Int>, colon: Bool) -> Bool {
        var stop = token.upperBound
        if colon {
            guard stop > token.lowerBound, b[stop - 1] == UInt8(ascii: ":") else { return false }
            stop -= 1
        }
        if stop > token.lowerBound, b[stop - 1] == UInt8(ascii: "]") {
            var j = stop - 2
            while j > token.lowerBound, isDigit(b[j]) { j -= 1 }
            guard j > token.lowerBound, b[j] == UInt8(ascii: "["), j < stop - 2 else { return false }
            stop = j
        }
        return stop - token.lowerBound == identBytes.count
            && zip(b[token.lowerBound..<stop], identBytes).allSatisfy { $0 == $1 }
    }

    private static let identBytes = Array(ident.utf8)
    private static let verdictKey = Array("verdict=".utf8)
    private static let priorityPrefixes = ["error: ", "warning: ", "notice: ", "info: ", "debug: "].map { Array($0.utf8) }

    // MARK: - The message

    private static func parseMessage(_ b: UnsafeBufferPointer<UInt8>, from start: Int, end: Int, time: TimeSlice?,
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

    // MARK: - Byte helpers

    private static func scanToken(_ b: UnsafeBufferPointer<UInt8>, from start: Int, end: Int) -> Int {
        var i = start
        while i < end, b[i] != 0x20 { i += 1 }
        return i
    }

    @inline(__always) static func isDigit(_ c: UInt8) -> Bool { c >= 0x30 && c <= 0x39 }

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
            return .success(VerdictRecord(
                timestamp: nil, host: nil, queueID: queueID, verdict: verdict, would: would, reason: reason,
                direction: direction, inbound: inbound, inboundType: inboundType, clientName: clientName,
                clientAddress: clientAddress, tlsVersion: tls, certificate: cert, from: from, recipient: rcpt,
                outbound: outbound, outboundType: outboundType, mode: mode, authenticatedUser: auth,
                missingFacts: missing))
        } catch {
            return .failure(error)
        }
    }
}

// MARK: - Time

/// Where a line's timestamp is, parsed only once the line turns out to be ours.
struct TimeSlice {
    enum Kind { case rfc3164, iso }
    let kind: Kind
    let start: Int
    let end: Int

    private static let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        .map { Array($0.utf8) }

    /// `Mmm dd hh:mm:ss` (day padded with a space or a zero).
    static func rfc3164(_ b: UnsafeBufferPointer<UInt8>, at i: Int, end: Int) -> TimeSlice? {
        guard i + 15 <= end, b[i + 3] == 0x20, b[i + 6] == 0x20, b[i + 9] == UInt8(ascii: ":"),
              b[i + 12] == UInt8(ascii: ":"), month(b, i) != nil else { return nil }
        return TimeSlice(kind: .rfc3164, start: i, end: i + 15)
    }

    private static func month(_ b: UnsafeBufferPointer<UInt8>, _ i: Int) -> Int? {
        for (n, m) in months.enumerated() where b[i] == m[0] && b[i + 1] == m[1] && b[i + 2] == m[2] { return n + 1 }
        return nil
    }

    /// `YYYY-MM-DDThh:mm:ss[.fraction][Z|+hh:mm|+hhmm]`.
    static func iso(_ b: UnsafeBufferPointer<UInt8>, at i: Int, end: Int) -> TimeSlice? {
        guard i + 19 <= end, b[i + 4] == UInt8(ascii: "-"), b[i + 7] == UInt8(ascii: "-"),
              b[i + 10] == UInt8(ascii: "T") || b[i + 10] == 0x20, b[i + 13] == UInt8(ascii: ":"),
              b[i + 16] == UInt8(ascii: ":"), VerdictLineReader.isDigit(b[i]) else { return nil }
        var j = i + 19
        if j < end, b[j] == UInt8(ascii: ".") {
            j += 1
            while j < end, VerdictLineReader.isDigit(b[j]) { j += 1 }
        }
        if j < end, b[j] == UInt8(ascii: "Z") {
            j += 1
        } else if j < end, b[j] == UInt8(ascii: "+") || b[j] == UInt8(ascii: "-") {
            j += 1
            while j < end, VerdictLineReader.isDigit(b[j]) || b[j] == UInt8(ascii: ":") { j += 1 }
        }
        return TimeSlice(kind: .iso, start: i, end: j)
    }

    func seconds(_ b: UnsafeBufferPointer<UInt8>, clock: inout LogClock) -> Int64? {
        func number(_ at: Int, _ count: Int) -> Int? {
            var n = 0
            for k in at..<(at + count) {
                guard VerdictLineReader.isDigit(b[k]) else { return nil }
                n = n * 10 + Int(b[k] - 0x30)
            }
            return n
        }
        let s = start
        switch kind {
        case .rfc3164:
            guard let month = Self.month(b, s),
                  let day = b[s + 4] == 0x20 ? number(s + 5, 1) : number(s + 4, 2),
                  let h = number(s + 7, 2), let m = number(s + 10, 2), let sec = number(s + 13, 2) else { return nil }
            return clock.yearless(month: month, day: day, hour: h, minute: m, second: sec)
        case .iso:
            guard let y = number(s, 4), let mo = number(s + 5, 2), let d = number(s + 8, 2),
                  let h = number(s + 11, 2), let mi = number(s + 14, 2), let sec = number(s + 17, 2),
                  (1...12).contains(mo), (1...31).contains(d), h < 24, mi < 60, sec <= 60 else { return nil }
            var offset: Int? = nil
            var j = s + 19
            while j < end, b[j] != UInt8(ascii: "Z"), b[j] != UInt8(ascii: "+"), b[j] != UInt8(ascii: "-") { j += 1 }
            if j < end {
                if b[j] == UInt8(ascii: "Z") {
                    offset = 0
                } else {
                    let sign = b[j] == UInt8(ascii: "-") ? -1 : 1
                    let digits = b[(j + 1)..<end].filter(VerdictLineReader.isDigit)
                    guard digits.count == 4 else { return nil }
                    let hh = Int(digits[0] - 0x30) * 10 + Int(digits[1] - 0x30)
                    let mm = Int(digits[2] - 0x30) * 10 + Int(digits[3] - 0x30)
                    offset = sign * (hh * 3600 + mm * 60)
                }
            }
            let local = LogClock.epochSeconds(year: y, month: mo, day: d, hour: h, minute: mi, second: sec)
            return offset.map { local - Int64($0) } ?? clock.fromLocal(local)
        }
    }
}

/// Turns the wall-clock times of log lines into instants. RFC 3164 lines have no year and no
/// zone: they are read in the local time zone (as the syslog daemon wrote them) and in the
/// current year, or the previous one when that would put the line more than a day in the
/// future (a December log read in January).
public struct LogClock: Sendable {
    public let now: Int64
    public let timeZone: TimeZone
    private let currentYear: Int
    /// The zone offset of the last hour converted: logs are in time order, so it nearly always hits.
    private var cachedHour: Int64 = .min
    private var cachedOffset: Int64 = 0

    public init(now: Date = Date(), timeZone: TimeZone = .current) {
        self.now = Int64(now.timeIntervalSince1970)
        self.timeZone = timeZone
        let local = self.now + Int64(timeZone.secondsFromGMT(for: now))
        currentYear = LogClock.civil(days: local.floorDiv(86400)).year
    }

    mutating func yearless(month: Int, day: Int, hour: Int, minute: Int, second: Int) -> Int64 {
        let t = fromLocal(Self.epochSeconds(year: currentYear, month: month, day: day, hour: hour, minute: minute, second: second))
        if t > now + 86400 {
            return fromLocal(Self.epochSeconds(year: currentYear - 1, month: month, day: day, hour: hour, minute: minute, second: second))
        }
        return t
    }

    /// Local wall-clock seconds to an instant. Around a DST change the hour that happens twice
    /// is read with one of its two offsets: a log line's time is only that exact anyway.
    public mutating func fromLocal(_ local: Int64) -> Int64 {
        let hour = local.floorDiv(3600)
        if hour != cachedHour {
            cachedHour = hour
            cachedOffset = Int64(timeZone.secondsFromGMT(for: Date(timeIntervalSince1970: TimeInterval(local))))
        }
        return local - cachedOffset
    }

    /// Reads `--since`/`--until` arguments: `2026-11-29`, `2026-11-29T01:00`, `2026-11-29 01:00:30`,
    /// each optionally followed by `Z` or an offset like `+01:00`; local time without one.
    public mutating func parseArgument(_ text: String) -> Int64? {
        var t = text
        if t.utf8.count == 10 { t += "T00:00:00" }
        else if t.utf8.count >= 16, !(t.utf8.count > 16 && Array(t.utf8)[16] == UInt8(ascii: ":")) {
            // hh:mm without seconds: insert them before any zone.
            let i = t.index(t.startIndex, offsetBy: 16)
            t = String(t[..<i]) + ":00" + String(t[i...])
        }
        var clock = self
        let result: Int64? = t.withCString { pointer in
            let count = strlen(pointer)
            return pointer.withMemoryRebound(to: UInt8.self, capacity: count) { p in
                let b = UnsafeBufferPointer(start: p, count: count)
                guard let slice = TimeSlice.iso(b, at: 0, end: count), slice.end == count else { return nil }
                return slice.seconds(b, clock: &clock)
            }
        }
        self = clock
        return result
    }

    /// `2026-11-29T01:02:03+01:00`, in this clock's zone.
    public func format(_ seconds: Int64) -> String {
        let offset = timeZone.secondsFromGMT(for: Date(timeIntervalSince1970: TimeInterval(seconds)))
        let local = seconds + Int64(offset)
        let (y, mo, d) = Self.civil(days: local.floorDiv(86400))
        let s = Int(local - local.floorDiv(86400) * 86400)
        func two(_ n: Int) -> String { n < 10 ? "0\(n)" : "\(n)" }
        let zone = offset == 0 ? "Z" : (offset < 0 ? "-" : "+") + two(abs(offset) / 3600) + ":" + two(abs(offset) % 3600 / 60)
        return "\(y)-\(two(mo))-\(two(d))T\(two(s / 3600)):\(two(s % 3600 / 60)):\(two(s % 60))\(zone)"
    }

    /// Seconds since 1970 of a proleptic Gregorian date and time, without a zone
    /// (Howard Hinnant's days_from_civil).
    static func epochSeconds(year: Int, month: Int, day: Int, hour: Int, minute: Int, second: Int) -> Int64 {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let doy = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        let days = era * 146097 + doe - 719468
        return Int64(days) * 86400 + Int64(hour * 3600 + minute * 60 + second)
    }

    static func civil(days: Int64) -> (year: Int, month: Int, day: Int) {
        let z = Int(days) + 719468
        let era = (z >= 0 ? z : z - 146096) / 146097
        let doe = z - era * 146097
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let d = doy - (153 * mp + 2) / 5 + 1
        let m = mp < 10 ? mp + 3 : mp - 9
        return (yoe + era * 400 + (m <= 2 ? 1 : 0), m, d)
    }
}

private extension Int64 {
    func floorDiv(_ d: Int64) -> Int64 { self >= 0 ? self / d : -((-self + d - 1) / d) }
}

// MARK: - Lines out of chunks

/// Splits a byte stream read in chunks into lines. A line longer than
/// `VerdictLineReader.maximumLineLength` is handed on cut, flagged incomplete, so a file
/// without newlines cannot make the reader hold it all.
public struct LogLineSplitter {
    private var pending: [UInt8] = []
    private var pendingIsCut = false

    public init() {}

    public mutating func feed(_ chunk: UnsafeBufferPointer<UInt8>,
                              _ body: (_ line: UnsafeBufferPointer<UInt8>, _ complete: Bool) -> Void) {
        let limit = VerdictLineReader.maximumLineLength
        var start = 0
        while start < chunk.count {
            let rest = UnsafeBufferPointer(rebasing: chunk[start...])
            guard let newline = memchr(rest.baseAddress!, 0x0A, rest.count) else {
                keep(rest, limit: limit)
                return
            }
            let length = rest.baseAddress!.distance(to: newline.assumingMemoryBound(to: UInt8.self))
            let line = UnsafeBufferPointer(rebasing: rest[..<length])
            if pending.isEmpty && !pendingIsCut {
                // The common case: the whole line is in this chunk, hand it on without copying.
                body(UnsafeBufferPointer(rebasing: line.prefix(limit)), line.count <= limit)
            } else {
                keep(line, limit: limit)
                pending.withUnsafeBufferPointer { body($0, !pendingIsCut) }
                pending.removeAll(keepingCapacity: true)
                pendingIsCut = false
            }
            start += length + 1
        }
    }

    /// Holds the start of a line that goes on in the next chunk, up to the limit.
    private mutating func keep(_ part: UnsafeBufferPointer<UInt8>, limit: Int) {
        let room = max(0, limit - pending.count)
        if part.count > room { pendingIsCut = true }
        pending.append(contentsOf: part.prefix(room))
    }

    /// The last line, when the stream does not end with a newline.
    public mutating func finish(_ body: (_ line: UnsafeBufferPointer<UInt8>, _ complete: Bool) -> Void) {
        if !pending.isEmpty || pendingIsCut {
            pending.withUnsafeBufferPointer { body($0, !pendingIsCut) }
        }
        pending.removeAll()
        pendingIsCut = false
    }
}
