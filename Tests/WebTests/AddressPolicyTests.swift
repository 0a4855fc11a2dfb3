import Testing
import Web

/// SSRF protection: which addresses web_fetch may reach.
@Suite struct AddressPolicyTests {
    func refused(_ text: String, port: Int = 80, _ policy: AddressPolicy = AddressPolicy()) throws -> String? {
        policy.refusal(address: try #require(AddressPolicy.parseAddress(text)), port: port)
    }

    @Test func refusesSpecialPurposeIPv4() throws {
        for (address, kind) in [("127.0.0.1", "loopback"), ("127.255.0.9", "loopback"), ("10.1.2.3", "private"),
                                ("172.16.0.1", "private"), ("172.31.255.255", "private"), ("192.168.1.1", "private"),
                                ("169.254.169.254", "cloud metadata"), ("169.254.1.1", "link-local"),
                                ("100.100.100.200", "cloud metadata"), ("100.64.0.1", "shared (carrier-grade NAT)"),
                                ("0.0.0.0", "unspecified"), ("224.0.0.1", "multicast"), ("255.255.255.255", "reserved")] {
            let reason = try #require(try refused(address), "\(address) should be refused")
            #expect(reason == "it points to \(kind == "unspecified" ? "an" : "a") \(kind) address, which is not fetched")
        }
    }

    @Test func allowsPublicAddresses() throws {
        for address in ["93.184.216.34", "8.8.8.8", "172.32.0.1", "172.15.255.255", "100.128.0.1", "2606:4700::1111"] {
            #expect(try refused(address) == nil, "\(address)")
        }
    }

    @Test func refusesSpecialPurposeIPv6IncludingEmbeddedIPv4() throws {
        for address in ["::1", "::", "fe80::1", "fc00::1", "fd12:3456::1", "ff02::1", "fd00:ec2::254",
                        "::ffff:127.0.0.1", "::ffff:169.254.169.254", "::ffff:10.0.0.1", "64:ff9b::a9fe:a9fe",
                        "2002:7f00:1::1", "::127.0.0.1", "64:ff9b:1::a00:1", "64:ff9b:1:ffff::1", "2001::1", "2001:0:4136:e378:8000:63bf:3fff:fdd2",
                        "2001:db8::1", "100::1"] {
            #expect(try refused(address) != nil, "\(address) should be refused")
        }
        #expect(try refused("::ffff:169.254.169.254")?.contains("cloud metadata") == true)
        #expect(try refused("::ffff:8.8.8.8") == nil)
        #expect(try refused("64:ff9b::808:808") == nil, "the well-known NAT64 prefix to a public address")
        for address in ["2001:4860:4860::8888", "64:ff9b:2::1", "2001:1::1", "100:0:0:1::1"] { #expect(try refused(address) == nil, "\(address)") }
    }

    @Test func allowListByAddressPortAndNetwork() throws {
        let policy = AddressPolicy(allow: [try #require(AddressRule("127.0.0.1:8443")), try #require(AddressRule("10.0.0.0/8")),
                                           try #require(AddressRule("[::1]:9000"))])
        #expect(try refused("127.0.0.1", port: 8443, policy) == nil)
        #expect(try refused("127.0.0.1", port: 80, policy) != nil)  // only that port
        #expect(try refused("10.200.3.4", port: 1, policy) == nil)
        #expect(try refused("11.0.0.1", port: 1, policy) == nil)  // public anyway
        #expect(try refused("192.168.0.1", port: 1, policy) != nil)
        #expect(try refused("::1", port: 9000, policy) == nil)
        #expect(try refused("::1", port: 9001, policy) != nil)
        #expect(try refused("169.254.169.254", port: 80, policy) != nil)
    }

    @Test func parsesRulesAndRejectsBadOnes() {
        #expect(AddressRule("172.16.0.0/12")?.description == "172.16.0.0/12")
        #expect(AddressRule("[fd00::]:8080")?.description == "[fd00::]:8080")
        for text in ["::1", "::", "fe80::1:2", "2001:db8::1", "1:0:0:2::3", "::ffff:10.0.0.1", "1:2:3:4:5:6:7:8"] {
            #expect(AddressPolicy.format(AddressPolicy.parseAddress(text)!) == text)
        }
        for bad in ["", "localhost", "300.1.1.1", "1.2.3", "10.0.0.0/33", "127.0.0.1:0", "127.0.0.1:70000", "[::1", "::1/129", "1.2.3.4/x"] {
            #expect(AddressRule(bad) == nil, "\(bad)")
        }
        #expect(AddressPolicy.parseAddress("1::2:3") == [0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 3])
        #expect(AddressPolicy.parseAddress("1:2:3:4:5:6:7:8:9") == nil)
        #expect(AddressPolicy.parseAddress("01.2.3.4") == nil, "leading zeros read as octal by some parsers: refused")
        #expect(AddressPolicy.parseAddress("1.2.3.4.") == nil)
    }
}
