// How `trace` prints a timeline: text for people, JSON (the same facts) for programs.

import Foundation

extension MessageTrace {
    /// The client as the MTA logged it, else as the verdict line gave it.
    public var clientText: String? { received.client?.description ?? received.clientFromVerdict }

    /// One block per message:
    ///
    ///     message 4ABC123 (mx.example.com, postfix) message-id=<...>
    ///       2026-11-29T01:02:03Z  received from mail.fabrikam.com[203.0.113.7] over TLSv1.3 (Trusted, ...), certificate relay.contoso.com
    ///       2026-11-29T01:02:03Z  sender <pay@fabrikam.com>, 1234 bytes, 2 recipients
    ///       2026-11-29T01:02:04Z  judged <ap@contoso.com>: accept, inbound Fabrikam Bank (partner), direction incoming, mode enforce
    ///       2026-11-29T01:02:05Z  delivered <ap@contoso.com> to 127.0.0.1[127.0.0.1]:25: sent, dsn 2.0.0 (250 2.0.0 Ok), no TLS
    public func text(clock: LogClock) -> String {
        func at(_ time: Int64?) -> String { time.map { clock.format($0) } ?? "(no time)" }
        var header = "message " + (queueID ?? "NOQUEUE (refused before queueing)")
        var about: [String] = []
        if let host { about.append(host) }
        if let mta { about.append(mta.rawValue) }
        if !about.isEmpty { header += " (" + about.joined(separator: ", ") + ")" }
        if let messageID { header += " message-id=" + messageID }
        var lines = [header]
        var events: [(time: Int64?, order: Int, text: String)] = []
        func event(_ time: Int64?, _ order: Int, _ text: String) { events.append((time, order, text)) }

        var receivedText = "received from " + (clientText ?? "an unknown client")
        if let tls = received.tls {
            receivedText += " over \(tls.protocol) (\(tls.trust)" + (tls.cipher.map { ", \($0)" } ?? "") + ")"
        } else {
            receivedText += " without TLS"
        }
        if let certificate = received.certificate ?? received.tls?.certificate {
            receivedText += ", certificate \(certificate)"
        }
        if let helo = received.helo { receivedText += ", helo \(helo)" }
        event(received.time, 0, receivedText)
        if let from {
            var envelope = "sender <\(from)>"
            if let size { envelope += ", \(size) bytes" }
            if let recipientCount { envelope += ", \(recipientCount) recipient" + (recipientCount == 1 ? "" : "s") }
            event(received.time, 1, envelope)
        }
        for j in judged {
            var text = "judged <\(j.recipient)>: \(j.verdict)" + (j.would.map { " (would \($0))" } ?? "")
            if let reason = j.reason { text += ", reason \(reason)" }
            text += ", inbound " + (j.inbound.map { "\($0) (\(j.inboundType))" } ?? "none")
            if let outbound = j.outbound { text += ", outbound \(outbound)" + (j.outboundType.map { " (\($0))" } ?? "") }
            text += ", direction \(j.direction), mode \(j.mode)"
            event(j.time, 2, text)
        }
        for r in refused {
            var text = "refused " + (r.recipient.map { "<\($0)>" } ?? r.from.map { "sender <\($0)>" } ?? "message")
            text += " at \(r.stage.isEmpty ? "?" : r.stage)" + (r.byMilter ? " by the milter" : " by the MTA") + ": \(r.reply)"
            event(r.time, 3, text)
        }
        for d in delivered {
            var text = "delivered <\(d.recipient)> to \(d.relay): \(d.status)"
            if let dsn = d.dsn { text += ", dsn \(dsn)" }
            if let delay = d.delay { text += ", delay \(delay)" }
            if let detail = d.detail { text += " (\(detail))" }
            text += d.tls.map { ", TLS \($0.protocol) (\($0.trust))" } ?? ", no TLS logged"
            event(d.time, 4, text)
        }
        for n in notifications { event(n.time, 5, "\(n.kind) sent as \(n.queueID)") }
        if let removed { event(removed, 6, "removed from the queue") }
        // Stable: same-second events keep the order of the journey.
        let sorted = events.enumerated().sorted { a, b in
            let (x, y) = (a.element.time ?? .max, b.element.time ?? .max)
            if x != y { return x < y }
            if a.element.order != b.element.order { return a.element.order < b.element.order }
            return a.offset < b.offset
        }
        for (_, e) in sorted { lines.append("  \(at(e.time))  \(e.text)") }
        // Values come from a log anyone can write to: no control character reaches the terminal.
        return lines.map(Self.printable).joined(separator: "\n") + "\n"
    }

    static func printable(_ text: String) -> String {
        guard text.unicodeScalars.contains(where: { $0.value < 0x20 || (0x7F...0x9F).contains($0.value) }) else { return text }
        return String(String.UnicodeScalarView(text.unicodeScalars.map {
            $0.value < 0x20 || (0x7F...0x9F).contains($0.value) ? "?" : $0
        }))
    }

    /// The same facts as `text`, for JSONSerialization: absent facts are left out.
    public func jsonObject(clock: LogClock) -> [String: Any] {
        func time(_ t: Int64?) -> String? { t.map { clock.format($0) } }
        func tls(_ t: MailTLS?) -> [String: Any]? {
            guard let t else { return nil }
            return compact(["trust": t.trust, "protocol": t.protocol, "cipher": t.cipher, "certificate": t.certificate])
        }
        var object: [String: Any?] = [
            "queueID": queueID, "host": host, "mta": mta?.rawValue, "messageID": messageID, "from": from,
            "size": size, "recipientCount": recipientCount, "removed": time(removed), "firstSeen": time(firstSeen),
        ]
        object["received"] = compact([
            "time": time(received.time), "client": clientText, "clientAddress": received.client?.address,
            "tls": tls(received.tls), "certificate": received.certificate ?? received.tls?.certificate, "helo": received.helo,
        ])
        object["judged"] = judged.map { j in
            compact(["time": time(j.time), "recipient": j.recipient, "from": j.from, "verdict": j.verdict, "would": j.would,
                     "reason": j.reason, "direction": j.direction, "inbound": j.inbound, "inboundType": j.inboundType,
                     "outbound": j.outbound, "outboundType": j.outboundType, "mode": j.mode])
        }
        object["refused"] = refused.map { r in
            compact(["time": time(r.time), "stage": r.stage, "client": r.client?.description, "reply": r.reply,
                     "from": r.from, "recipient": r.recipient, "helo": r.helo, "byMilter": r.byMilter])
        }
        object["delivered"] = delivered.map { d in
            compact(["time": time(d.time), "recipient": d.recipient, "relay": d.relay, "status": d.status, "dsn": d.dsn,
                     "delay": d.delay, "detail": d.detail, "tls": tls(d.tls)])
        }
        object["notifications"] = notifications.map { compact(["time": time($0.time), "kind": $0.kind, "queueID": $0.queueID]) }
        return compact(object)
    }
}

private func compact(_ dictionary: [String: Any?]) -> [String: Any] {
    dictionary.compactMapValues { $0 }
}
