// A clean Debian 12 root with systemd as its PID 1, for the package install test.
//
// The root comes from mmdebstrap (minbase plus systemd and rsyslog) out of this machine's own
// apt sources, cached as a tarball and unpacked afresh per test. Packages are fetched into the
// root's apt cache while it still shares the host's network, then installed with apt once
// systemd runs inside (so the maintainer scripts meet a running systemd, as on a real host).
// systemd boots in new PID, mount, UTS and network namespaces (only `lo` inside: an MTA on
// port 25 there never meets the host's), with the root bind-mounted onto itself so that
// systemd can build the per-unit namespaces of the unit's sandboxing options. It is stopped
// with kill -9 of that PID 1, which ends every process of its PID namespace.

import Foundation
import Glibc

/// The package under test, built once per test process with `make deb` (incremental: a
/// no-op rebuild of the release binary when nothing changed).
enum DebianPackage {
    private static let lock = NSLock()
    nonisolated(unsafe) private static var built: Result<String, LabError>?

    /// The path of connector-milter_VERSION_amd64.deb. CONNECTOR_DEB names a prebuilt one.
    static func path() throws -> String {
        if let given = ProcessInfo.processInfo.environment["CONNECTOR_DEB"], !given.isEmpty { return given }
        lock.lock()
        defer { lock.unlock() }
        if built == nil {
            do {
                let result = try LabProcess.run(["make", "-C", LabPaths.repositoryRoot, "deb"], timeout: 1800)
                let last = result.output.split(separator: "\n").last { $0.hasSuffix(".deb") }.map(String.init) ?? ""
                if result.succeeded, last.hasSuffix(".deb"), FileManager.default.fileExists(atPath: last) {
                    built = .success(last)
                } else {
                    built = .failure(LabError("`make deb` exited \(result.status):\n\(result.output.suffix(4000))"))
                }
            } catch let error as LabError {
                built = .failure(error)
            }
        }
        return try built!.get()
    }

    /// "connector-milter_0.1.0_amd64.deb" -> "0.1.0".
    static func version(of path: String) -> String {
        let name = (path as NSString).lastPathComponent
        let parts = name.split(separator: "_")
        return parts.count == 3 ? String(parts[1]) : ""
    }
}

final class CleanRoot {
    /// What every root starts with; the cache file is keyed on it.
    static let suite = "bookworm"
    static let includes = ["systemd", "systemd-sysv", "dbus", "rsyslog"]
    static let cacheDirectory = "/var/cache/connector-milter-cleanroot"
    static let hostname = "mx.example.test"

    let directory: String
    var root: String { directory + "/root" }
    private var unsharePID: pid_t?
    /// systemd, PID 1 inside; its host PID.
    private(set) var systemdPID: pid_t?

    private init(directory: String) {
        self.directory = directory
    }

    /// A fresh copy of the cached root, with the packages downloaded into its apt cache
    /// (`debconf` answers first, for packages that ask). `copying` goes into /root.
    static func make(name: String, packages: [String], debconf: [String] = [], hosts: [String] = [],
                     copying file: String) throws -> CleanRoot {
        try LabProcess.requireRoot()
        for (tool, package) in [("mmdebstrap", "mmdebstrap"), ("unshare", "util-linux"), ("nsenter", "util-linux"), ("ip", "iproute2")] {
            _ = try LabProcess.require(tool, package: package)
        }
        let image = try cachedImage()
        let directory = "/tmp/connector-cleanroot-\(name)-\(getpid())"
        try? FileManager.default.removeItem(atPath: directory)
        try FileManager.default.createDirectory(atPath: directory + "/root", withIntermediateDirectories: true)
        let clean = CleanRoot(directory: directory)
        try LabProcess.check(["tar", "-C", clean.root, "-xf", image], timeout: 120)

        try FileManager.default.removeItem(atPath: clean.root + "/etc/resolv.conf")
        try FileManager.default.copyItem(atPath: "/etc/resolv.conf", toPath: clean.root + "/etc/resolv.conf")
        try (hostname + "\n").write(toFile: clean.root + "/etc/hostname", atomically: true, encoding: .utf8)
        let hostsFile = (["127.0.0.1 \(hostname) mx localhost", "::1 localhost ip6-localhost"] + hosts).joined(separator: "\n") + "\n"
        try hostsFile.write(toFile: clean.root + "/etc/hosts", atomically: true, encoding: .utf8)
        // No terminals here: a getty would wait 90 s for a serial device that never comes.
        try LabProcess.check(["chroot", clean.root, "systemctl", "mask", "getty.target", "serial-getty@.service", "console-getty.service"])
        try FileManager.default.copyItem(atPath: file, toPath: clean.root + "/root/" + (file as NSString).lastPathComponent)
        if !debconf.isEmpty {
            try LabProcess.check(["chroot", clean.root, "debconf-set-selections"], stdin: debconf.joined(separator: "\n") + "\n")
        }
        try LabProcess.check(["chroot", clean.root, "apt-get", "update", "-q"], timeout: 300)
        try LabProcess.check(["chroot", clean.root, "apt-get", "install", "-y", "-q", "--no-install-recommends", "--download-only"]
                             + packages, environment: ["DEBIAN_FRONTEND": "noninteractive"], timeout: 600)
        return clean
    }

    /// The cached minbase root, made with mmdebstrap when absent (about a minute).
    static func cachedImage() throws -> String {
        let image = "\(cacheDirectory)/\(suite)-minbase-\(includes.joined(separator: "+")).tar"
        if FileManager.default.fileExists(atPath: image) { return image }
        try FileManager.default.createDirectory(atPath: cacheDirectory, withIntermediateDirectories: true)
        let sources = try FileManager.default.contentsOfDirectory(atPath: "/etc/apt/sources.list.d")
            .filter { $0.hasSuffix(".sources") || $0.hasSuffix(".list") }.sorted()
            .map { "/etc/apt/sources.list.d/" + $0 }
            + (FileManager.default.fileExists(atPath: "/etc/apt/sources.list") ? ["/etc/apt/sources.list"] : [])
        guard !sources.isEmpty else { throw LabError("no apt sources under /etc/apt: mmdebstrap has nothing to build the clean root from") }
        // Written aside and renamed: a run cut short never leaves a half tarball as the cache.
        // (mmdebstrap picks its output format from the name: it must end in .tar.)
        let partial = "\(cacheDirectory)/partial-\(getpid())-\((image as NSString).lastPathComponent)"
        defer { unlink(partial) }
        try LabProcess.check(["mmdebstrap", "--variant=minbase", "--mode=root", "--include=" + includes.joined(separator: ","),
                              suite, partial] + sources, timeout: 900)
        guard rename(partial, image) == 0 else { throw LabError("cannot rename \(partial) to \(image)") }
        return image
    }

    /// Boots systemd as PID 1 of the root and waits until it has started its units.
    func boot() throws {
        let command = "ip link set lo up && mount --bind \(root) \(root) && mount -t proc proc \(root)/proc "
            + "&& hostname \(Self.hostname) && cd \(root) && exec chroot . /lib/systemd/systemd --system"
        let pid = try LabProcess.spawn(["unshare", "--pid", "--fork", "--mount", "--uts", "--net", "--propagation", "private",
                                        "sh", "-c", command], outputPath: directory + "/systemd.out")
        unsharePID = pid
        guard waitFor(timeout: 10, { self.childOf(pid) != nil }), let systemd = childOf(pid) else {
            throw LabError("systemd did not start in \(root):\n" + ((try? String(contentsOfFile: directory + "/systemd.out", encoding: .utf8)) ?? ""))
        }
        systemdPID = systemd
        var state = ""
        let settled = try waitFor(timeout: 90) {
            state = try self.run(["systemctl", "is-system-running"]).output.trimmingCharacters(in: .whitespacesAndNewlines)
            return state == "running" || state == "degraded"
        }
        if !settled { throw LabError("systemd in \(root) did not finish starting: \(state)") }
    }

    private func childOf(_ pid: pid_t) -> pid_t? {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/task/\(pid)/children", encoding: .utf8) else { return nil }
        guard let first = text.split(separator: " ").first, let child = pid_t(first) else { return nil }
        guard let comm = try? String(contentsOfFile: "/proc/\(child)/comm", encoding: .utf8), comm.hasPrefix("systemd") else { return nil }
        return child
    }

    /// Runs a command inside the booted root (its namespaces, chrooted).
    @discardableResult
    func run(_ arguments: [String], stdin: String? = nil, timeout: TimeInterval = 120) throws -> CommandResult {
        guard let systemdPID else { throw LabError("the root \(root) is not booted") }
        return try LabProcess.run(["nsenter", "-t", String(systemdPID), "-p", "-m", "-u", "-n", "chroot", root,
                                   "env", "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "DEBIAN_FRONTEND=noninteractive", "LANG=C"]
                                  + arguments, stdin: stdin, timeout: timeout)
    }

    /// Like `run`, but throws unless it exits 0.
    @discardableResult
    func check(_ arguments: [String], stdin: String? = nil, timeout: TimeInterval = 120) throws -> CommandResult {
        let result = try run(arguments, stdin: stdin, timeout: timeout)
        guard result.succeeded else {
            throw LabError("in the clean root: `\(arguments.joined(separator: " "))` exited \(result.status):\n\(result.output)")
        }
        return result
    }

    /// A shell command line inside the root.
    @discardableResult
    func shell(_ line: String) throws -> CommandResult { try check(["sh", "-c", line]) }

    /// A file of the root, read from the host's side (not for /run, /tmp: see `exists`).
    func read(_ path: String) -> String {
        (try? String(contentsOfFile: root + path, encoding: .utf8)) ?? ""
    }

    func write(_ path: String, _ text: String) throws {
        try text.write(toFile: root + path, atomically: false, encoding: .utf8)
    }

    /// Asked inside: /run there is systemd's tmpfs, which the host's side does not see.
    func exists(_ path: String) -> Bool {
        (try? run(["test", "-e", path]).succeeded) ?? false
    }

    /// The first reply to RCPT TO when swaks sends one message through the root's MTA on
    /// 127.0.0.1:25 (e.g. "250 2.1.5 Ok", "550 5.7.51 ..."), and the final reply of the
    /// transaction ("250 2.0.0 Ok: queued as ..." when accepted).
    /// A message through the root's MTA on 127.0.0.1:25, from `source` (an address on the
    /// root's loopback interface) when given.
    func send(from sender: String, to recipient: String, source: String? = nil) throws -> (rcpt: String, last: String, transcript: String) {
        let result = try run(["swaks", "--server", "127.0.0.1", "--port", "25", "--timeout", "30",
                              "--from", sender, "--to", recipient, "--h-Subject", "clean root test"]
                             + (source.map { ["--local-interface", $0] } ?? []))
        let lines = result.output.split(separator: "\n").map(String.init)
        var rcpt = ""
        var last = ""
        var afterRcpt = false
        for line in lines {
            if line.hasPrefix(" -> RCPT TO:") || line.hasPrefix("~> RCPT TO:") { afterRcpt = true; continue }
            if line.hasPrefix("<-  ") || line.hasPrefix("<** ") {
                let reply = String(line.dropFirst(4))
                if afterRcpt && rcpt.isEmpty { rcpt = reply }
                if !reply.hasPrefix("221") { last = reply }
            }
        }
        return (rcpt, last, result.output)
    }

    /// The root's /var/log/mail.log lines from connector-milter that carry a verdict.
    func verdictLines() -> [String] {
        read("/var/log/mail.log").split(separator: "\n").map(String.init)
            .filter { $0.contains(" connector-milter[") && $0.contains(": verdict=") }
    }

    /// Waits for a verdict line for this sender (rsyslog writes a moment later).
    func waitForVerdict(from sender: String, after count: Int = 0, timeout: TimeInterval = 10) -> String? {
        var found: String?
        _ = waitFor(timeout: timeout) {
            found = verdictLines().dropFirst(count).first { $0.contains("from=<\(sender)>") }
            return found != nil
        }
        return found
    }

    /// A host program in the root's network namespace (a minbase root has no iproute2).
    func inNetworkNamespace(_ arguments: [String]) throws {
        guard let systemdPID else { throw LabError("the root \(root) is not booted") }
        let result = try LabProcess.run(["nsenter", "-t", String(systemdPID), "-n"] + arguments, timeout: 30)
        guard result.status == 0 else { throw LabError("\(arguments.joined(separator: " ")): \(result.output)") }
    }

    /// systemd in the root mounts devtmpfs on its /dev, and devtmpfs is one file system for the
    /// whole machine: journald's `/dev/log -> /run/systemd/journal/dev-log` appears on the host
    /// too, pointing at nothing there. (A private tmpfs /dev breaks PrivateDevices= in the
    /// unit's namespace: "unit-root/dev: No such file or directory".) Remove that link once the
    /// root is down, so that the host's own /dev/log users (the labs) find the path free.
    static func removeJournalLink() {
        var buffer = [CChar](repeating: 0, count: 256)
        let length = readlink("/dev/log", &buffer, buffer.count - 1)
        guard length > 0 else { return }
        let target = String(decoding: buffer[0..<length].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        if target == "/run/systemd/journal/dev-log" && access("/dev/log", F_OK) != 0 { unlink("/dev/log") }
    }

    /// Stops systemd and with it every process of the root; removes the root unless kept.
    func stop(removeDirectory: Bool) {
        if let systemdPID { kill(systemdPID, SIGKILL) }
        if let unsharePID {
            kill(unsharePID, SIGKILL)
            _ = LabProcess.waitForExit(unsharePID, timeout: 10)
        }
        systemdPID = nil
        unsharePID = nil
        Self.removeJournalLink()
        if removeDirectory {
            // The bind mounts lived in the namespace that just ended; nothing is mounted here.
            _ = try? LabProcess.run(["rm", "-rf", "--one-file-system", directory], timeout: 120)
        }
    }
}
