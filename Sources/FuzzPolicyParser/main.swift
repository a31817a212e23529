// libFuzzer target: the policy file loader (PolicyParser.parse), then what a valid policy is
// compiled into (PolicySet, OutboundMaps) and one judgment. Build and run: scripts/fuzz.sh.
// Properties: no crash, no hang, no unbounded memory; an accepted policy judges and exports.

import ConnectorPolicy
import FuzzDriver
import Glibc

runFuzzer("FuzzPolicyParser", fuzzPolicyParser)


@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzPolicyParser(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let yaml = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)
    guard case .success(let policy) = PolicyParser.parse(yaml, file: "fuzz.yaml") else { return 0 }
    let set = PolicySet(policy)
    let session = SessionFacts(clientAddress: IPAddress("192.0.2.7"), clientName: "relay.contoso.com",
                               tlsVersion: "TLSv1.3", verifiedCertificateName: "relay.contoso.com")
    for rcpt in ["<user@contoso.com>", "<x@fabrikam.com>", "<>"] {
        _ = set.judge(session: session, from: EmailAddress(parsing: "<a@contoso.com>"), recipient: EmailAddress(parsing: rcpt))
    }
    let maps = OutboundMaps(set)
    for map in OutboundMapName.allCases {
        for key in ["contoso.com", "fabrikam.com", "user@fabrikam.com", "other.example"] { _ = maps.lookup(map, key: key) }
    }
    return 0
}
