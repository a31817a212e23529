// A client-side SMTP conversation, as swaks prints it, with helpers to find the server's
// reply to a given command. The raw client (RawSMTPClient) writes the same format.
//
// swaks prefixes: " -> " client, "<-  " server, "<** " server error reply, and with TLS
// " ~> ", "<~  ", "<~* "; "=== " and "*** " are swaks' own remarks.

import Foundation

/// One (possibly multi-line) SMTP reply.
struct SMTPReply: Sendable, CustomStringConvertible, Equatable {
    /// 250, 450, 550, ...
    let code: Int
    /// The text of every line after the code and separator, e.g. ["5.7.1 Command rejected"].
    let lines: [String]

    /// "5.7.64" when the first line starts with an enhanced status code.
    var enhancedCode: String? {
        guard let first = lines.first?.split(separator: " ").first else { return nil }
        let parts = first.split(separator: ".")
        return parts.count == 3 && parts.allSatisfy({ Int($0) != nil }) ? String(first) : nil
    }
    /// The whole reply as one string: "550 5.7.64 Relay access denied".
    var text: String { "\(code) " + lines.joined(separator: " ") }
    var description: String { text }
    var isPositive: Bool { code < 400 }
    var isTemporaryFailure: Bool { (400..<500).contains(code) }
    var isPermanentFailure: Bool { code >= 500 }

    /// Parses "250-x" / "250 x" lines (already stripped of any transcript prefix).
    static func parse(_ lines: [String]) -> SMTPReply? {
        guard let first = lines.first, first.count >= 3, let code = Int(first.prefix(3)) else { return nil }
        return SMTPReply(code: code, lines: lines.map { String($0.dropFirst(4)) })
    }
}

struct SMTPExchange: Sendable {
    /// The command line as sent ("RCPT TO:<a@b>"), or "<connect>" for the banner,
    /// "<data>" for the message content.
    let command: String
    let reply: SMTPReply?
    /// Whether the command was sent inside TLS.
    let tls: Bool

    var verb: String {
        let word = command.split(separator: " ", maxSplits: 1).first.map(String.init) ?? command
        return word.split(separator: ":").first.map { $0.uppercased() } ?? word.uppercased()
    }
}

struct SMTPTranscript: Sendable, CustomStringConvertible {
    /// The client's exit status (swaks: 0 = delivered, 23 MAIL refused, 24 every RCPT refused,
    /// 25 DATA refused, 29 ... see `man swaks`); the raw client uses 0 / 1.
    let exitCode: Int32
    /// The full transcript text.
    let text: String

    var description: String { text }

    /// Command/reply pairs, in order.
    var exchanges: [SMTPExchange] { Self.parse(text) }

    /// Replies to every command with this verb ("RCPT", "MAIL", "EHLO", "XCLIENT", "STARTTLS",
    /// "DATA" for the 354, "<data>" for the reply after the final dot).
    func replies(to verb: String) -> [SMTPReply] {
        let wanted = verb.uppercased()
        return exchanges.filter { $0.verb == wanted }.compactMap(\.reply)
    }

    /// The server's reply to each RCPT TO, in order.
    var rcptReplies: [SMTPReply] { replies(to: "RCPT") }
    /// The server's reply to MAIL FROM.
    var mailReply: SMTPReply? { replies(to: "MAIL").last }
    /// The reply after the message content ("250 2.0.0 Ok: queued as ABC").
    var dataReply: SMTPReply? { replies(to: "<DATA>").last }
    /// The reply to RCPT TO:<address> (case-insensitive).
    func rcptReply(for address: String) -> SMTPReply? {
        let needle = "<\(address.lowercased())>"
        return exchanges.last { $0.verb == "RCPT" && $0.command.lowercased().contains(needle) }?.reply
    }
    /// The Postfix queue id from "250 2.0.0 Ok: queued as 13774F78222".
    var queueID: String? {
        guard let reply = dataReply, reply.code == 250,
              let range = reply.text.range(of: "queued as ") else { return nil }
        return reply.text[range.upperBound...].split(separator: " ").first.map(String.init)
    }
    /// True when the message was accepted for delivery.
    var queued: Bool { queueID != nil }

    static func parse(_ text: String) -> [SMTPExchange] {
        var exchanges: [SMTPExchange] = []
        var pendingCommand: (String, Bool)? = ("<connect>", false)
        var replyLines: [String] = []
        var inData = false
        // swaks echoes message lines with their CR: "\r\n" is one Character in Swift, so
        // normalise before splitting on "\n".
        let normalized = text.replacingOccurrences(of: "\r\n", with: "\n")
        for rawLine in normalized.split(separator: "\n", omittingEmptySubsequences: false) {
            let line = String(rawLine)
            if let client = strip(line, prefixes: [" -> ", " ~> "]) {
                let tls = line.hasPrefix(" ~> ")
                if inData {
                    if client == "." {
                        inData = false
                        pendingCommand = ("<data>", tls)
                    }
                    continue
                }
                pendingCommand = (client, tls)
                replyLines = []
            } else if let server = strip(line, prefixes: ["<-  ", "<~  ", "<** ", "<~* "]) {
                replyLines.append(server)
                let isLast = server.count < 4 || server[server.index(server.startIndex, offsetBy: 3)] != "-"
                if isLast, let (command, tls) = pendingCommand {
                    let reply = SMTPReply.parse(replyLines)
                    exchanges.append(SMTPExchange(command: command, reply: reply, tls: tls))
                    if command.uppercased() == "DATA", reply?.code == 354 { inData = true }
                    if command.uppercased() == "BDAT" { inData = false }
                    pendingCommand = nil
                    replyLines = []
                }
            }
        }
        return exchanges
    }

    private static func strip(_ line: String, prefixes: [String]) -> String? {
        for prefix in prefixes where line.hasPrefix(prefix) { return String(line.dropFirst(prefix.count)) }
        return nil
    }
}
