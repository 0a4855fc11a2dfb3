import EventLoop
import FanIn

/// An inner call's way into its session's fan-in channel: records pushed in order, and once one
/// finds the channel full, it and every later one wait here (the call pauses its transfer)
/// until the consumer frees space; then `onSpace` runs, or `onTooLarge` for a record larger
/// than the whole ring. On the call's loop.
final class InnerCallOutbox {
    private let channel: FanInChannel
    private let producer: UInt16
    private let loop: EventLoop
    /// Records not yet accepted by the channel, oldest first.
    private var waiting: [(UInt8, [UInt8])] = []
    /// Registered with the channel for space (at most once at a time).
    private(set) var isWaitingForSpace = false
    /// Every waiting record went in.
    var onSpace: () -> Void = {}
    /// A waiting record can never go in (larger than the whole ring): dropped.
    var onTooLarge: () -> Void = {}

    init(channel: FanInChannel, producer: UInt16, loop: EventLoop) {
        self.channel = channel
        self.producer = producer
        self.loop = loop
    }

    /// Records wait for space: the call should not read more from its upstream.
    var isBlocked: Bool { !waiting.isEmpty }

    /// Pushes in order; once one record waits, every later one waits behind it.
    func push(_ kind: UInt8, _ bytes: [UInt8]) {
        if waiting.isEmpty, bytes.withUnsafeBytes({ channel.push(producer: producer, kind: kind, bytes: $0) }) == .pushed { return }
        waiting.append((kind, bytes))
        waitForSpace()
    }

    /// As `push`, from bytes the caller holds (a delta's text where it stands in its string):
    /// copied only if the record has to wait.
    func push(_ kind: UInt8, _ bytes: UnsafeRawBufferPointer) {
        if waiting.isEmpty, channel.push(producer: producer, kind: kind, bytes: bytes) == .pushed { return }
        waiting.append((kind, Array(bytes)))
        waitForSpace()
    }

    /// Asks the channel to call back once the consumer has freed space.
    func waitForSpace() {
        guard !isWaitingForSpace else { return }
        isWaitingForSpace = true
        channel.resumeWhenSpace(on: loop, retryWhenSpace)
    }

    /// Nothing more goes in (the call was cancelled).
    func discard() { waiting.removeAll() }

    /// Made once: a slow consumer pauses a call every few records, and a closure made per pause
    /// would be an allocation each time.
    private lazy var retryWhenSpace: () -> Void = { [weak self] in self?.retry() }

    private func retry() {
        isWaitingForSpace = false
        while let (kind, bytes) = waiting.first {
            let result = bytes.withUnsafeBytes { channel.push(producer: producer, kind: kind, bytes: $0) }
            if result == .pushed {
                waiting.removeFirst()
            } else if result == .tooLarge {
                waiting.removeFirst()
                onTooLarge()
            } else {
                waitForSpace()
                return
            }
        }
        onSpace()
    }
}
