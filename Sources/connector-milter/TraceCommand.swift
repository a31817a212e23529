// `connector-milter trace`: one message's journey, from the MTA's log and the verdict lines.

import ArgumentParser
import ConnectorPolicy
import ConnectorReview
import Foundation

struct Trace: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Follow messages through the MTA's log and the verdict lines: client, verdict, delivery.",
        discussion: """
        Reads the mail log (Postfix's or Sendmail's own lines) and the daemon's verdict lines, \
        which may be in the same file or in separate files given together, and prints one \
        timeline per message: received from (client, TLS, certificate), judged (connectors, \
        verdict, reason, per recipient), refused (at which stage, with which reply), delivered \
        to (relay, status, the TLS the MTA logged), and removed from the queue.

        Lines are joined by queue id, and by process id for what the MTA logs before a queue id \
        exists (Postfix smtpd's connect and TLS lines, Sendmail's STARTTLS=server) and for the \
        outbound TLS line before a delivery. Refusals before a queue file existed (NOQUEUE) \
        appear as their own timeline, with the session they came in and the daemon's verdict. \
        Queue ids are unique per host: trace one host's log at a time.

        Postfix lines are those tagged NAME/PROGRAM (postfix/smtpd, postfix/qmgr, ...); \
        Sendmail's are tagged sendmail, sm-mta or sm-.... A line with the shape of a line \
        trace reads but fields that do not parse is counted as malformed and skipped. \
        --since and --until take the forms report takes, and compare with a message's first line.

        Exit status: 0 when some message matched; 1 when none did; 64 for bad arguments; 65 \
        when a gzip file is damaged; 66 when a file cannot be opened.
        """
    )

    @OptionGroup var logs: LogSelection

    @Option(name: .customLong("queue-id"), help: ArgumentHelp("The MTA's queue id of the message.", valueName: "id"))
    var queueID: String?

    @Option(help: ArgumentHelp("Messages from this envelope sender (without regard to case).", valueName: "address"))
    var from: String?

    @Option(help: ArgumentHelp("Messages to this envelope recipient (without regard to case).", valueName: "address"))
    var rcpt: String?

    @Option(help: "text for people, json for programs (the same facts).")
    var format: OutputFormat = .text

    func validate() throws {
        if queueID == nil && from == nil && rcpt == nil {
            throw ValidationError("name the messages to trace: --queue-id ID, --from ADDRESS or --rcpt ADDRESS")
        }
        for (flag, value) in [("--queue-id", queueID), ("--from", from), ("--rcpt", rcpt)] {
            if let value, value.isEmpty || value.unicodeScalars.contains(where: { $0.value < 0x20 }) {
                throw ValidationError("\(flag) must be a non-empty value without control characters")
            }
        }
    }

    func run() throws {
        var clock = LogClock()
        let period = logs.period(&clock)
        var builder = TraceBuilder()
        let shortfalls: [LogInputError]
        do {
            shortfalls = try LogInput.readLines(logs.files) { line, complete, location in
                withoutActuallyEscaping(location) { builder.add(bytes: line, complete: complete, clock: &clock, location: $0) }
            }
        } catch let error as LogInputError {
            printError("connector-milter trace: \(error)")
            throw error.exitCode
        }
        let query = TraceQuery(queueID: queueID, from: from, recipient: rcpt, since: period.since, until: period.until)
        let traces = builder.traces(matching: query)
        switch format {
        case .text:
            print(traces.map { $0.text(clock: clock) }.joined(separator: "\n"), terminator: "")
            if traces.isEmpty { print("no message matched") }
            if builder.malformedLines > 0 {
                print("\n\(builder.malformedLines) malformed line(s) skipped:")
                for sample in builder.malformedSamples { print("  \(sample)") }
            }
        case .json:
            let object: [String: Any] = [
                "messages": traces.map { $0.jsonObject(clock: clock) },
                "malformedLines": builder.malformedLines,
                "malformedSamples": builder.malformedSamples,
            ]
            let data = try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
            print(String(decoding: data, as: UTF8.self))
        }
        for shortfall in shortfalls { printError("connector-milter trace: \(shortfall)") }
        if let first = shortfalls.first { throw first.exitCode }
        if traces.isEmpty { throw ExitCode(1) }
    }
}
