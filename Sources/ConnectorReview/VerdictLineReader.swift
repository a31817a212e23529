// Reads verdict lines (docs/verdict-line.md) back out of syslog files, for `report` and `simulate`.
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
    /// The original client enhanced filtering judged the recipient on; nil for `none` and for
    /// lines written before the field existed (`hasOriginalClientField` tells them apart).
    public var originalClient: IPAddress? = nil
    /// The line has `original_client=` (written since enhanced filtering exists).
    public var hasOriginalClientField = false
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

    /// Reads one line. `complete` is false for a line `LogLineSplitter` had to cut.
    public static func parse(bytes b: UnsafeBufferPointer<UInt8>, complete: Bool, clock: inout LogClock) -> Line {
        var keys: [String]? = nil
        return parseLine(b, complete: complete, clock: &clock, keys: &keys)
    }

    @inline(__always) static func isDigit(_ c: UInt8) -> Bool { c >= 0x30 && c <= 0x39 }
}
