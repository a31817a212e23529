// libFuzzer target: the socketmap request parser of `run --maps-socket` (Netstring.parse and
// Socketmap.reply in the daemon library's Socketmap.swift). Properties: no crash; a complete netstring never claims more
// bytes than it was given and its payload has the length it declared; what `encode` writes
// parses back; every reply is one printable line, short enough for a netstring.

import ConnectorDaemon
import ConnectorPolicy
import FuzzDriver
import Glibc

runFuzzer("FuzzSocketmap", fuzzSocketmap)


@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzSocketmap(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    var rest = bytes[...]
    while !rest.isEmpty {
        switch Netstring.parse(rest, limit: Socketmap.maximumRequestLength) {
        case .complete(let payload, let consumed):
            precondition(consumed > payload.count && consumed <= rest.count, "consumed \(consumed) of \(rest.count)")
            precondition(Netstring.parse(Netstring.encode(payload)[...], limit: Socketmap.maximumRequestLength)
                         == .complete(payload: payload, consumed: Netstring.encode(payload).count), "round trip")
            let reply = Socketmap.reply(to: payload, maps: Fixture.maps)
            precondition(reply.utf8.count <= 100_000, "reply too long")
            precondition(!reply.unicodeScalars.contains { $0.value < 0x20 || $0.value == 0x7F }, "control character in \(reply.debugDescription)")
            rest = rest.dropFirst(consumed)
        case .incomplete, .malformed, .tooLong:
            return 0
        }
    }
    return 0
}

// In main.swift a global is set when the top-level code reaches it, and the entry above
// never returns: a static is set on first use.
private enum Fixture {
    static let maps: OutboundMaps = {
        let yaml = """
            organization:
              acceptedDomains: [contoso.com]
            connectors:
              - name: To Fabrikam
                direction: outbound
                type: partner
                recipientDomains: [fabrikam.com, "*.fabrikam.net"]
                smartHosts: ["[203.0.113.25]:2525"]
                tlsSettings: domainValidation
                tlsDomain: mx.fabrikam.com
              - name: To on-premises
                direction: outbound
                type: onPremises
                allAcceptedDomains: true
                smartHosts: [mail.contoso.com]
                tlsSettings: encryptionOnly
            """
        guard case .success(let policy) = PolicyParser.parse(yaml, file: "fuzz.yaml") else { fatalError("fuzz policy") }
        return OutboundMaps(PolicySet(policy))
    }()
}
