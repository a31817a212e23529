import XCTest
@testable import ConnectorPolicy

final class ReceivedChainTests: XCTestCase {
    func test_theClientAddressIsReadAsEachMTAWritesIt() {
        let cases: [(String, String, String?)] = [
            ("Postfix", "from mail.fabrikam.com (mail.fabrikam.com [203.0.113.7])\n\tby mx.filter.example (Postfix) with ESMTPS id 4Xy; Tue, 1 Dec 2026 10:00:00 +0000", "203.0.113.7"),
            ("Postfix, unknown name", "from helo.example (unknown [198.51.100.9]) by mx (Postfix) with ESMTP id 1", "198.51.100.9"),
            ("Postfix, IPv6", "from h (unknown [IPv6:2001:db8:7::25]) by mx (Postfix) with ESMTP id 1", "2001:db8:7::25"),
            ("Sendmail, may be forged", "from helo (host.example [203.0.113.8] (may be forged))\n\tby relay (8.17.1/8.17.1) with ESMTP id 1; date", "203.0.113.8"),
            ("Sendmail, IPv6", "from helo (host [IPv6:2001:db8::8]) by relay (8.17.1/8.17.1) with ESMTP id 1", "2001:db8::8"),
            ("Google", "from mail-sor-f41.google.com (mail-sor-f41.google.com. [209.85.220.41])\r\n        by mx.google.com with SMTPS id x; Tue", "209.85.220.41"),
            ("Exchange", "from EX1.fabrikam.com (10.1.2.3) by EX2.fabrikam.com (10.1.2.4) with Microsoft SMTP Server (version=TLS1_2) id 15.1.2; Tue", "10.1.2.3"),
            ("Exchange, IPv6", "from NAM.prod.outlook.com (2603:10b6:a03:1::1) by NAM2.prod.outlook.com (2603:10b6:a03:1::2) with Microsoft SMTP Server id 15.20", "2603:10b6:a03:1::1"),
            ("Exim", "from host.example ([192.0.2.44] helo=[10.9.9.9]) by mx with esmtps id 1", "192.0.2.44"),
            ("Exim, no reverse name", "from [192.0.2.45] (helo=x) by mx with esmtp id 1", "192.0.2.45"),
            ("a HELO literal does not beat the observed address", "from [10.9.9.9] (unknown [198.51.100.9]) by mx (Postfix)", "198.51.100.9"),
            ("an address in the by clause is not the client", "from helo by mx.example ([192.0.2.1]) with ESMTP", nil),
            ("no from clause", "by mx.example (Postfix) with ESMTP id 1 for <a@b>", nil),
            ("no address", "from localhost by mx (Postfix, from userid 0) id 1", nil),
            ("garbage", "from ( [ ] ) [999.1.1.1]", nil),
            ("empty", "", nil),
        ]
        for (name, value, expected) in cases {
            XCTAssertEqual(ReceivedHeader.clientAddress(value)?.description, expected, name)
        }
    }

    private let service = IPAddress("198.51.100.5")!
    private func skipping(_ prefixes: String...) -> (IPAddress) -> Bool {
        let parsed = prefixes.map { try! IPPrefix.parse($0).get() }
        return { address in parsed.contains { $0.contains(address) } }
    }

    func test_theWalkSkipsTheServiceAndStopsAtTheFirstOtherClient() {
        let chain = ReceivedChain(headers: [
            "from svc.filter.example (svc.filter.example [198.51.100.5]) by mx.contoso.com (Postfix) with ESMTPS id A",
            "from mail.fabrikam.com (mail.fabrikam.com [203.0.113.7]) by svc.filter.example (Postfix) with ESMTPS id B",
            "from forged (forged [192.0.2.99]) by mail.fabrikam.com with ESMTP id C",
        ])
        XCTAssertEqual(chain.originalClient(connecting: service, isSkipped: skipping("198.51.100.0/24"))?.description, "203.0.113.7")
    }

    func test_twoSkippedHopsAreWalkedPast() {
        let chain = ReceivedChain(headers: [
            "from out.filter.example (out.filter.example [198.51.100.5]) by mx.contoso.com (Postfix) id A",
            "from in.filter.example (in.filter.example [IPv6:2001:db8:f::1]) by out.filter.example (Postfix) id B",
            "from bank (bank.fabrikam.com [203.0.113.7]) by in.filter.example (Postfix) id C",
        ])
        XCTAssertEqual(chain.originalClient(connecting: service,
                                            isSkipped: skipping("198.51.100.0/24", "2001:db8:f::/48"))?.description, "203.0.113.7")
    }

    func test_aForgedChainBelowTheServiceCannotMoveTheResult() {
        // The attacker connected to the service from 192.0.2.66 and wrote lines claiming a
        // skipped hop and the bank's address below the service's own line.
        let chain = ReceivedChain(headers: [
            "from svc (svc [198.51.100.5]) by mx.contoso.com (Postfix) id A",
            "from attacker (unknown [192.0.2.66]) by svc (Postfix) id B",
            "from x (x [198.51.100.6]) by y id C",
            "from bank (bank [203.0.113.7]) by x id D",
        ])
        XCTAssertEqual(chain.originalClient(connecting: service, isSkipped: skipping("198.51.100.0/24"))?.description, "192.0.2.66")
    }

    func test_skipLastIPSkipsOnlyTheConnectingClient() {
        let chain = ReceivedChain(headers: [
            "from svc (svc [198.51.100.5]) by mx (Postfix) id A",
            "from other (other [198.51.100.6]) by svc id B",
        ])
        XCTAssertEqual(chain.originalClient(connecting: service, isSkipped: { $0 == self.service })?.description, "198.51.100.6")
    }

    func test_noAnswerWhereTheChainSaysNothingUsable() {
        let skip = skipping("198.51.100.0/24")
        XCTAssertNil(ReceivedChain(headers: []).originalClient(connecting: service, isSkipped: skip), "no Received header")
        XCTAssertNil(ReceivedChain(headers: ["from svc (svc [198.51.100.5]) by mx id A", "garbage"])
            .originalClient(connecting: service, isSkipped: skip), "an unparsable header where one is needed")
        XCTAssertNil(ReceivedChain(headers: ["from svc (svc [198.51.100.5]) by mx id A"])
            .originalClient(connecting: service, isSkipped: skip), "every hop skipped")
        XCTAssertNil(ReceivedChain(headers: ["from bank (bank [203.0.113.7]) by mx id A"])
            .originalClient(connecting: IPAddress("203.0.113.9")!, isSkipped: skip), "the connecting client is not the service")
        let long = Array(repeating: "from svc (svc [198.51.100.5]) by mx id A", count: 100) + ["from bank (bank [203.0.113.7]) by svc id B"]
        XCTAssertNil(ReceivedChain(headers: long).originalClient(connecting: service, isSkipped: skip), "past the hop limit")
    }
}
