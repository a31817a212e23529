/// Which connectors a key belongs to (SPEC section 2).
enum KeyScope {
    case every, inbound, inboundPartner, outbound, outboundOnPremises

    func fits(_ direction: Direction, _ type: ConnectorType) -> Bool {
        switch self {
        case .every: return true
        case .inbound: return direction == .inbound
        case .inboundPartner: return direction == .inbound && type == .partner
        case .outbound: return direction == .outbound
        case .outboundOnPremises: return direction == .outbound && type == .onPremises
        }
    }

    var phrase: String {
        switch self {
        case .every: return "every connector"
        case .inbound: return "inbound connectors"
        case .inboundPartner: return "inbound partner connectors"
        case .outbound: return "outbound connectors"
        case .outboundOnPremises: return "outbound onPremises connectors"
        }
    }
}

enum PolicyKeys {
    static let topLevel = ["organization", "settings", "connectors"]
    static let organization = ["acceptedDomains"]
    static let settings = ["mode", "tlsFailure", "rejectDirectSend", "stampHeaders"]
    /// In the order the SPEC lists them, which is also the order of suggestions.
    package static let connector: KeyValuePairs<String, KeyScope> = [
        "name": .every, "direction": .every, "type": .every, "enabled": .every, "comment": .every, "mode": .every,
        "senderIPAddresses": .inbound, "tlsSenderCertificateName": .inbound, "requireTls": .inbound,
        "senderDomains": .inboundPartner, "restrictDomainsToIPAddresses": .inboundPartner,
        "restrictDomainsToCertificate": .inboundPartner, "associatedAcceptedDomains": .inboundPartner,
        "recipientDomains": .outbound, "smartHosts": .outbound, "useMXRecord": .outbound,
        "tlsSettings": .outbound, "tlsDomain": .outbound, "requireTlsReceipt": .outbound,
        "allAcceptedDomains": .outboundOnPremises,
    ]
    static func scope(of key: String) -> KeyScope? { connector.first { $0.key == key }?.value }

    static let maximumNameLength = 64

    /// The closest known spelling: equal but for case, or one or two edits away.
    static func suggestion(for word: String, among candidates: [String]) -> String? {
        let lower = word.lowercased()
        if let same = candidates.first(where: { $0.lowercased() == lower }) { return same }
        let scored = candidates.map { ($0, editDistance(lower, $0.lowercased())) }.filter { $0.1 <= 2 }
        return scored.min { $0.1 < $1.1 }?.0
    }

    static func editDistance(_ a: String, _ b: String) -> Int {
        let a = Array(a), b = Array(b)
        if a.isEmpty || b.isEmpty { return max(a.count, b.count) }
        if abs(a.count - b.count) > 2 { return 3 }  // enough to say "not close"
        var row = Array(0...b.count)
        for i in 1...a.count {
            var diagonal = row[0]
            row[0] = i
            for j in 1...b.count {
                let above = row[j]
                row[j] = min(row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1))
                diagonal = above
            }
        }
        return row[b.count]
    }
}
