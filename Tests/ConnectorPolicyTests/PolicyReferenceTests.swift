import Foundation
import XCTest
@testable import ConnectorPolicy

/// The reference documents are made from the key table; these fail when a committed copy
/// differs. `UPDATE_POLICY_REFERENCE=1 swift test --filter PolicyReferenceTests` rewrites them.
final class PolicyReferenceTests: XCTestCase {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static var updating: Bool { ProcessInfo.processInfo.environment["UPDATE_POLICY_REFERENCE"] == "1" }

    /// README.md and every docs/*.md: each marked block equals what the table makes of it.
    func test_markedBlocksInREADMEAndDocs_matchTheKeyTable() throws {
        let docs = Self.root.appendingPathComponent("docs")
        let names = try FileManager.default.contentsOfDirectory(atPath: docs.path).filter { $0.hasSuffix(".md") }.sorted()
        let files = [Self.root.appendingPathComponent("README.md")] + names.map { docs.appendingPathComponent($0) }
        var blocksSeen: [String: [String]] = [:]
        for file in files {
            let text = try String(contentsOf: file, encoding: .utf8)
            let (updated, found) = PolicyReference.updatingMarkedBlocks(in: text)
            blocksSeen[file.lastPathComponent] = found
            if Self.updating && updated != text { try updated.write(to: file, atomically: true, encoding: .utf8) }
            XCTAssert(Self.updating || updated == text, "\(file.lastPathComponent): a marked block differs from the key table; "
                + "run UPDATE_POLICY_REFERENCE=1 swift test --filter PolicyReferenceTests")
        }
        XCTAssertEqual(blocksSeen["policy-file.md"], ["policy-keys", "policy-rules", "policy-example"])
    }

    func test_manPage_matchesTheKeyTable() throws {
        let file = Self.root.appendingPathComponent("packaging/connectors.yaml.5")
        let generated = PolicyReference.manPage()
        if Self.updating { try generated.write(to: file, atomically: true, encoding: .utf8) }
        let committed = try String(contentsOf: file, encoding: .utf8)
        XCTAssertEqual(committed, generated, "packaging/connectors.yaml.5 differs from the key table; "
            + "run UPDATE_POLICY_REFERENCE=1 swift test --filter PolicyReferenceTests")
    }

    func test_example_isAValidPolicy() throws {
        let policy = try PolicyParser.parse(PolicyReference.example, file: "example").get()
        XCTAssertEqual(policy.connectors.count, 4)
        XCTAssertEqual(policy.connectors[2].tlsDomain, "mx1.fabrikam.com")
    }

    /// A field of the model without a row would be a setting nobody can write.
    func test_everyModelField_hasAKeyOfTheSameName() {
        let connectorFields = Mirror(reflecting: Connector.blank).children.compactMap(\.label)
        XCTAssertEqual(connectorFields.sorted(), PolicyKeys.connector.map(\.name).sorted())
        let settingFields = Mirror(reflecting: Settings()).children.compactMap(\.label)
        XCTAssertEqual(settingFields.sorted(), PolicyKeys.settings.map(\.name).sorted())
        for key in PolicyKeys.connector { XCTAssertEqual(PolicyKeys.connectorKey(key.field as! PartialKeyPath<Connector>).name, key.name) }
    }

    /// Each key once in its place; suggestions and "known keys" depend on it.
    func test_keyNames_areUniqueInTheirPlace() {
        for keys in [PolicyKeys.topLevel, PolicyKeys.organization, PolicyKeys.settings, PolicyKeys.connector] {
            XCTAssertEqual(Set(keys.map(\.name)).count, keys.count, "\(keys.map(\.name))")
        }
    }

    /// The prose rules name keys and values in `backticks`; a renamed key must not leave them behind.
    func test_rules_nameOnlyKeysOfTheTable() {
        let values = Mode.allCases.map(\.rawValue) + TLSFailure.allCases.map(\.rawValue) + Direction.allCases.map(\.rawValue)
            + ConnectorType.allCases.map(\.rawValue) + TLSSettings.allCases.map(\.rawValue)
        let known = Set(PolicyKeys.all.map(\.name) + values)
        for rule in PolicyReference.rules {
            for (i, part) in rule.split(separator: "`", omittingEmptySubsequences: false).enumerated() where i % 2 == 1 {
                let word = part.prefix { $0.isLetter }
                guard part.contains(":") || part == word, word.first?.isLowercase == true,
                      word.contains(where: \.isUppercase) else { continue }  // lowerCamelCase words are keys
                XCTAssert(known.contains(String(word)), "rule names \"\(word)\", which is not a key: \(rule)")
            }
        }
    }

    func test_roff_escapesWhatRoffWouldRead() {
        XCTAssertEqual(PolicyReference.roff(".x `a-b` c\\d"), #"\&.x \fBa\-b\fR c\ed"#)
    }
}
