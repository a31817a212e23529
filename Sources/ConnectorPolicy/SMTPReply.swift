/// The SMTP reply of a refusal, from the policy to the MTA, valid by construction:
/// libmilter's `smfi_setreply` silently drops a reply whose code and enhanced code disagree,
/// and Postfix calls a milter broken for a class mismatch, so nothing here can hold one.
public struct SMTPReply: Sendable, Equatable, CustomStringConvertible {
    /// libmilter's MAXREPLYLEN: the whole "CODE ENHANCED TEXT" line, `%` already doubled.
    public static let maximumLength = 980

    /// 400..<600.
    public let code: Int
    /// "class.subject.detail" (RFC 3463) whose class digit equals the first digit of `code`.
    public let enhancedCode: String
    /// Printable ASCII only (see `sanitize`), short enough for `maximumLength`.
    public let text: String

    /// Fails when `code` is not 4xx/5xx or `enhancedCode` is not a valid enhanced status code
    /// of the same class. The text is never a reason to fail: it is sanitized and truncated.
    public init?(code: Int, enhancedCode: String, text: String) {
        guard (400..<600).contains(code),
              SMTPReply.isValidEnhancedCode(enhancedCode, classDigit: code / 100)
        else { return nil }
        self.code = code
        self.enhancedCode = enhancedCode
        // 3 digits, a space, the enhanced code, a space, then the escaped text.
        let budget = SMTPReply.maximumLength - 3 - 1 - enhancedCode.utf8.count - 1
        self.text = SMTPReply.truncate(SMTPReply.sanitize(text), escapedLength: budget)
    }

    /// A reply written in the program, like the policy's refusals. Such a reply is a
    /// constant, so one that is not valid is a programmer error, which the first test that
    /// meets it catches (every refusal reason is tested), never a condition to handle at run time.
    public init(constant code: Int, _ enhancedCode: String, _ text: String) {
        guard let reply = SMTPReply(code: code, enhancedCode: enhancedCode, text: text),
              reply.text == text
        else { preconditionFailure("\(code) \(enhancedCode) \(text) is not a valid SMTP reply") }
        self = reply
    }

    /// A 5xx refusal is permanent (libmilter SMFIS_REJECT); a 4xx one is temporary (SMFIS_TEMPFAIL).
    public var isPermanent: Bool { code >= 500 }

    public var description: String { "\(code) \(enhancedCode) \(text)" }

    /// `text` as `smfi_setreply` wants it: libmilter hands the reply to the MTA as a format
    /// string, so a lone `%` would be taken for a conversion.
    public var escapedText: String { text.replacingPercent() }

    /// Replies carry values an SMTP client chose (addresses, names): CR, LF and NUL would end
    /// or split the reply line (libmilter refuses CR/LF outright), other control characters
    /// have no business in it, and a reply without SMTPUTF8 is ASCII. Control characters
    /// become spaces, non-ASCII characters become "?".
    public static func sanitize(_ text: String) -> String {
        var out = String.UnicodeScalarView()
        for scalar in text.unicodeScalars {
            switch scalar.value {
            case 0x20..<0x7F: out.append(scalar)
            case 0..<0x20, 0x7F: out.append(" ")
            default: out.append("?")
            }
        }
        return String(out)
    }

    static func isValidEnhancedCode(_ code: String, classDigit: Int) -> Bool {
        let parts = code.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3, parts[0] == String(classDigit) else { return false }
        return parts.dropFirst().allSatisfy { part in
            (1...3).contains(part.count) && part.utf8.allSatisfy { (0x30...0x39).contains($0) }
        }
    }

    /// Cuts sanitized (ASCII) text so that, once `%` is doubled, it fits `escapedLength` bytes.
    static func truncate(_ text: String, escapedLength: Int) -> String {
        var used = 0
        var end = text.startIndex
        for index in text.indices {
            let cost = text[index] == "%" ? 2 : 1
            if used + cost > escapedLength { break }
            used += cost
            end = text.index(after: index)
        }
        return String(text[..<end])
    }
}

extension String {
    fileprivate func replacingPercent() -> String {
        var out = ""
        out.reserveCapacity(utf8.count)
        for character in self {
            if character == "%" { out += "%%" } else { out.append(character) }
        }
        return out
    }
}
