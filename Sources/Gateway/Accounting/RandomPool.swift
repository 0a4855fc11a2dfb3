import Foundation

/// Random bytes from the kernel's generator (`getrandom`), fetched 4 KiB at a time: a request's
/// generation id took one syscall before its upstream call. Each byte is handed out once. One
/// pool per loop: not for sharing across threads.
final class RandomPool {
    private var bytes = [UInt8](repeating: 0, count: 4096)
    private var next: Int

    init() { next = bytes.count }

    func fill(_ buffer: UnsafeMutableRawBufferPointer) {
        var filled = 0
        while filled < buffer.count {
            if next == bytes.count {
                bytes.withUnsafeMutableBytes { arc4random_buf($0.baseAddress!, $0.count) }
                next = 0
            }
            let count = min(buffer.count - filled, bytes.count - next)
            bytes.withUnsafeMutableBytes { source in
                let taken = source.baseAddress! + next
                (buffer.baseAddress! + filled).copyMemory(from: taken, byteCount: count)
                memset(taken, 0, count)  // what was handed out is not kept
            }
            next += count
            filled += count
        }
    }
}
