// The values a policy key can take, and how each is read and checked: the `ValueSyntax` that
// the rows of the key table (PolicyKeys.swift) are made of, and the readers under them.

import Yams

extension PolicyReader {
    /// The text of a scalar value, or nil (with a problem) for a list, a mapping or no value.
    mutating func scalar(_ entry: Entry, _ expectation: String) -> Node.Scalar? {
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

    mutating func string(_ entry: Entry) -> String? {
        scalar(entry, "a string")?.string
    }

    /// YAML 1.2 core schema: only true and false. `yes`, `on` and friends were booleans in
    /// YAML 1.1 and still are to some tools, which is exactly why they are refused here.
    mutating func bool(_ entry: Entry) -> Bool? {
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

    mutating func oneOf<Value: RawRepresentable & CaseIterable>(_ entry: Entry, _: Value.Type = Value.self) -> Value?
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
    mutating func strings(_ entry: Entry, example: String) -> [(String, Node)]? {
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

    mutating func domains(_ entry: Entry, allowAny: Bool, anyReason: String = "") -> [DomainPattern]? {
        domainsWithNodes(entry, allowAny: allowAny, anyReason: anyReason)?.map(\.0)
    }

    mutating func domainsWithNodes(_ entry: Entry, allowAny: Bool, anyReason: String) -> [(DomainPattern, Node)]? {
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


    mutating func readName(_ entry: Entry) -> String? {
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

    mutating func addresses(_ entry: Entry) -> [IPPrefix]? {
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

    mutating func associatedDomains(_ entry: Entry, acceptedDomains: [DomainPattern]?) -> [DomainPattern] {
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
    func covers(_ accepted: DomainPattern, _ pattern: DomainPattern) -> Bool {
        switch (accepted, pattern) {
        case (.any, _): return true
        case (.exact(let a), .exact(let b)): return a == b
        case (.wildcard(let a), .exact(let b)), (.wildcard(let a), .wildcard(let b)):
            return DomainName.isSame(b, orSubdomainOf: a)
        default: return false
        }
    }

    mutating func smartHosts(_ entry: Entry) -> [SmartHost] {
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

/// What a key takes: how to read and check its value, and how the reference describes it.
/// Phrases use `backticks` for literal text; the reference renders them.
struct ValueSyntax<Value>: Sendable {
    /// The kind of value, for the reference ("true or false").
    let phrase: String
    /// The value, or nil with the problem recorded in the reader.
    let read: @Sendable (inout PolicyReader, Entry) -> Value?
    /// A default value as the reference writes it.
    let show: @Sendable (Value) -> String

    func map<Other>(_ transform: @escaping @Sendable (Value) -> Other) -> ValueSyntax<Other> {
        let read = self.read
        return ValueSyntax<Other>(phrase: phrase, read: { reader, entry in read(&reader, entry).map(transform) },
                                  show: { "`\($0)`" })
    }
}

extension ValueSyntax where Value == Bool {
    /// YAML 1.2's `true` and `false`, nothing else.
    static var bool: Self {
        ValueSyntax(phrase: "`true` or `false`", read: { reader, entry in reader.bool(entry) }, show: { "`\($0)`" })
    }
}

extension ValueSyntax where Value == String {
    static var string: Self {
        ValueSyntax(phrase: "text", read: { reader, entry in reader.string(entry) }, show: { "`\($0)`" })
    }

    /// 1 to `PolicyKeys.maximumNameLength` characters, no control characters, not blank.
    static var connectorName: Self {
        ValueSyntax(phrase: "text of 1 to \(PolicyKeys.maximumNameLength) characters, no control characters",
                    read: { reader, entry in reader.readName(entry) }, show: { "`\($0)`" })
    }
}

extension ValueSyntax where Value: RawRepresentable & CaseIterable & Sendable, Value.RawValue == String {
    static func oneOf(_: Value.Type) -> Self {
        let names = Value.allCases.map { "`\($0.rawValue)`" }
        let phrase = names.count == 2 ? "\(names[0]) or \(names[1])" : "one of " + names.joined(separator: ", ")
        return ValueSyntax(phrase: phrase, read: { reader, entry in reader.oneOf(entry) }, show: { "`\($0.rawValue)`" })
    }
}

extension ValueSyntax where Value == [IPPrefix] {
    static var addresses: Self {
        ValueSyntax(phrase: "list of IPv4 and IPv6 addresses and CIDR blocks",
                    read: { reader, entry in reader.addresses(entry) }, show: listDefault)
    }
}

extension ValueSyntax where Value == [String] {
    /// Plain `local@domain` addresses, each sent verbatim as `RCPT TO:<address>`: nothing in
    /// one may end or extend that command.
    static var probeAddresses: Self {
        ValueSyntax(phrase: "list of addresses like `postmaster@fabrikam.com`", read: { reader, entry in
            guard let items = reader.strings(entry, example: "[postmaster@fabrikam.com]") else { return nil }
            var addresses: [String] = []
            for (text, node) in items {
                let at = text.lastIndex(of: "@")
                let domainOK = at.map { (try? DomainName.validate(String(text[text.index(after: $0)...])).get()) != nil } ?? false
                if let at, at > text.startIndex, domainOK, text.utf8.count <= 254,
                   !text.contains(where: { $0 == " " || $0 == "<" || $0 == ">" || $0.asciiValue.map { $0 < 32 || $0 == 127 } ?? true }) {
                    addresses.append(text)
                } else {
                    reader.problem(node, "\(entry.key): \"\(text)\" is not an address like postmaster@fabrikam.com")
                }
            }
            return addresses
        }, show: listDefault)
    }
}

extension ValueSyntax where Value == [SmartHost] {
    static var smartHosts: Self {
        ValueSyntax(phrase: "list of `host`, `host:port`, `[address]`, `[address]:port`",
                    read: { reader, entry in reader.smartHosts(entry) }, show: listDefault)
    }
}

extension ValueSyntax where Value == [DomainPattern] {
    /// Domains and `*.domain` patterns (and `*` when `allowAny`); `emptyProblem` refuses an empty list.
    static func domains(allowAny: Bool, anyReason: String = "", emptyProblem: String? = nil) -> Self {
        ValueSyntax(phrase: allowAny ? "list of domains, `*.domain` and `*`" : "list of domains and `*.domain`",
                    read: { reader, entry in
                        let patterns = reader.domains(entry, allowAny: allowAny, anyReason: anyReason)
                        if let emptyProblem, reader.isEmptyList(entry.value) {
                            reader.problem(entry.value, emptyProblem)
                            return nil
                        }
                        return patterns
                    }, show: listDefault)
    }

    /// Accepted domains only: checked against the organization's.
    static var associatedAcceptedDomains: Self {
        ValueSyntax(phrase: "list of accepted domains",
                    read: { reader, entry in reader.associatedDomains(entry, acceptedDomains: reader.acceptedDomains) },
                    show: listDefault)
    }
}

extension ValueSyntax where Value == DomainPattern {
    /// `name` or `*.name`, never `*`.
    static func domainPattern(example: String) -> Self {
        ValueSyntax(phrase: "a domain or `*.domain`", read: { reader, entry in
            guard let text = reader.string(entry) else { return nil }
            switch DomainPattern.parse(text, allowAny: false) {
            case .success(let pattern): return pattern
            case .failure(.anyNotAllowed):
                reader.problem(entry.value, "\(entry.key) must name a domain, like \(example), not \"*\"")
            case .failure(let error):
                reader.problem(entry.value, "\(entry.key): \"\(text)\": \(error)")
            }
            return nil
        }, show: { "`\($0)`" })
    }
}

private func listDefault<Element>(_ list: [Element]) -> String {
    list.isEmpty ? "none" : list.map { "`\($0)`" }.joined(separator: ", ")
}
