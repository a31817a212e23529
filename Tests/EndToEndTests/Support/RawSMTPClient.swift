// A tiny lock-step SMTP client for what swaks cannot do: after STARTTLS, send MAIL at
// once without a second EHLO (then Postfix's default macro lists hand the milter no TLS
// macro at HELO: see MTA-FACTS). It also serves any hand-written conversation.
//
// Plain sessions use a TCP socket. TLS sessions run `openssl s_client -starttls smtp`,
// which sends EHLO and STARTTLS itself and then relays our lines inside TLS; with
// -quiet its stdout carries nothing but the server's replies. -nocommands stops it from
// treating a line that starts with "R" (RCPT) or "Q" as a renegotiate/quit command.

import Foundation
import Glibc

final class RawSMTPClient {
    private let readFD: Int32
    private let writeFD: Int32
    private let pid: pid_t?
    private let tls: Bool
    private var buffer: [UInt8] = []
    private(set) var transcript = ""
    private var closed = false
    var timeout: TimeInterval = 30

    /// Connects in clear and reads the banner.
    static func plain(port: UInt16, timeout: TimeInterval = 30) throws -> RawSMTPClient {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw LabError("socket: \(String(cString: strerror(errno)))") }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
            }
        }
        guard connected else {
            let reason = String(cString: strerror(errno))
            Glibc.close(fd)
            throw LabError("connect 127.0.0.1:\(port): \(reason)")
        }
        let client = RawSMTPClient(readFD: fd, writeFD: fd, pid: nil, tls: false)
        client.timeout = timeout
        client.transcript += "=== Connected to 127.0.0.1:\(port)\n"
        _ = try client.readReply(for: "<connect>")
        return client
    }

    /// Connects, sends `EHLO ehlo`, STARTTLS and completes the handshake (presenting
    /// `certificate` if given). The next command you send is the first one inside TLS; no
    /// EHLO is repeated unless you send one.
    static func startTLS(port: UInt16, ehlo: String, certificate: LabCertificate? = nil,
                         errorLog: String, timeout: TimeInterval = 30) throws -> RawSMTPClient {
        var arguments = [try LabProcess.require("openssl", package: "openssl"), "s_client",
                         "-connect", "127.0.0.1:\(port)", "-starttls", "smtp", "-name", ehlo,
                         "-quiet", "-nocommands", "-crlf", "-verify_quiet"]
        if let certificate { arguments += ["-cert", certificate.certificatePath, "-key", certificate.keyPath] }
        let child = try LabProcess.spawnPiped(arguments, errorPath: errorLog)
        let client = RawSMTPClient(readFD: child.output, writeFD: child.input, pid: child.pid, tls: true)
        client.timeout = timeout
        client.transcript += "=== openssl s_client -starttls smtp to 127.0.0.1:\(port): EHLO \(ehlo), STARTTLS"
            + (certificate.map { ", client certificate CN=\($0.commonName)" } ?? "") + "\n"
        return client
    }

    private init(readFD: Int32, writeFD: Int32, pid: pid_t?, tls: Bool) {
        self.readFD = readFD
        self.writeFD = writeFD
        self.pid = pid
        self.tls = tls
    }

    deinit { close() }

    /// Sends one command line and returns the server's reply.
    @discardableResult
    func send(_ command: String) throws -> SMTPReply {
        try write(command + (tls ? "\n" : "\r\n"))  // s_client -crlf turns \n into \r\n
        transcript += (tls ? " ~> " : " -> ") + command + "\n"
        return try readReply(for: command)
    }

    /// Sends DATA, the message (dot-stuffed here) and the final dot; returns the final reply,
    /// or the refusal of DATA itself.
    @discardableResult
    func sendData(_ message: String) throws -> SMTPReply {
        let go = try send("DATA")
        guard go.code == 354 else { return go }
        var lines = message.replacingOccurrences(of: "\r\n", with: "\n").split(separator: "\n", omittingEmptySubsequences: false)
        if lines.last == "" { lines.removeLast() }
        var payload = ""
        for line in lines {
            let stuffed = line.hasPrefix(".") ? "." + line : String(line)
            payload += stuffed + (tls ? "\n" : "\r\n")
            transcript += (tls ? " ~> " : " -> ") + stuffed + "\n"
        }
        payload += tls ? ".\n" : ".\r\n"
        transcript += (tls ? " ~> " : " -> ") + ".\n"
        try write(payload)
        return try readReply(for: "<data>")
    }

    /// Sends QUIT (ignoring a dead connection) and releases everything.
    func quit() {
        if !closed { _ = try? send("QUIT") }
        close()
    }

    func close() {
        guard !closed else { return }
        closed = true
        Glibc.close(writeFD)
        if readFD != writeFD { Glibc.close(readFD) }
        if let pid { LabProcess.terminate(pid, grace: 2) }
    }

    /// The conversation so far, in swaks' format.
    func result(exitCode: Int32 = 0) -> SMTPTranscript {
        SMTPTranscript(exitCode: exitCode, text: transcript)
    }

    private func write(_ text: String) throws {
        guard !closed else { throw LabError("SMTP session already closed") }
        var bytes = Array(text.utf8)
        while !bytes.isEmpty {
            let written = bytes.withUnsafeBytes { Glibc.send(writeFD, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            let count = written >= 0 ? written : (errno == ENOTSOCK ? bytes.withUnsafeBytes { Glibc.write(writeFD, $0.baseAddress, $0.count) } : -1)
            if count < 0 {
                if errno == EINTR { continue }
                throw LabError("SMTP write failed: \(String(cString: strerror(errno)))\n\(transcript)")
            }
            bytes.removeFirst(count)
        }
    }

    private func readReply(for command: String) throws -> SMTPReply {
        var lines: [String] = []
        while true {
            let line = try readLine()
            let prefix = tls ? "<~  " : "<-  "
            transcript += prefix + line + "\n"
            lines.append(line)
            if line.count < 4 || line[line.index(line.startIndex, offsetBy: 3)] != "-" { break }
        }
        guard let reply = SMTPReply.parse(lines) else {
            throw LabError("not an SMTP reply to \(command): \(lines)\n\(transcript)")
        }
        return reply
    }

    private func readLine() throws -> String {
        let deadline = Date().addingTimeInterval(timeout)
        while true {
            if let newline = buffer.firstIndex(of: UInt8(ascii: "\n")) {
                var line = Array(buffer[..<newline])
                buffer.removeSubrange(...newline)
                if line.last == UInt8(ascii: "\r") { line.removeLast() }
                return String(decoding: line, as: UTF8.self)
            }
            let remaining = deadline.timeIntervalSinceNow
            guard remaining > 0 else { throw LabError("no SMTP reply within \(Int(timeout)) s\n\(transcript)") }
            var poller = pollfd(fd: readFD, events: Int16(POLLIN), revents: 0)
            let ready = poll(&poller, 1, Int32(min(remaining, 1) * 1000))
            if ready < 0 && errno != EINTR { throw LabError("poll: \(String(cString: strerror(errno)))") }
            guard ready > 0 else { continue }
            var chunk = [UInt8](repeating: 0, count: 4096)
            let count = chunk.withUnsafeMutableBytes { Glibc.read(readFD, $0.baseAddress, $0.count) }
            if count == 0 { throw LabError("connection closed while waiting for a reply\n\(transcript)") }
            if count < 0 {
                if errno == EINTR { continue }
                throw LabError("SMTP read failed: \(String(cString: strerror(errno)))\n\(transcript)")
            }
            buffer += chunk[0..<count]
        }
    }
}
