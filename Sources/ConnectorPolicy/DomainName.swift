// Domain names as the policy writes them and as SMTP clients send them.

/// A domain in a policy: `contoso.com` (that name), `*.contoso.com` (contoso.com and all its
/// subdomains, as EOP reads it), or `*` (any domain).
public enum DomainPattern: Sendable, Hashable, CustomStringConvertible {
    case exact(String)
    case wildcard(String)
    case any

    /// Parses a pattern as written in the policy; `nil` with the reason when it is not a domain.
    public static func parse(_ text: String, allowAny: Bool = true) -> Result<DomainPattern, DomainError> {
        if text == "*" {
            return allowAny ? .success(.any) : .failure(.anyNotAllowed)
        }
        if text.hasPrefix("*.") {
            return DomainName.validate(String(text.dropFirst(2))).map { .wildcard($0) }
        }
        return DomainName.validate(text).map { .exact($0) }
    }

    public func matches(_ domain: String) -> Bool {
        switch self {
        case .any: return true
        case .exact(let name): return domain == name
        case .wildcard(let name): return DomainName.isSame(domain, orSubdomainOf: name)
        }
    }

    public var description: String {
        switch self {
        case .any: return "*"
        case .exact(let name): return name
        case .wildcard(let name): return "*." + name
        }
    }
}

public enum DomainError: Error, Equatable, CustomStringConvertible {
    case empty
    case tooLong
    case emptyLabel
    case labelTooLong(String)
    case badCharacter(Character)
    case hyphenAtLabelEdge(String)
    case anyNotAllowed

    public var description: String {
        switch self {
        case .empty: return "empty domain name"
        case .tooLong: return "domain name longer than 253 characters"
        case .emptyLabel: return "domain name has an empty label (two dots in a row, or a leading dot)"
        case .labelTooLong(let label): return "label \"\(label)\" is longer than 63 characters"
        case .badCharacter(let c):
            return "character \(String(reflecting: String(c))) is not allowed in a domain name "
                + "(letters, digits, '-' and '_'; write internationalized names as xn-- punycode)"
        case .hyphenAtLabelEdge(let label): return "label \"\(label)\" starts or ends with '-'"
        case .anyNotAllowed: return "\"*\" (any domain) is not allowed here"
        }
    }
}

public enum DomainName {
    /// Checks a domain name from the policy and returns it lowercased, without a trailing dot.
    public static func validate(_ text: String) -> Result<String, DomainError> {
        var name = text
        if name.hasSuffix(".") { name.removeLast() }
        if name.isEmpty { return .failure(.empty) }
        if name.utf8.count > 253 { return .failure(.tooLong) }
        for label in name.split(separator: ".", omittingEmptySubsequences: false) {
            if label.isEmpty { return .failure(.emptyLabel) }
            if label.utf8.count > 63 { return .failure(.labelTooLong(String(label))) }
            for c in label where !(c.isASCII && (c.isLetter || c.isNumber || c == "-" || c == "_")) {
                return .failure(.badCharacter(c))
            }
            if label.hasPrefix("-") || label.hasSuffix("-") { return .failure(.hyphenAtLabelEdge(String(label))) }
        }
        return .success(lowercasedASCII(name))
    }

    /// Lowercases ASCII letters only: domain comparison is ASCII case-insensitive (RFC 4343),
    /// and a hostile non-ASCII name must not be folded into an accepted one.
    public static func lowercasedASCII(_ text: String) -> String {
        var needs = false
        for b in text.utf8 where b >= 0x41 && b <= 0x5A { needs = true; break }
        if !needs { return text }
        return String(decoding: text.utf8.map(lowercasedASCII), as: UTF8.self)
    }

    /// The same for one byte, for comparisons that need no new string.
    public static func lowercasedASCII(_ byte: UInt8) -> UInt8 {
        byte >= 0x41 && byte <= 0x5A ? byte | 0x20 : byte
    }

    /// Normalizes a domain an SMTP client sent: ASCII-lowercased, one trailing dot removed.
    public static func normalize(_ text: Substring) -> String {
        var name = text
        if name.hasSuffix(".") { name = name.dropLast() }
        return lowercasedASCII(String(name))
    }

    public static func normalize(_ text: String) -> String { normalize(Substring(text)) }

    /// `domain` is `parent` or ends with `.parent`. Both must be normalized.
    public static func isSame(_ domain: String, orSubdomainOf parent: String) -> Bool {
        if domain == parent { return true }
        return domain.utf8.count > parent.utf8.count + 1
            && domain.hasSuffix(parent)
            && domain.utf8.dropLast(parent.utf8.count).last == UInt8(ascii: ".")
    }
}

/// An envelope address as the MTA hands it to the milter (`<user@example.com>`, `<>`, or bare).
public struct EmailAddress: Sendable, Equatable {
    /// The address without angle brackets, as the client wrote it (for the verdict line).
    public var address: String
    /// The domain, normalized; empty for the null sender and for addresses without a domain.
    public var domain: String

    public var isNull: Bool { address.isEmpty }

    public init(parsing raw: String) {
        var text = Substring(raw.trimmingSpaces())
        if text.hasPrefix("<") && text.hasSuffix(">") && text.count >= 2 {
            text = text.dropFirst().dropLast()
        }
        // RFC 5321 source route: <@relay1,@relay2:user@domain>; only the mailbox counts.
        if text.hasPrefix("@"), let colon = text.firstIndex(of: ":") {
            text = text[text.index(after: colon)...]
        }
        address = String(text)
        if let at = text.lastIndex(of: "@") {
            let domainPart = text[text.index(after: at)...]
            // An address literal (user@[192.0.2.1]) is never one of the organization's domains.
            domain = domainPart.hasPrefix("[") ? String(domainPart) : DomainName.normalize(domainPart)
        } else {
            domain = ""
        }
    }
}

extension String {
    func trimmingSpaces() -> String {
        var s = Substring(self)
        while let f = s.first, f == " " || f == "\t" { s = s.dropFirst() }
        while let l = s.last, l == " " || l == "\t" { s = s.dropLast() }
        return String(s)
    }
}
