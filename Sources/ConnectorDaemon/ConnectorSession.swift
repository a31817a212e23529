import ConnectorPolicy
import Milter

/// Makes a session per SMTP connection, each pinned to the policy in force when it connected.
final class ConnectorSessionFactory: MilterSessionFactory {
    /// "N connectors", for the startup and reload lines.
    static func describe(_ store: PolicyStore) -> String { "\(store.current.policy.connectors.count) connectors" }

    let store: PolicyStore
    let log: any LogSink
    let metrics: WorkerMetrics?

    init(store: PolicyStore, log: any LogSink, metrics: WorkerMetrics? = nil) {
        self.store = store
        self.log = log
        self.metrics = metrics
    }

    func makeSession() -> MilterSession {
        metrics?.sessionOpened()
        return ConnectorSession(policy: store.current, log: log, metrics: metrics)
    }

    /// What connector-milter asks the MTA for, per stage. A list replaces the MTA's own for
    /// that stage, so each keeps the MTA's defaults we rely on. The TLS macros are asked for at
    /// MAIL too: Postfix sends them at HELO only when the client says EHLO again after
    /// STARTTLS, and a client may go straight to MAIL.
    static let requestedMacros: [MilterStage: [String]] = [
        .helo: SessionMacros.tlsMacros,
        .envelopeFrom: ["i", "{auth_type}", "{auth_authen}", "{mail_addr}"] + SessionMacros.tlsMacros,
        .envelopeRecipient: ["i", "{rcpt_addr}"],
        .endOfMessage: ["i"],
    ]


    /// Only RCPT (the verdict) and end of message (the header changes) need an answer, so the
    /// MTA waits for no other: connect, MAIL and the headers only bring facts. HELO is not
    /// needed: the HELO name decides nothing, and the TLS facts are asked for at MAIL.
    static let configuration = MilterConfiguration(
        name: "connector-milter",
        actions: [.addHeaders, .changeHeaders],
        macros: requestedMacros,
        noReplyToHeaders: true,
        noReplyBeforeRecipient: true,
        needsHelo: false
    )
}

/// One SMTP connection: macros in, session facts, a decision per recipient, replies and
/// verdict lines out. Refusals are logged when they happen; acceptances when the message is
/// queued, with its queue id.
final class ConnectorSession: MilterSession {
    static let stampedHeaders = ["X-Connector-Inbound", "X-Connector-Direction", "X-Connector-Original-Client"]

    private let policy: PolicySet
    private let log: any LogSink
    private let metrics: WorkerMetrics?
    private var facts = SessionFacts()
    /// The connector with enhanced filtering the client comes through, if any: its mail is
    /// judged on its original client once the Received headers are in.
    private var service: Connector?
    // Per message.
    private var from: EmailAddress?
    /// The recipients the MTA was not told to refuse at RCPT. One that waits for the original
    /// client (enhanced filtering) may still be refused at end of message.
    private var accepted: [PendingRecipient] = []
    private var forgedHeaders: [String: Int] = [:]  // stamped header name -> copies seen
    /// Received header values, topmost first, for enhanced filtering only.
    private var received: [String] = []

    init(policy: PolicySet, log: any LogSink, metrics: WorkerMetrics? = nil) {
        self.policy = policy
        self.log = log
        self.metrics = metrics
    }

    func connect(hostname: String, address: String?, context: MilterContext) throws -> MilterResponse {
        facts.clientName = SessionMacros.clientName(hostname)
        facts.clientAddress = address.flatMap { IPAddress($0) }
        service = policy.enhancedFilteringConnector(client: facts.clientAddress)
        return .proceed
    }

    func helo(_ name: String, context: MilterContext) throws -> MilterResponse {
        facts.helo = name
        readTLS(context)
        return .proceed
    }

    func mailFrom(_ arguments: [String], context: MilterContext) throws -> MilterResponse {
        resetMessage()
        readTLS(context)
        facts.authenticatedUser = context.macro("{auth_authen}").flatMap { $0.isEmpty ? nil : $0 }
        from = EmailAddress(parsing: arguments.first ?? "")
        return .proceed
    }

    func recipient(_ arguments: [String], context: MilterContext) throws -> MilterResponse {
        guard let from else { throw SessionError.recipientBeforeMail }
        let recipient = EmailAddress(parsing: arguments.first ?? "")
        // Enhanced filtering: what rests on the client's address waits for the original client.
        let judging = metrics?.startJudging()
        let (decision, waits) = policy.judgeAtRecipient(session: facts, from: from, recipient: recipient, service: service)
        if let judging { metrics?.judged(since: judging) }
        if !waits, let refusal = decision.enforcedRefusal {
            logVerdict(decision, recipient: recipient, queueID: context.macro("i"))
            return .refuse(refusal.reply)
        }
        accepted.append(PendingRecipient(decision: decision, recipient: recipient, waits: waits))
        return .proceed
    }

    func header(name: String, value: String, context: MilterContext) throws -> MilterResponse {
        if let stamped = Self.stampedHeaders.first(where: { $0.caseInsensitiveEquals(name) }) {
            forgedHeaders[stamped, default: 0] += 1
        }
        // One more than the walk reads, so a chain that long still ends in "no answer".
        if service != nil, received.count <= ReceivedChain.maximumHops, name.caseInsensitiveEquals("Received") {
            received.append(value)
        }
        return .proceed
    }

    func endOfMessage(context: MilterContext) throws -> MilterResponse {
        defer { resetMessage() }
        // After DATA the MTA takes or refuses the whole message: one enforced refusal refuses
        // it for every recipient (docs/enhanced-filtering.md), and nothing is changed in it.
        let (decisions, messageRefusal) = policy.judgeAtEndOfMessage(
            session: facts, from: from ?? EmailAddress(parsing: ""), pending: accepted, received: received, service: service)
        if let messageRefusal {
            let queueID = context.macro("i")
            for r in decisions {
                logVerdict(r.decision, recipient: r.recipient, queueID: queueID, originalClient: r.originalClient)
            }
            return .refuse(messageRefusal.reply)
        }
        // Copies that arrived with the message were written by someone else: remove them
        // whether or not we stamp our own. Highest index first, so the rest keep their numbers.
        for (name, count) in forgedHeaders {
            for index in stride(from: count, through: 1, by: -1) {
                try context.deleteHeader(name: name, index: index)
            }
        }
        // The headers describe the message; its first accepted recipient decides them.
        if policy.settings.stampHeaders, let first = decisions.first {
            try context.addHeader(name: "X-Connector-Inbound", value: first.decision.inbound.map { headerSafe($0.name) } ?? "none")
            try context.addHeader(name: "X-Connector-Direction", value: first.decision.direction.rawValue)
            if first.waited {
                try context.addHeader(name: "X-Connector-Original-Client", value: first.originalClient?.description ?? "none")
            }
        }
        let queueID = context.macro("i")
        for r in decisions {
            logVerdict(r.decision, recipient: r.recipient, queueID: queueID, originalClient: r.originalClient)
        }
        return .proceed
    }

    func abort(context: MilterContext) {
        resetMessage()
    }

    func close() {}

    private func readTLS(_ context: MilterContext) {
        if let tls = SessionMacros.tls(context.macro) {
            facts.tlsVersion = tls.version
            facts.verifiedCertificateName = tls.certificateName
        }
    }

    private func resetMessage() {
        from = nil
        accepted.removeAll(keepingCapacity: true)
        forgedHeaders.removeAll(keepingCapacity: true)
        received.removeAll(keepingCapacity: true)
    }

    private func logVerdict(_ decision: Decision, recipient: EmailAddress, queueID: String?, originalClient: IPAddress? = nil) {
        let id = queueID.flatMap { $0.isEmpty ? nil : $0 }
        metrics?.decided(decision)
        log.log(decision.verdict == .accept ? .info : .notice,
                VerdictLine.format(queueID: id, decision: decision, session: facts, from: from ?? EmailAddress(parsing: ""),
                                   recipient: recipient, originalClient: originalClient))
    }

    /// Connector names come from the administrator, but a header must still be one line.
    private func headerSafe(_ text: String) -> String {
        String(text.unicodeScalars.map { $0.value < 0x20 || $0.value == 0x7F ? " " : Character($0) })
    }
}

enum SessionError: Error, CustomStringConvertible {
    case recipientBeforeMail

    var description: String {
        switch self {
        case .recipientBeforeMail: return "RCPT without MAIL: the MTA and the milter disagree on the session state"
        }
    }
}

extension String {
    func caseInsensitiveEquals(_ other: String) -> Bool {
        utf8.elementsEqual(other.utf8) { DomainName.lowercasedASCII($0) == DomainName.lowercasedASCII($1) }
    }
}
