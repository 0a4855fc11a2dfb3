import Synchronization

/// A bounded, lock-free, multi-producer single-consumer queue of byte records: the path every
/// event bound for a client stream takes (upstream deltas from any loop, judge progress, the
/// final answer) to the loop that owns the client's socket.
///
/// Algorithm: Dmitry Vyukov's bounded MPMC queue (per-slot sequence numbers), specialised for
/// one consumer and extended so a record may span several consecutive slots, reserved with one
/// compare-and-swap. Slots hold their bytes inline, so pushing and draining allocate nothing;
/// records larger than the whole ring are refused (`.tooLarge`), and callers split or box them.
///
/// Properties:
/// - FIFO per producer (a producer's reservations are at increasing positions), records never
///   torn or interleaved (a record's slots are consecutive);
/// - `push` never blocks: a full ring returns `.full`, the caller's backpressure signal;
/// - a producer preempted between reserving and publishing delays the consumer (it stops at the
///   first unpublished slot) but never corrupts it: the cost of lock-freedom without locks.
public final class FanInBuffer: @unchecked Sendable {
    // @unchecked Sendable: all cross-thread state is `Atomic`s; slot bytes are handed from
    // producer to consumer by the release/acquire pair on each slot's sequence number.

    public enum PushResult: Equatable { case pushed, full, tooLarge }

    /// Bytes of payload per slot; the slot also has an 8-byte header.
    public static let payloadPerSlot = 248
    static let slotSize = 256
    static let headerSize = 8

    public let capacity: Int
    fileprivate let mask: Int
    /// The next position producers reserve. Only producers touch it (CAS), on its own cache line.
    private let tail: UnsafeMutablePointer<Atomic<Int>>
    /// The next position the consumer reads. Written only by the consumer; atomic so producers
    /// may read it for `approximateOccupancy`. Own cache line, away from `tail`.
    private let head: UnsafeMutablePointer<Atomic<Int>>
    /// `sequence[p & mask]`: `p` when the slot is free for position `p`, `p + 1` when position
    /// `p` is published, `p + capacity` once the consumer released it for the next lap.
    private let sequences: UnsafeMutablePointer<Atomic<Int>>
    fileprivate let slots: UnsafeMutableRawPointer
    /// Consumer-only scratch for records that span slots, made on first use: a proxied stream's
    /// records are written out from the slots in place, so most rings never need it (~0.5 KiB
    /// less per open stream).
    private var assembly: UnsafeMutableRawPointer?
    private var assemblyCapacity = 0

    /// `capacity` slots (a power of two, at least 2) of 256 bytes each.
    public init(capacity: Int) {
        precondition(capacity >= 2 && capacity & (capacity - 1) == 0, "capacity must be a power of two ≥ 2")
        self.capacity = capacity
        mask = capacity - 1
        // 128 bytes: a cache line and its adjacent-line prefetch partner, so producers' CAS traffic
        // on `tail` does not false-share with anything else.
        let tailBlock = UnsafeMutableRawPointer.allocate(byteCount: 128, alignment: 128)
        tail = tailBlock.bindMemory(to: Atomic<Int>.self, capacity: 1)
        tail.initialize(to: Atomic(0))
        let headBlock = UnsafeMutableRawPointer.allocate(byteCount: 128, alignment: 128)
        head = headBlock.bindMemory(to: Atomic<Int>.self, capacity: 1)
        head.initialize(to: Atomic(0))
        sequences = UnsafeMutablePointer<Atomic<Int>>.allocate(capacity: capacity)
        for position in 0..<capacity {
            (sequences + position).initialize(to: Atomic(position))
        }
        slots = .allocate(byteCount: capacity * Self.slotSize, alignment: 64)
    }

    deinit {
        tail.deinitialize(count: 1)
        UnsafeMutableRawPointer(tail).deallocate()
        head.deinitialize(count: 1)
        UnsafeMutableRawPointer(head).deallocate()
        sequences.deinitialize(count: capacity)
        sequences.deallocate()
        slots.deallocate()
        assembly?.deallocate()
    }

    /// The largest record, in slots: the whole ring, and at most 255 (the header's count byte).
    public var maxSlotsPerRecord: Int { min(capacity, 255) }

    /// Slots a record of `byteCount` bytes takes.
    @inline(__always)
    public static func slotsNeeded(for byteCount: Int) -> Int {
        max(1, (byteCount + payloadPerSlot - 1) / payloadPerSlot)
    }

    /// Any thread. Appends one record (`producer` and `kind` are the caller's tags) or fails
    /// without side effects.
    public func push(producer: UInt16, kind: UInt8, bytes: UnsafeRawBufferPointer) -> PushResult {
        let count = Self.slotsNeeded(for: bytes.count)
        guard count <= maxSlotsPerRecord else { return .tooLarge }
        // Reserve positions [position, position + count) with one CAS.
        var position = tail.pointee.load(ordering: .relaxed)
        while true {
            let last = position + count - 1
            // Acquire: pairs with the consumer's release when it freed `last`'s slot, so its
            // reads of this and every earlier slot (it frees in order) happen before our writes.
            let sequence = sequences[last & mask].load(ordering: .acquiring)
            let difference = sequence - last
            if difference == 0 {
                // Relaxed is enough: the CAS only arbitrates between producers; the slot
                // sequence numbers carry the happens-before edges to the consumer.
                let (exchanged, current) = tail.pointee.compareExchange(
                    expected: position, desired: position + count, ordering: .relaxed)
                if exchanged { break }
                position = current
            } else if difference < 0 {
                return .full  // `last`'s slot still holds an unconsumed record from the last lap
            } else {
                position = tail.pointee.load(ordering: .relaxed)  // another producer got there first
            }
        }
        // The slots are ours: write headers and bytes, then publish each one.
        var offset = 0
        for index in 0..<count {
            let slotPosition = position + index
            let slot = slots + (slotPosition & mask) * Self.slotSize
            let length = min(Self.payloadPerSlot, bytes.count - offset)
            slot.storeBytes(of: producer, toByteOffset: 0, as: UInt16.self)
            slot.storeBytes(of: kind, toByteOffset: 2, as: UInt8.self)
            slot.storeBytes(of: UInt8(index == 0 ? count : 0), toByteOffset: 3, as: UInt8.self)
            slot.storeBytes(of: UInt32(index == 0 ? bytes.count : length), toByteOffset: 4, as: UInt32.self)
            if length > 0 {
                (slot + Self.headerSize).copyMemory(from: bytes.baseAddress! + offset, byteCount: length)
            }
            offset += length
        }
        for index in 0..<count {
            let slotPosition = position + index
            // Release: the header and bytes written above become visible to the consumer's
            // acquire load of this sequence number.
            sequences[slotPosition & mask].store(slotPosition + 1, ordering: .releasing)
        }
        return .pushed
    }

    /// Consumer thread only. Calls `body` with each published record in order, up to `limit`
    /// records; stops early at a record not fully published yet. The bytes are valid only
    /// during the call (a record spanning slots is first assembled into one buffer). Returns
    /// how many records were consumed.
    @discardableResult
    public func drain(limit: Int = .max, _ body: (_ producer: UInt16, _ kind: UInt8, _ bytes: UnsafeRawBufferPointer) -> Void) -> Int {
        drainRecords(limit: limit) { record in
            record.withContiguousBytes { body(record.producer, record.kind, $0) }
        }
    }

    /// One published record, seen in place during `drainRecords`: its bytes lie in one or more
    /// slots (`forEachPiece`), so a consumer that copies them anyway (into a socket's buffer)
    /// copies once. Valid only during the call.
    public struct Record {
        public let producer: UInt16
        public let kind: UInt8
        /// Bytes in the record.
        public let count: Int
        fileprivate let position: Int
        fileprivate let slotCount: Int
        fileprivate unowned(unsafe) let buffer: FanInBuffer

        /// Calls `body` with each consecutive piece of the record's bytes (one per slot).
        public func forEachPiece(_ body: (UnsafeRawBufferPointer) -> Void) {
            var offset = 0
            for index in 0..<slotCount {
                let slot = buffer.slots + ((position + index) & buffer.mask) * FanInBuffer.slotSize
                let piece = min(FanInBuffer.payloadPerSlot, count - offset)
                body(UnsafeRawBufferPointer(start: slot + FanInBuffer.headerSize, count: piece))
                offset += piece
            }
        }

        /// The record's bytes in one buffer (assembled in the consumer's scratch when they span
        /// slots).
        public func withContiguousBytes<Result>(_ body: (UnsafeRawBufferPointer) -> Result) -> Result {
            if slotCount <= 1 {
                let slot = buffer.slots + (position & buffer.mask) * FanInBuffer.slotSize
                return body(UnsafeRawBufferPointer(start: slot + FanInBuffer.headerSize, count: count))
            }
            let assembly = buffer.assemblyBuffer(for: count)
            var offset = 0
            forEachPiece { piece in
                (assembly + offset).copyMemory(from: piece.baseAddress!, byteCount: piece.count)
                offset += piece.count
            }
            return body(UnsafeRawBufferPointer(start: assembly, count: count))
        }
    }

    /// Consumer-only scratch of at least `count` bytes.
    private func assemblyBuffer(for count: Int) -> UnsafeMutableRawPointer {
        if let assembly, count <= assemblyCapacity { return assembly }
        assembly?.deallocate()
        assemblyCapacity = max(count, assemblyCapacity * 2, Self.payloadPerSlot * 2)
        let fresh = UnsafeMutableRawPointer.allocate(byteCount: assemblyCapacity, alignment: 16)
        assembly = fresh
        return fresh
    }

    /// Consumer thread only: `drain`, with each record seen in place (no assembly).
    @discardableResult
    public func drainRecords(limit: Int = .max, _ body: (Record) -> Void) -> Int {
        var consumed = 0
        // Relaxed: only this thread writes `head`.
        var position = head.pointee.load(ordering: .relaxed)
        defer {
            // Relaxed: producers read it only for the occupancy estimate.
            head.pointee.store(position, ordering: .relaxed)
        }
        while consumed < limit {
            // Acquire: pairs with the producer's release of this slot; its bytes are complete.
            guard sequences[position & mask].load(ordering: .acquiring) == position + 1 else { break }
            let first = slots + (position & mask) * Self.slotSize
            let count = Int(first.load(fromByteOffset: 3, as: UInt8.self))
            let length = Int(first.load(fromByteOffset: 4, as: UInt32.self))
            // A multi-slot record is consumed only once all its slots are published (acquire as above).
            var complete = true
            for index in 1..<max(count, 1) where sequences[(position + index) & mask].load(ordering: .acquiring) != position + index + 1 {
                complete = false
                break
            }
            guard complete else { break }
            body(Record(producer: first.load(fromByteOffset: 0, as: UInt16.self), kind: first.load(fromByteOffset: 2, as: UInt8.self),
                        count: length, position: position, slotCount: max(count, 1), buffer: self))
            for index in 0..<max(count, 1) {
                let slotPosition = position + index
                // Release: our reads of the slot happen before a producer's reuse of it (its
                // acquire load in `push`).
                sequences[slotPosition & mask].store(slotPosition + capacity, ordering: .releasing)
            }
            position += max(count, 1)
            consumed += 1
        }
        return consumed
    }

    /// Consumer thread only: whether a published record is waiting.
    public var hasPublishedRecord: Bool {
        let position = head.pointee.load(ordering: .relaxed)  // relaxed: consumer-owned
        // Acquire for the same reason as in `drain`.
        return sequences[position & mask].load(ordering: .acquiring) == position + 1
    }

    /// Any thread, approximate: slots reserved and not yet released (for backpressure decisions
    /// and metrics; racy by nature, never used for correctness).
    public var approximateOccupancy: Int {
        // Relaxed: an estimate, never used for correctness.
        max(0, tail.pointee.load(ordering: .relaxed) - head.pointee.load(ordering: .relaxed))
    }
}
