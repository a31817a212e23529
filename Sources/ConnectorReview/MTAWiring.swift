// `validate --mta postfix|sendmail`: the MTA's own configuration, checked against what the
// policy needs. Each finding carries the exact line that fixes it. Postfix is read through
// `postconf` (main.cf with every default and $name expanded: `-x`; master.cf: `-M`), so
// what is judged is what Postfix itself will use; Sendmail through its compiled sendmail.cf
// (the `O InputMailFilters=` and `Xname, S=..., F=...` lines m4 made of INPUT_MAIL_FILTER).

import ConnectorPolicy
import Foundation
import Glibc

/// Something in the MTA's configuration that keeps the policy from working, and the fix.
public struct WiringFinding: Sendable, Equatable, Codable, CustomStringConvertible {
    public var message: String
    /// Lines to run (or to put in the .mc), in order.
    public var fix: [String]

    public init(_ message: String, fix: [String]) {
        self.message = message
        self.fix = fix
    }

    public var description: String {
        message + fix.map { "\n    fix: " + $0 }.joined()
    }
}

/// A milter or socketmap endpoint, in whichever syntax wrote it.
public enum MilterEndpoint: Sendable, Equatable, CustomStringConvertible {
    case unix(path: String)
    case inet(host: String, port: Int)

    /// libmilter's syntax (the daemon's --socket): `unix:/p`, `local:/p`, `inet:PORT@HOST`.
    public init?(libmilter text: String) {
        let lower = text.lowercased()
        if let path = text.dropPrefixCaseless("unix:") ?? text.dropPrefixCaseless("local:") {
            self = .unix(path: path)
        } else if lower.hasPrefix("inet:") || lower.hasPrefix("inet6:") {
            let rest = text[text.index(after: text.firstIndex(of: ":")!)...]
            guard let at = rest.firstIndex(of: "@"), let port = Int(rest[..<at]) else { return nil }
            self = .inet(host: String(rest[rest.index(after: at)...]), port: port)
        } else {
            return nil
        }
    }

    /// Postfix's syntax: `unix:/p`, `inet:HOST:PORT`, `inet:[v6]:PORT`.
    public init?(postfix text: String) {
        if let path = text.dropPrefixCaseless("unix:") ?? text.dropPrefixCaseless("local:") {
            self = .unix(path: path)
        } else if let rest = text.dropPrefixCaseless("inet:") {
            guard let colon = rest.lastIndex(of: ":"), let port = Int(rest[rest.index(after: colon)...]) else { return nil }
            var host = String(rest[..<colon])
            if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
            self = .inet(host: host, port: port)
        } else {
            return nil
        }
    }

    public var description: String {
        switch self {
        case .unix(let path): "unix:\(path)"
        case .inet(let host, let port): "inet:\(port)@\(host)"
        }
    }

    /// As Postfix writes it, a unix path made relative to a chroot when it lies inside it.
    func postfixText(chroot: String?) -> String {
        switch self {
        case .unix(let path):
            if let chroot, let inside = Self.inside(path, chroot) { return "unix:" + inside }
            return "unix:" + path
        case .inet(let host, let port): return "inet:" + (host.contains(":") ? "[\(host)]" : host) + ":\(port)"
        }
    }

    /// `path` relative to `root` (with a leading slash), when it lies below it.
    static func inside(_ path: String, _ root: String) -> String? {
        let base = root.hasSuffix("/") ? String(root.dropLast()) : root
        guard path.hasPrefix(base + "/") else { return nil }
        return String(path.dropFirst(base.count))
    }
}

/// One master.cf service, from `postconf -M`.
public struct MasterService: Sendable, Equatable {
    public var name: String
    public var type: String
    public var chroot: Bool
    public var command: String
    /// `-o name=value` overrides.
    public var overrides: [String: String]

    /// Parses `postconf -M` output (one service per line).
    public static func parse(_ text: String) -> [MasterService] {
        text.split(whereSeparator: \.isNewline).compactMap { line in
            let words = line.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
            guard words.count >= 8, !words[0].hasPrefix("#") else { return nil }
            var overrides: [String: String] = [:]
            var i = 8
            while i < words.count {
                if words[i] == "-o", i + 1 < words.count, let eq = words[i + 1].firstIndex(of: "=") {
                    overrides[String(words[i + 1][..<eq])] = String(words[i + 1][words[i + 1].index(after: eq)...])
                    i += 2
                } else {
                    i += 1
                }
            }
            // Column 5: "y", "n", or "-" (the default, "n" since Postfix 3.0).
            return MasterService(name: words[0], type: words[1], chroot: words[4] == "y", command: words[7],
                                 overrides: overrides)
        }
    }
}

/// What the filesystem says about a unix socket, for the MTA's user.
public enum SocketAccess: Sendable, Equatable {
    case missing
    case notASocket
    case notAccessible(String)
    case accessible
}

/// Looks at sockets and files; a protocol so the judgment can be tested without them.
public protocol WiringEnvironment: Sendable {
    /// Can `user` (by its uid and primary group: Postfix drops to mail_owner with setgid and
    /// setgroups of that one group, no supplementary groups) connect to the socket at `path`?
    func socketAccess(_ path: String, user: String) -> SocketAccess
    func contents(of path: String) -> String?
    func modificationDate(of path: String) -> Date?
}

/// The real filesystem.
public struct LiveWiringEnvironment: WiringEnvironment {
    public init() {}

    public func socketAccess(_ path: String, user: String) -> SocketAccess {
        var info = stat()
        guard stat(path, &info) == 0 else { return .missing }
        guard (info.st_mode & S_IFMT) == S_IFSOCK else { return .notASocket }
        guard let entry = getpwnam(user) else { return .notAccessible("no user \(user) on this machine") }
        let uid = entry.pointee.pw_uid, gid = entry.pointee.pw_gid
        if uid == 0 { return .accessible }
        func allowed(_ info: stat, _ bits: (user: mode_t, group: mode_t, other: mode_t)) -> Bool {
            if info.st_uid == uid { return info.st_mode & bits.user != 0 }
            if info.st_gid == gid { return info.st_mode & bits.group != 0 }
            return info.st_mode & bits.other != 0
        }
        // Every directory on the way must be searchable.
        var directory = (path as NSString).deletingLastPathComponent
        while !directory.isEmpty {
            var dirInfo = stat()
            if stat(directory, &dirInfo) == 0, !allowed(dirInfo, (S_IXUSR, S_IXGRP, S_IXOTH)) {
                return .notAccessible("\(user) cannot search the directory \(directory) (mode \(String(dirInfo.st_mode & 0o7777, radix: 8)))")
            }
            if directory == "/" { break }
            directory = (directory as NSString).deletingLastPathComponent
        }
        guard allowed(info, (S_IWUSR, S_IWGRP, S_IWOTH)) else {
            let owner = getpwuid(info.st_uid).map { String(cString: $0.pointee.pw_name) } ?? String(info.st_uid)
            let group = getgrgid(info.st_gid).map { String(cString: $0.pointee.gr_name) } ?? String(info.st_gid)
            return .notAccessible("the socket is \(owner):\(group) mode \(String(info.st_mode & 0o777, radix: 8)): \(user) may not write to it")
        }
        return .accessible
    }

    public func contents(of path: String) -> String? { try? String(contentsOfFile: path, encoding: .utf8) }

    public func modificationDate(of path: String) -> Date? {
        (try? FileManager.default.attributesOfItem(atPath: path))?[.modificationDate] as? Date
    }
}

public enum PostfixWiring {
    /// What `postconf` says: every main.cf parameter (expanded) and the master.cf services.
    public struct Configuration: Sendable {
        public var directory: String
        public var parameters: [String: String]
        public var services: [MasterService]

        public init(directory: String, parameters: [String: String], services: [MasterService]) {
            self.directory = directory
            self.parameters = parameters
            self.services = services
        }

        /// Runs `postconf -c DIR -x` and `postconf -c DIR -M`.
        public static func read(directory: String) throws -> Configuration {
            let main = try Subprocess.run(["postconf", "-c", directory, "-x"], timeout: 30)
            guard main.status == 0 else { throw SubprocessError("postconf -c \(directory): \(main.error)") }
            let master = try Subprocess.run(["postconf", "-c", directory, "-M"], timeout: 30)
            guard master.status == 0 else { throw SubprocessError("postconf -c \(directory) -M: \(master.error)") }
            var parameters: [String: String] = [:]
            for line in main.output.split(whereSeparator: \.isNewline) {
                guard let eq = line.range(of: " = ") ?? line.range(of: " =") else { continue }
                parameters[String(line[..<eq.lowerBound])] = String(line[eq.upperBound...]).trimmingCharacters(in: .whitespaces)
            }
            return Configuration(directory: directory, parameters: parameters, services: MasterService.parse(master.output))
        }

        public subscript(_ name: String) -> String { parameters[name] ?? "" }

        /// A parameter as a service sees it (its -o override, else main.cf).
        func value(_ name: String, for service: MasterService) -> String { service.overrides[name] ?? self[name] }

        var queueDirectory: String { self["queue_directory"].isEmpty ? "/var/spool/postfix" : self["queue_directory"] }

        /// The services running `command` (smtpd, smtp, trivial-rewrite).
        func services(running command: String) -> [MasterService] { services.filter { $0.command == command } }
    }

    /// The `postconf` that edits this configuration.
    static func postconf(_ configuration: Configuration) -> String {
        configuration.directory == "/etc/postfix" ? "postconf" : "postconf -c \(configuration.directory)"
    }

    /// Checks the wiring for `set`. `milterSocket` / `mapsSocket`: the daemon's endpoints;
    /// `policyPath` for the export command in a fix.
    public static func check(_ configuration: Configuration, set: PolicySet, milterSocket: MilterEndpoint,
                             mapsSocket: MilterEndpoint?, policyPath: String,
                             environment: WiringEnvironment = LiveWiringEnvironment()) -> [WiringFinding] {
        var findings: [WiringFinding] = []
        let edit = postconf(configuration) + " -e"
        let user = configuration["mail_owner"].isEmpty ? "postfix" : configuration["mail_owner"]
        let queue = configuration.queueDirectory

        // The milter line of every SMTP server.
        let servers = configuration.services(running: "smtpd").filter { $0.type == "inet" }
        for server in servers.isEmpty ? [MasterService(name: "smtp", type: "inet", chroot: false, command: "smtpd", overrides: [:])] : servers {
            let value = configuration.value("smtpd_milters", for: server)
            let chroot = server.chroot ? queue : nil
            let endpoints = milterEntries(value).compactMap { MilterEndpoint(postfix: $0.endpoint) }
            let resolved = endpoints.map { endpoint -> MilterEndpoint in
                if case .unix(let path) = endpoint, let chroot { return .unix(path: chroot + path) }
                return endpoint
            }
            let label = servers.count > 1 || server.name != "smtp" ? " (master.cf service \(server.name))" : ""
            let wanted = milterSocket.postfixText(chroot: chroot)
            if !resolved.contains(milterSocket) {
                var fix: [String] = []
                if case .unix(let path) = milterSocket, let chroot, MilterEndpoint.inside(path, chroot) == nil {
                    fix.append("run the daemon with --socket unix:\(queue)/connector-milter/milter.sock (smtpd is chrooted "
                               + "in \(queue) and cannot reach \(path)), then \(edit) 'smtpd_milters = unix:/connector-milter/milter.sock'")
                    fix.append("or: \(postconf(configuration)) -F '\(server.name)/inet/chroot = n' && \(edit) 'smtpd_milters = \(wanted)'")
                } else if server.overrides["smtpd_milters"] != nil {
                    fix.append("\(postconf(configuration)) -P '\(server.name)/inet/smtpd_milters = \(wanted)'")
                } else {
                    fix.append("\(edit) 'smtpd_milters = \(wanted)'")
                }
                let seen = value.isEmpty ? "is empty" : "is \"\(value)\""
                let chrootNote = chroot.map { " (smtpd is chrooted: unix: paths are relative to \($0))" } ?? ""
                findings.append(WiringFinding("smtpd_milters\(label) \(seen), which does not name the daemon's socket "
                                              + "\(milterSocket)\(chrootNote)", fix: fix))
            }
            for entry in milterEntries(value) where entry.settings["default_action"].map({ $0 != "tempfail" }) ?? false {
                findings.append(WiringFinding("smtpd_milters\(label): \(entry.endpoint) has default_action = "
                                              + "\(entry.settings["default_action"]!): mail passes unjudged when the daemon is down",
                                              fix: ["\(edit) 'smtpd_milters = \(wanted)'"]))
            }
        }

        if case .unix(let path) = milterSocket {
            switch environment.socketAccess(path, user: user) {
            case .accessible: break
            case .missing:
                findings.append(WiringFinding("the daemon's socket \(path) does not exist: the daemon is not running, or "
                                              + "listens elsewhere", fix: ["systemctl start connector-milter (or run it with "
                                                                           + "--socket unix:\(path) --group postfix)"]))
            case .notASocket:
                findings.append(WiringFinding("\(path) is not a socket", fix: ["remove it and restart the daemon"]))
            case .notAccessible(let why):
                findings.append(WiringFinding("Postfix (user \(user)) cannot connect to \(path): \(why)",
                                              fix: ["run the daemon with --group \(Self.primaryGroup(of: user) ?? "postfix") "
                                                    + "(it makes the socket mode 0660 for that group)",
                                                    "or: chgrp \(Self.primaryGroup(of: user) ?? "postfix") \(path) && chmod 0660 \(path)"]))
            }
        }

        let action = configuration["milter_default_action"]
        if action != "tempfail" {
            findings.append(WiringFinding("milter_default_action = \(action): when the daemon is down or slow, mail "
                                          + (action == "accept" ? "is accepted unjudged" : "is not retried as it should be")
                                          + "; tempfail makes senders retry", fix: ["\(edit) 'milter_default_action = tempfail'"]))
        }
        let protocolVersion = configuration["milter_protocol"]
        if protocolVersion != "6" {
            findings.append(WiringFinding("milter_protocol = \(protocolVersion): the daemon asks for its macros "
                                          + "(SMFIF_SETSYMLIST), which needs protocol 6", fix: ["\(edit) 'milter_protocol = 6'"]))
        }

        let policy = set.policy
        let inbound = policy.connectors.filter { $0.enabled && $0.direction == .inbound }
        let certificateConnectors = inbound.filter { $0.tlsSenderCertificateName != nil }
        if !certificateConnectors.isEmpty {
            let names = certificateConnectors.map { "\"\($0.name)\"" }.joined(separator: ", ")
            if configuration["smtpd_tls_ask_ccert"] != "yes" {
                findings.append(WiringFinding("smtpd_tls_ask_ccert = \(configuration["smtpd_tls_ask_ccert"]): Postfix asks no "
                                              + "client certificate, so \(names) can never identify a client",
                                              fix: ["\(edit) 'smtpd_tls_ask_ccert = yes'"]))
            }
            if configuration["smtpd_tls_CAfile"].isEmpty && configuration["smtpd_tls_CApath"].isEmpty {
                findings.append(WiringFinding("smtpd_tls_CAfile and smtpd_tls_CApath are empty: Postfix verifies no client "
                                              + "certificate and passes no name, so \(names) can never identify a client",
                                              fix: ["\(edit) 'smtpd_tls_CAfile = /etc/ssl/certs/ca-certificates.crt'"]))
            }
        }
        if inbound.contains(where: { $0.requireTls || $0.tlsSenderCertificateName != nil }),
           ["", "none"].contains(configuration["smtpd_tls_security_level"]) {
            findings.append(WiringFinding("smtpd_tls_security_level = \(configuration["smtpd_tls_security_level"].isEmpty ? "(empty)" : configuration["smtpd_tls_security_level"]): "
                                          + "Postfix offers no STARTTLS, so connectors that require TLS or a certificate refuse all their mail",
                                          fix: ["\(edit) 'smtpd_tls_security_level = may'"]))
        }

        findings += relayControl(configuration, set: set)
        findings += outbound(configuration, set: set, mapsSocket: mapsSocket, policyPath: policyPath, environment: environment)
        return findings
    }

    /// Postfix's own relay control, as docs/relay-control.md sets it up: who may relay is the
    /// daemon's policy answer, mynetworks is the host itself, the accepted domains come from the
    /// policy, and a daemon that does not answer tempfails relaying.
    static func relayControl(_ configuration: Configuration, set: PolicySet) -> [WiringFinding] {
        var findings: [WiringFinding] = []
        let edit = postconf(configuration) + " -e"
        let restrictionsFix = "\(edit) 'smtpd_relay_restrictions = permit_mynetworks, permit_sasl_authenticated, "
            + "check_policy_service unix:/connector-milter/policy.sock, reject_unauth_destination'"
        let restrictions = words(configuration["smtpd_relay_restrictions"])
        let policyCheck = restrictions.firstIndex { $0 == "check_policy_service" }
        let destinationCheck = restrictions.firstIndex { $0 == "reject_unauth_destination" || $0 == "defer_unauth_destination" }
        if policyCheck == nil {
            findings.append(WiringFinding("smtpd_relay_restrictions has no check_policy_service: Postfix refuses the "
                                          + "onPremises connectors' relaying before the milter sees it (454 4.7.1 Relay access denied)",
                                          fix: [restrictionsFix]))
        } else if let policyCheck, let destinationCheck, destinationCheck < policyCheck {
            findings.append(WiringFinding("smtpd_relay_restrictions asks the policy service after \(restrictions[destinationCheck]): "
                                          + "the daemon is never asked about relaying", fix: [restrictionsFix]))
        }
        let hostOnly: Set<String> = ["127.0.0.0/8", "127.0.0.1", "127.0.0.1/32", "[::1]/128", "[::1]", "[::ffff:127.0.0.0]/104"]
        let networks = words(configuration["mynetworks"])
        let others = networks.filter { !hostOnly.contains($0) }
        if !others.isEmpty {
            findings.append(WiringFinding("mynetworks holds \(others.joined(separator: " ")): those hosts relay whatever the "
                                          + "policy says, and still do with the milter line removed; name your servers in an "
                                          + "onPremises connector instead", fix: ["\(edit) 'mynetworks = 127.0.0.0/8 [::1]/128'"]))
        }
        let defaultAction = configuration["smtpd_policy_service_default_action"]
        if policyCheck != nil, !defaultAction.hasPrefix("4") {
            findings.append(WiringFinding("smtpd_policy_service_default_action = \(defaultAction.isEmpty ? "(empty)" : defaultAction): "
                                          + "with the daemon down, relaying must tempfail",
                                          fix: ["\(edit) 'smtpd_policy_service_default_action = 451 4.3.5 Relay control unavailable, try again later'"]))
        }
        let relayDomains = configuration["relay_domains"]
        let fromPolicy = relayDomains.contains(":relay-domains") || relayDomains.contains("relay_domains")
        if !set.policy.acceptedDomains.isEmpty && !fromPolicy {
            findings.append(WiringFinding("relay_domains = \(relayDomains.isEmpty ? "(empty)" : relayDomains) does not come "
                                          + "from the policy: mail for the accepted domains outside mydestination is refused as relaying",
                                          fix: ["\(edit) 'relay_domains = socketmap:unix:/connector-milter/maps.sock:relay-domains'",
                                                "or: connector-milter export postfix and its relay_domains table"]))
        }
        return findings
    }

    /// The socketmap lines (or exported tables) outbound connectors need.
    static func outbound(_ configuration: Configuration, set: PolicySet, mapsSocket: MilterEndpoint?, policyPath: String,
                         environment: WiringEnvironment) -> [WiringFinding] {
        let outbound = set.policy.connectors.filter { $0.enabled && $0.direction == .outbound }
        let needsTLS = outbound.contains { $0.tlsSettings != nil }
        let needsTransport = outbound.contains { !$0.smartHosts.isEmpty }
        guard needsTLS || needsTransport else { return [] }
        var findings: [WiringFinding] = []
        let edit = postconf(configuration) + " -e"
        let queue = configuration.queueDirectory
        let maps = mapsSocket ?? .unix(path: queue + "/connector-milter/maps.sock")

        // parameter, socketmap name, the Postfix program that reads it, needed.
        let lines: [(String, OutboundMapName, String, Bool)] = [
            ("smtp_tls_policy_maps", .tlsPolicy, "smtp", needsTLS),
            ("transport_maps", .transport, "trivial-rewrite", needsTransport),
        ]
        var staticTables: [(parameter: String, path: String)] = []
        for (parameter, name, program, needed) in lines where needed {
            let value = configuration[parameter]
            let tables = value.split(whereSeparator: { $0 == "," || $0 == " " || $0 == "\t" }).map(String.init)
            let chrooted = configuration.services(running: program).contains { $0.chroot }
            let chroot = chrooted ? queue : nil
            let wanted = "socketmap:\(maps.postfixText(chroot: chroot)):\(name.rawValue)"
            let socketmaps = tables.compactMap { table -> MilterEndpoint? in
                guard let rest = table.dropPrefixCaseless("socketmap:"), rest.hasSuffix(":" + name.rawValue) else { return nil }
                guard let endpoint = MilterEndpoint(postfix: String(rest.dropLast(name.rawValue.count + 1))) else { return nil }
                if case .unix(let path) = endpoint, let chroot { return .unix(path: chroot + path) }
                return endpoint
            }
            let exported = tables.compactMap { table -> String? in
                for type in ["hash:", "lmdb:", "btree:", "cdb:", "texthash:"] {
                    if let path = table.dropPrefixCaseless(type), (path as NSString).lastPathComponent == (name == .tlsPolicy ? "tls_policy" : "transport") {
                        return path
                    }
                }
                return nil
            }
            if socketmaps.contains(maps) { continue }
            if let path = exported.first {
                staticTables.append((parameter, path))
                continue
            }
            let what = name == .tlsPolicy ? "the outbound connectors' tlsSettings are never applied (Postfix uses "
                + "smtp_tls_security_level for every destination)" : "smart hosts are never used (Postfix delivers by MX or relayhost)"
            let others = value.isEmpty ? "" : ", " + value
            findings.append(WiringFinding("\(parameter) \(value.isEmpty ? "is empty" : "is \"\(value)\""): \(what)",
                                          fix: ["\(edit) '\(parameter) = \(wanted)\(others)'",
                                                "and run the daemon with --maps-socket \(maps)"]))
            if chrooted, case .unix(let path) = maps, MilterEndpoint.inside(path, queue) == nil {
                findings.append(WiringFinding("\(program) is chrooted in \(queue) and cannot reach \(path)",
                                              fix: ["run the daemon with --maps-socket unix:\(queue)/connector-milter/maps.sock"]))
            }
        }
        if !staticTables.isEmpty {
            findings += staleExport(staticTables, configuration: configuration, set: set, policyPath: policyPath,
                                    environment: environment)
        } else if case .unix(let path) = maps {
            let user = configuration["mail_owner"].isEmpty ? "postfix" : configuration["mail_owner"]
            switch environment.socketAccess(path, user: user) {
            case .accessible: break
            case .missing, .notASocket:
                findings.append(WiringFinding("the daemon's socketmap \(path) does not exist: lookups fail and Postfix defers "
                                              + "the connectors' mail", fix: ["run the daemon with --maps-socket unix:\(path)"]))
            case .notAccessible(let why):
                findings.append(WiringFinding("Postfix (user \(user)) cannot connect to the socketmap \(path): \(why)",
                                              fix: ["run the daemon with --group \(Self.primaryGroup(of: user) ?? "postfix")"]))
            }
        }
        if outbound.contains(where: { $0.tlsSettings == .certificateValidation || $0.tlsSettings == .domainValidation }),
           configuration["smtp_tls_CAfile"].isEmpty, configuration["smtp_tls_CApath"].isEmpty {
            findings.append(WiringFinding("smtp_tls_CAfile and smtp_tls_CApath are empty: no server certificate is ever "
                                          + "trusted, so certificateValidation and domainValidation connectors defer all their mail",
                                          fix: ["\(edit) 'smtp_tls_CAfile = /etc/ssl/certs/ca-certificates.crt'"]))
        }
        return findings
    }

    /// Exported tables compared with a fresh export: the keys and values (comments aside),
    /// and the postmap'ed file no older than its source.
    static func staleExport(_ tables: [(parameter: String, path: String)], configuration: Configuration, set: PolicySet,
                            policyPath: String, environment: WiringEnvironment) -> [WiringFinding] {
        var findings: [WiringFinding] = []
        for (parameter, path) in tables {
            let directory = (path as NSString).deletingLastPathComponent
            let name = (path as NSString).lastPathComponent
            let fresh = OutboundExport.postfix(set, source: policyPath, directory: directory).first { $0.name == name }
            let postmap = postconf(configuration).replacingOccurrences(of: "postconf", with: "postmap")
            let postfix = postconf(configuration).replacingOccurrences(of: "postconf", with: "postfix")
            let exportFix = "connector-milter export postfix --config \(policyPath) --output \(directory) && \(postmap) "
                + "\(directory)/tls_policy && \(postmap) \(directory)/transport && \(postfix) reload"
            guard let current = environment.contents(of: path) else {
                findings.append(WiringFinding("\(parameter) names \(path), which does not exist", fix: [exportFix]))
                continue
            }
            if entries(current) != entries(fresh?.contents ?? "") {
                findings.append(WiringFinding("\(path) (\(parameter)) is stale: it differs from what the policy "
                                              + "\(policyPath) exports now", fix: [exportFix]))
                continue
            }
            let tables = configuration[parameter].split(whereSeparator: { $0 == "," || $0 == " " || $0 == "\t" })
            let type = tables.first { $0.hasSuffix(":" + path) }.map { String($0.dropLast(path.count + 1)) } ?? ""
            if ["hash", "btree", "lmdb", "cdb"].contains(type), let source = environment.modificationDate(of: path) {
                let suffix = type == "lmdb" ? ".lmdb" : type == "cdb" ? ".cdb" : ".db"
                let built = environment.modificationDate(of: path + suffix)
                if built.map({ $0 < source }) ?? true {
                    findings.append(WiringFinding("\(path)\(suffix) is \(built == nil ? "missing" : "older than \(path)"): "
                                                  + "Postfix reads the postmap'ed file", fix: [postconf(configuration).replacingOccurrences(of: "postconf", with: "postmap") + " " + path]))
                }
            }
        }
        return findings
    }

    /// The `key value` lines of a table, without comments and blank lines.
    /// A Postfix list value's words: separated by commas and white space.
    static func words(_ value: String) -> [String] {
        value.split(whereSeparator: { $0 == "," || $0 == " " || $0 == "\t" || $0 == "\n" }).map(String.init)
    }

    static func entries(_ text: String) -> [String] {
        text.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }
            .filter { !$0.isEmpty && !$0.hasPrefix("#") }
            .map { $0.split(whereSeparator: { $0 == " " || $0 == "\t" }).joined(separator: " ") }
    }

    /// smtpd_milters entries: `unix:/x` or `{ unix:/x, default_action = accept }`.
    static func milterEntries(_ value: String) -> [(endpoint: String, settings: [String: String])] {
        var entries: [(String, [String: String])] = []
        var rest = Substring(value)
        while !rest.isEmpty {
            rest = rest.drop { $0 == " " || $0 == "," || $0 == "\t" }
            guard !rest.isEmpty else { break }
            if rest.first == "{" {
                let close = rest.firstIndex(of: "}") ?? rest.endIndex
                let inside = rest[rest.index(after: rest.startIndex)..<close]
                rest = close < rest.endIndex ? rest[rest.index(after: close)...] : ""
                let parts = inside.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
                guard let endpoint = parts.first else { continue }
                var settings: [String: String] = [:]
                for part in parts.dropFirst() {
                    if let eq = part.firstIndex(of: "=") {
                        settings[part[..<eq].trimmingCharacters(in: .whitespaces)] = part[part.index(after: eq)...].trimmingCharacters(in: .whitespaces)
                    }
                }
                entries.append((endpoint, settings))
            } else {
                let end = rest.firstIndex { $0 == " " || $0 == "," || $0 == "\t" } ?? rest.endIndex
                entries.append((String(rest[..<end]), [:]))
                rest = rest[end...]
            }
        }
        return entries
    }

    static func primaryGroup(of user: String) -> String? {
        guard let entry = getpwnam(user), let group = getgrgid(entry.pointee.pw_gid) else { return nil }
        return String(cString: group.pointee.gr_name)
    }
}

public enum SendmailWiring {
    /// Checks a compiled sendmail.cf: a mail filter on the daemon's socket, in
    /// InputMailFilters, with F=T (tempfail when it is unreachable); the socket there; a CA
    /// for certificate connectors.
    public static func check(cf text: String, cfPath: String, set: PolicySet, milterSocket: MilterEndpoint,
                             environment: WiringEnvironment = LiveWiringEnvironment()) -> [WiringFinding] {
        var findings: [WiringFinding] = []
        var filters: [String: [String: String]] = [:]
        var input: [String] = []
        var options: [String: String] = [:]
        for raw in text.split(whereSeparator: \.isNewline) {
            let line = String(raw)
            if line.hasPrefix("X"), let comma = line.firstIndex(of: ",") {
                let name = String(line[line.index(after: line.startIndex)..<comma])
                var equates: [String: String] = [:]
                // `Xname, S=unix:/p, F=T, T=C:10s;S:10s`
                for part in line[line.index(after: comma)...].split(separator: ",") {
                    let item = part.trimmingCharacters(in: .whitespaces)
                    if let eq = item.firstIndex(of: "=") { equates[String(item[..<eq])] = String(item[item.index(after: eq)...]) }
                }
                filters[name] = equates
            } else if let rest = line.dropPrefix("O ") {
                if let eq = rest.firstIndex(of: "=") {
                    options[String(rest[..<eq])] = String(rest[rest.index(after: eq)...])
                }
            }
        }
        input = (options["InputMailFilters"] ?? "").split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
        let mcLine = "INPUT_MAIL_FILTER(`connector-milter', `S=\(milterSocket), F=T, T=S:30s;R:1m;E:5m')dnl"
        let rebuild = "then rebuild \(cfPath) from its .mc (m4, or make -C /etc/mail) and restart sendmail"
        let ours = filters.filter { MilterEndpoint(libmilter: $0.value["S"] ?? "") == milterSocket }
        if ours.isEmpty {
            let seen = filters.isEmpty ? "no mail filter" : "mail filters " + filters.map { "\($0.key) (S=\($0.value["S"] ?? ""))" }.sorted().joined(separator: ", ")
            findings.append(WiringFinding("\(cfPath) has \(seen), none on the daemon's socket \(milterSocket)",
                                          fix: ["add to the .mc: " + mcLine, rebuild]))
        }
        for (name, equates) in ours.sorted(by: { $0.key < $1.key }) {
            if !input.contains(name) {
                findings.append(WiringFinding("mail filter \(name) is defined but not in O InputMailFilters "
                                              + "(\(input.joined(separator: ","))): Sendmail never calls it",
                                              fix: ["use INPUT_MAIL_FILTER (not MAIL_FILTER) in the .mc: " + mcLine, rebuild]))
            }
            let flags = equates["F"] ?? ""
            if !flags.contains("T") {
                let what = flags.contains("R") ? "F=R rejects all mail" : "without F=T or F=R Sendmail accepts mail unjudged"
                findings.append(WiringFinding("mail filter \(name) has F=\(flags): when the daemon is down \(what); "
                                              + "F=T tempfails, so senders retry", fix: ["in the .mc: " + mcLine, rebuild]))
            }
        }
        if case .unix(let path) = milterSocket {
            // Sendmail's daemon runs as root when it calls the filter.
            switch environment.socketAccess(path, user: "root") {
            case .accessible: break
            case .missing, .notASocket:
                findings.append(WiringFinding("the daemon's socket \(path) does not exist", fix: ["start the daemon with --socket unix:\(path)"]))
            case .notAccessible(let why):
                findings.append(WiringFinding("Sendmail cannot connect to \(path): \(why)", fix: ["start the daemon with --socket unix:\(path)"]))
            }
        }
        let certificateConnectors = set.policy.connectors.filter { $0.enabled && $0.direction == .inbound && $0.tlsSenderCertificateName != nil }
        if !certificateConnectors.isEmpty && (options["CACertFile"] ?? "").isEmpty && (options["CACertPath"] ?? "").isEmpty {
            findings.append(WiringFinding("O CACertFile is not set: Sendmail verifies no client certificate, so "
                                          + certificateConnectors.map { "\"\($0.name)\"" }.joined(separator: ", ")
                                          + " can never identify a client",
                                          fix: ["in the .mc: define(`confCACERT', `/etc/ssl/certs/ca-certificates.crt')dnl", rebuild]))
        }
        let outbound = set.policy.connectors.filter { $0.enabled && $0.direction == .outbound }
        if outbound.contains(where: { $0.tlsSettings != nil }) && !text.contains("\nKaccess ") {
            findings.append(WiringFinding("no access map (FEATURE(`access_db')): the outbound connectors' TLS_Rcpt: entries "
                                          + "are never read", fix: ["connector-milter export sendmail --output DIR, and add "
                                                                    + "its sendmail.mc.snippet to the .mc", rebuild]))
        }
        if outbound.contains(where: { !$0.smartHosts.isEmpty }) && !text.contains("\nKmailertable ") {
            findings.append(WiringFinding("no mailertable (FEATURE(`mailertable')): smart hosts are never used",
                                          fix: ["connector-milter export sendmail --output DIR, and add its "
                                                + "sendmail.mc.snippet to the .mc", rebuild]))
        }
        return findings
    }
}

extension String {
    func dropPrefixCaseless(_ prefix: String) -> String? {
        lowercased().hasPrefix(prefix.lowercased()) ? String(dropFirst(prefix.count)) : nil
    }
}
