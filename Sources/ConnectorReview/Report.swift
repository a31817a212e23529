import ConnectorPolicy
// `connector-milter report`: what the policy did, summed up from its verdict lines.
// Pure aggregation: the command reads the files and feeds records in; this file counts.
//
// Counting rules, since a verdict line is one recipient and not one message:
// - a *message* is a queue id (per syslog host); refusals logged before Postfix opened a queue
//   file say NOQUEUE, and those of one SMTP transaction (same host, second, client and sender)
//   count as one message;
// - a message counts once under each verdict its recipients got, so the verdict columns of
//   messages may add up to more than the messages;
// - TLS is a property of the session, read from the first line of each message.

/// Which verdict lines a report or a simulation looks at.
public struct ReportFilter: Sendable {
    /// Inclusive.
    public var since: Int64?
    /// Exclusive: `--since 2026-11-28 --until 2026-11-29` is the whole of 28 November.
    public var until: Int64?
    /// Connector names, compared without regard to case; a line matches when its inbound or
    /// its outbound connector is one of them.
    public var connectors: [String] = []
    public var verdicts: Set<VerdictSelector> = []

    public init(since: Int64? = nil, until: Int64? = nil, connectors: [String] = [], verdicts: Set<VerdictSelector> = []) {
        self.since = since
        self.until = until
        self.connectors = connectors.map { $0.lowercased() }
        self.verdicts = verdicts
    }

    public func admits(_ r: VerdictRecord) -> Bool {
        if since != nil || until != nil {
            // A line without a time cannot be placed in the period asked for.
            guard let t = r.timestamp else { return false }
            if let since, t < since { return false }
            if let until, t >= until { return false }
        }
        if !connectors.isEmpty {
            let names = [r.inbound, r.outbound].compactMap { $0?.lowercased() }
            if !names.contains(where: connectors.contains) { return false }
        }
        if !verdicts.isEmpty && !verdicts.contains(where: { $0.matches(r) }) { return false }
        return true
    }
}

/// A `--verdict` value: what the MTA was told, or in monitor mode what it would have been told.
public enum VerdictSelector: String, Sendable, CaseIterable {
    case accept, reject, tempfail
    case wouldReject = "would-reject"
    case wouldTempfail = "would-tempfail"

    func matches(_ r: VerdictRecord) -> Bool {
        switch self {
        case .accept: return r.verdict == .accept
        case .reject: return r.verdict == .reject
        case .tempfail: return r.verdict == .tempfail
        case .wouldReject: return r.would == .reject
        case .wouldTempfail: return r.would == .tempfail
        }
    }
}

/// Counts verdict records as they come; `summary` gives the result.
public struct ReportBuilder {
    public let filter: ReportFilter
    public private(set) var linesRead = 0
    public private(set) var verdictLines = 0
    public private(set) var filteredOut = 0
    public private(set) var malformed = 0
    /// The first few malformed lines, as `WHERE: why`, for the administrator to look at.
    public private(set) var malformedExamples: [String] = []
    public static let maximumExamples = 5

    private var first: Int64?
    private var last: Int64?
    private var total = Tally()
    private var inbound: [GroupKey: Tally] = [:]
    private var outbound: [GroupKey: Tally] = [:]

    public init(filter: ReportFilter = ReportFilter()) {
        self.filter = filter
    }

    /// Counts one line read, whatever it was; `location` names it in malformed examples.
    public mutating func add(_ line: VerdictLineReader.Line, location: @autoclosure () -> String) {
        linesRead += 1
        switch line {
        case .other: break
        case .malformed(let why):
            malformed += 1
            if malformedExamples.count < Self.maximumExamples { malformedExamples.append("\(location()): \(why)") }
        case .verdict(let record):
            verdictLines += 1
            add(record)
        }
    }

    mutating func add(_ r: VerdictRecord) {
        guard filter.admits(r) else { filteredOut += 1; return }
        if let t = r.timestamp {
            first = min(first ?? t, t)
            last = max(last ?? t, t)
        }
        let message = Self.messageKey(r)
        total.add(r, message: message)
        inbound[GroupKey(name: r.inbound, type: r.inboundType.rawValue), default: Tally()].add(r, message: message)
        outbound[GroupKey(name: r.outbound, type: r.outboundType?.rawValue ?? "none"), default: Tally()].add(r, message: message)
    }

    /// A hash stands for the message: a 64-bit hash per message keeps a month of a busy
    /// server's queue ids in memory where the ids themselves would not fit as comfortably.
    static func messageKey(_ r: VerdictRecord) -> Int {
        var h = Hasher()
        h.combine(r.host)
        if let id = r.queueID {
            h.combine(id)
        } else {
            h.combine(0xDEAD_BEEF as UInt32)  // apart from any queue id
            h.combine(r.timestamp)
            h.combine(r.clientAddress)
            h.combine(r.clientName)
            h.combine(r.from)
        }
        return h.finalize()
    }

    public func summary(top: Int = 10, clock: LogClock) -> ReportSummary {
        func groups(_ tallies: [GroupKey: Tally]) -> [ReportSummary.Group] {
            tallies.map { $0.value.summary(name: $0.key.name, type: $0.key.type, top: top) }
                .sorted { ($0.recipients.total, $1.connector ?? "") > ($1.recipients.total, $0.connector ?? "") }
        }
        return ReportSummary(
            linesRead: linesRead, verdictLines: verdictLines, malformedLines: malformed,
            malformedExamples: malformedExamples, filteredOut: filteredOut,
            first: first.map(clock.format), last: last.map(clock.format),
            total: total.summary(name: nil, type: "all", top: top),
            inbound: groups(inbound), outbound: groups(outbound))
    }
}

private struct GroupKey: Hashable {
    var name: String?
    var type: String
}

/// The counts of one connector (or of everything).
private struct Tally {
    var messages = Set<Int>()
    var messagesByVerdict = [Set<Int>](repeating: [], count: 3)
    var recipientsByVerdict = [0, 0, 0]
    var would = [0, 0, 0]
    var tlsMessages = 0
    var tlsVersions: [String: Int] = [:]
    var reasons: [String: Int] = [:]
    var refusedClients: [String: Int] = [:]
    var refusedSenderDomains: [String: Int] = [:]
    /// Recipients judged on the original client enhanced filtering found, by that client.
    var originalClients: [String: Int] = [:]

    static func index(_ v: Verdict) -> Int {
        switch v {
        case .accept: return 0
        case .reject: return 1
        case .tempfail: return 2
        }
    }

    mutating func add(_ r: VerdictRecord, message: Int) {
        let v = Self.index(r.verdict)
        recipientsByVerdict[v] += 1
        messagesByVerdict[v].insert(message)
        if messages.insert(message).inserted, let tls = r.tlsVersion {
            tlsMessages += 1
            tlsVersions[tls, default: 0] += 1
        }
        if let would = r.would { self.would[Self.index(would)] += 1 }
        if let reason = r.reason { reasons[reason, default: 0] += 1 }
        if let original = r.originalClient { originalClients[original.description, default: 0] += 1 }
        if r.isRefusal {
            // Behind a service in front, the client that counts is the original one.
            refusedClients[(r.originalClient ?? r.clientAddress)?.description ?? "unknown", default: 0] += 1
            refusedSenderDomains[Self.senderDomain(r.from), default: 0] += 1
        }
    }

    /// MAIL FROM's domain, normalized as the judge sees it; `<>` for the null sender. Read
    /// on the UTF-8 view: building an `EmailAddress` per refusal costs more than the rest.
    static func senderDomain(_ from: String) -> String {
        if from.isEmpty { return "<>" }
        guard let at = from.utf8.lastIndex(of: UInt8(ascii: "@")) else { return "(no domain)" }
        let domain = Substring(from.utf8[from.utf8.index(after: at)...])
        return domain.isEmpty ? "(no domain)" : DomainName.normalize(domain)
    }

    func summary(name: String?, type: String, top: Int) -> ReportSummary.Group {
        func counts(_ c: [Int]) -> ReportSummary.Counts {
            ReportSummary.Counts(accept: c[0], reject: c[1], tempfail: c[2])
        }
        func ranked(_ d: [String: Int]) -> [ReportSummary.Ranked] {
            d.sorted { ($0.value, $1.key) > ($1.value, $0.key) }.prefix(top).map { ReportSummary.Ranked(value: $0.key, count: $0.value) }
        }
        let share = messages.isEmpty ? 0 : Double(tlsMessages) / Double(messages.count)
        return ReportSummary.Group(
            connector: name, type: type, messages: messages.count,
            messagesByVerdict: counts(messagesByVerdict.map(\.count)), recipients: counts(recipientsByVerdict),
            would: ReportSummary.Would(reject: would[1], tempfail: would[2]),
            reasons: reasons, tls: ReportSummary.TLS(messages: tlsMessages, share: (share * 10000).rounded() / 10000, versions: tlsVersions),
            topRefusedClients: ranked(refusedClients), topRefusedSenderDomains: ranked(refusedSenderDomains),
            originalClientRecipients: originalClients.values.reduce(0, +), topOriginalClients: ranked(originalClients))
    }
}

/// The report, as `--format json` prints it and the text form reads it.
public struct ReportSummary: Codable, Sendable, Equatable {
    public var linesRead: Int
    public var verdictLines: Int
    public var malformedLines: Int
    public var malformedExamples: [String]
    /// Verdict lines left out by --since, --until, --connector or --verdict.
    public var filteredOut: Int
    public var first: String?
    public var last: String?
    public var total: Group
    /// By inbound connector; `connector` is null for mail attributed to none (then `type`
    /// says `authenticated` for SASL clients, `none` otherwise).
    public var inbound: [Group]
    /// By outbound connector; null = delivery by MX.
    public var outbound: [Group]

    public struct Counts: Codable, Sendable, Equatable {
        public var accept: Int
        public var reject: Int
        public var tempfail: Int
        public var total: Int { accept + reject + tempfail }
    }

    public struct Would: Codable, Sendable, Equatable {
        public var reject: Int
        public var tempfail: Int
    }

    public struct TLS: Codable, Sendable, Equatable {
        /// Messages whose session was over TLS.
        public var messages: Int
        /// Of all messages, 0...1.
        public var share: Double
        public var versions: [String: Int]
    }

    public struct Ranked: Codable, Sendable, Equatable {
        public var value: String
        public var count: Int
    }

    public struct Group: Codable, Sendable, Equatable {
        public var connector: String?
        public var type: String
        public var messages: Int
        public var messagesByVerdict: Counts
        public var recipients: Counts
        /// Monitor mode: recipients accepted that the policy would have refused.
        public var would: Would
        public var reasons: [String: Int]
        public var tls: TLS
        /// Client addresses, and MAIL FROM domains (`<>` for the null sender), of refused
        /// recipients, monitor mode's would-be refusals included.
        public var topRefusedClients: [Ranked]
        public var topRefusedSenderDomains: [Ranked]
        /// Recipients judged on an original client found by enhanced filtering (`original_client=`),
        /// and the most frequent of those clients.
        public var originalClientRecipients: Int = 0
        public var topOriginalClients: [Ranked] = []
    }
}

// MARK: - Text

extension ReportSummary {
    /// The report for a person: a head, then one block per connector, busiest first.
    public func text() -> String {
        var out = ""
        let period = first.map { f in " from \(f) to \(last ?? f)" } ?? ""
        out += "\(Self.number(verdictLines)) verdict lines in \(Self.number(linesRead)) log lines\(period)"
        if filteredOut > 0 { out += "; \(Self.number(filteredOut)) left out by the filters" }
        out += "\n"
        if malformedLines > 0 {
            out += "\(Self.number(malformedLines)) malformed verdict lines skipped, for example:\n"
            for example in malformedExamples { out += "  \(example)\n" }
        }
        out += "\n" + Self.block(total, title: "All connectors")
        for group in inbound {
            let title: String
            switch (group.connector, group.type) {
            case (let name?, let type): title = "Inbound connector \(VerdictLine.quoted(name)) (\(type))"
            case (nil, "authenticated"): title = "No inbound connector: SASL-authenticated clients"
            default: title = "No inbound connector"
            }
            out += "\n" + Self.block(group, title: title)
        }
        for group in outbound {
            let title = group.connector.map { "Outbound connector \(VerdictLine.quoted($0)) (\(group.type))" }
                ?? "No outbound connector: delivery by MX"
            out += "\n" + Self.block(group, title: title)
        }
        return out
    }

    private static func block(_ g: Group, title: String) -> String {
        func counts(_ c: Counts) -> String {
            "\(number(c.accept)) accepted, \(number(c.reject)) rejected, \(number(c.tempfail)) tempfailed"
        }
        func ranked(_ list: [Ranked]) -> String {
            list.isEmpty ? "none" : list.map { "\(VerdictLine.quoteIfNeeded($0.value)) \(number($0.count))" }.joined(separator: ", ")
        }
        func label(_ text: String) -> String { "  " + text.padding(toLength: 28, withPad: " ", startingAt: 0) }
        var out = title + "\n"
        out += label("messages") + "\(number(g.messages)): \(counts(g.messagesByVerdict))\n"
        out += label("recipients") + "\(number(g.recipients.total)): \(counts(g.recipients))\n"
        if g.would.reject + g.would.tempfail > 0 {
            out += label("monitor mode") + "\(number(g.would.reject)) recipients would have been rejected, \(number(g.would.tempfail)) tempfailed\n"
        }
        let reasons = g.reasons.sorted { ($0.value, $1.key) > ($1.value, $0.key) }
        out += label("refusal reasons") + (reasons.isEmpty ? "none" : reasons.map { "\(VerdictLine.quoteIfNeeded($0.key)) \(number($0.value))" }.joined(separator: ", ")) + "\n"
        let versions = g.tls.versions.sorted { ($0.value, $1.key) > ($1.value, $0.key) }
            .map { "\(VerdictLine.quoteIfNeeded($0.key)) \(number($0.value))" }.joined(separator: ", ")
        out += label("TLS") + "\(percent(g.tls.share)) of messages" + (versions.isEmpty ? "" : " (\(versions))") + "\n"
        if g.originalClientRecipients > 0 {
            out += label("original clients") + "\(number(g.originalClientRecipients)) recipients judged on the client "
                + "behind a service: " + ranked(g.topOriginalClients) + "\n"
        }
        if !g.topRefusedClients.isEmpty {
            out += label("top refused clients") + ranked(g.topRefusedClients) + "\n"
            out += label("top refused sender domains") + ranked(g.topRefusedSenderDomains) + "\n"
        }
        return out
    }

    static func number(_ n: Int) -> String {
        let digits = String(n)
        var out = ""
        for (i, c) in digits.enumerated() {
            if i > 0 && (digits.count - i) % 3 == 0 { out += "," }
            out.append(c)
        }
        return out
    }

    static func percent(_ share: Double) -> String {
        let tenths = Int((share * 1000).rounded())
        return "\(tenths / 10).\(tenths % 10)%"
    }
}
