// swaks, driven against the lab's Postfix.
//
// swaks (20201014 on Debian 12) always sends a second EHLO after STARTTLS; for "MAIL
// right after STARTTLS" use RawSMTPClient.

import Foundation

struct SwaksOptions: Sendable {
    var from = "sender@fabrikam.com"
    /// One RCPT TO per entry, in order.
    var to = ["user@contoso.com"]
    var helo = "client.lab.test"
    /// STARTTLS (required: swaks fails if it is not offered).
    var tls = false
    /// Present this client certificate (implies `tls`).
    var clientCertificate: LabCertificate?
    /// XCLIENT attributes (Postfix's smtpd_authorized_xclient_hosts holds 127.0.0.0/8).
    /// An IPv6 address is sent as `IPv6:2001:db8::1`, as Postfix requires; give it bare.
    var xclientAddress: String?
    /// XCLIENT NAME: without it Postfix keeps the real client's name ("localhost").
    var xclientName: String?
    /// XCLIENT LOGIN=x: Postfix then hands the milter {auth_authen}=x.
    var xclientLogin: String?
    var xclientHelo: String?
    /// swaks does STARTTLS first, then XCLIENT (TLS state survives XCLIENT); this reverses it.
    var xclientBeforeStartTLS = false
    /// Extra header lines, "Name: value".
    var headers: [String] = []
    var body: String?
    /// Stop after this stage: "CONNECT", "FIRST-HELO", "XCLIENT", "TLS", "HELO", "MAIL", "RCPT", "DATA", "DOT".
    var quitAfter: String?
    /// Anything else for swaks, appended last.
    var extraArguments: [String] = []
    var timeout: TimeInterval = 60

    init(from: String = "sender@fabrikam.com", to: [String] = ["user@contoso.com"]) {
        self.from = from
        self.to = to
    }
}

enum Swaks {
    static func arguments(_ options: SwaksOptions, port: UInt16) throws -> [String] {
        var arguments = [try LabProcess.require("swaks", package: "swaks"),
                         "--server", "127.0.0.1", "--port", String(port),
                         "--from", options.from, "--to", options.to.joined(separator: ","),
                         "--helo", options.helo, "--timeout", "30"]
        if options.tls || options.clientCertificate != nil { arguments.append("--tls") }
        if let certificate = options.clientCertificate {
            arguments += ["--tls-cert", certificate.certificatePath, "--tls-key", certificate.keyPath]
        }
        if let address = options.xclientAddress {
            let value = address.contains(":") && !address.lowercased().hasPrefix("ipv6:") ? "IPv6:" + address : address
            arguments += ["--xclient-addr", value]
        }
        if let name = options.xclientName { arguments += ["--xclient-name", name] }
        if let login = options.xclientLogin { arguments += ["--xclient-login", login] }
        if let helo = options.xclientHelo { arguments += ["--xclient-helo", helo] }
        if options.xclientBeforeStartTLS { arguments.append("--xclient-before-starttls") }
        for header in options.headers { arguments += ["--add-header", header] }
        if let body = options.body { arguments += ["--body", body] }
        if let stage = options.quitAfter { arguments += ["--quit-after", stage] }
        return arguments + options.extraArguments
    }

    /// Runs swaks; a refusal is not an error (look at `exitCode` and the replies).
    static func run(_ options: SwaksOptions, port: UInt16) throws -> SMTPTranscript {
        let result = try LabProcess.run(try arguments(options, port: port), timeout: options.timeout)
        return SMTPTranscript(exitCode: result.status, text: result.output)
    }
}
