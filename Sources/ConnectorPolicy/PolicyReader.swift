// Stage 3 of reading a policy: the composed YAML tree against the table of keys.

import Yams

/// One `key: value` of a mapping.
struct Entry {
    let key: String
    let keyNode: Node
    let value: Node
}

/// Walks the composed tree and builds the `Policy`, collecting every problem on the way.
struct PolicyReader {
    private(set) var problems: [(Position, String)] = []
    /// Containers already walked: libyaml hands an alias back as the very node it names, so a
    /// second visit means an alias the prescan missed. Refusing it keeps the walk linear.
    var visited: Set<Position> = []
    /// The organization's accepted domains once read (nil while unknown or wrong), which
    /// associatedAcceptedDomains is checked against.
    var acceptedDomains: [DomainPattern]? = nil

    mutating func problem(_ node: Node, _ message: String) { problems.append((Position(node), message)) }

    // MARK: Generic values

    static func isNull(_ scalar: Node.Scalar) -> Bool {
        scalar.style == .plain && ["", "~", "null", "Null", "NULL"].contains(scalar.string)
    }

    /// The entries of a mapping, or nil (with a problem) when the node is something else.
    private mutating func entries(of node: Node, _ notAMapping: String) -> [Entry]? {
        guard case .mapping(let mapping) = node else {
            problem(node, notAMapping)
            return nil
        }
        guard visited.insert(Position(node)).inserted else {
            problem(node, "this value is repeated through a YAML alias; anchors and aliases are not allowed in a policy file")
            return nil
        }
        var result: [Entry] = []
        for (key, value) in mapping {
            guard case .scalar(let scalar) = key, !Self.isNull(scalar) else {
                problem(key, "a key must be a plain word such as name or direction")
                continue
            }
            result.append(Entry(key: scalar.string, keyNode: key, value: value))
        }
        return result
    }

    mutating func unknownKey(_ entry: Entry, in place: String, candidates: [String]) {
        var text = "unknown key \"\(entry.key)\" \(place)"
        if let suggestion = PolicyKeys.suggestion(for: entry.key, among: candidates) {
            text += "; did you mean \"\(suggestion)\"?"
        } else {
            text += " (known keys: \(candidates.joined(separator: ", ")))"
        }
        problem(entry.keyNode, text)
    }


    // MARK: The file

    mutating func readPolicy(_ root: Node) -> Policy? {
        guard let entries = entries(of: root, "the policy file must be a mapping with the keys organization, settings and connectors") else {
            return nil
        }
        var byKey: [String: Entry] = [:]
        for entry in entries {
            if PolicyKeys.topLevel.contains(where: { $0.name == entry.key }) {
                byKey[entry.key] = entry
            } else if PolicyKeys.settingByName[entry.key] != nil {
                problem(entry.keyNode, "\"\(entry.key)\" belongs under \(PolicyKeys.settingsSection.name):")
            } else if PolicyKeys.organization.contains(where: { $0.name == entry.key }) {
                problem(entry.keyNode, "\"\(entry.key)\" belongs under \(PolicyKeys.organizationSection.name):")
            } else {
                unknownKey(entry, in: "at the top level", candidates: PolicyKeys.topLevel.map(\.name))
            }
        }

        if let organization = byKey[PolicyKeys.organizationSection.name] {
            acceptedDomains = readOrganization(organization)
        } else {
            problem(root, "organization is missing; it lists the organization's acceptedDomains")
        }
        var settings = Settings()
        if let entry = byKey[PolicyKeys.settingsSection.name] { settings = readSettings(entry) }
        var connectors: [Connector] = []
        if let entry = byKey[PolicyKeys.connectorsSection.name] { connectors = readConnectors(entry) }

        guard let acceptedDomains else { return nil }
        return Policy(acceptedDomains: acceptedDomains, settings: settings, connectors: connectors)
    }

    /// The accepted domains, or nil when they are missing or wrong.
    private mutating func readOrganization(_ organization: Entry) -> [DomainPattern]? {
        guard let entries = entries(of: organization.value, "organization must be a mapping with the key acceptedDomains") else {
            return nil
        }
        var draft = Policy(acceptedDomains: [], connectors: [])
        var accepted: [DomainPattern]? = nil
        var sawAcceptedDomains = false
        for entry in entries {
            guard let key = PolicyKeys.organization.first(where: { $0.name == entry.key }),
                  case .organization(let read) = key.reading else {
                unknownKey(entry, in: "in organization", candidates: PolicyKeys.organization.map(\.name))
                continue
            }
            sawAcceptedDomains = true
            let problemsBefore = problems.count
            read(&self, entry, &draft)
            accepted = problems.count == problemsBefore ? draft.acceptedDomains : nil
        }
        if !sawAcceptedDomains {
            problem(organization.value, "organization has no acceptedDomains; list the organization's own domains, like [contoso.com]")
        }
        return accepted
    }

    private mutating func readSettings(_ section: Entry) -> Settings {
        var settings = Settings()
        if case .scalar(let s) = section.value, Self.isNull(s) { return settings }  // `settings:` alone
        guard let entries = entries(of: section.value, "settings must be a mapping of keys like mode and tlsFailure") else {
            return settings
        }
        for entry in entries {
            guard let key = PolicyKeys.settingByName[entry.key], case .settings(let read) = key.reading else {
                unknownKey(entry, in: "in settings", candidates: PolicyKeys.settings.map(\.name))
                continue
            }
            read(&self, entry, &settings)
        }
        return settings
    }

    private mutating func readConnectors(_ section: Entry) -> [Connector] {
        if case .scalar(let s) = section.value, Self.isNull(s) { return [] }  // `connectors:` alone
        guard case .sequence(let sequence) = section.value else {
            problem(section.value, "connectors must be a list; start each connector with \"- name: ...\"")
            return []
        }
        guard visited.insert(Position(section.value)).inserted else {
            problem(section.value, "connectors: anchors and aliases are not allowed in a policy file")
            return []
        }
        var connectors: [Connector] = []
        var firstNames: [String: Position] = [:]  // lowercased name -> where it first appears
        for item in sequence {
            let (connector, name) = readConnector(item)
            // Names label verdict lines and are compared like EOP does, without regard to case.
            if let (name, position) = name {
                if let first = firstNames[name.lowercased()] {
                    problems.append((position, "connector name \"\(name)\" is already used at \(first.phrase) "
                        + "(names are compared without regard to case)"))
                    continue
                }
                firstNames[name.lowercased()] = position
            }
            if let connector { connectors.append(connector) }
        }
        return connectors
    }

    // MARK: One connector

    /// The connector when it has no problem, and its valid name with the name's position, for the
    /// duplicate check (which is worth doing even for a connector with other problems).
    private mutating func readConnector(_ node: Node) -> (Connector?, (String, Position)?) {
        guard let entries = entries(of: node, "each connector must be a mapping of keys like name, direction and type") else {
            return (nil, nil)
        }
        var byKey: [String: Entry] = [:]
        for entry in entries { byKey[entry.key] = entry }

        // Name, direction and type first: they decide which other keys the connector takes.
        var c = Connector.blank
        var identity: Set<String> = []  // those read without a problem
        for key in PolicyKeys.connectorIdentity {
            guard let entry = byKey[key.name], case .connector(let read) = key.reading else { continue }
            let problemsBefore = problems.count
            read(&self, entry, &c)
            if problems.count == problemsBefore { identity.insert(key.name) }
        }
        let name = identity.contains(CrossKey.name) ? c.name : nil
        let direction = identity.contains(CrossKey.direction) ? c.direction : nil
        let type = identity.contains(CrossKey.type) ? c.type : nil
        let label = name.map { "connector \"\($0)\"" } ?? "this connector"
        if byKey[CrossKey.name] == nil { problem(node, "this connector has no name; every connector needs a unique name") }
        if byKey[CrossKey.direction] == nil { problem(node, "\(label) has no direction (inbound or outbound)") }
        if byKey[CrossKey.type] == nil { problem(node, "\(label) has no type (onPremises or partner)") }

        let problemsBefore = problems.count
        // Keys whose value was read without a problem, for the rules across keys.
        var accepted: [String: Entry] = [:]

        // Suggest and list only the keys this kind of connector takes, when its kind is known.
        let fittingKeys = PolicyKeys.connector.filter { key in
            guard let direction, let type else { return true }
            return key.scope!.fits(direction, type)
        }.map(\.name)
        for entry in entries {
            guard let key = PolicyKeys.connectorByName[entry.key], let scope = key.scope else {
                unknownKey(entry, in: "in \(label)", candidates: fittingKeys)
                continue
            }
            if let direction, let type, !scope.fits(direction, type) {
                problem(entry.keyNode, "\(entry.key) is for \(scope.phrase); \(label) is an \(direction.rawValue) \(type.rawValue) connector")
                continue
            }
            guard !key.readsFirst, case .connector(let read) = key.reading else { continue }
            let before = problems.count
            read(&self, entry, &c)
            if problems.count == before { accepted[entry.key] = entry }
        }
        if let direction, let type {
            crossKeyProblems(&c, direction, type, node: node, label: label, written: byKey, accepted: accepted)
        }
        let named = name.map { ($0, Position(byKey[CrossKey.name]!.value)) }
        guard name != nil, direction != nil, type != nil, problems.count == problemsBefore else { return (nil, named) }
        return (c, named)
    }

    /// Rules across keys, once direction and type are known. A key that is present but wrong
    /// already has its own error, so "needs X" is said only when X is absent or an empty list.
    /// `written`: every key of the connector; `accepted`: those whose value was read without a problem.
    private mutating func crossKeyProblems(_ c: inout Connector, _ direction: Direction, _ type: ConnectorType, node: Node,
                                           label: String, written: [String: Entry], accepted: [String: Entry]) {
        typealias K = CrossKey
        func lacks(_ key: String) -> Bool { written[key].map { isEmptyList($0.value) } ?? true }
        let senderIPAddresses = K.senderIPAddresses, tlsSenderCertificateName = K.tlsSenderCertificateName
        let smartHosts = K.smartHosts, tlsSettings = K.tlsSettings, tlsDomain = K.tlsDomain
        switch direction {
        case .inbound:
            if type == .onPremises && lacks(K.senderIPAddresses) && lacks(K.tlsSenderCertificateName) {
                problem(node, "\(label) needs \(senderIPAddresses) or \(tlsSenderCertificateName); without them it can never match")
            }
            if type == .partner && written[K.senderDomains] == nil {
                problem(node, "\(label) has no \(K.senderDomains); list the MAIL FROM domains this partner sends from (\"*\" = any)")
            }
            if let entry = accepted[K.restrictDomainsToIPAddresses], c.restrictDomainsToIPAddresses, lacks(K.senderIPAddresses) {
                problem(entry.keyNode, "\(entry.key): true needs \(senderIPAddresses), the addresses to restrict to")
            }
            if let entry = accepted[K.restrictDomainsToCertificate], c.restrictDomainsToCertificate, lacks(K.tlsSenderCertificateName) {
                problem(entry.keyNode, "\(entry.key): true needs \(tlsSenderCertificateName), the certificate name to restrict to")
            }
            enhancedFilteringProblems(c, written: written, accepted: accepted, hasSkipIPs: !lacks(K.efSkipIPs),
                                      hasSenderIPAddresses: !lacks(K.senderIPAddresses))
        case .outbound:
            if let entry = accepted[K.useMXRecord] {
                if c.useMXRecord && !lacks(K.smartHosts) {
                    problem(entry.keyNode, "\(entry.key): true contradicts \(smartHosts); a connector delivers either by MX "
                        + "or to its smart hosts (remove one of them)")
                } else if !c.useMXRecord && lacks(K.smartHosts) {
                    problem(entry.keyNode, "\(entry.key): false needs \(smartHosts) to deliver to")
                }
            }
            c.useMXRecord = lacks(K.smartHosts)
            if type == .onPremises && lacks(K.smartHosts) {
                problem(node, "\(label) needs \(smartHosts): mail for the organization's own servers goes to them, not to MX")
            }
            if lacks(K.recipientDomains) && !c.allAcceptedDomains {
                problem(node, type == .onPremises
                    ? "\(label) needs \(K.recipientDomains) or \(K.allAcceptedDomains): true"
                    : "\(label) has no \(K.recipientDomains); list the domains it delivers to")
            }
            let tlsSettingsIsWrong = written[tlsSettings] != nil && accepted[tlsSettings] == nil
            if let entry = written[tlsDomain], c.tlsSettings != .domainValidation, !tlsSettingsIsWrong {
                problem(entry.keyNode, "\(tlsDomain) needs \(tlsSettings): \(TLSSettings.domainValidation.rawValue)")
            }
            if let entry = accepted[tlsSettings], c.tlsSettings == .domainValidation, written[tlsDomain] == nil {
                problem(entry.value, "\(tlsSettings): \(TLSSettings.domainValidation.rawValue) needs \(tlsDomain), the name the "
                    + "receiving server's certificate must carry")
            }
        }
    }

    /// Enhanced filtering needs exactly one skip form, and addresses that a client can come from.
    private mutating func enhancedFilteringProblems(_ c: Connector, written: [String: Entry], accepted: [String: Entry],
                                                    hasSkipIPs: Bool, hasSenderIPAddresses: Bool) {
        typealias K = CrossKey
        if let entry = written[K.efSkipIPs], isEmptyList(entry.value) {
            problem(entry.value, "\(entry.key) must list at least one address or block of the service to skip")
        }
        let skipsLast = accepted[K.efSkipLastIP] != nil && c.efSkipLastIP
        if let entry = accepted[K.efSkipLastIP], c.efSkipLastIP, hasSkipIPs {
            problem(entry.keyNode, "\(entry.key): true contradicts \(K.efSkipIPs); skip either the listed addresses "
                + "or only the connecting client (remove one of them)")
        }
        let skipForm = skipsLast || hasSkipIPs
        if !skipForm {
            for key in [K.efUsers, K.efTestMode] {
                guard let entry = written[key] else { continue }
                problem(entry.keyNode, "\(entry.key) needs \(K.efSkipIPs) or \(K.efSkipLastIP): true; without a skip "
                    + "form the connector has no enhanced filtering")
            }
        } else if !hasSenderIPAddresses, let entry = skipsLast ? written[K.efSkipLastIP] : written[K.efSkipIPs] {
            problem(entry.keyNode, "\(entry.key) needs \(K.senderIPAddresses): enhanced filtering applies to mail whose "
                + "connecting client is in them, and no client address reaches this connector without them")
        }
    }

    func isEmptyList(_ node: Node) -> Bool {
        if case .sequence(let sequence) = node { return sequence.isEmpty }
        return false
    }
}

/// The names of the connector keys the reader's own logic refers to, looked up in the table
/// once (by the field each fills) rather than per connector.
private enum CrossKey {
    static let name = PolicyKeys.connectorKey(\.name).name
    static let direction = PolicyKeys.connectorKey(\.direction).name
    static let type = PolicyKeys.connectorKey(\.type).name
    static let senderIPAddresses = PolicyKeys.connectorKey(\.senderIPAddresses).name
    static let tlsSenderCertificateName = PolicyKeys.connectorKey(\.tlsSenderCertificateName).name
    static let senderDomains = PolicyKeys.connectorKey(\.senderDomains).name
    static let restrictDomainsToIPAddresses = PolicyKeys.connectorKey(\.restrictDomainsToIPAddresses).name
    static let restrictDomainsToCertificate = PolicyKeys.connectorKey(\.restrictDomainsToCertificate).name
    static let recipientDomains = PolicyKeys.connectorKey(\.recipientDomains).name
    static let allAcceptedDomains = PolicyKeys.connectorKey(\.allAcceptedDomains).name
    static let smartHosts = PolicyKeys.connectorKey(\.smartHosts).name
    static let useMXRecord = PolicyKeys.connectorKey(\.useMXRecord).name
    static let tlsSettings = PolicyKeys.connectorKey(\.tlsSettings).name
    static let tlsDomain = PolicyKeys.connectorKey(\.tlsDomain).name
    static let efSkipIPs = PolicyKeys.connectorKey(\.efSkipIPs).name
    static let efSkipLastIP = PolicyKeys.connectorKey(\.efSkipLastIP).name
    static let efUsers = PolicyKeys.connectorKey(\.efUsers).name
    static let efTestMode = PolicyKeys.connectorKey(\.efTestMode).name
}
