// Timestamps of log lines and the calendar arithmetic that turns them into instants.

import Foundation

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
