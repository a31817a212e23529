import Foundation
import ArgumentParser
import ConnectorDaemon

@main
struct ConnectorMilter: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "connector-milter",
        abstract: "Inbound and outbound mail connectors for Postfix and Sendmail, as a milter.",
        discussion: """
        The policy file (default \(defaultPolicyPath)) describes the organization's accepted \
        domains and its connectors; see connectors.yaml(5).
        """,
        version: connectorMilterVersion,
        subcommands: [Run.self, Check.self, Classify.self, Report.self, Simulate.self, Export.self, Trace.self,
                      PolicyReferenceCommand.self]
    )
}

let defaultPolicyPath = DaemonOptions.defaultPolicyPath
let connectorMilterVersion = "0.1.0"

/// Writes one line to standard error (for messages a person reads, not verdicts).
func printError(_ message: String) {
    var text = message
    if !text.hasSuffix("\n") { text += "\n" }
    FileHandle.standardError.write(text.data(using: .utf8)!)
}

extension Sysexit {
    /// The daemon's sysexits(3) code as the argument parser's exit.
    var exitCode: ExitCode { ExitCode(rawValue) }
}
