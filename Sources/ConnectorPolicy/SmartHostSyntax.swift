/// `host`, `host:port`, `[address]`, `[address]:port`, `[host]`: all delivered to without an MX lookup.
enum SmartHostSyntax {
    struct Failure: Error { let message: String }

    package static func parse(_ text: String) -> Result<SmartHost, Failure> {
        var hostPart = Substring(text)
        var portPart: Substring? = nil
        var bracketed = false
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else { return .failure(Failure(message: "\"[\" without a closing \"]\"")) }
            hostPart = text[text.index(after: text.startIndex)..<close]
            let after = text[text.index(after: close)...]
            if !after.isEmpty {
                guard after.hasPrefix(":") else { return .failure(Failure(message: "only \":PORT\" may follow \"]\"")) }
                portPart = after.dropFirst()
            }
            bracketed = true
        } else if let colon = text.firstIndex(of: ":") {
            if text[text.index(after: colon)...].contains(":") {
                return .failure(Failure(message: "write an IPv6 address in brackets, like \"[2001:db8::25]:25\""))
            }
            hostPart = text[..<colon]
            portPart = text[text.index(after: colon)...]
        }
        var port: Int? = nil
        if let portPart {
            guard !portPart.isEmpty, portPart.utf8.count <= 5, portPart.utf8.allSatisfy({ $0 >= 48 && $0 <= 57 }),
                  let number = Int(portPart), (1...65535).contains(number) else {
                return .failure(Failure(message: "port must be a number from 1 to 65535"))
            }
            port = number
        }
        // An address has no MX records, so it is a bracketed literal even when written bare.
        if let address = IPAddress(hostPart), !hostPart.lowercased().hasPrefix("ipv6:") {
            return .success(SmartHost(host: address.description, isBracketed: true, port: port))
        }
        switch DomainName.validate(String(hostPart)) {
        // A smart host is delivered to by its address records, never through MX (EOP's smart
        // hosts; the outbound maps write them `smtp:[host]:port`): the brackets are implied.
        case .success(let name): return .success(SmartHost(host: name, isBracketed: true, port: port))
        case .failure(let error):
            return .failure(Failure(message: bracketed ? "not an IP address or a domain name (\(error))" : "\(error)"))
        }
    }
}
