// A validated policy compiled into the indexes the judge reads. Built once per load or
// reload, then shared read-only by every session that started under it.

public final class PolicySet: Sendable {
    public let policy: Policy
    public var settings: Settings { policy.settings }

    let acceptedDomains: DomainSet
    /// Per connector (same index as policy.connectors).
    let senderDomains: [DomainSet]
    let associatedAcceptedDomains: [DomainSet]

    let onPremisesByCertificate: DomainTree<Int>
    let onPremisesByAddress: PrefixTree<Int>
    /// Partner connectors by MAIL FROM domain, split by how they identify the sender.
    let restrictingPartnersBySenderDomain: DomainTree<Int>
    let domainOnlyPartnersBySenderDomain: DomainTree<Int>
    let partnersByCertificate: DomainTree<Int>
    let partnersByAddress: PrefixTree<Int>
    let outboundByRecipientDomain: DomainTree<Int>
    let outboundForAcceptedDomains: Int?
    /// Inbound connectors with enhanced filtering, by their senderIPAddresses.
    let enhancedFilteringByAddress: PrefixTree<Int>

    public init(_ policy: Policy) {
        self.policy = policy
        acceptedDomains = DomainSet(policy.acceptedDomains)
        senderDomains = policy.connectors.map { DomainSet($0.senderDomains) }
        associatedAcceptedDomains = policy.connectors.map { DomainSet($0.associatedAcceptedDomains) }

        var onPremCert = DomainTree<Int>(), onPremAddr = PrefixTree<Int>()
        var restricting = DomainTree<Int>(), domainOnly = DomainTree<Int>()
        var partnerCert = DomainTree<Int>(), partnerAddr = PrefixTree<Int>()
        var outbound = DomainTree<Int>()
        var forAccepted: Int?
        var enhancedFiltering = PrefixTree<Int>()
        for (i, c) in policy.connectors.enumerated() where c.enabled {
            if c.direction == .inbound && c.hasEnhancedFiltering {
                for prefix in c.senderIPAddresses { enhancedFiltering.insert(prefix, i) }
            }
            switch (c.direction, c.type) {
            case (.inbound, .onPremises):
                if let name = c.tlsSenderCertificateName { onPremCert.insert(name, i) }
                for prefix in c.senderIPAddresses { onPremAddr.insert(prefix, i) }
            case (.inbound, .partner):
                if c.isRestricting {
                    for d in c.senderDomains { restricting.insert(d, i) }
                } else if c.senderIPAddresses.isEmpty && c.tlsSenderCertificateName == nil {
                    for d in c.senderDomains { domainOnly.insert(d, i) }
                }
                if let name = c.tlsSenderCertificateName { partnerCert.insert(name, i) }
                for prefix in c.senderIPAddresses { partnerAddr.insert(prefix, i) }
            case (.outbound, _):
                for d in c.recipientDomains { outbound.insert(d, i) }
                if c.allAcceptedDomains && forAccepted == nil { forAccepted = i }
            }
        }
        onPremisesByCertificate = onPremCert
        onPremisesByAddress = onPremAddr
        restrictingPartnersBySenderDomain = restricting
        domainOnlyPartnersBySenderDomain = domainOnly
        partnersByCertificate = partnerCert
        partnersByAddress = partnerAddr
        outboundByRecipientDomain = outbound
        outboundForAcceptedDomains = forAccepted
        enhancedFilteringByAddress = enhancedFiltering
    }

    public func isAccepted(_ domain: String) -> Bool { acceptedDomains.contains(domain) }

    package func connector(_ index: Int) -> Connector { policy.connectors[index] }

    func mode(of index: Int) -> Mode { policy.connectors[index].mode ?? policy.settings.mode }
}
