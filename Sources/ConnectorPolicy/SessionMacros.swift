/// Turns what the MTA's macros say about TLS and authentication into session facts. Postfix
/// and Sendmail name and encode these differently; every value may come from a stranger.
public enum SessionMacros {
    /// Postfix: `{tls_version}`, and `{cert_subject}` = the CN of a *verified* certificate.
    /// Sendmail: `{verify}` (OK = verified) and `{cn_subject}` (xtext), `{cert_subject}` being
    /// a full DN that is set even when verification failed.
    public static let tlsMacros = ["{tls_version}", "{cipher}", "{cipher_bits}", "{cert_subject}", "{cert_issuer}",
                            "{verify}", "{cn_subject}"]

    /// The TLS facts the macros give, or nil when they say nothing (so facts from an earlier
    /// stage are kept: a later stage's absent macro is not a downgrade).
    public static func tls(_ macro: (String) -> String?) -> (version: String, certificateName: String?)? {
        guard let version = macro("{tls_version}"), !version.isEmpty else { return nil }
        let name: String?
        if let verify = macro("{verify}") {
            // Sendmail: only a verified certificate names anyone.
            name = verify == "OK" || verify == "TRUSTED" ? macro("{cn_subject}").map(xtextDecoded) : nil
        } else {
            // Postfix hands the CN only for a verified certificate. A DN ("/CN=...") is
            // Sendmail's {cert_subject}, set for unverified certificates too: it comes without
            // {verify} only from a Sendmail that did not take our macro list (its stock HELO
            // list has {cert_subject} but not {verify}), and then it proves nothing.
            name = macro("{cert_subject}").flatMap { $0.hasPrefix("/") ? nil : $0 }
        }
        return (version, name.flatMap { $0.isEmpty ? nil : $0 })
    }

    /// Decodes RFC 3461 xtext (`+20` is a space), as Sendmail writes certificate names.
    /// A malformed escape is kept literally: it is then compared, and fails to match, as is.
    public static func xtextDecoded(_ text: String) -> String {
        guard text.utf8.contains(UInt8(ascii: "+")) else { return text }
        var out: [UInt8] = []
        let bytes = Array(text.utf8)
        var i = 0
        while i < bytes.count {
            if bytes[i] == UInt8(ascii: "+"), i + 2 < bytes.count,
               let hi = hexValue(bytes[i + 1]), let lo = hexValue(bytes[i + 2]) {
                out.append(hi << 4 | lo)
                i += 3
            } else {
                out.append(bytes[i])
                i += 1
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    private static func hexValue(_ b: UInt8) -> UInt8? {
        switch b {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return b - UInt8(ascii: "0")
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return b - UInt8(ascii: "A") + 10
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return b - UInt8(ascii: "a") + 10
        default: return nil
        }
    }

    /// The client name for the verdict line: the MTA's verified name, or "unknown" where it
    /// has none (Postfix writes "unknown", libmilter "[203.0.113.5]").
    public static func clientName(_ hostname: String) -> String {
        hostname.isEmpty || hostname.hasPrefix("[") ? "unknown" : hostname
    }
}
