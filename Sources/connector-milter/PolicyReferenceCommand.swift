import ArgumentParser
import ConnectorPolicy

/// Prints the policy file's reference as the key table makes it: for maintainers, who commit
/// its output as packaging/connectors.yaml.5 and in docs/policy-file.md.
struct PolicyReferenceCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "policy-reference",
        abstract: "Print the policy file reference made from the key table.",
        shouldDisplay: false
    )

    enum Format: String, ExpressibleByArgument, CaseIterable {
        case markdown, man
    }

    @Option(help: "markdown: the key table of docs/policy-file.md; man: the connectors.yaml(5) page.")
    var format: Format = .markdown

    func run() {
        switch format {
        case .markdown: print(PolicyReference.markdownKeyTable, terminator: "")
        case .man: print(PolicyReference.manPage(), terminator: "")
        }
    }
}
