import Surfaces

/// One output buffer per loop, lent to whoever writes an event (never kept across callbacks): a
/// proxied stream needs bytes only while it relays a read, so thousands of open streams share
/// one buffer instead of holding one each.
final class ByteScratch {
    private var bytes: [UInt8] = []
    /// What a huge event may leave behind is not kept.
    private let keptCapacity = 64 * 1024

    init() {}

    /// Runs `body` with the empty buffer. A nested call (none is expected) gets a fresh one.
    func withBuffer<Result>(_ body: (inout [UInt8]) -> Result) -> Result {
        var buffer: [UInt8] = []
        swap(&buffer, &bytes)
        buffer.removeAll(keepingCapacity: buffer.capacity <= keptCapacity)
        defer { swap(&buffer, &bytes) }
        return body(&buffer)
    }
}

extension ClientRelay {
    /// `relay(_:into:)`, counting the answer events it forwarded. `forwardedEvents` is read
    /// through `inout self`: read from a class's property, a relay would be copied to be read.
    mutating func relay(_ bytes: UnsafeRawBufferPointer, into out: inout [UInt8], forwarded: inout Int) -> SSERelay.Outcome {
        let before = forwardedEvents
        let outcome = relay(bytes, into: &out)
        forwarded = forwardedEvents - before
        return outcome
    }
}
