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
        // libmilter's bool is an int.
        guard smfi_opensocket(removeExisting ? 1 : 0) == MI_SUCCESS else {
            throw MilterServerError.call("smfi_opensocket(\(spec))")
        }
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

    /// SMTP connections the milter is serving now.
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
        var buffer = [CChar](repeating: 0, count: size)
        guard inet_ntop(family, address, &buffer, socklen_t(size)) != nil else { return nil }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
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
