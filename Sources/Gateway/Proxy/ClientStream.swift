import EventLoop
import FanIn
import GatewayCore
import HTTPServer
import Providers

/// The client's side of a streamed response. Every byte bound for the client goes through one
/// fan-in channel drained on the client connection's loop, whoever produced it: the proxy's
/// upstream transfer, Fusion's panel members on other loops, the judge, the outer model.
///
/// Records of kind `clientBytes` are written as they are (each drain's records leave in one
/// syscall thanks to the connection's write coalescing); `end` finishes the response; any other
/// kind goes to `onEvent` (Fusion's member events, decoded on the client's loop).
///
/// A client that reads slowly stops the drain once its socket buffer holds `maxClientBuffer`
/// bytes; the ring then fills and producers pause, so a stream's memory stays bounded.
final class ClientStream {
    static let clientBytes: UInt8 = 0
    static let end: UInt8 = 1

    let channel: FanInChannel
    let writer: HTTPResponseWriter
    /// Records of other kinds (producer events).
    var onEvent: ((_ producer: UInt16, _ kind: UInt8, _ bytes: UnsafeRawBufferPointer) -> Void)?
    /// The `end` record was written.
    var onEnded: (() -> Void)?
    /// Run once the whole response has left the process (after the end, the connection's write
    /// buffer drained or it closed), or at once when the stream closes without ending: what a
    /// response's bytes hold against a bound (a whole answer's reservation) lasts as they do.
    var onSent: (() -> Void)?
    let maxClientBuffer: Int
    /// Client bytes emitted while the ring was full, in order, written after it drains (rare:
    /// control records such as an error chunk when the client is far behind).
    private var overflow: [[UInt8]] = []
    private var overflowEnds = false
    private var ended = false
    /// While the client is behind (its buffer past `maxClientBuffer`): the check of its pace,
    /// from when it fell behind or last kept pace; nil while it keeps up.
    private(set) var behindPace: DrainPace?

    /// Secrets (provider and gateway keys) taken out of every byte bound for the client, as
    /// `Redactor` finds them: a key an upstream or a model echoes never leaves the process.
    /// Checked per emit (the fast path allocates nothing): a run of three quarters of a key in one
    /// emit is caught, a key spelled a few bytes per event is not (see `Redactor`).
    let redactor: Redactor

    init(writer: HTTPResponseWriter, loop: EventLoop, capacity: Int = 32, maxClientBuffer: Int = 64 * 1024, redactor: Redactor = .none) {
        self.writer = writer
        self.maxClientBuffer = maxClientBuffer
        self.redactor = redactor
        channel = FanInChannel(loop: loop, capacity: capacity)
        channel.onRecords = { [unowned self] record in deliver(record) }
        channel.onDrained = { [unowned self] in writeOverflow() }
    }

    /// Whether a producer may relay `inputBytes` of upstream data now: its output fits, or the
    /// ring is empty (then any excess waits in `overflow`, so a chunk larger than the ring still
    /// makes progress; curl's receive buffer bounds it).
    func hasRoom(forInput inputBytes: Int) -> Bool {
        guard overflow.isEmpty else { return false }
        let occupancy = channel.buffer.approximateOccupancy
        // A relayed event is at most its input plus a little framing; 512 covers an error chunk.
        let needed = FanInBuffer.slotsNeeded(for: inputBytes + inputBytes / 8 + 512)
        return occupancy == 0 || occupancy + needed <= channel.buffer.capacity
    }

    /// `hasRoom`, for a stream whose producer `drainsWhenFull`: when the ring (or the overflow
    /// behind it) is short of room but the client is taking bytes, both go to the connection's
    /// write queue now rather than later in this iteration (the loop flushes that queue as one
    /// write either way), and the producer goes on. curl hands over a burst's reads back to back
    /// (a busy machine coalesces a stream's events), and a pause and resume for each cost curl
    /// several allocations, a deferred resume and 2 `epoll_ctl`. So the transfer pauses only when
    /// `maxClientBuffer` waits for the client: a client that is behind, which is what backpressure
    /// is for (or a burst larger than that in one of curl's passes, until the loop writes it).
    func makeRoom(forInput inputBytes: Int) -> Bool {
        if hasRoom(forInput: inputBytes) { return true }
        guard canDrainNow else { return false }
        channel.drainNow()  // the overflow too, once the ring is empty (`writeOverflow`)
        return hasRoom(forInput: inputBytes)
    }

    /// Set by a producer that is this stream's only one, runs on the client's loop, and is never
    /// called from inside a drain (the proxy: curl's callbacks): a full ring is then drained at
    /// once rather than pausing it. Not for Fusion, whose drain runs its session, which starts
    /// and stops calls: that must not happen inside a call's own callback.
    var drainsWhenFull = false

    private var canDrainNow: Bool {
        drainsWhenFull && channel.loop.inLoopThread && !ended && channel.isAcceptingRecords
    }

    /// Consumer loop only: queues bytes for the client, in order with everything before.
    func emit(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { emit($0) }
    }

    func emit(_ bytes: UnsafeRawBufferPointer) {
        guard !ended, bytes.count > 0 else { return }
        if let cleaned = redactor.redacting(bytes) {
            cleaned.withUnsafeBytes { queue($0) }
        } else {
            queue(bytes)
        }
    }

    private func queue(_ bytes: UnsafeRawBufferPointer) {
        guard overflow.isEmpty else {
            overflow.append(Array(bytes))
            return
        }
        let limit = channel.buffer.maxSlotsPerRecord * FanInBuffer.payloadPerSlot
        var offset = 0
        while offset < bytes.count {
            let piece = UnsafeRawBufferPointer(rebasing: bytes[offset..<min(bytes.count, offset + limit)])
            var pushed = channel.push(producer: 0, kind: Self.clientBytes, bytes: piece) == .pushed
            if !pushed && canDrainNow {
                // A read's output a little larger than the ring (the relay lengthens each
                // event's id and model) would otherwise wait in `overflow`, a copy, and pause
                // the transfer at its next read.
                channel.drainNow()
                pushed = channel.push(producer: 0, kind: Self.clientBytes, bytes: piece) == .pushed
            }
            if !pushed {
                overflow.append(Array(UnsafeRawBufferPointer(rebasing: bytes[offset...])))
                channel.drainSoon()
                return
            }
            offset += piece.count
        }
    }

    /// Consumer loop only: ends the response after everything emitted before.
    func emitEnd() {
        guard !ended else { return }
        ended = true
        if !overflow.isEmpty || channel.push(producer: 0, kind: Self.end, bytes: UnsafeRawBufferPointer(start: nil, count: 0)) != .pushed {
            overflowEnds = true
            channel.drainSoon()
        }
    }

    private func deliver(_ record: FanInBuffer.Record) {
        switch record.kind {
        case Self.clientBytes:
            // Straight from the ring's slots into the connection's write buffer: one copy.
            writer.writeStreamChunk(byteCount: record.count) { write in record.forEachPiece(write) }
        case Self.end:
            finishResponse()
        default:
            if let onEvent { record.withContiguousBytes { onEvent(record.producer, record.kind, $0) } }
        }
        if channel.isAcceptingRecords && writer.bufferedBytes > maxClientBuffer {
            behindPace = DrainPace(since: channel.loop.nowMilliseconds, backlog: writer.backlog)
            channel.isAcceptingRecords = false
            // Watched only while blocked: the rest of the time a drain notifies no one.
            writer.onWritable = { [unowned self] in clientDidDrain() }
        }
    }

    private func clientDidDrain() {
        writer.onWritable = nil
        channel.isAcceptingRecords = true
        behindPace = nil
        channel.drainSoon()
    }

    /// After a drain: bytes that did not fit the ring go out once everything before them has
    /// (and with them what was emitted behind them, which never entered the ring). Then the end,
    /// if it waited behind them.
    private func writeOverflow() {
        guard !overflow.isEmpty || overflowEnds, !channel.buffer.hasPublishedRecord, writer.bufferedBytes <= maxClientBuffer else { return }
        for bytes in overflow { writer.writeStreamChunk(bytes) }
        overflow.removeAll()
        if overflowEnds {
            overflowEnds = false
            finishResponse()
        }
    }

    private func finishResponse() {
        writer.endStream()
        if let onSent {
            self.onSent = nil
            writer.whenWritten(onSent)
        }
        let callback = onEnded
        onEnded = nil
        callback?()
    }

    /// How long the client has not been keeping pace (0 while it does). Asked now and then (the
    /// watchdog's tick): a blocked client that took, as the kernel counts it (`WriteBacklog`),
    /// what `DrainPace` asks since it blocked is blocked from now, not from when it blocked. Any
    /// progress is not enough: a reader crawling a few bytes at a time would pin the stream and
    /// its upstream transfers for as long as it liked.
    func blockedMilliseconds() -> UInt64 {
        guard let check = behindPace else { return 0 }
        let now = channel.loop.nowMilliseconds
        let backlog = writer.backlog
        if check.kept(now: now, backlog: backlog, minBytesPerSecond: writer.minDrainBytesPerSecond) {
            behindPace = DrainPace(since: now, backlog: backlog)
            return 0
        }
        return now > check.since ? now - check.since : 0
    }

    func close() {
        channel.close()
        writer.onWritable = nil
        onEvent = nil
        onEnded = nil
        if let onSent {
            self.onSent = nil
            onSent()
        }
        if let tailWatchdog {
            tailWatchdog.close()
            self.tailWatchdog = nil
            writer.onClientGone = nil
        }
    }

    /// Watches the stream once its producer is gone (a finished Fusion session, released when
    /// its record is filed) and its end is queued behind what the client has not taken yet.
    private var tailWatchdog: StreamWatchdog?

    /// The stream lives on its own until its queued end is written: it holds itself (through
    /// `onEnded`) until then, a client that leaves closes it, and one that takes nothing for
    /// `slowClientTimeout` is dropped, as while its producer ran (`onDropped`: counted). Records still queued for the
    /// producer (`onEvent`) are dropped unread (review 43 engine F1, F2: the session's callbacks
    /// read a released session, and a client that never read again held its connection forever).
    func closeAfterEnd(slowClientTimeoutMilliseconds: UInt64, onDropped: @escaping () -> Void) {
        onEvent = nil
        tailWatchdog = StreamWatchdog(
            loop: channel.loop, keepAliveIntervalMilliseconds: .max, slowClientTimeoutMilliseconds: slowClientTimeoutMilliseconds,
            blockedMilliseconds: { [weak self] in self?.blockedMilliseconds() ?? 0 },
            sendKeepAlive: {},
            dropClient: { [weak self] in
                guard let self else { return }
                onDropped()
                close()
                writer.abort()
            })
        writer.onClientGone = { [weak self] in self?.close() }
        onEnded = { [self] in close() }  // the one strong reference left, until the end or a close
    }
}
