// The policy file (docs/policy-file.md), as the administrator wrote it (after validation).
// Names follow the EOP parameter names in lowerCamelCase, like the YAML keys.

/// A whole policy file: the organization, the settings and the connectors, in file order.
public struct Policy: Sendable, Equatable {
    public var acceptedDomains: [DomainPattern]
    public var settings: Settings
    public var connectors: [Connector]

    public init(acceptedDomains: [DomainPattern], settings: Settings = Settings(), connectors: [Connector]) {
        self.acceptedDomains = acceptedDomains
        self.settings = settings
        self.connectors = connectors
    }
}

public enum Mode: String, Sendable, CaseIterable {
    case enforce, monitor
}

public enum TLSFailure: String, Sendable, CaseIterable {
    /// 454 4.7.0: the sender keeps the message and retries.
    case temporary
    /// 530 5.7.0: the sender bounces the message.
    case permanent
}

public struct Settings: Sendable, Equatable {
    public var mode: Mode = .enforce
    public var tlsFailure: TLSFailure = .temporary
    public var rejectDirectSend: Bool = false
    public var stampHeaders: Bool = true

    public init(mode: Mode = .enforce, tlsFailure: TLSFailure = .temporary,
                rejectDirectSend: Bool = false, stampHeaders: Bool = true) {
        self.mode = mode
        self.tlsFailure = tlsFailure
        self.rejectDirectSend = rejectDirectSend
        self.stampHeaders = stampHeaders
    }
}

public enum Direction: String, Sendable, CaseIterable {
    case inbound, outbound
}

public enum ConnectorType: String, Sendable, CaseIterable {
    case onPremises, partner
}

public enum TLSSettings: String, Sendable, CaseIterable {
    case encryptionOnly, certificateValidation, domainValidation
}

/// Where an outbound connector delivers instead of the recipient domain's MX:
/// `mx1.fabrikam.com`, `mx1.fabrikam.com:2525`, `[203.0.113.25]`, `[2001:db8::25]:2525`.
public struct SmartHost: Sendable, Equatable, CustomStringConvertible {
    /// A host name (lowercased) or an IP address literal without its brackets.
    public var host: String
    /// Written in brackets: an address, or a name whose MX records must not be looked up.
    public var isBracketed: Bool
    public var port: Int?

    public init(host: String, isBracketed: Bool, port: Int? = nil) {
        self.host = host
        self.isBracketed = isBracketed
        self.port = port
    }

    public var description: String {
        let h = isBracketed ? "[\(host)]" : host
        return port.map { "\(h):\($0)" } ?? h
    }
}

/// One connector. Keys that do not fit a connector's direction and type are refused by the
/// parser, so the judge may read any field without checking the direction first.
public struct Connector: Sendable, Equatable {
    public var name: String
    public var direction: Direction
    public var type: ConnectorType
    public var enabled: Bool = true
    public var comment: String? = nil
    /// Overrides `settings.mode` for decisions this connector makes.
    public var mode: Mode? = nil

    // Inbound.
    public var senderIPAddresses: [IPPrefix] = []
    /// Partner only: MAIL FROM domains this connector speaks for; `*` = any.
    public var senderDomains: [DomainPattern] = []
    public var tlsSenderCertificateName: DomainPattern? = nil
    public var requireTls: Bool = false
    public var restrictDomainsToIPAddresses: Bool = false
    public var restrictDomainsToCertificate: Bool = false
    /// Partner only: limit the connector to mail for these accepted domains (empty = all).
    public var associatedAcceptedDomains: [DomainPattern] = []
    /// Enhanced filtering (docs/enhanced-filtering.md): the hops of a service in front to skip
    /// in the Received headers, to find the message's original client.
    public var efSkipIPs: [IPPrefix] = []
    /// Enhanced filtering, skipping only the connecting client.
    public var efSkipLastIP: Bool = false
    /// The recipients enhanced filtering applies to, lowercased `local@domain`; empty = all.
    public var efUsers: [String] = []
    /// Find and log the original client, but refuse nothing for it.
    public var efTestMode: Bool = false

    // Outbound.
    public var recipientDomains: [DomainPattern] = []
    public var allAcceptedDomains: Bool = false
    public var smartHosts: [SmartHost] = []
    public var useMXRecord: Bool = true
    public var tlsSettings: TLSSettings? = nil
    public var tlsDomain: String? = nil
    public var requireTlsReceipt: Bool = false
    /// Addresses `validate` asks the next hop about (RCPT TO after STARTTLS; nothing is sent).
    public var validationRecipients: [String] = []

    public init(name: String, direction: Direction, type: ConnectorType) {
        self.name = name
        self.direction = direction
        self.type = type
    }

    /// A partner connector that refuses its sender domains from anywhere it does not allow.
    public var isRestricting: Bool { restrictDomainsToIPAddresses || restrictDomainsToCertificate }

    /// Mail from this connector is judged on its original client (enhanced filtering).
    public var hasEnhancedFiltering: Bool { !efSkipIPs.isEmpty || efSkipLastIP }
}
