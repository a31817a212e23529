import CMilter
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The milter process's one libmilter instance (libmilter allows one milter per process).
///
/// Order of use: `register`, `openSocket`, (drop privileges, load the policy), `main`.
/// libmilter calls the callbacks below from its worker threads and they hop into
/// `MilterBridge`, which holds every decision the bridge makes; only this file and the
/// `Libmilter` connection call `smfi_*`.
public enum MilterServer {
    // Written by `register` and `main` before `smfi_main` starts any thread; only read afterwards.
    nonisolated(unsafe) static var bridge: MilterBridge?

    /// Registers the filter with libmilter. Call once, before `openSocket`: libmilter needs
    /// the registration before it opens the socket, which is before the policy exists.
    public static func register(_ configuration: MilterConfiguration) throws {
        guard bridge == nil else { throw MilterServerError.alreadyRegistered }
        bridge = MilterBridge(configuration: configuration)

        var description = smfiDesc()
        description.xxfi_name = strdup(configuration.name)
        description.xxfi_version = SMFI_VERSION  // > 4, or libmilter never calls xxfi_negotiate
        description.xxfi_flags = configuration.actions.rawValue
        description.xxfi_connect = connectCallback
        description.xxfi_helo = heloCallback
        description.xxfi_envfrom = envelopeFromCallback
        description.xxfi_envrcpt = envelopeRecipientCallback
        description.xxfi_header = headerCallback
        description.xxfi_eom = endOfMessageCallback
        description.xxfi_abort = abortCallback
        description.xxfi_close = closeCallback
        description.xxfi_negotiate = negotiateCallback
        // No eoh, body, unknown or data callbacks: negotiation asks the MTA not to send those.
        let registered = smfi_register(description)
        free(description.xxfi_name)  // smfi_register copied it
        guard registered == MI_SUCCESS else { throw MilterServerError.call("smfi_register") }
        if let timeout = configuration.timeout, smfi_settimeout(Int32(clamping: timeout)) != MI_SUCCESS {
            throw MilterServerError.call("smfi_settimeout")
        }
        if let backlog = configuration.backlog, smfi_setbacklog(Int32(clamping: backlog)) != MI_SUCCESS {
            throw MilterServerError.call("smfi_setbacklog")
        }
    }

    /// Creates the listening socket now, so it can be chowned before privileges are dropped.
    /// `spec` is libmilter's: "unix:/path", "local:/path", "inet:PORT@HOST", "inet6:PORT@HOST".
    /// With `removeExisting`, libmilter unlinks whatever is at a unix path first: only pass
    /// true once the caller has made sure no live milter listens there.
    /// libmilter never chmods the socket: its mode comes from the umask.
    public static func openSocket(_ spec: String, removeExisting: Bool) throws {
        guard bridge != nil else { throw MilterServerError.notRegistered }
        let set = spec.withCString { smfi_setconn(UnsafeMutablePointer(mutating: $0)) }
        guard set == MI_SUCCESS else { throw MilterServerError.call("smfi_setconn(\(spec))") }
        let before = listeningDescriptors()
        // libmilter's bool is an int.
        guard smfi_opensocket(removeExisting ? 1 : 0) == MI_SUCCESS else {
            throw MilterServerError.call("smfi_opensocket(\(spec))")
        }
        // libmilter keeps its listening descriptor to itself; the one that appeared is it.
        let appeared = listeningDescriptors().subtracting(before)
        listener = appeared.count == 1 ? appeared.first : nil
    }

    // libmilter's listening descriptor, found by `openSocket`; nil once `stopAccepting` ran.
    nonisolated(unsafe) static var listener: Int32?

    /// Stops taking new connections while the open ones go on: the MTA's next connection
    /// fails (ECONNREFUSED) and it applies its default action. False when it cannot be done
    /// (the listener was not found): then new connections keep being served.
    ///
    /// libmilter has no such call: smfi_stop ends every open session too. So the listening
    /// socket is taken from under libmilter's accept loop: its descriptor number is made to
    /// point at a listening socket nobody can reach (of another address family, which
    /// libmilter would refuse anyway), and the real one is shut down, which refuses new
    /// connections at once and wakes the loop out of its poll. The loop then waits in
    /// accept(2) on the quiet socket until the process exits; it never ends smfi_main, so
    /// the sessions it started run on.
    public static func stopAccepting() -> Bool {
        guard let listener else { return false }
        var address = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let named = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(listener, $0, &length) }
        }
        guard named == 0, let quiet = unreachableListener(unlike: Int32(address.ss_family)) else { return false }
        let real = fcntl(listener, F_DUPFD_CLOEXEC, 0)
        guard real >= 0 else { close(quiet); return false }
        guard dup2(quiet, listener) >= 0 else { close(quiet); close(real); return false }
        close(quiet)
        shutdown(real, Int32(SHUT_RDWR))
        close(real)
        Self.listener = nil
        return true
    }

    /// A listening socket with no address anyone can find or use: an AF_INET one on a
    /// loopback port when libmilter listens on a unix socket, an autobound abstract unix
    /// one otherwise. libmilter closes a connection of the wrong family without serving it.
    private static func unreachableListener(unlike family: Int32) -> Int32? {
        let useInet = family == AF_UNIX
        let descriptor = socket(useInet ? AF_INET : AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard descriptor >= 0 else { return nil }
        let bound: Int32
        if useInet {
            var inet = sockaddr_in()
            inet.sin_family = sa_family_t(AF_INET)
            inet.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
            bound = withUnsafePointer(to: &inet) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
        } else {
            // Only the family: Linux then picks an unused abstract name (autobind).
            var unix = sockaddr_un()
            unix.sun_family = sa_family_t(AF_UNIX)
            bound = withUnsafePointer(to: &unix) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(descriptor, $0, socklen_t(MemoryLayout<sa_family_t>.size)) }
            }
        }
        guard bound == 0, listen(descriptor, 1) == 0 else {
            close(descriptor)
            return nil
        }
        return descriptor
    }

    /// The descriptors of this process that are listening sockets.
    private static func listeningDescriptors() -> Set<Int32> {
        guard let directory = opendir("/proc/self/fd") else { return [] }
        defer { closedir(directory) }
        var found: Set<Int32> = []
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            guard let descriptor = Int32(name) else { continue }
            var accepting: Int32 = 0
            var size = socklen_t(MemoryLayout<Int32>.size)
            if getsockopt(descriptor, SOL_SOCKET, SO_ACCEPTCONN, &accepting, &size) == 0 && accepting != 0 {
                found.insert(descriptor)
            }
        }
        return found
    }

    /// Serves connections with sessions from `factory` until libmilter stops: on SIGHUP,
    /// SIGTERM or SIGINT, which `smfi_main` blocks and `sigwait`s in a thread of its own (so
    /// do not wait for those signals elsewhere: two sigwaiters race). Connections that
    /// queued on the socket since `openSocket` are accepted only now, so none is served
    /// before the factory exists.
    public static func main(serving factory: MilterSessionFactory) throws {
        guard let bridge else { throw MilterServerError.notRegistered }
        bridge.factory = factory
        guard smfi_main() == MI_SUCCESS else { throw MilterServerError.call("smfi_main") }
    }

    /// MTA connections the milter is serving now, from negotiation to close.
    public static var openSessions: Int { SessionBox.open.load(ordering: .relaxed) }

    /// The libmilter version linked in, "8.17.1" style.
    public static var libraryVersion: String {
        var major: UInt32 = 0, minor: UInt32 = 0, patch: UInt32 = 0
        _ = smfi_version(&major, &minor, &patch)
        return "\(major).\(minor).\(patch)"
    }

    /// The client's IP as text; IPv4-mapped IPv6 (::ffff:a.b.c.d) as plain IPv4, since the
    /// policy's IPv4 prefixes are meant to match it. Nil for unix sockets and unknown families.
    static func textualAddress(_ address: UnsafeMutablePointer<sockaddr>?) -> String? {
        guard let address else { return nil }
        // libmilter passes its own sockaddr union, large enough for every family it knows.
        let raw = UnsafeRawPointer(address)
        switch Int32(address.pointee.sa_family) {
        case AF_INET:
            var inet = raw.loadUnaligned(as: sockaddr_in.self).sin_addr
            return presentation(AF_INET, &inet, Int(INET_ADDRSTRLEN))
        case AF_INET6:
            var inet6 = raw.loadUnaligned(as: sockaddr_in6.self).sin6_addr
            let bytes = withUnsafeBytes(of: &inet6) { Array($0) }
            if bytes[0..<10].allSatisfy({ $0 == 0 }) && bytes[10] == 0xFF && bytes[11] == 0xFF {
                return bytes[12...].map(String.init).joined(separator: ".")
            }
            return presentation(AF_INET6, &inet6, Int(INET6_ADDRSTRLEN))
        default:
            return nil
        }
    }

    private static func presentation(_ family: Int32, _ address: UnsafeRawPointer, _ size: Int) -> String? {
        withUnsafeTemporaryAllocation(of: CChar.self, capacity: size) { buffer in
            guard let text = inet_ntop(family, address, buffer.baseAddress, socklen_t(size)) else { return nil }
            return String(cString: text)
        }
    }
}

public enum MilterServerError: Error, Equatable, CustomStringConvertible {
    case alreadyRegistered
    case notRegistered
    case call(String)

    public var description: String {
        switch self {
        case .alreadyRegistered: "libmilter allows one milter per process: already registered"
        case .notRegistered: "MilterServer.register must come first"
        case .call(let call): "\(call) failed"
        }
    }
}

extension MilterStage {
    /// The SMFIM_* index for smfi_setsymlist.
    var symlistIndex: Int32? {
        switch self {
        case .connect: SMFIM_CONNECT
        case .helo: SMFIM_HELO
        case .envelopeFrom: SMFIM_ENVFROM
        case .envelopeRecipient: SMFIM_ENVRCPT
        case .data: SMFIM_DATA
        case .endOfHeaders: SMFIM_EOH
        case .endOfMessage: SMFIM_EOM
        case .header, .abort: nil
        }
    }
}

/// libmilter's calls on one connection (an SMFICTX), as `MilterBridge` makes them.
struct Libmilter: LibmilterConnection {
    let ctx: OpaquePointer

    var privateData: UnsafeMutableRawPointer? { smfi_getpriv(ctx) }

    func setPrivateData(_ data: UnsafeMutableRawPointer?) -> Bool { smfi_setpriv(ctx, data) == MI_SUCCESS }

    func macro(_ name: String) -> String? {
        // smfi_getsymval returns libmilter's buffer, valid only for this callback: copy now.
        name.withCString { smfi_getsymval(ctx, UnsafeMutablePointer(mutating: $0)) }
            .map { String(cString: $0) }
    }

    func requestMacros(_ list: String, at stage: MilterStage) -> Bool {
        guard let index = stage.symlistIndex else { return false }
        return list.withCString { smfi_setsymlist(ctx, index, UnsafeMutablePointer(mutating: $0)) } == MI_SUCCESS
    }

    func setReply(code: String, enhancedCode: String, escapedText: String) -> Bool {
        code.withCString { code in
            enhancedCode.withCString { enhanced in
                escapedText.withCString { text in
                    smfi_setreply(ctx, UnsafeMutablePointer(mutating: code),
                                  UnsafeMutablePointer(mutating: enhanced), UnsafeMutablePointer(mutating: text))
                }
            }
        } == MI_SUCCESS
    }

    func addHeader(name: String, value: String) -> Bool {
        name.withCString { n in
            value.withCString { v in
                smfi_addheader(ctx, UnsafeMutablePointer(mutating: n), UnsafeMutablePointer(mutating: v))
            }
        } == MI_SUCCESS
    }

    func deleteHeader(name: String, index: Int32) -> Bool {
        name.withCString { smfi_chgheader(ctx, UnsafeMutablePointer(mutating: $0), index, nil) } == MI_SUCCESS
    }
}

// MARK: - The C callbacks: no captures, just a hop into the bridge.

/// The bridge and the connection of a callback; nil only if libmilter calls before
/// `register` (it cannot: registration is what gives it the callbacks).
private func bridged(_ ctx: OpaquePointer?) -> (MilterBridge, Libmilter)? {
    guard let ctx, let bridge = MilterServer.bridge else { return nil }
    return (bridge, Libmilter(ctx: ctx))
}

private let connectCallback: @convention(c) (OpaquePointer?, UnsafeMutablePointer<CChar>?, UnsafeMutablePointer<sockaddr>?) -> sfsistat = {
    ctx, hostname, address in
    guard let (bridge, connection) = bridged(ctx) else { return SMFIS_TEMPFAIL }
    return bridge.connect(connection, hostname: hostname.map { String(cString: $0) } ?? "",
                          address: MilterServer.textualAddress(address))
}

private let heloCallback: @convention(c) (OpaquePointer?, UnsafeMutablePointer<CChar>?) -> sfsistat = { ctx, name in
    guard let (bridge, connection) = bridged(ctx) else { return SMFIS_TEMPFAIL }
    let helo = name.map { String(cString: $0) } ?? ""
    return bridge.call(connection, .helo) { session, context in try session.helo(helo, context: context) }
}

private let envelopeFromCallback: @convention(c) (OpaquePointer?, UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> sfsistat = { ctx, argv in
    guard let (bridge, connection) = bridged(ctx) else { return SMFIS_TEMPFAIL }
    let arguments = strings(argv)
    return bridge.call(connection, .envelopeFrom) { session, context in try session.mailFrom(arguments, context: context) }
}

private let envelopeRecipientCallback: @convention(c) (OpaquePointer?, UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> sfsistat = { ctx, argv in
    guard let (bridge, connection) = bridged(ctx) else { return SMFIS_TEMPFAIL }
    let arguments = strings(argv)
    return bridge.call(connection, .envelopeRecipient) { session, context in try session.recipient(arguments, context: context) }
}

private let headerCallback: @convention(c) (OpaquePointer?, UnsafeMutablePointer<CChar>?, UnsafeMutablePointer<CChar>?) -> sfsistat = { ctx, name, value in
    guard let (bridge, connection) = bridged(ctx) else { return SMFIS_TEMPFAIL }
    return bridge.header(connection, name: name.map { String(cString: $0) } ?? "", value: value.map { String(cString: $0) } ?? "")
}

private let endOfMessageCallback: @convention(c) (OpaquePointer?) -> sfsistat = { ctx in
    guard let (bridge, connection) = bridged(ctx) else { return SMFIS_TEMPFAIL }
    return bridge.endOfMessage(connection)
}

private let abortCallback: @convention(c) (OpaquePointer?) -> sfsistat = { ctx in
    guard let (bridge, connection) = bridged(ctx) else { return SMFIS_CONTINUE }
    return bridge.abort(connection)
}

private let closeCallback: @convention(c) (OpaquePointer?) -> sfsistat = { ctx in
    guard let (bridge, connection) = bridged(ctx) else { return SMFIS_CONTINUE }
    return bridge.close(connection)
}

private let negotiateCallback: @convention(c) (OpaquePointer?, UInt, UInt, UInt, UInt,
                                               UnsafeMutablePointer<UInt>?, UnsafeMutablePointer<UInt>?,
                                               UnsafeMutablePointer<UInt>?, UnsafeMutablePointer<UInt>?) -> sfsistat = {
    ctx, f0, f1, _, _, pf0, pf1, pf2, pf3 in
    // Any return other than SMFIS_CONTINUE / SMFIS_ALL_OPTS makes libmilter abort this
    // MTA connection; the MTA then applies its default action (tempfail when configured so).
    guard let (bridge, connection) = bridged(ctx), let pf0, let pf1 else { return SMFIS_REJECT }
    guard let requested = bridge.negotiate(connection, offeredActions: f0, offeredSteps: f1) else { return SMFIS_REJECT }
    pf0.pointee = requested.actions
    pf1.pointee = requested.steps
    // f2/f3 are reserved for future extensions: ask for nothing there.
    pf2?.pointee = 0
    pf3?.pointee = 0
    return SMFIS_CONTINUE
}

/// A NULL-terminated argv as Swift strings (UTF-8, repaired).
private func strings(_ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> [String] {
    guard let argv else { return [] }
    var result: [String] = []
    var index = 0
    while let argument = argv[index] {
        result.append(String(cString: argument))
        index += 1
    }
    return result
}
