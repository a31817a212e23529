// Reads the policy file (docs/policy-file.md) into a `Policy`, or lists every problem in it.
//
// Three stages, each refusing what the next cannot handle safely:
//   1. bytes: readable, at most 64 MiB, UTF-8 (`load(path:)`);
//   2. YAML: no anchors or aliases (`YAMLPrescan`), then libyaml through `Yams.compose`, whose
//      syntax errors (tabs, duplicate keys, a second document...) are reworded for an admin;
//   3. policy: `PolicyReader` walks the tree against the table of keys below, collecting all
//      errors instead of stopping at the first.

import Dispatch
import Foundation
import Yams

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

public enum PolicyParser {
    /// A policy of a thousand connectors is well under a megabyte; the limit only bounds what a
    /// runaway or hostile file can cost (libyaml keeps the whole document in memory).
    public static let maximumFileSize = 64 << 20

    /// Parses policy text; `file` is only used to label the errors. Safe to call from any thread:
    /// the work runs on a thread of its own (see `onLargeStack`), and this one waits for it.
    public static func parse(_ yaml: String, file: String) -> Result<Policy, PolicyErrors> {
        onLargeStack { parseHere(yaml, file: file) }
    }

    /// Yams composes (and Swift frees) the YAML tree recursively, about 1 KiB of stack per
    /// level, and libyaml allows 1000 levels: a deeply nested file would overflow the 512 KiB
    /// stack of a secondary thread (measured: it does at 500 levels). 16 MiB is four times what
    /// the deepest file libyaml accepts needs; untouched stack pages cost no memory.
    private static func onLargeStack(_ work: @escaping @Sendable () -> Result<Policy, PolicyErrors>) -> Result<Policy, PolicyErrors> {
        final class Outcome: @unchecked Sendable {
            // Written by the worker before it signals, read after the wait: the semaphore orders them.
            var result: Result<Policy, PolicyErrors>?
        }
        let outcome = Outcome()
        let done = DispatchSemaphore(value: 0)
        let thread = Thread {
            outcome.result = work()
            done.signal()
        }
        thread.stackSize = 16 << 20
        thread.start()
        done.wait()
        return outcome.result!
    }

    private static func parseHere(_ yaml: String, file: String) -> Result<Policy, PolicyErrors> {
        func failure(_ problems: [(Position, String)]) -> Result<Policy, PolicyErrors> {
            .failure(PolicyErrors(problems.map {
                PolicyError(file: file, line: $0.0.line, column: $0.0.column, message: $0.1)
            }))
        }
        if yaml.utf8.count > maximumFileSize {
            return failure([(.start, "the policy file is larger than 64 MiB")])
        }
        // Before libyaml: an alias used as a mapping key makes Yams hash the whole aliased tree
        // while checking for duplicate keys, so a "billion laughs" file would spin for hours.
        let prescan = YAMLPrescan.findings(in: yaml)
        if !prescan.isEmpty { return failure(prescan) }

        let root: Node?
        do {
            // Explicit .utf8: the default encoding reads (and prints) an environment variable.
            root = try Yams.compose(yaml: yaml, .default, .default, .utf8)
        } catch {
            return failure([YAMLSyntax.describe(error, in: yaml)])
        }
        guard let root else { return failure([(.start, "empty policy file")]) }

        var reader = PolicyReader()
        let policy = reader.readPolicy(root)
        if let policy, reader.problems.isEmpty { return .success(policy) }
        return failure(reader.problems)
    }

    /// Reads and parses a policy file. An unreadable file, a file larger than 64 MiB or one
    /// that is not UTF-8 is one error at `FILE:1:1` (or at the first bad byte) with the reason.
    public static func load(path: String) -> Result<Policy, PolicyErrors> {
        func failure(_ line: Int, _ column: Int, _ message: String) -> Result<Policy, PolicyErrors> {
            .failure(PolicyErrors([PolicyError(file: path, line: line, column: column, message: message)]))
        }
        let bytes: [UInt8]
        switch readFile(path) {
        case .success(let b): bytes = b
        case .failure(let reason): return failure(1, 1, reason.message)
        }
        guard let text = String(validating: bytes, as: UTF8.self) else {
            let bad = firstInvalidUTF8(bytes)
            let byte = String(bytes[bad.offset], radix: 16, uppercase: true)
            return failure(bad.line, bad.column,
                           "the file is not valid UTF-8 (byte 0x\(byte.count == 1 ? "0" : "")\(byte)); save it as UTF-8")
        }
        return parse(text, file: path)
    }

    package struct ReadFailure: Error { package let message: String }

    package static func readFile(_ path: String) -> Result<[UInt8], ReadFailure> {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return .failure(ReadFailure(message: "cannot open the policy file: \(errnoText())")) }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                return .failure(ReadFailure(message: "cannot read the policy file: \(errnoText())"))
            }
            if n == 0 { return .success(bytes) }
            bytes.append(contentsOf: chunk[0..<n])
            // Checked while reading, not with fstat, so /dev/zero or a FIFO cannot exhaust memory.
            if bytes.count > maximumFileSize {
                return .failure(ReadFailure(message: "the policy file is larger than 64 MiB"))
            }
        }
    }

    private static func errnoText() -> String { String(cString: strerror(errno)) }

    static func firstInvalidUTF8(_ bytes: [UInt8]) -> (offset: Int, line: Int, column: Int) {
        var iterator = bytes.makeIterator()
        var parser = Unicode.UTF8.ForwardParser()
        var offset = 0, line = 1, column = 1
        while true {
            switch parser.parseScalar(from: &iterator) {
            case .valid(let encoded):
                offset += encoded.count
                if encoded.count == 1 && encoded.first == 0x0A { line += 1; column = 1 } else { column += 1 }
            case .error:
                return (offset, line, column)
            case .emptyInput:
                return (max(0, bytes.count - 1), line, column)  // unreachable for invalid input
            }
        }
    }
}

/// A 1-based line and column in the policy file.
package struct Position: Hashable, Comparable {
    package var line: Int
    package var column: Int

    package static let start = Position(line: 1, column: 1)

    package init(line: Int, column: Int) {
        self.line = line
        self.column = column
    }

    package init(_ mark: Mark?) {
        self.init(line: mark?.line ?? 1, column: mark?.column ?? 1)
    }

    package init(_ node: Node) { self.init(node.mark) }

    package static func < (a: Position, b: Position) -> Bool { (a.line, a.column) < (b.line, b.column) }

    package var phrase: String { "line \(line), column \(column)" }
}

// MARK: - Stage 2: YAML

/// A quick look at the raw text for anchors (`&a`) and aliases (`*a`), which a policy file does
/// not need and which let a tiny file stand for a huge tree. It also catches the classic
/// mistake of an unquoted `*.contoso.net`, which YAML reads as an alias.
///
/// It is a line-oriented approximation, not a YAML scanner: it skips comments and quoted text
/// and looks for `&`/`*` where a YAML token can start. It can mistake text such as
/// `comment: Tom &Jerry` for an anchor (the message says to quote it); the reader also
/// refuses any node it meets twice, which catches whatever slips past.
enum YAMLPrescan {
    static func findings(in yaml: String) -> [(Position, String)] {
        var findings: [(Position, String)] = []
        var lineNumber = 0
        for line in yaml.unicodeScalars.split(separator: "\n", omittingEmptySubsequences: false) {
            lineNumber += 1
            // Fast path: most lines have neither character.
            if !line.contains(where: { $0 == "&" || $0 == "*" }) { continue }
            let s = Array(line)
            var previous: Unicode.Scalar? = nil  // nil: start of line
            var i = 0
            scanning: while i < s.count {
                let c = s[i]
                let atTokenStart = previous.map { isBlank($0) || "[{,".unicodeScalars.contains($0) || $0 == "\u{FEFF}" } ?? true
                switch c {
                case "#" where previous == nil || isBlank(previous!):
                    break scanning
                case "\"" where atTokenStart, "'" where atTokenStart:
                    i = endOfQuoted(s, from: i)
                    previous = c
                    continue scanning
                case "&" where atTokenStart, "*" where atTokenStart:
                    var j = i + 1
                    while j < s.count, !isBlank(s[j]), !",[]{}".unicodeScalars.contains(s[j]) { j += 1 }
                    let word = String(String.UnicodeScalarView(s[i..<j]))
                    let name = s[(i + 1)..<j]
                    let position = Position(line: lineNumber, column: i + 1)
                    if c == "&" {
                        if !name.isEmpty {
                            findings.append((position, "\"\(word)\" is a YAML anchor; anchors and aliases are not allowed "
                                + "in a policy file (write each value out; if this is text, put the value in quotes)"))
                        }
                    } else if !name.isEmpty && name.allSatisfy(isAnchorCharacter) {
                        findings.append((position, "\"\(word)\" is a YAML alias; anchors and aliases are not allowed "
                            + "in a policy file (write each value out; if this is text, put the value in quotes)"))
                    } else if !name.isEmpty || j == s.count || !isBlank(s[j]) {
                        // `*` followed by a space is ordinary text ("5 * 3").
                        findings.append((position, "\"\(word)\" must be in quotes: YAML reads a value that starts with "
                            + "\"*\" as an alias (write \"\(word)\")"))
                    }
                    i = j
                    previous = j > 0 ? s[j - 1] : nil
                    continue scanning
                default:
                    break
                }
                previous = c
                i += 1
            }
        }
        return findings
    }

    /// Index just past the closing quote, or the end of the line. A quoted value that goes on
    /// over several lines is then scanned as if it were YAML: at worst a false alarm.
    private static func endOfQuoted(_ s: [Unicode.Scalar], from start: Int) -> Int {
        let quote = s[start]
        var j = start + 1
        while j < s.count {
            if quote == "\"" && s[j] == "\\" { j += 2; continue }
            if s[j] == quote {
                if quote == "'" && j + 1 < s.count && s[j + 1] == "'" { j += 2; continue }  // '' is a quote
                return j + 1
            }
            j += 1
        }
        return s.count
    }

    private static func isBlank(_ c: Unicode.Scalar) -> Bool { c == " " || c == "\t" || c == "\r" }

    /// What libyaml accepts in an anchor name.
    private static func isAnchorCharacter(_ c: Unicode.Scalar) -> Bool {
        c.isASCII && (c.properties.isAlphabetic || ("0"..."9").contains(c) || c == "-" || c == "_")
    }
}

/// Rewords libyaml's errors for a mail administrator.
enum YAMLSyntax {
    static func describe(_ error: Error, in yaml: String) -> (Position, String) {
        guard let error = error as? YamlError else { return (.start, "cannot read YAML: \(error)") }
        switch error {
        case .scanner(let context, let problem, let mark, _),
             .parser(let context, let problem, let mark, _),
             .composer(let context, let problem, let mark, _):
            return (Position(mark), message(problem: problem, context: context, at: Position(mark), in: yaml))
        case .reader(let problem, let offset, let value, _):
            let at = offset.map { position(ofCharacter: $0, in: yaml) } ?? Position.start
            if problem == "control characters are not allowed" && value >= 0 {
                let code = String(value, radix: 16, uppercase: true)
                return (at, "the file contains a control character (U+\(String(repeating: "0", count: max(0, 4 - code.count)))\(code)) "
                    + "that YAML does not allow; remove it")
            }
            return (at, "cannot read YAML: \(problem)")
        case .duplicatedKeysInMapping(let duplicates, let context):
            // Yams gives the first occurrence of the (alphabetically) first duplicated key; the
            // administrator needs the second one, so look for it among the mapping's siblings.
            let key = duplicates.first ?? ""
            let first = Position(context.mark)
            if let second = siblingKey(key, after: first, in: yaml) {
                return (second, "key \"\(key)\" appears twice in the same mapping; the first is at \(first.phrase)")
            }
            return (first, "key \"\(key)\" appears more than once in this mapping")
        case .memory:
            return (.start, "out of memory while reading YAML")
        default:
            return (.start, "cannot read YAML: \(error)")
        }
    }

    private static func message(problem: String, context: YamlError.Context?, at position: Position, in yaml: String) -> String {
        if problem == "found character that cannot start any token", character(at: position, in: yaml) == "\t" {
            return "a tab cannot indent YAML; indent with spaces"
        }
        if problem == "but found another document" {
            return "a second YAML document (\"---\"); a policy file is a single document"
        }
        if problem.hasPrefix("Maximum nesting level reached") {
            return "lists and mappings nested too deeply (libyaml allows 1000 levels)"
        }
        var text = "YAML syntax error: \(problem)"
        if problem == "mapping values are not allowed in this context" {
            text += " (a value that contains \": \" must be in quotes)"
        }
        if let context {
            text += " (\(context.text) that starts at \(Position(context.mark).phrase))"
        }
        return text
    }

    private static func character(at position: Position, in yaml: String) -> Unicode.Scalar? {
        let lines = yaml.unicodeScalars.split(separator: "\n", omittingEmptySubsequences: false)
        guard position.line - 1 < lines.count else { return nil }
        let line = Array(lines[position.line - 1])
        return position.column - 1 < line.count ? line[position.column - 1] : nil
    }

    /// Yams reports reader errors as a Character offset.
    private static func position(ofCharacter offset: Int, in yaml: String) -> Position {
        var line = 1, column = 1
        for c in yaml.prefix(offset) {
            if c == "\n" || c == "\r\n" { line += 1; column = 1 } else { column += c.unicodeScalars.count }
        }
        return Position(line: line, column: column)
    }

    /// The next line after `first` that starts a key `key` at the same column, before the
    /// mapping ends (a line indented less). Block mappings only; flow mappings give up.
    static func siblingKey(_ key: String, after first: Position, in yaml: String) -> Position? {
        let lines = yaml.unicodeScalars.split(separator: "\n", omittingEmptySubsequences: false)
        var index = first.line  // 0-based index of the line after `first`
        while index < lines.count {
            defer { index += 1 }
            let line = String(String.UnicodeScalarView(lines[index]))
            let indent = line.prefix(while: { $0 == " " }).count
            let rest = line.dropFirst(indent)
            if rest.allSatisfy({ $0 == " " || $0 == "\r" || $0 == "\t" }) || rest.hasPrefix("#") { continue }
            if indent + 1 < first.column { return nil }
            if indent + 1 > first.column { continue }
            for spelling in [key, "\"\(key)\"", "'\(key)'"] where rest.hasPrefix(spelling) {
                let after = rest.dropFirst(spelling.count).drop(while: { $0 == " " })
                if after.hasPrefix(":"), after.dropFirst().first.map({ $0 == " " || $0 == "\r" }) ?? true {
                    return Position(line: index + 1, column: first.column)
                }
            }
        }
        return nil
    }
}

// MARK: - Stage 3: the policy

/// Which connectors a key belongs to (docs/policy-file.md).
enum KeyScope {
    case every, inbound, inboundPartner, outbound, outboundOnPremises

    func fits(_ direction: Direction, _ type: ConnectorType) -> Bool {
        switch self {
        case .every: return true
        case .inbound: return direction == .inbound
        case .inboundPartner: return direction == .inbound && type == .partner
        case .outbound: return direction == .outbound
        case .outboundOnPremises: return direction == .outbound && type == .onPremises
        }
    }

    var phrase: String {
        switch self {
        case .every: return "every connector"
        case .inbound: return "inbound connectors"
        case .inboundPartner: return "inbound partner connectors"
        case .outbound: return "outbound connectors"
        case .outboundOnPremises: return "outbound onPremises connectors"
        }
    }
}

enum PolicyKeys {
    static let topLevel = ["organization", "settings", "connectors"]
    static let organization = ["acceptedDomains"]
    static let settings = ["mode", "tlsFailure", "rejectDirectSend", "stampHeaders"]
    /// In the order the policy file reference lists them, which is also the order of suggestions.
    package static let connector: KeyValuePairs<String, KeyScope> = [
        "name": .every, "direction": .every, "type": .every, "enabled": .every, "comment": .every, "mode": .every,
        "senderIPAddresses": .inbound, "tlsSenderCertificateName": .inbound, "requireTls": .inbound,
        "senderDomains": .inboundPartner, "restrictDomainsToIPAddresses": .inboundPartner,
        "restrictDomainsToCertificate": .inboundPartner, "associatedAcceptedDomains": .inboundPartner,
        "recipientDomains": .outbound, "smartHosts": .outbound, "useMXRecord": .outbound,
        "tlsSettings": .outbound, "tlsDomain": .outbound, "requireTlsReceipt": .outbound,
        "validationRecipients": .outbound,
        "allAcceptedDomains": .outboundOnPremises,
    ]
    static func scope(of key: String) -> KeyScope? { connector.first { $0.key == key }?.value }

    static let maximumNameLength = 64

    /// The closest known spelling: equal but for case, or one or two edits away.
    static func suggestion(for word: String, among candidates: [String]) -> String? {
        let lower = word.lowercased()
        if let same = candidates.first(where: { $0.lowercased() == lower }) { return same }
        let scored = candidates.map { ($0, editDistance(lower, $0.lowercased())) }.filter { $0.1 <= 2 }
        return scored.min { $0.1 < $1.1 }?.0
    }

    static func editDistance(_ a: String, _ b: String) -> Int {
        let a = Array(a), b = Array(b)
        if a.isEmpty || b.isEmpty { return max(a.count, b.count) }
        if abs(a.count - b.count) > 2 { return 3 }  // enough to say "not close"
        var row = Array(0...b.count)
        for i in 1...a.count {
            var diagonal = row[0]
            row[0] = i
            for j in 1...b.count {
                let above = row[j]
                row[j] = min(row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1))
                diagonal = above
            }
        }
        return row[b.count]
    }
}

/// One `key: value` of a mapping.
struct Entry {
    let key: String
    let keyNode: Node
    let value: Node
}

/// Walks the composed tree and builds the `Policy`, collecting every problem on the way.
struct PolicyReader {
    private(set) var problems: [(Position, String)] = []
    /// Containers already walked: libyaml hands an alias back as the very node it names, so a
    /// second visit means an alias the prescan missed. Refusing it keeps the walk linear.
    private var visited: Set<Position> = []

    private mutating func problem(_ node: Node, _ message: String) { problems.append((Position(node), message)) }

    // MARK: Generic values

    private static func isNull(_ scalar: Node.Scalar) -> Bool {
        scalar.style == .plain && ["", "~", "null", "Null", "NULL"].contains(scalar.string)
    }

    /// The entries of a mapping, or nil (with a problem) when the node is something else.
    private mutating func entries(of node: Node, _ notAMapping: String) -> [Entry]? {
        guard case .mapping(let mapping) = node else {
            problem(node, notAMapping)
            return nil
        }
        guard visited.insert(Position(node)).inserted else {
            problem(node, "this value is repeated through a YAML alias; anchors and aliases are not allowed in a policy file")
            return nil
        }
        var result: [Entry] = []
        for (key, value) in mapping {
            guard case .scalar(let scalar) = key, !Self.isNull(scalar) else {
                problem(key, "a key must be a plain word such as name or direction")
                continue
            }
            result.append(Entry(key: scalar.string, keyNode: key, value: value))
        }
        return result
    }

    private mutating func unknownKey(_ entry: Entry, in place: String, candidates: [String]) {
        var text = "unknown key \"\(entry.key)\" \(place)"
        if let suggestion = PolicyKeys.suggestion(for: entry.key, among: candidates) {
            text += "; did you mean \"\(suggestion)\"?"
        } else {
            text += " (known keys: \(candidates.joined(separator: ", ")))"
        }
        problem(entry.keyNode, text)
    }

    /// The text of a scalar value, or nil (with a problem) for a list, a mapping or no value.
    private mutating func scalar(_ entry: Entry, _ expectation: String) -> Node.Scalar? {
        switch entry.value {
        case .scalar(let scalar):
            if Self.isNull(scalar) {
                problem(entry.value, "\(entry.key) has no value; it must be \(expectation)")
                return nil
            }
            return scalar
        case .sequence:
            problem(entry.value, "\(entry.key) must be \(expectation), not a list")
        case .mapping:
            problem(entry.value, "\(entry.key) must be \(expectation), not a mapping")
        case .alias:
            problem(entry.value, "\(entry.key): anchors and aliases are not allowed in a policy file")
        }
        return nil
    }

    private mutating func string(_ entry: Entry) -> String? {
        scalar(entry, "a string")?.string
    }

    /// YAML 1.2 core schema: only true and false. `yes`, `on` and friends were booleans in
    /// YAML 1.1 and still are to some tools, which is exactly why they are refused here.
    private mutating func bool(_ entry: Entry) -> Bool? {
        guard let scalar = scalar(entry, "true or false") else { return nil }
        let text = scalar.string
        if scalar.style == .plain {
            if ["true", "True", "TRUE"].contains(text) { return true }
            if ["false", "False", "FALSE"].contains(text) { return false }
            if ["yes", "no", "on", "off", "y", "n"].contains(text.lowercased()) {
                problem(entry.value, "\(entry.key) must be true or false, not \"\(text)\" "
                    + "(YAML 1.2 reads yes, no, on and off as text)")
                return nil
            }
        } else if ["true", "false"].contains(text.lowercased()) {
            problem(entry.value, "\(entry.key) must be true or false without quotes")
            return nil
        }
        problem(entry.value, "\(entry.key) must be true or false, not \"\(text)\"")
        return nil
    }

    private mutating func oneOf<Value: RawRepresentable & CaseIterable>(_ entry: Entry, _: Value.Type) -> Value?
    where Value.RawValue == String {
        let allowed = Value.allCases.map(\.rawValue)
        let list = allowed.joined(separator: ", ")
        guard let scalar = scalar(entry, "one of: \(list)") else { return nil }
        if let value = Value(rawValue: scalar.string) { return value }
        var text = "\(entry.key) must be one of: \(list) (found \"\(scalar.string)\""
        if let suggestion = PolicyKeys.suggestion(for: scalar.string, among: allowed) {
            text += "; did you mean \"\(suggestion)\"?"
        }
        problem(entry.value, text + ")")
        return nil
    }

    /// The items of a list of strings, with their nodes for positions; nil (with a problem)
    /// when the value is not a list or an item is not a string. An empty list is returned as such.
    private mutating func strings(_ entry: Entry, example: String) -> [(String, Node)]? {
        guard case .sequence(let sequence) = entry.value else {
            if case .scalar(let scalar) = entry.value, Self.isNull(scalar) {
                problem(entry.value, "\(entry.key) has no value; it must be a list, like \(example)")
            } else {
                problem(entry.value, "\(entry.key) must be a list of strings, like \(example)")
            }
            return nil
        }
        guard visited.insert(Position(entry.value)).inserted else {
            problem(entry.value, "\(entry.key): anchors and aliases are not allowed in a policy file")
            return nil
        }
        var items: [(String, Node)] = []
        var ok = true
        for item in sequence {
            guard case .scalar(let scalar) = item else {
                problem(item, "\(entry.key) must be a list of strings; this entry is a nested list or mapping")
                ok = false
                continue
            }
            if Self.isNull(scalar) {
                problem(item, "\(entry.key) has an empty entry")
                ok = false
                continue
            }
            items.append((scalar.string, item))
        }
        return ok ? items : nil
    }

    private mutating func domains(_ entry: Entry, allowAny: Bool, anyReason: String = "") -> [DomainPattern]? {
        domainsWithNodes(entry, allowAny: allowAny, anyReason: anyReason)?.map(\.0)
    }

    private mutating func domainsWithNodes(_ entry: Entry, allowAny: Bool, anyReason: String) -> [(DomainPattern, Node)]? {
        guard let items = strings(entry, example: "[fabrikam.com, \"*.fabrikam.com\"]") else { return nil }
        var patterns: [(DomainPattern, Node)] = []
        var ok = true
        for (text, node) in items {
            switch DomainPattern.parse(text, allowAny: allowAny) {
            case .success(let pattern): patterns.append((pattern, node))
            case .failure(.anyNotAllowed):
                problem(node, "\(entry.key) must not contain \"*\"\(anyReason)"); ok = false
            case .failure(let error):
                problem(node, "\(entry.key): \"\(text)\": \(error)"); ok = false
            }
        }
        return ok ? patterns : nil
    }

    // MARK: The file

    mutating func readPolicy(_ root: Node) -> Policy? {
        guard let entries = entries(of: root, "the policy file must be a mapping with the keys organization, settings and connectors") else {
            return nil
        }
        var byKey: [String: Entry] = [:]
        for entry in entries {
            if PolicyKeys.topLevel.contains(entry.key) {
                byKey[entry.key] = entry
            } else if PolicyKeys.settings.contains(entry.key) {
                problem(entry.keyNode, "\"\(entry.key)\" belongs under settings:")
            } else if PolicyKeys.organization.contains(entry.key) {
                problem(entry.keyNode, "\"\(entry.key)\" belongs under organization:")
            } else {
                unknownKey(entry, in: "at the top level", candidates: PolicyKeys.topLevel)
            }
        }

        var acceptedDomains: [DomainPattern]? = nil
        if let organization = byKey["organization"] {
            acceptedDomains = readOrganization(organization)
        } else {
            problem(root, "organization is missing; it lists the organization's acceptedDomains")
        }
        var settings = Settings()
        if let entry = byKey["settings"] { settings = readSettings(entry) }
        var connectors: [Connector] = []
        if let entry = byKey["connectors"] { connectors = readConnectors(entry, acceptedDomains: acceptedDomains) }

        guard let acceptedDomains else { return nil }
        return Policy(acceptedDomains: acceptedDomains, settings: settings, connectors: connectors)
    }

    private mutating func readOrganization(_ organization: Entry) -> [DomainPattern]? {
        guard let entries = entries(of: organization.value, "organization must be a mapping with the key acceptedDomains") else {
            return nil
        }
        var accepted: [DomainPattern]? = nil
        var sawAcceptedDomains = false
        for entry in entries {
            guard entry.key == "acceptedDomains" else {
                unknownKey(entry, in: "in organization", candidates: PolicyKeys.organization)
                continue
            }
            sawAcceptedDomains = true
            accepted = domains(entry, allowAny: false,
                               anyReason: ": accepting every domain would make the milter an open relay")
            if let list = accepted, list.isEmpty {
                problem(entry.value, "acceptedDomains must list at least one domain")
                accepted = nil
            }
        }
        if !sawAcceptedDomains {
            problem(organization.value, "organization has no acceptedDomains; list the organization's own domains, like [contoso.com]")
        }
        return accepted
    }

    private mutating func readSettings(_ section: Entry) -> Settings {
        var settings = Settings()
        if case .scalar(let s) = section.value, Self.isNull(s) { return settings }  // `settings:` alone
        guard let entries = entries(of: section.value, "settings must be a mapping of keys like mode and tlsFailure") else {
            return settings
        }
        for entry in entries {
            switch entry.key {
            case "mode": if let v = oneOf(entry, Mode.self) { settings.mode = v }
            case "tlsFailure": if let v = oneOf(entry, TLSFailure.self) { settings.tlsFailure = v }
            case "rejectDirectSend": if let v = bool(entry) { settings.rejectDirectSend = v }
            case "stampHeaders": if let v = bool(entry) { settings.stampHeaders = v }
            default: unknownKey(entry, in: "in settings", candidates: PolicyKeys.settings)
            }
        }
        return settings
    }

    private mutating func readConnectors(_ section: Entry, acceptedDomains: [DomainPattern]?) -> [Connector] {
        if case .scalar(let s) = section.value, Self.isNull(s) { return [] }  // `connectors:` alone
        guard case .sequence(let sequence) = section.value else {
            problem(section.value, "connectors must be a list; start each connector with \"- name: ...\"")
            return []
        }
        guard visited.insert(Position(section.value)).inserted else {
            problem(section.value, "connectors: anchors and aliases are not allowed in a policy file")
            return []
        }
        var connectors: [Connector] = []
        var firstNames: [String: Position] = [:]  // lowercased name -> where it first appears
        for item in sequence {
            let (connector, name) = readConnector(item, acceptedDomains: acceptedDomains)
            // Names label verdict lines and are compared like EOP does, without regard to case.
            if let (name, position) = name {
                if let first = firstNames[name.lowercased()] {
                    problems.append((position, "connector name \"\(name)\" is already used at \(first.phrase) "
                        + "(names are compared without regard to case)"))
                    continue
                }
                firstNames[name.lowercased()] = position
            }
            if let connector { connectors.append(connector) }
        }
        return connectors
    }

    // MARK: One connector

    /// The connector when it has no problem, and its valid name with the name's position, for the
    /// duplicate check (which is worth doing even for a connector with other problems).
    private mutating func readConnector(_ node: Node, acceptedDomains: [DomainPattern]?) -> (Connector?, (String, Position)?) {
        guard let entries = entries(of: node, "each connector must be a mapping of keys like name, direction and type") else {
            return (nil, nil)
        }
        var byKey: [String: Entry] = [:]
        for entry in entries { byKey[entry.key] = entry }

        let name = byKey["name"].flatMap { readName($0) }
        let direction = byKey["direction"].flatMap { oneOf($0, Direction.self) }
        let type = byKey["type"].flatMap { oneOf($0, ConnectorType.self) }
        let label = name.map { "connector \"\($0)\"" } ?? "this connector"
        if byKey["name"] == nil { problem(node, "this connector has no name; every connector needs a unique name") }
        if byKey["direction"] == nil { problem(node, "\(label) has no direction (inbound or outbound)") }
        if byKey["type"] == nil { problem(node, "\(label) has no type (onPremises or partner)") }

        let problemsBefore = problems.count
        var c = Connector(name: name ?? "", direction: direction ?? .inbound, type: type ?? .partner)
        // Explicit values the cross-key rules below need to see, with where they were written.
        var useMXRecord: (Bool, Entry)? = nil
        var tlsDomain: Entry? = nil
        var tlsSettings: Entry? = nil
        var restrictToIPs: Entry? = nil
        var restrictToCertificate: Entry? = nil

        // Suggest and list only the keys this kind of connector takes, when its kind is known.
        let fittingKeys = PolicyKeys.connector.filter { key, scope in
            guard let direction, let type else { return true }
            return scope.fits(direction, type)
        }.map(\.key)
        for entry in entries {
            guard let scope = PolicyKeys.scope(of: entry.key) else {
                unknownKey(entry, in: "in \(label)", candidates: fittingKeys)
                continue
            }
            if let direction, let type, !scope.fits(direction, type) {
                problem(entry.keyNode, "\(entry.key) is for \(scope.phrase); \(label) is an \(direction.rawValue) \(type.rawValue) connector")
                continue
            }
            switch entry.key {
            case "name", "direction", "type": break  // read above
            case "enabled": if let v = bool(entry) { c.enabled = v }
            case "comment": c.comment = string(entry)
            case "mode": c.mode = oneOf(entry, Mode.self)
            case "senderIPAddresses": c.senderIPAddresses = addresses(entry) ?? []
            case "tlsSenderCertificateName":
                if let text = string(entry) {
                    switch DomainPattern.parse(text, allowAny: false) {
                    case .success(let pattern): c.tlsSenderCertificateName = pattern
                    case .failure(.anyNotAllowed):
                        problem(entry.value, "tlsSenderCertificateName must name a domain, like \"mail.contoso.com\" "
                            + "or \"*.contoso.com\", not \"*\"")
                    case .failure(let error): problem(entry.value, "tlsSenderCertificateName: \"\(text)\": \(error)")
                    }
                }
            case "requireTls": if let v = bool(entry) { c.requireTls = v }
            case "senderDomains":
                c.senderDomains = domains(entry, allowAny: true) ?? []
                if isEmptyList(entry.value) {
                    problem(entry.value, "senderDomains must list at least one domain (\"*\" = any)")
                }
            case "restrictDomainsToIPAddresses":
                if let v = bool(entry) { c.restrictDomainsToIPAddresses = v; restrictToIPs = entry }
            case "restrictDomainsToCertificate":
                if let v = bool(entry) { c.restrictDomainsToCertificate = v; restrictToCertificate = entry }
            case "associatedAcceptedDomains":
                c.associatedAcceptedDomains = associatedDomains(entry, acceptedDomains: acceptedDomains)
            case "recipientDomains": c.recipientDomains = domains(entry, allowAny: true) ?? []
            case "allAcceptedDomains": if let v = bool(entry) { c.allAcceptedDomains = v }
            case "smartHosts": c.smartHosts = smartHosts(entry)
            case "useMXRecord": if let v = bool(entry) { useMXRecord = (v, entry) }
            case "tlsSettings":
                c.tlsSettings = oneOf(entry, TLSSettings.self)
                tlsSettings = entry
            case "tlsDomain":
                tlsDomain = entry
                if let text = string(entry) {
                    // EOP's TlsDomain takes a wildcard too; Postfix's match= has the same idea.
                    switch DomainPattern.parse(text, allowAny: false) {
                    case .success(let pattern): c.tlsDomain = pattern.description
                    case .failure(.anyNotAllowed):
                        problem(entry.value, "tlsDomain must name a domain, like mx.fabrikam.com, not \"*\"")
                    case .failure(let error): problem(entry.value, "tlsDomain: \"\(text)\": \(error)")
                    }
                }
            case "requireTlsReceipt": if let v = bool(entry) { c.requireTlsReceipt = v }
            case "validationRecipients":
                for (text, node) in strings(entry, example: "[postmaster@fabrikam.com]") ?? [] {
                    // Sent verbatim as RCPT TO:<text>: one plain local@domain, nothing that could end the command.
                    let at = text.lastIndex(of: "@")
                    let domainOK = at.map { (try? DomainName.validate(String(text[text.index(after: $0)...])).get()) != nil } ?? false
                    if let at, at > text.startIndex, domainOK, text.utf8.count <= 254,
                       !text.contains(where: { $0 == " " || $0 == "<" || $0 == ">" || $0.asciiValue.map { $0 < 32 || $0 == 127 } ?? true }) {
                        c.validationRecipients.append(text)
                    } else {
                        problem(node, "validationRecipients: \"\(text)\" is not an address like postmaster@fabrikam.com")
                    }
                }
            default: preconditionFailure("key \(entry.key) is in PolicyKeys.connector but not read")
            }
        }

        // Rules across keys, once direction and type are known. A key that is present but wrong
        // already has its own error, so "needs X" is said only when X is absent or an empty list.
        func lacks(_ key: String) -> Bool { byKey[key].map { isEmptyList($0.value) } ?? true }
        if let direction, let type {
            switch direction {
            case .inbound:
                if type == .onPremises && lacks("senderIPAddresses") && lacks("tlsSenderCertificateName") {
                    problem(node, "\(label) needs senderIPAddresses or tlsSenderCertificateName; without them it can never match")
                }
                if type == .partner && byKey["senderDomains"] == nil {
                    problem(node, "\(label) has no senderDomains; list the MAIL FROM domains this partner sends from (\"*\" = any)")
                }
                if let entry = restrictToIPs, c.restrictDomainsToIPAddresses, lacks("senderIPAddresses") {
                    problem(entry.keyNode, "restrictDomainsToIPAddresses: true needs senderIPAddresses, the addresses to restrict to")
                }
                if let entry = restrictToCertificate, c.restrictDomainsToCertificate, lacks("tlsSenderCertificateName") {
                    problem(entry.keyNode, "restrictDomainsToCertificate: true needs tlsSenderCertificateName, the certificate name to restrict to")
                }
            case .outbound:
                if let (value, entry) = useMXRecord {
                    if value && !lacks("smartHosts") {
                        problem(entry.keyNode, "useMXRecord: true contradicts smartHosts; a connector delivers either by MX "
                            + "or to its smart hosts (remove one of them)")
                    } else if !value && lacks("smartHosts") {
                        problem(entry.keyNode, "useMXRecord: false needs smartHosts to deliver to")
                    }
                }
                c.useMXRecord = lacks("smartHosts")
                if type == .onPremises && lacks("smartHosts") {
                    problem(node, "\(label) needs smartHosts: mail for the organization's own servers goes to them, not to MX")
                }
                if lacks("recipientDomains") && !c.allAcceptedDomains {
                    problem(node, type == .onPremises
                        ? "\(label) needs recipientDomains or allAcceptedDomains: true"
                        : "\(label) has no recipientDomains; list the domains it delivers to")
                }
                let tlsSettingsIsWrong = tlsSettings != nil && c.tlsSettings == nil
                if let entry = tlsDomain, c.tlsSettings != .domainValidation, !tlsSettingsIsWrong {
                    problem(entry.keyNode, "tlsDomain needs tlsSettings: domainValidation")
                }
                if let entry = tlsSettings, c.tlsSettings == .domainValidation, tlsDomain == nil {
                    problem(entry.value, "tlsSettings: domainValidation needs tlsDomain, the name the receiving server's "
                        + "certificate must carry")
                }
            }
        }
        let named = name.map { ($0, Position(byKey["name"]!.value)) }
        guard name != nil, direction != nil, type != nil, problems.count == problemsBefore else { return (nil, named) }
        return (c, named)
    }

    private func isEmptyList(_ node: Node) -> Bool {
        if case .sequence(let sequence) = node { return sequence.isEmpty }
        return false
    }

    private mutating func readName(_ entry: Entry) -> String? {
        guard let name = string(entry) else { return nil }
        if name.count > PolicyKeys.maximumNameLength {
            problem(entry.value, "connector name is \(name.count) characters long; at most \(PolicyKeys.maximumNameLength) are allowed")
            return nil
        }
        // Names go into syslog lines and headers; a control character there could forge a line.
        if name.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) {
            problem(entry.value, "connector name must not contain control characters (tabs, line breaks...)")
            return nil
        }
        if name.allSatisfy({ $0 == " " }) {
            problem(entry.value, "connector name must not be blank")
            return nil
        }
        return name
    }

    private mutating func addresses(_ entry: Entry) -> [IPPrefix]? {
        guard let items = strings(entry, example: "[192.0.2.0/24, \"2001:db8::/32\"]") else { return nil }
        var prefixes: [IPPrefix] = []
        for (text, node) in items {
            switch IPPrefix.parse(text) {
            case .success(let prefix): prefixes.append(prefix)
            case .failure(let error): problem(node, "\(entry.key): \(error)")
            }
        }
        return prefixes
    }

    private mutating func associatedDomains(_ entry: Entry, acceptedDomains: [DomainPattern]?) -> [DomainPattern] {
        guard let patterns = domainsWithNodes(entry, allowAny: false, anyReason: "; list accepted domains") else { return [] }
        // Checked only against a valid acceptedDomains, so one mistake does not cascade.
        if let acceptedDomains {
            for (pattern, node) in patterns where !acceptedDomains.contains(where: { covers($0, pattern) }) {
                problem(node, "associatedAcceptedDomains: \"\(pattern)\" is not one of the accepted domains ("
                    + acceptedDomains.map(\.description).joined(separator: ", ") + ")")
            }
        }
        return patterns.map(\.0)
    }

    /// An accepted domain holds every domain the pattern can match.
    private func covers(_ accepted: DomainPattern, _ pattern: DomainPattern) -> Bool {
        switch (accepted, pattern) {
        case (.any, _): return true
        case (.exact(let a), .exact(let b)): return a == b
        case (.wildcard(let a), .exact(let b)), (.wildcard(let a), .wildcard(let b)):
            return DomainName.isSame(b, orSubdomainOf: a)
        default: return false
        }
    }

    private mutating func smartHosts(_ entry: Entry) -> [SmartHost] {
        guard let items = strings(entry, example: "[mx1.fabrikam.com, \"[203.0.113.25]:2525\"]") else { return [] }
        var hosts: [SmartHost] = []
        for (text, node) in items {
            switch SmartHostSyntax.parse(text) {
            case .success(let host): hosts.append(host)
            case .failure(let reason): problem(node, "smartHosts: \"\(text)\": \(reason.message)")
            }
        }
        return hosts
    }
}

/// `host`, `host:port`, `[address]`, `[address]:port`, `[host]`: all delivered to without an MX lookup.
enum SmartHostSyntax {
    struct Failure: Error { let message: String }

    package static func parse(_ text: String) -> Result<SmartHost, Failure> {
        var hostPart = Substring(text)
        var portPart: Substring? = nil
        var bracketed = false
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else { return .failure(Failure(message: "\"[\" without a closing \"]\"")) }
            hostPart = text[text.index(after: text.startIndex)..<close]
            let after = text[text.index(after: close)...]
            if !after.isEmpty {
                guard after.hasPrefix(":") else { return .failure(Failure(message: "only \":PORT\" may follow \"]\"")) }
                portPart = after.dropFirst()
            }
            bracketed = true
        } else if let colon = text.firstIndex(of: ":") {
            if text[text.index(after: colon)...].contains(":") {
                return .failure(Failure(message: "write an IPv6 address in brackets, like \"[2001:db8::25]:25\""))
            }
            hostPart = text[..<colon]
            portPart = text[text.index(after: colon)...]
        }
        var port: Int? = nil
        if let portPart {
            guard !portPart.isEmpty, portPart.utf8.count <= 5, portPart.utf8.allSatisfy({ $0 >= 48 && $0 <= 57 }),
                  let number = Int(portPart), (1...65535).contains(number) else {
                return .failure(Failure(message: "port must be a number from 1 to 65535"))
            }
            port = number
        }
        // An address has no MX records, so it is a bracketed literal even when written bare.
        if let address = IPAddress(hostPart), !hostPart.lowercased().hasPrefix("ipv6:") {
            return .success(SmartHost(host: address.description, isBracketed: true, port: port))
        }
        switch DomainName.validate(String(hostPart)) {
        // A smart host is delivered to by its address records, never through MX (EOP's smart
        // hosts; the transport map writes them `smtp:[host]:port`): the brackets are implied.
        case .success(let name): return .success(SmartHost(host: name, isBracketed: true, port: port))
        case .failure(let error):
            return .failure(Failure(message: bracketed ? "not an IP address or a domain name (\(error))" : "\(error)"))
        }
    }
}
