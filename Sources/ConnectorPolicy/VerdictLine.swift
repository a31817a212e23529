// The verdict line (docs/verdict-line.md): one line per recipient decision, `key=value` fields that
// a hostile SMTP client cannot forge, whatever it puts in its addresses or names.
//
// The line carries every fact the judge reads, so `connector-milter simulate` can judge the
// same recipient again under another policy. Fields added since the first release are appended after
// `mode=`, never inserted: readers that know only the first fields keep working, and
// `VerdictLineReader` reads lines written before a field existed as "fact unknown".
//
// Fields added since the first release, in order:
//   auth="LOGIN"|none   the SASL login name (`{auth_authen}`), which makes a client originating.
//   original_client=IP|none   the original client enhanced filtering judged the recipient on.

public enum VerdictLine {
    /// Longest value written, in Unicode scalars; longer values end in "...". SMTP limits an
    /// address to 256 octets, so only hostile values are cut, and a syslog line stays whole.
    public static let maximumValueLength = 512

    /// Every key `format` writes, in the order it writes them; `would` and `reason` appear only
    /// when the decision has them. The first release's fields first, then the ones added since.
    public static let keys = ["verdict", "would", "reason", "direction", "inbound", "inbound_type", "client", "tls",
                              "cert", "from", "rcpt", "outbound", "outbound_type", "mode", "auth",
                              "original_client"]

    public static func format(queueID: String?, decision: Decision, session: SessionFacts,
                              from: EmailAddress, recipient: EmailAddress, originalClient: IPAddress? = nil) -> String {
        var line = ""
        line.reserveCapacity(256)
        line += queueID.map { quoteIfNeeded($0) } ?? "NOQUEUE"
        line += ": verdict=" + decision.verdict.rawValue
        if let would = decision.wouldBe { line += " would=" + would.rawValue }
        if let refusal = decision.refusal { line += " reason=" + refusal.reason.rawValue }
        line += " direction=" + decision.direction.rawValue
        line += " inbound=" + (decision.inbound.map { quoted($0.name) } ?? "none")
        line += " inbound_type=" + decision.inboundType.rawValue
        line += " client=" + quoteIfNeeded(clientValue(session))
        line += " tls=" + (session.tlsVersion.map { quoteIfNeeded($0) } ?? "none")
        line += " cert=" + (session.isTLS ? session.verifiedCertificateName.map { quoted($0) } ?? "none" : "none")
        line += " from=" + quoteIfNeeded("<" + from.address + ">")
        line += " rcpt=" + quoteIfNeeded("<" + recipient.address + ">")
        line += " outbound=" + (decision.outbound.map { quoted($0.name) } ?? "none")
        line += " outbound_type=" + (decision.outbound?.type.rawValue ?? "none")
        line += " mode=" + decision.mode.rawValue
        // Always quoted when set, so a login literally named "none" is not read as no login.
        // An empty login counts as none, as it does for the judge.
        line += " auth=" + (session.authenticatedUser.flatMap { $0.isEmpty ? nil : quoted($0) } ?? "none")
        // The client enhanced filtering found behind a service in front, and judged this
        // recipient on; `none` when there was none to use (docs/enhanced-filtering.md).
        line += " original_client=" + (originalClient?.description ?? "none")
        return line
    }

    /// `NAME[IP]`, with an overlong NAME cut rather than the whole value, so `[IP]` survives.
    static func clientValue(_ session: SessionFacts) -> String {
        let address = "[" + (session.clientAddress?.description ?? "unknown") + "]"
        let room = maximumValueLength - address.unicodeScalars.count - 3
        guard session.clientName.unicodeScalars.count > room else { return session.clientName + address }
        var name = String.UnicodeScalarView()
        name.append(contentsOf: session.clientName.unicodeScalars.prefix(room))
        return String(name) + "..." + address
    }

    /// The value as is when it is safe bare, else quoted and escaped.
    public static func quoteIfNeeded(_ value: String) -> String {
        needsQuotes(value) ? quoted(value) : value
    }

    static func needsQuotes(_ value: String) -> Bool {
        if value.isEmpty || value.unicodeScalars.count > maximumValueLength { return true }
        for s in value.unicodeScalars {
            switch s {
            case " ", "\"", "=", "\\": return true
            default: if isUnsafe(s) { return true }
            }
        }
        return false
    }

    /// Control characters (C0, DEL, C1) and the Unicode line and paragraph separators would
    /// break or fake a line in a log viewer; they are written as escapes.
    package static func isUnsafe(_ s: Unicode.Scalar) -> Bool {
        s.value < 0x20 || (s.value >= 0x7F && s.value <= 0x9F) || s.value == 0x2028 || s.value == 0x2029
            || s.value == 0xFEFF
    }

    /// `"value"` with `\"`, `\\`, `\xHH` (C0, DEL) and `\u{HHHH}` (other unsafe scalars) escapes.
    public static func quoted(_ value: String) -> String {
        var out = "\""
        var count = 0
        for s in value.unicodeScalars {
            if count == maximumValueLength { out += "..."; break }
            count += 1
            switch s {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            default:
                if isUnsafe(s) {
                    if s.value < 0x80 {
                        out += "\\x" + (s.value < 0x10 ? "0" : "") + String(s.value, radix: 16)
                    } else {
                        out += "\\u{" + String(s.value, radix: 16) + "}"
                    }
                } else {
                    out.unicodeScalars.append(s)
                }
            }
        }
        return out + "\""
    }
}
