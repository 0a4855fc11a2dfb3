import EventLoop
import Foundation
import GatewayCore
import HTTPServer

/// One response in progress: paces the script's steps with a timer and plays the scenario's
/// failures, writing whatever API `wire` speaks.
final class MockStream {
    let script: MockScript
    let writer: HTTPResponseWriter
    let stats: MockUpstreamStats
    let streaming: Bool
    var onEnd: (() -> Void)?
    private var wire: any MockWire
    private var timer: LoopTimer?
    /// Pings while the first token is awaited (`ping_ms`).
    private var pingTimer: LoopTimer?
    private var nextStep = 0
    private var ended = false
    /// `drop=1`: the answer is written whole; the connection drops at the next tick.
    private var dropping = false
    /// `stall:trickle=1`: a byte of an event that never ends, every `pace_ms`.
    private var trickling = false
    /// `straddle=1`: the last bytes of each step's write, sent with the next one, so every write
    /// ends inside an event (an upstream whose reads never end where its events do).
    private var carried: [UInt8] = []
    private var buffer: [UInt8] = []

    init(script: MockScript, wire: any MockWire, writer: HTTPResponseWriter, stats: MockUpstreamStats, streaming: Bool) {
        self.script = script
        self.wire = wire
        self.writer = writer
        self.stats = stats
        self.streaming = streaming
    }

    func start() {
        stats.update { $0.streamsStarted += 1 }
        writer.onClientGone = { [unowned self] in
            guard !ended else { return }
            stats.update { $0.streamsCancelled += 1 }
            end(counted: false)
        }
        let timer = LoopTimer(loop: writer.loop!) { [unowned self] in tick() }
        self.timer = timer
        let first = script.scenario.firstTokenMilliseconds
        if streaming {
            writer.startStream(headers: [("Content-Type", "text/event-stream"), ("Cache-Control", "no-cache"), ("x-request-id", "req-\(script.id)")])
            write { wire.appendStart(to: &$0) }
        }
        if first > 0 {
            timer.start(afterMilliseconds: UInt64(first))
            let ping = script.scenario.option("ping_ms", default: 0)
            if streaming && ping > 0 {
                let pings = LoopTimer(loop: writer.loop!) { [unowned self] in
                    guard !ended, nextStep == 0 else { return }
                    write { wire.appendPing(to: &$0) }
                }
                pings.start(afterMilliseconds: UInt64(ping), repeatMilliseconds: UInt64(ping))
                pingTimer = pings
            }
        } else {
            tick()
        }
    }

    func stop() {
        ended = true
        timer?.close()
        timer = nil
        pingTimer?.close()
        pingTimer = nil
    }

    /// Writes what `append` produces, if anything, as one chunk.
    private func write(_ append: (inout [UInt8]) -> Void) {
        buffer.removeAll(keepingCapacity: true)
        append(&buffer)
        writer.writeStreamChunk(buffer)
    }

    /// Bytes the client may leave unread before the stream waits for it (like the gateway, the
    /// simulator honours backpressure: a client that never reads cannot grow its memory).
    static let maxUnreadBytes = 64 * 1024

    private func tick() {
        guard !ended else { return }
        if dropping {
            writer.abort()
            end(counted: true)
            return
        }
        if trickling {
            write { $0.append(UInt8(ascii: "a")) }
            timer?.start(afterMilliseconds: UInt64(script.scenario.paceMilliseconds))
            return
        }
        if !streaming {
            respondWhole()
            return
        }
        if writer.bufferedBytes > Self.maxUnreadBytes {
            // Resume when the client has taken what is queued.
            stats.update { $0.waitsForClient += 1 }
            writer.onWritable = { [unowned self] in
                writer.onWritable = nil
                tick()
            }
            return
        }
        let kind = script.scenario.kind
        let failsMidStream = [.errorMidStream, .malformed, .stall, .disconnect].contains(kind)
        if failsMidStream && nextStep >= script.scenario.failAfter {
            failMidStream(kind)
            return
        }
        // `together=1`: the last step shares its chunk with the finish (and the usage).
        let together = script.scenario.option("together", default: 0) == 1 && !failsMidStream
        if together && nextStep == script.steps.count - 1 {
            finish(lastStep: script.steps[nextStep])
            return
        }
        if nextStep < script.steps.count {
            let step = script.steps[nextStep]
            write { out in
                out += carried
                carried.removeAll()
                let start = out.count
                wire.appendStep(step, to: &out)
                if script.scenario.option("straddle", default: 0) == 1 {
                    let kept = min(5, out.count - start)
                    carried = Array(out.suffix(kept))
                    out.removeLast(kept)
                }
            }
            nextStep += 1
            if nextStep < script.steps.count || !failsMidStream {
                timer?.start(afterMilliseconds: UInt64(script.scenario.paceMilliseconds))
                return
            }
        }
        if failsMidStream {
            failMidStream(kind)
            return
        }
        finish(lastStep: nil)
    }

    /// The finish and usage — or, with `truncate=1`, nothing: the body just ends.
    private func finish(lastStep: MockScript.Step?) {
        if script.scenario.option("truncate", default: 0) == 0 {
            write { out in
                out += carried
                carried.removeAll()
                wire.appendFinish(lastStep: lastStep, to: &out)
            }
        }
        switch script.scenario.option("drop", default: 0) {
        case 1:
            // Dropped once what was written has left (an abort now could discard it).
            dropping = true
            timer?.start(afterMilliseconds: 20)
            return
        case 2:
            timer?.stop()  // silence until the client gives up
            return
        default:
            break
        }
        writer.endStream()
        end(counted: true)
    }

    private func failMidStream(_ kind: MockScenario.Kind) {
        switch kind {
        case .errorMidStream:
            write { wire.appendMidStreamError(to: &$0) }
            writer.endStream()
            end(counted: true)
        case .malformed:
            write { wire.appendMalformed(to: &$0) }
            writer.endStream()
            end(counted: true)
        case .stall where script.scenario.option("trickle", default: 0) == 1:
            trickling = true
            write { $0 += Array(#"data: {"a":""#.utf8) }
            timer?.start(afterMilliseconds: UInt64(script.scenario.paceMilliseconds))
        case .stall:
            timer?.stop()  // silence until the client gives up
        default:  // disconnect
            writer.abort()
            end(counted: true)
        }
    }

    private func respondWhole() {
        let kind = script.scenario.kind
        if kind == .stall { return }  // never answers
        if kind == .disconnect {
            writer.abort()
            end(counted: true)
            return
        }
        let headers = [("Content-Type", "application/json"), ("x-request-id", "req-\(script.id)")]
        let drop = script.scenario.option("drop", default: 0)
        guard drop != 0 else {
            writer.respond(status: 200, headers: headers, body: wire.wholeResponse())
            end(counted: true)
            return
        }
        // `drop`: the head and half the body, then the connection drops (1) or goes silent (2).
        let body = wire.wholeResponse()
        writer.startStream(status: 200, headers: headers)
        writer.writeStreamChunk(Array(body.prefix(body.count / 2)))
        if drop == 1 {
            dropping = true
            timer?.start(afterMilliseconds: 20)  // once the half has left
        }
    }

    private func end(counted: Bool) {
        guard !ended else { return }
        if counted { stats.update { $0.streamsFinished += 1 } }
        stop()
        let callback = onEnd
        onEnd = nil
        callback?()
    }

    static func wallClockMicroseconds() -> Int {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        return now.tv_sec * 1_000_000 + now.tv_nsec / 1000
    }
}
