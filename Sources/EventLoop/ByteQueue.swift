/// A growable FIFO of bytes in one malloc'd block, whose readable region has a stable address
/// until the next mutation: what `uv_write` needs for data it sends asynchronously.
/// Not copyable, not shared: owned by one connection.
final class ByteQueue {
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

    private func reserve(_ extra: Int) {
        if writeIndex + extra <= capacity { return }
        guard let storage else {
            var newCapacity = 2048
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
