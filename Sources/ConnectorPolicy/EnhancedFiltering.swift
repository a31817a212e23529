// Enhanced filtering for connectors (docs/enhanced-filtering.md): mail that a filtering service
// in front relayed is judged on its original client, found in the Received headers, for what
// rests on the client's address: partner identification by address, partner restrictions
// (5.7.51) and direct send (5.7.68). What rests on the connection (relay refusal, TLS and
// certificate demands) stays judged at RCPT on the service's own session.

extension PolicySet {
    /// The enabled inbound connector with enhanced filtering whose senderIPAddresses hold the
    /// connecting client (longest prefix, then the first in the file).
    public func enhancedFilteringConnector(client: IPAddress?) -> Connector? {
        guard let client, let index = enhancedFilteringByAddress.longestMatch(client) else { return nil }
        return connector(index)
    }

    /// The original client of a message from `connector`, or nil when the chain names none
    /// that can be trusted (docs/enhanced-filtering.md).
    public func originalClient(_ chain: ReceivedChain, connecting: IPAddress, through connector: Connector) -> IPAddress? {
        if connector.efSkipLastIP {
            return chain.originalClient(connecting: connecting, isSkipped: { $0 == connecting })
        }
        let skipped = connector.efSkipIPs
        return chain.originalClient(connecting: connecting, isSkipped: { address in skipped.contains { $0.contains(address) } })
    }

    /// At RCPT, for a recipient of mail from a connector with enhanced filtering: true when its
    /// refusal (enforced or not) rests on the client's address, so it waits for the headers
    /// instead of being given now.
    public func waitsForOriginalClient(_ decision: Decision) -> Bool {
        guard let reason = decision.refusal?.reason else { return false }
        return Self.restsOnClientAddress(reason)
    }

    static func restsOnClientAddress(_ reason: RefusalReason) -> Bool {
        switch reason {
        case .partnerRestricted, .directSend: return true
        case .relayDenied, .tlsRequired, .certificateRequired: return false
        }
    }

    /// Judges one recipient with the original client a connector with enhanced filtering
    /// found. Without one (nil), or when the connecting client comes through no such connector,
    /// or the connector's efUsers leave this recipient out, it is `judge(session:from:recipient:)`.
    public func judge(session: SessionFacts, from: EmailAddress, recipient: EmailAddress,
                      originalClient: IPAddress?) -> Decision {
        let atConnection = judge(session: session, from: from, recipient: recipient)
        guard let originalClient, let service = enhancedFilteringConnector(client: session.clientAddress),
              service.enhancedFilteringApplies(to: recipient) else { return atConnection }
        // Relay refusal and TLS demands were judged on the service's session, at RCPT.
        if let reason = atConnection.refusal?.reason, !Self.restsOnClientAddress(reason) { return atConnection }
        // The original client's name and certificate are unknown: it was not the one that
        // connected. Its TLS is the service's session's, which decides nothing here.
        var original = session
        original.clientAddress = originalClient
        original.clientName = "unknown"
        original.verifiedCertificateName = nil
        let outbound = atConnection.outbound
        let decision: Decision
        switch attributeInbound(session: original, from: from, recipient: recipient) {
        case .refused(.relayDenied, _):
            return atConnection
        case .refused(let reason, let mode):
            decision = decide(reason, mode: service.efTestMode ? .monitor : mode, direction: .incoming, inbound: nil,
                              type: .none, outbound: outbound)
        case .attributed(let direction, let index, let type):
            decision = Decision(verdict: .accept, refusal: nil, mode: index.map { mode(of: $0) } ?? settings.mode,
                                direction: direction, inbound: index.map { connector($0) }, inboundType: type,
                                outbound: outbound)
        }
        return decision
    }
}

extension Connector {
    /// efUsers names the recipient, or is empty (every recipient).
    public func enhancedFilteringApplies(to recipient: EmailAddress) -> Bool {
        efUsers.isEmpty || efUsers.contains(EnhancedFilteringUsers.key(recipient))
    }
}

/// efUsers entries and recipients compare as lowercased `local@domain` (domain normalized).
enum EnhancedFilteringUsers {
    static func key(_ address: EmailAddress) -> String {
        guard let at = address.address.lastIndex(of: "@") else { return DomainName.lowercasedASCII(address.address) }
        return DomainName.lowercasedASCII(String(address.address[..<at])) + "@" + address.domain
    }

    struct Problem: Error { let message: String }

    /// `user@domain.example`, or why not.
    static func parse(_ text: String) -> Result<String, Problem> {
        let address = EmailAddress(parsing: text)
        guard address.address == text, let at = text.lastIndex(of: "@"), at != text.startIndex else {
            return .failure(Problem(message: "must be an address like user@contoso.com"))
        }
        if text.contains(where: { $0 == " " || $0 == "<" || $0 == ">" || $0.isNewline }) {
            return .failure(Problem(message: "must be an address like user@contoso.com, without angle brackets"))
        }
        if case .failure(let error) = DomainName.validate(String(text[text.index(after: at)...])) {
            return .failure(Problem(message: "has a bad domain: \(error)"))
        }
        return .success(key(address))
    }
}

extension ValueSyntax where Value == [String] {
    /// Recipient addresses, for efUsers.
    static var recipientAddresses: Self {
        ValueSyntax(phrase: "list of addresses", read: { reader, entry in
            guard let items = reader.strings(entry, example: "[ap@contoso.com, ceo@contoso.com]") else { return nil }
            var addresses: [String] = []
            var ok = true
            for (text, node) in items {
                switch EnhancedFilteringUsers.parse(text) {
                case .success(let key): addresses.append(key)
                case .failure(let why): reader.problem(node, "\(entry.key): \"\(text)\" \(why.message)"); ok = false
                }
            }
            if ok && addresses.isEmpty {
                reader.problem(entry.value, "\(entry.key) must list at least one address (leave it out for every recipient)")
                return nil
            }
            return ok ? addresses : nil
        }, show: { $0.isEmpty ? "none" : $0.map { "`\($0)`" }.joined(separator: ", ") })
    }
}

extension Decision {
    /// A recipient that was accepted in its own right, refused along with its message after
    /// DATA because another recipient's refusal refused the whole message (the MTA takes or
    /// refuses a message, not a recipient, at that point). Logged `verdict=reject` without
    /// `reason=`: the policy demanded nothing against this recipient.
    public var refusedWithMessage: Decision {
        Decision(verdict: .reject, refusal: nil, mode: mode, direction: direction, inbound: inbound,
                 inboundType: inboundType, outbound: outbound)
    }
}

/// A recipient the MTA was not told to refuse at RCPT, as the message goes on.
public struct PendingRecipient: Sendable {
    public var decision: Decision
    public var recipient: EmailAddress
    /// Judged again at end of message with the original client (enhanced filtering).
    public var waits: Bool

    public init(decision: Decision, recipient: EmailAddress, waits: Bool) {
        self.decision = decision
        self.recipient = recipient
        self.waits = waits
    }
}

/// A recipient's final decision at end of message, and the original client it was judged on.
public struct FinalRecipient: Sendable {
    public var decision: Decision
    public var recipient: EmailAddress
    public var originalClient: IPAddress?
    /// Judged on the original client, or waited for one that was not found.
    public var waited: Bool
}

extension PolicySet {
    /// RCPT: the recipient's decision, and whether it waits for the end of the headers (then the
    /// MTA is told nothing yet, whatever the decision says).
    public func judgeAtRecipient(session: SessionFacts, from: EmailAddress, recipient: EmailAddress,
                                 service: Connector?) -> (decision: Decision, waits: Bool) {
        let decision = judge(session: session, from: from, recipient: recipient)
        let waits = service?.enhancedFilteringApplies(to: recipient) == true
            && (decision.enforcedRefusal == nil || waitsForOriginalClient(decision))
        return (decision, waits)
    }

    /// End of message: every pending recipient's final decision, and the refusal of the whole
    /// message, if one of them is refused (the first such, in RCPT order). The others of a
    /// refused message are then `refusedWithMessage`.
    public func judgeAtEndOfMessage(session: SessionFacts, from: EmailAddress, pending: [PendingRecipient],
                                    received: [String], service: Connector?) -> (recipients: [FinalRecipient], refusal: Refusal?) {
        var originalClient: IPAddress?
        if let service, let connecting = session.clientAddress, pending.contains(where: \.waits) {
            originalClient = self.originalClient(ReceivedChain(headers: received), connecting: connecting, through: service)
        }
        var recipients = pending.map { p -> FinalRecipient in
            guard p.waits, let originalClient else {
                return FinalRecipient(decision: p.decision, recipient: p.recipient, originalClient: nil, waited: p.waits)
            }
            return FinalRecipient(decision: judge(session: session, from: from, recipient: p.recipient, originalClient: originalClient),
                                  recipient: p.recipient, originalClient: originalClient, waited: true)
        }
        guard let refusal = recipients.lazy.compactMap(\.decision.enforcedRefusal).first else { return (recipients, nil) }
        for i in recipients.indices where recipients[i].decision.enforcedRefusal == nil {
            recipients[i].decision = recipients[i].decision.refusedWithMessage
        }
        return (recipients, refusal)
    }
}
