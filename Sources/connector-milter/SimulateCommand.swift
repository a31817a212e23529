// `connector-milter simulate`: try a policy change on past traffic before it goes live.

import ArgumentParser
import ConnectorDaemon
import ConnectorPolicy
import ConnectorReview
import Foundation

struct Simulate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Judge logged decisions again under another policy file and list what would change.",
        discussion: """
        Reads verdict lines from syslog files, as connector-milter report does, rebuilds from \
        each one the facts the daemon judged on (client address and name, TLS version, \
        verified certificate name, SASL login, MAIL FROM, RCPT TO), judges them under the \
        policy given with --config, and prints one line per recipient that would fare \
        differently:

            TIME QUEUEID rcpt=<ADDR> from=<ADDR> client=NAME[IP]: OLD -> NEW

        where OLD and NEW read like accept, reject partner-restricted, or, in monitor mode, \
        accept (would reject tls-required); a change of connector is added after a semicolon. \
        Totals follow: how many would change, by transition.

        Lines written before the verdict line carried the SASL login (auth=), and lines with \
        a value cut at 512 characters, are judged with what they give and counted as "judged \
        with missing facts"; a change reported for them may come from the missing fact.

        The simulation shows what the milter would decide; it cannot show what the MTA or the \
        sender would have done next (a sender refused at the first recipient may never have \
        tried the others).

        Exit status: 0 when no decision would change; 1 when some would; 64 for bad \
        arguments; 65 when a gzip file is corrupt (the rest was read); 66 when a file cannot \
        be opened; 78 when the policy file is invalid.
        """
    )

    @Option(help: ArgumentHelp("The policy file to try.", valueName: "file"))
    var config: String

    @OptionGroup var logs: LogSelection

    @Flag(help: "Also list recipients that would fare the same through another connector.")
    var attribution = false

    @Option(help: "text for people, json for programs (the changes and the totals).")
    var format: OutputFormat = .text

    struct JSONOutput: Encodable {
        var policy: String
        var changes: [SimulatedChange]
        var totals: SimulationTotals
        var malformedExamples: [String]
    }

    func run() throws {
        let policy: PolicySet
        do {
            policy = try PolicyStore.compile(path: config)
        } catch {
            printError(error.description)
            throw Sysexit.config.exitCode
        }
        var clock = LogClock()
        let period = logs.period(&clock)
        var simulation = Simulation(policy: policy, filter: ReportFilter(since: period.since, until: period.until), clock: clock)
        var changes: [SimulatedChange] = []
        let shortfalls: [LogInputError]
        do {
            shortfalls = try LogInput.read(logs.files, clock: &clock) { line, location in
                guard let change = simulation.add(line, location: location()),
                      attribution || !change.attributionOnly else { return }
                switch format {
                case .text: print(change.text)  // as found: a long log shows progress
                case .json: changes.append(change)
                }
            }
        } catch let error as LogInputError {
            printError("connector-milter simulate: \(error)")
            throw error.exitCode
        }
        switch format {
        case .text:
            if simulation.totals.changed + (attribution ? simulation.totals.attributionOnly : 0) > 0 { print("") }
            print(simulation.totals.text(policyFile: config), terminator: "")
            for example in simulation.malformedExamples { print("  malformed: \(example)") }
        case .json:
            print(try jsonText(JSONOutput(policy: config, changes: changes, totals: simulation.totals,
                                          malformedExamples: simulation.malformedExamples)))
        }
        for shortfall in shortfalls { printError("connector-milter simulate: \(shortfall)") }
        if let first = shortfalls.first { throw first.exitCode }
        if simulation.totals.changed > 0 { throw ExitCode(1) }
    }
}
