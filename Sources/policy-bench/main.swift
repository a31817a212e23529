// Measures how judging scales with the size of the policy: a 10-connector policy and a
// 10,000-connector policy with 100,000 address prefixes, judged on the same kind of traffic in
// the same run. Prints decisions per second for both, their ratio, and how long the large
// policy takes to parse, validate and index. Run with `make bench` (release build).

import ConnectorPolicy
import Foundation

/// A small deterministic generator, so every run judges the same traffic.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

struct Shape {
    let onPremises: Int
    let partners: Int
    let outbound: Int
    let prefixesPerOnPremises: Int
    let prefixesPerPartner: Int
}

/// Writes a policy as YAML, so the benchmark also measures the real loader.
func makePolicyYAML(_ shape: Shape, rng: inout SplitMix64) -> (yaml: String, addresses: [String]) {
    var yaml = """
    organization:
      acceptedDomains: [contoso.com, "*.contoso.net"]
    settings:
      rejectDirectSend: true
    connectors:

    """
    var sample: [String] = []
    func v4Prefix() -> String {
        // 127/8 is left out: the throughput benchmark's client is 127.0.0.1 and must stay unattributed.
        var a = UInt32.random(in: 1...223, using: &rng)
        if a == 127 { a = 128 }
        let b = UInt32.random(in: 0...255, using: &rng)
        let c = UInt32.random(in: 0...255, using: &rng), d = UInt32.random(in: 0...255, using: &rng)
        let length = [16, 20, 24, 24, 24, 28, 32].randomElement(using: &rng)!
        let bits = (a << 24 | b << 16 | c << 8 | d) & (length == 0 ? 0 : ~UInt32(0) << (32 - length))
        let text = "\(bits >> 24).\(bits >> 16 & 255).\(bits >> 8 & 255).\(bits & 255)"
        sample.append("\(bits >> 24).\(bits >> 16 & 255).\(bits >> 8 & 255).\((bits & 255) | (length < 32 ? 1 : 0))")
        return "\(text)/\(length)"
    }
    func v6Prefix() -> String {
        let g = (0..<3).map { _ in String(UInt16.random(in: 1...0xFFFF, using: &rng), radix: 16) }
        sample.append("2001:\(g[0]):\(g[1]):\(g[2])::1")
        return "\"2001:\(g[0]):\(g[1]):\(g[2])::/64\""
    }
    func prefixes(_ n: Int) -> String {
        (0..<n).map { i in i % 10 == 9 ? v6Prefix() : v4Prefix() }.joined(separator: ", ")
    }
    for i in 0..<shape.onPremises {
        yaml += """
          - name: On-premises site \(i)
            direction: inbound
            type: onPremises
            senderIPAddresses: [\(prefixes(shape.prefixesPerOnPremises))]
            tlsSenderCertificateName: "*.site\(i).contoso.com"

        """
    }
    for i in 0..<shape.partners {
        let restricting = i % 4 == 0
        yaml += """
          - name: Partner \(i)
            direction: inbound
            type: partner
            senderDomains: [partner\(i).example, "*.partner\(i).example"]
            senderIPAddresses: [\(prefixes(shape.prefixesPerPartner))]
            restrictDomainsToIPAddresses: \(restricting)
            requireTls: \(i % 3 == 0)

        """
    }
    for i in 0..<shape.outbound {
        yaml += """
          - name: To partner \(i)
            direction: outbound
            type: partner
            recipientDomains: [partner\(i).example]
            smartHosts: ["[192.0.2.\(i % 250 + 1)]:2525"]
            tlsSettings: encryptionOnly

        """
    }
    return (yaml, sample)
}

struct Query {
    let session: SessionFacts
    let from: EmailAddress
    let recipient: EmailAddress
}

/// Traffic of the same shape for both policies: known and unknown clients, partner and
/// foreign senders, accepted and foreign recipients, TLS and clear.
func makeQueries(count: Int, shape: Shape, addresses: [String], rng: inout SplitMix64) -> [Query] {
    (0..<count).map { _ in
        let known = Bool.random(using: &rng)
        let address = known ? addresses.randomElement(using: &rng)!
            : "198.\(Int.random(in: 18...19, using: &rng)).\(Int.random(in: 0...255, using: &rng)).\(Int.random(in: 1...254, using: &rng))"
        let tls = Bool.random(using: &rng)
        let site = Int.random(in: 0..<shape.onPremises, using: &rng)
        let partner = Int.random(in: 0..<shape.partners, using: &rng)
        let session = SessionFacts(clientAddress: IPAddress(address), clientName: "client.example",
                                   tlsVersion: tls ? "TLSv1.3" : nil,
                                   verifiedCertificateName: tls && Int.random(in: 0..<4, using: &rng) == 0 ? "mx.site\(site).contoso.com" : nil)
        let from: String
        switch Int.random(in: 0..<4, using: &rng) {
        case 0: from = "<a@contoso.com>"
        case 1: from = "<a@partner\(partner).example>"
        case 2: from = "<a@mail.partner\(partner).example>"
        default: from = "<a@unknown\(partner).example>"
        }
        let rcpt = Int.random(in: 0..<5, using: &rng) == 0 ? "<b@partner\(partner).example>" : "<b@sales.contoso.net>"
        return Query(session: session, from: EmailAddress(parsing: from), recipient: EmailAddress(parsing: rcpt))
    }
}

func seconds(_ body: () -> Void) -> Double {
    let start = DispatchTime.now().uptimeNanoseconds
    body()
    return Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
}

func load(_ yaml: String, name: String) -> (PolicySet, parse: Double, index: Double) {
    var policy: Policy?
    let parse = seconds {
        switch PolicyParser.parse(yaml, file: name) {
        case .success(let p): policy = p
        case .failure(let errors): fatalError("benchmark policy invalid:\n\(errors)")
        }
    }
    var set: PolicySet?
    let index = seconds { set = PolicySet(policy!) }
    return (set!, parse, index)
}

/// Decisions per second, best of several rounds (the least disturbed by the rest of the machine).
func decisionsPerSecond(_ policy: PolicySet, _ queries: [Query], rounds: Int, withLine: Bool) -> Double {
    var best = Double.infinity
    var sink = 0
    for _ in 0..<rounds {
        let t = seconds {
            for q in queries {
                let d = policy.judge(session: q.session, from: q.from, recipient: q.recipient)
                if withLine {
                    sink &+= VerdictLine.format(queueID: nil, decision: d, session: q.session, from: q.from, recipient: q.recipient).utf8.count
                } else {
                    sink &+= d.verdict == .accept ? 1 : 2
                }
            }
        }
        best = min(best, t)
    }
    if sink == 42 { print("") }  // keeps the work from being optimized away
    return Double(queries.count) / best
}

// `policy-bench --emit-policy N`: print a policy of about N connectors (for bench/throughput.sh).
if CommandLine.arguments.count == 3, CommandLine.arguments[1] == "--emit-policy", let n = Int(CommandLine.arguments[2]), n >= 10 {
    var rng = SplitMix64(state: 1)
    let shape = Shape(onPremises: n / 10, partners: n * 7 / 10, outbound: n - n / 10 - n * 7 / 10,
                      prefixesPerOnPremises: 16, prefixesPerPartner: 12)
    print(makePolicyYAML(shape, rng: &rng).yaml)
    exit(0)
}

let small = Shape(onPremises: 2, partners: 6, outbound: 2, prefixesPerOnPremises: 3, prefixesPerPartner: 2)
let large = Shape(onPremises: 1_000, partners: 7_000, outbound: 2_000, prefixesPerOnPremises: 16, prefixesPerPartner: 12)
let queryCount = Int(ProcessInfo.processInfo.environment["BENCH_QUERIES"] ?? "") ?? 200_000

var rng = SplitMix64(state: 20_261_129)
let (smallYAML, smallAddresses) = makePolicyYAML(small, rng: &rng)
let (largeYAML, largeAddresses) = makePolicyYAML(large, rng: &rng)
let (smallPolicy, _, _) = load(smallYAML, name: "small.yaml")
let (largePolicy, largeParse, largeIndex) = load(largeYAML, name: "large.yaml")
let prefixCount = largePolicy.policy.connectors.reduce(0) { $0 + $1.senderIPAddresses.count }
let smallQueries = makeQueries(count: queryCount, shape: small, addresses: smallAddresses, rng: &rng)
let largeQueries = makeQueries(count: queryCount, shape: large, addresses: largeAddresses, rng: &rng)

print("policy-bench: \(queryCount) decisions per round, best of 5 rounds, release build")
print("large policy: \(largePolicy.policy.connectors.count) connectors, \(prefixCount) prefixes, \(largeYAML.utf8.count / 1024) KiB of YAML")
print(String(format: "  load and validate: %.3f s   index: %.3f s", largeParse, largeIndex))
for withLine in [false, true] {
    // Interleave to share whatever the machine is doing between both sizes.
    let s1 = decisionsPerSecond(smallPolicy, smallQueries, rounds: 3, withLine: withLine)
    let l1 = decisionsPerSecond(largePolicy, largeQueries, rounds: 3, withLine: withLine)
    let s2 = decisionsPerSecond(smallPolicy, smallQueries, rounds: 2, withLine: withLine)
    let l2 = decisionsPerSecond(largePolicy, largeQueries, rounds: 2, withLine: withLine)
    let s = max(s1, s2), l = max(l1, l2)
    print(withLine ? "judge + verdict line:" : "judge:")
    print(String(format: "  small (%d connectors): %10.0f decisions/s", smallPolicy.policy.connectors.count, s))
    print(String(format: "  large (%d connectors): %10.0f decisions/s", largePolicy.policy.connectors.count, l))
    print(String(format: "  ratio small/large time: %.2fx (bar: 2.00x or less)", s / l))
}
