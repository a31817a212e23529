// Reads the policy file (docs/policy-file.md) into a `Policy`, or lists every problem in it.
//
// Three stages, each refusing what the next cannot handle safely:
//   1. bytes: readable, at most 64 MiB, UTF-8 (`load(path:)`, PolicyFileInput.swift);
//   2. YAML: no anchors or aliases (YAMLPrescan.swift), then libyaml through `Yams.compose`,
//      whose syntax errors (tabs, duplicate keys, a second document...) are reworded for an
//      admin (YAMLSyntax.swift);
//   3. policy: `PolicyReader` (PolicyReader.swift) walks the tree against the table of keys
//      (PolicyKeys.swift), collecting all errors instead of stopping at the first.

import Yams

public enum PolicyParser {
    /// A policy of a thousand connectors is well under a megabyte; the limit only bounds what a
    /// runaway or hostile file can cost (libyaml keeps the whole document in memory).
    public static let maximumFileSize = 64 << 20

    /// Parses policy text; `file` is only used to label the errors. Safe to call from any thread:
    /// the work runs on a thread of its own (see `onLargeStack`), and this one waits for it.
    public static func parse(_ yaml: String, file: String) -> Result<Policy, PolicyErrors> {
        onLargeStack { parseHere(yaml, file: file) }
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
