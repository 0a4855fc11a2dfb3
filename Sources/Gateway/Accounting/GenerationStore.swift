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
    /// How Fusion was asked for (`FusionRequest.entryPoint`: `fusion`, `openrouter/fusion`,
    /// `fusion_tool`, `fusion_plugin`); nil on the plain proxy.
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

    var json: JSONValue {
        func rounded(_ value: Double) -> JSONValue { .double((value * 1000).rounded() / 1000) }
        var data: [String: JSONValue] = [
            "id": .string(id), "model": .string(model), "router": router.map(JSONValue.string) ?? .null,
            "created_at": .string(ISO8601DateFormatter().string(from: createdAt)),
            "streamed": .bool(streamed), "cancelled": .bool(cancelled), "status": .int(Int64(status)),
            "finish_reason": finishReason.map(JSONValue.string) ?? .null,
            "tokens_prompt": .int(usage.promptTokens), "tokens_completion": .int(usage.completionTokens),
            "native_tokens_reasoning": .int(usage.reasoningTokens), "num_search_results": .int(Int64(numSearchResults)),
            "num_web_tool_calls": .int(Int64(webToolCalls)),
            "total_cost": .double(usage.cost), "usage": usage.json, "usage_estimated": .bool(usageEstimated),
            "latency": firstTokenMilliseconds.map(rounded) ?? .null,
            "generation_time": rounded(durationMilliseconds),
        ]
        if !calls.isEmpty { data["fusion"] = .object(["calls": .array(calls.map(\.json))]) }
        if let error { data["error"] = .string(error) }
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

    /// A new id: `gen-` and 24 random hex digits (96 bits: two draws from the system's generator, where a
    /// draw per digit cost a `getrandom` syscall each).
    static func newID() -> String {
        var generator = SystemRandomNumberGenerator()
        let high = generator.next() as UInt64
        let low = generator.next() as UInt64
        let digits: StaticString = "0123456789abcdef"
        return String(unsafeUninitializedCapacity: 28) { buffer in
            for (index, byte) in "gen-".utf8.enumerated() { buffer[index] = byte }
            for index in 0..<24 {
                let nibble = index < 16 ? (high >> UInt64(60 - 4 * index)) & 0xF : (low >> UInt64(60 - 4 * (index - 16))) & 0xF
                buffer[4 + index] = digits.utf8Start[Int(nibble)]
            }
            return 28
        }
    }
}
