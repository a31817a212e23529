import XCTest
@testable import ConnectorPolicy

final class AddressTests: XCTestCase {
    func test_ipAddressesParseStrictly() {
        let good: [(String, String)] = [
            ("192.0.2.1", "192.0.2.1"), ("0.0.0.0", "0.0.0.0"), ("2001:db8::1", "2001:db8::1"),
            ("2001:DB8:0:0:0:0:0:1", "2001:db8::1"), ("::", "::"), ("::1", "::1"), ("1::", "1::"),
            ("::ffff:192.0.2.1", "192.0.2.1"), ("IPv6:2001:db8::1", "2001:db8::1"), ("64:ff9b::192.0.2.33", "64:ff9b::c000:221"),
            ("2001:db8:0:1:1:1:1:1", "2001:db8:0:1:1:1:1:1"),
        ]
        for (text, canonical) in good {
            XCTAssertEqual(IPAddress(text)?.description, canonical, text)
        }
        for bad in ["", "1.2.3", "1.2.3.4.5", "256.1.1.1", "01.2.3.4", "1.2.3.4 ", "::1::", ":::", "1:2:3:4:5:6:7:8:9",
                    "fe80::1%eth0", "12345::", "g::1", "1.2.3.-1", "::ffff:1.2.3", "[::1]", "1:2:3:4:5:6:7::8:9"] {
            XCTAssertNil(IPAddress(bad), bad)
        }
    }

    func test_ipAddressEdgesOfTheByteParser() {
        let good: [(String, String)] = [
            ("::1.2.3.4", "::102:304"), ("1:2:3:4:5:6:1.2.3.4", "1:2:3:4:5:6:102:304"), ("IPV6:::1", "::1"),
            ("255.255.255.255", "255.255.255.255"), ("10.0.0.0", "10.0.0.0"), ("ffff:FFFF::", "ffff:ffff::"),
        ]
        for (text, canonical) in good {
            XCTAssertEqual(IPAddress(text)?.description, canonical, text)
        }
        // "+1" and "-0" are numbers to Swift's integer parsers, not hex groups or octets.
        for bad in ["+1::", "::-0", "1.2.3.4.", ".1.2.3", "1..2.3", "+1.2.3.4", "1:2:3:4:5:6:7:1.2.3.4", "1::2::3",
                    "ipv\u{16}:::1", "IPv6:", "1.2.3.0x1", "::1.2.3", "1.2.3.4::", "12345", "00000::", "1:2:3:4:5:6:7:8:"] {
            XCTAssertNil(IPAddress(bad), bad)
        }
    }

    func test_prefixesRejectHostBitsAndBadLengths() {
        XCTAssertEqual(try IPPrefix.parse("192.0.2.0/24").get().description, "192.0.2.0/24")
        XCTAssertEqual(try IPPrefix.parse("2001:db8:25::/48").get().description, "2001:db8:25::/48")
        XCTAssertEqual(IPPrefix.parse("192.0.2.5/24"), .failure(.hostBitsSet("192.0.2.5/24", suggestion: "192.0.2.0/24")))
        XCTAssertEqual(IPPrefix.parse("192.0.2.0/33"), .failure(.badLength("33", max: 32)))
        XCTAssertEqual(IPPrefix.parse("10.0.0.0/-1"), .failure(.badLength("-1", max: 32)))
        XCTAssertTrue(try IPPrefix.parse("0.0.0.0/0").get().contains(IPAddress("203.0.113.9")!))
        XCTAssertFalse(try IPPrefix.parse("0.0.0.0/0").get().contains(IPAddress("::1")!))
    }

    func test_envelopeAddresses() {
        let cases: [(String, String, String)] = [
            ("<user@Example.COM>", "user@Example.COM", "example.com"),
            ("<>", "", ""),
            ("user@example.com.", "user@example.com.", "example.com"),
            ("<\"a@b\"@example.com>", "\"a@b\"@example.com", "example.com"),
            ("<@relay.example:user@example.com>", "user@example.com", "example.com"),
            ("<user@[192.0.2.1]>", "user@[192.0.2.1]", "[192.0.2.1]"),
            ("<postmaster>", "postmaster", ""),
        ]
        for (raw, address, domain) in cases {
            let parsed = EmailAddress(parsing: raw)
            XCTAssertEqual(parsed.address, address, raw)
            XCTAssertEqual(parsed.domain, domain, raw)
        }
        XCTAssertTrue(EmailAddress(parsing: "<>").isNull)
    }

    func test_domainPatterns() {
        XCTAssertEqual(try DomainPattern.parse("*.Contoso.NET").get(), .wildcard("contoso.net"))
        XCTAssertTrue(DomainPattern.wildcard("contoso.net").matches("contoso.net"))
        XCTAssertTrue(DomainPattern.wildcard("contoso.net").matches("a.b.contoso.net"))
        XCTAssertFalse(DomainPattern.wildcard("contoso.net").matches("evilcontoso.net"))
        XCTAssertEqual(DomainPattern.parse("a..b"), .failure(.emptyLabel))
        XCTAssertEqual(DomainPattern.parse("*", allowAny: false), .failure(.anyNotAllowed))
        XCTAssertEqual(DomainPattern.parse("bücher.example"), .failure(.badCharacter("ü")))
        let set = DomainSet([.exact("a.example"), .wildcard("b.example")])
        XCTAssertEqual(set.specificity(of: "a.example"), Int.max)
        XCTAssertEqual(set.specificity(of: "x.y.b.example"), 2)
        XCTAssertNil(set.specificity(of: "c.example"))
        XCTAssertNil(set.specificity(of: ""))
    }
}
