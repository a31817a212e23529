// The policy file's reference, made from the key table: the Markdown blocks between marker
// comments in docs/policy-file.md (and README.md), and the connectors.yaml(5) manual page.
// `connector-milter policy-reference` prints them; PolicyReferenceTests fails when a committed
// copy differs, and rewrites the copies with UPDATE_POLICY_REFERENCE=1.

import Foundation

package enum PolicyReference {
    /// The Markdown blocks a document may carry between `<!-- NAME:begin -->` and `<!-- NAME:end -->`.
    package static var markdownBlocks: [(name: String, text: String)] {
        [("policy-keys", markdownKeyTable), ("policy-rules", markdownRules), ("policy-example", markdownExample)]
    }

    // MARK: Prose that is not in the table

    /// The rules between keys, and the reader's general choices, one sentence each.
    package static let rules: [String] = [
        "A key that does not fit a connector's direction and type is an error, not ignored.",
        "An inbound onPremises connector needs `senderIPAddresses` or `tlsSenderCertificateName`; without either it can never match.",
        "An inbound partner connector needs `senderDomains`.",
        "`restrictDomainsToIPAddresses: true` needs `senderIPAddresses`, and `restrictDomainsToCertificate: true` needs `tlsSenderCertificateName`: the addresses or the certificate name to restrict to.",
        "Enhanced filtering takes exactly one of `efSkipIPs` (not empty) and `efSkipLastIP: true`; `efUsers` and `efTestMode` need one of them, and a connector with enhanced filtering needs `senderIPAddresses`, the addresses of the service in front.",
        "Every `associatedAcceptedDomains` entry must be one of the accepted domains, or under one of them.",
        "An outbound partner connector needs `recipientDomains`; an outbound onPremises connector needs `recipientDomains` or `allAcceptedDomains: true`.",
        "An outbound onPremises connector needs `smartHosts`: mail for the organization's own servers goes to them, not to MX.",
        "`useMXRecord: true` together with `smartHosts` is an error, and so is `useMXRecord: false` without them.",
        "`tlsDomain` is allowed only with `tlsSettings: domainValidation`, and `domainValidation` needs `tlsDomain`.",
        "Connector names must differ even when compared without regard to case.",
        "Booleans are YAML 1.2's `true` and `false` only: `yes`, `on` and `\"true\"` are errors, because silently misreading a security setting is worse than refusing to start.",
        "YAML anchors and aliases are refused: a policy never needs them, and they let a small file expand without bound. An unquoted `*.contoso.net` is read as an alias: put it in quotes.",
        "A missing or empty `connectors:` means no connectors; an empty `settings:` means the defaults.",
        "A smart host is reached through its address records, never through MX: `mx1.fabrikam.com` and `[mx1.fabrikam.com]` are the same smart host. An IPv6 address must be written in brackets.",
        "The file is UTF-8, at most 64 MiB.",
    ]

    /// A small policy that uses most keys; PolicyReferenceTests checks that it is valid.
    package static let example = """
        organization:
          acceptedDomains: [contoso.com, "*.contoso.net"]
        settings:
          mode: enforce
          tlsFailure: temporary
          rejectDirectSend: true
        connectors:
          - name: Exchange on premises
            direction: inbound
            type: onPremises
            senderIPAddresses: [192.0.2.0/24, "2001:db8:25::/48"]
            tlsSenderCertificateName: mail.contoso.com
          - name: Fabrikam
            direction: inbound
            type: partner
            comment: the partner's relays, with TLS
            senderDomains: [fabrikam.com]
            senderIPAddresses: [198.51.100.0/28]
            restrictDomainsToIPAddresses: true
            requireTls: true
          - name: Fabrikam outbound
            direction: outbound
            type: partner
            recipientDomains: [fabrikam.com]
            smartHosts: [mx1.fabrikam.com, "[203.0.113.25]:2525"]
            tlsSettings: domainValidation
            tlsDomain: mx1.fabrikam.com
          - name: To on premises
            direction: outbound
            type: onPremises
            allAcceptedDomains: true
            smartHosts: [exchange.contoso.com]

        """

    // MARK: Markdown

    package static var markdownKeyTable: String {
        var lines = ["| key | where | type | default | meaning |", "|---|---|---|---|---|"]
        for key in PolicyKeys.all {
            let cells = ["`\(key.name)`", place(key.place), key.type, key.defaultValue, key.meaning]
            lines.append("| " + cells.map { $0.replacingAll("|", with: "\\|") }.joined(separator: " | ") + " |")
        }
        return lines.joined(separator: "\n") + "\n"
    }

    static var markdownRules: String {
        rules.map { "- \($0)\n" }.joined()
    }

    static var markdownExample: String {
        "```yaml\n" + example + "```\n"
    }

    /// `text` with each marked block replaced by what the table makes of it; blocks it does not
    /// carry are left out. Returns the new text and the names of the blocks found.
    package static func updatingMarkedBlocks(in text: String) -> (text: String, found: [String]) {
        var result = text
        var found: [String] = []
        for (name, block) in markdownBlocks {
            let begin = "<!-- \(name):begin -->\n", end = "<!-- \(name):end -->"
            guard let start = result.range(of: begin), let stop = result.range(of: end, range: start.upperBound..<result.endIndex) else {
                continue
            }
            result.replaceSubrange(start.upperBound..<stop.lowerBound, with: block)
            found.append(name)
        }
        return (result, found)
    }

    private static func place(_ place: KeyPlace) -> String {
        switch place {
        case .topLevel: return "top level"
        case .organization: return "`organization`"
        case .settings: return "`settings`"
        case .connector(let scope): return scope.phrase
        }
    }

    // MARK: Manual page

    /// connectors.yaml(5). The date changes only when the page's content does.
    package static func manPage(date: String = "2026-12-02") -> String {
        var page: [String] = [
            #".\" Generated from the policy key table (Sources/ConnectorPolicy/PolicyKeys.swift): do not edit."#,
            #".\" connector-milter policy-reference --format man > packaging/connectors.yaml.5"#,
            ".TH CONNECTORS.YAML 5 \"\(date)\" \"connector-milter\" \"File Formats\"",
            ".SH NAME",
            #"connectors.yaml \- the connector-milter policy file"#,
            ".SH SYNOPSIS",
            ".B /etc/connector-milter/connectors.yaml",
            ".SH DESCRIPTION",
            roff("The policy file describes the organization's accepted domains, a few settings for the whole policy, "
                + "and the connectors: the servers mail arrives from (inbound) and is delivered to (outbound), each "
                + "either the organization's own (`onPremises`) or another organization's (`partner`). Keys are "
                + "Exchange Online's connector parameter names in lowerCamelCase."),
            ".PP",
            roff("The file is YAML: one mapping with the keys `organization`, `settings` and `connectors`. "
                + "`connector-milter check` reports every problem in it as FILE:LINE:COLUMN with the reason; the "
                + "daemon refuses to start with such a file, and keeps the policy it has when a reload finds one."),
        ]
        let sections: [(String, (PolicyKey) -> Bool)] = [
            ("TOP LEVEL", { $0.place == .topLevel }),
            ("ORGANIZATION", { $0.place == .organization }),
            ("SETTINGS", { $0.place == .settings }),
            ("CONNECTORS", { $0.scope != nil }),
        ]
        for (title, belongs) in sections {
            page.append(".SH \(title)")
            for key in PolicyKeys.all where belongs(key) {
                page.append(".TP")
                page.append(".B \(roff(key.name))")
                var detail = roff(key.meaning.prefix(1).uppercased() + key.meaning.dropFirst()) + "."
                detail += "\n.br\n" + roff("Type: \(key.type). Default: \(key.defaultValue).")
                if let scope = key.scope, scope != .every { detail += " " + roff("For \(scope.phrase) only.") }
                page.append(detail)
            }
        }
        page.append(".SH RULES")
        for rule in rules {
            page.append(#".IP \(bu 2"#)
            page.append(roff(rule))
        }
        page.append(".SH EXAMPLE")
        page.append(".nf")
        page.append(".ft CR")
        page.append(contentsOf: example.split(separator: "\n", omittingEmptySubsequences: false).dropLast().map { literal(String($0)) })
        page.append(".ft R")
        page.append(".fi")
        page.append(".SH FILES")
        page.append(".TP")
        page.append(".I /etc/connector-milter/connectors.yaml")
        page.append("The default policy file.")
        page.append(".SH SEE ALSO")
        page.append(#".BR connector-milter (8)"#)
        return page.joined(separator: "\n") + "\n"
    }

    /// Running text: backslashes escaped, `code` in bold, no line that roff would take for a request.
    static func roff(_ text: String) -> String {
        var out = ""
        var bold = false
        for c in text {
            switch c {
            case "\\": out += "\\e"
            case "`": out += bold ? "\\fR" : "\\fB"; bold.toggle()
            case "-": out += "\\-"
            default: out.append(c)
            }
        }
        if out.hasPrefix(".") || out.hasPrefix("'") { out = "\\&" + out }
        return out
    }

    /// A line of the example, as written.
    static func literal(_ line: String) -> String {
        var out = line.replacingAll("\\", with: "\\e").replacingAll("-", with: "\\-")
        if out.hasPrefix(".") || out.hasPrefix("'") { out = "\\&" + out }
        return out
    }
}

extension String {
    fileprivate func replacingAll(_ target: Character, with replacement: String) -> String {
        var out = ""
        for c in self { if c == target { out += replacement } else { out.append(c) } }
        return out
    }
}
