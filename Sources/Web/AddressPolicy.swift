import Foundation

/// Which addresses `web_fetch` may connect to: SSRF protection.
///
/// A URL chosen by a model must not reach the gateway's own network: loopback, private,
/// link-local, cloud-metadata and other special-purpose addresses are refused. The check runs on
/// the address curl is about to connect to (after DNS resolution, so a public name resolving to
/// 127.0.0.1 is caught), on every redirect hop. `allow` lists exceptions (a test's loopback
/// server, an intranet the operator wants reachable).
public struct AddressPolicy: Sendable, Equatable {
    public var allow: [AddressRule]

    public init(allow: [AddressRule] = []) { self.allow = allow }

    /// Nil if the gateway may connect to `address` (4 or 16 bytes) on `port`, else why not:
    /// the kind of address, never the address, which a model and its client would otherwise
    /// learn for any internal host name they asked for (review 62B #5).
    public func refusal(address: [UInt8], port: Int) -> String? {
        guard let category = Self.specialPurpose(address) else { return nil }
        if allow.contains(where: { $0.matches(address: address, port: port) }) { return nil }
        return "it points to \(category.first.map { "aeiouAEIOU".contains($0) } == true ? "an" : "a") \(category) address, which is not fetched"
    }

    /// The kind of special-purpose address, or nil for an ordinary public one.
    public static func specialPurpose(_ address: [UInt8]) -> String? {
        switch address.count {
        case 4: return specialPurposeV4(address)
        case 16: return specialPurposeV6(address)
        default: return "malformed"
        }
    }

    private static func specialPurposeV4(_ a: [UInt8]) -> String? {
        if a == [169, 254, 169, 254] || a == [100, 100, 100, 200] || a == [192, 0, 0, 192] { return "cloud metadata" }
        switch (a[0], a[1]) {
        case (0, _): return "unspecified"
        case (10, _), (172, 16...31), (192, 168): return "private"
        case (100, 64...127): return "shared (carrier-grade NAT)"
        case (127, _): return "loopback"
        case (169, 254): return "link-local"
        case (192, 0) where a[2] == 0: return "IETF protocol"
        case (198, 18...19): return "benchmarking"
        case (224...239, _): return "multicast"
        case (240...255, _): return "reserved"
        default: return nil
        }
    }

    private static func specialPurposeV6(_ a: [UInt8]) -> String? {
        let v4Tail = Array(a[12..<16])
        if a[0..<10].allSatisfy({ $0 == 0 }) && a[10] == 0xff && a[11] == 0xff {
            return specialPurposeV4(v4Tail)  // IPv4-mapped ::ffff:a.b.c.d
        }
        if a[0..<12].allSatisfy({ $0 == 0 }) {
            if a[12..<15].allSatisfy({ $0 == 0 }) && (a[15] == 0 || a[15] == 1) { return a[15] == 1 ? "loopback" : "unspecified" }
            return specialPurposeV4(v4Tail)  // IPv4-compatible ::a.b.c.d (deprecated)
        }
        if a[0..<4] == [0x00, 0x64, 0xff, 0x9b] && a[4..<12].allSatisfy({ $0 == 0 }) {
            return specialPurposeV4(v4Tail)  // NAT64 64:ff9b::/96 reaches the embedded IPv4 address
        }
        // Local-use NAT64 64:ff9b:1::/48 (RFC 8215): a site's own translator, to its own IPv4 space.
        if a[0..<6] == [0x00, 0x64, 0xff, 0x9b, 0x00, 0x01] { return "local-use NAT64" }
        if a[0] == 0x20 && a[1] == 0x02 { return specialPurposeV4(Array(a[2..<6])) }  // 6to4 2002::/16
        // Teredo 2001::/32 tunnels to an IPv4 host through a relay; 2001:db8::/32 is documentation;
        // 100::/64 discards.
        if a[0..<4] == [0x20, 0x01, 0x00, 0x00] { return "Teredo" }
        if a[0..<4] == [0x20, 0x01, 0x0d, 0xb8] { return "documentation" }
        if a[0..<2] == [0x01, 0x00] && a[2..<8].allSatisfy({ $0 == 0 }) { return "discard-only" }
        if a == [0xfd, 0x00, 0x0e, 0xc2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02, 0x54] { return "cloud metadata" }  // fd00:ec2::254
        if a[0] & 0xfe == 0xfc { return "private (unique local)" }
        if a[0] == 0xfe && a[1] & 0xc0 == 0x80 { return "link-local" }
        if a[0] == 0xfe && a[1] & 0xc0 == 0xc0 { return "site-local" }
        if a[0] == 0xff { return "multicast" }
        return nil
    }

    /// Dotted IPv4, or IPv6 in its canonical short form (glibc's `inet_ntop`: RFC 5952, with
    /// IPv4-mapped addresses as `::ffff:a.b.c.d`).
    public static func format(_ address: [UInt8]) -> String {
        let family = address.count == 4 ? AF_INET : address.count == 16 ? AF_INET6 : nil
        guard let family else { return "?" }
        var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        guard address.withUnsafeBytes({ inet_ntop(family, $0.baseAddress, &text, socklen_t(text.count)) }) != nil else { return "?" }
        return String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Parses a dotted IPv4 (exactly four decimal parts) or an IPv6 literal (no zone) into its
    /// bytes, with glibc's `inet_pton`.
    public static func parseAddress(_ text: String) -> [UInt8]? {
        let v6 = text.contains(":")
        var bytes = [UInt8](repeating: 0, count: v6 ? 16 : 4)
        let parsed = bytes.withUnsafeMutableBytes { inet_pton(v6 ? AF_INET6 : AF_INET, text, $0.baseAddress) }
        return parsed == 1 ? bytes : nil
    }
}

/// One allow-list entry: an address or network, optionally one port. Written `127.0.0.1:8443`,
/// `10.0.0.0/8`, `[::1]:8080`, `fd00::/8`.
public struct AddressRule: Sendable, Equatable, CustomStringConvertible {
    public var network: [UInt8]
    public var prefixLength: Int
    public var port: Int?

    public init?(_ text: String) {
        var rest = Substring(text.trimmingCharacters(in: .whitespaces))
        var port: Int?
        if rest.hasPrefix("[") {  // [v6]:port
            guard let close = rest.firstIndex(of: "]") else { return nil }
            let after = rest[rest.index(after: close)...]
            if !after.isEmpty {
                guard after.hasPrefix(":"), let value = Int(after.dropFirst()), (1...65535).contains(value) else { return nil }
                port = value
            }
            rest = rest[rest.index(after: rest.startIndex)..<close]
        } else if rest.filter({ $0 == ":" }).count == 1, let colon = rest.firstIndex(of: ":") {  // v4:port
            guard let value = Int(rest[rest.index(after: colon)...]), (1...65535).contains(value) else { return nil }
            port = value
            rest = rest[..<colon]
        }
        var prefix: Int?
        if let slash = rest.firstIndex(of: "/") {
            guard let value = Int(rest[rest.index(after: slash)...]) else { return nil }
            prefix = value
            rest = rest[..<slash]
        }
        guard let network = AddressPolicy.parseAddress(String(rest)) else { return nil }
        let bits = network.count * 8
        guard (0...bits).contains(prefix ?? bits) else { return nil }
        self.network = network
        prefixLength = prefix ?? bits
        self.port = port
    }

    public func matches(address: [UInt8], port: Int) -> Bool {
        guard address.count == network.count, self.port == nil || self.port == port else { return false }
        var remaining = prefixLength
        for index in network.indices where remaining > 0 {
            let bits = min(8, remaining)
            let mask = UInt8(truncatingIfNeeded: 0xff << (8 - bits))
            if address[index] & mask != network[index] & mask { return false }
            remaining -= bits
        }
        return true
    }

    public var description: String {
        let address = AddressPolicy.format(network)
        let base = prefixLength == network.count * 8 ? address : "\(address)/\(prefixLength)"
        guard let port else { return base }
        return network.count == 16 ? "[\(base)]:\(port)" : "\(base):\(port)"
    }
}
