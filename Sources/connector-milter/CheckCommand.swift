// `connector-milter check`: validate a policy file before installing it or reloading the daemon.

import ArgumentParser
import ConnectorDaemon
import ConnectorPolicy
import ConnectorReview
import Foundation

struct Check: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check a policy file and list every problem in it.",
        discussion: """
            Prints each problem as FILE:LINE:COLUMN: message on standard error and exits 78 \
            (EX_CONFIG) if there is any; otherwise prints a one-line summary and exits 0. \
            Run it before reloading the daemon: a running daemon keeps its policy when the new \
            file is invalid, so a mistake shows up only in its log.

            With --lint, a valid file is also checked for what is allowed but probably not \
            meant, each printed as FILE:LINE:COLUMN: warning: message on standard error: \
            connectors that can never be chosen because an earlier one with the same recipient \
            domain, address, certificate name or sender domain always wins; partner addresses \
            or certificate names that overlap an onPremises connector's (onPremises is tried \
            first); partner connectors restricted by both addresses and certificate; wildcard \
            certificate names broader than an accepted domain, or a whole top-level domain \
            (*.com); outbound onPremises connectors for domains that are not accepted; \
            disabled connectors; and monitor mode, for the whole policy or one connector. \
            Warnings do not change the exit status unless --strict is given: then any warning \
            makes it 1, so a deployment script can tell "invalid" (78) from "valid, with \
            warnings" (1).
            """
    )

    @Option(name: .long, help: ArgumentHelp("The policy file.", valueName: "file"))
    var config: String = defaultPolicyPath

    @Flag(help: "Also warn about connectors that can never match and other likely mistakes.")
    var lint = false

    @Flag(help: "With warnings, exit 1 (implies --lint).")
    var strict = false

    func run() throws {
        switch PolicyParser.load(path: config) {
        case .failure(let problems):
            FileHandle.standardError.write(Data((problems.description + "\n").utf8))
            throw Sysexit.config.exitCode
        case .success(let policy):
            guard lint || strict else {
                print("\(config): OK: \(Check.summary(of: policy))")
                return
            }
            let warnings = PolicyLint.warnings(for: policy, path: config) ?? []
            for warning in warnings { printError(warning.description) }
            let count = warnings.count == 1 ? "1 warning" : "\(warnings.count) warnings"
            print("\(config): OK: \(Check.summary(of: policy)); \(count)")
            if strict && !warnings.isEmpty { throw ExitCode(1) }
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
