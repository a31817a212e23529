import CMilter
import Synchronization

/// What the bridge asks of libmilter on one connection: the `smfi_*` calls that take an
/// SMFICTX. `Libmilter` makes them for real; tests put a recording stand-in here, so the
/// bridge's rules (the box's lifetime, header deferral, negotiation, replies) are checked
/// without libmilter.
protocol LibmilterConnection {
    /// smfi_getpriv.
    var privateData: UnsafeMutableRawPointer? { get }
    /// smfi_setpriv.
    func setPrivateData(_ data: UnsafeMutableRawPointer?) -> Bool
    /// smfi_getsymval.
    func macro(_ name: String) -> String?
    /// smfi_setsymlist: `list` is the macro names separated by spaces.
    func requestMacros(_ list: String, at stage: MilterStage) -> Bool
    /// smfi_setreply; the text has `%` doubled already.
    func setReply(code: String, enhancedCode: String, escapedText: String) -> Bool
    /// smfi_addheader.
    func addHeader(name: String, value: String) -> Bool
    /// smfi_chgheader(name, index, NULL).
    func deleteHeader(name: String, index: Int32) -> Bool
}

/// The rules between libmilter's callbacks and the sessions. Each connection's state lives
/// in an `Unmanaged` box stored with `smfi_setpriv`, created at xxfi_connect and released
/// at xxfi_close.
final class MilterBridge: @unchecked Sendable {
    let configuration: MilterConfiguration
    /// Set once by `MilterServer.main`, before smfi_main starts any thread (tests set it
    /// before their first callback). Nil means no policy yet: sessions are refused.
    var factory: MilterSessionFactory?
    /// The macro lists for smfi_setsymlist, joined once: every connection asks for them.
    private let macroLists: [(stage: MilterStage, list: String)]

    init(configuration: MilterConfiguration, factory: MilterSessionFactory? = nil) {
        self.configuration = configuration
        self.factory = factory
        macroLists = configuration.macros
            .filter { !$0.value.isEmpty && $0.key.symlistIndex != nil }
            .map { (stage: $0.key, list: $0.value.joined(separator: " ")) }
            .sorted { $0.stage.symlistIndex! < $1.stage.symlistIndex! }
    }

    private func report(_ message: String) {
        configuration.errorHandler?(message)
    }

    /// The box of a connection, or nil when there is none (xxfi_close without xxfi_connect,
    /// or a connect that failed).
    private func box(_ connection: LibmilterConnection) -> SessionBox? {
        guard let pointer = connection.privateData else { return nil }
        return Unmanaged<SessionBox>.fromOpaque(pointer).takeUnretainedValue()
    }

    /// Releases the box exactly once: the private pointer is cleared first, so a second
    /// xxfi_close (or libmilter's "private data not NULL" check) finds nothing.
    private func releaseBox(_ connection: LibmilterConnection) {
        guard let pointer = connection.privateData else { return }
        _ = connection.setPrivateData(nil)
        let box = Unmanaged<SessionBox>.fromOpaque(pointer).takeRetainedValue()
        box.context.stage = .abort
        box.session?.close()
        box.session = nil
    }

    func connect(_ connection: LibmilterConnection, hostname: String, address: String?) -> sfsistat {
        guard let factory else {
            // libmilter accepts only inside smfi_main, which starts after the factory is set:
            // this is a bug, and a bug fails closed, like a configuration problem in Postfix.
            report("connect: no policy loaded yet")
            return reply(.configurationProblem, at: .connect, box(connection), connection)
        }
        if let box = box(connection) {
            // The box negotiation opened, with its session; or, after "quit, new connection
            // follows", libmilter reuses the context: close has run, but never trust that the
            // old session is gone.
            if box.session == nil || box.connected {
                box.session?.close()
                box.session = factory.makeSession()
            }
            box.connected = true
            box.deferredResponse = nil
            box.connectionRefusal = nil
        } else {
            guard openBox(connection, session: factory.makeSession()) else {
                // No box: every later stage finds no session and tempfails.
                return reply(.internalFailure, at: .connect, nil, connection)
            }
            box(connection)?.connected = true
        }
        return call(connection, .connect) { session, context in
            try session.connect(hostname: hostname, address: address, context: context)
        }
    }

    /// Stores a new box in the connection; false (and the session closed) when libmilter
    /// refuses the private pointer.
    private func openBox(_ connection: LibmilterConnection, session: MilterSession?) -> Bool {
        let box = SessionBox(session: session, context: LibmilterContext(connection, stage: .connect))
        let pointer = Unmanaged.passRetained(box).toOpaque()
        guard connection.setPrivateData(pointer) else {
            Unmanaged<SessionBox>.fromOpaque(pointer).release()
            session?.close()
            report("connect: smfi_setpriv failed")
            return false
        }
        return true
    }

    /// The actions and steps to ask of the MTA, or nil to refuse the connection (libmilter
    /// then aborts it and the MTA applies its default action, a tempfail when configured so).
    func negotiate(_ connection: LibmilterConnection, offeredActions: UInt,
                   offeredSteps: UInt) -> (actions: UInt, steps: UInt)? {
        var actions = configuration.actions.rawValue
        guard offeredActions & actions == actions else {
            report("negotiate: the MTA offers actions 0x\(String(offeredActions, radix: 16)), "
                   + "the milter needs 0x\(String(actions, radix: 16))")
            return nil
        }

        // Steps we have no callback for: ask the MTA not to send them at all, when it can.
        var steps: UInt = 0
        for step in [SMFIP_NOBODY, SMFIP_NOUNKNOWN, SMFIP_NODATA, SMFIP_NOEOH].map(UInt.init) where offeredSteps & step != 0 {
            steps |= step
        }
        // libmilter always offers the SMFIP_NR_* steps (it fakes the reply for an MTA without
        // them, engine.c fake_pflags), and a callback's answer depends on them (SMFIS_NOREPLY
        // or not), so a connection without them cannot be served consistently.
        if configuration.noReplyToHeaders {
            guard offeredSteps & UInt(SMFIP_NR_HDR) != 0 else {
                report("negotiate: no SMFIP_NR_HDR offered; cannot skip header replies")
                return nil
            }
            steps |= UInt(SMFIP_NR_HDR)
        }
        if configuration.noReplyBeforeRecipient {
            let noReplies = UInt(SMFIP_NR_CONN | SMFIP_NR_HELO | SMFIP_NR_MAIL)
            guard offeredSteps & noReplies == noReplies else {
                report("negotiate: no SMFIP_NR_CONN, SMFIP_NR_HELO and SMFIP_NR_MAIL offered; cannot skip their replies")
                return nil
            }
            steps |= noReplies
        }

        if !macroLists.isEmpty {
            if offeredActions & UInt(SMFIF_SETSYMLIST) != 0 {
                actions |= UInt(SMFIF_SETSYMLIST)
                var listed = true
                for (stage, list) in macroLists {
                    if !connection.requestMacros(list, at: stage) {
                        report("negotiate: smfi_setsymlist(\(stage), \(list)) failed")
                        listed = false
                    }
                }
                // HELO only when our lists are in force: with the MTA's defaults, some facts
                // (Postfix's TLS macros) come at HELO only.
                if listed && !configuration.needsHelo && offeredSteps & UInt(SMFIP_NOHELO) != 0 {
                    steps |= UInt(SMFIP_NOHELO)
                }
            } else {
                report("negotiate: the MTA cannot take a macro list (no SMFIF_SETSYMLIST); using its defaults")
            }
        }
        // The connection counts as open from here (a stop waits for it), not only from
        // connect: the MTA may be between the two when the milter stops accepting. Its
        // session, and so its policy, starts here too: negotiation is answered at once, while
        // connect, HELO and MAIL, which the MTA does not wait for, may reach us much later
        // (seen with Postfix: a reload between the client's MAIL and RCPT applied to the
        // session when the session was made at connect).
        if connection.privateData == nil { _ = openBox(connection, session: factory?.makeSession()) }
        return (actions, steps)
    }

    func header(_ connection: LibmilterConnection, name: String, value: String) -> sfsistat {
        call(connection, .header) { session, context in
            try session.header(name: name, value: value, context: context)
        }
    }

    func endOfMessage(_ connection: LibmilterConnection) -> sfsistat {
        if let box = box(connection), let deferred = box.connectionRefusal ?? box.deferredResponse {
            box.deferredResponse = nil
            // The message ends here without endOfMessage: the session drops it as aborted.
            box.context.connection = connection
            box.context.stage = .abort
            box.session?.abort(context: box.context)
            return answer(deferred, connection)
        }
        return call(connection, .endOfMessage) { session, context in try session.endOfMessage(context: context) }
    }

    func abort(_ connection: LibmilterConnection) -> sfsistat {
        guard let box = box(connection) else { return SMFIS_CONTINUE }
        box.deferredResponse = nil
        box.context.connection = connection
        box.context.stage = .abort
        box.session?.abort(context: box.context)
        return SMFIS_CONTINUE
    }

    func close(_ connection: LibmilterConnection) -> sfsistat {
        releaseBox(connection)
        return SMFIS_CONTINUE
    }

    /// Runs one session callback and turns its outcome into libmilter's answer.
    func call(_ connection: LibmilterConnection, _ stage: MilterStage,
              _ body: (MilterSession, MilterContext) throws -> MilterResponse) -> sfsistat {
        guard let box = box(connection) else {
            report("\(stage): no session for this connection")
            return reply(.internalFailure, at: stage, nil, connection)
        }
        switch stage {
        case .envelopeFrom:
            box.deferredResponse = nil  // a new message
        case .envelopeRecipient:
            // A refusal kept from a stage the MTA did not wait for is given here, the first
            // stage that is answered, before the message can be accepted.
            if let kept = box.connectionRefusal ?? box.deferredResponse { return answer(kept, connection) }
        default:
            break
        }
        return reply(respond(box, connection, stage, body), at: stage, box, connection)
    }

    /// Whether the MTA was told not to wait for a reply at `stage` (SMFIP_NR_*).
    private func isUnanswered(_ stage: MilterStage) -> Bool {
        switch stage {
        case .connect, .helo, .envelopeFrom: configuration.noReplyBeforeRecipient
        case .header: configuration.noReplyToHeaders
        default: false
        }
    }

    /// Answers `response`, or, at a stage the MTA expects no reply for (libmilter would turn
    /// any answer into none), returns SMFIS_NOREPLY and keeps a refusal in `box` for the next
    /// stage that is answered: RCPT, or end of message for a header. Without a box, those
    /// stages find no session and tempfail anyway.
    private func reply(_ response: MilterResponse, at stage: MilterStage, _ box: SessionBox?,
                       _ connection: LibmilterConnection) -> sfsistat {
        guard isUnanswered(stage) else { return answer(response, connection) }
        switch response {
        case .proceed:
            break
        case .refuse:
            if stage == .connect || stage == .helo {
                if box?.connectionRefusal == nil { box?.connectionRefusal = response }
            } else if box?.deferredResponse == nil {
                box?.deferredResponse = response
            }
        case .accept, .discard:
            // Nothing to keep them for: they mean something else at a later stage.
            report("\(stage): \(response) cannot be told to the MTA here; continuing")
        }
        return SMFIS_NOREPLY
    }

    private func respond(_ box: SessionBox, _ connection: LibmilterConnection, _ stage: MilterStage,
                         _ body: (MilterSession, MilterContext) throws -> MilterResponse) -> MilterResponse {
        guard let session = box.session else {
            report("\(stage): no session for this connection")
            return .internalFailure
        }
        box.context.connection = connection
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
    func answer(_ response: MilterResponse, _ connection: LibmilterConnection) -> sfsistat {
        switch response {
        case .proceed: return SMFIS_CONTINUE
        case .accept: return SMFIS_ACCEPT
        case .discard: return SMFIS_DISCARD
        case .refuse(let reply):
            // Without the reply, the MTA still refuses with its generic text of the same class.
            if !connection.setReply(code: String(reply.code), enhancedCode: reply.enhancedCode,
                                    escapedText: reply.escapedText) {
                report("smfi_setreply(\(reply)) failed")
            }
            return reply.isPermanent ? SMFIS_REJECT : SMFIS_TEMPFAIL
        }
    }
}

/// One connection's state, owned through libmilter's private pointer.
final class SessionBox {
    /// Nil between negotiation and connect.
    var session: MilterSession?
    let context: LibmilterContext
    /// A refusal of this message from a stage the MTA did not wait for (MAIL, a header),
    /// waiting for the next stage that is answered (see MilterBridge.reply).
    var deferredResponse: MilterResponse?
    /// The same from connect or HELO: it holds for every message of the connection.
    var connectionRefusal: MilterResponse?
    /// xxfi_connect has run for `session`.
    var connected = false

    /// Connections between xxfi_negotiate and xxfi_close, for a stop that lets them finish.
    static let open = Atomic<Int>(0)

    init(session: MilterSession?, context: LibmilterContext) {
        self.session = session
        self.context = context
        SessionBox.open.add(1, ordering: .relaxed)
    }

    deinit {
        SessionBox.open.subtract(1, ordering: .relaxed)
    }
}

/// The context handed to sessions: libmilter's connection during the current callback.
final class LibmilterContext: MilterContext {
    var connection: LibmilterConnection
    var stage: MilterStage

    init(_ connection: LibmilterConnection, stage: MilterStage) {
        self.connection = connection
        self.stage = stage
    }

    func macro(_ name: String) -> String? {
        connection.macro(name)
    }

    func addHeader(name: String, value: String) throws {
        try checkStage("addHeader")
        try MilterHeader.validate(name: name, value: value)
        guard connection.addHeader(name: name, value: value) else {
            throw MilterError.libmilterFailed(call: "smfi_addheader(\(name))")
        }
    }

    func deleteHeader(name: String, index: Int) throws {
        try checkStage("deleteHeader")
        try MilterHeader.validate(name: name, value: nil)
        guard index >= 1, let position = Int32(exactly: index) else {
            throw MilterError.invalidHeader(name: name, reason: "index \(index) is not 1-based")
        }
        guard connection.deleteHeader(name: name, index: position) else {
            throw MilterError.libmilterFailed(call: "smfi_chgheader(\(name), \(index))")
        }
    }

    private func checkStage(_ operation: String) throws {
        guard stage == .endOfMessage else { throw MilterError.notAtEndOfMessage(operation: operation, stage: stage) }
    }
}
