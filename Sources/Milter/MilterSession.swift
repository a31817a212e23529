/// The protocol stages, in SMTP order. Macros can be requested for connect, helo,
/// envelopeFrom, envelopeRecipient, data, endOfHeaders and endOfMessage (`smfi_setsymlist`);
/// header changes are allowed only at `endOfMessage`.
public enum MilterStage: Int, Sendable, CaseIterable, Hashable, CustomStringConvertible {
    case connect, helo, envelopeFrom, envelopeRecipient, data, header, endOfHeaders, endOfMessage
    /// xxfi_abort (and xxfi_close): no macros, no changes.
    case abort

    public var description: String {
        switch self {
        case .connect: "connect"
        case .helo: "helo"
        case .envelopeFrom: "envfrom"
        case .envelopeRecipient: "envrcpt"
        case .data: "data"
        case .endOfHeaders: "eoh"
        case .header: "header"
        case .endOfMessage: "eom"
        case .abort: "abort"
        }
    }
}

/// Why a context refused a request. Thrown back to the session; if the session lets it
/// escape a callback, the bridge answers `MilterResponse.internalFailure`.
public enum MilterError: Error, Equatable, CustomStringConvertible {
    /// Header changes are only possible from xxfi_eom (libmilter returns MI_FAILURE elsewhere).
    case notAtEndOfMessage(operation: String, stage: MilterStage)
    /// A header name or value that would corrupt the message (see `MilterHeader.validate`).
    case invalidHeader(name: String, reason: String)
    /// A libmilter call returned MI_FAILURE.
    case libmilterFailed(call: String)

    public var description: String {
        switch self {
        case .notAtEndOfMessage(let operation, let stage):
            "\(operation) is only allowed at end of message, not at \(stage)"
        case .invalidHeader(let name, let reason):
            "invalid header \(String(reflecting: name)): \(reason)"
        case .libmilterFailed(let call):
            "\(call) failed"
        }
    }
}

/// What a session may ask of the MTA during one callback. Do not keep it beyond the callback.
public protocol MilterContext: AnyObject {
    /// The macro's value, or nil when the MTA did not send it. Names as the MTA spells them:
    /// "{auth_authen}", "i", "j". Bytes are decoded as UTF-8, invalid sequences repaired
    /// (U+FFFD); the value is whatever the MTA or the SMTP client put there: treat it as hostile.
    func macro(_ name: String) -> String?
    /// smfi_addheader. Only at end of message; throws otherwise.
    func addHeader(name: String, value: String) throws
    /// smfi_chgheader(name, index, NULL): deletes the index-th (1-based) header of that name.
    /// Only at end of message; throws otherwise.
    func deleteHeader(name: String, index: Int) throws
}

/// One SMTP connection, from xxfi_connect to xxfi_close. libmilter runs one connection's
/// callbacks one at a time but possibly on different threads: state needs no lock, but
/// must not be thread-local.
public protocol MilterSession: AnyObject {
    /// `hostname`: the client's name as the MTA resolved it, "[203.0.113.5]" when unresolved.
    /// `address`: textual IP ("203.0.113.5", "2001:db8::1"; IPv4-mapped IPv6 is given as IPv4),
    /// nil for a unix-socket or unknown client.
    func connect(hostname: String, address: String?, context: MilterContext) throws -> MilterResponse
    /// HELO/EHLO; may come again (after STARTTLS): the last one counts.
    func helo(_ name: String, context: MilterContext) throws -> MilterResponse
    /// `arguments[0]` is the address as sent ("<a@b>", "<>"), then the ESMTP parameters.
    func mailFrom(_ arguments: [String], context: MilterContext) throws -> MilterResponse
    /// `arguments[0]` is the address as sent, then the ESMTP parameters.
    func recipient(_ arguments: [String], context: MilterContext) throws -> MilterResponse
    /// One message header. When the MTA was told not to wait for a header reply (SMFIP_NR_HDR),
    /// a response other than `.proceed` is delivered at end of message instead (see MilterServer).
    func header(name: String, value: String, context: MilterContext) throws -> MilterResponse
    func endOfMessage(context: MilterContext) throws -> MilterResponse
    /// The message was aborted (RSET, QUIT or an error) before end of message: drop
    /// per-message state. Never called for a message that reached `endOfMessage`.
    func abort(context: MilterContext)
    /// The connection is over. Called once, after which the session is released.
    func close()
}

/// Makes one session per SMTP connection. Called from libmilter's threads concurrently.
public protocol MilterSessionFactory: AnyObject, Sendable {
    func makeSession() -> MilterSession
}

/// Header checks shared by the real and the fake context, so tests see what production does.
public enum MilterHeader {
    /// A name must be a non-empty run of printable ASCII without ":" (RFC 5322 field name);
    /// a value must not hold CR, LF or NUL (libmilter would write them into the message raw).
    public static func validate(name: String, value: String?) throws {
        guard !name.isEmpty,
              name.utf8.allSatisfy({ (0x21...0x7E).contains($0) && $0 != UInt8(ascii: ":") })
        else { throw MilterError.invalidHeader(name: name, reason: "not a valid field name") }
        if let value, value.utf8.contains(where: { $0 == 0x0D || $0 == 0x0A || $0 == 0 }) {
            throw MilterError.invalidHeader(name: name, reason: "value holds CR, LF or NUL")
        }
    }
}
