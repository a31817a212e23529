// The syslog header in front of a verdict line: RFC 3164, ISO timestamps (rsyslog's
// high-precision format, journalctl short-iso), RFC 5424, or none (a bare message).

extension VerdictLineReader {
    /// `keys`, when not nil, collects every key of a verdict line in order (for conformance checks).
    static func parseLine(_ b: UnsafeBufferPointer<UInt8>, complete: Bool, clock: inout LogClock,
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

    private static func scanToken(_ b: UnsafeBufferPointer<UInt8>, from start: Int, end: Int) -> Int {
        var i = start
        while i < end, b[i] != 0x20 { i += 1 }
        return i
    }
}
