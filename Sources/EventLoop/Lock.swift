internal import CLibUV  // uv.h includes pthread.h: some builds attribute pthread_mutex_t to it
#if canImport(Glibc)
import Glibc
#endif

/// A value guarded by a `pthread_mutex_t`: every piece of state shared between threads (work queued
/// for a loop, fan-in waiters, generation records, test counters) lives in one.
///
/// Why not `Synchronization.Mutex`: on Linux it is built on raw futex syscalls, which
/// ThreadSanitizer does not intercept, so TSan sees no happens-before edge between the unlock of
/// one thread and the lock of the next and reports races on correctly locked data (7–11 false
/// reports per run for two threads appending to an array, Swift 6.3.1). TSan intercepts pthread
/// mutexes, so with this lock the race gate stays quiet and a real race stands out. The mutex is
/// heap-allocated: a `pthread_mutex_t` must never move.
public final class Lock<Value> {
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private var value: Value

    public init(_ value: Value) {
        self.value = value
        mutex = .allocate(capacity: 1)
        mutex.initialize(to: pthread_mutex_t())
        let result = pthread_mutex_init(mutex, nil)
        precondition(result == 0, "pthread_mutex_init failed: \(result)")
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deinitialize(count: 1)
        mutex.deallocate()
    }

    /// Runs `body` with exclusive access to the value. Never call back into the same lock from
    /// `body` (the mutex is not recursive: that would deadlock).
    public func withLock<Result>(_ body: (inout Value) throws -> Result) rethrows -> Result {
        let locked = pthread_mutex_lock(mutex)
        precondition(locked == 0, "pthread_mutex_lock failed: \(locked)")
        defer {
            let unlocked = pthread_mutex_unlock(mutex)
            precondition(unlocked == 0, "pthread_mutex_unlock failed: \(unlocked)")
        }
        return try body(&value)
    }
}

// The value is only ever touched under the mutex, so the lock may be shared when its value may be sent.
extension Lock: @unchecked Sendable where Value: Sendable {}
