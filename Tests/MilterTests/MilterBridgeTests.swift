import XCTest
import CMilter
import ConnectorPolicy
@testable import Milter
@testable import ConnectorDaemon

/// libmilter's side of one connection, recorded: the private pointer, replies, macro lists
/// and header calls the bridge makes, so its rules are checked without libmilter.
private final class RecordedConnection: LibmilterConnection {
    var privateData: UnsafeMutableRawPointer?
    var macros: [String: String] = [:]
    var replies: [(code: String, enhancedCode: String, text: String)] = []
    var macroLists: [MilterStage: String] = [:]
    var headerCalls: [String] = []
    var refuseSetPrivateData = false

    func setPrivateData(_ data: UnsafeMutableRawPointer?) -> Bool {
        if refuseSetPrivateData { return false }
        privateData = data
        return true
    }

    func macro(_ name: String) -> String? { macros[name] }

    func requestMacros(_ list: String, at stage: MilterStage) -> Bool {
        macroLists[stage] = list
        return true
    }

    func setReply(code: String, enhancedCode: String, escapedText: String) -> Bool {
        replies.append((code, enhancedCode, escapedText))
        return true
    }

    func addHeader(name: String, value: String) -> Bool {
        headerCalls.append("add \(name): \(value)")
        return true
    }

    func deleteHeader(name: String, index: Int32) -> Bool {
        headerCalls.append("delete \(name)[\(index)]")
        return true
    }
}

/// A session that answers what the test tells it and records what it was asked.
private final class ScriptedSession: MilterSession {
    var calls: [String] = []
    var headerResponse: MilterResponse = .proceed
    var connectResponse: MilterResponse = .proceed
    var mailResponse: MilterResponse = .proceed
    var changeHeadersAt: MilterStage?
    var headerChangeErrors: [MilterError] = []

    private func changeHeaders(_ context: MilterContext, _ stage: MilterStage) {
        guard changeHeadersAt == stage else { return }
        do {
            try context.addHeader(name: "X-Test", value: "yes")
            try context.deleteHeader(name: "X-Forged", index: 1)
        } catch let error as MilterError {
            headerChangeErrors.append(error)
        } catch {}
    }

    func connect(hostname: String, address: String?, context: MilterContext) throws -> MilterResponse {
        calls.append("connect \(hostname) \(address ?? "-")")
        return connectResponse
    }
    func helo(_ name: String, context: MilterContext) throws -> MilterResponse { calls.append("helo"); return .proceed }
    func mailFrom(_ arguments: [String], context: MilterContext) throws -> MilterResponse {
        calls.append("mail \(context.macro("i") ?? "-")")
        return mailResponse
    }
    func recipient(_ arguments: [String], context: MilterContext) throws -> MilterResponse { calls.append("rcpt"); return .proceed }
    func header(name: String, value: String, context: MilterContext) throws -> MilterResponse {
        calls.append("header \(name)")
        changeHeaders(context, .header)
        return headerResponse
    }
    func endOfMessage(context: MilterContext) throws -> MilterResponse {
        calls.append("eom")
        changeHeaders(context, .endOfMessage)
        return .proceed
    }
    func abort(context: MilterContext) { calls.append("abort") }
    func close() { calls.append("close") }
}

private final class ScriptedFactory: MilterSessionFactory, @unchecked Sendable {
    var made: [ScriptedSession] = []
    func makeSession() -> MilterSession {
        let session = ScriptedSession()
        made.append(session)
        return session
    }
}

private final class ErrorLog: @unchecked Sendable {
    var messages: [String] = []
}

final class MilterBridgeTests: XCTestCase {
    private let errors = ErrorLog()
    private let factory = ScriptedFactory()

    private func bridge(_ configuration: MilterConfiguration = ConnectorSessionFactory.configuration,
                        withFactory: Bool = true) -> MilterBridge {
        var configuration = configuration
        let errors = self.errors
        configuration.errorHandler = { errors.messages.append($0) }
        return MilterBridge(configuration: configuration, factory: withFactory ? factory : nil)
    }

    // MARK: - The box's lifetime

    func test_connectStoresABoxAndCloseReleasesItExactlyOnce() throws {
        let bridge = bridge()
        let connection = RecordedConnection()
        let before = MilterServer.openSessions
        weak var released: ScriptedSession?
        do {
            XCTAssertEqual(bridge.connect(connection, hostname: "client.example", address: "198.18.0.1"), SMFIS_NOREPLY)
            XCTAssertNotNil(connection.privateData)
            XCTAssertEqual(MilterServer.openSessions, before + 1)
            released = factory.made.first
            XCTAssertEqual(released?.calls, ["connect client.example 198.18.0.1"])
        }
        let session = try XCTUnwrap(factory.made.first)
        factory.made.removeAll()

        XCTAssertEqual(bridge.close(connection), SMFIS_CONTINUE)
        XCTAssertNil(connection.privateData, "the private pointer is cleared before the box goes")
        XCTAssertEqual(MilterServer.openSessions, before)
        XCTAssertEqual(bridge.close(connection), SMFIS_CONTINUE, "a second close finds nothing")
        XCTAssertEqual(session.calls.filter { $0 == "close" }.count, 1)
        XCTAssertEqual(MilterServer.openSessions, before)
        XCTAssertTrue(errors.messages.isEmpty, "\(errors.messages)")
    }

    func test_theSessionAndItsPolicyStartAtNegotiation() throws {
        let bridge = bridge()
        let connection = RecordedConnection()
        let before = MilterServer.openSessions
        _ = try XCTUnwrap(bridge.negotiate(connection, offeredActions: everyAction, offeredSteps: everyStep))
        XCTAssertEqual(factory.made.count, 1, "made at negotiation, which the MTA waits for")
        XCTAssertEqual(MilterServer.openSessions, before + 1, "a stop waits for it from here")
        _ = bridge.connect(connection, hostname: "a", address: nil)
        XCTAssertEqual(factory.made.count, 1, "connect uses it")
        XCTAssertEqual(factory.made[0].calls, ["connect a -"])
        _ = bridge.close(connection)
        XCTAssertEqual(MilterServer.openSessions, before)
    }

    func test_theSessionIsFreedAtClose() {
        let bridge = bridge()
        let connection = RecordedConnection()
        weak var session: ScriptedSession?
        _ = bridge.connect(connection, hostname: "a", address: nil)
        session = factory.made.first
        factory.made.removeAll()
        XCTAssertNotNil(session, "the box keeps the session alive between callbacks")
        _ = bridge.close(connection)
        XCTAssertNil(session, "nothing keeps the session after close")
    }

    func test_closeWithoutConnectDoesNothing() {
        let bridge = bridge()
        let connection = RecordedConnection()
        let before = MilterServer.openSessions
        XCTAssertEqual(bridge.close(connection), SMFIS_CONTINUE)
        XCTAssertEqual(bridge.abort(connection), SMFIS_CONTINUE)
        XCTAssertNil(connection.privateData)
        XCTAssertEqual(MilterServer.openSessions, before)
        XCTAssertTrue(connection.replies.isEmpty)
    }

    func test_aReusedContextReleasesThePreviousBoxAtConnect() throws {
        let bridge = bridge()
        let connection = RecordedConnection()
        let before = MilterServer.openSessions
        _ = bridge.connect(connection, hostname: "first", address: nil)
        _ = bridge.connect(connection, hostname: "second", address: nil)
        XCTAssertEqual(factory.made.count, 2)
        XCTAssertEqual(factory.made[0].calls, ["connect first -", "close"])
        XCTAssertEqual(MilterServer.openSessions, before + 1)
        _ = bridge.close(connection)
        XCTAssertEqual(factory.made[1].calls, ["connect second -", "close"])
        XCTAssertEqual(MilterServer.openSessions, before)
    }

    func test_aFailedSetPrivateDataClosesTheSessionAndTempfailsAtRecipient() throws {
        let bridge = bridge()
        let connection = RecordedConnection()
        connection.refuseSetPrivateData = true
        let before = MilterServer.openSessions
        XCTAssertEqual(bridge.connect(connection, hostname: "a", address: nil), SMFIS_NOREPLY, "the MTA waits for no reply")
        XCTAssertEqual(factory.made.first?.calls, ["close"])
        XCTAssertEqual(MilterServer.openSessions, before)
        XCTAssertTrue(connection.replies.isEmpty)
        XCTAssertEqual(bridge.call(connection, .envelopeRecipient) { _, _ in .proceed }, SMFIS_TEMPFAIL)
        XCTAssertEqual(connection.replies.map { "\($0.code) \($0.enhancedCode)" }, ["451 4.3.0"])
    }

    func test_aConnectionBeforeThePolicyExistsFailsClosed() throws {
        let bridge = bridge(withFactory: false)
        let connection = RecordedConnection()
        _ = try XCTUnwrap(bridge.negotiate(connection, offeredActions: everyAction, offeredSteps: everyStep))
        XCTAssertEqual(bridge.connect(connection, hostname: "a", address: nil), SMFIS_NOREPLY)
        XCTAssertEqual(bridge.call(connection, .envelopeFrom) { _, _ in .proceed }, SMFIS_NOREPLY)
        XCTAssertTrue(connection.replies.isEmpty)
        XCTAssertEqual(bridge.call(connection, .envelopeRecipient) { _, _ in .proceed }, SMFIS_TEMPFAIL,
                       "the first stage the MTA waits for tempfails")
        XCTAssertEqual(bridge.endOfMessage(connection), SMFIS_TEMPFAIL, "and so does every later one")
        XCTAssertEqual(connection.replies.map { "\($0.code) \($0.enhancedCode) \($0.text)" },
                       ["451 4.3.5 Server configuration problem", "451 4.3.5 Server configuration problem"])
        _ = bridge.close(connection)
        XCTAssertNil(connection.privateData)
    }

    // MARK: - Refusals at stages the MTA does not wait for

    func test_aRefusalAtMailIsGivenAtEveryRecipientOfThatMessageOnly() throws {
        let bridge = bridge()
        let connection = RecordedConnection()
        _ = bridge.connect(connection, hostname: "a", address: nil)
        let session = try XCTUnwrap(factory.made.first)
        session.mailResponse = .internalFailure
        let mail = { bridge.call(connection, .envelopeFrom) { s, c in try s.mailFrom(["<a@b>"], context: c) } }
        let rcpt = { bridge.call(connection, .envelopeRecipient) { s, c in try s.recipient(["<c@d>"], context: c) } }
        XCTAssertEqual(mail(), SMFIS_NOREPLY)
        XCTAssertTrue(connection.replies.isEmpty, "no reply while the MTA expects none")
        XCTAssertEqual(rcpt(), SMFIS_TEMPFAIL)
        XCTAssertEqual(rcpt(), SMFIS_TEMPFAIL)
        XCTAssertEqual(connection.replies.map(\.enhancedCode), ["4.3.0", "4.3.0"])
        XCTAssertFalse(session.calls.contains("rcpt"), "a refused message is not judged")

        session.mailResponse = .proceed
        XCTAssertEqual(mail(), SMFIS_NOREPLY)
        XCTAssertEqual(rcpt(), SMFIS_CONTINUE, "the next message starts clean")
        _ = bridge.close(connection)
    }

    func test_aRefusalAtConnectHoldsForEveryMessageOfTheConnection() throws {
        let refused = RecordedConnection()
        // The session refuses at connect: nothing is said then; RCPT and end of message say it.
        final class RefusingFactory: MilterSessionFactory, @unchecked Sendable {
            func makeSession() -> MilterSession {
                let session = ScriptedSession()
                session.connectResponse = .refuse(SMTPReply(constant: 550, "5.7.1", "not from you"))
                return session
            }
        }
        let refusing = MilterBridge(configuration: ConnectorSessionFactory.configuration, factory: RefusingFactory())
        XCTAssertEqual(refusing.connect(refused, hostname: "a", address: nil), SMFIS_NOREPLY)
        for _ in 0..<2 {
            XCTAssertEqual(refusing.call(refused, .envelopeFrom) { s, c in try s.mailFrom(["<a@b>"], context: c) }, SMFIS_NOREPLY)
            XCTAssertEqual(refusing.call(refused, .envelopeRecipient) { s, c in try s.recipient(["<c@d>"], context: c) }, SMFIS_REJECT)
            XCTAssertEqual(refusing.abort(refused), SMFIS_CONTINUE)
        }
        XCTAssertEqual(refused.replies.map { "\($0.code) \($0.enhancedCode)" }, ["550 5.7.1", "550 5.7.1"])
        _ = refusing.close(refused)
    }

    func test_callbacksWithoutASessionTempfail() {
        let bridge = bridge()
        let connection = RecordedConnection()
        XCTAssertEqual(bridge.call(connection, .envelopeFrom) { _, _ in .accept }, SMFIS_NOREPLY)
        XCTAssertEqual(bridge.header(connection, name: "Subject", value: "x"), SMFIS_NOREPLY)
        XCTAssertEqual(bridge.call(connection, .envelopeRecipient) { _, _ in .accept }, SMFIS_TEMPFAIL)
        XCTAssertEqual(bridge.endOfMessage(connection), SMFIS_TEMPFAIL)
        XCTAssertEqual(connection.replies.map(\.enhancedCode), ["4.3.0", "4.3.0"])
    }

    // MARK: - Header deferral

    func test_aHeaderRefusalWaitsForEndOfMessage() throws {
        let bridge = bridge()
        let connection = RecordedConnection()
        _ = bridge.connect(connection, hostname: "a", address: nil)
        let session = try XCTUnwrap(factory.made.first)
        let refusal = MilterResponse.refuse(SMTPReply(constant: 550, "5.7.1", "100% forged"))
        session.headerResponse = refusal
        XCTAssertEqual(bridge.header(connection, name: "X-One", value: "1"), SMFIS_NOREPLY)
        session.headerResponse = .internalFailure
        XCTAssertEqual(bridge.header(connection, name: "X-Two", value: "2"), SMFIS_NOREPLY)
        XCTAssertTrue(connection.replies.isEmpty, "no reply while the MTA expects none")

        XCTAssertEqual(bridge.endOfMessage(connection), SMFIS_REJECT, "the first refusal is the one given")
        XCTAssertEqual(connection.replies.map { "\($0.code) \($0.enhancedCode) \($0.text)" }, ["550 5.7.1 100%% forged"])
        XCTAssertEqual(session.calls, ["connect a -", "header X-One", "header X-Two", "abort"],
                       "a refused message ends as aborted, without endOfMessage")

        session.headerResponse = .proceed
        _ = bridge.header(connection, name: "X-Three", value: "3")
        XCTAssertEqual(bridge.endOfMessage(connection), SMFIS_CONTINUE, "the next message starts clean")
        XCTAssertEqual(session.calls.suffix(2), ["header X-Three", "eom"])
        _ = bridge.close(connection)
    }

    func test_anAbortDropsAWaitingHeaderRefusal() throws {
        let bridge = bridge()
        let connection = RecordedConnection()
        _ = bridge.connect(connection, hostname: "a", address: nil)
        let session = try XCTUnwrap(factory.made.first)
        session.headerResponse = .refuse(SMTPReply(constant: 550, "5.7.1", "no"))
        _ = bridge.header(connection, name: "X", value: "1")
        XCTAssertEqual(bridge.abort(connection), SMFIS_CONTINUE)
        session.headerResponse = .proceed
        XCTAssertEqual(bridge.endOfMessage(connection), SMFIS_CONTINUE)
        XCTAssertTrue(connection.replies.isEmpty)
        _ = bridge.close(connection)
    }

    func test_withoutNoReplyToHeadersAHeaderIsAnsweredAtOnce() throws {
        var configuration = ConnectorSessionFactory.configuration
        configuration.noReplyToHeaders = false
        let bridge = bridge(configuration)
        let connection = RecordedConnection()
        _ = bridge.connect(connection, hostname: "a", address: nil)
        factory.made[0].headerResponse = .refuse(SMTPReply(constant: 451, "4.7.1", "later"))
        XCTAssertEqual(bridge.header(connection, name: "X", value: "1"), SMFIS_TEMPFAIL)
        XCTAssertEqual(connection.replies.map(\.code), ["451"])
        _ = bridge.close(connection)
    }

    func test_headersChangeOnlyAtEndOfMessage() throws {
        let bridge = bridge()
        let connection = RecordedConnection()
        _ = bridge.connect(connection, hostname: "a", address: nil)
        let session = try XCTUnwrap(factory.made.first)

        session.changeHeadersAt = .header
        _ = bridge.header(connection, name: "Subject", value: "x")
        XCTAssertEqual(session.headerChangeErrors, [.notAtEndOfMessage(operation: "addHeader", stage: .header)])
        XCTAssertTrue(connection.headerCalls.isEmpty, "libmilter is never asked outside end of message")

        session.changeHeadersAt = .endOfMessage
        XCTAssertEqual(bridge.endOfMessage(connection), SMFIS_CONTINUE)
        XCTAssertEqual(connection.headerCalls, ["add X-Test: yes", "delete X-Forged[1]"])
        XCTAssertEqual(session.headerChangeErrors.count, 1)
        _ = bridge.close(connection)
    }

    func test_macrosComeFromTheConnectionOfTheCallback() throws {
        let bridge = bridge()
        let connection = RecordedConnection()
        _ = bridge.connect(connection, hostname: "a", address: nil)
        connection.macros = ["i": "4Q1"]
        XCTAssertEqual(bridge.call(connection, .envelopeFrom) { session, context in
            try session.mailFrom(["<a@b>"], context: context)
        }, SMFIS_NOREPLY)
        XCTAssertEqual(factory.made[0].calls.last, "mail 4Q1")
        _ = bridge.close(connection)
    }

    // MARK: - Negotiation

    private let everyAction = UInt(SMFIF_ADDHDRS | SMFIF_CHGHDRS | SMFIF_SETSYMLIST | SMFIF_CHGBODY | SMFIF_ADDRCPT)
    private let everyStep = UInt(SMFIP_NOBODY | SMFIP_NOUNKNOWN | SMFIP_NODATA | SMFIP_NOEOH | SMFIP_NR_HDR
                                 | SMFIP_NOHELO | SMFIP_NOHDRS | SMFIP_NOCONNECT | SMFIP_NOMAIL | SMFIP_NORCPT
                                 | SMFIP_NR_CONN | SMFIP_NR_HELO | SMFIP_NR_MAIL | SMFIP_NR_RCPT | SMFIP_NR_EOH)
    private let noReplyBeforeRecipient = UInt(SMFIP_NR_CONN | SMFIP_NR_HELO | SMFIP_NR_MAIL)

    func test_negotiationAsksForTheActionsStepsAndMacrosOfEachStage() throws {
        let bridge = bridge()
        let connection = RecordedConnection()
        let requested = try XCTUnwrap(bridge.negotiate(connection, offeredActions: everyAction, offeredSteps: everyStep))
        XCTAssertEqual(requested.actions, UInt(SMFIF_ADDHDRS | SMFIF_CHGHDRS | SMFIF_SETSYMLIST))
        XCTAssertEqual(requested.steps, UInt(SMFIP_NOBODY | SMFIP_NOUNKNOWN | SMFIP_NODATA | SMFIP_NOEOH | SMFIP_NR_HDR
                                             | SMFIP_NOHELO) | noReplyBeforeRecipient,
                       "connect, MAIL, RCPT and headers are needed (the TLS facts come with MAIL's list); "
                       + "only RCPT and end of message are waited for")
        XCTAssertEqual(connection.macroLists, [
            .helo: SessionMacros.tlsMacros.joined(separator: " "),
            .envelopeFrom: "i {auth_type} {auth_authen} {mail_addr} " + SessionMacros.tlsMacros.joined(separator: " "),
            .envelopeRecipient: "i {rcpt_addr}",
            .endOfMessage: "i",
        ])
        XCTAssertTrue(errors.messages.isEmpty, "\(errors.messages)")
    }

    func test_negotiationAsksOnlyForStepsTheMTAOffers() throws {
        let bridge = bridge()
        let offered = UInt(SMFIP_NR_HDR | SMFIP_NOBODY) | noReplyBeforeRecipient
        let requested = try XCTUnwrap(bridge.negotiate(RecordedConnection(), offeredActions: everyAction, offeredSteps: offered))
        XCTAssertEqual(requested.steps, offered)
    }

    func test_negotiationFailsWithoutNoReplyBeforeRecipient() {
        let bridge = bridge()
        XCTAssertNil(bridge.negotiate(RecordedConnection(), offeredActions: everyAction,
                                      offeredSteps: everyStep & ~UInt(SMFIP_NR_MAIL)))
        XCTAssertEqual(errors.messages, ["negotiate: no SMFIP_NR_CONN, SMFIP_NR_HELO and SMFIP_NR_MAIL offered; cannot skip their replies"])
    }

    func test_negotiationFailsWithoutTheActionsTheMilterNeeds() {
        let bridge = bridge()
        XCTAssertNil(bridge.negotiate(RecordedConnection(), offeredActions: UInt(SMFIF_ADDHDRS), offeredSteps: everyStep))
        XCTAssertEqual(errors.messages.count, 1)
        XCTAssertTrue(errors.messages[0].hasPrefix("negotiate: the MTA offers actions 0x1"), errors.messages[0])
    }

    func test_negotiationFailsWithoutNoReplyToHeaders() {
        let bridge = bridge()
        XCTAssertNil(bridge.negotiate(RecordedConnection(), offeredActions: everyAction,
                                      offeredSteps: everyStep & ~UInt(SMFIP_NR_HDR)))
        XCTAssertEqual(errors.messages, ["negotiate: no SMFIP_NR_HDR offered; cannot skip header replies"])
    }

    func test_anMTAWithoutMacroListsKeepsItsDefaults() throws {
        let bridge = bridge()
        let connection = RecordedConnection()
        let requested = try XCTUnwrap(bridge.negotiate(connection, offeredActions: everyAction & ~UInt(SMFIF_SETSYMLIST),
                                                       offeredSteps: everyStep))
        XCTAssertEqual(requested.actions, UInt(SMFIF_ADDHDRS | SMFIF_CHGHDRS))
        XCTAssertEqual(requested.steps & UInt(SMFIP_NOHELO), 0, "with the MTA's lists, the TLS facts come at HELO")
        XCTAssertTrue(connection.macroLists.isEmpty)
        XCTAssertEqual(errors.messages, ["negotiate: the MTA cannot take a macro list (no SMFIF_SETSYMLIST); using its defaults"])
    }

    // MARK: - Replies

    func test_internalFailureIsATempfail() {
        guard case .refuse(let reply) = MilterResponse.internalFailure else { return XCTFail() }
        XCTAssertEqual(reply.code, 451)
        XCTAssertEqual(reply.enhancedCode, "4.3.0")
    }

    /// What libmilter and Postfix accept: 3 digits, 4xx or 5xx, an enhanced code of the same
    /// class, no CR or LF, at most 980 characters, and no lone `%` (the text is a format).
    private func assertValidReply(_ connection: RecordedConnection, answer: sfsistat, _ name: String,
                                  file: StaticString = #filePath, line: UInt = #line) {
        guard connection.replies.count == 1, let reply = connection.replies.first else {
            return XCTFail("\(name): \(connection.replies.count) replies", file: file, line: line)
        }
        XCTAssertEqual(reply.code.utf8.count, 3, name, file: file, line: line)
        XCTAssertTrue(reply.code.utf8.allSatisfy { (0x30...0x39).contains($0) }, name, file: file, line: line)
        let classDigit = reply.code.first!
        XCTAssertTrue(classDigit == "4" || classDigit == "5", name, file: file, line: line)
        XCTAssertEqual(reply.enhancedCode.first, classDigit, name, file: file, line: line)
        XCTAssertEqual(answer, classDigit == "5" ? SMFIS_REJECT : SMFIS_TEMPFAIL, name, file: file, line: line)
        let whole = "\(reply.code) \(reply.enhancedCode) \(reply.text)"
        XCTAssertFalse(whole.contains("\r") || whole.contains("\n"), name, file: file, line: line)
        XCTAssertLessThanOrEqual(whole.utf8.count, SMTPReply.maximumLength, name, file: file, line: line)
        var unescaped = reply.text.replacingOccurrences(of: "%%", with: "")
        unescaped = unescaped.replacingOccurrences(of: "%", with: "LONE")
        XCTAssertFalse(unescaped.contains("LONE"), "\(name): a lone % in \(reply.text)", file: file, line: line)
    }

    func test_everyRefusalReasonUnderBothTLSFailureSettingsGivesAValidReply() {
        for tlsFailure in [TLSFailure.temporary, .permanent] {
            var policy = Policy(acceptedDomains: [.exact("contoso.com")], connectors: [])
            policy.settings.tlsFailure = tlsFailure
            let set = PolicySet(policy)
            for reason in RefusalReason.allCases {
                let name = "\(reason.rawValue) with tlsFailure \(tlsFailure)"
                let reply = set.reply(for: reason)
                let connection = RecordedConnection()
                let answer = bridge().answer(.refuse(reply), connection)
                assertValidReply(connection, answer: answer, name)
            }
        }
        XCTAssertTrue(errors.messages.isEmpty)
    }

    func test_tlsFailureDecidesTheClassOfTLSRefusals() {
        for (tlsFailure, code) in [(TLSFailure.temporary, 454), (.permanent, 530)] {
            var policy = Policy(acceptedDomains: [.exact("contoso.com")], connectors: [])
            policy.settings.tlsFailure = tlsFailure
            XCTAssertEqual(PolicySet(policy).reply(for: .tlsRequired).code, code)
            XCTAssertEqual(PolicySet(policy).reply(for: .certificateRequired).code, code)
        }
    }

    func test_aHostileReplyTextStaysValid() {
        let text = String(repeating: "%s\r\n", count: 400)
        let connection = RecordedConnection()
        let answer = bridge().answer(.refuse(SMTPReply(code: 550, enhancedCode: "5.7.1", text: text)!), connection)
        assertValidReply(connection, answer: answer, "hostile text")
    }
}
