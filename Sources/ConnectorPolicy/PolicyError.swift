// What a mail administrator sees when the policy file is wrong: one line per problem, in the
// `FILE:LINE:COLUMN: message` form compilers use, so editors can jump to it and grep finds it.

/// One problem in a policy file, at the position of the offending key or value
/// (for a missing key: the position of the mapping that lacks it).
public struct PolicyError: Error, Sendable, Equatable, CustomStringConvertible {
    public let file: String
    /// 1-based.
    public let line: Int
    /// 1-based, counted in Unicode scalars like libyaml does.
    public let column: Int
    public let message: String

    public init(file: String, line: Int, column: Int, message: String) {
        self.file = file
        self.line = line
        self.column = column
        self.message = message
    }

    public var description: String { "\(file):\(line):\(column): \(message)" }
}

/// Every problem found in one policy file, sorted by position.
public struct PolicyErrors: Error, Sendable, CustomStringConvertible {
    public let errors: [PolicyError]

    public init(_ errors: [PolicyError]) {
        // Stable sort: two problems at one position keep the order they were found in.
        self.errors = errors.enumerated().sorted {
            ($0.element.line, $0.element.column, $0.offset) < ($1.element.line, $1.element.column, $1.offset)
        }.map(\.element)
    }

    /// One error per line, no trailing newline.
    public var description: String { errors.map(\.description).joined(separator: "\n") }
}
