import Testing
@testable import UpstreamClient

/// The header lines handed to curl: whatever a configured header or a key holds, no CR, LF or
/// NUL reaches curl (it sends custom headers as given), and every other byte does, in order.
@Suite struct UpstreamHeaderLineTests {
    static let fragments = ["a", "Key", " ", ":", "\r", "\n", "\r\n", "\0", "ä", "€", "\t", "X-Injected: 1"]

    /// Every name and value of up to three fragments (13³ each side, all pairs sampled).
    static var texts: [String] {
        var result = [""]
        for a in fragments {
            result.append(a)
            for b in fragments {
                result.append(a + b)
                for c in fragments { result.append(a + b + c) }
            }
        }
        return result
    }

    @Test func lineBreaksAndNULNeverReachCurlAndEveryOtherByteDoes() {
        let texts = Self.texts
        var line: [CChar] = []
        for (index, name) in texts.enumerated() {
            // Every name, against a spread of values (all values for the first 40 names).
            let values = index < 40 ? texts : [texts[index % texts.count], texts[(index * 7) % texts.count], texts.last!]
            for value in values {
                UpstreamTransfer.headerLine(name, value, into: &line)
                let clean = { (text: String) in text.utf8.filter { $0 != 0x0D && $0 != 0x0A && $0 != 0 } }
                var expected = clean(name) + [UInt8(ascii: ":")]
                if !value.isEmpty { expected += [UInt8(ascii: " ")] + clean(value) }
                expected.append(0)
                #expect(line.map { UInt8(bitPattern: $0) } == expected, "\(name.debugDescription): \(value.debugDescription)")
                if line.map({ UInt8(bitPattern: $0) }) != expected { return }
            }
        }
    }

    @Test func anEmptyValueTellsCurlToSendNone() {
        var line: [CChar] = []
        UpstreamTransfer.headerLine("Expect", "", into: &line)
        #expect(String(cString: line) == "Expect:")
    }

    /// Which hosts skip the environment's proxy (`UpstreamTransfer.noProxy`).
    @Test func loopbackSkipsTheEnvironmentsProxy() {
        #expect(UpstreamTransfer.noProxy(environment: [:]) == nil, "no proxy variable: curl's default")
        #expect(UpstreamTransfer.noProxy(environment: ["no_proxy": "corp"]) == nil)
        #expect(UpstreamTransfer.noProxy(environment: ["http_proxy": "http://p:1"]) == "localhost,127.0.0.0/8,::1")
        #expect(UpstreamTransfer.noProxy(environment: ["HTTPS_PROXY": "http://p:1", "NO_PROXY": " .corp,10.0.0.0/8 "])
            == "localhost,127.0.0.0/8,::1,.corp,10.0.0.0/8")
        #expect(UpstreamTransfer.noProxy(environment: ["all_proxy": "socks5://p", "no_proxy": "*"]) == "*")
    }
}
