import RedisServerProcess
import EventLoop
import Foundation
@testable import Gateway
import GatewayCore
import RedisClient
import Testing

/// The Lua scripts and `RateLimitMath` are one algorithm written twice: on the same sequence of
/// admissions and settlements, at the same (test) clock, they must make the same decisions to the
/// last figure. Redis is real; its clock is replaced by the test's.
@Suite(.enabled(if: RedisServerProcess.available, "FUSION_SKIP_REDIS=1"),
       .timeLimit(.minutes(1)))
struct RedisLimiterParityTests {
    final class Box: @unchecked Sendable {
        var client: RedisClient!
        var limiter: RedisKeyLimiter!
        var now: Int64 = 1_764_590_000_000_000  // 2025-12-01, midday UTC
    }

    @Test(arguments: [
        KeyLimits(requestsPerMinute: 5),
        KeyLimits(requestsPerMinute: 7, tokensPerMinute: 1_000),
        KeyLimits(tokensPerMinute: 333, dailyBudgetMicros: 2_000_000),
        KeyLimits(requestsPerMinute: 60, tokensPerMinute: 2_000, dailyBudgetMicros: 900_000, monthlyBudgetMicros: 800_000),
    ])
    func luaAndSwiftDecideAlike(limits: KeyLimits) throws {
        let bed = try Bed()
        defer { bed.close() }
        let (loop, box) = (bed.thread.loop, bed.box)
        let identity = KeyIdentity(id: "team", name: "team", limits: limits)
        var state = LimitState()
        var generator = SplitMix(seed: UInt64(limits.requestsPerMinute ?? 0) &* 31 &+ UInt64(limits.tokensPerMinute ?? 0))
        var refusals = 0
        for step in 0..<300 {
            box.now += Int64(generator.next() % 4_000_000)  // 0–4 s between steps
            let now = box.now
            let periods = BudgetPeriods(micros: now)
            let reservation = LimitReservation(requests: 1, tokens: Int64(generator.next() % 400) + 1)
            let expected = RateLimitMath.admit(limits, state: &state, now: now, periods: periods, reservation: reservation)
            let actual = try admit(box, loop: loop, identity: identity, reservation: reservation)
            #expect(actual == expected, "step \(step)")
            if !expected.allowed { refusals += 1; continue }
            // Settle as a finished request would: sometimes more tokens than estimated, sometimes fewer.
            let settlement = LimitSettlement(extraRequests: Int64(generator.next() % 3), tokenDelta: Int64(generator.next() % 300) - 150,
                                             spendMicros: Int64(generator.next() % 200_000))
            RateLimitMath.settle(limits, state: &state, now: now, periods: periods, settlement: settlement)
            try loop.submitAndWait { box.limiter.settle(identity, settlement: settlement, usage: KeyUsage(requests: 1)) }
        }
        #expect(refusals > 0, "the sequence must reach the limits")
    }

    /// Hostile usage settled over and over (2^40 tokens each time, an upstream's largest word):
    /// both floor the debt at a day of refill and report the same bounded waits; Redis used to
    /// answer with a wait it could not represent, read as a store error, so the key most over its
    /// limit went unlimited (review 43 state #4).
    @Test func aHostileDebtIsFlooredAlike() throws {
        let bed = try Bed()
        defer { bed.close() }
        let (loop, box) = (bed.thread.loop, bed.box)
        let limits = KeyLimits(requestsPerMinute: 3, tokensPerMinute: 1_000)
        let identity = KeyIdentity(id: "team", name: "team", limits: limits)
        var state = LimitState()
        let settlement = LimitSettlement(extraRequests: 1 << 40, tokenDelta: 1 << 40, spendMicros: 0)
        for _ in 0..<1_000 {
            RateLimitMath.settle(limits, state: &state, now: box.now, periods: BudgetPeriods(micros: box.now), settlement: settlement)
            try loop.submitAndWait { box.limiter.settle(identity, settlement: settlement, usage: KeyUsage(requests: 1)) }
        }
        for cost in [Int64(1), 1 << 40] {
            box.now += 1_000_000
            let reservation = LimitReservation(requests: 1, tokens: cost)
            let expected = RateLimitMath.admit(limits, state: &state, now: box.now, periods: BudgetPeriods(micros: box.now), reservation: reservation)
            let actual = try admit(box, loop: loop, identity: identity, reservation: reservation)
            #expect(!expected.allowed && actual == expected, "cost \(cost)")
            #expect(RateLimitResponse.error(expected, keyName: "team").status == 429)
        }
    }

    /// Spend holds, released and settled in random order, decided alike (the refusals' figures
    /// too); a hold Redis never hears released lapses after its lifetime.
    @Test(arguments: [KeyLimits(dailyBudgetMicros: 5_000), KeyLimits(dailyBudgetMicros: 9_000, monthlyBudgetMicros: 6_000),
                      KeyLimits(dailyBudgetMicros: 4_000, monthlyBudgetMicros: 7_000)])
    func luaAndSwiftHoldAlike(limits: KeyLimits) throws {
        let bed = try Bed()
        defer { bed.close() }
        let (loop, box) = (bed.thread.loop, bed.box)
        let identity = KeyIdentity(id: "team", name: "team", limits: limits)
        var state = LimitState()
        var generator = SplitMix(seed: UInt64(limits.dailyBudgetMicros ?? 0))
        var inFlight: [(id: String, held: Int64)] = []
        var refusals = 0
        for step in 0..<200 {
            box.now += Int64(generator.next() % 2_000_000)
            let now = box.now
            let periods = BudgetPeriods(micros: now)
            if generator.next() % 2 == 0 || inFlight.isEmpty {
                // Now and then a hostile amount: nothing, negative, beyond any budget.
                let micros = switch generator.next() % 20 {
                case 0: Int64.max
                case 1: -Int64(generator.next() % 1_000)
                case 2: Int64(0)
                default: Int64(generator.next() % 2_500)
                }
                let expected = RateLimitMath.hold(limits, state: &state, now: now, periods: periods, micros: micros)
                let actual = try hold(box, loop: loop, identity: identity, micros: micros, id: "gen-\(step)")
                #expect(actual == expected, "step \(step)")
                if expected.allowed { inFlight.append(("gen-\(step)", expected.held)) } else { refusals += 1 }
            } else {
                let ended = inFlight.remove(at: Int(generator.next() % UInt64(inFlight.count)))
                let settlement = LimitSettlement(extraRequests: 0, tokenDelta: 0, spendMicros: Int64(generator.next() % UInt64(ended.held + 1)))
                RateLimitMath.release(state: &state, held: ended.held)
                RateLimitMath.settle(limits, state: &state, now: now, periods: periods, settlement: settlement)
                try loop.submitAndWait {
                    box.limiter.release(identity, held: ended.held, holdID: ended.id)
                    box.limiter.settle(identity, settlement: settlement, usage: KeyUsage(requests: 1))
                }
            }
        }
        #expect(refusals > 0, "the sequence must reach the budgets")
        // A hold Redis never hears released (its replica died) lapses after its lifetime.
        let lapsing = KeyIdentity(id: "lapsing", name: "lapsing", limits: KeyLimits(dailyBudgetMicros: 1_000))
        #expect(try hold(box, loop: loop, identity: lapsing, micros: 600, id: "gen-a")?.allowed == true)
        #expect(try hold(box, loop: loop, identity: lapsing, micros: 600, id: "gen-b")?.allowed == false)
        box.now += RedisKeyLimiter.holdLifetimeMicros - 1_000_000
        #expect(try hold(box, loop: loop, identity: lapsing, micros: 600, id: "gen-c")?.allowed == false, "still held")
        box.now += 1_000_001
        #expect(try hold(box, loop: loop, identity: lapsing, micros: 600, id: "gen-d")?.allowed == true, "lapsed")
    }

    /// A Redis limiter on `loop` whose clock is the box's.
    /// A real Redis, a loop, and a limiter on it at the test's clock.
    final class Bed {
        let redis: RedisServerProcess
        let thread = EventLoopThread(name: "parity")
        let box: Box

        init() throws {
            redis = try RedisServerProcess()
            box = try RedisLimiterParityTests.limiter(redis: redis, loop: thread.loop)
        }

        func close() {
            let box = box
            try? thread.loop.submitAndWait { box.client.close() }
            thread.shutdown()
        }
    }

    static func limiter(redis: RedisServerProcess, loop: EventLoop) throws -> Box {
        let box = Box()
        try loop.submitAndWait {
            box.client = RedisClient(loop: loop, endpoint: RedisEndpoint(host: "127.0.0.1", port: redis.port), password: nil)
            box.client.start()
            box.limiter = RedisKeyLimiter(client: box.client, keyPrefix: "parity:", wallClock: { box.now }) { _, error in
                Issue.record("redis failed: \(error)")
            }
            box.limiter.testClock = { box.now }
        }
        return box
    }

    private func hold(_ box: Box, loop: EventLoop, identity: KeyIdentity, micros: Int64, id: String) throws -> HoldDecision? {
        let done = DispatchSemaphore(value: 0)
        let result = LockedValue<HoldDecision?>(nil)
        loop.execute {
            box.limiter.hold(identity, micros: micros, holdID: id) { outcome in
                if case .success(let decision) = outcome { result.set(decision) } else { Issue.record("hold failed: \(outcome)") }
                done.signal()
            }
        }
        done.wait()
        return result.get()
    }

    private func admit(_ box: Box, loop: EventLoop, identity: KeyIdentity, reservation: LimitReservation) throws -> LimitDecision? {
        let done = DispatchSemaphore(value: 0)
        let result = LockedValue<LimitDecision?>(nil)
        loop.execute {
            box.limiter.admit(identity, reservation: reservation) { outcome in
                if case .success(let decision) = outcome { result.set(decision) } else { Issue.record("admission failed: \(outcome)") }
                done.signal()
            }
        }
        done.wait()
        return result.get()
    }
}

/// A small deterministic generator (SplitMix64), so a failing sequence can be replayed.
struct SplitMix: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

final class LockedValue<Value>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Value
    init(_ value: Value) { self.value = value }
    func set(_ newValue: Value) { lock.withLock { value = newValue } }
    func get() -> Value { lock.withLock { value } }
    func update(_ body: (inout Value) -> Void) { lock.withLock { body(&value) } }
}
