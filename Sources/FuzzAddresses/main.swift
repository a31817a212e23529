// libFuzzer target: what turns a session's macros into facts, and the facts into a verdict
// line: EmailAddress(parsing:), IPAddress, IPPrefix, domain names, Sendmail's xtext and the TLS
// macros (SessionMacros.swift in the policy core),
// then VerdictLine.format. Properties: no crash; parsed addresses print and parse back the
// same; a decoded value is never longer than its xtext; whatever the client sent, the verdict
// line is exactly what the reader expects (no forged field, no raw control character).
//
// The input is split on 0xFF (never valid UTF-8) into: address, client name, TLS version,
// certificate name, {verify}, login.

import ConnectorPolicy
import ConnectorReview
import FuzzDriver
import Glibc

runFuzzer("FuzzAddresses", fuzzAddresses)


@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzAddresses(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = UnsafeBufferPointer(start: data, count: size)
    var parts = bytes.split(separator: 0xFF, omittingEmptySubsequences: false).map { String(decoding: $0, as: UTF8.self) }
    while parts.count < 6 { parts.append("") }
    let text = parts[0]

    if let address = IPAddress(text) {
        precondition(IPAddress(address.description) == address, "\(address) does not parse back")
    }
    if case .success(let prefix) = IPPrefix.parse(text) {
        precondition(IPPrefix.parse(prefix.description).map { $0 == prefix } == .success(true), "\(prefix) does not parse back")
    }
    if case .success(let name) = DomainName.validate(text) {
        precondition((try? DomainName.validate(name).get()) == name, "validate is not idempotent for \(name)")
    }
    _ = DomainPattern.parse(text)
    let decoded = SessionMacros.xtextDecoded(text)
    precondition(decoded.utf8.count <= text.utf8.count, "xtext decoding grew the value")

    let macros = ["{tls_version}": parts[2], "{cert_subject}": parts[3], "{verify}": parts[4], "{cn_subject}": parts[3]]
    let tls = SessionMacros.tls { name in
        if name == "{verify}" && parts[4].isEmpty { return nil }
        return macros[name]
    }
    let session = SessionFacts(clientAddress: IPAddress(parts[1]) ?? IPAddress("2001:db8::25"),
                               // The MTA's client name is a DNS name (at most 255 octets).
                               clientName: SessionMacros.clientName(String(parts[1].prefix(255))),
                               helo: parts[1], tlsVersion: tls?.version, verifiedCertificateName: tls?.certificateName,
                               authenticatedUser: parts[5].isEmpty ? nil : parts[5])
    let from = EmailAddress(parsing: text)
    let recipient = EmailAddress(parsing: "<" + parts[1] + "@contoso.com>")
    let decision = Fixture.policy.judge(session: session, from: from, recipient: recipient)
    let line = VerdictLine.format(queueID: nil, decision: decision, session: session, from: from, recipient: recipient)
    let problems = VerdictLineReader.conformanceProblems(line)
    precondition(problems.isEmpty, "forged or unreadable verdict line \(problems): \(line)")
    return 0
}

// In main.swift a global is set when the top-level code reaches it, and the entry above
// never returns: a static is set on first use.
private enum Fixture {
    static let policy: PolicySet = {
        let yaml = """
            organization:
              acceptedDomains: [contoso.com]
            connectors:
              - name: Contoso on-premises
                direction: inbound
                type: onPremises
                tlsSenderCertificateName: "*.contoso.com"
                senderIPAddresses: [192.0.2.0/24, "2001:db8:25::/48"]
              - name: Fabrikam "Bank"
                direction: inbound
                type: partner
                senderDomains: [fabrikam.com, "*"]
                senderIPAddresses: [203.0.113.0/24]
                restrictDomainsToIPAddresses: true
            """
        guard case .success(let policy) = PolicyParser.parse(yaml, file: "fuzz.yaml") else { fatalError("fuzz policy") }
        return PolicySet(policy)
    }()
}
