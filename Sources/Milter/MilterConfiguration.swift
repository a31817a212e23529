import CMilter

/// What the milter tells libmilter at registration and the MTA at negotiation.
public struct MilterConfiguration: Sendable {
    /// Modifications the milter may make (SMFIF_* actions).
    public struct Actions: OptionSet, Sendable, Hashable {
        public let rawValue: UInt
        public init(rawValue: UInt) { self.rawValue = rawValue }
        /// SMFIF_ADDHDRS.
        public static let addHeaders = Actions(rawValue: UInt(SMFIF_ADDHDRS))
        /// SMFIF_CHGHDRS (change and delete).
        public static let changeHeaders = Actions(rawValue: UInt(SMFIF_CHGHDRS))
    }

    /// The filter name libmilter logs with (xxfi_name).
    public var name: String
    /// Required actions. Negotiation fails (and the MTA applies its default action) when the
    /// MTA does not offer all of them: a milter that must strip forged headers cannot run without.
    public var actions: Actions
    /// Macros to request per stage with `smfi_setsymlist`; a non-empty list replaces the
    /// MTA's default list for that stage. Stages not present keep the MTA's list.
    public var macros: [MilterStage: [String]]
    /// Ask the MTA not to wait for a reply to each header (SMFIP_NR_HDR): one round trip
    /// less per header. See `MilterSession.header` for how a header refusal is then delivered.
    public var noReplyToHeaders: Bool
    /// Ask the MTA not to wait for a reply at connect, HELO and MAIL (SMFIP_NR_CONN,
    /// SMFIP_NR_HELO, SMFIP_NR_MAIL): three round trips less per connection. A refusal there
    /// is given at the first RCPT instead (or at end of message), still before any message is
    /// accepted.
    public var noReplyBeforeRecipient: Bool
    /// False: the milter takes nothing from HELO that its macro lists do not bring at a later
    /// stage, so the MTA is asked not to send HELO at all (SMFIP_NOHELO), when it takes the
    /// lists (SMFIF_SETSYMLIST).
    public var needsHelo: Bool
    /// smfi_settimeout: seconds libmilter waits for the MTA (libmilter's default is 7210).
    public var timeout: Int?
    /// smfi_setbacklog: listen(2) backlog.
    public var backlog: Int?
    /// Told about failures inside callbacks (thrown errors, missing sessions, negotiation
    /// problems), each already answered with a tempfail. Called from libmilter's threads.
    public var errorHandler: (@Sendable (String) -> Void)?

    public init(name: String,
                actions: Actions = [],
                macros: [MilterStage: [String]] = [:],
                noReplyToHeaders: Bool = true,
                noReplyBeforeRecipient: Bool = false,
                needsHelo: Bool = true,
                timeout: Int? = nil,
                backlog: Int? = nil,
                errorHandler: (@Sendable (String) -> Void)? = nil) {
        self.name = name
        self.actions = actions
        self.macros = macros
        self.noReplyToHeaders = noReplyToHeaders
        self.noReplyBeforeRecipient = noReplyBeforeRecipient
        self.needsHelo = needsHelo
        self.timeout = timeout
        self.backlog = backlog
        self.errorHandler = errorHandler
    }
}
