import EventLoop
import Synchronization
import UpstreamClient

/// A loop and its upstream client: where an inner call can run, and how many run there now.
///
/// `@unchecked Sendable`: it is handed between loops, but `client` is only ever used on `loop`
/// (through `loop.execute`, or directly when already there); `load` is atomic.
struct UpstreamWorker: @unchecked Sendable {
    let loop: EventLoop
    let client: UpstreamClient
    /// Shared by every session that places calls here (the workers of a cluster are copies).
    let load = LoopLoad()
}

/// The inner calls open on one loop, read by sessions on every loop to place panel members.
/// Counted by `CallHandle`: up from its creation, down when it is let go.
final class LoopLoad: Sendable {
    private let openCalls = Atomic<Int>(0)

    /// Relaxed: a placement hint, not a synchronisation point.
    var calls: Int { openCalls.load(ordering: .relaxed) }

    func add(_ count: Int) { openCalls.add(count, ordering: .relaxed) }
}

/// Where a panel member runs. A panel stays on its session's loop: its events then reach the
/// session's fan-in channel in the same loop iteration, with no thread hop (a record from another
/// loop wakes the session's thread: spreading every panel cost ~30% more gateway CPU per
/// deliberation, `Benchmarks/README.md`). Only when the session's loop carries more than
/// `margin` open calls beyond the least busy loop does a member go there. Sessions themselves
/// are spread by the kernel (each loop accepts its own connections), so this corrects imbalance
/// rather than spreading by default. Socket-free.
enum CallPlacement {
    /// The index in `loads` (open calls per loop) to place a member on; `own` is the session's.
    static func loop(own: Int, loads: [Int], margin: Int) -> Int {
        precondition(loads.indices.contains(own), "the session's loop is one of the loops")
        var least = own
        for (index, load) in loads.enumerated() where load < loads[least] { least = index }
        return loads[own] - loads[least] > margin ? least : own
    }
}

/// An `InnerCall` on some loop, controlled from the session's loop.
///
/// `@unchecked Sendable`: `call` is created, used and cancelled on `worker.loop` only; the
/// creation and the cancel are both queued on that loop, in that order.
final class CallHandle: @unchecked Sendable {
    let worker: UpstreamWorker
    private var call: InnerCall?
    private let local: Bool

    init(on worker: UpstreamWorker, from sessionLoop: EventLoop, make: @escaping (UpstreamClient) -> InnerCall) {
        self.worker = worker
        worker.load.add(1)
        local = worker.loop === sessionLoop
        if local {
            call = make(worker.client)
        } else {
            nonisolated(unsafe) let make = make
            worker.loop.execute { [self] in call = make(worker.client) }
        }
    }

    deinit { worker.load.add(-1) }

    func cancel() {
        if local {
            call?.cancel()
            call = nil
        } else {
            worker.loop.execute { [self] in
                call?.cancel()
                call = nil
            }
        }
    }
}
