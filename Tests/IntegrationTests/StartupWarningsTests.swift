import Foundation
import Gateway
import Logging
import Testing

/// What the startup log says about the gateway's keys, as `serve` builds them from the config
/// and the environment (review 124 #2: every named key was said to be "given twice", as the
/// unit test built the key lists differently from the server).
@Suite struct StartupWarningsTests {
    static let environment = ["OPS_KEY": "gwk-ops-0123456789abcdef", "CI_KEY": "gwk-ci-0123456789abcdef"]

    func warnings(_ configure: @escaping @Sendable (inout GatewayConfig) -> Void) throws -> [String] {
        let log = CapturedLog()
        let env = try TestEnvironment(loops: 1, logHandler: log, environment: Self.environment, configure)
        env.stop()
        return log.entries.filter { $0.level == .warning }.map(\.text)
    }

    @Test func namedKeysAreNotGivenTwiceUnlessTheyAre() throws {
        let distinct = try warnings { config in
            config.keys = ["ops": NamedKey(name: "ops", keyEnvironmentVariable: "OPS_KEY"), "ci": NamedKey(name: "ci", keyEnvironmentVariable: "CI_KEY")]
            config.server.apiKeys = ["gwk-unnamed-0123456789ab"]
        }
        #expect(!distinct.contains { $0.contains("given twice") }, "\(distinct)")
        let twice = try warnings { config in
            config.keys = ["ops": NamedKey(name: "ops", keyEnvironmentVariable: "OPS_KEY")]
            config.server.apiKeys = ["gwk-ops-0123456789abcdef"]
        }
        #expect(twice.filter { $0.contains("given twice") }.count == 1 && twice.contains { $0.contains("keys=ops") }, "\(twice)")
        #expect(!twice.joined().contains("0123456789abcdef"), "a key is never printed")
    }
}
