// `validationRecipients`: does the host accept mail for these addresses? After STARTTLS:
// EHLO, MAIL FROM:<>, one RCPT TO per address, RSET, QUIT; no DATA, so nothing is sent.
//
// posttls-finger stops after EHLO, and Foundation has no TLS client for a socket on Linux,
// so the TLS session is `openssl s_client -starttls smtp` (it does the plain EHLO and
// STARTTLS itself, as RFC 3207 says) and the commands go through its standard input one at a
// time, each reply read in full before the next command: no pipelining, so a server that
// refuses pipelined commands still answers. The TLS judgment is posttls-finger's, made
// before; this session only asks about the recipients.

import Foundation
import Glibc

public enum RecipientProbe {
    /// Asks `address`:`port` about each recipient; a failure before the RCPT commands (no
    /// connection, MAIL FROM refused) is the error.
    public static func check(address: String, port: Int, recipients: [String], ehlo: String,
                             timeout: TimeInterval = 30) -> Result<[RecipientCheck], SubprocessError> {
        guard let openssl = Subprocess.which("openssl") else { return .failure(SubprocessError("openssl: not found on PATH")) }
        let target = address.contains(":") ? "[\(address)]:\(port)" : "\(address):\(port)"
        let process = Process()
        process.executableURL = URL(fileURLWithPath: openssl)
        process.arguments = ["s_client", "-starttls", "smtp", "-connect", target, "-name", ehlo, "-quiet", "-verify_quiet"]
        let toServer = Pipe(), fromServer = Pipe(), diagnostics = Pipe()
        process.standardInput = toServer
        process.standardOutput = fromServer
        process.standardError = diagnostics
        do { try process.run() } catch { return .failure(SubprocessError("openssl s_client: \(error)")) }
        // s_client's diagnostics go to a pipe nobody reads: drain it so it never blocks.
        DispatchQueue.global().async { _ = diagnostics.fileHandleForReading.readDataToEndOfFile() }
        let session = LineSession(read: fromServer.fileHandleForReading.fileDescriptor,
                                  write: toServer.fileHandleForWriting, deadline: Date().addingTimeInterval(timeout))
        defer {
            try? toServer.fileHandleForWriting.close()
            if process.isRunning { process.terminate() }
            process.waitUntilExit()
        }
        do {
            let hello = try session.command("EHLO \(ehlo)")
            guard hello.hasPrefix("2") else { return .failure(SubprocessError("EHLO after STARTTLS refused: \(hello)")) }
            let mail = try session.command("MAIL FROM:<>")
            guard mail.hasPrefix("2") else { return .failure(SubprocessError("MAIL FROM:<> refused: \(mail)")) }
            var checks: [RecipientCheck] = []
            for recipient in recipients {
                checks.append(RecipientCheck(recipient: recipient, reply: try session.command("RCPT TO:<\(recipient)>")))
            }
            _ = try? session.command("RSET")
            _ = try? session.command("QUIT")
            return .success(checks)
        } catch let error as SubprocessError {
            return .failure(error)
        } catch {
            return .failure(SubprocessError("\(error)"))
        }
    }
}

/// One SMTP command and its whole (multi-line) reply, over a pair of descriptors.
private final class LineSession {
    private let readFD: Int32
    private let write: FileHandle
    private let deadline: Date
    private var buffer: [UInt8] = []

    init(read: Int32, write: FileHandle, deadline: Date) {
        readFD = read
        self.write = write
        self.deadline = deadline
    }

    /// Sends a command; returns the reply's lines joined by " / " (`250 2.1.5 Ok`).
    func command(_ text: String) throws -> String {
        do { try write.write(contentsOf: Data((text + "\r\n").utf8)) } catch {
            throw SubprocessError("lost connection sending \(text.prefix(10))")
        }
        var lines: [String] = []
        while true {
            let line = try readLine()
            lines.append(line)
            // "250-..." continues, "250 ..." (or a bare code) ends the reply.
            let bytes = Array(line.utf8)
            if bytes.count <= 3 || bytes[3] != UInt8(ascii: "-") { break }
        }
        return lines.joined(separator: " / ")
    }

    private func readLine() throws -> String {
        while true {
            if let newline = buffer.firstIndex(of: 10) {
                var line = Array(buffer[..<newline])
                buffer.removeFirst(newline + 1)
                if line.last == 13 { line.removeLast() }
                return String(decoding: line, as: UTF8.self)
            }
            let remaining = deadline.timeIntervalSinceNow
            guard remaining > 0 else { throw SubprocessError("timeout waiting for the server's reply") }
            var descriptor = pollfd(fd: readFD, events: Int16(POLLIN), revents: 0)
            let ready = poll(&descriptor, 1, Int32(min(remaining, 60) * 1000))
            if ready < 0 && errno == EINTR { continue }
            guard ready > 0 else { throw SubprocessError("timeout waiting for the server's reply") }
            var chunk = [UInt8](repeating: 0, count: 4096)
            let count = read(readFD, &chunk, chunk.count)
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else { throw SubprocessError("the server closed the connection") }
            buffer += chunk[..<count]
            if buffer.count > 1 << 20 { throw SubprocessError("the server's reply is too long") }
        }
    }
}
