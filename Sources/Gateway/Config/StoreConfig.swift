import Foundation
import GatewayCore
import RedisClient
import Yams

/// `store:`: where replicas share state. Without it, records, usage and limits stay in the
/// process (one replica); with `store.redis`, every replica pointed at the same Redis shares them.
public struct StoreSettings: Sendable, Equatable {
    /// What a request to a key with limits gets when the store cannot answer in time.
    public enum OnError: String, Sendable, CaseIterable {
        /// Let it through (logged, counted in `fusion_gateway_store_errors_total`): an outage of
        /// the store is not an outage of the gateway.
        case allow
        /// Refuse it with a 503 `limits_unavailable` (and `Retry-After: 1`).
        case deny
    }

    public var redis: RedisStoreSettings?
    public var onError = OnError.allow
    public init() {}
}

public struct RedisStoreSettings: Sendable, Equatable {
    public var endpoint: RedisEndpoint
    /// The environment variable holding Redis' password (never the config file).
    public var passwordEnvironmentVariable: String?
    /// Prefixes every key the gateway writes (several gateways may share one Redis).
    public var keyPrefix = "fusion-gateway:"
    /// Timeouts, reconnect backoff and reply bounds.
    public var client = RedisClient.Settings()
    /// How long generation records live in Redis.
    public var recordTTLSeconds = 86_400
    /// Records kept per loop while Redis is unreachable, written when it is back (oldest dropped
    /// beyond this).
    public var maxUnwrittenRecords = 10_000

    public init(endpoint: RedisEndpoint) { self.endpoint = endpoint }
}

/// A gateway key with a name (`keys.<name>`): accepted like `server.api_keys`, and the unit of
/// limits and usage counters. The name, never the key, is what records, counters and logs carry.
public struct NamedKey: Sendable, Equatable {
    public var name: String
    public var keyEnvironmentVariable: String
    public var limits = KeyLimits()
    public init(name: String, keyEnvironmentVariable: String, limits: KeyLimits = KeyLimits()) {
        self.name = name
        self.keyEnvironmentVariable = keyEnvironmentVariable
        self.limits = limits
    }
}

extension GatewayConfig {
    static func parseStore(_ node: ConfigNode) throws -> StoreSettings {
        try node.allowOnly(["redis", "on_store_error"])
        var store = StoreSettings()
        if let policy = try node.string("on_store_error") {
            guard let value = StoreSettings.OnError(rawValue: policy) else {
                throw ConfigError("\(node.path).on_store_error must be 'allow' or 'deny'")
            }
            store.onError = value
        }
        if let redis = try node.child("redis") {
            try redis.allowOnly(["url", "password_env", "key_prefix", "timeout_ms", "connect_timeout_ms", "reconnect_max_ms",
                                 "record_ttl_s", "max_unwritten_records"],
                                hint: "the password never goes in the config: set password_env to the name of an environment variable")
            guard let url = try redis.string("url") else { throw ConfigError("\(redis.path).url is required (redis://host:port/db)") }
            let endpoint: RedisEndpoint
            do {
                endpoint = try RedisEndpoint.parse(url: url)
            } catch {
                throw ConfigError("\(redis.path).url: \(error.description)")
            }
            var settings = RedisStoreSettings(endpoint: endpoint)
            settings.passwordEnvironmentVariable = try redis.environmentVariable("password_env")
            if let prefix = try redis.string("key_prefix") {
                // Not empty: the gateway's keys would mix with every other user's of the database.
                guard (1...64).contains(prefix.utf8.count), !prefix.contains(where: { $0.isWhitespace || $0 == "{" || $0 == "}" }) else {
                    throw ConfigError("\(redis.path).key_prefix must be 1 to 64 characters without spaces or braces")
                }
                settings.keyPrefix = prefix
            }
            settings.client.commandTimeoutMilliseconds = try redis.int("timeout_ms", in: 1...60_000).map(UInt64.init)
                ?? settings.client.commandTimeoutMilliseconds
            settings.client.connectTimeoutMilliseconds = try redis.int("connect_timeout_ms", in: 1...60_000).map(UInt64.init)
                ?? settings.client.connectTimeoutMilliseconds
            if let reconnect = try redis.int("reconnect_max_ms", in: 100...600_000) {
                settings.client.backoff = RedisBackoff(baseMilliseconds: min(100, UInt64(reconnect)), maxMilliseconds: UInt64(reconnect))
            }
            settings.recordTTLSeconds = try redis.int("record_ttl_s", in: 1...31_536_000) ?? settings.recordTTLSeconds
            settings.maxUnwrittenRecords = try redis.int("max_unwritten_records", in: 0...1_000_000) ?? settings.maxUnwrittenRecords
            store.redis = settings
        }
        return store
    }

    static func parseKeys(_ node: ConfigNode) throws -> [String: NamedKey] {
        var keys: [String: NamedKey] = [:]
        for (index, (name, entry)) in try node.members().enumerated() {
            guard (1...64).contains(name.utf8.count),
                  name.unicodeScalars.allSatisfy({ $0.isASCII && (CharacterSet.alphanumerics.contains($0) || "-_.".unicodeScalars.contains($0)) }) else {
                // Named by its place, not its text: what fails here is often a key pasted where
                // its name goes (review 121 #7: printed whole to the supervisor's log).
                throw ConfigError("\(node.path): entry \(index + 1)'s name is not a key name (1 to 64 letters, digits, '-', '_' or '.'; the key itself never goes in the config: set key_env)")
            }
            try entry.allowOnly(["key_env", "limits"], hint: "keys never go in the config: set key_env to the name of an environment variable")
            guard let variable = try entry.environmentVariable("key_env") else { throw ConfigError("\(entry.path).key_env is required") }
            var key = NamedKey(name: name, keyEnvironmentVariable: variable)
            if let limits = try entry.child("limits") {
                try limits.allowOnly(["requests_per_minute", "tokens_per_minute", "daily_budget_usd", "monthly_budget_usd"])
                key.limits.requestsPerMinute = try limits.int("requests_per_minute", in: 1...1_000_000_000).map(Int64.init)
                key.limits.tokensPerMinute = try limits.int("tokens_per_minute", in: 1...1_000_000_000).map(Int64.init)
                key.limits.dailyBudgetMicros = try limits.dollars("daily_budget_usd")
                key.limits.monthlyBudgetMicros = try limits.dollars("monthly_budget_usd")
            }
            keys[name] = key
        }
        return keys
    }

    /// The named keys with their values from the environment. Fails closed: a named variable
    /// that is unset or empty is an error, never a key that lets anyone in.
    public func namedKeyValues(environment: [String: String]) throws -> [(NamedKey, String)] {
        var owners: [String: String] = [:]
        return try keys.values.sorted { $0.name < $1.name }.map { key in
            // Trimmed of line ends too: a key written to a file with `echo` ends in one.
            guard let value = environment[key.keyEnvironmentVariable]?.trimmingCharacters(in: .whitespacesAndNewlines), !value.isEmpty else {
                throw ConfigError("keys.\(key.name).key_env names \(key.keyEnvironmentVariable), which is unset or empty: refusing to start without the key it should hold")
            }
            // Requests with a shared key could only ever be filed under one of the names.
            if let owner = owners.updateValue(key.name, forKey: value) {
                throw ConfigError("keys.\(key.name) holds the same key as keys.\(owner) (\(key.keyEnvironmentVariable)): each name needs its own key, or its usage and limits would go to the other")
            }
            return (key, value)
        }
    }
}

extension ConfigNode {
    /// A dollar amount (0 to 1,000,000, at most 6 decimals) in millionths of a dollar.
    func dollars(_ key: String) throws -> Int64? {
        guard let child = try child(key) else { return nil }
        // Not 0: a budget of nothing is a key that may not be used (remove it instead), and the
        // Redis scripts read 0 as "no budget" (review 27).
        guard let text = child.node.scalar?.string, let micros = Self.micros(text), (1...1_000_000_000_000).contains(micros) else {
            throw ConfigError("\(child.path) must be a dollar amount from 0.000001 to 1000000 with at most 6 decimals")
        }
        return micros
    }

    /// Exact decimal parsing (no binary floating point): `2.5` → 2_500_000.
    static func micros(_ text: String) -> Int64? {
        let parts = text.split(separator: ".", maxSplits: 1, omittingEmptySubsequences: false)
        guard let whole = parts.first, !whole.isEmpty, whole.count <= 7, whole.allSatisfy({ $0.isASCII && $0.isNumber }),
              let units = Int64(whole) else { return nil }
        var fraction: Int64 = 0
        if parts.count == 2 {
            let digits = parts[1]
            guard !digits.isEmpty, digits.count <= 6, digits.allSatisfy({ $0.isASCII && $0.isNumber }),
                  let value = Int64(digits + String(repeating: "0", count: 6 - digits.count)) else { return nil }
            fraction = value
        }
        return units * 1_000_000 + fraction
    }
}
