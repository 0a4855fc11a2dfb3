import Foundation
import Fusion
import Providers
import GatewayCore
import EventLoop

/// What happened to one completion, returned by `GET /api/v1/generation?id=…` in OpenRouter's
/// shape (`{"data":{…}}`), with the per-call breakdown when Fusion ran.
struct GenerationRecord: Sendable {
    var id: String
    var model: String
    /// "fusion" when the deliberation ran.
    var router: String?
    var createdAt = Date()
    var streamed: Bool
    var cancelled = false
    var status = 0
    var finishReason: String?
    var usage = Usage()
    /// The usage is the gateway's estimate (the upstream reported none).
    var usageEstimated = false
    var firstTokenMilliseconds: Double?
    var durationMilliseconds: Double = 0
    var calls: [MemberStats] = []
    var error: String?
    /// Web search results returned to the panel and the judge, and web tool calls run.
    var numSearchResults = 0
    var webToolCalls = 0
    /// The deliberation's estimated cost range and, per call, its estimate and actual at the
    /// config's prices (`CostEstimate.report`); nil without prices.
    var fusionCost: JSONValue?

    var json: JSONValue {
        func rounded(_ value: Double) -> JSONValue { .double((value * 1000).rounded() / 1000) }
        var data: [String: JSONValue] = [
            "id": .string(id), "model": .string(model), "router": router.map(JSONValue.string) ?? .null,
            "created_at": .string(ISO8601DateFormatter().string(from: createdAt)),
            "streamed": .bool(streamed), "cancelled": .bool(cancelled), "status": .int(Int64(status)),
            "finish_reason": finishReason.map(JSONValue.string) ?? .null,
            "tokens_prompt": .int(usage.promptTokens), "tokens_completion": .int(usage.completionTokens),
            "native_tokens_reasoning": .int(0), "num_search_results": .int(Int64(numSearchResults)),
            "num_web_tool_calls": .int(Int64(webToolCalls)),
            "total_cost": .double(usage.cost), "usage": usage.json, "usage_estimated": .bool(usageEstimated),
            "latency": firstTokenMilliseconds.map(rounded) ?? .null,
            "generation_time": rounded(durationMilliseconds),
        ]
        if !calls.isEmpty { data["fusion"] = .object(["calls": .array(calls.map(\.json))]) }
        if let error { data["error"] = .string(error) }
        if let fusionCost { data["fusion_cost"] = fusionCost }
        return .object(["data": .object(data)])
    }
}

/// The most recent generation records, in memory and bounded (oldest evicted first); shared by
/// every loop, so behind a mutex (taken once per finished request and per lookup).
final class GenerationStore: Sendable {
    private struct State {
        var records: [String: GenerationRecord] = [:]
        var order: [String] = []
        var oldest = 0
    }

    private let state = Lock(State())
    let capacity: Int

    init(capacity: Int = 10_000) { self.capacity = capacity }

    func add(_ record: GenerationRecord) {
        state.withLock { state in
            if state.records.count >= capacity, state.oldest < state.order.count {
                state.records[state.order[state.oldest]] = nil
                state.oldest += 1
                if state.oldest > capacity {  // compact the id list now and then
                    state.order.removeFirst(state.oldest)
                    state.oldest = 0
                }
            }
            state.records[record.id] = record
            state.order.append(record.id)
        }
    }

    func record(_ id: String) -> GenerationRecord? { state.withLock { $0.records[id] } }

    /// A new id: `gen-` and 24 random hex digits.
    static func newID() -> String {
        var generator = SystemRandomNumberGenerator()
        let digits = Array("0123456789abcdef")
        return "gen-" + String((0..<24).map { _ in digits[Int(generator.next() % 16)] })
    }
}
