import Yams

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
