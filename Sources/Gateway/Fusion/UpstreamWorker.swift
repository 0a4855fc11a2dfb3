import EventLoop
import UpstreamClient

/// A loop and its upstream client: where an inner call can run.
///
/// `@unchecked Sendable`: it is handed between loops, but `client` is only ever used on `loop`
/// (through `loop.execute`, or directly when already there).
struct UpstreamWorker: @unchecked Sendable {
    let loop: EventLoop
    let client: UpstreamClient
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
        local = worker.loop === sessionLoop
        if local {
            call = make(worker.client)
        } else {
            nonisolated(unsafe) let make = make
            worker.loop.execute { [self] in call = make(worker.client) }
        }
    }

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
