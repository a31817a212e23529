// `validate` for outbound connectors: each next hop probed with posttls-finger under the
// demand the socketmap answers for it, the certificate read with `openssl x509`, its chain
// checked with `openssl verify`, the recipients asked with RecipientProbe. The verdicts
// come from Validation.swift.

import ConnectorPolicy
import Foundation

public struct OutboundValidator: Sendable {
    /// The CA file smtp(8) uses (smtp_tls_CAfile), and its CA directory (smtp_tls_CApath).
    public var caFile: String?
    public var caPath: String?
    /// smtp_tls_security_level: what applies where the socketmap answers nothing.
    public var siteLevel: String?
    /// Postfix's configuration directory: posttls-finger reads its main.cf (myhostname for
    /// EHLO, protocols, ciphers), as smtp(8) does.
    public var postfixConfig: String?
    public var ehloName: String
    /// Seconds for the TCP connection and for each SMTP command.
    public var timeout: Int = 10
    public var now: Date = Date()

    public init(caFile: String?, caPath: String?, siteLevel: String?, postfixConfig: String?, ehloName: String) {
        self.caFile = caFile
        self.caPath = caPath
        self.siteLevel = siteLevel
        self.postfixConfig = postfixConfig
        self.ehloName = ehloName
    }

    /// The next hops of a connector, in the order Postfix tries them: its smart hosts, else
    /// (MX delivery) every exact recipient domain it is the connector for, and each of
    /// `domains` (for wildcard patterns) that attribution gives to it.
    public static func nextHops(of connector: Connector, in set: PolicySet, domains: [String]) -> [String] {
        if !connector.smartHosts.isEmpty { return connector.smartHosts.map(\.description) }
        var patterns = connector.recipientDomains
        if connector.allAcceptedDomains { patterns += set.policy.acceptedDomains }
        var hops: [String] = []
        for pattern in patterns {
            if case .exact(let name) = pattern, set.outboundConnector(for: name)?.name == connector.name,
               !hops.contains(name) {
                hops.append(name)
            }
        }
        for domain in domains.map(DomainName.lowercasedASCII)
        where set.outboundConnector(for: domain)?.name == connector.name && !hops.contains(domain) {
            hops.append(domain)
        }
        return hops
    }

    /// Validates one connector: every next hop, then the verdict.
    public func validate(_ connector: Connector, in set: PolicySet, domains: [String],
                         recipients: [String]) -> ConnectorValidation {
        let maps = OutboundMaps(set)
        let hops = Self.nextHops(of: connector, in: set, domains: domains)
        guard !hops.isEmpty else {
            return ConnectorValidation(connector: connector.name, hosts: [], problems: [
                "no next hop to check: it has no smart hosts and no exact recipient domain; "
                    + "name a domain it delivers to with --domain"])
        }
        let answering = Dictionary(maps.smartHostKeys.map { ($0.key, $0.connector) }, uniquingKeysWith: { first, _ in first })
        let hosts = hops.map { hop in
            var report = probe(nextHop: hop, requirement: Validation.requirement(maps: maps, nextHop: hop, siteLevel: siteLevel),
                               recipients: recipients)
            // Postfix keys its TLS policy by next hop: one answer for every connector there.
            if let other = answering[hop], other.name != connector.name {
                report.warnings.append("this smart host is shared with connector \"\(other.name)\", whose tlsSettings "
                                       + "(\(other.tlsSettings?.rawValue ?? "none")) Postfix applies to both: one TLS policy per next hop")
            }
            return report
        }
        return ConnectorValidation(connector: connector.name, hosts: hosts)
    }

    /// Probes one next hop.
    public func probe(nextHop: String, requirement: TLSRequirement, recipients: [String]) -> HostReport {
        var arguments = ["posttls-finger", "-t", String(timeout), "-T", String(timeout), "-L", "routine,certmatch",
                         "-C", "-l", requirement.probeLevel]
        if let caFile { arguments += ["-F", caFile] }
        if let caPath { arguments += ["-P", caPath] }
        arguments.append(nextHop)
        if requirement.requiresVerification { arguments += requirement.match }
        var environment: [String: String] = [:]
        if let postfixConfig { environment["MAIL_CONFIG"] = postfixConfig }

        var probe = TLSProbe()
        do {
            let result = try Subprocess.run(arguments, environment: environment, timeout: TimeInterval(timeout * 4 + 5))
            probe = TLSProbe.parse(result.combined)
            if !probe.reachable && probe.connectError == nil {
                probe.connectError = result.combined.split(whereSeparator: \.isNewline).last.map(String.init)
                    ?? "posttls-finger exited \(result.status)"
            }
        } catch {
            probe.connectError = "\(error)"
        }

        var certificate: CertificateFacts?
        var trusted: Bool?
        var chainProblem: String?
        if let leaf = probe.chainPEM.first {
            certificate = Self.certificateFacts(pem: leaf)
            (trusted, chainProblem) = verifyChain(probe.chainPEM)
        }

        var checks: [RecipientCheck] = []
        let preliminary = Validation.judge(nextHop: nextHop, probe: probe, requirement: requirement,
                                           certificate: certificate, chainProblem: chainProblem,
                                           trustedChain: trusted, recipients: [], now: now)
        if !recipients.isEmpty, preliminary.delivers {
            if probe.startTLSOffered, let address = probe.address, let port = probe.port {
                switch RecipientProbe.check(address: address, port: port, recipients: recipients, ehlo: ehloName,
                                            timeout: TimeInterval(timeout * 3)) {
                case .success(let found): checks = found
                case .failure(let error): checks = recipients.map { RecipientCheck(recipient: $0, reply: "not asked: \(error)") }
                }
            } else {
                checks = recipients.map { RecipientCheck(recipient: $0, reply: "not asked: the host offers no STARTTLS") }
            }
        }
        return Validation.judge(nextHop: nextHop, probe: probe, requirement: requirement, certificate: certificate,
                                chainProblem: chainProblem, trustedChain: trusted, recipients: checks, now: now)
    }

    /// `openssl x509` on one PEM certificate.
    public static func certificateFacts(pem: String) -> CertificateFacts? {
        guard let result = try? Subprocess.run(["openssl", "x509", "-noout", "-subject", "-issuer", "-enddate",
                                                "-ext", "subjectAltName", "-nameopt", "RFC2253"], input: pem, timeout: 15),
              result.status == 0 else { return nil }
        return CertificateFacts.parse(x509Text: result.output)
    }

    /// `openssl verify` of the leaf against the CA file, the rest of the chain as
    /// intermediates: (trusted, why not).
    func verifyChain(_ chain: [String]) -> (Bool?, String?) {
        guard caFile != nil || caPath != nil else { return (false, "no CA file: nothing is trusted (smtp_tls_CAfile or --ca)") }
        return Self.verify(leaf: chain[0], intermediates: Array(chain.dropFirst()), caFile: caFile, caPath: caPath,
                           purpose: "sslserver")
    }

    static func verify(leaf: String, intermediates: [String], caFile: String?, caPath: String?,
                       purpose: String) -> (Bool?, String?) {
        let directory = NSTemporaryDirectory() + "connector-validate-\(getpid())-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            try leaf.write(toFile: directory + "/leaf.pem", atomically: true, encoding: .utf8)
            var arguments = ["openssl", "verify", "-purpose", purpose]
            if let caFile { arguments += ["-CAfile", caFile] }
            if let caPath { arguments += ["-CApath", caPath] }
            if !intermediates.isEmpty {
                try intermediates.joined().write(toFile: directory + "/chain.pem", atomically: true, encoding: .utf8)
                arguments += ["-untrusted", directory + "/chain.pem"]
            }
            let result = try Subprocess.run(arguments + [directory + "/leaf.pem"], timeout: 15)
            if result.status == 0 { return (true, nil) }
            // "error 10 at 0 depth lookup: certificate has expired"
            let line = result.combined.split(whereSeparator: \.isNewline).map(String.init)
                .first { $0.hasPrefix("error ") } ?? result.combined.trimmingCharacters(in: .whitespacesAndNewlines)
            let reason = line.range(of: "lookup: ").map { String(line[$0.upperBound...]) } ?? line
            return (false, reason)
        } catch {
            return (nil, "cannot check the chain: \(error)")
        }
    }
}
