/// A growable FIFO of bytes in one malloc'd block, whose readable region has a stable address
/// until the next mutation: what `uv_write` needs for data it sends asynchronously.
/// Not copyable, not shared: owned by one connection.
final class ByteQueue {
    /// The first block: a response head or one chat event fits (a drain that coalesces several
    /// events grows it once). Every open stream holds its queue's block, so it is kept small:
    /// 2 KiB was 7% of a stream's heap (heaptrack, 1,000 open streams).
    static let initialCapacity = 512
    /// A drained queue holding more than this gives its block back (`releaseIfLarge`): a slow
    /// client's backlog can grow it to 64 KiB, and a long stream would hold that to its end. The
    /// few dozen events a short stall piles up stay within it, so they cause no allocations.
    static let keptCapacity = 16 * 1024

    /// Allocated on first use: most connections' writes go straight to the kernel and never
    /// need a queue, and an idle connection should cost no buffer.
    private(set) var storage: UnsafeMutableRawPointer?
    private(set) var capacity = 0
    private var readIndex = 0
    private var writeIndex = 0

    init() {}

    deinit { storage?.deallocate() }

    var count: Int { writeIndex - readIndex }
    var isEmpty: Bool { readIndex == writeIndex }

    /// The readable bytes; valid until the next `append`/`consume`/`clear`.
    var readable: UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: storage.map { $0 + readIndex }, count: count)
    }

    func append(_ bytes: UnsafeRawBufferPointer) {
        guard bytes.count > 0 else { return }
        reserve(bytes.count)
        (storage! + writeIndex).copyMemory(from: bytes.baseAddress!, byteCount: bytes.count)
        writeIndex += bytes.count
    }

    func consume(_ byteCount: Int) {
        readIndex += byteCount
        if readIndex == writeIndex { readIndex = 0; writeIndex = 0 }
    }

    func clear() { readIndex = 0; writeIndex = 0 }

    /// Frees the block if the queue is empty and the block grew past `keptCapacity`. Called when a
    /// connection has handed everything to the kernel, never per write: a queue that stays within
    /// `keptCapacity` keeps its block, so steady streaming allocates nothing.
    func releaseIfLarge() {
        // Empty means both indices are 0 already (`consume` and `clear` reset them).
        guard isEmpty, capacity > Self.keptCapacity, let storage else { return }
        storage.deallocate()
        self.storage = nil
        capacity = 0
    }

    private func reserve(_ extra: Int) {
        if writeIndex + extra <= capacity { return }
        guard let storage else {
            var newCapacity = Self.initialCapacity
            while newCapacity < extra { newCapacity *= 2 }
            self.storage = .allocate(byteCount: newCapacity, alignment: 16)
            capacity = newCapacity
            return
        }
        // Compact first; grow only if that is not enough.
        let live = count
        if readIndex > 0 {
            storage.copyMemory(from: storage + readIndex, byteCount: live)
            readIndex = 0
            writeIndex = live
            if writeIndex + extra <= capacity { return }
        }
        var newCapacity = capacity * 2
        while newCapacity < live + extra { newCapacity *= 2 }
        let newStorage = UnsafeMutableRawPointer.allocate(byteCount: newCapacity, alignment: 16)
        newStorage.copyMemory(from: storage, byteCount: live)
        storage.deallocate()
        self.storage = newStorage
        capacity = newCapacity
    }
}
