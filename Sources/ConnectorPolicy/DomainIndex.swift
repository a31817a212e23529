// Indexes that keep a decision's cost independent of how many connectors a policy has:
// a reversed-label tree for domain patterns and a hash set for membership tests.

/// Domain patterns mapped to values, walked from the top-level label down, so a lookup costs
/// one hash probe per label of the queried domain whatever the number of patterns.
struct DomainTree<Value: Sendable>: Sendable {
    private struct Node: Sendable {
        var children: [String: Int32] = [:]
        var exact: [Value] = []
        var wildcard: [Value] = []
    }
    private var nodes: [Node] = [Node()]
    private var anyValues: [Value] = []

    var isEmpty: Bool { nodes.count == 1 && nodes[0].exact.isEmpty && nodes[0].wildcard.isEmpty && anyValues.isEmpty }

    mutating func insert(_ pattern: DomainPattern, _ value: Value) {
        switch pattern {
        case .any: anyValues.append(value)
        case .exact(let name): nodes[node(for: name)].exact.append(value)
        case .wildcard(let name): nodes[node(for: name)].wildcard.append(value)
        }
    }

    private mutating func node(for name: String) -> Int {
        var current = 0
        for label in name.split(separator: ".").reversed() {
            let key = String(label)
            if let next = nodes[current].children[key] {
                current = Int(next)
            } else {
                nodes.append(Node())
                let next = nodes.count - 1
                nodes[current].children[key] = Int32(next)
                current = next
            }
        }
        return current
    }

    /// Visits the values whose pattern matches `domain`, most specific first: the exact name,
    /// then `*.x` patterns from the longest x to the shortest, then `*`. Within one pattern,
    /// values come in insertion (file) order. `specificity` is larger for more specific matches.
    /// Stops when `body` returns false.
    func forEachMatch(_ domain: String, _ body: (Value, _ specificity: Int) -> Bool) {
        var path: [Int32] = []
        path.reserveCapacity(8)
        var current = 0
        var complete = !domain.isEmpty
        if complete {
            for label in domain.split(separator: ".", omittingEmptySubsequences: false).reversed() {
                guard let next = nodes[current].children[String(label)] else { complete = false; break }
                current = Int(next)
                path.append(next)
            }
        }
        if complete {
            for value in nodes[current].exact where !body(value, Int.max) { return }
        }
        for (depth, index) in path.enumerated().reversed() {
            for value in nodes[Int(index)].wildcard where !body(value, depth + 1) { return }
        }
        for value in anyValues where !body(value, 0) { return }
    }

    /// The value of the most specific pattern matching `domain`.
    func mostSpecific(_ domain: String) -> Value? {
        var found: Value?
        forEachMatch(domain) { value, _ in found = value; return false }
        return found
    }
}

/// A set of domain patterns with an O(labels) membership test.
public struct DomainSet: Sendable, Equatable {
    private var exact: Set<String> = []
    private var wildcards: Set<String> = []
    private var any = false

    public init(_ patterns: [DomainPattern]) {
        for pattern in patterns {
            switch pattern {
            case .any: any = true
            case .exact(let name): exact.insert(name)
            case .wildcard(let name): wildcards.insert(name)
            }
        }
    }

    public var isEmpty: Bool { !any && exact.isEmpty && wildcards.isEmpty }

    public func contains(_ domain: String) -> Bool { specificity(of: domain) != nil }

    /// How specifically the set matches `domain`: `Int.max` for an exact name, the number of
    /// labels of the longest matching `*.x`, 0 for `*`, nil for no match.
    /// The null sender (empty domain) is matched by `*` only.
    public func specificity(of domain: String) -> Int? {
        if domain.isEmpty { return any ? 0 : nil }
        if exact.contains(domain) { return Int.max }
        if !wildcards.isEmpty {
            var suffix = Substring(domain)
            var labels = domain.utf8.reduce(1) { $1 == UInt8(ascii: ".") ? $0 + 1 : $0 }
            while true {
                if wildcards.contains(String(suffix)) { return labels }
                guard let dot = suffix.firstIndex(of: ".") else { break }
                suffix = suffix[suffix.index(after: dot)...]
                labels -= 1
            }
        }
        return any ? 0 : nil
    }
}
