// `connector-milter validate`: before mail depends on a connector, prove it works: probe the
// outbound connectors' next hops as Postfix's SMTP client will, say which connector a client
// certificate identifies, and check the MTA's wiring. See docs/validate.md.

import ArgumentParser
import ConnectorDaemon
import ConnectorPolicy
import ConnectorReview
import Foundation

enum ValidateFormat: String, ExpressibleByArgument, CaseIterable, Sendable {
    case text, json
}

enum ValidateMTA: String, ExpressibleByArgument, CaseIterable, Sendable {
    case postfix, sendmail
}

struct Validate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Prove that connectors work: probe next hops, identify certificates, check the MTA's wiring.",
        discussion: """
            Outbound connectors: each smart host (or, for delivery by MX, each exact recipient \
            domain, and each --domain the connector takes) is probed with Postfix's posttls-finger \
            under the TLS demand the daemon's socketmap answers for it, with the CA file Postfix's \
            SMTP client uses (smtp_tls_CAfile, or --ca). With validationRecipients on the \
            connector, each is asked with RCPT TO after STARTTLS (then RSET; nothing is sent). \
            Without --certificate and --mta every enabled outbound connector is probed; with them, \
            only those named by --connector.

            --certificate FILE: the inbound connector this client certificate identifies, with \
            the name the MTA passes (its CN, once verified against smtpd_tls_CAfile or --ca).

            --mta postfix|sendmail: the MTA's configuration against the policy; each finding with \
            the line that fixes it.

            Exit 0 when everything holds, 1 when something would fail, 78 for an invalid policy, \
            64 for a bad option.
            """)

    @Option(help: ArgumentHelp("The policy file.", valueName: "file"))
    var config: String = defaultPolicyPath

    @Option(name: .customLong("connector"), help: ArgumentHelp("Only this connector (repeatable).", valueName: "name"))
    var connectors: [String] = []

    @Option(help: "Output: text or json.")
    var format: ValidateFormat = .text

    @Option(name: .customLong("domain"),
            help: ArgumentHelp("Also probe the MX hosts of this recipient domain (for wildcard recipientDomains; repeatable).",
                               valueName: "domain"))
    var domains: [String] = []

    @Option(help: ArgumentHelp("The CA file: for the outbound probes instead of smtp_tls_CAfile, for --certificate "
                               + "instead of smtpd_tls_CAfile.", valueName: "file"))
    var ca: String?

    @Option(help: ArgumentHelp("A client certificate (PEM): which inbound connector it identifies.", valueName: "file"))
    var certificate: String?

    @Option(help: "Check this MTA's wiring: postfix or sendmail.")
    var mta: ValidateMTA?

    @Option(name: .customLong("postfix-config"), help: ArgumentHelp("Postfix's configuration directory.", valueName: "dir"))
    var postfixConfig: String?

    @Option(name: .customLong("sendmail-cf"), help: ArgumentHelp("Sendmail's compiled configuration.", valueName: "file"))
    var sendmailCf: String = "/etc/mail/sendmail.cf"

    @Option(help: ArgumentHelp("The daemon's milter socket (as given to run --socket).", valueName: "spec"))
    var socket: String = "unix:/var/spool/postfix/connector-milter/milter.sock"

    @Option(name: .customLong("maps-socket"),
            help: ArgumentHelp("The daemon's socketmap (as given to run --maps-socket).", valueName: "spec"))
    var mapsSocket: String?

    @Option(help: ArgumentHelp("Seconds for each connection and SMTP command.", valueName: "seconds"))
    var timeout: Int = 10

    func validate() throws {
        guard timeout > 0, timeout <= 300 else { throw ValidationError("--timeout must be 1-300 seconds") }
        guard MilterEndpoint(libmilter: socket) != nil else { throw ValidationError("--socket: expected unix:/path or inet:PORT@HOST") }
        if let mapsSocket, MilterEndpoint(libmilter: mapsSocket) == nil {
            throw ValidationError("--maps-socket: expected unix:/path or inet:PORT@HOST")
        }
        for domain in domains {
            guard case .success = DomainName.validate(domain) else { throw ValidationError("--domain \(domain): not a domain name") }
        }
    }

    func run() throws {
        let policy: Policy
        switch PolicyParser.load(path: config) {
        case .failure(let problems):
            FileHandle.standardError.write(Data((problems.description + "\n").utf8))
            throw Sysexit.config.exitCode
        case .success(let loaded):
            policy = loaded
        }
        let set = PolicySet(policy)
        for name in connectors where !policy.connectors.contains(where: { $0.name == name }) {
            printError("connector-milter: no connector named \"\(name)\" in \(config)")
            throw Sysexit.usage.exitCode
        }

        let postfixDirectory = postfixConfig.map { absolutePath($0, relativeTo: currentDirectory()) }
        let postconf = Self.postconf(directory: postfixDirectory,
                                     ["smtp_tls_CAfile", "smtp_tls_CApath", "smtp_tls_security_level",
                                      "smtpd_tls_CAfile", "myhostname"])
        var report = ValidationReport()

        // Outbound connectors.
        let probeAll = connectors.isEmpty && certificate == nil && mta == nil
        let outbound = policy.connectors.filter { connector in
            connector.direction == .outbound && (probeAll ? connector.enabled : connectors.contains(connector.name))
        }
        if !outbound.isEmpty {
            var validator = OutboundValidator(caFile: ca ?? postconf["smtp_tls_CAfile"].flatMap(Self.nonEmpty),
                                              caPath: ca == nil ? postconf["smtp_tls_CApath"].flatMap(Self.nonEmpty) : nil,
                                              siteLevel: postconf["smtp_tls_security_level"],
                                              postfixConfig: postfixDirectory,
                                              ehloName: postconf["myhostname"].flatMap(Self.nonEmpty) ?? Self.hostName())
            validator.timeout = timeout
            for connector in outbound {
                if !connector.enabled {
                    report.connectors.append(ConnectorValidation(connector: connector.name, hosts: [],
                                                                 problems: ["the connector is disabled (enabled: false)"]))
                    continue
                }
                report.connectors.append(validator.validate(connector, in: set, domains: domains,
                                                            recipients: connector.validationRecipients))
            }
        }
        for name in connectors where certificate == nil {
            if let c = policy.connectors.first(where: { $0.name == name }), c.direction == .inbound {
                report.notes.append("connector \"\(name)\" is inbound: check it with --certificate FILE")
            }
        }

        // Inbound: a client certificate.
        if let certificate {
            let caFile = ca ?? postconf["smtpd_tls_CAfile"].flatMap(Self.nonEmpty)
            var identity = CertificateIdentity.check(file: certificate, caFile: caFile, policy: policy)
            let wanted = connectors.filter { name in policy.connectors.contains { $0.name == name && $0.direction == .inbound } }
            if !wanted.isEmpty, let found = identity.connector, !wanted.contains(found) {
                identity.problems.append("it identifies \"\(found)\", not " + wanted.map { "\"\($0)\"" }.joined(separator: " or "))
            }
            report.certificate = identity
        }

        // The MTA's wiring.
        if let mta {
            guard let milterSocket = MilterEndpoint(libmilter: socket) else { throw Sysexit.usage.exitCode }
            let maps = mapsSocket.flatMap { MilterEndpoint(libmilter: $0) }
            switch mta {
            case .postfix:
                do {
                    let configuration = try PostfixWiring.Configuration.read(directory: postfixDirectory ?? "/etc/postfix")
                    report.wiring = WiringReport(mta: "postfix", configuration: configuration.directory,
                                                 findings: PostfixWiring.check(configuration, set: set, milterSocket: milterSocket,
                                                                               mapsSocket: maps, policyPath: config))
                } catch {
                    printError("connector-milter: cannot read Postfix's configuration: \(error)")
                    throw Sysexit.unavailable.exitCode
                }
                if policy.connectors.contains(where: { $0.enabled && $0.direction == .inbound }) {
                    report.notes.append("relay control through Postfix (check_policy_service, relay_domains by socketmap) "
                                        + "is not checked by this version")
                }
            case .sendmail:
                guard let text = try? String(contentsOfFile: sendmailCf, encoding: .utf8) else {
                    printError("connector-milter: cannot read \(sendmailCf)")
                    throw ExitCode(66)  // EX_NOINPUT
                }
                report.wiring = WiringReport(mta: "sendmail", configuration: sendmailCf,
                                             findings: SendmailWiring.check(cf: text, cfPath: sendmailCf, set: set,
                                                                            milterSocket: milterSocket))
            }
        }

        switch format {
        case .text: print(report.text(), terminator: "")
        case .json: print(report.json())
        }
        if !report.holds { throw ExitCode(1) }
    }

    /// `postconf -x -h` values, by name (nil: postconf failed or the parameter is unknown).
    static func postconf(directory: String?, _ names: [String]) -> [String: String] {
        var arguments = ["postconf"]
        if let directory { arguments += ["-c", directory] }
        guard let result = try? Subprocess.run(arguments + ["-x"] + names, timeout: 30), result.status == 0 else { return [:] }
        var values: [String: String] = [:]
        for line in result.output.split(whereSeparator: \.isNewline) {
            guard let eq = line.range(of: " =") else { continue }
            values[String(line[..<eq.lowerBound])] = line[eq.upperBound...].trimmingCharacters(in: .whitespaces)
        }
        return values
    }

    static func nonEmpty(_ text: String) -> String? { text.isEmpty ? nil : text }

    static func hostName() -> String {
        var buffer = [CChar](repeating: 0, count: 256)
        gethostname(&buffer, buffer.count)
        let name = String(cString: buffer)
        return name.contains(".") ? name : "localhost.localdomain"
    }
}
