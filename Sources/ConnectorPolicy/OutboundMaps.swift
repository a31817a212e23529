// Outbound connectors as Postfix lookup tables (docs/outbound-maps.md): the answers the daemon's
// socketmap gives to smtp_tls_policy_maps ("tls-policy") and transport_maps ("transport"), and
// the accepted domains for relay_domains ("relay-domains").
// Pure: a PolicySet and a key in, a table value (or nothing) out. The export command writes
// the same answers as static files (OutboundExport.swift).
//
// What Postfix asks, from its sources (3.7):
// - transport: trivial-rewrite asks a socketmap only the full recipient address
//   (`user+ext@domain`, sometimes in quoted external form): socketmap is a "pattern" table,
//   for which Postfix generates no partial keys (socketmap_table(5)).
// - tls-policy: smtp(8) asks with the next-hop destination: the recipient domain for MX
//   delivery, else the transport's nexthop verbatim (`[host]:port`). For a domain it then
//   retries with parent forms (`.example.com`, `.com`) while the answer is NOTFOUND
//   (smtp_tls_policy.c, tls_policy_lookup).
// Our own attribution already covers `*.x` patterns, so a leading-dot key is always
// NOTFOUND: answering it would let a parent's connector capture a subdomain that the
// attribution gave to no connector, or to one without TLS settings.

/// The maps the socketmap serves, by the name Postfix sends (`socketmap:unix:PATH:NAME`).
public enum OutboundMapName: String, Sendable, CaseIterable {
    case tlsPolicy = "tls-policy"
    case transport = "transport"
    /// relay_domains: the accepted domains, so that Postfix takes mail for them from anyone.
    case relayDomains = "relay-domains"
}

/// A compiled view of one PolicySet's outbound connectors, for map lookups. Build it once per
/// PolicySet (the daemon rebuilds it after a reload); lookups are then a hash probe or a
/// domain-tree walk.
public struct OutboundMaps: Sendable {
    public let policySet: PolicySet
    /// Smart-host next hops (`[192.0.2.25]:2525`, `mx1.fabrikam.com`, lowercased) to the
    /// connector whose TLS setting applies when Postfix connects there.
    private let connectorBySmartHost: [String: Int]

    public init(_ policySet: PolicySet) {
        self.policySet = policySet
        var bySmartHost: [String: Int] = [:]
        for (index, connector) in policySet.policy.connectors.enumerated()
        where connector.enabled && connector.direction == .outbound {
            for host in connector.smartHosts {
                let key = host.description
                // Two connectors sharing a smart host: the stricter TLS setting wins (then the
                // first in the file), so mail to that host is never sent with less protection
                // than one of its connectors demands.
                if let other = bySmartHost[key],
                   Self.strictness(policySet.policy.connectors[other]) >= Self.strictness(connector) {
                    continue
                }
                bySmartHost[key] = index
            }
        }
        connectorBySmartHost = bySmartHost
    }

    /// The answer to one lookup: the table value, or nil for NOTFOUND.
    public func lookup(_ map: OutboundMapName, key: String) -> String? {
        switch map {
        case .tlsPolicy: tlsPolicy(for: key)
        case .transport: transport(for: key)
        case .relayDomains: relayDomain(for: key)
        }
    }

    /// relay_domains: `OK` for an accepted domain, nil otherwise. Postfix asks a socketmap
    /// (a pattern table) with the full domain only, never with parent forms, whatever
    /// parent_domain_matches_subdomains says (match_ops.c): `*.x` is matched here.
    public func relayDomain(for key: String) -> String? {
        guard let domain = Self.domain(ofDomainKey: DomainName.lowercasedASCII(key)) else { return nil }
        return policySet.isAccepted(domain) ? "OK" : nil
    }

    /// smtp_tls_policy_maps: the policy for a next-hop destination (a smart host, verbatim as
    /// our transport answer wrote it) or a recipient domain; nil = NOTFOUND (Postfix then
    /// applies smtp_tls_security_level).
    public func tlsPolicy(for key: String) -> String? {
        tlsConnector(for: key).flatMap(Self.tlsPolicy(of:))
    }

    /// The connector whose TLS setting answers a tls-policy key.
    func tlsConnector(for key: String) -> Connector? {
        let normalized = DomainName.lowercasedASCII(key)
        if let index = connectorBySmartHost[normalized] {
            return policySet.policy.connectors[index]
        }
        guard let domain = Self.domain(ofDomainKey: normalized) else { return nil }
        return policySet.outboundConnector(for: domain)
    }

    /// transport_maps: `smtp:NEXTHOP[, NEXTHOP...]` for a recipient whose connector has smart
    /// hosts; nil = NOTFOUND (Postfix routes as it would without us: MX, or its relayhost).
    /// The key is the full address; a bare domain is accepted too (postmap -q, other callers).
    public func transport(for key: String) -> String? {
        let normalized = DomainName.lowercasedASCII(key)
        let domainPart: String
        if let at = normalized.lastIndex(of: "@") {
            domainPart = String(normalized[normalized.index(after: at)...])
        } else {
            domainPart = normalized
        }
        guard let domain = Self.domain(ofDomainKey: domainPart) else { return nil }
        return policySet.outboundConnector(for: domain).flatMap(Self.transport(of:))
    }

    /// The connector for the subdomains of `parent` that no pattern names: what a static
    /// table's `.parent` entry must say. `*.parent` stands for such a name, since `*` is never
    /// a label of a policy pattern.
    package func connector(forUnnamedSubdomainsOf parent: String) -> Connector? {
        policySet.outboundConnector(for: "*." + parent)
    }

    /// Smart-host next hops in file order, each with the connector that answers for it.
    package var smartHostKeys: [(key: String, connector: Connector)] {
        var seen = Set<String>()
        var keys: [(String, Connector)] = []
        for connector in policySet.policy.connectors where connector.enabled && connector.direction == .outbound {
            for host in connector.smartHosts where seen.insert(host.description).inserted {
                if let index = connectorBySmartHost[host.description] {
                    keys.append((host.description, policySet.policy.connectors[index]))
                }
            }
        }
        return keys
    }

    // MARK: - One connector's values

    /// The smtp_tls_policy_maps value for a connector's tlsSettings:
    /// - encryptionOnly: `encrypt` (TLS required, any certificate, like EOP);
    /// - certificateValidation: `verify` (a trusted chain and the name of the host Postfix
    ///   connects to: the MX host or the smart host). Not `secure`: its default match is the
    ///   recipient domain, which few MX certificates carry, so it would defer most mail that
    ///   EOP's certificateValidation delivers;
    /// - domainValidation: `secure match=TLSDOMAIN` (a trusted chain whose name is the one the
    ///   policy names, whatever DNS says); `*.x` becomes `x:.x` (x and every subdomain, as
    ///   everywhere in the policy; `.x` alone would leave out x itself).
    /// No tlsSettings: nil, so the site's own smtp_tls_security_level (Debian: may; or dane)
    /// applies, as for mail attributed to no connector; answering `may` would weaken a site
    /// that set something stronger.
    public static func tlsPolicy(of connector: Connector) -> String? {
        switch connector.tlsSettings {
        case nil: return nil
        case .encryptionOnly: return "encrypt"
        case .certificateValidation: return "verify"
        case .domainValidation:
            guard let name = connector.tlsDomain else { return "secure" }  // the parser requires it
            return "secure match=" + matchPatterns(tlsDomain: name).joined(separator: ":")
        }
    }

    /// The names a server certificate may carry for a domainValidation connector, in Postfix's
    /// match syntax: `x` is the name x, `.x` any name below x.
    public static func matchPatterns(tlsDomain: String) -> [String] {
        let name = DomainName.lowercasedASCII(tlsDomain)
        if name.hasPrefix("*.") {
            let parent = String(name.dropFirst(2))
            return [parent, "." + parent]
        }
        return [name]
    }

    /// The transport_maps value for a connector with smart hosts. Each host is written as
    /// the policy wrote it, which is Postfix's own nexthop syntax: `[...]` suppresses the MX
    /// lookup, `:port` picks the port. Several hosts become one comma-separated nexthop list
    /// (Postfix 3.5 and later), tried in order.
    public static func transport(of connector: Connector) -> String? {
        guard !connector.smartHosts.isEmpty else { return nil }
        return "smtp:" + connector.smartHosts.map(\.description).joined(separator: ", ")
    }

    /// How much a connector demands of TLS on delivery: more is stricter.
    static func strictness(_ connector: Connector) -> Int {
        switch connector.tlsSettings {
        case nil: 0
        case .encryptionOnly: 1
        case .certificateValidation: 2
        case .domainValidation: 3
        }
    }

    /// A lookup key as a domain the attribution can judge, or nil for what is never one of
    /// ours: parent forms (`.x`), address literals, the empty key, anything not a valid name.
    static func domain(ofDomainKey key: String) -> String? {
        guard !key.hasPrefix("."), !key.hasPrefix("[") else { return nil }
        guard case .success(let domain) = DomainName.validate(key) else { return nil }
        return domain
    }
}
