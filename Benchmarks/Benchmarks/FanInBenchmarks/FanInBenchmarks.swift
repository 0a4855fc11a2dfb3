import Benchmark
import DequeModule
import FanIn
import Foundation
import GatewayCore
import Providers
import Surfaces
import Synchronization

/// A typical chat.completion.chunk as forwarded (≈ 230 bytes).
let chunk = Array(#"{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1795563199,"model":"paced","sent_at_us":1795563199748386,"choices":[{"index":0,"delta":{"content":"token "},"finish_reason":null}]}"#.utf8)

/// The comparison: a mutex around a deque of owned records (what a straightforward
/// implementation does).
final class MutexDeque: Sendable {
    private let queue = Mutex(Deque<[UInt8]>())
    let capacity: Int
    init(capacity: Int) { self.capacity = capacity }

    func push(_ bytes: UnsafeRawBufferPointer) -> Bool {
        queue.withLock { queue in
            guard queue.count < capacity else { return false }
            queue.append(Array(bytes))
            return true
        }
    }

    func drain(_ body: (UnsafeRawBufferPointer) -> Void) -> Int {
        let taken = queue.withLock { queue -> Deque<[UInt8]> in
            let all = queue
            queue.removeAll(keepingCapacity: true)
            return all
        }
        for record in taken { record.withUnsafeBytes(body) }
        return taken.count
    }
}

/// `producers` threads push `events` events in total while this thread drains.
func runProducers(_ producers: Int, events: Int, push: @escaping @Sendable (UnsafeRawBufferPointer) -> Bool,
                  drain: () -> Int) {
    let perProducer = events / producers
    let threads = (0..<producers).map { _ in
        Thread {
            chunk.withUnsafeBytes { bytes in
                for _ in 0..<perProducer {
                    while !push(bytes) { sched_yield() }
                }
            }
        }
    }
    for thread in threads { thread.start() }
    var received = 0
    while received < perProducer * producers {
        let drained = drain()
        received += drained
        if drained == 0 { sched_yield() }
    }
}

let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(metrics: [.wallClock, .mallocCountTotal, .throughput],
                                           maxDuration: .seconds(2), maxIterations: 200)

    // Single thread: the cost of one push and one pop, no contention.
    Benchmark("FanIn push+pop, same thread", configuration: .init(scalingFactor: .kilo)) { benchmark in
        let buffer = FanInBuffer(capacity: 64)
        chunk.withUnsafeBytes { bytes in
            for _ in benchmark.scaledIterations {
                _ = buffer.push(producer: 1, kind: 0, bytes: bytes)
                buffer.drain { _, _, record in blackHole(record.count) }
            }
        }
    }
    // An 8-byte event: the queue's own cost, without the payload copy.
    Benchmark("FanIn push+pop, same thread, 8-byte event", configuration: .init(scalingFactor: .kilo)) { benchmark in
        let buffer = FanInBuffer(capacity: 64)
        let small: [UInt8] = [1, 2, 3, 4, 5, 6, 7, 8]
        small.withUnsafeBytes { bytes in
            for _ in benchmark.scaledIterations {
                _ = buffer.push(producer: 1, kind: 0, bytes: bytes)
                buffer.drain { _, _, record in blackHole(record.count) }
            }
        }
    }
    Benchmark("Mutex deque push+pop, same thread", configuration: .init(scalingFactor: .kilo)) { benchmark in
        let queue = MutexDeque(capacity: 64)
        chunk.withUnsafeBytes { bytes in
            for _ in benchmark.scaledIterations {
                _ = queue.push(bytes)
                _ = queue.drain { blackHole($0.count) }
            }
        }
    }

    // Producers on their own threads (as panel members on other loops), one consumer.
    for producers in [1, 2, 4, 8] {
        // A million events per measured iteration: thread start-up vanishes in the per-event figure.
        Benchmark("FanIn \(producers) producer(s)", configuration: .init(scalingFactor: .mega, maxIterations: 8)) { benchmark in
            let buffer = FanInBuffer(capacity: 256)
            runProducers(producers, events: benchmark.scaledIterations.count,
                         push: { buffer.push(producer: 1, kind: 0, bytes: $0) == .pushed },
                         drain: { buffer.drain { _, _, record in blackHole(record.count) } })
        }
        Benchmark("Mutex deque \(producers) producer(s)", configuration: .init(scalingFactor: .mega, maxIterations: 8)) { benchmark in
            let queue = MutexDeque(capacity: 256)
            runProducers(producers, events: benchmark.scaledIterations.count,
                         push: { queue.push($0) }, drain: { queue.drain { blackHole($0.count) } })
        }
    }

    // The proxy's per-event work.
    Benchmark("SSE framing of one event", configuration: .init(scalingFactor: .kilo)) { benchmark in
        var out: [UInt8] = []
        out.reserveCapacity(4096)
        chunk.withUnsafeBytes { bytes in
            for _ in benchmark.scaledIterations {
                out.removeAll(keepingCapacity: true)
                SSEEncoder.appendData(bytes, to: &out)
                blackHole(out.count)
            }
        }
    }
    Benchmark("Upstream chunk relay (parse, validate, frame) per event", configuration: .init(scalingFactor: .kilo)) { benchmark in
        let event = Array("data: ".utf8) + chunk + Array("\n\n".utf8)
        var relay = SSERelay()
        var out: [UInt8] = []
        out.reserveCapacity(4096)
        event.withUnsafeBytes { bytes in
            for _ in benchmark.scaledIterations {
                out.removeAll(keepingCapacity: true)
                _ = relay.relay(bytes, into: &out)
                blackHole(out.count)
            }
        }
    }

    // Translation cost (issue: translated ≤ 1.5× pass-through per forwarded event). The same
    // text delta, as an OpenAI chunk relayed to a chat client (id and model rewritten), and as
    // an Anthropic `content_block_delta` translated to a chat chunk.
    Benchmark("Chat client, OpenAI upstream: pass-through per event", configuration: .init(scalingFactor: .kilo)) { benchmark in
        let event = Array("data: ".utf8) + chunk + Array("\n\n".utf8)
        var relay = ChatStreamRelay.passThrough(id: "gen-0123456789abcdef01234567", model: "openai/gpt-5", maxEventBytes: 1 << 20,
                                                usageFallback: nil)
        var out: [UInt8] = []
        out.reserveCapacity(4096)
        event.withUnsafeBytes { bytes in
            for _ in benchmark.scaledIterations {
                out.removeAll(keepingCapacity: true)
                _ = relay.relay(bytes, into: &out)
                blackHole(out.count)
            }
        }
    }
    Benchmark("Chat client, Anthropic upstream: translated per event", configuration: .init(scalingFactor: .kilo)) { benchmark in
        let start = Array(("event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude\",\"content\":[],\"stop_reason\":null,\"usage\":{\"input_tokens\":10,\"output_tokens\":1}}}\n\n"
                           + "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n").utf8)
        let event = Array("event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"token \"}}\n\n".utf8)
        var relay = ChatStreamRelay.translating(AnthropicProvider().streamDecoder(maxEventBytes: 1 << 20, redactor: .none),
                                                id: "gen-0123456789abcdef01234567", model: "anthropic/claude", created: 1795563199,
                                                includeUsage: true)
        var out: [UInt8] = []
        out.reserveCapacity(4096)
        start.withUnsafeBytes { _ = relay.relay($0, into: &out) }
        event.withUnsafeBytes { bytes in
            for _ in benchmark.scaledIterations {
                out.removeAll(keepingCapacity: true)
                _ = relay.relay(bytes, into: &out)
                blackHole(out.count)
            }
        }
    }
}
