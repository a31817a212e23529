// Enhanced filtering: the original client of a message that a filtering service relayed.
//
// A service in front of the MTA (a hosted filter, a partner's relay) connects from its own
// addresses, so every message looks as if the service sent it. Each hop writes a Received
// header on top of the ones below it, naming the client that connected to it. Walking them
// from the top, past the hops the connector says to skip, finds the first client that is not
// the service's: the original client.
//
// Trust: a Received header is only as good as the hop that wrote it. The walk reads a header
// only while every hop above it was a skipped one (written by the MTA itself or by the
// service); the first address that is not skipped ends the walk, so lines an attacker wrote
// below it are never read. A header that names no client address where one is needed ends
// the walk with no answer: the message is then judged on its connecting client, as without
// enhanced filtering.

/// The client a Received header says connected to the hop that wrote it.
public enum ReceivedHeader {
    /// Longest header value read; a real one is a few hundred bytes.
    static let maximumLength = 8192

    /// The client address in the `from` clause, in the forms MTAs write:
    /// - Postfix: `from helo (name [192.0.2.1])`, `(unknown [IPv6:2001:db8::1])`
    /// - Sendmail: `from helo (name [192.0.2.1] (may be forged))`, `(name [IPv6:2001:db8::1])`
    /// - Google: `from name (name. [209.85.220.41])`
    /// - Exim: `from name ([192.0.2.1] helo=x)`, or `from [192.0.2.1] (helo=x)`
    /// - Exchange: `from EX1.contoso.com (10.0.0.1) by EX2...` (no brackets)
    /// The address is taken from the `from` clause only (before ` by `), so an address named
    /// in the `by` clause, a `for` clause or a comment further on cannot stand in for it.
    /// The word right after `from` is the client's HELO, which the client chose: a literal
    /// there counts only when the hop wrote no address of its own (Exim without reverse DNS).
    /// Likewise `helo=[...]` and other `key=value` words are the client's, never the address.
    public static func clientAddress(_ value: String) -> IPAddress? {
        guard value.utf8.count <= maximumLength else { return nil }
        // Unfolded and with runs of white space as one space: headers may be folded anywhere.
        // Split on scalars, not Characters: a space followed by a combining mark is one
        // Character, and would glue two words together.
        let words = value.unicodeScalars.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\r" || $0 == "\n" })
            .map { Substring($0) }
        guard let first = words.first, first.lowercased() == "from" else { return nil }
        var clause: [Substring] = []
        for word in words.dropFirst() {
            if word.lowercased() == "by" { break }
            clause.append(word)
        }
        guard !clause.isEmpty else { return nil }
        let observed = clause.dropFirst().filter { !$0.contains("=") }
        // A bracketed literal after the HELO is what the hop saw on the socket.
        for word in observed {
            if let address = bracketedLiteral(word) { return address }
        }
        // Exchange: the address alone in parentheses, right after the name.
        for word in observed {
            guard word.hasPrefix("("), word.hasSuffix(")"), word.count > 2 else { continue }
            if let address = IPAddress(word.dropFirst().dropLast()) { return address }
        }
        return bracketedLiteral(clause[0])
    }

    /// The value of a `Received:` field written with its name (`Received: from ...`); nil
    /// when `field` does not start with that name.
    public static func value(ofField field: String) -> String? {
        guard let colon = field.firstIndex(of: ":"),
              field[..<colon].trimmingCharacters(in: " \t").caseInsensitiveEquals("received") else { return nil }
        return String(field[field.index(after: colon)...]).trimmingCharacters(in: " \t")
    }

    /// The Received header values of a message's header section (or the whole message, up to
    /// its first empty line), in order, folded lines joined.
    public static func values(inHeaders text: String) -> [String] {
        var fields: [String] = []
        for scalars in text.unicodeScalars.split(omittingEmptySubsequences: false, whereSeparator: { $0 == "\n" }) {
            let line = Substring(scalars.last == "\r" ? scalars.dropLast() : scalars)
            if line.isEmpty { break }
            if line.unicodeScalars.first == " " || line.unicodeScalars.first == "\t" {
                if !fields.isEmpty { fields[fields.count - 1] += " " + line.trimmingCharacters(in: " \t") }
            } else {
                fields.append(String(line))
            }
        }
        return fields.compactMap(value(ofField:))
    }

    /// `[192.0.2.1]`, `([192.0.2.1]`, `[IPv6:2001:db8::1])`, `[192.0.2.1];`: the literal
    /// inside the brackets, which must be a whole address.
    private static func bracketedLiteral(_ word: Substring) -> IPAddress? {
        guard let open = word.firstIndex(of: "["), let close = word[open...].firstIndex(of: "]") else { return nil }
        let inside = word[word.index(after: open)..<close]
        guard !inside.isEmpty else { return nil }
        return IPAddress(inside)
    }
}

extension StringProtocol {
    /// Trims scalars, not Characters (a space followed by a combining mark is one Character).
    fileprivate func trimmingCharacters(in set: String) -> String {
        var s = Substring(self).unicodeScalars
        let trimmed = Set(set.unicodeScalars)
        while let f = s.first, trimmed.contains(f) { s = s.dropFirst() }
        while let l = s.last, trimmed.contains(l) { s = s.dropLast() }
        return String(s)
    }

    fileprivate func caseInsensitiveEquals(_ other: String) -> Bool {
        DomainName.lowercasedASCII(String(self)) == DomainName.lowercasedASCII(other)
    }
}

/// The enhanced-filtering walk over one message's Received headers.
public struct ReceivedChain: Sendable, Equatable {
    /// The Received header values, most recent (topmost) first, as the MTA showed them.
    public var headers: [String]

    public init(headers: [String]) {
        self.headers = headers
    }

    /// Most Received headers read for one message: enough for any real path, and a bound on
    /// what a stranger's message can make the walk do.
    public static let maximumHops = 64

    /// The first client, walking down from the connecting one, that `isSkipped` does not
    /// cover; nil when the connecting client is itself not skipped (the service is not in
    /// front), when a header on the way names no client, or when every hop is skipped.
    public func originalClient(connecting: IPAddress, isSkipped: (IPAddress) -> Bool) -> IPAddress? {
        guard isSkipped(connecting) else { return nil }
        for value in headers.prefix(Self.maximumHops) {
            guard let client = ReceivedHeader.clientAddress(value) else { return nil }
            if !isSkipped(client) { return client }
        }
        return nil
    }
}
