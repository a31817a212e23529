import ConnectorPolicy

/// What a callback answers. A refusal carries its reply, so the reply's class always decides
/// between REJECT and TEMPFAIL: a 4xx text can never travel with a REJECT.
public enum MilterResponse: Sendable, Equatable {
    /// SMFIS_CONTINUE.
    case proceed
    /// SMFIS_ACCEPT: accept without further callbacks for this message (or connection at connect).
    case accept
    /// SMFIS_DISCARD: accept, then silently drop the message.
    case discard
    /// SMFIS_REJECT (5xx) or SMFIS_TEMPFAIL (4xx), with the reply set through `smfi_setreply`.
    case refuse(SMTPReply)

    /// The answer to any internal failure: a tempfail, so the sender retries, never an accept.
    public static let internalFailure = MilterResponse.refuse(
        SMTPReply(constant: 451, "4.3.0", "Temporary failure in mail filter, try again later"))

    /// A session that arrives before the policy is loaded: fail closed, as Postfix does
    /// for a configuration problem, never accept.
    public static let configurationProblem = MilterResponse.refuse(
        SMTPReply(constant: 451, "4.3.5", "Server configuration problem"))
}
