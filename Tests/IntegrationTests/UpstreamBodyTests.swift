import EventLoop
import Foundation
import MockUpstream
import Synchronization
import Testing
import UpstreamClient

/// A request body reaches the upstream whole, small (sent with the head) or large (sent after
/// it), and the transfer lets go of it once the response has begun: a stream answering a long
/// conversation does not hold the conversation for as long as it streams.
@Suite(.timeLimit(.minutes(1))) final class UpstreamBodyTests {
    let mockThread = EventLoopThread(name: "body-mock")
    let clientThread = EventLoopThread(name: "body-client")
    let stats = MockUpstreamStats()
    private final class Box: @unchecked Sendable {  // mock loop / client loop only
        var mock: MockUpstream?
        var client: UpstreamClient?
        var transfer: UpstreamTransfer?
    }
    private let box = Box()
    let mockPort: Int

    init() throws {
        let stats = stats
        let box = box
        let mockLoop = mockThread.loop
        mockPort = try mockLoop.submitAndWait {
            let mock = try MockUpstream(loop: mockLoop, port: 0, stats: stats)
            box.mock = mock
            return mock.port
        }
    }

    deinit {
        let box = box
        try? clientThread.loop.submitAndWait { box.client?.close() }
        clientThread.shutdown()
        mockThread.loop.execute { box.mock?.shutdown() }
        mockThread.shutdown()
    }

    /// Streams one chat completion whose user message is `text`; returns the whole response, and
    /// whether the transfer still held its body at its first body bytes and at its end.
    private func run(_ text: String, model: String) throws -> (body: String, heldAtFirstBytes: Bool?, sent: [UInt8]) {
        let box = box
        let loop = clientThread.loop
        let url = "http://127.0.0.1:\(mockPort)/v1/chat/completions"
        let sent = Array(#"{"model":"\#(model)","stream":true,"messages":[{"role":"user","content":"\#(text)"}]}"#.utf8)
        let result = Mutex<(String, Bool?)>(("", nil))
        let done = DispatchSemaphore(value: 0)
        try loop.submitAndWait {
            if box.client == nil { box.client = UpstreamClient(loop: loop) }
            let transfer = box.client!.start(UpstreamRequest(url: url, headers: [("Content-Type", "application/json")], body: sent))
            box.transfer = transfer
            var received: [UInt8] = []
            transfer.onData = { [unowned transfer] bytes in
                if received.isEmpty { result.withLock { $0.1 = transfer.holdsRequestBody } }
                received.append(contentsOf: bytes)
                return true
            }
            transfer.onComplete = { failure in
                let text = failure.map { "failed: \($0.message)" } ?? String(decoding: received, as: UTF8.self)
                result.withLock { $0.0 = text }
                box.transfer = nil
                done.signal()
            }
        }
        #expect(done.wait(timeout: .now() + 20) == .success)
        let (body, held) = result.withLock { $0 }
        return (body, held, sent)
    }

    @Test(arguments: [10, 60_000, 300_000])
    func aBodyOfAnySizeArrivesWholeAndIsLetGoOnceTheResponseBegins(size: Int) throws {
        // Sent with the head below curl's 64 KiB, after it above; 300 KB is many upload buffers.
        let text = String(repeating: "conversation ", count: size / 13 + 1)
        for _ in 0..<2 {  // the second on a kept-alive connection
            let (body, heldAtFirstBytes, sent) = try run(text, model: "paced:pace_ms=1:deltas=3")
            #expect(body.hasSuffix("data: [DONE]\n\n"), "\(body.prefix(200))")
            #expect(stats.lastRequestBody == sent, "the upstream got the body byte for byte")
            #expect(heldAtFirstBytes == false, "the body is let go once the response began")
        }
    }
}
