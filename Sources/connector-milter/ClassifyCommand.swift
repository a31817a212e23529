import ArgumentParser
import ConnectorDaemon
import ConnectorPolicy
import ConnectorReview
import Foundation

/// Judges one message as the daemon would and prints the verdict lines it would log.
struct Classify: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print the verdict lines the daemon would log for one message.",
        discussion: """
        Exit status: 0 when every recipient is accepted (monitor mode included), 1 when any is \
        refused, 78 when the policy file is invalid, 64 for bad arguments.
        """
    )

    @Option(help: "The policy file.")
    var config: String = defaultPolicyPath

    @Option(name: .customLong("client-ip"), help: "The SMTP client's address (IPv4 or IPv6).")
    var clientIP: String

    @Option(name: .customLong("client-name"), help: "The client's verified host name.")
    var clientName: String = "unknown"

    @Option(help: "The HELO/EHLO name.")
    var helo: String?

    @Option(name: .customLong("tls-version"), help: "The TLS protocol of the session, e.g. TLSv1.3 (omit for a session in clear).")
    var tlsVersion: String?

    @Option(name: .customLong("cert-subject"), help: "The CN of the client certificate.")
    var certSubject: String?

    @Flag(name: .customLong("cert-verified"), help: "The client certificate was verified by the MTA.")
    var certVerified = false

    @Option(help: "The SASL login name of an authenticated client.")
    var auth: String?

    @Option(help: "The MAIL FROM address (<> or an empty string for the null sender).")
    var from: String

    @Option(help: "A RCPT TO address; repeat for several recipients.")
    var rcpt: [String]

    @Option(help: ArgumentHelp("A Received header of the message, topmost (most recent) first; repeat for each. "
                               + "With or without the \"Received:\" name.", valueName: "header"))
    var received: [String] = []

    @Option(name: .customLong("received-file"),
            help: ArgumentHelp("A file of the message's headers (or the whole message): its Received headers are "
                               + "read in order, up to the first empty line.", valueName: "file"))
    var receivedFile: String?

    func validate() throws {
        if IPAddress(clientIP) == nil {
            throw ValidationError("--client-ip \"\(clientIP)\" is not an IPv4 or IPv6 address")
        }
        if rcpt.isEmpty { throw ValidationError("give at least one --rcpt") }
        if certSubject != nil && tlsVersion == nil {
            throw ValidationError("--cert-subject needs --tls-version: a client certificate exists only over TLS")
        }
        if certVerified && certSubject == nil {
            throw ValidationError("--cert-verified needs --cert-subject")
        }
        if receivedFile != nil && !received.isEmpty {
            throw ValidationError("give the Received headers with --received or --received-file, not both")
        }
    }

    /// The Received header values, as the milter would see them.
    func receivedHeaders() throws -> [String] {
        guard let receivedFile else {
            return received.map { ReceivedHeader.value(ofField: $0) ?? $0 }
        }
        guard let data = FileManager.default.contents(atPath: receivedFile) else {
            printError("--received-file \(receivedFile): cannot read it")
            throw Sysexit.noInput.exitCode
        }
        return ReceivedHeader.values(inHeaders: String(decoding: data, as: UTF8.self))
    }

    func run() throws {
        let policy: PolicySet
        do {
            policy = try PolicyStore.compile(path: config)
        } catch {
            printError(error.description)
            throw Sysexit.config.exitCode
        }
        let session = SessionFacts(
            clientAddress: IPAddress(clientIP), clientName: clientName, helo: helo, tlsVersion: tlsVersion,
            verifiedCertificateName: certVerified ? certSubject : nil, authenticatedUser: auth)
        let sender = EmailAddress(parsing: from)
        let headers = try receivedHeaders()
        var refused = false
        // As the daemon does: refusals at RCPT first, the rest at end of message, where a
        // refusal after DATA refuses the whole message (enhanced filtering).
        let service = policy.enhancedFilteringConnector(client: session.clientAddress)
        var pending: [PendingRecipient] = []
        for address in rcpt {
            let recipient = EmailAddress(parsing: address)
            let (decision, waits) = policy.judgeAtRecipient(session: session, from: sender, recipient: recipient, service: service)
            if !waits, decision.enforcedRefusal != nil {
                refused = true
                print(VerdictLine.format(queueID: nil, decision: decision, session: session, from: sender, recipient: recipient))
            } else {
                pending.append(PendingRecipient(decision: decision, recipient: recipient, waits: waits))
            }
        }
        let (final, messageRefusal) = policy.judgeAtEndOfMessage(session: session, from: sender, pending: pending,
                                                                 received: headers, service: service)
        if messageRefusal != nil { refused = true }
        for r in final {
            print(VerdictLine.format(queueID: nil, decision: r.decision, session: session, from: sender,
                                     recipient: r.recipient, originalClient: r.originalClient))
        }
        if refused { throw ExitCode(1) }
    }
}
