// libFuzzer target: the Received header parser and the enhanced-filtering walk
// (ReceivedChain.swift). Properties: no crash, whatever the headers; an address found is one
// the walk may trust (not skipped), and nothing below the header that named it can change it,
// so an attacker's lines under the service's cannot move the result; a header section read
// with `values(inHeaders:)` gives the same walk; the verdict line with the original client
// stays exactly what the reader expects.
//
// The input is split on 0xFF (never valid UTF-8) into Received header values, topmost first.

import ConnectorPolicy
import ConnectorReview
import FuzzDriver
import Glibc

runFuzzer("FuzzReceivedChain", fuzzReceivedChain)

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzReceivedChain(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = UnsafeBufferPointer(start: data, count: size)
    let headers = bytes.split(separator: 0xFF, omittingEmptySubsequences: false).map { String(decoding: $0, as: UTF8.self) }
    for value in headers { _ = ReceivedHeader.clientAddress(value) }

    let service = IPAddress("198.51.100.5")!
    let skipped = IPPrefix.parse("198.51.100.0/24").map { $0 }
    guard case .success(let block) = skipped else { fatalError("fuzz prefix") }
    let isSkipped = { (address: IPAddress) in block.contains(address) }
    let chain = ReceivedChain(headers: headers)
    let found = chain.originalClient(connecting: service, isSkipped: isSkipped)
    if let found {
        precondition(!isSkipped(found), "a skipped address \(found) came out as the original client")
        // The header that named it, and nothing below: the same answer; forged lines below change nothing.
        guard let index = headers.prefix(ReceivedChain.maximumHops).firstIndex(where: {
            ReceivedHeader.clientAddress($0).map { !isSkipped($0) } ?? false
        }) else { preconditionFailure("no header names \(found)") }
        precondition(ReceivedHeader.clientAddress(headers[index]) == found, "the walk did not stop at the first unskipped client")
        let cut = ReceivedChain(headers: Array(headers[...index]))
        precondition(cut.originalClient(connecting: service, isSkipped: isSkipped) == found, "lines below the answer changed it")
        let forged = ReceivedChain(headers: Array(headers[...index]) + ["from x (x [203.0.113.7]) by y", "garbage"])
        precondition(forged.originalClient(connecting: service, isSkipped: isSkipped) == found, "forged lines below moved it")
    }
    // Not the service in front: never an answer.
    precondition(chain.originalClient(connecting: IPAddress("192.0.2.1")!, isSkipped: isSkipped) == nil)

    // The same headers as a header section, when they fit on one line each.
    if headers.allSatisfy({ h in
        let scalars = h.unicodeScalars
        return !scalars.contains("\n") && !scalars.contains("\r") && !scalars.isEmpty
            && ![" ", "\t"].contains(scalars.first!) && ![" ", "\t"].contains(scalars.last!)
    }) {
        let section = headers.map { "Received: " + $0 }.joined(separator: "\n") + "\n\nbody"
        let read = ReceivedHeader.values(inHeaders: section)
        precondition(read == headers, "values(inHeaders:) read \(read.count) of \(headers.count) headers back differently")
    }

    let session = SessionFacts(clientAddress: service, clientName: "mx.filter.example")
    let from = EmailAddress(parsing: "<pay@fabrikam.com>"), rcpt = EmailAddress(parsing: "<ap@contoso.com>")
    let decision = Fixture.policy.judge(session: session, from: from, recipient: rcpt, originalClient: found)
    let line = VerdictLine.format(queueID: "Q", decision: decision, session: session, from: from, recipient: rcpt, originalClient: found)
    let problems = VerdictLineReader.conformanceProblems(line)
    precondition(problems.isEmpty, "unreadable verdict line \(problems): \(line)")
    return 0
}

private enum Fixture {
    static let policy: PolicySet = {
        let yaml = """
            organization:
              acceptedDomains: [contoso.com]
            settings:
              rejectDirectSend: true
            connectors:
              - name: Filter service
                direction: inbound
                type: partner
                senderDomains: ["*"]
                senderIPAddresses: [198.51.100.0/24]
                efSkipIPs: [198.51.100.0/24]
              - name: Fabrikam Bank
                direction: inbound
                type: partner
                senderDomains: [fabrikam.com]
                senderIPAddresses: [203.0.113.0/24]
                restrictDomainsToIPAddresses: true
            """
        guard case .success(let policy) = PolicyParser.parse(yaml, file: "fuzz.yaml") else { fatalError("fuzz policy") }
        return PolicySet(policy)
    }()
}
