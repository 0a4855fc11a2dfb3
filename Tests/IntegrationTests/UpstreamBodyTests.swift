import EventLoop
import Foundation
import HTTPServer
import MockUpstream
import Synchronization
import Testing
import UpstreamClient

/// A request body reaches the upstream whole, small (sent with the head) or large (sent after
/// it), and the transfer lets go of it once the response has begun (from its second body piece:
/// not on the first, whose relay would wait for the free): a stream answering a long
/// conversation does not hold the conversation for as long as it streams.
@Suite(.timeLimit(.minutes(1))) final class UpstreamBodyTests: UpstreamTestBed {
    init() throws { try super.init(name: "body") }

    /// Streams one chat completion whose user message is `text`; returns the whole response, the
    /// body pieces, and whether the transfer still held its request body at the last one.
    private func run(_ text: String, model: String) throws -> (body: String, pieces: Int, heldAtLastPiece: Bool?, sent: [UInt8]) {
        let box = box
        let loop = clientThread.loop
        let url = "http://127.0.0.1:\(mockPort)/v1/chat/completions"
        let sent = Array(#"{"model":"\#(model)","stream":true,"messages":[{"role":"user","content":"\#(text)"}]}"#.utf8)
        let result = Mutex<(String, Int, Bool?)>(("", 0, nil))
        let done = DispatchSemaphore(value: 0)
        try loop.submitAndWait {
            if box.client == nil { box.client = UpstreamClient(loop: loop) }
            let transfer = box.client!.start(UpstreamRequest(url: url, headers: [("Content-Type", "application/json")], body: sent))
            box.transfer = transfer
            var received: [UInt8] = []
            transfer.onData = { [unowned transfer] bytes in
                result.withLock {
                    $0.1 += 1
                    $0.2 = transfer.holdsRequestBody
                }
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
        let (body, pieces, held) = result.withLock { $0 }
        return (body, pieces, held, sent)
    }

    /// An upstream may answer before it has read the body (here a 413 right after the head, as
    /// the mock's body limit is 64 KiB): curl may still be sending then, so the body is kept
    /// until the transfer ends. The transfer ends with the answer or a send error, never a crash
    /// or a read of freed memory (the suite runs under AddressSanitizer in CI).
    @Test func anUpstreamThatAnswersBeforeReadingTheBodyLeavesItWithTheTransfer() throws {
        var limits = HTTPServerLimits()
        limits.maxBodyBytes = 64 * 1024
        let bed = try UpstreamTestBed(name: "early", limits: limits)
        let box = bed.box
        let loop = bed.clientThread.loop
        let url = "http://127.0.0.1:\(bed.mockPort)/v1/chat/completions"
        let text = String(repeating: "conversation ", count: 2_000_000 / 13)
        let sent = Array(#"{"model":"paced:pace_ms=1:deltas=3","stream":true,"messages":[{"role":"user","content":"\#(text)"}]}"#.utf8)
        let outcome = Mutex<(status: Int, failure: String?, heldAtHead: Bool?)>((0, nil, nil))
        let done = DispatchSemaphore(value: 0)
        try loop.submitAndWait {
            box.client = UpstreamClient(loop: loop)
            let transfer = box.client!.start(UpstreamRequest(url: url, headers: [("Content-Type", "application/json")], body: sent))
            box.transfer = transfer
            transfer.onHead = { [unowned transfer] status, _ in outcome.withLock { $0.status = status; $0.heldAtHead = transfer.holdsRequestBody } }
            transfer.onData = { _ in true }
            transfer.onComplete = { failure in
                outcome.withLock { $0.failure = failure?.message }
                box.transfer = nil
                done.signal()
            }
        }
        #expect(done.wait(timeout: .now() + 20) == .success)
        let (status, failure, heldAtHead) = outcome.withLock { $0 }
        #expect(status == 413 || failure != nil, "the upstream's early answer, or the send error it caused")
        if status != 0 {
            // The body is let go only from the response's second body piece: at the head curl may
            // still be sending it.
            #expect(heldAtHead == true, "the transfer holds the body while curl may still send it")
        }
        // The connection was the mock's to close; a new transfer on the same client still works.
        let again = Mutex<String?>(nil)
        let small = Array(#"{"model":"paced:pace_ms=1:deltas=3","stream":true,"messages":[{"role":"user","content":"hi"}]}"#.utf8)
        let doneAgain = DispatchSemaphore(value: 0)
        try loop.submitAndWait {
            let transfer = box.client!.start(UpstreamRequest(url: url, headers: [("Content-Type", "application/json")], body: small))
            box.transfer = transfer
            var received: [UInt8] = []
            transfer.onData = { bytes in
                received.append(contentsOf: bytes)
                return true
            }
            transfer.onComplete = { failure in
                again.withLock { $0 = failure?.message ?? String(decoding: received, as: UTF8.self) }
                box.transfer = nil
                doneAgain.signal()
            }
        }
        #expect(doneAgain.wait(timeout: .now() + 20) == .success)
        #expect(again.withLock { $0 }?.hasSuffix("data: [DONE]\n\n") == true)
    }

    @Test(arguments: [10, 60_000, 300_000])
    func aBodyOfAnySizeArrivesWholeAndIsLetGoOnceTheResponseBegins(size: Int) throws {
        // Sent with the head below curl's 64 KiB, after it above; 300 KB is many upload buffers.
        let text = String(repeating: "conversation ", count: size / 13 + 1)
        for _ in 0..<2 {  // the second on a kept-alive connection
            // Deltas 20 ms apart: each arrives in a piece of its own.
            let (body, pieces, heldAtLastPiece, sent) = try run(text, model: "paced:pace_ms=20:deltas=4")
            #expect(body.hasSuffix("data: [DONE]\n\n"), "\(body.prefix(200))")
            #expect(stats.lastRequestBody == sent, "the upstream got the body byte for byte")
            #expect(pieces >= 2)
            #expect(heldAtLastPiece == false, "the body is let go once the response has begun")
        }
    }
}
