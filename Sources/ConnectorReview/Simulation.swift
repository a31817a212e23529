import ConnectorPolicy
// `connector-milter simulate`: the logged decisions judged again under another policy, so a
// change can be tried on real past traffic before it goes live.
//
// Each verdict line is turned back into the facts the judge read (SessionFacts, MAIL FROM,
// RCPT TO) and judged by `PolicySet.judge`, the daemon's own code. Lines that lack a fact
// (written before the `auth=` field existed, or with a value cut at 512 characters) are judged
// with what they give and counted apart: for them a difference may come from the missing fact
// rather than from the policy.

/// What happened to one recipient: the logged or the simulated decision.
public struct SimulatedOutcome: Codable, Sendable, Equatable, CustomStringConvertible {
    public var verdict: Verdict
    public var would: Verdict?
    public var reason: String?
    public var inbound: String?
    public var outbound: String?

    init(_ r: VerdictRecord) {
        // `verdict=reject` without a reason: refused only along with its message, after DATA,
        // for another recipient's refusal (enhanced filtering). Its own outcome was accept.
        verdict = r.verdict == .reject && r.reason == nil ? .accept : r.verdict
        would = r.would
        reason = r.reason
        inbound = r.inbound
        outbound = r.outbound
    }

    init(_ d: Decision) {
        verdict = d.verdict
        would = d.wouldBe
        reason = d.refusal?.reason.rawValue
        inbound = d.inbound?.name
        outbound = d.outbound?.name
    }

    /// `accept`, `reject partner-restricted`, `accept (would reject tls-required)`.
    public var description: String {
        let reasonText = reason.map { " " + VerdictLine.quoteIfNeeded($0) } ?? ""
        if let would { return "\(verdict.rawValue) (would \(would.rawValue)\(reasonText))" }
        return verdict.rawValue + reasonText
    }

    /// Same effect on the recipient (the connectors aside).
    func sameOutcome(_ other: SimulatedOutcome) -> Bool {
        verdict == other.verdict && would == other.would && reason == other.reason
    }
}

extension Verdict: Codable {}

/// One recipient whose decision would differ.
public struct SimulatedChange: Codable, Sendable, Equatable {
    public var time: String?
    public var queueID: String?
    public var client: String
    public var from: String
    public var recipient: String
    public var old: SimulatedOutcome
    public var new: SimulatedOutcome
    /// Only the connectors differ: the recipient fares the same.
    public var attributionOnly: Bool
    /// Facts the line did not give (see `VerdictRecord.missingFacts`).
    public var missingFacts: [String]

    /// One line, greppable like a verdict line, every value a client chose quoted:
    /// `TIME QUEUEID rcpt=<...> from=<...> client=NAME[IP]: OLD -> NEW; inbound "A" -> "B"`.
    public var text: String {
        var out = (time.map { $0 + " " } ?? "") + VerdictLine.quoteIfNeeded(queueID ?? "NOQUEUE")
        out += " rcpt=" + VerdictLine.quoteIfNeeded("<" + recipient + ">")
        out += " from=" + VerdictLine.quoteIfNeeded("<" + from + ">")
        out += " client=" + VerdictLine.quoteIfNeeded(client)
        out += ": \(old) -> \(new)"
        func name(_ n: String?) -> String { n.map(VerdictLine.quoted) ?? "none" }
        if old.inbound != new.inbound { out += "; inbound \(name(old.inbound)) -> \(name(new.inbound))" }
        if old.outbound != new.outbound { out += "; outbound \(name(old.outbound)) -> \(name(new.outbound))" }
        if !missingFacts.isEmpty { out += "; judged without: " + missingFacts.joined(separator: ", ") }
        return out
    }
}

public struct SimulationTotals: Codable, Sendable, Equatable {
    public var linesRead = 0
    public var malformedLines = 0
    public var filteredOut = 0
    /// Verdict lines judged again.
    public var judged = 0
    /// Recipients that would fare differently.
    public var changed = 0
    /// Recipients that would fare the same, through another connector.
    public var attributionOnly = 0
    public var judgedWithMissingFacts = 0
    /// Of `changed`, those judged with missing facts.
    public var changedWithMissingFacts = 0
    /// `accept -> reject` and the like, with how often.
    public var transitions: [String: Int] = [:]
}

public struct Simulation {
    public let policy: PolicySet
    public let filter: ReportFilter
    public private(set) var totals = SimulationTotals()
    public private(set) var malformedExamples: [String] = []
    private let clock: LogClock

    public init(policy: PolicySet, filter: ReportFilter = ReportFilter(), clock: LogClock) {
        self.policy = policy
        self.filter = filter
        self.clock = clock
    }

    /// Judges one line again; the change, if the new policy decides otherwise.
    public mutating func add(_ line: VerdictLineReader.Line, location: @autoclosure () -> String) -> SimulatedChange? {
        totals.linesRead += 1
        switch line {
        case .other: return nil
        case .malformed(let why):
            totals.malformedLines += 1
            if malformedExamples.count < ReportBuilder.maximumExamples { malformedExamples.append("\(location()): \(why)") }
            return nil
        case .verdict(let record):
            guard filter.admits(record) else { totals.filteredOut += 1; return nil }
            return judge(record)
        }
    }

    /// Parsed addresses by text. Senders and recipients repeat a lot in a mail log, and
    /// `EmailAddress(parsing:)` costs more than the judgment itself; the cache is emptied
    /// when full rather than managed, which is plenty for this access pattern.
    private var addresses: [String: EmailAddress] = [:]
    private static let addressCacheSize = 100_000

    private mutating func address(_ text: String) -> EmailAddress {
        if let known = addresses[text] { return known }
        if addresses.count >= Self.addressCacheSize { addresses.removeAll(keepingCapacity: true) }
        // The same parse as `VerdictRecord.sender`, which is what the daemon parsed.
        let parsed = EmailAddress(parsing: "<" + text + ">")
        addresses[text] = parsed
        return parsed
    }

    public mutating func judge(_ r: VerdictRecord) -> SimulatedChange? {
        totals.judged += 1
        let recipient = address(r.recipient)
        var missingFacts = r.missingFacts
        // A line from before enhanced filtering cannot tell the original client a new
        // connector with it would have found.
        if !r.hasOriginalClientField, policy.enhancedFilteringConnector(client: r.clientAddress)?
            .enhancedFilteringApplies(to: recipient) == true {
            missingFacts.append("original_client")
        }
        let incomplete = !missingFacts.isEmpty
        if incomplete { totals.judgedWithMissingFacts += 1 }
        // With the logged original client: the Received headers are not in the log, so a new
        // efSkipIPs cannot be tried, only whether the connector has enhanced filtering at all.
        let decision = policy.judge(session: r.sessionFacts, from: address(r.from), recipient: recipient,
                                    originalClient: r.originalClient)
        let old = SimulatedOutcome(r), new = SimulatedOutcome(decision)
        if old == new { return nil }
        let attributionOnly = old.sameOutcome(new)
        if attributionOnly {
            totals.attributionOnly += 1
        } else {
            totals.changed += 1
            if incomplete { totals.changedWithMissingFacts += 1 }
            totals.transitions["\(old.verdict.rawValue)\(old.would.map { "/would-\($0.rawValue)" } ?? "") -> "
                + "\(new.verdict.rawValue)\(new.would.map { "/would-\($0.rawValue)" } ?? "")", default: 0] += 1
        }
        let client = r.clientName + "[" + (r.clientAddress?.description ?? "unknown") + "]"
        return SimulatedChange(time: r.timestamp.map(clock.format), queueID: r.queueID, client: client, from: r.from,
                               recipient: r.recipient, old: old, new: new, attributionOnly: attributionOnly,
                               missingFacts: missingFacts)
    }
}

extension SimulationTotals {
    /// The closing lines of `simulate`'s text output.
    public func text(policyFile: String) -> String {
        let n = ReportSummary.number
        var out = "\(n(judged)) logged decisions judged again under \(policyFile): "
        out += changed == 0 ? "none would change" : "\(n(changed)) would change"
        out += "\n"
        for (transition, count) in transitions.sorted(by: { ($0.value, $1.key) > ($1.value, $0.key) }) {
            out += "  \(transition): \(n(count))\n"
        }
        if attributionOnly > 0 {
            out += "\(n(attributionOnly)) would fare the same through another connector\n"
        }
        if judgedWithMissingFacts > 0 {
            out += "\(n(judgedWithMissingFacts)) judged with missing facts (lines without auth=, or without original_client= "
                + "under enhanced filtering, written by an older version, or with a value cut at \(VerdictLine.maximumValueLength) characters); \(n(changedWithMissingFacts)) of them would change\n"
        }
        if malformedLines > 0 { out += "\(n(malformedLines)) malformed verdict lines skipped\n" }
        if filteredOut > 0 { out += "\(n(filteredOut)) verdict lines left out by --since/--until\n" }
        return out
    }
}
