// `validate --certificate FILE`: which inbound connector a client certificate identifies.
// Postfix hands the milter the certificate's CN ({cert_subject}) only when smtpd verified the
// chain against smtpd_tls_CAfile; an unverified certificate identifies no one. The name is
// then looked up as the judge does: onPremises connectors first (an exact name, then the
// longest wildcard, the first in the file among equals), then partner connectors.

import ConnectorPolicy
import Foundation

public struct CertificateIdentityReport: Sendable, Equatable, Codable {
    public var file: String
    public var commonName: String?
    public var altNames: [String]
    /// The name the MTA will pass: the CN, when it is a host name.
    public var nameForMTA: String?
    public var trusted: Bool?
    public var trustProblem: String?
    public var caFile: String?
    public var daysToExpiry: Int?
    /// The connector it identifies (nil: none).
    public var connector: String?
    public var connectorType: String?
    /// Why it identifies nothing, or what else to know.
    public var problems: [String]
    public var warnings: [String]

    /// It identifies a connector and the MTA will pass its name.
    public var holds: Bool { problems.isEmpty && connector != nil }
}

public enum CertificateIdentity {
    /// The connector a verified certificate named `name` (a CN) identifies.
    public static func connector(forCertificateName name: String, in policy: Policy) -> Connector? {
        guard case .success(let host) = DomainName.validate(name) else { return nil }
        for type in [ConnectorType.onPremises, .partner] {
            var best: (connector: Connector, specificity: Int)?
            for connector in policy.connectors where connector.enabled && connector.direction == .inbound && connector.type == type {
                guard let pattern = connector.tlsSenderCertificateName, pattern.matches(host) else { continue }
                let specificity: Int
                switch pattern {
                case .exact: specificity = Int.max
                case .wildcard(let base): specificity = base.split(separator: ".").count
                case .any: specificity = 0
                }
                if best == nil || specificity > best!.specificity { best = (connector, specificity) }
            }
            if let best { return best.connector }
        }
        return nil
    }

    /// Reads the certificate, checks it against the CA file, finds its connector.
    public static func check(file: String, caFile: String?, policy: Policy, now: Date = Date()) -> CertificateIdentityReport {
        var report = CertificateIdentityReport(file: file, commonName: nil, altNames: [], nameForMTA: nil, trusted: nil,
                                               trustProblem: nil, caFile: caFile, daysToExpiry: nil, connector: nil,
                                               connectorType: nil, problems: [], warnings: [])
        guard let pem = try? String(contentsOfFile: file, encoding: .utf8),
              let begin = pem.range(of: "-----BEGIN CERTIFICATE-----"),
              let end = pem.range(of: "-----END CERTIFICATE-----", range: begin.upperBound..<pem.endIndex) else {
            report.problems.append("\(file): no PEM certificate in it")
            return report
        }
        let leaf = String(pem[begin.lowerBound..<end.upperBound]) + "\n"
        guard let facts = OutboundValidator.certificateFacts(pem: leaf) else {
            report.problems.append("\(file): openssl cannot read the certificate")
            return report
        }
        report.commonName = facts.commonName
        report.altNames = facts.altNames
        report.daysToExpiry = facts.daysToExpiry(now: now)
        if let days = report.daysToExpiry {
            if days < 0 {
                report.problems.append("the certificate expired \(-days) day\(-days == 1 ? "" : "s") ago: the MTA will not verify it")
            } else if days < Validation.expiryWarningDays {
                report.warnings.append("the certificate expires in \(days) day\(days == 1 ? "" : "s")")
            }
        }
        // The rest of the file (a chain) as intermediates, as a client would send it.
        var intermediates: [String] = []
        var rest = pem[end.upperBound...]
        while let b = rest.range(of: "-----BEGIN CERTIFICATE-----"),
              let e = rest.range(of: "-----END CERTIFICATE-----", range: b.upperBound..<rest.endIndex) {
            intermediates.append(String(rest[b.lowerBound..<e.upperBound]) + "\n")
            rest = rest[e.upperBound...]
        }
        if let caFile {
            (report.trusted, report.trustProblem) = OutboundValidator.verify(leaf: leaf, intermediates: intermediates,
                                                                              caFile: caFile, caPath: nil, purpose: "sslclient")
            if report.trusted != true {
                report.problems.append("the CA file \(caFile) does not trust it (\(report.trustProblem ?? "unknown")): "
                                       + "the MTA passes no name for an unverified certificate")
            }
        } else {
            report.problems.append("no CA file (smtpd_tls_CAfile, or --ca): the MTA verifies no client certificate")
        }
        guard let cn = facts.commonName else {
            report.problems.append("the certificate has no CN: Postfix passes the CN, so it identifies no one")
            return report
        }
        guard case .success(let host) = DomainName.validate(cn) else {
            report.problems.append("the CN \"\(cn)\" is not a host name: it can identify no connector")
            return report
        }
        report.nameForMTA = host
        if let connector = connector(forCertificateName: host, in: policy) {
            report.connector = connector.name
            report.connectorType = connector.type.rawValue
        } else {
            report.problems.append("no inbound connector's tlsSenderCertificateName matches \"\(host)\"")
            let others = facts.altNames.filter { $0 != cn && Self.connector(forCertificateName: $0, in: policy) != nil }
            if !others.isEmpty {
                report.warnings.append("subjectAltName \(others.joined(separator: ", ")) would match a connector, but "
                                       + "the MTA passes only the CN")
            }
        }
        return report
    }
}
