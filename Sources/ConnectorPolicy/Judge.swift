// How a message is judged (docs/judging.md), in its words and its order.
// Everything that decides whether a recipient is accepted lives in this file.

/// What the MTA told us about the SMTP session, already decoded from its macros.
public struct SessionFacts: Sendable, Equatable {
    public var clientAddress: IPAddress?
    /// The client's host name as the MTA verified it, or "unknown".
    public var clientName: String
    public var helo: String?
    /// The negotiated TLS protocol ("TLSv1.3"), nil for a session in clear.
    public var tlsVersion: String?
    /// The name (CN) of a client certificate that the MTA verified; nil when there was none,
    /// or it was not verified (an unverified certificate proves nothing).
    public var verifiedCertificateName: String?
    /// The SASL login name, nil when the client did not authenticate.
    public var authenticatedUser: String?

    public init(clientAddress: IPAddress? = nil, clientName: String = "unknown", helo: String? = nil,
                tlsVersion: String? = nil, verifiedCertificateName: String? = nil, authenticatedUser: String? = nil) {
        self.clientAddress = clientAddress
        self.clientName = clientName
        self.helo = helo
        self.tlsVersion = tlsVersion
        self.verifiedCertificateName = verifiedCertificateName
        self.authenticatedUser = authenticatedUser
    }

    public var isTLS: Bool { tlsVersion != nil }

    /// The verified certificate's name when it can identify anyone: over TLS, and a host name
    /// (lowercased). A CA may sign a CN like `x" y.contoso.com` or `*.contoso.com`, which would
    /// otherwise end in ".contoso.com" and match `*.contoso.com`.
    var certificateHostName: String? {
        guard isTLS, let name = verifiedCertificateName else { return nil }
        return try? DomainName.validate(name).get()
    }
}

public enum MessageDirection: String, Sendable {
    /// Sent by the organization.
    case originating
    /// Sent to the organization.
    case incoming
}

public enum InboundType: String, Sendable {
    case onPremises, partner, authenticated, none
}

public enum RefusalReason: String, Sendable, CaseIterable {
    case relayDenied = "relay-denied"
    case partnerRestricted = "partner-restricted"
    case tlsRequired = "tls-required"
    case certificateRequired = "certificate-required"
    case directSend = "direct-send"
}

public struct Refusal: Sendable, Equatable {
    public let reason: RefusalReason
    public let reply: SMTPReply
}

public enum Verdict: String, Sendable {
    case accept, reject, tempfail
}

/// The judgment of one recipient: what happens to it and why.
public struct Decision: Sendable, Equatable {
    /// What the MTA is told. In monitor mode always `accept`.
    public let verdict: Verdict
    /// The refusal the policy demands, whether or not it was enforced.
    public let refusal: Refusal?
    public let mode: Mode
    public let direction: MessageDirection
    /// The inbound connector the message was attributed to.
    public let inbound: Connector?
    public let inboundType: InboundType
    public let outbound: Connector?

    /// The reply to send, when the recipient is refused.
    public var enforcedRefusal: Refusal? { verdict == .accept ? nil : refusal }
    /// In monitor mode, what would have happened.
    public var wouldBe: Verdict? {
        guard verdict == .accept, let refusal else { return nil }
        return refusal.reply.isPermanent ? .reject : .tempfail
    }
}

public extension PolicySet {
    /// Judges one recipient of a message. Pure: the same facts always give the same decision.
    func judge(session: SessionFacts, from: EmailAddress, recipient: EmailAddress) -> Decision {
        let outbound = outboundConnector(for: recipient.domain)
        let attribution = attributeInbound(session: session, from: from, recipient: recipient)

        switch attribution {
        case .refused(let reason, let mode):
            return decide(reason, mode: mode, direction: .incoming, inbound: nil, type: .none, outbound: outbound)
        case .attributed(let direction, let index, let type):
            let inbound = index.map { connector($0) }
            let inboundMode = index.map { mode(of: $0) } ?? settings.mode
            if let inbound, let reason = tlsDemand(of: inbound, session: session) {
                return decide(reason, mode: inboundMode, direction: direction, inbound: inbound, type: type, outbound: outbound)
            }
            if let outbound, outbound.requireTlsReceipt, !session.isTLS {
                return decide(.tlsRequired, mode: outbound.mode ?? settings.mode, direction: direction,
                              inbound: inbound, type: type, outbound: outbound)
            }
            return Decision(verdict: .accept, refusal: nil, mode: inboundMode, direction: direction,
                            inbound: inbound, inboundType: type, outbound: outbound)
        }
    }

    /// Outbound attribution: exact recipient domain, then the longest `*.x`, then an onPremises
    /// connector for all accepted domains, then `*`; nil = delivery by MX, opportunistic TLS.
    func outboundConnector(for domain: String) -> Connector? {
        var specific: Int?
        var any: Int?
        // Visited most specific first, with `*` last: the first hit decides which it is.
        outboundByRecipientDomain.forEachMatch(domain) { index, specificity in
            if specificity > 0 { specific = index } else { any = index }
            return false
        }
        if let specific { return connector(specific) }
        if let forAccepted = outboundForAcceptedDomains, isAccepted(domain) { return connector(forAccepted) }
        return any.map { connector($0) }
    }
}

/// Why the MTA's own relay control may let a client relay: it is one of the organization's.
public struct RelayPermission: Sendable, Equatable {
    /// onPremises (by verified certificate or by address) or authenticated.
    public let inboundType: InboundType
    /// The onPremises connector; nil for an authenticated client.
    public let connector: Connector?
}

public extension PolicySet {
    /// Whether the MTA itself may relay `recipient` for this client: the same attribution as
    /// `judge` makes the client one of the organization's (onPremises by certificate, by address
    /// with an accepted or null sender or an accepted recipient, or authenticated). Nil for
    /// anyone else: the MTA then refuses relaying by its own rules. TLS demands are left out on
    /// purpose: the milter enforces them at the same RCPT, with the verdict line.
    func relayPermission(session: SessionFacts, from: EmailAddress, recipient: EmailAddress) -> RelayPermission? {
        guard case .attributed(.originating, let index, let type) = attributeInbound(session: session, from: from, recipient: recipient)
        else { return nil }
        return RelayPermission(inboundType: type, connector: index.map { connector($0) })
    }
}

enum InboundAttribution {
    case attributed(MessageDirection, connector: Int?, InboundType)
    case refused(RefusalReason, mode: Mode)
}

extension PolicySet {
    func attributeInbound(session: SessionFacts, from: EmailAddress, recipient: EmailAddress) -> InboundAttribution {
        let recipientAccepted = isAccepted(recipient.domain)
        let senderAccepted = !from.isNull && isAccepted(from.domain)
        let certificate = session.certificateHostName

        // 1. onPremises by certificate: originating, may relay anywhere.
        if let certificate, let index = onPremisesByCertificate.mostSpecific(certificate) {
            return .attributed(.originating, connector: index, .onPremises)
        }
        // 2. onPremises by address, for mail from or to the organization, or a bounce.
        //    (Such mail relays to other domains only with an accepted or null sender; that is
        //    already implied here, since a foreign sender is let in only for an accepted recipient.)
        if let address = session.clientAddress, let index = onPremisesByAddress.longestMatch(address),
           senderAccepted || recipientAccepted || from.isNull {
            return .attributed(.originating, connector: index, .onPremises)
        }
        // 3. SASL-authenticated clients.
        if let user = session.authenticatedUser, !user.isEmpty {
            return .attributed(.originating, connector: nil, .authenticated)
        }
        // 4. Nobody of ours: only mail for the organization is taken.
        if !recipientAccepted {
            return .refused(.relayDenied, mode: settings.mode)
        }
        // 5. Incoming: partner connectors.
        if let partner = attributePartner(session: session, certificate: certificate, from: from, recipient: recipient) {
            return partner
        }
        // 6. Unattributed mail claiming to come from the organization.
        if settings.rejectDirectSend && senderAccepted {
            return .refused(.directSend, mode: settings.mode)
        }
        return .attributed(.incoming, connector: nil, .none)
    }

    /// A partner connector applies when its senderDomains match MAIL FROM and its
    /// associatedAcceptedDomains (if any) hold the recipient domain.
    private func isCandidate(_ index: Int, from: EmailAddress, recipient: EmailAddress) -> Bool {
        senderDomains[index].contains(from.domain)
            && (associatedAcceptedDomains[index].isEmpty || associatedAcceptedDomains[index].contains(recipient.domain))
    }

    private func certificateMatches(_ index: Int, _ certificate: String?) -> Bool {
        guard let certificate, let name = connector(index).tlsSenderCertificateName else { return false }
        return name.matches(certificate)
    }

    private func addressMatches(_ index: Int, _ address: IPAddress?) -> Bool {
        guard let address else { return false }
        return connector(index).senderIPAddresses.contains { $0.contains(address) }
    }

    /// A restricting connector is satisfied when every restriction it has holds.
    private func isSatisfied(_ index: Int, session: SessionFacts, certificate: String?) -> Bool {
        let c = connector(index)
        return (!c.restrictDomainsToIPAddresses || addressMatches(index, session.clientAddress))
            && (!c.restrictDomainsToCertificate || certificateMatches(index, certificate))
    }

    private func attributePartner(session: SessionFacts, certificate: String?,
                                  from: EmailAddress, recipient: EmailAddress) -> InboundAttribution? {
        func partner(_ index: Int) -> InboundAttribution { .attributed(.incoming, connector: index, .partner) }

        // Restricting connectors first. The satisfied ones can only be among the connectors
        // the client's address or certificate identify, so look there, not at all of them.
        var satisfied: (index: Int, specificity: Int)?
        func consider(_ index: Int) -> Bool {
            let c = connector(index)
            if c.isRestricting, isCandidate(index, from: from, recipient: recipient),
               isSatisfied(index, session: session, certificate: certificate),
               let specificity = senderDomains[index].specificity(of: from.domain) {
                if satisfied == nil || specificity > satisfied!.specificity
                    || (specificity == satisfied!.specificity && index < satisfied!.index) {
                    satisfied = (index, specificity)
                }
            }
            return true
        }
        if let address = session.clientAddress { partnersByAddress.forEachContaining(address) { i, _ in consider(i) } }
        if let certificate { partnersByCertificate.forEachMatch(certificate) { i, _ in consider(i) } }
        if let satisfied { return partner(satisfied.index) }

        // No restricting connector is satisfied: if any applies, the sender is refused. The
        // refusal is enforced unless every connector that demands it is in monitor mode.
        var restrictingApplies = false
        var enforcing = false
        restrictingPartnersBySenderDomain.forEachMatch(from.domain) { index, _ in
            guard isCandidate(index, from: from, recipient: recipient) else { return true }
            restrictingApplies = true
            if mode(of: index) == .enforce { enforcing = true }
            return !enforcing
        }
        if restrictingApplies {
            return .refused(.partnerRestricted, mode: enforcing ? .enforce : .monitor)
        }

        // A connector identified by the verified certificate name: exact, then longer wildcards.
        var found: Int?
        if let certificate {
            partnersByCertificate.forEachMatch(certificate) { index, _ in
                if isCandidate(index, from: from, recipient: recipient) { found = index; return false }
                return true
            }
            if let found { return partner(found) }
        }
        // One identified by the client address: longest prefix.
        if let address = session.clientAddress {
            partnersByAddress.forEachContaining(address) { index, _ in
                if isCandidate(index, from: from, recipient: recipient) { found = index; return false }
                return true
            }
            if let found { return partner(found) }
        }
        // A domain-only connector, the most specific senderDomains match first.
        domainOnlyPartnersBySenderDomain.forEachMatch(from.domain) { index, _ in
            if associatedAcceptedDomains[index].isEmpty || associatedAcceptedDomains[index].contains(recipient.domain) {
                found = index
                return false
            }
            return true
        }
        return found.map(partner)
    }

    /// The TLS the attributed inbound connector demands of the session, if it is not met.
    func tlsDemand(of inbound: Connector, session: SessionFacts) -> RefusalReason? {
        let needsCertificate = inbound.tlsSenderCertificateName != nil
            && (inbound.requireTls || inbound.restrictDomainsToCertificate)
        guard inbound.requireTls || needsCertificate else { return nil }
        guard session.isTLS else { return .tlsRequired }
        if needsCertificate, let name = inbound.tlsSenderCertificateName {
            guard let certificate = session.certificateHostName, name.matches(certificate) else {
                return .certificateRequired
            }
        }
        return nil
    }

    func decide(_ reason: RefusalReason, mode: Mode, direction: MessageDirection, inbound: Connector?,
                type: InboundType, outbound: Connector?) -> Decision {
        let reply = reply(for: reason)
        let enforced: Verdict = reply.isPermanent ? .reject : .tempfail
        return Decision(verdict: mode == .monitor ? .accept : enforced, refusal: Refusal(reason: reason, reply: reply),
                        mode: mode, direction: direction, inbound: inbound, inboundType: type, outbound: outbound)
    }

    package func reply(for reason: RefusalReason) -> SMTPReply {
        switch reason {
        case .relayDenied: return RefusalReplies.relayDenied
        case .partnerRestricted: return RefusalReplies.partnerRestricted
        case .directSend: return RefusalReplies.directSend
        case .tlsRequired, .certificateRequired:
            switch settings.tlsFailure {
            case .temporary: return RefusalReplies.tlsRequiredTemporary
            case .permanent: return RefusalReplies.tlsRequiredPermanent
            }
        }
    }
}

/// The policy's replies, built once.
private enum RefusalReplies {
    static let relayDenied = SMTPReply(constant: 550, "5.7.64", "Relay access denied")
    static let partnerRestricted = SMTPReply(constant: 550, "5.7.51", "Sender not authorized by partner connector")
    static let directSend = SMTPReply(constant: 550, "5.7.68", "Direct send not allowed from unauthorized sources")
    static let tlsRequiredTemporary = SMTPReply(constant: 454, "4.7.0", "TLS required")
    static let tlsRequiredPermanent = SMTPReply(constant: 530, "5.7.0", "Must issue a STARTTLS command first")
}
