/// A stand-in for libmilter's context in tests of session logic (after pymilter's TestCtx):
/// it serves macros from a dictionary, records header changes, and, like libmilter, refuses
/// header changes outside end of message. Header names and values are checked exactly as
/// the real context checks them.
public final class FakeMilterContext: MilterContext {
    public struct HeaderChange: Equatable, Sendable, CustomStringConvertible {
        public enum Kind: Equatable, Sendable { case add(value: String), delete(index: Int) }
        public let name: String
        public let kind: Kind
        public init(name: String, kind: Kind) { self.name = name; self.kind = kind }
        public var description: String {
            switch kind {
            case .add(let value): "add \(name): \(value)"
            case .delete(let index): "delete \(name)[\(index)]"
            }
        }
    }

    /// Macros by name as the session asks for them ("{auth_authen}", "i").
    public var macros: [String: String]
    /// The stage the test is simulating; set it to `.endOfMessage` before `endOfMessage(context:)`.
    public var stage: MilterStage
    /// Every header change, in order.
    public private(set) var headerChanges: [HeaderChange] = []

    public init(macros: [String: String] = [:], stage: MilterStage = .connect) {
        self.macros = macros
        self.stage = stage
    }

    public var addedHeaders: [(name: String, value: String)] {
        headerChanges.compactMap { if case .add(let value) = $0.kind { ($0.name, value) } else { nil } }
    }

    public var deletedHeaders: [(name: String, index: Int)] {
        headerChanges.compactMap { if case .delete(let index) = $0.kind { ($0.name, index) } else { nil } }
    }

    public func macro(_ name: String) -> String? {
        macros[name] ?? macros[FakeMilterContext.alternateSpelling(name)]
    }

    public func addHeader(name: String, value: String) throws {
        try checkStage("addHeader")
        try MilterHeader.validate(name: name, value: value)
        headerChanges.append(HeaderChange(name: name, kind: .add(value: value)))
    }

    public func deleteHeader(name: String, index: Int) throws {
        try checkStage("deleteHeader")
        try MilterHeader.validate(name: name, value: nil)
        guard index >= 1 else { throw MilterError.invalidHeader(name: name, reason: "index \(index) is not 1-based") }
        headerChanges.append(HeaderChange(name: name, kind: .delete(index: index)))
    }

    private func checkStage(_ operation: String) throws {
        guard stage == .endOfMessage else {
            throw MilterError.notAtEndOfMessage(operation: operation, stage: stage)
        }
    }

    /// libmilter's smfi_getsymval finds a one-letter macro as "i" or "{i}": so does the fake.
    static func alternateSpelling(_ name: String) -> String {
        let scalars = Array(name.unicodeScalars)
        if scalars.count == 3, scalars[0] == "{", scalars[2] == "}" { return String(scalars[1]) }
        if scalars.count == 1 { return "{\(name)}" }
        return name
    }
}
