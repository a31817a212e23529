// `connector-milter check`: validate a policy file before installing it or reloading the daemon.

import ArgumentParser
import ConnectorPolicy
import Foundation

struct Check: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check a policy file and list every problem in it.",
        discussion: """
            Prints each problem as FILE:LINE:COLUMN: message on standard error and exits 78 \
            (EX_CONFIG) if there is any; otherwise prints a one-line summary and exits 0. \
            Run it before reloading the daemon: a running daemon keeps its policy when the new \
            file is invalid, so a mistake shows up only in its log.
            """
    )

    @Option(name: .long, help: ArgumentHelp("The policy file.", valueName: "file"))
    var config: String = "/etc/connector-milter/connectors.yaml"

    func run() throws {
        switch PolicyParser.load(path: config) {
        case .failure(let problems):
            FileHandle.standardError.write(Data((problems.description + "\n").utf8))
            throw Sysexit.config.exitCode
        case .success(let policy):
            print("\(config): OK: \(Check.summary(of: policy))")
        }
    }

    /// `5 connectors (inbound: 1 onPremises, 1 partner; outbound: 1 onPremises, 1 partner;
    /// 1 disabled), 2 accepted domains, mode enforce`
    static func summary(of policy: Policy) -> String {
        func count(_ direction: Direction, _ type: ConnectorType) -> Int {
            policy.connectors.filter { $0.direction == direction && $0.type == type }.count
        }
        func plural(_ n: Int, _ noun: String) -> String { "\(n) \(noun)\(n == 1 ? "" : "s")" }
        let disabled = policy.connectors.filter { !$0.enabled }.count
        return plural(policy.connectors.count, "connector")
            + " (inbound: \(count(.inbound, .onPremises)) onPremises, \(count(.inbound, .partner)) partner;"
            + " outbound: \(count(.outbound, .onPremises)) onPremises, \(count(.outbound, .partner)) partner;"
            + " \(disabled) disabled), "
            + plural(policy.acceptedDomains.count, "accepted domain")
            + ", mode \(policy.settings.mode.rawValue)"
    }
}
