// The one table of policy keys. Each key is written here once: where it goes, what it takes,
// its default, the checks that concern it alone, and what it means. The reader, the "did you
// mean" suggestions, lint's positions, docs/policy-file.md and connectors.yaml(5) are all made
// from this table.
//
// Adding a connector key: a field in `Connector` (Policy.swift, with its default), a row below
// (in the place you want it listed), and its use in judging. Then regenerate the reference:
// `UPDATE_POLICY_REFERENCE=1 swift test --filter PolicyReferenceTests`.
// Rules between keys (tlsDomain with domainValidation, smartHosts against useMXRecord...) are
// in `PolicyReader.crossKeyProblems` and described in `PolicyReference.rules`.

/// Where a key is written.
package enum KeyPlace: Sendable, Equatable {
    /// The file's own sections: organization, settings, connectors.
    case topLevel
    case organization
    case settings
    case connector(ConnectorScope)
}

/// Which connectors a connector key belongs to.
package enum ConnectorScope: Sendable, Equatable {
    case every, inbound, inboundPartner, outbound, outboundOnPremises

    package func fits(_ direction: Direction, _ type: ConnectorType) -> Bool {
        switch self {
        case .every: return true
        case .inbound: return direction == .inbound
        case .inboundPartner: return direction == .inbound && type == .partner
        case .outbound: return direction == .outbound
        case .outboundOnPremises: return direction == .outbound && type == .onPremises
        }
    }

    package var phrase: String {
        switch self {
        case .every: return "every connector"
        case .inbound: return "inbound connectors"
        case .inboundPartner: return "inbound partner connectors"
        case .outbound: return "outbound connectors"
        case .outboundOnPremises: return "outbound onPremises connectors"
        }
    }
}

/// One row of the table.
package struct PolicyKey: Sendable {
    package let name: String
    package let place: KeyPlace
    /// What the value looks like, for the reference ("true or false", "list of domains").
    package let type: String
    /// For the reference: the value when the key is absent, or "required".
    package let defaultValue: String
    /// One line for the reference.
    package let meaning: String
    /// The model field the key fills, so code can name the key by its field.
    let field: (AnyKeyPath & Sendable)?
    let reading: Reading
    /// A connector's name, direction and type: read before its other keys, which depend on them.
    let readsFirst: Bool

    enum Reading: Sendable {
        /// The top-level sections, which the reader's structure reads.
        case structure
        case organization(@Sendable (inout PolicyReader, Entry, inout Policy) -> Void)
        case settings(@Sendable (inout PolicyReader, Entry, inout Settings) -> Void)
        case connector(@Sendable (inout PolicyReader, Entry, inout Connector) -> Void)
    }

    /// The connector this key belongs to, when it is a connector key.
    package var scope: ConnectorScope? {
        if case .connector(let scope) = place { return scope }
        return nil
    }
}

// MARK: - The table

package enum PolicyKeys {
    static let organizationSection = PolicyKey.section(
        "organization", type: "mapping", defaultValue: "required", "the organization itself: its acceptedDomains")
    package static let settingsSection = PolicyKey.section(
        "settings", type: "mapping", defaultValue: "the defaults below", "settings for the whole policy")
    package static let connectorsSection = PolicyKey.section(
        "connectors", type: "list of connectors", defaultValue: "none", "the connectors, each a mapping of the keys below")

    /// Every key, in the order of the reference; within a place, also the order of "known
    /// keys" lists and the tie-break between equally close suggestions.
    package static let all: [PolicyKey] = [
        organizationSection, settingsSection, connectorsSection,

        .organization("acceptedDomains", \.acceptedDomains,
                      .domains(allowAny: false, anyReason: ": accepting every domain would make the milter an open relay",
                               emptyProblem: "acceptedDomains must list at least one domain"),
                      defaultValue: "required",
                      "the organization's own domains; `*.x` is x and all its subdomains; `*` is refused (an open relay)"),

        .setting("mode", \.mode, .oneOf(Mode.self), "`monitor`: decide and log, but never refuse"),
        .setting("tlsFailure", \.tlsFailure, .oneOf(TLSFailure.self),
                 "refuse for TLS with `454 4.7.0` (the sender retries) or `530 5.7.0` (it bounces)"),
        .setting("rejectDirectSend", \.rejectDirectSend, .bool,
                 "refuse mail that no connector claims but whose MAIL FROM domain is an accepted domain"),
        .setting("stampHeaders", \.stampHeaders, .bool, "add the `X-Connector-Inbound` and `X-Connector-Direction` headers"),

        .connector("name", .every, \.name, .connectorName, defaultValue: "required", readFirst: true,
                   "unique among connectors (compared without regard to case); it labels verdict lines and headers"),
        .connector("direction", .every, \.direction, .oneOf(Direction.self), defaultValue: "required", readFirst: true,
                   "`inbound`: mail arriving from it; `outbound`: mail it delivers"),
        .connector("type", .every, \.type, .oneOf(ConnectorType.self), defaultValue: "required", readFirst: true,
                   "`onPremises`: the organization's own servers; `partner`: another organization"),
        .connector("enabled", .every, \.enabled, .bool, "a disabled connector is ignored"),
        .connector("comment", .every, \.comment, .string, "free text for the people who read the file"),
        .connector("mode", .every, \.mode, .oneOf(Mode.self), defaultValue: "`settings.mode`",
                   "the mode of the decisions this connector makes"),
        .connector("senderIPAddresses", .inbound, \.senderIPAddresses, .addresses,
                   "the addresses the connector's mail comes from; host bits beyond the prefix are an error"),
        .connector("tlsSenderCertificateName", .inbound, \.tlsSenderCertificateName,
                   .domainPattern(example: #""mail.contoso.com" or "*.contoso.com""#),
                   "identify the sender by the name in its verified client certificate"),
        .connector("requireTls", .inbound, \.requireTls, .bool, "mail through this connector must arrive over TLS"),
        .connector("senderDomains", .inboundPartner, \.senderDomains,
                   .domains(allowAny: true, emptyProblem: #"senderDomains must list at least one domain ("*" = any)"#),
                   defaultValue: "required",
                   "the MAIL FROM domains the partner sends from; `*` is any, and the only pattern that matches the null sender `<>`"),
        .connector("restrictDomainsToIPAddresses", .inboundPartner, \.restrictDomainsToIPAddresses, .bool,
                   "refuse mail from the sender domains unless it comes from senderIPAddresses"),
        .connector("restrictDomainsToCertificate", .inboundPartner, \.restrictDomainsToCertificate, .bool,
                   "refuse mail from the sender domains unless the client presents the certificate tlsSenderCertificateName"),
        .connector("associatedAcceptedDomains", .inboundPartner, \.associatedAcceptedDomains, .associatedAcceptedDomains,
                   defaultValue: "all accepted domains",
                   "the connector applies only to mail for these accepted domains"),
        .connector("efSkipIPs", .inbound, \.efSkipIPs, .addresses,
                   "enhanced filtering: the addresses of the service in front to skip in the Received headers, to find the original client"),
        .connector("efSkipLastIP", .inbound, \.efSkipLastIP, .bool,
                   "enhanced filtering skipping only the connecting client; instead of efSkipIPs"),
        .connector("efUsers", .inbound, \.efUsers, .recipientAddresses, defaultValue: "all recipients",
                   "enhanced filtering applies only to mail for these recipients"),
        .connector("efTestMode", .inbound, \.efTestMode, .bool,
                   "enhanced filtering finds and logs the original client, but refuses nothing for it (`would=`)"),
        .connector("recipientDomains", .outbound, \.recipientDomains, .domains(allowAny: true),
                   "the recipient domains the connector delivers for; `*.x` and `*` are allowed"),
        .connector("smartHosts", .outbound, \.smartHosts, .smartHosts,
                   "deliver to these hosts, by their address records, instead of the recipient domain's MX"),
        .connector("useMXRecord", .outbound, \.useMXRecord, .bool, defaultValue: "`true` without smartHosts",
                   "deliver by the recipient domain's MX; `false` needs smartHosts, `true` with them is an error"),
        .connector("tlsSettings", .outbound, \.tlsSettings, .oneOf(TLSSettings.self), defaultValue: "none (the MTA's own TLS policy)",
                   "the TLS that delivery requires: any encryption, a valid certificate, or a valid certificate for tlsDomain"),
        .connector("tlsDomain", .outbound, \.tlsDomain,
                   ValueSyntax.domainPattern(example: "mx.fabrikam.com").map { $0.description },
                   "the name the receiving server's certificate must carry; only, and required, with `domainValidation`"),
        .connector("requireTlsReceipt", .outbound, \.requireTlsReceipt, .bool,
                   "mail for this connector's recipients must also have arrived over TLS"),
        .connector("allAcceptedDomains", .outboundOnPremises, \.allAcceptedDomains, .bool,
                   "the connector delivers mail for every accepted domain"),
        .connector("validationRecipients", .outbound, \.validationRecipients, .probeAddresses,
                   "addresses `validate` asks the smart hosts to accept (RCPT TO after STARTTLS); no mail is sent"),
    ]

    // MARK: Lookups

    package static let topLevel = all.filter { $0.place == .topLevel }
    package static let organization = all.filter { $0.place == .organization }
    package static let settings = all.filter { $0.place == .settings }
    package static let connector = all.filter { $0.scope != nil }

    static let settingByName = Dictionary(uniqueKeysWithValues: settings.map { ($0.name, $0) })
    static let connectorByName = Dictionary(uniqueKeysWithValues: connector.map { ($0.name, $0) })
    static let connectorIdentity = connector.filter(\.readsFirst)

    /// The row of the connector key that fills `field`; a field without a key is a programmer error.
    package static func connectorKey(_ field: PartialKeyPath<Connector>) -> PolicyKey {
        guard let key = connector.first(where: { ($0.field as AnyKeyPath?) == (field as AnyKeyPath) }) else { preconditionFailure("no policy key fills \(field)") }
        return key
    }

    package static func settingKey(_ field: PartialKeyPath<Settings>) -> PolicyKey {
        guard let key = settings.first(where: { ($0.field as AnyKeyPath?) == (field as AnyKeyPath) }) else { preconditionFailure("no policy key fills \(field)") }
        return key
    }

    static let maximumNameLength = 64
}

// MARK: - Building rows

extension PolicyKey {
    static func section(_ name: String, type: String, defaultValue: String, _ meaning: String) -> PolicyKey {
        PolicyKey(name: name, place: .topLevel, type: type, defaultValue: defaultValue, meaning: meaning,
                  field: nil, reading: .structure, readsFirst: false)
    }

    static func organization<Value>(_ name: String, _ field: WritableKeyPath<Policy, Value> & Sendable,
                                    _ syntax: ValueSyntax<Value>, defaultValue: String, _ meaning: String) -> PolicyKey {
        PolicyKey(name: name, place: .organization, type: syntax.phrase, defaultValue: defaultValue, meaning: meaning,
                  field: field, reading: .organization { reader, entry, policy in
                      if let value = syntax.read(&reader, entry) { policy[keyPath: field] = value }
                  }, readsFirst: false)
    }

    /// A setting; its default is `Settings()`'s.
    static func setting<Value>(_ name: String, _ field: WritableKeyPath<Settings, Value> & Sendable,
                               _ syntax: ValueSyntax<Value>, _ meaning: String) -> PolicyKey {
        PolicyKey(name: name, place: .settings, type: syntax.phrase,
                  defaultValue: syntax.show(Settings()[keyPath: field]), meaning: meaning,
                  field: field, reading: .settings { reader, entry, settings in
                      if let value = syntax.read(&reader, entry) { settings[keyPath: field] = value }
                  }, readsFirst: false)
    }

    /// A connector key; without `defaultValue`, its default is the one `Connector` declares.
    static func connector<Value>(_ name: String, _ scope: ConnectorScope, _ field: WritableKeyPath<Connector, Value> & Sendable,
                                 _ syntax: ValueSyntax<Value>, defaultValue: String? = nil, readFirst: Bool = false,
                                 _ meaning: String) -> PolicyKey {
        PolicyKey(name: name, place: .connector(scope), type: syntax.phrase,
                  defaultValue: defaultValue ?? syntax.show(Connector.blank[keyPath: field]), meaning: meaning,
                  field: field, reading: .connector { reader, entry, connector in
                      if let value = syntax.read(&reader, entry) { connector[keyPath: field] = value }
                  }, readsFirst: readFirst)
    }

    /// A connector key whose field is optional: absent means "not set".
    static func connector<Value>(_ name: String, _ scope: ConnectorScope, _ field: WritableKeyPath<Connector, Value?> & Sendable,
                                 _ syntax: ValueSyntax<Value>, defaultValue: String = "none", _ meaning: String) -> PolicyKey {
        PolicyKey(name: name, place: .connector(scope), type: syntax.phrase, defaultValue: defaultValue, meaning: meaning,
                  field: field, reading: .connector { reader, entry, connector in
                      if let value = syntax.read(&reader, entry) { connector[keyPath: field] = value }
                  }, readsFirst: false)
    }
}

extension Connector {
    /// The defaults of every field, for the reference.
    static let blank = Connector(name: "", direction: .inbound, type: .partner)
}
