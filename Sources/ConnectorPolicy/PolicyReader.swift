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
    private var visited: Set<Position> = []

    private mutating func problem(_ node: Node, _ message: String) { problems.append((Position(node), message)) }

    // MARK: Generic values

    private static func isNull(_ scalar: Node.Scalar) -> Bool {
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

    private mutating func unknownKey(_ entry: Entry, in place: String, candidates: [String]) {
        var text = "unknown key \"\(entry.key)\" \(place)"
        if let suggestion = PolicyKeys.suggestion(for: entry.key, among: candidates) {
            text += "; did you mean \"\(suggestion)\"?"
        } else {
            text += " (known keys: \(candidates.joined(separator: ", ")))"
        }
        problem(entry.keyNode, text)
    }

    /// The text of a scalar value, or nil (with a problem) for a list, a mapping or no value.
    private mutating func scalar(_ entry: Entry, _ expectation: String) -> Node.Scalar? {
        switch entry.value {
        case .scalar(let scalar):
            if Self.isNull(scalar) {
                problem(entry.value, "\(entry.key) has no value; it must be \(expectation)")
                return nil
            }
            return scalar
        case .sequence:
            problem(entry.value, "\(entry.key) must be \(expectation), not a list")
        case .mapping:
            problem(entry.value, "\(entry.key) must be \(expectation), not a mapping")
        case .alias:
            problem(entry.value, "\(entry.key): anchors and aliases are not allowed in a policy file")
        }
        return nil
    }

    private mutating func string(_ entry: Entry) -> String? {
        scalar(entry, "a string")?.string
    }

    /// YAML 1.2 core schema: only true and false. `yes`, `on` and friends were booleans in
    /// YAML 1.1 and still are to some tools, which is exactly why they are refused here.
    private mutating func bool(_ entry: Entry) -> Bool? {
        guard let scalar = scalar(entry, "true or false") else { return nil }
        let text = scalar.string
        if scalar.style == .plain {
            if ["true", "True", "TRUE"].contains(text) { return true }
            if ["false", "False", "FALSE"].contains(text) { return false }
            if ["yes", "no", "on", "off", "y", "n"].contains(text.lowercased()) {
                problem(entry.value, "\(entry.key) must be true or false, not \"\(text)\" "
                    + "(YAML 1.2 reads yes, no, on and off as text)")
                return nil
            }
        } else if ["true", "false"].contains(text.lowercased()) {
            problem(entry.value, "\(entry.key) must be true or false without quotes")
            return nil
        }
        problem(entry.value, "\(entry.key) must be true or false, not \"\(text)\"")
        return nil
    }

    private mutating func oneOf<Value: RawRepresentable & CaseIterable>(_ entry: Entry, _: Value.Type) -> Value?
    where Value.RawValue == String {
        let allowed = Value.allCases.map(\.rawValue)
        let list = allowed.joined(separator: ", ")
        guard let scalar = scalar(entry, "one of: \(list)") else { return nil }
        if let value = Value(rawValue: scalar.string) { return value }
        var text = "\(entry.key) must be one of: \(list) (found \"\(scalar.string)\""
        if let suggestion = PolicyKeys.suggestion(for: scalar.string, among: allowed) {
            text += "; did you mean \"\(suggestion)\"?"
        }
        problem(entry.value, text + ")")
        return nil
    }

    /// The items of a list of strings, with their nodes for positions; nil (with a problem)
    /// when the value is not a list or an item is not a string. An empty list is returned as such.
    private mutating func strings(_ entry: Entry, example: String) -> [(String, Node)]? {
        guard case .sequence(let sequence) = entry.value else {
            if case .scalar(let scalar) = entry.value, Self.isNull(scalar) {
                problem(entry.value, "\(entry.key) has no value; it must be a list, like \(example)")
            } else {
                problem(entry.value, "\(entry.key) must be a list of strings, like \(example)")
            }
            return nil
        }
        guard visited.insert(Position(entry.value)).inserted else {
            problem(entry.value, "\(entry.key): anchors and aliases are not allowed in a policy file")
            return nil
        }
        var items: [(String, Node)] = []
        var ok = true
        for item in sequence {
            guard case .scalar(let scalar) = item else {
                problem(item, "\(entry.key) must be a list of strings; this entry is a nested list or mapping")
                ok = false
                continue
            }
            if Self.isNull(scalar) {
                problem(item, "\(entry.key) has an empty entry")
                ok = false
                continue
            }
            items.append((scalar.string, item))
        }
        return ok ? items : nil
    }

    private mutating func domains(_ entry: Entry, allowAny: Bool, anyReason: String = "") -> [DomainPattern]? {
        domainsWithNodes(entry, allowAny: allowAny, anyReason: anyReason)?.map(\.0)
    }

    private mutating func domainsWithNodes(_ entry: Entry, allowAny: Bool, anyReason: String) -> [(DomainPattern, Node)]? {
        guard let items = strings(entry, example: "[fabrikam.com, \"*.fabrikam.com\"]") else { return nil }
        var patterns: [(DomainPattern, Node)] = []
        var ok = true
        for (text, node) in items {
            switch DomainPattern.parse(text, allowAny: allowAny) {
            case .success(let pattern): patterns.append((pattern, node))
            case .failure(.anyNotAllowed):
                problem(node, "\(entry.key) must not contain \"*\"\(anyReason)"); ok = false
            case .failure(let error):
                problem(node, "\(entry.key): \"\(text)\": \(error)"); ok = false
            }
        }
        return ok ? patterns : nil
    }

    // MARK: The file

    mutating func readPolicy(_ root: Node) -> Policy? {
        guard let entries = entries(of: root, "the policy file must be a mapping with the keys organization, settings and connectors") else {
            return nil
        }
        var byKey: [String: Entry] = [:]
        for entry in entries {
            if PolicyKeys.topLevel.contains(entry.key) {
                byKey[entry.key] = entry
            } else if PolicyKeys.settings.contains(entry.key) {
                problem(entry.keyNode, "\"\(entry.key)\" belongs under settings:")
            } else if PolicyKeys.organization.contains(entry.key) {
                problem(entry.keyNode, "\"\(entry.key)\" belongs under organization:")
            } else {
                unknownKey(entry, in: "at the top level", candidates: PolicyKeys.topLevel)
            }
        }

        var acceptedDomains: [DomainPattern]? = nil
        if let organization = byKey["organization"] {
            acceptedDomains = readOrganization(organization)
        } else {
            problem(root, "organization is missing; it lists the organization's acceptedDomains")
        }
        var settings = Settings()
        if let entry = byKey["settings"] { settings = readSettings(entry) }
        var connectors: [Connector] = []
        if let entry = byKey["connectors"] { connectors = readConnectors(entry, acceptedDomains: acceptedDomains) }

        guard let acceptedDomains else { return nil }
        return Policy(acceptedDomains: acceptedDomains, settings: settings, connectors: connectors)
    }

    private mutating func readOrganization(_ organization: Entry) -> [DomainPattern]? {
        guard let entries = entries(of: organization.value, "organization must be a mapping with the key acceptedDomains") else {
            return nil
        }
        var accepted: [DomainPattern]? = nil
        var sawAcceptedDomains = false
        for entry in entries {
            guard entry.key == "acceptedDomains" else {
                unknownKey(entry, in: "in organization", candidates: PolicyKeys.organization)
                continue
            }
            sawAcceptedDomains = true
            accepted = domains(entry, allowAny: false,
                               anyReason: ": accepting every domain would make the milter an open relay")
            if let list = accepted, list.isEmpty {
                problem(entry.value, "acceptedDomains must list at least one domain")
                accepted = nil
            }
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
            switch entry.key {
            case "mode": if let v = oneOf(entry, Mode.self) { settings.mode = v }
            case "tlsFailure": if let v = oneOf(entry, TLSFailure.self) { settings.tlsFailure = v }
            case "rejectDirectSend": if let v = bool(entry) { settings.rejectDirectSend = v }
            case "stampHeaders": if let v = bool(entry) { settings.stampHeaders = v }
            default: unknownKey(entry, in: "in settings", candidates: PolicyKeys.settings)
            }
        }
        return settings
    }

    private mutating func readConnectors(_ section: Entry, acceptedDomains: [DomainPattern]?) -> [Connector] {
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
            let (connector, name) = readConnector(item, acceptedDomains: acceptedDomains)
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
    private mutating func readConnector(_ node: Node, acceptedDomains: [DomainPattern]?) -> (Connector?, (String, Position)?) {
        guard let entries = entries(of: node, "each connector must be a mapping of keys like name, direction and type") else {
            return (nil, nil)
        }
        var byKey: [String: Entry] = [:]
        for entry in entries { byKey[entry.key] = entry }

        let name = byKey["name"].flatMap { readName($0) }
        let direction = byKey["direction"].flatMap { oneOf($0, Direction.self) }
        let type = byKey["type"].flatMap { oneOf($0, ConnectorType.self) }
        let label = name.map { "connector \"\($0)\"" } ?? "this connector"
        if byKey["name"] == nil { problem(node, "this connector has no name; every connector needs a unique name") }
        if byKey["direction"] == nil { problem(node, "\(label) has no direction (inbound or outbound)") }
        if byKey["type"] == nil { problem(node, "\(label) has no type (onPremises or partner)") }

        let problemsBefore = problems.count
        var c = Connector(name: name ?? "", direction: direction ?? .inbound, type: type ?? .partner)
        // Explicit values the cross-key rules below need to see, with where they were written.
        var useMXRecord: (Bool, Entry)? = nil
        var tlsDomain: Entry? = nil
        var tlsSettings: Entry? = nil
        var restrictToIPs: Entry? = nil
        var restrictToCertificate: Entry? = nil

        // Suggest and list only the keys this kind of connector takes, when its kind is known.
        let fittingKeys = PolicyKeys.connector.filter { key, scope in
            guard let direction, let type else { return true }
            return scope.fits(direction, type)
        }.map(\.key)
        for entry in entries {
            guard let scope = PolicyKeys.scope(of: entry.key) else {
                unknownKey(entry, in: "in \(label)", candidates: fittingKeys)
                continue
            }
            if let direction, let type, !scope.fits(direction, type) {
                problem(entry.keyNode, "\(entry.key) is for \(scope.phrase); \(label) is an \(direction.rawValue) \(type.rawValue) connector")
                continue
            }
            switch entry.key {
            case "name", "direction", "type": break  // read above
            case "enabled": if let v = bool(entry) { c.enabled = v }
            case "comment": c.comment = string(entry)
            case "mode": c.mode = oneOf(entry, Mode.self)
            case "senderIPAddresses": c.senderIPAddresses = addresses(entry) ?? []
            case "tlsSenderCertificateName":
                if let text = string(entry) {
                    switch DomainPattern.parse(text, allowAny: false) {
                    case .success(let pattern): c.tlsSenderCertificateName = pattern
                    case .failure(.anyNotAllowed):
                        problem(entry.value, "tlsSenderCertificateName must name a domain, like \"mail.contoso.com\" "
                            + "or \"*.contoso.com\", not \"*\"")
                    case .failure(let error): problem(entry.value, "tlsSenderCertificateName: \"\(text)\": \(error)")
                    }
                }
            case "requireTls": if let v = bool(entry) { c.requireTls = v }
            case "senderDomains":
                c.senderDomains = domains(entry, allowAny: true) ?? []
                if isEmptyList(entry.value) {
                    problem(entry.value, "senderDomains must list at least one domain (\"*\" = any)")
                }
            case "restrictDomainsToIPAddresses":
                if let v = bool(entry) { c.restrictDomainsToIPAddresses = v; restrictToIPs = entry }
            case "restrictDomainsToCertificate":
                if let v = bool(entry) { c.restrictDomainsToCertificate = v; restrictToCertificate = entry }
            case "associatedAcceptedDomains":
                c.associatedAcceptedDomains = associatedDomains(entry, acceptedDomains: acceptedDomains)
            case "recipientDomains": c.recipientDomains = domains(entry, allowAny: true) ?? []
            case "allAcceptedDomains": if let v = bool(entry) { c.allAcceptedDomains = v }
            case "smartHosts": c.smartHosts = smartHosts(entry)
            case "useMXRecord": if let v = bool(entry) { useMXRecord = (v, entry) }
            case "tlsSettings":
                c.tlsSettings = oneOf(entry, TLSSettings.self)
                tlsSettings = entry
            case "tlsDomain":
                tlsDomain = entry
                if let text = string(entry) {
                    // EOP's TlsDomain takes a wildcard too; Postfix's match= has the same idea.
                    switch DomainPattern.parse(text, allowAny: false) {
                    case .success(let pattern): c.tlsDomain = pattern.description
                    case .failure(.anyNotAllowed):
                        problem(entry.value, "tlsDomain must name a domain, like mx.fabrikam.com, not \"*\"")
                    case .failure(let error): problem(entry.value, "tlsDomain: \"\(text)\": \(error)")
                    }
                }
            case "requireTlsReceipt": if let v = bool(entry) { c.requireTlsReceipt = v }
            default: preconditionFailure("key \(entry.key) is in PolicyKeys.connector but not read")
            }
        }

        // Rules across keys, once direction and type are known. A key that is present but wrong
        // already has its own error, so "needs X" is said only when X is absent or an empty list.
        func lacks(_ key: String) -> Bool { byKey[key].map { isEmptyList($0.value) } ?? true }
        if let direction, let type {
            switch direction {
            case .inbound:
                if type == .onPremises && lacks("senderIPAddresses") && lacks("tlsSenderCertificateName") {
                    problem(node, "\(label) needs senderIPAddresses or tlsSenderCertificateName; without them it can never match")
                }
                if type == .partner && byKey["senderDomains"] == nil {
                    problem(node, "\(label) has no senderDomains; list the MAIL FROM domains this partner sends from (\"*\" = any)")
                }
                if let entry = restrictToIPs, c.restrictDomainsToIPAddresses, lacks("senderIPAddresses") {
                    problem(entry.keyNode, "restrictDomainsToIPAddresses: true needs senderIPAddresses, the addresses to restrict to")
                }
                if let entry = restrictToCertificate, c.restrictDomainsToCertificate, lacks("tlsSenderCertificateName") {
                    problem(entry.keyNode, "restrictDomainsToCertificate: true needs tlsSenderCertificateName, the certificate name to restrict to")
                }
            case .outbound:
                if let (value, entry) = useMXRecord {
                    if value && !lacks("smartHosts") {
                        problem(entry.keyNode, "useMXRecord: true contradicts smartHosts; a connector delivers either by MX "
                            + "or to its smart hosts (remove one of them)")
                    } else if !value && lacks("smartHosts") {
                        problem(entry.keyNode, "useMXRecord: false needs smartHosts to deliver to")
                    }
                }
                c.useMXRecord = lacks("smartHosts")
                if type == .onPremises && lacks("smartHosts") {
                    problem(node, "\(label) needs smartHosts: mail for the organization's own servers goes to them, not to MX")
                }
                if lacks("recipientDomains") && !c.allAcceptedDomains {
                    problem(node, type == .onPremises
                        ? "\(label) needs recipientDomains or allAcceptedDomains: true"
                        : "\(label) has no recipientDomains; list the domains it delivers to")
                }
                let tlsSettingsIsWrong = tlsSettings != nil && c.tlsSettings == nil
                if let entry = tlsDomain, c.tlsSettings != .domainValidation, !tlsSettingsIsWrong {
                    problem(entry.keyNode, "tlsDomain needs tlsSettings: domainValidation")
                }
                if let entry = tlsSettings, c.tlsSettings == .domainValidation, tlsDomain == nil {
                    problem(entry.value, "tlsSettings: domainValidation needs tlsDomain, the name the receiving server's "
                        + "certificate must carry")
                }
            }
        }
        let named = name.map { ($0, Position(byKey["name"]!.value)) }
        guard name != nil, direction != nil, type != nil, problems.count == problemsBefore else { return (nil, named) }
        return (c, named)
    }

    private func isEmptyList(_ node: Node) -> Bool {
        if case .sequence(let sequence) = node { return sequence.isEmpty }
        return false
    }

    private mutating func readName(_ entry: Entry) -> String? {
        guard let name = string(entry) else { return nil }
        if name.count > PolicyKeys.maximumNameLength {
            problem(entry.value, "connector name is \(name.count) characters long; at most \(PolicyKeys.maximumNameLength) are allowed")
            return nil
        }
        // Names go into syslog lines and headers; a control character there could forge a line.
        if name.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) {
            problem(entry.value, "connector name must not contain control characters (tabs, line breaks...)")
            return nil
        }
        if name.allSatisfy({ $0 == " " }) {
            problem(entry.value, "connector name must not be blank")
            return nil
        }
        return name
    }

    private mutating func addresses(_ entry: Entry) -> [IPPrefix]? {
        guard let items = strings(entry, example: "[192.0.2.0/24, \"2001:db8::/32\"]") else { return nil }
        var prefixes: [IPPrefix] = []
        for (text, node) in items {
            switch IPPrefix.parse(text) {
            case .success(let prefix): prefixes.append(prefix)
            case .failure(let error): problem(node, "\(entry.key): \(error)")
            }
        }
        return prefixes
    }

    private mutating func associatedDomains(_ entry: Entry, acceptedDomains: [DomainPattern]?) -> [DomainPattern] {
        guard let patterns = domainsWithNodes(entry, allowAny: false, anyReason: "; list accepted domains") else { return [] }
        // Checked only against a valid acceptedDomains, so one mistake does not cascade.
        if let acceptedDomains {
            for (pattern, node) in patterns where !acceptedDomains.contains(where: { covers($0, pattern) }) {
                problem(node, "associatedAcceptedDomains: \"\(pattern)\" is not one of the accepted domains ("
                    + acceptedDomains.map(\.description).joined(separator: ", ") + ")")
            }
        }
        return patterns.map(\.0)
    }

    /// An accepted domain holds every domain the pattern can match.
    private func covers(_ accepted: DomainPattern, _ pattern: DomainPattern) -> Bool {
        switch (accepted, pattern) {
        case (.any, _): return true
        case (.exact(let a), .exact(let b)): return a == b
        case (.wildcard(let a), .exact(let b)), (.wildcard(let a), .wildcard(let b)):
            return DomainName.isSame(b, orSubdomainOf: a)
        default: return false
        }
    }

    private mutating func smartHosts(_ entry: Entry) -> [SmartHost] {
        guard let items = strings(entry, example: "[mx1.fabrikam.com, \"[203.0.113.25]:2525\"]") else { return [] }
        var hosts: [SmartHost] = []
        for (text, node) in items {
            switch SmartHostSyntax.parse(text) {
            case .success(let host): hosts.append(host)
            case .failure(let reason): problem(node, "smartHosts: \"\(text)\": \(reason.message)")
            }
        }
        return hosts
    }
}
