// Stage 2 of reading a policy, before libyaml: anchors, aliases and unquoted `*`.

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
