// Joins the daemon's verdict lines with the MTA's own lines into one timeline per message, for
// `connector-milter trace`: received from (client, TLS, certificate), judged (connector,
// verdict, reason, per recipient), delivered to (relay, status, TLS).
//
// How the lines meet:
// - By queue id: client=, message-id=, from=, to=, removed, and the verdict lines logged at
//   end of message. A queue id is unique per host only: trace one host's log at a time.
// - By process: Postfix smtpd logs the client's TLS before the queue id exists, so the TLS
//   line and the `connect from` line belong to the session of that smtpd process (pid), which
//   the next `QUEUEID: client=` of the same process continues. Sendmail likewise logs
//   STARTTLS=server in the process that later logs `from=`. The outbound TLS line comes from
//   the smtp process (Postfix) or the delivering Sendmail process just before its to= line.
// - Refusals at RCPT before a queue file exists (NOQUEUE) carry no queue id: each SMTP
//   transaction of a session (its MAIL FROM) is one timeline, and the daemon's NOQUEUE verdict
//   line joins the refusal with the same sender, recipient and client nearest in time.
//
// Lines come in log order; the two logs (the MTA's and the daemon's) may be given in either
// order, since queue ids and the NOQUEUE matching do not depend on it.

import ConnectorPolicy
import Foundation

/// One message (or one refused transaction) from its client to its deliveries.
public struct MessageTrace: Sendable, Equatable {
    public struct Received: Sendable, Equatable {
        public var time: Int64?
        public var client: MailPeer?
        /// The client's name and address as the verdict line gave them, when the MTA's line is absent.
        public var clientFromVerdict: String?
        public var tls: MailTLS?
        /// The verified certificate name the daemon judged on (verdict line), else the MTA's.
        public var certificate: String?
        public var helo: String?
    }

    public struct Judgment: Sendable, Equatable {
        public var time: Int64?
        public var recipient: String
        public var from: String
        public var verdict: String
        public var would: String?
        public var reason: String?
        public var direction: String
        public var inbound: String?
        public var inboundType: String
        public var outbound: String?
        public var outboundType: String?
        public var mode: String
    }

    public struct Notification: Sendable, Equatable {
        public var time: Int64?
        public var kind: String
        public var queueID: String
    }

    public var queueID: String?
    public var host: String?
    public var mta: MailTransferAgent?
    public var messageID: String?
    public var received = Received()
    public var from: String?
    public var size: Int?
    public var recipientCount: Int?
    public var judged: [Judgment] = []
    public var refused: [MailRefusal] = []
    public var delivered: [MailDelivery] = []
    public var notifications: [Notification] = []
    public var removed: Int64?
    public var firstSeen: Int64?

    mutating func seen(_ time: Int64?) {
        guard let time else { return }
        if firstSeen.map({ time < $0 }) ?? true { firstSeen = time }
    }

    /// Every recipient the trace names: judged, refused or delivered.
    public var recipients: [String] {
        var seen = Set<String>()
        return (judged.map(\.recipient) + refused.compactMap(\.recipient) + delivered.map(\.recipient))
            .filter { seen.insert($0.lowercased()).inserted }
    }
}

/// Which messages to show.
public struct TraceQuery: Sendable {
    public var queueID: String?
    public var from: String?
    public var recipient: String?
    public var since: Int64?
    public var until: Int64?

    public init(queueID: String? = nil, from: String? = nil, recipient: String? = nil, since: Int64? = nil, until: Int64? = nil) {
        self.queueID = queueID
        self.from = from
        self.recipient = recipient
        self.since = since
        self.until = until
    }

    func matches(_ trace: MessageTrace) -> Bool {
        if let queueID, trace.queueID != queueID { return false }
        if let from = from.map(Self.bare) {
            let senders = [trace.from].compactMap { $0 } + trace.judged.map(\.from) + trace.refused.compactMap(\.from)
            if !senders.contains(where: { $0.lowercased() == from }) { return false }
        }
        if let recipient = recipient.map(Self.bare),
           !trace.recipients.contains(where: { $0.lowercased() == recipient }) { return false }
        if since != nil || until != nil {
            guard let time = trace.firstSeen else { return false }
            if let since, time < since { return false }
            if let until, time >= until { return false }
        }
        return true
    }

    /// `<a@b>` and `a@b` alike, without regard to case.
    static func bare(_ address: String) -> String {
        var a = Substring(address)
        if a.first == "<", a.last == ">" { a = a.dropFirst().dropLast() }
        return a.lowercased()
    }
}

public struct TraceBuilder {
    private struct ProcessKey: Hashable {
        var host: String?
        var program: String
        var pid: Int?
    }

    private struct Session {
        var client: MailPeer?
        var tls: MailTLS?
        /// The NOQUEUE transaction in progress: its index in `unqueued` and its sender.
        var transaction: (index: Int, from: String?)?
    }

    private var traces: [String: MessageTrace] = [:]
    private var order: [String] = []
    private var unqueued: [MessageTrace] = []
    private var sessions: [ProcessKey: Session] = [:]
    private var outboundTLS: [ProcessKey: (peer: String, tls: MailTLS)] = [:]
    private var unqueuedVerdicts: [VerdictRecord] = []

    public private(set) var malformedLines = 0
    /// The first few malformed lines: where, and why.
    public private(set) var malformedSamples: [String] = []
    public static let sampleLimit = 5

    public init() {}

    /// Reads one raw log line: a verdict line of the daemon, a line of the MTA, or neither.
    public mutating func add(bytes: UnsafeBufferPointer<UInt8>, complete: Bool, clock: inout LogClock,
                             location: () -> String) {
        switch VerdictLineReader.parse(bytes: bytes, complete: complete, clock: &clock) {
        case .verdict(let record): add(record)
        case .malformed(let why): malformed(why, location)
        case .other:
            switch MailLogReader.parse(bytes: bytes, complete: complete, clock: &clock) {
            case .mta(let line): add(line)
            case .malformed(let why): malformed(why, location)
            case .other: break
            }
        }
    }

    private mutating func malformed(_ why: String, _ location: () -> String) {
        malformedLines += 1
        if malformedSamples.count < Self.sampleLimit { malformedSamples.append("\(location()): \(why)") }
    }

    private mutating func withTrace(_ queueID: String, _ line: MailLogLine?, _ body: (inout MessageTrace) -> Void) {
        if traces[queueID] == nil {
            traces[queueID] = MessageTrace(queueID: queueID, host: line?.host, mta: line?.mta)
            order.append(queueID)
        }
        if let line {
            if traces[queueID]!.mta == nil { traces[queueID]!.mta = line.mta }
            if traces[queueID]!.host == nil { traces[queueID]!.host = line.host }
            traces[queueID]!.seen(line.timestamp)
        }
        body(&traces[queueID]!)
    }

    public mutating func add(_ line: MailLogLine) {
        let key = ProcessKey(host: line.host, program: line.program, pid: line.pid)
        switch line.event {
        case .connect(let peer):
            sessions[key] = Session(client: peer)
        case .disconnect:
            sessions[key] = nil
        case .inboundTLS(let tls):
            sessions[key, default: Session()].tls = tls
        case .outboundTLS(let peer, let tls):
            outboundTLS[key] = (peer, tls)
        case .client(let queueID, let peer):
            let session = sessions[key]
            sessions[key]?.transaction = nil
            withTrace(queueID, line) {
                $0.received.time = line.timestamp
                $0.received.client = peer
                $0.received.tls = session?.tls
            }
        case .messageID(let queueID, let id):
            withTrace(queueID, line) { $0.messageID = id }
        case .envelope(let queueID, let from, let size, let count, let client, let messageID):
            let session = sessions[key]
            withTrace(queueID, line) {
                $0.from = from
                if let size, size > 0 || $0.size == nil { $0.size = size }
                if let count { $0.recipientCount = count }
                if let messageID, $0.messageID == nil { $0.messageID = messageID }
                if let client {  // Sendmail: the client is on the from= line, its TLS in the same process
                    $0.received.client = client
                    if $0.received.time == nil { $0.received.time = line.timestamp }
                    if $0.received.tls == nil { $0.received.tls = session?.tls }
                }
            }
        case .delivery(let queueID, var delivery):
            if let (peer, tls) = outboundTLS[key], Self.relay(delivery.relay, isPeer: peer, mta: line.mta) {
                delivery.tls = tls
            }
            withTrace(queueID, line) { $0.delivered.append(delivery) }
        case .refusal(let queueID, var refusal):
            let session = sessions[key]
            if refusal.client == nil { refusal.client = session?.client }
            if let queueID {
                withTrace(queueID, line) {
                    $0.refused.append(refusal)
                    if $0.received.client == nil { $0.received.client = refusal.client }
                    if $0.received.tls == nil { $0.received.tls = session?.tls }
                    if $0.from == nil { $0.from = refusal.from }
                }
                return
            }
            // One timeline per transaction: a new sender (or none yet) opens the next one.
            if let open = session?.transaction, open.from == refusal.from {
                unqueued[open.index].refused.append(refusal)
                unqueued[open.index].seen(line.timestamp)
                return
            }
            var trace = MessageTrace(queueID: nil, host: line.host, mta: line.mta)
            trace.received = MessageTrace.Received(time: line.timestamp, client: refusal.client, tls: session?.tls,
                                                   helo: refusal.helo)
            trace.from = refusal.from
            trace.refused.append(refusal)
            trace.seen(line.timestamp)
            unqueued.append(trace)
            if session != nil { sessions[key]?.transaction = (unqueued.count - 1, refusal.from) }
        case .notification(let queueID, let kind, let newQueueID):
            withTrace(queueID, line) { $0.notifications.append(.init(time: line.timestamp, kind: kind, queueID: newQueueID)) }
        case .removed(let queueID):
            withTrace(queueID, line) { $0.removed = line.timestamp }
        }
    }

    /// Postfix logs the same `HOST[IP]:PORT` in both lines; Sendmail's STARTTLS=client names
    /// `[IP]` or `NAME [IP]`, its to= line `NAME [IP]` (and more).
    private static func relay(_ relay: String, isPeer peer: String, mta: MailTransferAgent) -> Bool {
        mta == .postfix ? relay == peer : (!peer.isEmpty && relay.hasPrefix(peer))
    }

    public mutating func add(_ record: VerdictRecord) {
        guard let queueID = record.queueID else {
            unqueuedVerdicts.append(record)
            return
        }
        withTrace(queueID, nil) {
            $0.judged.append(Self.judgment(record))
            $0.seen(record.timestamp)
            Self.fillReceived(&$0, from: record)
        }
    }

    private static func judgment(_ r: VerdictRecord) -> MessageTrace.Judgment {
        MessageTrace.Judgment(time: r.timestamp, recipient: r.recipient, from: r.from, verdict: r.verdict.rawValue,
                              would: r.would?.rawValue, reason: r.reason, direction: r.direction.rawValue,
                              inbound: r.inbound, inboundType: r.inboundType.rawValue, outbound: r.outbound,
                              outboundType: r.outboundType?.rawValue, mode: r.mode.rawValue)
    }

    private static func fillReceived(_ trace: inout MessageTrace, from r: VerdictRecord) {
        if trace.received.certificate == nil { trace.received.certificate = r.certificate }
        if trace.received.client == nil {
            trace.received.clientFromVerdict = "\(r.clientName)[\(r.clientAddress.map { "\($0)" } ?? "unknown")]"
        }
        if trace.received.time == nil { trace.received.time = r.timestamp }
        if trace.from == nil { trace.from = r.from }
    }

    /// The timelines that match, oldest first (those without a time last, in log order).
    public func traces(matching query: TraceQuery) -> [MessageTrace] {
        var queued = order.map { traces[$0]! }
        var loose = unqueued
        joinUnqueuedVerdicts(queued: &queued, unqueued: &loose)
        let all = queued + loose
        return all.enumerated()
            .filter { query.matches($0.element) }
            .sorted { a, b in
                switch (a.element.firstSeen, b.element.firstSeen) {
                case let (x?, y?) where x != y: return x < y
                case (nil, _?): return false
                case (_?, nil): return true
                default: return a.offset < b.offset
                }
            }
            .map(\.element)
    }

    /// Gives each NOQUEUE verdict line the refusal it caused: same recipient and sender, same
    /// client address when both are known, nearest in time (within two minutes). A verdict
    /// without one becomes a timeline of its own, so the daemon's log alone can be traced.
    private func joinUnqueuedVerdicts(queued: inout [MessageTrace], unqueued: inout [MessageTrace]) {
        guard !unqueuedVerdicts.isEmpty else { return }
        struct Place: Hashable {
            var queued: Bool
            var trace: Int
            var refusal: Int
        }
        // Refusals by recipient and sender, so that a day of refused spam is not quadratic.
        func key(_ recipient: String, _ from: String) -> String { recipient.lowercased() + "\u{0}" + from.lowercased() }
        var index: [String: [Place]] = [:]
        for (isQueued, traces) in [(true, queued), (false, unqueued)] {
            for (t, trace) in traces.enumerated() {
                for (n, refusal) in trace.refused.enumerated() {
                    guard let recipient = refusal.recipient else { continue }
                    index[key(recipient, refusal.from ?? trace.from ?? ""), default: []]
                        .append(Place(queued: isQueued, trace: t, refusal: n))
                }
            }
        }
        var taken = Set<Place>()
        for record in unqueuedVerdicts {
            var best: (place: Place, distance: Int64)? = nil
            for place in index[key(record.recipient, record.from)] ?? [] where !taken.contains(place) {
                let trace = place.queued ? queued[place.trace] : unqueued[place.trace]
                let refusal = trace.refused[place.refusal]
                if let address = record.clientAddress, let peer = refusal.client ?? trace.received.client,
                   IPAddress(peer.address.hasPrefix("IPv6:") ? String(peer.address.dropFirst(5)) : peer.address) != address {
                    continue
                }
                let distance: Int64
                if let a = record.timestamp, let b = refusal.time { distance = abs(a - b) } else { distance = 0 }
                guard distance <= 120 else { continue }
                if best.map({ distance < $0.distance }) ?? true { best = (place, distance) }
            }
            if let best {
                taken.insert(best.place)
                if best.place.queued {
                    queued[best.place.trace].judged.append(Self.judgment(record))
                    Self.fillReceived(&queued[best.place.trace], from: record)
                } else {
                    unqueued[best.place.trace].judged.append(Self.judgment(record))
                    Self.fillReceived(&unqueued[best.place.trace], from: record)
                }
            } else {
                var trace = MessageTrace()
                trace.judged.append(Self.judgment(record))
                trace.seen(record.timestamp)
                Self.fillReceived(&trace, from: record)
                unqueued.append(trace)
            }
        }
    }
}
