import Foundation
import Fusion
import Gateway
import GatewayCore
import MockUpstream
import Testing

/// Spend holds: once a request is validated and routed, what it may cost at most (its prompt and
/// output limit at the config's prices, every call of a deliberation) is held against its key's
/// budgets until it settles, so requests running at once cannot together spend past a budget.
/// (`SharedStoreTests` holds across two replicas sharing Redis.)
@Suite(.timeLimit(.minutes(1)))
struct SpendHoldTests {
    static let key = "sk-team-0123456789"
    static let auth = ["Authorization": "Bearer \(key)"]
    static let opsKey = "sk-ops-0123456789"

    /// Every mock model at $1 per million tokens each way: a micro-dollar a token.
    static func environment(budget: Int64) throws -> TestEnvironment {
        try TestEnvironment(environment: ["TEAM_KEY": key, "OPS_KEY": opsKey]) {
            $0.keys = ["team": NamedKey(name: "team", keyEnvironmentVariable: "TEAM_KEY", limits: KeyLimits(dailyBudgetMicros: budget)),
                       "ops": NamedKey(name: "ops", keyEnvironmentVariable: "OPS_KEY")]
            $0.prices = ["mock/*": ModelPrice(inputPerMillion: 1, outputPerMillion: 1)]
        }
    }

    /// `path` read with `key` (records are their key's; metrics need a key without limits).
    static func get(_ env: TestEnvironment, _ path: String, key: String = key) throws -> TestResponse {
        let client = try env.client()
        try client.send("GET \(path) HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer \(key)\r\n\r\n")
        return try client.readResponse()
    }

    static func post(_ env: TestEnvironment, _ path: String, _ body: String) throws -> TestResponse {
        let client = try env.client()
        try client.send(TestEnvironment.post(path, body: body, headers: auth))
        return try client.readResponse()
    }

    @Test func requestsInFlightCannotTogetherSpendPastTheBudget() throws {
        // "Hello there" is 7 tokens by the estimate; with 60 tokens of output each may cost 67 µ$.
        let env = try Self.environment(budget: 200)
        // The mock counts a prompt as its body's bytes over four; here it says 7 as well.
        let slow = TestEnvironment.chatBody(model: "mock/paced:deltas=10:pace_ms=200:prompt_tokens=7", extra: #","max_tokens":60"#)
        let running = try env.startStreams(2, body: slow, headers: Self.auth)
        // A third could take the spend past $0.0002 while they run: refused before any upstream
        // call, with a short wait (their holds end soon, having spent less).
        for _ in 0..<3 {
            let refused = try env.chat(slow, headers: Self.auth)
            #expect(refused.status == 429 && refused.json?["error"]?["code"]?.stringValue == "insufficient_quota", "\(refused.text)")
            let message = refused.json?["error"]?["message"]?.stringValue ?? ""
            #expect(message.contains("may cost up to $0.000067") && message.contains("$0.000134 of it held by requests in flight"), "\(message)")
            #expect(refused.header("retry-after") == "1" && refused.header("x-should-retry") == nil)
            #expect(refused.header("x-ratelimit-remaining-budget-day") == "0.000066")
            // The hold's figures replace the admission's, not repeat them.
            let names = refused.headers.map { $0.0.lowercased() }
            #expect(Set(names).count == names.count, "\(refused.headers)")
        }
        // What matters is what it may cost, not how many run: a one-token answer fits beside them.
        let small = try env.chat(TestEnvironment.chatBody(model: "mock/normal:pace_ms=0:prompt_tokens=7", stream: false, extra: #","max_tokens":1"#),
                                 headers: Self.auth)
        #expect(small.status == 200, "\(small.text)")
        #expect(env.mockStats.counts.requests == 3, "no refused request reached the upstream")
        for client in running { #expect(try client.readResponse().status == 200) }
        // Their holds end as they settle (after their last bytes): two more fit again.
        let fast = TestEnvironment.chatBody(model: "mock/paced:deltas=10:pace_ms=0:prompt_tokens=7", stream: false, extra: #","max_tokens":60"#)
        #expect(env.eventually { (try? env.chat(fast, headers: Self.auth))?.status == 200 })
        let again = try env.chat(fast, headers: Self.auth)
        #expect(again.status == 200, "\(again.text)")
        let metrics = try Self.get(env, "/metrics", key: Self.opsKey)
        #expect(metrics.metric(#"fusion_gateway_limit_decisions_total{outcome="hold_refused"}"#) ?? 0 >= 3)
        #expect(metrics.metric(#"fusion_gateway_rate_limited_total{kind="budget-day"}"#) ?? 0 >= 3)
    }

    /// A request whose output limit alone could pass what is left is refused on every route, in
    /// that route's error shape, with no retry before the budget resets; a lower limit passes.
    @Test(arguments: ["/v1/chat/completions", "/v1/messages", "/v1/responses"])
    func aRequestThatMayCostMoreThanIsLeftIsRefusedInItsAPIsShape(path: String) throws {
        let env = try Self.environment(budget: 200)
        func body(_ limit: Int) -> String {
            let model = "mock/normal:pace_ms=0"
            return switch path {
            case "/v1/messages": #"{"model":"\#(model)","max_tokens":\#(limit),"messages":[{"role":"user","content":"Hello there"}]}"#
            case "/v1/responses": #"{"model":"\#(model)","max_output_tokens":\#(limit),"input":"Hello there"}"#
            default: TestEnvironment.chatBody(model: model, stream: false, extra: #","max_tokens":\#(limit)"#)
            }
        }
        let refused = try Self.post(env, path, body(500))
        #expect(refused.status == 429, "\(refused.text)")
        if path == "/v1/messages" {
            #expect(refused.json?["type"]?.stringValue == "error" && refused.json?["error"]?["type"]?.stringValue == "rate_limit_error", "\(refused.text)")
        } else {
            #expect(refused.json?["error"]?["code"]?.stringValue == "insufficient_quota", "\(refused.text)")
        }
        #expect(refused.header("x-should-retry") == "false" && Int(refused.header("retry-after") ?? "") ?? 0 > 1)
        #expect(env.mockStats.counts.requests == 0)
        let record = try #require(try Self.get(env, "/api/v1/generation?id=\(refused.header("x-generation-id") ?? "")").json?["data"])
        #expect(record["kind"] == .string("rejected") && record["status"] == .int(429), "\(record)")
        // Without a limit the request is held at 4,096 output tokens: refused too.
        #expect(try Self.post(env, path, body(500).replacingOccurrences(of: #""max_tokens":500,"#, with: "")
            .replacingOccurrences(of: #","max_tokens":500"#, with: "").replacingOccurrences(of: #""max_output_tokens":500,"#, with: "")).status == (path == "/v1/messages" ? 400 : 429))
        #expect(try Self.post(env, path, body(100)).status == 200)
    }

    /// With a `default_provider`, a name without its provider is the same model and the same
    /// price (review 48 limits #1: `normal` matched no price, so it was held at nothing and, from
    /// an upstream that reports no cost, charged nothing).
    @Test func aModelNamedWithoutItsProviderIsPricedAsRouted() throws {
        let env = try TestEnvironment(environment: ["TEAM_KEY": Self.key]) {
            $0.keys = ["team": NamedKey(name: "team", keyEnvironmentVariable: "TEAM_KEY", limits: KeyLimits(dailyBudgetMicros: 200))]
            $0.prices = ["mock/*": ModelPrice(inputPerMillion: 1, outputPerMillion: 1)]
            $0.defaultProvider = "mock"
        }
        for model in ["mock/normal:pace_ms=0", "normal:pace_ms=0"] {
            let refused = try env.chat(TestEnvironment.chatBody(model: model, stream: false, extra: #","max_tokens":500"#), headers: Self.auth)
            #expect(refused.status == 429 && refused.json?["error"]?["code"]?.stringValue == "insufficient_quota", "\(model): \(refused.text)")
        }
        #expect(env.mockStats.counts.requests == 0)
        // What it spends is charged at the routed model's price too (the mock reports no cost).
        let answered = try env.chat(TestEnvironment.chatBody(model: "normal:pace_ms=0", stream: false, extra: #","max_tokens":20"#), headers: Self.auth)
        #expect(answered.status == 200, "\(answered.text)")
        let record = try #require(try Self.get(env, "/api/v1/generation?id=\(answered.header("x-generation-id") ?? "")").json?["data"])
        #expect((record["spend_usd"]?.doubleValue ?? 0) > 0, "\(record)")
    }

    /// Each of `n` choices may write the output limit: held `n` times.
    @Test func everyChoiceIsHeld() throws {
        let env = try Self.environment(budget: 200)
        // 7 + 3 × 60 = 187 fits; 7 + 4 × 60 = 247 does not.
        let three = try env.chat(TestEnvironment.chatBody(model: "mock/normal:pace_ms=0:prompt_tokens=7", stream: false, extra: #","max_tokens":60,"n":3"#),
                                 headers: Self.auth)
        #expect(three.status == 200, "\(three.text)")
        let four = try env.chat(TestEnvironment.chatBody(model: "mock/normal:pace_ms=0:prompt_tokens=7", stream: false, extra: #","max_tokens":60,"n":4"#),
                                headers: Self.auth)
        #expect(four.status == 429 && four.json?["error"]?["message"]?.stringValue?.contains("$0.000247") == true, "\(four.text)")
    }

    /// A deliberation holds every call it plans (members, judge, the outer model's turns): refused
    /// before any call when they could pass the budget, and released when it ends.
    @Test func aDeliberationHoldsWhatAllItsCallsMaySpend() throws {
        // The mock counts a prompt as its request body's bytes over four; here each call says 20.
        let tools = #"[{"type":"fusion","parameters":{"analysis_models":["mock/expert-1:pace_ms=1:prompt_tokens=20","mock/expert-2:pace_ms=1:prompt_tokens=20"],"max_completion_tokens":400}}]"#
        let body = #"{"model":"mock/outer:pace_ms=1:prompt_tokens=20","max_tokens":100,"messages":[{"role":"user","content":"Is the sky blue?"}],"tools":\#(tools)}"#
        let probe = try Self.environment(budget: 1)
        let refused = try probe.chat(body, headers: Self.auth)
        #expect(refused.status == 429 && probe.mockStats.counts.requests == 0, "\(refused.text)")
        // Its hold: two members and the judge at 400 tokens out, two outer turns at 100, and the prompts they read.
        let message = refused.json?["error"]?["message"]?.stringValue ?? ""
        let dollars = try #require(message.split(separator: "$").dropFirst().first.flatMap { Double($0.prefix { $0.isNumber || $0 == "." }) })
        let hold = Int64((dollars * 1_000_000).rounded())
        #expect(hold > 3 * 400 + 2 * 100 + 2 * 400 + 400 && hold < 10_000, "\(message)")
        // Room for one at a time: one after another both run, their holds released in between.
        let env = try Self.environment(budget: hold * 3 / 2)
        let first = try env.chat(body, headers: Self.auth)
        #expect(first.status == 200)
        let record = try #require(try Self.get(env, "/api/v1/generation?id=\(first.header("x-generation-id") ?? "")").json?["data"])
        let spent = try #require(record["spend_usd"]?.doubleValue)
        #expect(spent > 0 && spent * 1_000_000 <= Double(hold), "what it spent, \(spent), is within its hold, \(hold) µ$")
        var second = try env.chat(body, headers: Self.auth)
        let deadline = Date().addingTimeInterval(3)
        while second.status != 200 && Date() < deadline {
            usleep(10_000)
            second = try env.chat(body, headers: Self.auth)
        }
        #expect(second.status == 200, "\(second.text)")
    }
}
