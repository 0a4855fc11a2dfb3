import Foundation
import Logging
import Gateway
import Fusion
import GatewayCore
import RedisClient
import Testing

/// `store:`, `keys:` and `prices:`: parsed exactly, refused when wrong, failing closed on
/// missing secrets.
@Suite struct StoreConfigTests {
    /// The example config's commented-out store, keys and prices sections, uncommented: the
    /// documentation itself must be a valid config.
    @Test func theExamplesSharedStateSectionsParseUncommented() throws {
        let text = try String(contentsOfFile: GatewayConfigTests.example, encoding: .utf8)
        let lines = text.components(separatedBy: "\n")
        let start = try #require(lines.firstIndex(of: "# store:"))
        let yaml = lines[start...].compactMap { line -> String? in
            if ["# store:", "# keys:", "# prices:"].contains(line) { return String(line.dropFirst(2)) }
            if line.hasPrefix("#   ") { return String(line.dropFirst(2)) }
            return nil
        }.joined(separator: "\n")
        // Prices name a configured provider's models: the example's own provider.
        let config = try GatewayConfig.parse(yaml: "providers: {openrouter: {base_url: 'https://openrouter.ai/api/v1'}}\n" + yaml)
        let redis = try #require(config.store.redis)
        #expect(redis.endpoint == RedisEndpoint(host: "127.0.0.1", port: 6379, database: 0))
        #expect(redis.passwordEnvironmentVariable == "REDIS_PASSWORD")
        #expect(redis.keyPrefix == "fusion-gateway:")
        #expect(redis.client.commandTimeoutMilliseconds == 250 && redis.client.connectTimeoutMilliseconds == 1_000)
        #expect(redis.client.backoff.maxMilliseconds == 5_000)
        #expect(redis.recordTTLSeconds == 86_400 && redis.maxUnwrittenRecords == 10_000)
        #expect(config.store.onError == .allow)
        let team = try #require(config.keys["team-a"])
        #expect(team.keyEnvironmentVariable == "TEAM_A_KEY")
        #expect(team.limits == KeyLimits(requestsPerMinute: 60, tokensPerMinute: 200_000, dailyBudgetMicros: 5_000_000,
                                         monthlyBudgetMicros: 100_000_000))
        #expect(config.prices["openrouter/openai/gpt-4o-mini"] == ModelPrice(inputPerMillion: 0.15, outputPerMillion: 0.6))
        // Named keys are gateway keys; their variable unset refuses to start.
        #expect(try config.gatewayKeys(environment: ["TEAM_A_KEY": "sk-a"]) == ["sk-a"])
        #expect(try config.gatewayKeys(environment: ["TEAM_A_KEY": "sk-a\n"]) == ["sk-a"], "a line end is not part of the key")
        #expect(throws: ConfigError.self) { try config.gatewayKeys(environment: [:]) }
    }

    @Test func theDefaultsNeedNoRedis() throws {
        let config = try GatewayConfig.parse(yaml: "simulated_models: true")
        #expect(config.store.redis == nil && config.store.onError == .allow && config.keys.isEmpty)
        #expect(config.server.drainDelayMilliseconds == 0)
        #expect(try GatewayConfig.parse(yaml: "server: {drain_delay_ms: 1500}").server.drainDelayMilliseconds == 1_500)
        #expect(try GatewayConfig.parse(yaml: "store: {on_store_error: deny}").store.onError == .deny)
    }

    @Test(arguments: [
        ("store: {redis: {}}", "url is required"),
        ("store: {redis: {url: 'http://x'}}", "redis://"),
        ("store: {redis: {url: 'redis://u:pw@h'}}", "password_env"),
        ("store: {redis: {url: 'rediss://h'}}", "TLS"),
        ("store: {redis: {url: 'redis://h', password: x}}", "password never goes in the config"),
        ("store: {redis: {url: 'redis://h', timeout_ms: 0}}", "timeout_ms"),
        ("store: {redis: {url: 'redis://h', key_prefix: 'a b'}}", "key_prefix"),
        ("store: {on_store_error: maybe}", "'allow' or 'deny'"),
        ("keys: {'bad name': {key_env: X}}", "entry 1's name is not a key name"),
        ("keys: {a: {key: sk-in-the-file}}", "keys never go in the config"),
        ("keys: {a: {}}", "key_env is required"),
        ("keys: {a: {key_env: X, limits: {requests_per_minute: 0}}}", "requests_per_minute"),
        ("keys: {a: {key_env: X, limits: {requests_per_minute: 99999999999999999999}}}", "requests_per_minute"),
        ("keys: {a: {key_env: X, limits: {daily_budget_usd: -1}}}", "dollar amount"),
        ("keys: {a: {key_env: X, limits: {daily_budget_usd: 1.0000001}}}", "dollar amount"),
        ("keys: {a: {key_env: X, limits: {daily_budget_usd: 1e3}}}", "dollar amount"),
        ("keys: {a: {key_env: X, limits: {monthly_budget_usd: 0}}}", "from 0.000001"),
        ("keys: {a: {key_env: X, limits: {daily_budget_usd: 0.0000001}}}", "dollar amount"),
        ("keys: {a: {key_env: X, limits: {burst: 5}}}", "unknown key 'burst'"),
        ("prices: {m: {input: 1}}", "prices.m.output is required"),
        ("prices: {m: {input: 1, output: -1}}", "prices.m.output"),
        ("server: {drain_delay_ms: -5}", "drain_delay_ms"),
    ])
    func wrongValuesAreRefusedNamingThem(yaml: String, message: String) {
        do {
            _ = try GatewayConfig.parse(yaml: yaml)
            Issue.record("accepted: \(yaml)")
        } catch {
            #expect("\(error)".contains(message), "\(error)")
        }
    }

    /// A key pasted where its name goes is never printed (review 121 #7).
    @Test func aNameThatIsNoKeyNameIsNotPrinted() {
        do {
            _ = try GatewayConfig.parse(yaml: "keys: {a: {key_env: X}, 'sk-live-SECRET0123456789!': {key_env: Y}}")
            Issue.record("accepted")
        } catch {
            #expect(!"\(error)".contains("SECRET") && "\(error)".contains("entry 2"), "\(error)")
        }
    }

    @Test func dollarAmountsAreExactDecimals() throws {
        let config = try GatewayConfig.parse(yaml: """
            keys: {a: {key_env: X, limits: {daily_budget_usd: 0.1, monthly_budget_usd: 1000000}}}
            """)
        #expect(config.keys["a"]?.limits.dailyBudgetMicros == 100_000)
        #expect(config.keys["a"]?.limits.monthlyBudgetMicros == 1_000_000_000_000)
    }

    @Test func onePriceTableServesBudgetsAndTheCostEstimate() throws {
        let fusion = """
            providers: {p: {base_url: 'http://h/v1'}}
            default_provider: p
            fusion: {outer_model: m, presets: {q: {analysis_models: [a]}}%@}
            """
        let top = try GatewayConfig.parse(yaml: fusion.replacingOccurrences(of: "%@", with: "") + "\nprices: {a: {input: 1, output: 2}}")
        #expect(top.prices["a"] == ModelPrice(inputPerMillion: 1, outputPerMillion: 2))
        #expect(top.fusion?.prices == top.prices, "the top-level table prices the estimate too")
        let inFusion = try GatewayConfig.parse(yaml: fusion.replacingOccurrences(of: "%@", with: ", prices: {a: {input: 3, output: 4}}"))
        #expect(inFusion.prices["a"] == ModelPrice(inputPerMillion: 3, outputPerMillion: 4), "fusion.prices alone charges budgets")
        let both = try GatewayConfig.parse(yaml: fusion.replacingOccurrences(of: "%@", with: ", prices: {a: {input: 3, output: 4}}")
                                                + "\nprices: {a: {input: 1, output: 2}}")
        #expect(both.prices["a"]?.inputPerMillion == 1 && both.fusion?.prices["a"]?.inputPerMillion == 3, "each kept when both are given")
    }

    /// Two names holding one key: requests with it could only be filed under one of them.
    @Test func twoNamedKeysWithOneSecretAreRefused() throws {
        let config = try GatewayConfig.parse(yaml: "keys: {team-x: {key_env: KX, limits: {requests_per_minute: 5}}, team-y: {key_env: KY}}")
        #expect(try config.namedKeyValues(environment: ["KX": "sk-1", "KY": "sk-2"]).count == 2)
        #expect {
            _ = try config.namedKeyValues(environment: ["KX": "sk-same", "KY": "sk-same"])
        } throws: { error in
            "\(error)".contains("keys.team-y holds the same key as keys.team-x")
        }
    }

    @Test func aMissingRedisPasswordRefusesToStart() throws {
        var config = GatewayConfig.embeddedDefault
        config.server.port = 0
        var redis = RedisStoreSettings(endpoint: RedisEndpoint(host: "127.0.0.1", port: 1))
        redis.passwordEnvironmentVariable = "NO_SUCH_REDIS_PASSWORD"
        config.store.redis = redis
        config.simulatedModels = false
        config.fusion = nil
        config.web = nil
        #expect(throws: (any Error).self) {
            _ = try GatewayCluster(config: config, environment: [:], logger: .init(label: "test"), loops: 1)
        }
    }
}
