// A second private Postfix, the *receiving* side of outbound tests: the servers an outbound
// connector delivers to. It listens on 127.0.0.2 (not the sender lab's 127.0.0.1), one smtpd
// per kind of server, each with its own syslog_name so its log lines say which one spoke:
//
//   receiver/good        CA-signed certificate, CN and DNS name mx.fabrikam.test
//   receiver/wrongname   CA-signed certificate, CN and DNS name other.example.test
//   receiver/selfsigned  self-signed certificate, CN selfsigned.fabrikam.test
//   receiver/plain       no STARTTLS at all
//   receiver/expired     CA-signed certificate for mx.fabrikam.test whose notAfter has passed
//
// Whatever it accepts it discards (default_transport = discard): the proof of receipt is its
// log (`QUEUEID: client=localhost[127.0.0.1]`, the TLS line), and the sender's
// `status=sent (250 2.0.0 Ok: queued as QUEUEID)`. Every process is stopped by its PID.

import Foundation
import Glibc

final class ReceiverLab: @unchecked Sendable {
    enum Server: String, CaseIterable, Sendable {
        case good, wrongname, selfsigned, plain
        case expired
    }

    static let address = "127.0.0.2"
    static let hostname = "mx.fabrikam.test"

    let directory: String
    let ports: [Server: UInt16]
    /// The CA that signed `good` and `wrongname`: the sender's smtp_tls_CAfile.
    let caFile: String
    private var masterPID: pid_t?

    var configDirectory: String { directory + "/etc" }
    var maillogPath: String { directory + "/log/maillog" }

    /// `[127.0.0.2]:PORT`: a smart host, and the tls-policy key Postfix asks for it.
    func smartHost(_ server: Server) -> String { "[\(Self.address)]:\(ports[server]!)" }

    static func start() throws -> ReceiverLab {
        try LabProcess.requireRoot()
        var template = Array("/tmp/connector-receiver.XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else { throw LabError("mkdtemp: \(String(cString: strerror(errno)))") }
        let directory = String(cString: made)
        chmod(directory, 0o755)
        let lab = try ReceiverLab(directory: directory)
        do {
            try lab.startPostfix()
        } catch {
            lab.stop(removeDirectory: false)
            throw LabError("receiver in \(directory) did not start: \(error)\n--- maillog:\n\(lab.maillog())")
        }
        return lab
    }

    private init(directory: String) throws {
        self.directory = directory
        let fm = FileManager.default
        for sub in ["etc", "queue", "data", "log", "certs"] {
            try fm.createDirectory(atPath: directory + "/" + sub, withIntermediateDirectories: true)
        }
        try PostfixLab.chown(directory + "/data", user: "postfix")
        _ = fm.createFile(atPath: directory + "/log/maillog", contents: nil)

        var ports: [Server: UInt16] = [:]
        for server in Server.allCases {
            var port = try LabProcess.freeTCPPort()
            while ports.values.contains(port) { port = try LabProcess.freeTCPPort() }
            ports[server] = port
        }
        self.ports = ports

        // The lab CA (and its throw-away client certificates), then our server certificates.
        let certs = directory + "/certs"
        let set = try LabCertificates.generate(in: certs)
        caFile = set.ca.certificatePath
        try Self.issueServer("mx.fabrikam.test", name: "good", in: certs, ca: set.ca)
        try Self.issueServer("other.example.test", name: "wrongname", in: certs, ca: set.ca)
        try LabProcess.check(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                              "-nodes", "-keyout", certs + "/selfsigned-server.key", "-out", certs + "/selfsigned-server.crt",
                              "-days", "3650", "-subj", "/CN=selfsigned.fabrikam.test"])
        try Self.issueExpiredServer(in: certs, ca: set.ca)
        for file in (try? fm.contentsOfDirectory(atPath: certs)) ?? [] { chmod(certs + "/" + file, 0o644) }
        try writeConfiguration()
    }

    /// A server certificate (serverAuth, the name as CN and DNS name) signed by the lab CA.
    private static func issueServer(_ name: String, name file: String, in directory: String, ca: LabCertificate) throws {
        let key = "\(directory)/\(file)-server.key", request = "\(directory)/\(file)-server.csr"
        let extensions = "\(directory)/\(file)-server.ext"
        try "subjectAltName=DNS:\(name)\nextendedKeyUsage=serverAuth\n".write(toFile: extensions, atomically: true, encoding: .utf8)
        try LabProcess.check(["openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                              "-keyout", key, "-out", request, "-subj", "/CN=\(name)"])
        try LabProcess.check(["openssl", "x509", "-req", "-in", request, "-CA", ca.certificatePath, "-CAkey", ca.keyPath,
                              "-set_serial", "0x" + UUID().uuidString.replacingOccurrences(of: "-", with: "").prefix(16),
                              "-out", "\(directory)/\(file)-server.crt", "-days", "3650", "-extfile", extensions])
    }

    /// The expired server: the right name, the lab CA, a notAfter one day in the past
    /// (`-days -1`), so only the date keeps a verifying client from trusting it.
    private static func issueExpiredServer(in directory: String, ca: LabCertificate) throws {
        let name = "mx.fabrikam.test", file = "expired"
        let key = "\(directory)/\(file)-server.key", request = "\(directory)/\(file)-server.csr"
        let extensions = "\(directory)/\(file)-server.ext"
        try "subjectAltName=DNS:\(name)\nextendedKeyUsage=serverAuth\n".write(toFile: extensions, atomically: true, encoding: .utf8)
        try LabProcess.check(["openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                              "-keyout", key, "-out", request, "-subj", "/CN=\(name)"])
        try LabProcess.check(["openssl", "x509", "-req", "-in", request, "-CA", ca.certificatePath, "-CAkey", ca.keyPath,
                              "-set_serial", "0x" + UUID().uuidString.replacingOccurrences(of: "-", with: "").prefix(16),
                              "-out", "\(directory)/\(file)-server.crt", "-days", "-1", "-extfile", extensions])
    }

    private func writeConfiguration() throws {
        let certs = directory + "/certs"
        let main = """
            compatibility_level = 3.6
            config_directory = \(configDirectory)
            queue_directory = \(directory)/queue
            data_directory = \(directory)/data
            mail_owner = postfix
            setgid_group = postdrop
            maillog_file = \(maillogPath)
            maillog_file_prefixes = \(directory)
            myhostname = \(Self.hostname)
            mydestination =
            relay_domains =
            local_recipient_maps =
            alias_maps =
            alias_database =
            biff = no
            # Postfix refuses an inet_interfaces address that no interface carries (lo has
            # 127.0.0.1/8 but only 127.0.0.1 as an address); the smtpd lines of master.cf bind
            # 127.0.0.2 themselves.
            inet_interfaces = 127.0.0.1
            inet_protocols = ipv4
            mynetworks = 127.0.0.0/8
            smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
            # Everything received is thrown away: the log is the proof.
            default_transport = discard
            smtpd_tls_security_level = may
            smtpd_tls_loglevel = 1
            smtpd_tls_cert_file = \(certs)/good-server.crt
            smtpd_tls_key_file = \(certs)/good-server.key
            tls_append_default_CA = no

            """
        func smtpd(_ server: Server, _ options: [String]) -> String {
            "\(Self.address):\(ports[server]!) inet n - n - - smtpd -o syslog_name=receiver/\(server.rawValue) "
                + options.map { "-o " + $0 }.joined(separator: " ")
        }
        var master = [
            smtpd(.good, []),
            smtpd(.wrongname, ["smtpd_tls_cert_file=\(certs)/wrongname-server.crt",
                               "smtpd_tls_key_file=\(certs)/wrongname-server.key"]),
            smtpd(.selfsigned, ["smtpd_tls_cert_file=\(certs)/selfsigned-server.crt",
                                "smtpd_tls_key_file=\(certs)/selfsigned-server.key"]),
            smtpd(.plain, ["smtpd_tls_security_level=none"]),
            smtpd(.expired, ["smtpd_tls_cert_file=\(certs)/expired-server.crt",
                             "smtpd_tls_key_file=\(certs)/expired-server.key"]),
        ].joined(separator: "\n") + "\n"
        // The sender lab's service list, without its smtpd line.
        let templatePath = LabPaths.fixtures + "/postfix/master.cf.in"
        guard let template = try? String(contentsOfFile: templatePath, encoding: .utf8) else {
            throw LabError("cannot read \(templatePath)")
        }
        master += template.split(separator: "\n", omittingEmptySubsequences: false)
            .filter { !$0.contains("@SMTP_PORT@") }.joined(separator: "\n")
        try main.write(toFile: configDirectory + "/main.cf", atomically: true, encoding: .utf8)
        try master.write(toFile: configDirectory + "/master.cf", atomically: true, encoding: .utf8)
        // Postfix pauses on configuration files younger than a second or two (see PostfixLab).
        var times = [timeval(tv_sec: time(nil) - 10, tv_usec: 0), timeval(tv_sec: time(nil) - 10, tv_usec: 0)]
        for name in ["main.cf", "master.cf"] { utimes(configDirectory + "/" + name, &times) }
    }

    private func startPostfix() throws {
        let pid = try PostfixLab.startMaster(directory: directory, configDirectory: configDirectory)
        masterPID = pid
        guard LabProcess.waitUntil(timeout: 10, { Server.allCases.allSatisfy { isListening(ports[$0]!) } }) else {
            throw LabError("the receiver does not listen on \(Self.address):\(ports.values.sorted())")
        }
    }

    /// A listening socket on 127.0.0.2:port, from /proc/net/tcp (a probe connection would be
    /// an SMTP session in the receiver's log).
    private func isListening(_ port: UInt16) -> Bool {
        guard let table = try? String(contentsOfFile: "/proc/net/tcp", encoding: .utf8) else { return false }
        let wanted = "0200007F:" + String(format: "%04X", port)
        return table.split(separator: "\n").contains { line in
            let fields = line.split(separator: " ")
            return fields.count > 3 && fields[1] == wanted && fields[3] == "0A"
        }
    }

    func stop(removeDirectory: Bool = true) {
        if let master = masterPID {
            let members = LabProcess.processGroupMembers(master)
            kill(master, SIGTERM)
            LabProcess.terminate(master, grace: 10)
            for pid in members + LabProcess.processGroupMembers(master) { LabProcess.terminate(pid, grace: 2) }
            masterPID = nil
        }
        if removeDirectory { try? FileManager.default.removeItem(atPath: directory) }
    }

    deinit { stop(removeDirectory: false) }

    func maillog() -> String {
        (try? String(contentsOfFile: maillogPath, encoding: .utf8)) ?? ""
    }

    /// The receiver's log lines written by one of its servers (`receiver/good/smtpd[...]`).
    func lines(of server: Server) -> [String] {
        maillog().split(separator: "\n").map(String.init).filter { $0.contains(" receiver/\(server.rawValue)/") }
    }
}
