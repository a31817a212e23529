import Foundation
import XCTest
@testable import ConnectorPolicy

/// docs/verdict-line.md is the administrator's reference for the line: it must name every
/// field the code writes, in the code's order, and every refusal reason with the replies the
/// code sends. A new field or reason without its documentation fails here.
final class VerdictLineDocTests: XCTestCase {
    private func document() throws -> String {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("docs/verdict-line.md")
        return try String(contentsOf: url, encoding: .utf8)
    }

    /// The lines of the section headed `## TITLE`, up to the next `## ` heading.
    private func section(_ title: String, of text: String) -> [Substring] {
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        guard let start = lines.firstIndex(where: { $0 == "## \(title)" }) else { return [] }
        let rest = lines[(start + 1)...]
        let end = rest.firstIndex(where: { $0.hasPrefix("## ") }) ?? rest.endIndex
        return Array(rest[..<end])
    }

    /// One column of a table's body rows (after its `|---|` line), where the cell is a single
    /// `code` span, without the backticks.
    private func column(_ index: Int, of rows: [Substring]) -> [String] {
        guard let separator = rows.firstIndex(where: { $0.hasPrefix("|---") }) else { return [] }
        return rows[(separator + 1)...].prefix(while: { $0.hasPrefix("|") }).compactMap { row -> String? in
            let cells = row.split(separator: "|", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
            guard cells.count > index + 1 else { return nil }
            let cell = cells[index + 1]
            guard cell.count > 2, cell.hasPrefix("`"), cell.hasSuffix("`") else { return nil }
            return String(cell.dropFirst().dropLast())
        }
    }

    private func policySet(tlsFailure: String) throws -> PolicySet {
        let yaml = """
            organization:
              acceptedDomains: [contoso.com]
            settings:
              tlsFailure: \(tlsFailure)
            """
        return PolicySet(try PolicyParser.parse(yaml, file: "doc-test.yaml").get())
    }

    func test_everyRefusalReason_isDocumentedWithBothReplies() throws {
        let reasons = section("Reasons", of: try document())
        XCTAssertFalse(reasons.isEmpty, "docs/verdict-line.md has no \"## Reasons\" section")
        let documented = column(0, of: reasons)
        let temporary = try policySet(tlsFailure: "temporary")
        let permanent = try policySet(tlsFailure: "permanent")
        for reason in RefusalReason.allCases {
            guard let row = reasons.first(where: { $0.hasPrefix("| `\(reason.rawValue)` |") }) else {
                XCTFail("reason=\(reason.rawValue) is missing from the reasons table of docs/verdict-line.md")
                continue
            }
            for set in [temporary, permanent] {
                let reply = set.reply(for: reason).description
                XCTAssertTrue(row.contains("`\(reply)`"),
                              "the row of reason=\(reason.rawValue) does not give its reply `\(reply)`")
            }
        }
        XCTAssertEqual(Set(documented), Set(RefusalReason.allCases.map(\.rawValue)),
                       "the reasons table documents a reason the code does not have")
    }

    func test_everyField_isDocumentedInTheOrderTheLineHasIt() throws {
        let fields = column(1, of: section("The fields, in order", of: try document()))
        XCTAssertEqual(fields, VerdictLine.keys.map { $0 + "=" },
                       "the fields table of docs/verdict-line.md differs from VerdictLine.keys")
    }
}
