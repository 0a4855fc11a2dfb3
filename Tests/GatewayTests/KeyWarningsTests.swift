@testable import Gateway
import Testing

/// What the startup log says about the gateway's keys (review 121 #8), decided without a socket.
@Suite struct KeyWarningsTests {
    private func warnings(host: String = "127.0.0.1", keys: [String] = [], named: [(String, String)] = [], cors: [String] = []) -> [String] {
        var server = GatewayConfig.Server()
        server.host = host
        server.corsAllowOrigins = cors
        let ring = KeyRing(unnamed: keys, named: named.map { (NamedKey(name: $0.0, keyEnvironmentVariable: "V"), $0.1) })
        let all = keys + named.map(\.1)
        return GatewayServer.keyWarnings(server: server, keys: all, ring: ring).map { "\($0.message) \($0.metadata)" }
    }

    @Test func aPublicAddressWithoutKeysIsSaid() {
        for host in ["0.0.0.0", "::", "192.168.1.4"] {
            #expect(warnings(host: host).contains { $0.contains("listening beyond loopback without gateway keys") }, "\(host)")
        }
        for host in ["127.0.0.1", "127.0.0.2", "::1"] { #expect(warnings(host: host).isEmpty, "\(host)") }
        #expect(warnings(host: "0.0.0.0", keys: ["gwk-0123456789abcdef"]).isEmpty)
    }

    @Test func aKeyGivenTwiceIsSaidByItsNamesNeverItsValue() {
        let key = "gwk-SECRET-0123456789"
        let twice = warnings(keys: [key], named: [("ops", key)])
        #expect(twice.count == 1 && twice[0].contains("given twice") && twice[0].contains("ops") && !twice[0].contains("SECRET"), "\(twice)")
        let underTwoNames = warnings(named: [("a", key), ("b", key)])
        #expect(underTwoNames.count == 1 && underTwoNames[0].contains("b") && !underTwoNames[0].contains("SECRET"), "\(underTwoNames)")
        #expect(warnings(keys: ["gwk-one-0123456789ab"], named: [("ops", "gwk-two-0123456789ab")]).isEmpty)
    }

    @Test func shortKeysAndOpenCORSAreSaid() {
        #expect(warnings(keys: ["short"]).contains { $0.contains("guessable") })
        #expect(warnings(cors: ["https://app.example"]).contains { $0.contains("allow_origins lets browsers in") })
    }
}
