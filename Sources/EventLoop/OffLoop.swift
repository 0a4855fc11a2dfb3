import Dispatch

/// CPU-bound work that must not hold a loop (parsing a fetched page: libxml2 over up to 2 MiB,
/// tens of milliseconds for an ordinary page, most of a second for a hostile one, during which
/// every stream on the loop would stall). It runs on a background thread; its result comes
/// back on the loop.
///
/// The threads are libdispatch's global pool (a well-kept pool sized to the machine: a loop
/// per core, so the pool never takes more cores than there are); the work is plain values in and out.
public enum OffLoop {
    /// Runs `work` off the loop, then `then` with its result on `loop`'s thread, where `then` is
    /// also released. If the loop has finished by then, `then` never runs and is released on the
    /// worker thread: capture loop objects weakly. Call on the loop's thread.
    public static func run<Value: Sendable>(on loop: EventLoop, _ work: @escaping @Sendable () -> Value,
                                            then: @escaping (Value) -> Void) {
        let handBack = LoopBound(then)
        DispatchQueue.global(qos: .userInitiated).async {
            let value = work()
            loop.execute { handBack.take()?(value) }
        }
    }
}

/// A value created on a loop and used only there, carried through another thread that never
/// touches it (`OffLoop`'s completion).
private final class LoopBound<Value>: @unchecked Sendable {
    private var value: Value?
    init(_ value: Value) { self.value = value }

    /// On the loop: the value, once. The box then holds nothing, so whichever thread lets go of
    /// it last releases nothing of the loop's.
    func take() -> Value? {
        defer { value = nil }
        return value
    }
}
