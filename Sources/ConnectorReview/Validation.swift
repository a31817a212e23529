// `connector-milter validate`, the judgment: what Postfix's SMTP client will do with a
// connector's mail, decided from what posttls-finger(1) saw at the next hop. posttls-finger
// is Postfix's own probe: the same TLS library code and security levels as smtp(8), so the
// "Verified / Trusted / Untrusted TLS connection established" line it prints is the one
// smtp(8) acts on. This file is pure (text in, verdicts out); ValidationRunner.swift runs the
// programs.
//
// What smtp(8) does per level (Postfix 3.7, smtp_proto.c and TLS_README):
// - none, may, dane without DNSSEC: delivers whenever the host answers (TLS if it can);
// - encrypt: needs STARTTLS and a handshake, any certificate (even expired or self-signed);
// - verify, secure: also needs a "Verified" session: a chain to a trusted CA, not expired,
//   and a certificate name that matches (verify: the host name connected to; secure: the
//   match= names, by default the next-hop domain and its subdomains).
// Otherwise it defers ("TLS is required, but was not offered by host ...", "Server
// certificate not verified") and tries the next host of the list.

import ConnectorPolicy
import Foundation

/// The TLS demand Postfix's SMTP client applies to a next hop: a `smtp_tls_policy_maps`
/// answer (`secure match=a:.a`), or the site's `smtp_tls_security_level` when the map has none.
public struct TLSRequirement: Sendable, Equatable, Codable {
    public var level: String
    /// Names for `match=` (verify, secure); empty = the level's default strategy.
    public var match: [String]
    /// Where it comes from, for the report.
    public var source: String

    public init(level: String, match: [String] = [], source: String) {
        self.level = level
        self.match = match
        self.source = source
    }

    /// Parses a policy table value (`secure match=a:.a`, `encrypt`, `verify`).
    public init(policyValue: String, source: String) {
        let words = policyValue.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
        level = words.first.map { $0.lowercased() } ?? "may"
        match = words.dropFirst().filter { $0.lowercased().hasPrefix("match=") }
            .flatMap { $0.dropFirst("match=".count).split(separator: ":").map(String.init) }
        self.source = source
    }

    /// smtp(8) will not send without TLS.
    public var requiresTLS: Bool { ["encrypt", "verify", "secure", "fingerprint", "dane-only"].contains(level) }
    /// smtp(8) will not send without a verified certificate.
    public var requiresVerification: Bool { ["verify", "secure", "fingerprint", "dane-only"].contains(level) }

    /// The level to probe with: posttls-finger refuses `none`, and reports more at `may`.
    public var probeLevel: String { level == "none" ? "may" : level }

    public var description: String {
        level + (match.isEmpty ? "" : " match=" + match.joined(separator: ":"))
    }
}

/// What posttls-finger reported about one session.
public struct TLSProbe: Sendable, Equatable {
    public enum Trust: String, Sendable, Codable {
        case verified = "Verified", trusted = "Trusted", untrusted = "Untrusted", anonymous = "Anonymous"
    }
    /// `name[address]:port` of the host connected to, nil when no connection was made.
    public var connectedTo: String?
    public var connectError: String?
    /// The greeting or EHLO was refused.
    public var smtpError: String?
    public var startTLSOffered = false
    public var startTLSError: String?
    public var trust: Trust?
    public var protocolVersion: String?
    public var cipher: String?
    /// "server certificate verification failed for ...: REASON" reasons, in order.
    public var verificationFailures: [String] = []
    /// The server's certificate chain in PEM (posttls-finger -C), leaf first.
    public var chainPEM: [String] = []
    /// The last lines, for a failure nothing above explains.
    public var tail: [String] = []

    public init() {}

    public var reachable: Bool { connectedTo != nil }
    public var tlsEstablished: Bool { trust != nil }

    /// The host part of `name[address]:port`.
    public var hostName: String? {
        connectedTo.flatMap { $0.split(separator: "[", maxSplits: 1).first.map(String.init) }
    }

    /// The address part of `name[address]:port`.
    public var address: String? {
        guard let text = connectedTo, let open = text.firstIndex(of: "["), let close = text.lastIndex(of: "]"),
              open < close else { return nil }
        return String(text[text.index(after: open)..<close])
    }

    /// The port part of `name[address]:port`.
    public var port: Int? {
        guard let text = connectedTo, let colon = text.lastIndex(of: ":"), let close = text.lastIndex(of: "]"),
              close < colon else { return nil }
        return Int(text[text.index(after: colon)...])
    }

    /// Reads posttls-finger's output (standard error and output together, `-C` for the chain).
    public static func parse(_ output: String) -> TLSProbe {
        var probe = TLSProbe()
        var pem: String?
        let lines = output.split(omittingEmptySubsequences: true, whereSeparator: \.isNewline).map(String.init)
        for raw in lines {
            if raw.hasPrefix("-----BEGIN CERTIFICATE-----") { pem = raw + "\n"; continue }
            if var current = pem {
                current += raw + "\n"
                if raw.hasPrefix("-----END CERTIFICATE-----") {
                    probe.chainPEM.append(current)
                    pem = nil
                } else {
                    pem = current
                }
                continue
            }
            guard raw.hasPrefix("posttls-finger: ") else { continue }
            let line = String(raw.dropFirst("posttls-finger: ".count))
            if let rest = line.dropPrefix("Connected to ") {
                probe.connectedTo = rest
            } else if line.hasPrefix("Failed to establish session to ") || line.hasPrefix("Destination address lookup failed") {
                probe.connectError = line
            } else if line.hasPrefix("SMTP service not available") || line.hasPrefix("EHLO rejected")
                        || line.contains("while reading server greeting") {
                probe.smtpError = line
            } else if let capability = line.dropPrefix("< 250-") ?? line.dropPrefix("< 250 "),
                      capability.split(separator: " ").first?.uppercased() == "STARTTLS", probe.trust == nil {
                probe.startTLSOffered = true
            } else if line.hasPrefix("STARTTLS rejected") {
                probe.startTLSError = line
            } else if let range = line.range(of: " TLS connection established to "),
                      let trust = Trust(rawValue: String(line[..<range.lowerBound])) {
                probe.trust = trust
                // "...:PORT: TLSv1.3 with cipher NAME (256/256 bits) ..."
                let details = line[range.upperBound...]
                if let colon = details.range(of: ": ", options: .backwards) {
                    let words = details[colon.upperBound...].split(separator: " ")
                    probe.protocolVersion = words.first.map(String.init)
                    if let at = words.firstIndex(of: "cipher"), at + 1 < words.count { probe.cipher = String(words[at + 1]) }
                }
            } else if line.hasPrefix("server certificate verification failed for ") {
                if let colon = line.range(of: ": ", options: .backwards) {
                    var reason = String(line[colon.upperBound...])
                    // "num=62:hostname mismatch" -> "hostname mismatch"
                    if reason.hasPrefix("num="), let c = reason.firstIndex(of: ":") { reason = String(reason[reason.index(after: c)...]) }
                    probe.verificationFailures.append(reason)
                }
            }
        }
        probe.tail = Array(lines.filter { $0.hasPrefix("posttls-finger: ") }.suffix(3))
        return probe
    }
}

/// The facts `openssl x509` gives about a certificate.
public struct CertificateFacts: Sendable, Equatable, Codable {
    public var commonName: String?
    /// subjectAltName DNS names and IP addresses.
    public var altNames: [String]
    public var notAfter: Date?
    public var issuer: String?

    public init(commonName: String?, altNames: [String], notAfter: Date?, issuer: String? = nil) {
        self.commonName = commonName
        self.altNames = altNames
        self.notAfter = notAfter
        self.issuer = issuer
    }

    /// Every name, CN first: what a reader wants to see.
    public var names: [String] {
        var all: [String] = []
        for name in [commonName].compactMap({ $0 }) + altNames where !all.contains(name) { all.append(name) }
        return all
    }

    /// Whole days until notAfter (negative: expired that many days ago).
    public func daysToExpiry(now: Date) -> Int? {
        notAfter.map { Int(($0.timeIntervalSince(now) / 86_400).rounded(.towardZero)) }
    }

    /// Reads `openssl x509 -noout -subject -issuer -enddate -ext subjectAltName -nameopt RFC2253`.
    public static func parse(x509Text text: String) -> CertificateFacts {
        var facts = CertificateFacts(commonName: nil, altNames: [], notAfter: nil)
        var inAltNames = false
        for raw in text.split(whereSeparator: \.isNewline) {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if let subject = line.dropPrefix("subject=") {
                facts.commonName = Self.commonName(ofRFC2253: subject)
                inAltNames = false
            } else if let issuer = line.dropPrefix("issuer=") {
                facts.issuer = issuer
                inAltNames = false
            } else if let date = line.dropPrefix("notAfter=") {
                facts.notAfter = Self.date(openSSL: date)
                inAltNames = false
            } else if line.hasPrefix("X509v3 Subject Alternative Name") {
                inAltNames = true
            } else if inAltNames {
                for item in line.split(separator: ",") {
                    let entry = item.trimmingCharacters(in: .whitespaces)
                    if let name = entry.dropPrefix("DNS:") { facts.altNames.append(name) }
                    if let address = entry.dropPrefix("IP Address:") { facts.altNames.append(address) }
                }
                inAltNames = false
            }
        }
        return facts
    }

    /// The CN of an RFC 2253 name (`CN=mx.fabrikam.test,O=Fabrikam`), the most specific
    /// (first) one when there are several, as Postfix takes it.
    static func commonName(ofRFC2253 name: String) -> String? {
        var parts: [String] = []
        var current = ""
        var escaped = false
        for ch in name {
            if escaped { current.append(ch); escaped = false; continue }
            if ch == "\\" { escaped = true; continue }
            if ch == "," { parts.append(current); current = ""; continue }
            current.append(ch)
        }
        parts.append(current)
        return parts.lazy.map { $0.trimmingCharacters(in: .whitespaces) }.first { $0.uppercased().hasPrefix("CN=") }
            .map { String($0.dropFirst(3)) }
    }

    /// `Dec  1 20:30:37 2026 GMT`, as openssl prints dates.
    static func date(openSSL text: String) -> Date? {
        let words = text.split(separator: " ").map(String.init)
        guard words.count >= 4 else { return nil }
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "MMM d HH:mm:ss yyyy"
        return formatter.date(from: words[0...3].joined(separator: " "))
    }
}

/// One RCPT TO of `validationRecipients`, as the host answered it.
public struct RecipientCheck: Sendable, Equatable, Codable {
    public var recipient: String
    public var reply: String
    public var accepted: Bool { reply.hasPrefix("2") }

    public init(recipient: String, reply: String) {
        self.recipient = recipient
        self.reply = reply
    }
}

/// One next hop of one connector: what was seen and what Postfix will do.
public struct HostReport: Sendable, Equatable, Codable {
    /// The next hop as Postfix names it: `[192.0.2.25]:2525`, or a recipient domain (MX).
    public var nextHop: String
    /// `name[address]:port` connected to.
    public var host: String?
    public var requirement: TLSRequirement
    public var reachable: Bool
    public var startTLSOffered: Bool
    public var protocolVersion: String?
    public var cipher: String?
    /// posttls-finger's word for the session: Verified, Trusted, Untrusted, Anonymous.
    public var trust: String?
    public var certificateNames: [String]
    /// The chain ends at a CA of the CA file (nil: no certificate, or not checked).
    public var trustedChain: Bool?
    public var chainProblem: String?
    /// A certificate name matches what the level demands (nil: the level demands none).
    public var nameMatch: Bool?
    public var expectedNames: [String]
    public var daysToExpiry: Int?
    public var recipients: [RecipientCheck]
    public var delivers: Bool
    /// Why not, in Postfix's words where it has them.
    public var reason: String?
    public var warnings: [String]
}

/// One connector: its next hops and the overall verdict.
public struct ConnectorValidation: Sendable, Equatable, Codable {
    public var connector: String
    public var hosts: [HostReport]
    /// Something that kept a host from being checked (no next hop to try, ...).
    public var problems: [String]

    public init(connector: String, hosts: [HostReport], problems: [String] = []) {
        self.connector = connector
        self.hosts = hosts
        self.problems = problems
    }

    /// Postfix tries a connector's hosts in order and delivers through the first that
    /// meets the TLS demand: one is enough.
    public var delivers: Bool { problems.isEmpty && hosts.contains { $0.delivers } }
}

public enum Validation {
    /// Days before expiry under which a certificate is worth a warning.
    public static let expiryWarningDays = 30

    /// The requirement smtp(8) applies at `nextHop`: the socketmap's answer (the same
    /// OutboundMaps the daemon serves, so a smart host shared by two connectors gets the one
    /// answer Postfix gets), else the site's level.
    public static func requirement(maps: OutboundMaps, nextHop: String, siteLevel: String?) -> TLSRequirement {
        if let value = maps.tlsPolicy(for: nextHop) {
            return TLSRequirement(policyValue: value, source: "tls-policy answer for \(nextHop): \(value)")
        }
        let level = siteLevel.flatMap { $0.isEmpty ? nil : $0 } ?? "none"
        return TLSRequirement(level: level, source: "no tls-policy answer: smtp_tls_security_level = \(level)")
    }

    /// Judges one session the way smtp(8) will.
    public static func judge(nextHop: String, probe: TLSProbe, requirement: TLSRequirement,
                             certificate: CertificateFacts?, chainProblem: String?, trustedChain: Bool?,
                             recipients: [RecipientCheck], now: Date = Date()) -> HostReport {
        let expected = expectedNames(requirement: requirement, probe: probe, nextHop: nextHop)
        var report = HostReport(
            nextHop: nextHop, host: probe.connectedTo, requirement: requirement, reachable: probe.reachable,
            startTLSOffered: probe.startTLSOffered, protocolVersion: probe.protocolVersion, cipher: probe.cipher,
            trust: probe.trust?.rawValue, certificateNames: certificate?.names ?? [],
            trustedChain: trustedChain, chainProblem: chainProblem,
            nameMatch: requirement.requiresVerification ? certificate.map { Self.matches($0.names, expected) } : nil,
            expectedNames: requirement.requiresVerification ? expected : [],
            daysToExpiry: certificate?.daysToExpiry(now: now), recipients: recipients,
            delivers: false, reason: nil, warnings: [])

        if let days = report.daysToExpiry {
            if days < 0 {
                report.warnings.append("the certificate expired \(-days) day\(-days == 1 ? "" : "s") ago")
            } else if days < expiryWarningDays {
                report.warnings.append("the certificate expires in \(days) day\(days == 1 ? "" : "s")")
            }
        }
        report.reason = refusal(probe: probe, requirement: requirement)
        if report.reason == nil, let refused = recipients.first(where: { !$0.accepted }) {
            report.reason = "the host refuses RCPT TO:<\(refused.recipient)>: \(refused.reply)"
        }
        report.delivers = report.reason == nil
        if report.delivers && !requirement.requiresTLS && !probe.tlsEstablished {
            report.warnings.append("mail goes in clear: the connector demands no TLS and "
                                   + (probe.startTLSOffered ? "the handshake failed" : "the host offers no STARTTLS"))
        }
        return report
    }

    /// Why smtp(8) will not deliver, or nil.
    static func refusal(probe: TLSProbe, requirement: TLSRequirement) -> String? {
        guard probe.reachable else {
            return "cannot connect: " + (probe.connectError ?? probe.tail.last ?? "no answer")
        }
        if let error = probe.smtpError { return "the host refuses the session: \(error)" }
        guard requirement.requiresTLS else { return nil }
        guard probe.startTLSOffered else { return "TLS is required, but was not offered by host \(probe.connectedTo ?? "")" }
        if let error = probe.startTLSError { return "TLS is required, but \(error)" }
        guard let trust = probe.trust else {
            return "TLS is required, but the handshake failed" + (probe.tail.last.map { ": " + $0 } ?? "")
        }
        if requirement.requiresVerification && trust != .verified {
            let why = probe.verificationFailures.isEmpty ? "" : " (" + probe.verificationFailures.joined(separator: ", ") + ")"
            return "Server certificate not verified\(why): \(requirement.level) needs a trusted chain and a name matching "
                + expectedNamesText(requirement: requirement, probe: probe)
        }
        return nil
    }

    /// What the level matches the certificate against (Postfix's defaults when no match=):
    /// verify: the host name connected to; secure: the next-hop domain and its subdomains.
    static func expectedNames(requirement: TLSRequirement, probe: TLSProbe, nextHop: String) -> [String] {
        if !requirement.match.isEmpty { return requirement.match }
        switch requirement.level {
        case "verify": return [probe.hostName ?? hostOfNextHop(nextHop)]
        case "secure":
            let domain = hostOfNextHop(nextHop)
            return [domain, "." + domain]
        default: return []
        }
    }

    private static func expectedNamesText(requirement: TLSRequirement, probe: TLSProbe) -> String {
        if !requirement.match.isEmpty { return requirement.match.joined(separator: " or ") }
        return requirement.level == "verify" ? "the host name \(probe.hostName ?? "")" : "the next-hop domain"
    }

    /// `[192.0.2.25]:2525` -> `192.0.2.25`; `fabrikam.com` -> itself.
    public static func hostOfNextHop(_ nextHop: String) -> String {
        if nextHop.hasPrefix("["), let close = nextHop.firstIndex(of: "]") {
            return String(nextHop[nextHop.index(after: nextHop.startIndex)..<close])
        }
        if let colon = nextHop.lastIndex(of: ":"), nextHop.filter({ $0 == ":" }).count == 1 {
            return String(nextHop[..<colon])
        }
        return nextHop
    }

    /// Postfix's match semantics: `x` is the name x (a certificate's `*.y` covers one label
    /// below y); `.x` is any name below x.
    public static func matches(_ certificateNames: [String], _ patterns: [String]) -> Bool {
        let names = certificateNames.map(DomainName.lowercasedASCII)
        return patterns.map(DomainName.lowercasedASCII).contains { pattern in
            names.contains { name in
                if pattern.hasPrefix(".") {
                    let base = String(pattern.dropFirst())
                    return name.hasSuffix("." + base) && !name.hasPrefix("*")
                }
                if name.hasPrefix("*.") {
                    let base = name.dropFirst(2)
                    guard let dot = pattern.firstIndex(of: ".") else { return false }
                    return pattern[pattern.index(after: dot)...] == base
                }
                return name == pattern
            }
        }
    }
}

extension String {
    func dropPrefix(_ prefix: String) -> String? {
        hasPrefix(prefix) ? String(dropFirst(prefix.count)) : nil
    }
}
