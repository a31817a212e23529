// `connector-milter check --lint`: a valid policy that probably does not do what its author
// meant. Each rule names a way a connector ends up ignored, or trusts more than it seems to.
// Warnings, not errors: every one of these can be intended, and the daemon runs the policy
// as written.
//
// Positions are found again in the YAML text rather than kept by the parser: a valid policy
// has exactly one connector per item of `connectors:`, in order, so the i-th item is the i-th
// connector, and the parser's model stays free of source positions.

import ConnectorPolicy
import Yams

/// One warning, in the `FILE:LINE:COLUMN: warning: message` form compilers use.
public struct LintWarning: Sendable, Equatable, CustomStringConvertible {
    public let file: String
    public let line: Int
    public let column: Int
    public let message: String

    public var description: String { "\(file):\(line):\(column): warning: \(message)" }
}

public enum PolicyLint {
    /// The warnings for `policy`, which must be what `PolicyParser` made of `yaml`.
    public static func warnings(for policy: Policy, yaml: String, file: String) -> [LintWarning] {
        let positions = SourcePositions(yaml: yaml)
        var rules = LintRules(policy: policy, positions: positions)
        rules.run()
        return rules.found
            .enumerated()
            .sorted { ($0.element.0, $0.offset) < ($1.element.0, $1.offset) }
            .map { LintWarning(file: file, line: $0.element.0.line, column: $0.element.0.column, message: $0.element.1) }
    }

    /// Reads the file again for positions; nil when it cannot (the caller has just parsed it).
    public static func warnings(for policy: Policy, path: String) -> [LintWarning]? {
        guard case .success(let bytes) = PolicyParser.readFile(path),
              let yaml = String(validating: bytes, as: UTF8.self) else { return nil }
        return warnings(for: policy, yaml: yaml, file: path)
    }
}

/// Where things are in the policy file: each connector's mapping, its keys, its list items.
struct SourcePositions {
    struct Connector {
        var start: Position
        /// Key name -> position of the key.
        var keys: [String: Position] = [:]
        /// Key name -> the list's items (text and position).
        var items: [String: [(String, Position)]] = [:]
    }
    var connectors: [Connector] = []
    var settingsKeys: [String: Position] = [:]

    init(yaml: String) {
        guard let root = try? Yams.compose(yaml: yaml, .default, .default, .utf8), case .mapping(let top) = root else { return }
        for (key, value) in top {
            switch key.string {
            case PolicyKeys.settingsSection.name:
                if case .mapping(let m) = value { for (k, _) in m { settingsKeys[k.string ?? ""] = Position(k) } }
            case PolicyKeys.connectorsSection.name:
                guard case .sequence(let items) = value else { continue }
                for item in items {
                    var c = Connector(start: Position(item))
                    if case .mapping(let m) = item {
                        for (k, v) in m {
                            let name = k.string ?? ""
                            c.keys[name] = Position(k)
                            if case .sequence(let list) = v {
                                c.items[name] = list.map { ($0.string ?? "", Position($0)) }
                            }
                        }
                    }
                    connectors.append(c)
                }
            default: break
            }
        }
    }

    package func connector(_ i: Int) -> Connector {
        i < connectors.count ? connectors[i] : Connector(start: .start)
    }

    /// The position of the key of connector `i` that fills `field`, else the connector's.
    func key(_ i: Int, _ field: PartialKeyPath<ConnectorPolicy.Connector>) -> Position {
        connector(i).keys[PolicyKeys.connectorKey(field).name] ?? connector(i).start
    }

    /// The position of the list item of connector `i` under the key of `field` that reads as `matches`.
    func item(_ i: Int, _ field: PartialKeyPath<ConnectorPolicy.Connector>, _ matches: (String) -> Bool) -> Position {
        connector(i).items[PolicyKeys.connectorKey(field).name]?.first { matches($0.0) }?.1 ?? key(i, field)
    }

    /// The position of the setting that fills `field`.
    func setting(_ field: PartialKeyPath<Settings>) -> Position? { settingsKeys[PolicyKeys.settingKey(field).name] }
}

struct LintRules {
    let policy: Policy
    let positions: SourcePositions
    var found: [(Position, String)] = []

    private var connectors: [Connector] { policy.connectors }

    mutating func warn(_ at: Position, _ message: String) { found.append((at, message)) }

    func label(_ i: Int) -> String { "connector \(VerdictLine.quoted(connectors[i].name))" }

    /// `"Name" (line N)`, to point from one connector at another.
    func reference(_ i: Int) -> String { "\(VerdictLine.quoted(connectors[i].name)) (line \(positions.connector(i).start.line))" }

    func line(_ i: Int) -> Int { positions.connector(i).start.line }

    mutating func run() {
        disabledAndMonitor()
        outboundShadowing()
        onPremisesShadowing()
        domainOnlyPartnerShadowing()
        partnersOverlappingOnPremises()
        restrictingByBoth()
        broadCertificateNames()
        onPremisesOutboundForForeignDomains()
        sharedSmartHostsWithDifferentTLS()
        onPremisesCertificateNamesOutsideAcceptedDomains()
        enhancedFilteringSkipsItsOwnAddresses()
    }

    private func enabled(_ direction: Direction, _ type: ConnectorType? = nil) -> [Int] {
        connectors.indices.filter {
            connectors[$0].enabled && connectors[$0].direction == direction && (type == nil || connectors[$0].type == type)
        }
    }

    // MARK: Rules

    /// A disabled connector, and monitor mode, are fine while trying a policy out, and easy to forget.
    mutating func disabledAndMonitor() {
        let monitorEverywhere = policy.settings.mode == .monitor
        if monitorEverywhere {
            warn(positions.setting(\.mode) ?? .start,
                 "settings.mode is monitor: every decision is logged (verdict=accept would=...) but nothing is refused; "
                    + "set mode: enforce once the verdict lines look right")
        }
        for (i, c) in connectors.enumerated() {
            if !c.enabled {
                warn(positions.key(i, \.enabled), "\(label(i)) is disabled (enabled: false): it takes no part in "
                    + "attribution or delivery; remove it when it is no longer needed")
            }
            if c.mode == .monitor && !monitorEverywhere {
                warn(positions.key(i, \.mode), "\(label(i)) is in monitor mode: the refusals it demands are logged as "
                    + "would=, never enforced")
            }
        }
    }

    /// Outbound attribution takes the first connector in the file for a given recipient domain
    /// pattern, and the first with allAcceptedDomains: a later one never gets that mail.
    mutating func outboundShadowing() {
        var owner: [DomainPattern: Int] = [:]
        var forAccepted: Int?
        for i in enabled(.outbound) {
            let c = connectors[i]
            var live = 0
            for pattern in c.recipientDomains {
                if let first = owner[pattern] {
                    warn(positions.item(i, \.recipientDomains) { parsed($0) == pattern },
                         "recipientDomains \(VerdictLine.quoted(pattern.description)) is also listed by \(reference(first)), "
                            + "which comes first and wins: \(label(i)) never delivers mail for it")
                } else {
                    owner[pattern] = i
                    live += 1
                }
            }
            if c.allAcceptedDomains {
                if let first = forAccepted {
                    warn(positions.key(i, \.allAcceptedDomains),
                         "only the first outbound connector with allAcceptedDomains, \(reference(first)), is used: "
                            + "\(label(i)) never receives mail for the accepted domains through it")
                } else {
                    forAccepted = i
                    live += 1
                }
            }
            if live == 0 && !(c.recipientDomains.isEmpty && !c.allAcceptedDomains) {
                warn(positions.connector(i).start, "\(label(i)) can never be chosen: every recipient domain it lists "
                    + "goes to an earlier connector")
            }
        }
    }

    /// onPremises attribution takes the longest prefix, and the most specific certificate name;
    /// between equal ones the first connector in the file wins.
    mutating func onPremisesShadowing() {
        var byPrefix: [IPPrefix: Int] = [:]
        var byName: [DomainPattern: Int] = [:]
        for i in enabled(.inbound, .onPremises) {
            let c = connectors[i]
            var live = 0
            for prefix in c.senderIPAddresses {
                if let first = byPrefix[prefix] {
                    warn(positions.item(i, \.senderIPAddresses) { (try? IPPrefix.parse($0).get()) == prefix },
                         "senderIPAddresses \(prefix) is also listed by onPremises \(reference(first)), which comes first "
                            + "and wins: mail from there is never attributed to \(label(i))")
                } else {
                    byPrefix[prefix] = i
                    live += 1
                }
            }
            if let name = c.tlsSenderCertificateName {
                if let first = byName[name] {
                    warn(positions.key(i, \.tlsSenderCertificateName),
                         "tlsSenderCertificateName \(VerdictLine.quoted(name.description)) is also that of onPremises "
                            + "\(reference(first)), which comes first and wins")
                } else {
                    byName[name] = i
                    live += 1
                }
            }
            if live == 0 {
                warn(positions.connector(i).start, "\(label(i)) can never match: every address and certificate name it "
                    + "lists belongs to an earlier onPremises connector")
            }
        }
    }

    /// Domain-only partners are chosen by the most specific senderDomains match, the first in
    /// the file among equals; one that applies to every recipient hides any later one.
    mutating func domainOnlyPartnerShadowing() {
        var owner: [DomainPattern: Int] = [:]
        for i in enabled(.inbound, .partner) {
            let c = connectors[i]
            guard !c.isRestricting, c.senderIPAddresses.isEmpty, c.tlsSenderCertificateName == nil else { continue }
            var live = 0
            for pattern in c.senderDomains {
                if let first = owner[pattern] {
                    warn(positions.item(i, \.senderDomains) { parsed($0) == pattern },
                         "senderDomains \(VerdictLine.quoted(pattern.description)) is also listed by partner "
                            + "\(reference(first)), which comes first and wins: mail from it is never attributed to \(label(i))")
                } else {
                    if c.associatedAcceptedDomains.isEmpty { owner[pattern] = i }
                    live += 1
                }
            }
            if live == 0 {
                warn(positions.connector(i).start, "\(label(i)) can never match: every sender domain it lists belongs "
                    + "to an earlier partner connector without addresses or certificate")
            }
        }
    }

    /// onPremises connectors are tried before partner connectors (docs/judging.md, steps 1 and
    /// 2): addresses or certificate names they share go to the organization's own servers.
    mutating func partnersOverlappingOnPremises() {
        let onPremises = enabled(.inbound, .onPremises)
        for i in enabled(.inbound, .partner) {
            let c = connectors[i]
            for prefix in c.senderIPAddresses {
                for j in onPremises {
                    guard let other = connectors[j].senderIPAddresses.first(where: { overlaps($0, prefix) }) else { continue }
                    warn(positions.item(i, \.senderIPAddresses) { (try? IPPrefix.parse($0).get()) == prefix },
                         "senderIPAddresses \(prefix) of partner \(label(i)) overlaps \(other) of onPremises \(reference(j)): "
                            + "mail from the shared addresses to or from an accepted domain is attributed to the onPremises "
                            + "connector (originating) before partner connectors are looked at")
                    break
                }
            }
            if let name = c.tlsSenderCertificateName {
                for j in onPremises {
                    guard let other = connectors[j].tlsSenderCertificateName, overlaps(other, name) else { continue }
                    warn(positions.key(i, \.tlsSenderCertificateName),
                         "tlsSenderCertificateName \(VerdictLine.quoted(name.description)) of partner \(label(i)) overlaps "
                            + "\(VerdictLine.quoted(other.description)) of onPremises \(reference(j)): a certificate matching "
                            + "both is attributed to the onPremises connector, which may relay anywhere")
                    break
                }
            }
        }
    }

    /// EOP offers to restrict a partner by address or by certificate; both at once refuses
    /// the partner's mail as soon as either one changes (a new outbound IP, a renewed certificate).
    mutating func restrictingByBoth() {
        for i in enabled(.inbound, .partner) where connectors[i].restrictDomainsToIPAddresses && connectors[i].restrictDomainsToCertificate {
            let c = connectors[i]
            warn(positions.key(i, \.restrictDomainsToCertificate),
                 "\(label(i)) restricts by both addresses and certificate: mail from "
                    + c.senderDomains.map(\.description).joined(separator: ", ")
                    + " is refused unless it comes from senderIPAddresses and presents a verified certificate named "
                    + "\(VerdictLine.quoted(c.tlsSenderCertificateName?.description ?? "")); if one of them is enough, drop the other")
        }
    }

    /// A certificate name is only as good as the names under it that others can get a
    /// certificate for. `*.com` matches anyone's; `*.example.com` when only
    /// `mail.example.com` is the organization's matches its neighbours' too.
    mutating func broadCertificateNames() {
        for (i, c) in connectors.enumerated() where c.enabled && c.direction == .inbound {
            guard case .wildcard(let base)? = c.tlsSenderCertificateName else { continue }
            let at = positions.key(i, \.tlsSenderCertificateName)
            if !base.contains(".") {
                warn(at, "tlsSenderCertificateName \"*.\(base)\" of \(label(i)) matches a certificate for any name under "
                    + "the top-level domain \"\(base)\", which anyone can obtain; name your servers' domain, like "
                    + "\"*.\(exampleDomain(base))\"")
                continue
            }
            guard c.type == .onPremises else { continue }
            let covered = policy.acceptedDomains.contains { covers($0, .wildcard(base)) }
            if !covered, let narrower = policy.acceptedDomains.first(where: { isUnder($0, base) }) {
                warn(at, "tlsSenderCertificateName \"*.\(base)\" of onPremises \(label(i)) is broader than the accepted domain "
                    + "\(VerdictLine.quoted(narrower.description)): it also matches certificates of other names under \(base), "
                    + "and such a client may relay anywhere")
            }
        }
    }

    /// An outbound onPremises connector hands mail to the organization's own servers; for a
    /// domain that is not accepted that is a loop or a mistake.
    mutating func onPremisesOutboundForForeignDomains() {
        for i in enabled(.outbound, .onPremises) {
            for pattern in connectors[i].recipientDomains where !policy.acceptedDomains.contains(where: { covers($0, pattern) }) {
                warn(positions.item(i, \.recipientDomains) { parsed($0) == pattern },
                     "recipientDomains \(VerdictLine.quoted(pattern.description)) of onPremises \(label(i)) is not an accepted "
                        + "domain: its mail would go to the organization's own servers; use a partner connector, or add "
                        + "the domain to acceptedDomains")
            }
        }
    }

    /// Postfix keys its TLS policy by next hop: connectors sending to one smart host get one
    /// answer from the socketmap, the stricter connector's (then the first in the file's), so
    /// every other connector there has its mail sent under TLS settings it does not name.
    mutating func sharedSmartHostsWithDifferentTLS() {
        let winners = Dictionary(OutboundMaps(PolicySet(policy)).smartHostKeys.map { ($0.key, $0.connector.name) },
                                 uniquingKeysWith: { first, _ in first })
        var users: [String: [Int]] = [:]
        var order: [String] = []
        for i in enabled(.outbound) {
            for host in connectors[i].smartHosts where !(users[host.description]?.contains(i) ?? false) {
                if users[host.description] == nil { order.append(host.description) }
                users[host.description, default: []].append(i)
            }
        }
        func tls(_ c: Connector) -> String {
            (c.tlsSettings?.rawValue ?? "no tlsSettings") + (c.tlsDomain.map { " (tlsDomain \($0))" } ?? "")
        }
        for key in order {
            guard let indices = users[key], indices.count > 1,
                  let w = indices.first(where: { connectors[$0].name == winners[key] }) else { continue }
            let winner = connectors[w]
            for i in indices where i != w && (connectors[i].tlsSettings != winner.tlsSettings || connectors[i].tlsDomain != winner.tlsDomain) {
                warn(positions.item(i, \Connector.smartHosts) { $0 == key || $0.lowercased() == key },
                     "smart host \(VerdictLine.quoted(key)) of \(label(i)) (\(tls(connectors[i]))) is also that of "
                        + "\(reference(w)) (\(tls(winner))): Postfix keeps one TLS policy per next hop, and the socketmap "
                        + "answers with \(VerdictLine.quoted(winner.name))'s, the stricter, so this connector's mail goes under "
                        + "\(tls(winner)); give them the same tlsSettings, or separate smart hosts")
            }
        }
    }

    /// Enhanced filtering starts only when the connecting client is one of the hops to skip:
    /// a service address outside efSkipIPs gets its mail judged on the service, as without it.
    mutating func enhancedFilteringSkipsItsOwnAddresses() {
        for i in enabled(.inbound) where !connectors[i].efSkipIPs.isEmpty {
            let c = connectors[i]
            for prefix in c.senderIPAddresses where !c.efSkipIPs.contains(where: { $0.length <= prefix.length && $0.contains(prefix.address) }) {
                warn(positions.item(i, \.senderIPAddresses) { (try? IPPrefix.parse($0).get()) == prefix },
                     "senderIPAddresses \(prefix) of \(label(i)) is not all in its efSkipIPs: mail from there is judged on "
                        + "the connecting client, not on the original client behind it; add it to efSkipIPs")
            }
        }
    }

    /// A certificate name outside the accepted domains names a server that is not the
    /// organization's, yet an onPremises connector lets it relay as the organization.
    mutating func onPremisesCertificateNamesOutsideAcceptedDomains() {
        for i in enabled(.inbound, .onPremises) {
            guard let name = connectors[i].tlsSenderCertificateName else { continue }
            let base: String
            switch name {
            case .exact(let d), .wildcard(let d): base = d
            case .any: continue
            }
            let inside = policy.acceptedDomains.contains { accepted in
                switch accepted {
                case .any: return true
                case .exact(let d), .wildcard(let d): return DomainName.isSame(base, orSubdomainOf: d)
                }
            }
            // broadCertificateNames already speaks of a wildcard above an accepted domain.
            let broader = { if case .wildcard = name { return policy.acceptedDomains.contains { isUnder($0, base) } }; return false }()
            guard !inside, !broader else { continue }
            warn(positions.key(i, \Connector.tlsSenderCertificateName),
                 "tlsSenderCertificateName \(VerdictLine.quoted(name.description)) of onPremises \(label(i)) is outside the "
                    + "accepted domains (\(policy.acceptedDomains.map(\.description).joined(separator: ", "))): a server "
                    + "with that certificate is not the organization's, yet may relay as it; use a name under an accepted "
                    + "domain, or a partner connector")
        }
    }

    // MARK: Helpers

    private func parsed(_ text: String) -> DomainPattern? { try? DomainPattern.parse(text).get() }

    private func exampleDomain(_ tld: String) -> String { "contoso.\(tld)" }

    private func overlaps(_ a: IPPrefix, _ b: IPPrefix) -> Bool {
        let shorter = a.length <= b.length ? a : b, longer = a.length <= b.length ? b : a
        return shorter.contains(longer.address)
    }

    /// Some name matches both patterns.
    private func overlaps(_ a: DomainPattern, _ b: DomainPattern) -> Bool {
        switch (a, b) {
        case (.any, _), (_, .any): return true
        case (.exact(let x), .exact(let y)): return x == y
        case (.wildcard(let w), .exact(let e)), (.exact(let e), .wildcard(let w)): return DomainName.isSame(e, orSubdomainOf: w)
        case (.wildcard(let x), .wildcard(let y)):
            return DomainName.isSame(x, orSubdomainOf: y) || DomainName.isSame(y, orSubdomainOf: x)
        }
    }

    /// Every domain `pattern` matches is matched by `accepted`.
    private func covers(_ accepted: DomainPattern, _ pattern: DomainPattern) -> Bool {
        switch (accepted, pattern) {
        case (.any, _): return true
        case (.exact(let a), .exact(let b)): return a == b
        case (.wildcard(let a), .exact(let b)), (.wildcard(let a), .wildcard(let b)): return DomainName.isSame(b, orSubdomainOf: a)
        default: return false
        }
    }

    /// The accepted domain lies strictly below `base`.
    private func isUnder(_ accepted: DomainPattern, _ base: String) -> Bool {
        switch accepted {
        case .exact(let d), .wildcard(let d): return d != base && DomainName.isSame(d, orSubdomainOf: base)
        case .any: return false
        }
    }
}
