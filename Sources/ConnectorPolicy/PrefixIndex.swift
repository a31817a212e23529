// A binary trie over address bits: a lookup walks at most 32 (IPv4) or 128 (IPv6) nodes,
// whatever the number of prefixes in the policy.

struct PrefixTree<Value: Sendable>: Sendable {
    // Flat arrays instead of node objects: 100,000 prefixes make millions of nodes, and
    // arrays of integers keep them compact and free of reference counting.
    private var zero: [Int32] = [-1, -1]
    private var one: [Int32] = [-1, -1]
    private var slot: [Int32] = [-1, -1]
    private var values: [[Value]] = []
    /// Node 0 is the IPv4 root, node 1 the IPv6 root.
    private static func root(_ family: IPAddress.Family) -> Int { family == .v4 ? 0 : 1 }

    var isEmpty: Bool { values.isEmpty }

    mutating func insert(_ prefix: IPPrefix, _ value: Value) {
        var node = Self.root(prefix.address.family)
        let width = prefix.address.width
        for i in 0..<prefix.length {
            let bit = (prefix.address.bits >> (width - 1 - i)) & 1
            var next = bit == 0 ? zero[node] : one[node]
            if next < 0 {
                zero.append(-1); one.append(-1); slot.append(-1)
                next = Int32(zero.count - 1)
                if bit == 0 { zero[node] = next } else { one[node] = next }
            }
            node = Int(next)
        }
        if slot[node] < 0 {
            values.append([])
            slot[node] = Int32(values.count - 1)
        }
        values[Int(slot[node])].append(value)
    }

    /// Visits the values of every prefix containing `address`, longest prefix first (within a
    /// prefix, in insertion order), with the prefix length. Stops when `body` returns false.
    func forEachContaining(_ address: IPAddress, _ body: (Value, _ length: Int) -> Bool) {
        var node = Self.root(address.family)
        var hits: [(slot: Int32, length: Int)] = []
        let width = address.width
        if slot[node] >= 0 { hits.append((slot[node], 0)) }
        for i in 0..<width {
            let bit = (address.bits >> (width - 1 - i)) & 1
            let next = bit == 0 ? zero[node] : one[node]
            if next < 0 { break }
            node = Int(next)
            if slot[node] >= 0 { hits.append((slot[node], i + 1)) }
        }
        for hit in hits.reversed() {
            for value in values[Int(hit.slot)] where !body(value, hit.length) { return }
        }
    }

    /// The first value of the longest prefix containing `address`.
    func longestMatch(_ address: IPAddress) -> Value? {
        var found: Value?
        forEachContaining(address) { value, _ in found = value; return false }
        return found
    }
}
