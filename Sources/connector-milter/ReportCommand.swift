// `connector-milter report`: what the policy did, from the verdict lines in syslog.

import ArgumentParser
import ConnectorDaemon
import ConnectorPolicy
import ConnectorReview
import Foundation

/// The log files to read and the period to look at; shared by `report` and `simulate`.
struct LogSelection: ParsableArguments {
    @Argument(help: ArgumentHelp(
        "Syslog files to read, in order; gzip-compressed rotations are read through gzip -dc. "
            + "Standard input when none is given.",
        valueName: "logfile"))
    var files: [String] = []

    @Option(help: ArgumentHelp(
        "Only verdict lines logged at or after this time: 2026-11-29, 2026-11-29T01:00, 2026-11-29T01:00:30, "
            + "optionally followed by Z or an offset like +01:00; local time otherwise.",
        valueName: "time"))
    var since: String?

    @Option(help: ArgumentHelp("Only verdict lines logged before this time (same forms as --since).", valueName: "time"))
    var until: String?

    func validate() throws {
        var clock = LogClock()
        for (flag, value) in [("--since", since), ("--until", until)] {
            if let value, clock.parseArgument(value) == nil {
                throw ValidationError("\(flag) \"\(value)\" is not a time; write 2026-11-29, 2026-11-29T01:00 or 2026-11-29T01:00:30")
            }
        }
    }

    func period(_ clock: inout LogClock) -> (since: Int64?, until: Int64?) {
        (since.flatMap { clock.parseArgument($0) }, until.flatMap { clock.parseArgument($0) })
    }
}

enum OutputFormat: String, ExpressibleByArgument, CaseIterable {
    case text, json
}

struct Report: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Summarize the verdict lines in syslog files: what each connector accepted and refused.",
        discussion: """
        Reads the daemon's verdict lines (one per recipient decision) from \
        syslog files, plain or gzip-compressed, and prints per connector: the messages and \
        recipients by verdict, the refusal reasons, the share of messages that came over TLS \
        and the TLS versions, the clients and sender domains most often refused, and the \
        refusals that monitor mode logged as would= instead of enforcing. Mail that no \
        inbound connector took (the default internet path, or SASL-authenticated clients) and \
        mail delivered by MX are reported under their own headings.

        Lines of other programs, and the daemon's other messages, are skipped. A line tagged \
        connector-milter that looks like a verdict line but does not read as one is counted as \
        malformed and skipped; the first few are listed. Recognized syslog formats: RFC 3164 \
        (Nov 29 01:02:03 host connector-milter[123]: ...), rsyslog's high-precision \
        timestamps and RFC 5424, journalctl -o short and short-iso, and bare verdict lines as \
        connector-milter classify prints them.

        A message is a queue id. Refusals that Postfix logged before it opened a queue file \
        (NOQUEUE) count as one message per SMTP transaction. A message whose recipients got \
        different verdicts counts once under each. TLS is counted per message.

        Times: RFC 3164 lines carry neither year nor time zone. They are read in the local \
        time zone, in the current year, or the previous one when that would put the line more \
        than a day in the future (a December log read in January). --since is inclusive and \
        --until exclusive, so --since 2026-11-28 --until 2026-11-29 is the whole of 28 November. \
        Lines without a time are left out when either is given.

        Trust: any local user can write a line into syslog under the connector-milter tag \
        (logger -t connector-milter). The report is as trustworthy as the log it reads.

        Exit status: 0 on success; 64 for bad arguments; 65 (EX_DATAERR) when a gzip file is \
        corrupt or cut short (the report covers what could be read); 66 (EX_NOINPUT) when a \
        file cannot be opened.
        """
    )

    @OptionGroup var logs: LogSelection

    @Option(name: .customLong("connector"), help: ArgumentHelp(
        "Only verdict lines whose inbound or outbound connector has this name (without regard to case). Repeat for several.",
        valueName: "name"))
    var connectors: [String] = []

    @Option(name: .customLong("verdict"), help: ArgumentHelp(
        "Only verdict lines with this verdict: accept, reject, tempfail, or, for monitor mode, would-reject "
            + "and would-tempfail. Repeat for several.",
        valueName: "verdict"))
    var verdicts: [String] = []

    @Option(help: "How many clients and sender domains to list in the top refused lists.")
    var top: Int = 10

    @Option(help: "text for people, json for programs (the same figures).")
    var format: OutputFormat = .text

    func validate() throws {
        for v in verdicts where VerdictSelector(rawValue: v) == nil {
            throw ValidationError("--verdict \"\(v)\" is not one of: "
                + VerdictSelector.allCases.map(\.rawValue).joined(separator: ", "))
        }
        if top < 0 { throw ValidationError("--top must be 0 or more") }
    }

    func run() throws {
        var clock = LogClock()
        let period = logs.period(&clock)
        var builder = ReportBuilder(filter: ReportFilter(
            since: period.since, until: period.until, connectors: connectors,
            verdicts: Set(verdicts.compactMap(VerdictSelector.init(rawValue:)))))
        let shortfalls: [LogInputError]
        do {
            shortfalls = try LogInput.read(logs.files, clock: &clock) { line, location in
                builder.add(line, location: location())
            }
        } catch let error as LogInputError {
            printError("connector-milter report: \(error)")
            throw error.exitCode
        }
        let summary = builder.summary(top: top, clock: clock)
        switch format {
        case .text: print(summary.text(), terminator: "")
        case .json: print(try jsonText(summary))
        }
        for shortfall in shortfalls { printError("connector-milter report: \(shortfall)") }
        if let first = shortfalls.first { throw first.exitCode }
    }
}

/// Sorted keys and ISO-like strings, so the output diffs well and reads the same everywhere.
func jsonText(_ value: some Encodable) throws -> String {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
    return String(decoding: try encoder.encode(value), as: UTF8.self)
}
