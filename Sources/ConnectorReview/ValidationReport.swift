// What `validate` prints: text for a person, JSON for a script. Both say the same things.

import Foundation

public struct WiringReport: Sendable, Equatable, Codable {
    public var mta: String
    public var configuration: String
    public var findings: [WiringFinding]

    public init(mta: String, configuration: String, findings: [WiringFinding]) {
        self.mta = mta
        self.configuration = configuration
        self.findings = findings
    }
}

public struct ValidationReport: Sendable, Codable {
    public var connectors: [ConnectorValidation] = []
    public var certificate: CertificateIdentityReport?
    public var wiring: WiringReport?
    public var notes: [String] = []

    public init() {}

    /// Every connector delivers, the certificate identifies one, the MTA's wiring has no finding.
    public var holds: Bool {
        connectors.allSatisfy(\.delivers) && (certificate?.holds ?? true) && (wiring?.findings.isEmpty ?? true)
    }

    public func text() -> String {
        var out = ""
        for connector in connectors {
            out += "connector \"\(connector.connector)\": " + (connector.delivers ? "delivers" : "DOES NOT DELIVER") + "\n"
            for problem in connector.problems { out += "  problem: \(problem)\n" }
            for host in connector.hosts {
                out += "  next hop \(host.nextHop)" + (host.host.map { " (\($0))" } ?? "") + "\n"
                out += "    TLS demand: \(host.requirement.description) (\(host.requirement.source))\n"
                out += "    reachable: \(host.reachable ? "yes" : "no")"
                if host.reachable {
                    out += "; STARTTLS: \(host.startTLSOffered ? "offered" : "not offered")"
                    if let version = host.protocolVersion {
                        out += "; TLS: \(version) \(host.cipher ?? "")" + (host.trust.map { " (\($0))" } ?? "")
                    }
                }
                out += "\n"
                if !host.certificateNames.isEmpty {
                    out += "    certificate: \(host.certificateNames.joined(separator: ", "))"
                    if let days = host.daysToExpiry {
                        out += days < 0 ? "; expired \(-days) days ago" : "; expires in \(days) days"
                    }
                    out += "\n"
                    out += "    trusted chain: " + (host.trustedChain.map { $0 ? "yes" : "no" } ?? "not checked")
                        + (host.chainProblem.map { " (\($0))" } ?? "")
                    if let match = host.nameMatch {
                        out += "; name match: \(match ? "yes" : "no") (wanted \(host.expectedNames.joined(separator: " or ")))"
                    }
                    out += "\n"
                }
                for check in host.recipients {
                    out += "    RCPT TO:<\(check.recipient)>: \(check.reply)\n"
                }
                for warning in host.warnings { out += "    warning: \(warning)\n" }
                out += "    verdict: " + (host.delivers ? "delivers under this connector" : "does not deliver: \(host.reason ?? "")") + "\n"
            }
        }
        if let c = certificate {
            out += "certificate \(c.file): " + (c.holds ? "identifies connector \"\(c.connector!)\" (\(c.connectorType ?? ""))" : "DOES NOT IDENTIFY "
                                                 + (c.connector.map { "as expected (it matches \"\($0)\")" } ?? "a connector")) + "\n"
            out += "  CN: \(c.commonName ?? "(none)")" + (c.altNames.isEmpty ? "" : "; subjectAltName: \(c.altNames.joined(separator: ", "))") + "\n"
            out += "  name the MTA passes: \(c.nameForMTA ?? "(none)")\n"
            out += "  trusted by \(c.caFile ?? "(no CA file)"): " + (c.trusted.map { $0 ? "yes" : "no" } ?? "not checked")
                + (c.trustProblem.map { " (\($0))" } ?? "") + "\n"
            if let days = c.daysToExpiry { out += "  " + (days < 0 ? "expired \(-days) days ago" : "expires in \(days) days") + "\n" }
            for problem in c.problems { out += "  problem: \(problem)\n" }
            for warning in c.warnings { out += "  warning: \(warning)\n" }
        }
        if let wiring {
            out += "\(wiring.mta) wiring (\(wiring.configuration)): "
                + (wiring.findings.isEmpty ? "no finding" : "\(wiring.findings.count) finding\(wiring.findings.count == 1 ? "" : "s")") + "\n"
            for finding in wiring.findings {
                out += "  finding: \(finding.message)\n"
                for fix in finding.fix { out += "    fix: \(fix)\n" }
            }
        }
        for note in notes { out += "note: \(note)\n" }
        out += holds ? "all checks hold\n" : "something would fail\n"
        return out
    }

    public func json() -> String {
        struct Document: Encodable {
            let holds: Bool
            let connectors: [Connector]
            let certificate: CertificateIdentityReport?
            let wiring: WiringReport?
            let notes: [String]
        }
        struct Connector: Encodable {
            let connector: String
            let delivers: Bool
            let problems: [String]
            let hosts: [HostReport]
        }
        let document = Document(holds: holds,
                                connectors: connectors.map { Connector(connector: $0.connector, delivers: $0.delivers,
                                                                       problems: $0.problems, hosts: $0.hosts) },
                                certificate: certificate, wiring: wiring, notes: notes)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return (try? encoder.encode(document)).map { String(decoding: $0, as: UTF8.self) } ?? "{}"
    }
}
