import ConnectorPolicy

// Postfix's SMTP access policy delegation (SMTPD_POLICY_README), without the sockets: the
// relay decision for `check_policy_service` in smtpd_relay_restrictions (`run --policy-socket`).
//
// Protocol: a request is `name=value` lines ended by an empty line; the reply is
// `action=VALUE` and an empty line. Postfix keeps the connection for further requests.
// We answer OK when the connectors make the client one of the organization's for this
// recipient (PolicySet.relayPermission, the judgment's own attribution), DUNNO otherwise, so
// that the restrictions after us (reject_unauth_destination) refuse strangers. Refusals, TLS
// demands, headers and the verdict line stay the milter's: this only opens the MTA's relay
// control for the organization's own servers.
//
// What Postfix 3.7 sends (smtpd_check.c, and observed in the lab): `client_address` plain
// (no `IPv6:`), `sender` and `recipient` without angle brackets (an empty sender for `<>`),
// `encryption_protocol` empty without TLS, `sasl_username` empty without AUTH, and
// `ccert_subject` the certificate's CN only when the client certificate was verified
// against smtpd_tls_CAfile (empty for an untrusted one).
public enum PolicyDelegation {
    /// A request is a few hundred bytes; Postfix's own limit on one attribute is about 4 KiB.
    public static let maximumRequestLength = 16 * 1024

    public enum Parsed: Equatable {
        /// A whole request (its attributes, last value wins) and how many bytes it took.
        case complete([String: String], consumed: Int)
        case incomplete
        /// Not a policy request, or too long: close the connection (Postfix retries, then
        /// applies smtpd_policy_service_default_action).
        case malformed(String)
    }

    /// Parses the request at the start of `buffer`.
    public static func parse(_ buffer: ArraySlice<UInt8>, limit: Int = maximumRequestLength) -> Parsed {
        var attributes: [String: String] = [:]
        var lineStart = buffer.startIndex
        var index = buffer.startIndex
        while index < buffer.endIndex {
            if index - buffer.startIndex >= limit { return .malformed("request longer than \(limit) bytes") }
            guard buffer[index] == UInt8(ascii: "\n") else {
                index += 1
                continue
            }
            var line = buffer[lineStart..<index]
            if line.last == UInt8(ascii: "\r") { line = line.dropLast() }
            index += 1
            lineStart = index
            if line.isEmpty {
                guard !attributes.isEmpty else { return .malformed("empty request") }
                return .complete(attributes, consumed: index - buffer.startIndex)
            }
            guard let equals = line.firstIndex(of: UInt8(ascii: "=")), equals > line.startIndex else {
                return .malformed("expected name=value lines")
            }
            attributes[String(decoding: line[..<equals], as: UTF8.self)] =
                String(decoding: line[(equals + 1)...], as: UTF8.self)
        }
        if buffer.count >= limit { return .malformed("request longer than \(limit) bytes") }
        return .incomplete
    }

    /// The action for one request: `OK` (the connectors let this client relay to this
    /// recipient) or `DUNNO` (not ours to allow: the next restriction decides).
    public static func action(for attributes: [String: String], policy: PolicySet) -> String {
        guard attributes["request"] == "smtpd_access_policy",
              let recipient = attributes["recipient"], !recipient.isEmpty else { return "DUNNO" }
        func value(_ name: String) -> String? {
            guard let value = attributes[name], !value.isEmpty else { return nil }
            return value
        }
        var address = value("client_address")
        if let text = address, text.lowercased().hasPrefix("ipv6:") { address = String(text.dropFirst(5)) }
        let session = SessionFacts(clientAddress: address.flatMap { IPAddress($0) },
                                   clientName: value("client_name") ?? "unknown",
                                   helo: value("helo_name"),
                                   tlsVersion: value("encryption_protocol"),
                                   verifiedCertificateName: value("ccert_subject"),
                                   authenticatedUser: value("sasl_username"))
        let permission = policy.relayPermission(session: session, from: EmailAddress(parsing: attributes["sender"] ?? ""),
                                                recipient: EmailAddress(parsing: recipient))
        return permission == nil ? "DUNNO" : "OK"
    }

    /// The reply to one request payload.
    public static func reply(to attributes: [String: String], policy: PolicySet) -> [UInt8] {
        Array("action=\(action(for: attributes, policy: policy))\n\n".utf8)
    }
}
