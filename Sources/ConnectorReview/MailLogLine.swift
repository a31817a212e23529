// Reads the MTA's own log lines, for `trace`: what Postfix and Sendmail wrote about a message's
// client, its TLS, its envelope and each delivery attempt. Only the lines a trace needs are
// read; every other line (another program's, or an MTA line of no interest) is `.other`.
//
// Postfix lines are recognized by their tag, `SYSLOG_NAME/PROGRAM[PID]` (postfix/smtpd,
// postfix-out/smtp, postfix/submission/smtpd): the program is the last part. Sendmail lines by
// the tags Debian and the lab give it: sendmail, sm-mta, sm-msp-queue, or any `sm-...`.
//
// A line that has the shape of a trace line but whose fields do not read is `.malformed`,
// counted by the caller and never fatal. Values are kept as the MTA wrote them; a local user
// can write any line under any tag, so a trace is as trustworthy as the log it reads.

import Foundation

/// `NAME[ADDRESS]` as Postfix writes a peer (Sendmail's `NAME [ADDRESS]` is read into the same).
public struct MailPeer: Sendable, Equatable, Codable, CustomStringConvertible {
    public var name: String
    public var address: String
    public var description: String { "\(name)[\(address)]" }

    public init(name: String, address: String) {
        self.name = name
        self.address = address
    }

    /// `name[address]`, `name [address]`, `[address]`, or `[address] [address]` (Sendmail, no name).
    init?(parsing text: Substring) {
        var t = text
        if let forged = t.range(of: " (may be forged)") { t = t[..<forged.lowerBound] }
        guard t.last == "]", let open = t.lastIndex(of: "[") else { return nil }
        address = String(t[t.index(after: open)..<t.index(before: t.endIndex)])
        var n = t[..<open]
        while n.last == " " { n = n.dropLast() }
        if n.first == "[", n.last == "]" { n = n.dropFirst().dropLast() }
        name = String(n)
        guard !address.isEmpty, !address.contains(" ") else { return nil }
    }
}

/// A TLS session as the MTA logged it.
public struct MailTLS: Sendable, Equatable, Codable {
    /// Postfix: Anonymous, Untrusted, Trusted or Verified. Sendmail: its verify= value (OK, NO, FAIL, NOT...).
    public var trust: String
    /// TLSv1.3, TLSv1.2 ...
    public var `protocol`: String
    public var cipher: String?
    /// The peer certificate's name, when the MTA logged one.
    public var certificate: String?

    public init(trust: String, protocol: String, cipher: String?, certificate: String? = nil) {
        self.trust = trust
        self.protocol = `protocol`
        self.cipher = cipher
        self.certificate = certificate
    }
}

public enum MailTransferAgent: String, Sendable, Codable {
    case postfix, sendmail
}

/// One MTA line a trace can use.
public struct MailLogLine: Sendable, Equatable {
    public enum Event: Sendable, Equatable {
        /// smtpd `connect from NAME[IP]`: a new session of this process.
        case connect(MailPeer)
        /// smtpd `disconnect from NAME[IP] ...`.
        case disconnect(MailPeer)
        /// TLS from a client (Postfix smtpd, Sendmail STARTTLS=server): belongs to the session of this process.
        case inboundTLS(MailTLS)
        /// TLS to a next hop (Postfix smtp `... established to HOST[IP]:PORT`, Sendmail STARTTLS=client).
        case outboundTLS(peer: String, MailTLS)
        /// `QUEUEID: client=NAME[IP]`: the message was opened in this smtpd session.
        case client(queueID: String, MailPeer)
        case messageID(queueID: String, String)
        /// qmgr's `from=<...>, size=..., nrcpt=...`, or Sendmail's `from=` with its `relay=` (the client).
        case envelope(queueID: String, from: String, size: Int?, recipients: Int?, client: MailPeer?, messageID: String?)
        case delivery(queueID: String, MailDelivery)
        /// A recipient, sender or message refused: by the MTA's own rules or by a milter.
        case refusal(queueID: String?, MailRefusal)
        /// A delivery status notification the MTA made about this message, under its own queue id.
        case notification(queueID: String, kind: String, newQueueID: String)
        case removed(queueID: String)
    }

    public var timestamp: Int64?
    public var host: String?
    public var mta: MailTransferAgent
    /// The process that wrote the line, e.g. `postfix/smtpd` or `sm-mta`.
    public var program: String
    public var pid: Int?
    public var event: Event
}

public struct MailDelivery: Sendable, Equatable, Codable {
    public var recipient: String
    public var relay: String
    public var status: String
    public var dsn: String?
    public var delay: String?
    /// The parenthesized explanation: the next hop's reply, or why it could not be reached.
    public var detail: String?
    public var tls: MailTLS?
    public var time: Int64?
}

public struct MailRefusal: Sendable, Equatable, Codable {
    /// RCPT, MAIL, END-OF-MESSAGE ... (Postfix), or the Sendmail ruleset.
    public var stage: String
    public var client: MailPeer?
    /// `550 5.7.64 Relay access denied`.
    public var reply: String
    public var from: String?
    public var recipient: String?
    public var helo: String?
    /// A milter's refusal (`milter-reject`, Sendmail `Milter:`), rather than the MTA's own rules.
    public var byMilter: Bool
    public var time: Int64?
}

public enum MailLogReader {
    public enum Line: Sendable, Equatable {
        case mta(MailLogLine)
        case other
        case malformed(String)
    }

    static let postfixPrograms: Set<Substring> = ["smtpd", "cleanup", "qmgr", "smtp", "lmtp", "local", "virtual",
                                                  "pipe", "bounce", "error", "discard", "postscreen", "pickup"]

    /// Reads one log line (no newline). `complete` is false for a line the splitter cut.
    public static func parse(bytes b: UnsafeBufferPointer<UInt8>, complete: Bool, clock: inout LogClock) -> Line {
        var end = b.count
        while end > 0, b[end - 1] == 0x0D || b[end - 1] == 0x20 { end -= 1 }
        var i = 0
        if end > 2, b[0] == UInt8(ascii: "<") {
            var j = 1
            while j < end, j <= 4, VerdictLineReader.isDigit(b[j]) { j += 1 }
            if j > 1, j < end, b[j] == UInt8(ascii: ">") { i = j + 1 }
        }
        let time: TimeSlice
        var timeEnd: Int
        if let t = TimeSlice.rfc3164(b, at: i, end: end) {
            time = t
            timeEnd = t.end
            // postlogd (maillog_file) and rsyslog may add a fraction to the classic timestamp.
            if timeEnd < end, b[timeEnd] == UInt8(ascii: ".") {
                timeEnd += 1
                while timeEnd < end, VerdictLineReader.isDigit(b[timeEnd]) { timeEnd += 1 }
            }
        } else if let t = TimeSlice.iso(b, at: i, end: end) {
            time = t
            timeEnd = t.end
        } else {
            return .other
        }
        guard timeEnd < end, b[timeEnd] == 0x20 else { return .other }
        // Only lines whose tag could be an MTA's become Strings.
        let rest = String(decoding: UnsafeBufferPointer(rebasing: b[(timeEnd + 1)..<end]), as: UTF8.self)
        var host: String? = nil
        var tagAndMessage = Substring(rest)
        guard let firstSpace = tagAndMessage.firstIndex(of: " ") else { return .other }
        if tagAndMessage[..<firstSpace].last != ":" {
            host = String(tagAndMessage[..<firstSpace])
            tagAndMessage = tagAndMessage[tagAndMessage.index(after: firstSpace)...]
        }
        guard let colon = tagAndMessage.range(of: ": ") else { return .other }
        var tag = tagAndMessage[..<colon.lowerBound]
        let message = tagAndMessage[colon.upperBound...]
        var pid: Int? = nil
        if tag.last == "]", let open = tag.lastIndex(of: "[") {
            pid = Int(tag[tag.index(after: open)..<tag.index(before: tag.endIndex)])
            tag = tag[..<open]
        }
        guard !tag.isEmpty, !tag.contains(" ") else { return .other }
        let mta: MailTransferAgent
        let program: Substring
        if let slash = tag.lastIndex(of: "/") {
            program = tag[tag.index(after: slash)...]
            guard postfixPrograms.contains(program) else { return .other }
            mta = .postfix
        } else if tag == "sendmail" || tag == "sm-mta" || tag.hasPrefix("sm-") {
            program = tag
            mta = .sendmail
        } else {
            return .other
        }
        if !complete { return .malformed("line longer than \(VerdictLineReader.maximumLineLength) bytes, cut") }
        let seconds = time.seconds(b, clock: &clock)
        let result = mta == .postfix ? parsePostfix(message, program: program) : parseSendmail(message)
        switch result {
        case .none: return .other
        case .failure(let why): return .malformed("\(tag): \(why)")
        case .event(var event):
            stamp(&event, seconds)
            return .mta(MailLogLine(timestamp: seconds, host: host, mta: mta, program: String(tag), pid: pid, event: event))
        }
    }

    /// Reads one line given as text (tests, and callers that already hold Strings).
    public static func parse(line: String, clock: inout LogClock) -> Line {
        var text = line
        return text.withUTF8 { parse(bytes: $0, complete: true, clock: &clock) }
    }

    private static func stamp(_ event: inout MailLogLine.Event, _ time: Int64?) {
        switch event {
        case .delivery(let q, var d): d.time = time; event = .delivery(queueID: q, d)
        case .refusal(let q, var r): r.time = time; event = .refusal(queueID: q, r)
        default: break
        }
    }

    enum Parsed {
        case none
        case event(MailLogLine.Event)
        case failure(String)
    }

    // MARK: - Postfix

    static func parsePostfix(_ message: Substring, program: Substring) -> Parsed {
        if program == "smtpd" || program == "postscreen" {
            if message.hasPrefix("connect from ") {
                guard let peer = MailPeer(parsing: message.dropFirst("connect from ".count)) else {
                    return .failure("connect from: expected NAME[ADDRESS]")
                }
                return .event(.connect(peer))
            }
            if message.hasPrefix("disconnect from ") {
                let rest = message.dropFirst("disconnect from ".count)
                let peerText = rest.firstIndex(of: " ").map { rest[..<$0] } ?? rest
                guard let peer = MailPeer(parsing: peerText) else { return .failure("disconnect from: expected NAME[ADDRESS]") }
                return .event(.disconnect(peer))
            }
        }
        if let range = message.range(of: " TLS connection established ") {
            let trust = message[..<range.lowerBound]
            guard !trust.contains(" ") else { return .none }  // "smtpd: ... " variants of other messages
            let rest = message[range.upperBound...]
            let outbound = rest.hasPrefix("to ")
            guard outbound || rest.hasPrefix("from ") else { return .failure("TLS line: expected from or to") }
            let afterWord = rest.dropFirst(outbound ? 3 : 5)
            // The peer ends at ": " (after the port for outbound); a name holds no ": ".
            guard let sep = afterWord.range(of: ": ") else { return .failure("TLS line: no protocol") }
            let peer = afterWord[..<sep.lowerBound]
            let details = afterWord[sep.upperBound...]
            let words = details.split(separator: " ")
            guard let version = words.first else { return .failure("TLS line: no protocol") }
            var cipher: String? = nil
            if words.count >= 4, words[1] == "with", words[2] == "cipher" { cipher = String(words[3]) }
            let tls = MailTLS(trust: String(trust), protocol: String(version), cipher: cipher)
            if outbound { return .event(.outboundTLS(peer: String(peer), tls)) }
            return .event(.inboundTLS(tls))
        }
        guard let sep = message.range(of: ": ") else { return .none }
        let queueID = message[..<sep.lowerBound]
        guard isQueueID(queueID) else { return .none }
        let body = message[sep.upperBound...]
        let id = String(queueID)
        let queued: String? = queueID == "NOQUEUE" ? nil : id

        if body.hasPrefix("reject: ") || body.hasPrefix("milter-reject: ") {
            return refusal(body, queueID: queued)
        }
        guard let queued else { return .none }
        if body == "removed" { return .event(.removed(queueID: queued)) }
        for kind in ["sender non-delivery notification: ", "sender delivery status notification: ",
                     "sender delay notification: "] where body.hasPrefix(kind) {
            let newID = body.dropFirst(kind.count)
            guard isQueueID(newID) else { return .failure("\(kind)expected a queue id") }
            return .event(.notification(queueID: queued, kind: String(kind.dropFirst(7).dropLast(2)), newQueueID: String(newID)))
        }
        if body.hasPrefix("client=") {
            let value = body.dropFirst(7)
            let peerText = value.range(of: ", ").map { value[..<$0.lowerBound] } ?? value
            guard let peer = MailPeer(parsing: peerText) else { return .failure("client=: expected NAME[ADDRESS]") }
            return .event(.client(queueID: queued, peer))
        }
        if body.hasPrefix("message-id=") {
            return .event(.messageID(queueID: queued, String(body.dropFirst(11))))
        }
        if body.hasPrefix("from=<") {
            guard let fields = fieldList(body) else { return .failure("from=: unreadable fields") }
            guard let from = fields["from"].flatMap(angleAddress) else { return .failure("from=: expected <ADDRESS>") }
            let recipients = fields["nrcpt"].flatMap { Int($0.split(separator: " ").first ?? "") }
            return .event(.envelope(queueID: queued, from: from, size: fields["size"].flatMap { Int($0) },
                                    recipients: recipients, client: nil, messageID: nil))
        }
        if body.hasPrefix("to=<") {
            return delivery(body, queueID: queued, statusKey: "status")
        }
        return .none
    }

    /// `reject: RCPT from NAME[IP]: 550 5.7.64 text; from=<...> to=<...> proto=ESMTP helo=<...>`.
    static func refusal(_ body: Substring, queueID: String?) -> Parsed {
        let byMilter = body.hasPrefix("milter-")
        let rest = body.drop { $0 != " " }.dropFirst()
        guard let fromWord = rest.range(of: " from ") else { return .failure("reject: expected STAGE from CLIENT") }
        let stage = rest[..<fromWord.lowerBound]
        let afterFrom = rest[fromWord.upperBound...]
        guard let peerEnd = afterFrom.range(of: ": ") else { return .failure("reject: expected CLIENT: REPLY") }
        let client = MailPeer(parsing: afterFrom[..<peerEnd.lowerBound])
        let replyAndFields = afterFrom[peerEnd.upperBound...]
        let tailStart = replyAndFields.range(of: "; from=<", options: .backwards)
        let reply = tailStart.map { replyAndFields[..<$0.lowerBound] } ?? replyAndFields
        var refusal = MailRefusal(stage: String(stage), client: client, reply: String(reply), byMilter: byMilter)
        if let tailStart {
            let tail = replyAndFields[replyAndFields.index(after: tailStart.lowerBound)...].dropFirst()
            refusal.from = bracketed(after: "from=<", in: tail)
            refusal.recipient = bracketed(after: " to=<", in: tail)
            refusal.helo = bracketed(after: " helo=<", in: tail)
        }
        return .event(.refusal(queueID: queueID, refusal))
    }

    /// The text between `key` (ending in `<`) and the next `>` followed by a space or the end.
    static func bracketed(after key: String, in text: Substring) -> String? {
        guard let start = text.range(of: key) else { return nil }
        var search = text[start.upperBound...]
        while let close = search.firstIndex(of: ">") {
            let next = search.index(after: close)
            if next == text.endIndex || text[next] == " " { return String(text[start.upperBound..<close]) }
            search = text[next...]
        }
        return nil
    }

    /// `to=<...>, relay=..., delay=..., dsn=..., status=sent (...)` (Postfix) or
    /// `to=<...>, delay=..., mailer=..., relay=..., dsn=..., stat=Sent (...)` (Sendmail).
    static func delivery(_ body: Substring, queueID: String, statusKey: String) -> Parsed {
        guard let fields = fieldList(body) else { return .failure("to=: unreadable fields") }
        guard let to = fields["to"].flatMap(angleAddress) else { return .failure("to=: expected <ADDRESS>") }
        guard let statusText = fields[statusKey] else { return .failure("to=: no \(statusKey)=") }
        var status = statusText
        var detail: String? = nil
        if let space = statusText.firstIndex(of: " ") {
            status = statusText[..<space]
            var d = statusText[statusText.index(after: space)...]
            if d.first == "(", d.last == ")" { d = d.dropFirst().dropLast() }
            detail = String(d)
        }
        let relay = fields["relay"].map(String.init) ?? "none"
        return .event(.delivery(queueID: queueID, MailDelivery(
            recipient: to, relay: relay, status: status.lowercased(), dsn: fields["dsn"].map(String.init),
            delay: fields["delay"].map(String.init), detail: detail)))
    }

    /// `key=value, key=value, ...`, where a value in angle brackets may hold ", " and the
    /// status (the last field) runs to the end of the line. nil when a field has no key.
    static func fieldList(_ text: Substring) -> [String: Substring]? {
        var fields: [String: Substring] = [:]
        var rest = text
        while !rest.isEmpty {
            guard let eq = rest.firstIndex(of: "=") else { return nil }
            let key = String(rest[..<eq])
            guard !key.isEmpty, !key.contains(" ") else { return nil }
            var value = rest[rest.index(after: eq)...]
            if key == "status" || key == "stat" {
                fields[key] = value
                break
            }
            var valueEnd = value.endIndex
            var searchFrom = value.startIndex
            if value.first == "<", let close = closingBracket(value) { searchFrom = close }
            if let comma = value[searchFrom...].range(of: ", ") { valueEnd = comma.lowerBound }
            value = value[..<valueEnd]
            if fields[key] == nil { fields[key] = value }
            rest = valueEnd == rest.endIndex ? rest[rest.endIndex...] : rest[rest.index(valueEnd, offsetBy: 2)...]
        }
        return fields
    }

    /// The `>` that closes an address: the last one before the next `, key=` or the end.
    private static func closingBracket(_ value: Substring) -> Substring.Index? {
        var candidate: Substring.Index? = nil
        var i = value.startIndex
        while i < value.endIndex {
            if value[i] == ">" {
                let next = value.index(after: i)
                if next == value.endIndex || value[next...].hasPrefix(", ") {
                    candidate = i
                    break
                }
            }
            i = value.index(after: i)
        }
        return candidate
    }

    static func angleAddress(_ value: Substring) -> String? {
        guard value.first == "<", value.last == ">" else { return nil }
        return String(value.dropFirst().dropLast())
    }

    /// Postfix queue ids (short hex or long base-52 ones), Sendmail's, and NOQUEUE.
    static func isQueueID(_ text: Substring) -> Bool {
        (4...32).contains(text.utf8.count) && text.utf8.allSatisfy { b in
            (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A)
        }
    }

    // MARK: - Sendmail

    static func parseSendmail(_ message: Substring) -> Parsed {
        if message.hasPrefix("STARTTLS=server, ") || message.hasPrefix("STARTTLS=client, ") {
            return sendmailTLS(message)
        }
        guard let sep = message.range(of: ": ") else { return .none }
        let queueID = message[..<sep.lowerBound]
        guard isQueueID(queueID), queueID != "NOQUEUE" || message[sep.upperBound...].hasPrefix("ruleset=") else { return .none }
        let id = String(queueID)
        let queued: String? = queueID == "NOQUEUE" ? nil : id
        let body = message[sep.upperBound...]
        if body.hasPrefix("STARTTLS=server, ") || body.hasPrefix("STARTTLS=client, ") { return sendmailTLS(body) }
        guard let queued else { return sendmailRuleset(body, queueID: nil) }
        if body.hasPrefix("from=") {
            guard let fields = fieldList(body) else { return .failure("from=: unreadable fields") }
            guard let fromValue = fields["from"] else { return .failure("from=: no address") }
            let from = angleAddress(fromValue) ?? String(fromValue)
            let client = fields["relay"].flatMap { MailPeer(parsing: $0) }
            let messageID = fields["msgid"].map(String.init)
            return .event(.envelope(queueID: queued, from: from, size: fields["size"].flatMap { Int($0) },
                                    recipients: fields["nrcpts"].flatMap { Int($0) }, client: client, messageID: messageID))
        }
        if body.hasPrefix("to=") {
            return delivery(body, queueID: queued, statusKey: "stat")
        }
        if body.hasPrefix("Milter: ") {
            // `Milter: to=<c@d>, reject=550 5.7.64 text` or `Milter: from=<...>, reject=...`.
            let rest = body.dropFirst(8)
            guard let reject = rest.range(of: ", reject=") else { return .none }
            let subject = rest[..<reject.lowerBound]
            var refusal = MailRefusal(stage: "", reply: String(rest[reject.upperBound...]), byMilter: true)
            if subject.hasPrefix("to=") {
                refusal.stage = "RCPT"
                refusal.recipient = angleAddress(subject.dropFirst(3)) ?? String(subject.dropFirst(3))
            } else if subject.hasPrefix("from=") {
                refusal.stage = "MAIL"
                refusal.from = angleAddress(subject.dropFirst(5)) ?? String(subject.dropFirst(5))
            } else {
                refusal.stage = "END-OF-MESSAGE"
            }
            return .event(.refusal(queueID: queued, refusal))
        }
        if body.hasPrefix("ruleset=") { return sendmailRuleset(body, queueID: queued) }
        return .none
    }

    /// `ruleset=check_rcpt, arg1=<c@d>, relay=NAME [IP], reject=550 5.7.1 <c@d>... Relaying denied`.
    static func sendmailRuleset(_ body: Substring, queueID: String?) -> Parsed {
        guard body.hasPrefix("ruleset="), let reject = body.range(of: ", reject=") else { return .none }
        guard let fields = fieldList(body[..<reject.lowerBound]) else { return .failure("ruleset=: unreadable fields") }
        let ruleset = fields["ruleset"].map(String.init) ?? ""
        var refusal = MailRefusal(stage: ruleset, client: fields["relay"].flatMap { MailPeer(parsing: $0) },
                                  reply: String(body[reject.upperBound...]), byMilter: false)
        let arg = fields["arg1"].map { angleAddress($0) ?? String($0) }
        if ruleset == "check_rcpt" { refusal.recipient = arg } else if ruleset == "check_mail" { refusal.from = arg }
        return .event(.refusal(queueID: queueID, refusal))
    }

    /// `STARTTLS=server, relay=NAME [IP], version=TLSv1.3, verify=OK, cipher=..., bits=256/256`.
    static func sendmailTLS(_ body: Substring) -> Parsed {
        guard let fields = fieldList(body) else { return .failure("STARTTLS: unreadable fields") }
        guard let version = fields["version"] else { return .none }  // cert-subject= and error lines
        let tls = MailTLS(trust: fields["verify"].map(String.init) ?? "unknown", protocol: String(version),
                          cipher: fields["cipher"].map(String.init))
        if fields["STARTTLS"] == "client" {
            return .event(.outboundTLS(peer: fields["relay"].map(String.init) ?? "", tls))
        }
        return .event(.inboundTLS(tls))
    }
}
