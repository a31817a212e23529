import CMilter
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The milter process's one libmilter instance (libmilter allows one milter per process).
///
/// Order of use: `register`, `openSocket`, (drop privileges), `main`. libmilter calls the
/// callbacks below from its worker threads; each connection's state lives in an `Unmanaged`
/// box stored with `smfi_setpriv`, created at xxfi_connect and released at xxfi_close.
public enum MilterServer {
    // Written once by `register`, before `smfi_main` starts any thread; only read afterwards.
    nonisolated(unsafe) private static var factory: MilterSessionFactory?
    nonisolated(unsafe) private static var configuration: MilterConfiguration?

    /// Registers the filter with libmilter. Call once, before `openSocket`.
    public static func register(_ configuration: MilterConfiguration, factory: MilterSessionFactory) throws {
        guard self.factory == nil else { throw MilterServerError.alreadyRegistered }
        self.configuration = configuration
        self.factory = factory

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
        guard factory != nil else { throw MilterServerError.notRegistered }
        let set = spec.withCString { smfi_setconn(UnsafeMutablePointer(mutating: $0)) }
        guard set == MI_SUCCESS else { throw MilterServerError.call("smfi_setconn(\(spec))") }
        // libmilter's bool is an int.
        guard smfi_opensocket(removeExisting ? 1 : 0) == MI_SUCCESS else {
            throw MilterServerError.call("smfi_opensocket(\(spec))")
        }
    }

    /// Runs libmilter's accept loop until it stops: on `stop()`, or on SIGHUP, SIGTERM or
    /// SIGINT, which `smfi_main` blocks and `sigwait`s in a thread of its own (so do not wait
    /// for those signals elsewhere: two sigwaiters race).
    public static func main() throws {
        guard factory != nil else { throw MilterServerError.notRegistered }
        guard smfi_main() == MI_SUCCESS else { throw MilterServerError.call("smfi_main") }
    }

    /// Asks `main` to return (smfi_stop). Sessions in progress are not waited for.
    public static func stop() {
        _ = smfi_stop()
    }

    /// SMTP connections the milter is serving now.
    public static var openSessions: Int { SessionBox.open.load(ordering: .relaxed) }

    /// The libmilter version linked in, "8.17.1" style.
    public static var libraryVersion: String {
        var major: UInt32 = 0, minor: UInt32 = 0, patch: UInt32 = 0
        _ = smfi_version(&major, &minor, &patch)
        return "\(major).\(minor).\(patch)"
    }

    // MARK: - Bridging, called from the C callbacks

    fileprivate static func report(_ message: String) {
        configuration?.errorHandler?(message)
    }

    /// The box of a connection, or nil when there is none (xxfi_close without xxfi_connect,
    /// or a connect that failed).
    fileprivate static func box(_ ctx: OpaquePointer?) -> SessionBox? {
        guard let ctx, let pointer = smfi_getpriv(ctx) else { return nil }
        return Unmanaged<SessionBox>.fromOpaque(pointer).takeUnretainedValue()
    }

    /// Releases the box exactly once: the private pointer is cleared first, so a second
    /// xxfi_close (or libmilter's "private data not NULL" check) finds nothing.
    fileprivate static func releaseBox(_ ctx: OpaquePointer) {
        guard let pointer = smfi_getpriv(ctx) else { return }
        _ = smfi_setpriv(ctx, nil)
        let box = Unmanaged<SessionBox>.fromOpaque(pointer).takeRetainedValue()
        box.context.stage = .abort
        box.session?.close()
        box.session = nil
    }

    fileprivate static func connect(_ ctx: OpaquePointer?, _ hostname: UnsafeMutablePointer<CChar>?,
                                    _ address: UnsafeMutablePointer<sockaddr>?) -> sfsistat {
        guard let ctx else { return SMFIS_TEMPFAIL }
        // After "quit, new connection follows" libmilter reuses the context; close has run,
        // but never trust that a previous box is gone.
        releaseBox(ctx)
        guard let factory else {
            report("connect: milter not registered")
            return answer(.internalFailure, ctx)
        }
        let box = SessionBox(session: factory.makeSession(), context: LibmilterContext(ctx, stage: .connect))
        let pointer = Unmanaged.passRetained(box).toOpaque()
        guard smfi_setpriv(ctx, pointer) == MI_SUCCESS else {
            Unmanaged<SessionBox>.fromOpaque(pointer).release()
            box.session?.close()
            report("connect: smfi_setpriv failed")
            return answer(.internalFailure, ctx)
        }
        let name = hostname.map { String(cString: $0) } ?? ""
        let text = textualAddress(address)
        return call(ctx, .connect) { session, context in
            try session.connect(hostname: name, address: text, context: context)
        }
    }

    fileprivate static func negotiate(_ ctx: OpaquePointer?, offeredActions: UInt, offeredSteps: UInt,
                                      _ actionsOut: UnsafeMutablePointer<UInt>?,
                                      _ stepsOut: UnsafeMutablePointer<UInt>?,
                                      _ reserved2: UnsafeMutablePointer<UInt>?,
                                      _ reserved3: UnsafeMutablePointer<UInt>?) -> sfsistat {
        // Any return other than SMFIS_CONTINUE / SMFIS_ALL_OPTS makes libmilter abort this
        // MTA connection; the MTA then applies its default action (tempfail when configured so).
        guard let ctx, let configuration, let actionsOut, let stepsOut else { return SMFIS_REJECT }
        var actions = configuration.actions.rawValue
        guard offeredActions & actions == actions else {
            report("negotiate: the MTA offers actions 0x\(String(offeredActions, radix: 16)), "
                   + "the milter needs 0x\(String(actions, radix: 16))")
            return SMFIS_REJECT
        }

        // Steps we have no callback for: ask the MTA not to send them at all, when it can.
        var steps: UInt = 0
        for step in [SMFIP_NOBODY, SMFIP_NOUNKNOWN, SMFIP_NODATA, SMFIP_NOEOH].map(UInt.init) where offeredSteps & step != 0 {
            steps |= step
        }
        if configuration.noReplyToHeaders {
            // libmilter always offers SMFIP_NR_HDR (it fakes the reply for an MTA without it,
            // engine.c fake_pflags), and the header callback's answer depends on it, so a
            // connection without it cannot be served consistently.
            guard offeredSteps & UInt(SMFIP_NR_HDR) != 0 else {
                report("negotiate: no SMFIP_NR_HDR offered; cannot skip header replies")
                return SMFIS_REJECT
            }
            steps |= UInt(SMFIP_NR_HDR)
        }

        let wanted = configuration.macros.filter { !$0.value.isEmpty && $0.key.symlistIndex != nil }
        if !wanted.isEmpty {
            if offeredActions & UInt(SMFIF_SETSYMLIST) != 0 {
                actions |= UInt(SMFIF_SETSYMLIST)
                for (stage, names) in wanted {
                    let list = names.joined(separator: " ")
                    let result = list.withCString {
                        smfi_setsymlist(ctx, stage.symlistIndex!, UnsafeMutablePointer(mutating: $0))
                    }
                    if result != MI_SUCCESS { report("negotiate: smfi_setsymlist(\(stage), \(list)) failed") }
                }
            } else {
                report("negotiate: the MTA cannot take a macro list (no SMFIF_SETSYMLIST); using its defaults")
            }
        }
        actionsOut.pointee = actions
        stepsOut.pointee = steps
        // f2/f3 are reserved for future extensions: ask for nothing there.
        reserved2?.pointee = 0
        reserved3?.pointee = 0
        return SMFIS_CONTINUE
    }

    fileprivate static func header(_ ctx: OpaquePointer?, name: String, value: String) -> sfsistat {
        guard configuration?.noReplyToHeaders == true else {
            return call(ctx, .header) { session, context in
                try session.header(name: name, value: value, context: context)
            }
        }
        // SMFIP_NR_HDR: the MTA expects no reply (libmilter would turn any answer into none),
        // so a refusal is kept and given at end of message, the next step that is answered.
        guard let ctx, let box = box(ctx) else {
            report("header: no session")
            return SMFIS_NOREPLY  // and end of message, finding no session either, tempfails
        }
        let response = respond(box, ctx, .header) { session, context in
            try session.header(name: name, value: value, context: context)
        }
        if response != .proceed && box.deferredResponse == nil { box.deferredResponse = response }
        return SMFIS_NOREPLY
    }

    fileprivate static func endOfMessage(_ ctx: OpaquePointer?) -> sfsistat {
        if let ctx, let box = box(ctx), let deferred = box.deferredResponse {
            box.deferredResponse = nil
            // The message ends here without endOfMessage: the session drops it as aborted.
            box.context.ctx = ctx
            box.context.stage = .abort
            box.session?.abort(context: box.context)
            return answer(deferred, ctx)
        }
        return call(ctx, .endOfMessage) { session, context in try session.endOfMessage(context: context) }
    }

    fileprivate static func abort(_ ctx: OpaquePointer?) -> sfsistat {
        guard let ctx, let box = box(ctx) else { return SMFIS_CONTINUE }
        box.deferredResponse = nil
        box.context.ctx = ctx
        box.context.stage = .abort
        box.session?.abort(context: box.context)
        return SMFIS_CONTINUE
    }

    fileprivate static func close(_ ctx: OpaquePointer?) -> sfsistat {
        if let ctx { releaseBox(ctx) }
        return SMFIS_CONTINUE
    }

    /// Runs one session callback and turns its outcome into libmilter's answer.
    fileprivate static func call(_ ctx: OpaquePointer?, _ stage: MilterStage,
                                 _ body: (MilterSession, MilterContext) throws -> MilterResponse) -> sfsistat {
        guard let ctx else { return SMFIS_TEMPFAIL }
        guard let box = box(ctx) else {
            report("\(stage): no session for this connection")
            return answer(.internalFailure, ctx)
        }
        return answer(respond(box, ctx, stage, body), ctx)
    }

    private static func respond(_ box: SessionBox, _ ctx: OpaquePointer, _ stage: MilterStage,
                                _ body: (MilterSession, MilterContext) throws -> MilterResponse) -> MilterResponse {
        guard let session = box.session else {
            report("\(stage): no session for this connection")
            return .internalFailure
        }
        box.context.ctx = ctx
        box.context.stage = stage
        do {
            return try body(session, box.context)
        } catch {
            report("\(stage): \(error)")
            return .internalFailure
        }
    }

    /// The refusal's class picks REJECT or TEMPFAIL, so libmilter never drops the reply
    /// for a class mismatch (engine.c sendreply).
    fileprivate static func answer(_ response: MilterResponse, _ ctx: OpaquePointer) -> sfsistat {
        switch response {
        case .proceed: return SMFIS_CONTINUE
        case .accept: return SMFIS_ACCEPT
        case .discard: return SMFIS_DISCARD
        case .refuse(let reply):
            let result = String(reply.code).withCString { code in
                reply.enhancedCode.withCString { enhanced in
                    reply.escapedText.withCString { text in
                        smfi_setreply(ctx, UnsafeMutablePointer(mutating: code),
                                      UnsafeMutablePointer(mutating: enhanced), UnsafeMutablePointer(mutating: text))
                    }
                }
            }
            // Without the reply, the MTA still refuses with its generic text of the same class.
            if result != MI_SUCCESS { report("smfi_setreply(\(reply)) failed") }
            return reply.isPermanent ? SMFIS_REJECT : SMFIS_TEMPFAIL
        }
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

/// One connection's state, owned through libmilter's private pointer.
final class SessionBox {
    var session: MilterSession?
    let context: LibmilterContext
    /// A header refusal waiting for end of message (see MilterServer.header).
    var deferredResponse: MilterResponse?

    /// Connections between xxfi_connect and xxfi_close, for a stop that lets them finish.
    static let open = Atomic<Int>(0)

    init(session: MilterSession, context: LibmilterContext) {
        self.session = session
        self.context = context
        SessionBox.open.add(1, ordering: .relaxed)
    }

    deinit {
        SessionBox.open.subtract(1, ordering: .relaxed)
    }
}

/// The context handed to sessions: the libmilter SMFICTX of the current callback.
final class LibmilterContext: MilterContext {
    var ctx: OpaquePointer
    var stage: MilterStage

    init(_ ctx: OpaquePointer, stage: MilterStage) {
        self.ctx = ctx
        self.stage = stage
    }

    func macro(_ name: String) -> String? {
        // smfi_getsymval returns libmilter's buffer, valid only for this callback: copy now.
        name.withCString { smfi_getsymval(ctx, UnsafeMutablePointer(mutating: $0)) }
            .map { String(cString: $0) }
    }

    func addHeader(name: String, value: String) throws {
        try checkStage("addHeader")
        try MilterHeader.validate(name: name, value: value)
        let result = name.withCString { n in
            value.withCString { v in
                smfi_addheader(ctx, UnsafeMutablePointer(mutating: n), UnsafeMutablePointer(mutating: v))
            }
        }
        guard result == MI_SUCCESS else { throw MilterError.libmilterFailed(call: "smfi_addheader(\(name))") }
    }

    func deleteHeader(name: String, index: Int) throws {
        try checkStage("deleteHeader")
        try MilterHeader.validate(name: name, value: nil)
        guard index >= 1, let position = Int32(exactly: index) else {
            throw MilterError.invalidHeader(name: name, reason: "index \(index) is not 1-based")
        }
        let result = name.withCString { smfi_chgheader(ctx, UnsafeMutablePointer(mutating: $0), position, nil) }
        guard result == MI_SUCCESS else { throw MilterError.libmilterFailed(call: "smfi_chgheader(\(name), \(index))") }
    }

    private func checkStage(_ operation: String) throws {
        guard stage == .endOfMessage else { throw MilterError.notAtEndOfMessage(operation: operation, stage: stage) }
    }
}

// MARK: - The C callbacks: no captures, just a hop into MilterServer.

private let connectCallback: @convention(c) (OpaquePointer?, UnsafeMutablePointer<CChar>?, UnsafeMutablePointer<sockaddr>?) -> sfsistat = {
    MilterServer.connect($0, $1, $2)
}

private let heloCallback: @convention(c) (OpaquePointer?, UnsafeMutablePointer<CChar>?) -> sfsistat = { ctx, name in
    let helo = name.map { String(cString: $0) } ?? ""
    return MilterServer.call(ctx, .helo) { session, context in try session.helo(helo, context: context) }
}

private let envelopeFromCallback: @convention(c) (OpaquePointer?, UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> sfsistat = { ctx, argv in
    let arguments = strings(argv)
    return MilterServer.call(ctx, .envelopeFrom) { session, context in try session.mailFrom(arguments, context: context) }
}

private let envelopeRecipientCallback: @convention(c) (OpaquePointer?, UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> sfsistat = { ctx, argv in
    let arguments = strings(argv)
    return MilterServer.call(ctx, .envelopeRecipient) { session, context in try session.recipient(arguments, context: context) }
}

private let headerCallback: @convention(c) (OpaquePointer?, UnsafeMutablePointer<CChar>?, UnsafeMutablePointer<CChar>?) -> sfsistat = { ctx, name, value in
    MilterServer.header(ctx, name: name.map { String(cString: $0) } ?? "", value: value.map { String(cString: $0) } ?? "")
}

private let endOfMessageCallback: @convention(c) (OpaquePointer?) -> sfsistat = { MilterServer.endOfMessage($0) }
private let abortCallback: @convention(c) (OpaquePointer?) -> sfsistat = { MilterServer.abort($0) }
private let closeCallback: @convention(c) (OpaquePointer?) -> sfsistat = { MilterServer.close($0) }

private let negotiateCallback: @convention(c) (OpaquePointer?, UInt, UInt, UInt, UInt,
                                               UnsafeMutablePointer<UInt>?, UnsafeMutablePointer<UInt>?,
                                               UnsafeMutablePointer<UInt>?, UnsafeMutablePointer<UInt>?) -> sfsistat = {
    ctx, f0, f1, _, _, pf0, pf1, pf2, pf3 in
    MilterServer.negotiate(ctx, offeredActions: f0, offeredSteps: f1, pf0, pf1, pf2, pf3)
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
