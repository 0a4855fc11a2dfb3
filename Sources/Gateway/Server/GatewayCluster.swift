import EventLoop
import Foundation
import Logging
import Synchronization

/// The gateway on every core: one `GatewayServer` per event loop, each on its own thread, all
/// listening on one port (SO_REUSEPORT: the kernel spreads connections over them) and sharing
/// routing, records and counters. A request stays on the loop that accepted it; Fusion panels
/// spread over all loops, their events crossing back only through fan-in channels.
public final class GatewayCluster: Sendable {
    public let threads: [EventLoopThread]
    private let servers: [ServerBox]
    public let port: Int
    public let shared: GatewayShared
    private let stopped = DispatchSemaphore(value: 0)
    /// `server.drain_delay_ms`: how long `/health` says draining before the listeners close.
    private let drainDelayMilliseconds: UInt64

    /// Loop-confined servers, handed around only to be used through their own loop.
    private final class ServerBox: @unchecked Sendable {
        let server: GatewayServer
        init(_ server: GatewayServer) { self.server = server }
    }

    public init(config: GatewayConfig, environment: [String: String], logger: Logger, loops: Int) throws {
        let count = max(1, loops)
        let threads = (0..<count).map { EventLoopThread(name: "fusion-loop-\($0)") }
        let reusePort = count > 1
        // SO_REUSEPORT would let the loops join another process's listeners on the port: the
        // port must be free first, as a single plain bind would require.
        if reusePort {
            do {
                try TCPListener.ensurePortFree(host: config.server.host, port: config.server.port)
            } catch {
                for thread in threads { thread.shutdown() }
                throw error
            }
        }
        // The first server binds (port 0 picks one) and creates the shared state.
        let firstLoop = threads[0].loop
        var servers: [ServerBox] = []
        let port: Int
        let shared: GatewayShared
        do {
            let first = try firstLoop.submitAndWait {
                ServerBox(try GatewayServer(loop: firstLoop, config: config, environment: environment, logger: logger,
                                            reusePort: reusePort))
            }
            servers.append(first)
            (port, shared) = try firstLoop.submitAndWait { (first.server.port, first.server.shared) }
            var config = config
            config.server.port = port
            for thread in threads.dropFirst() {
                let loop = thread.loop
                let fixedConfig = config
                servers.append(try loop.submitAndWait {
                    ServerBox(try GatewayServer(loop: loop, config: fixedConfig, environment: environment, logger: logger,
                                                shared: shared, reusePort: true))
                })
            }
        } catch {
            // A loop's server could not start (its listener, its store): the loops stop first,
            // closing every handle, and only then are the servers already made released (off
            // their loops, a server's handles must not be touched while its loop runs).
            withExtendedLifetime(servers) {
                for thread in threads { thread.shutdown() }
            }
            throw error
        }
        let workers = try servers.map { box in try box.server.loop.submitAndWait { box.server.worker } }
        for (index, box) in servers.enumerated() {
            let peers = workers.enumerated().filter { $0.offset != index }.map(\.element)
            try box.server.loop.submitAndWait { box.server.setPeers(peers) }
        }
        self.threads = threads
        self.servers = servers
        self.port = port
        self.shared = shared
        drainDelayMilliseconds = config.server.drainDelayMilliseconds
    }

    public var loopCount: Int { threads.count }

    /// Graceful stop, cluster-wide and in order: `/health` reports draining (503) at once and,
    /// after `drain_delay_ms` (while requests are still served, so a balancer's checks can take
    /// this replica out), every loop stops serving (streams in flight get the grace period); only
    /// once all have, each loop releases its upstream client (a session on one loop places panel
    /// members on the others until it ends); then the loops stop.
    /// Returns at once; `waitUntilStopped()` blocks until done.
    public func shutdown() {
        shared.beginDraining()
        guard drainDelayMilliseconds > 0 else {
            stopServing()
            return
        }
        DispatchQueue.global().asyncAfter(deadline: .now() + .milliseconds(Int(drainDelayMilliseconds))) { [self] in stopServing() }
    }

    private func stopServing() {
        let serving = Countdown(servers.count)
        for box in servers {
            box.server.loop.execute { [self] in
                box.server.stopServing {
                    guard serving.finishOne() else { return }
                    self.servingEnded.store(true, ordering: .releasing)
                    self.releaseResources()
                }
            }
        }
    }

    /// Every loop stopped serving: no response is in flight (what remains is the shared
    /// store's drain).
    private let servingEnded = Atomic<Bool>(false)
    private let loopsStopping = Atomic<Bool>(false)
    /// Run once, as the loops begin to stop (the executable ignores further signals there: the
    /// loops' signal watchers go with them, and a signal's default action would end the process
    /// mid-stop: review 79 #8).
    public let willStopLoops = Mutex<(@Sendable () -> Void)?>(nil)
    public var hasStoppedServing: Bool { servingEnded.load(ordering: .acquiring) }

    /// Asks every loop, on its own thread, whether a response is in flight there; `answer` runs
    /// once every loop has said (on the last one's thread). What a second signal decides on: a
    /// stop that cuts nothing is clean however early it comes (review 79 #8: within the drain
    /// delay, with nothing in flight, it said it cut requests and exited 1).
    public func checkResponsesInFlight(_ answer: @escaping @Sendable (Bool) -> Void) {
        let asking = Countdown(servers.count)
        let any = Flag()
        for box in servers {
            box.server.loop.execute {
                if box.server.hasResponseInFlight { any.value.store(true, ordering: .relaxed) }
                // The last loop's countdown acquires every other loop's store.
                if asking.finishOne() { answer(any.value.load(ordering: .relaxed)) }
            }
        }
    }

    /// Ends the shared store's drain now and stops (a second signal once every response ended:
    /// review 72B #5 read it as requests cut, exit 1, and never said what the store lost).
    public func endStoreDrain() {
        let closing = Countdown(servers.count)
        for box in servers {
            box.server.loop.execute { [self] in
                box.server.endStoreDrain()
                if closing.finishOne() { stopLoops() }
            }
        }
    }

    private func releaseResources() {
        let releasing = Countdown(servers.count)
        for box in servers {
            box.server.loop.execute { [self] in
                box.server.releaseResources {
                    if releasing.finishOne() { self.stopLoops() }
                }
            }
        }
    }

    /// A forced stop (a second signal with responses in flight): each loop cuts what it serves as
    /// the grace period's end would (an error event, a record, the charge), the loops turn once
    /// more to write and file it, then stop.
    public func cutInFlightThenStopLoops() {
        // A loop that never takes the cut (stuck: what a second signal is often sent for) does
        // not hold the stop: a second later it goes ahead (`stopLoops` runs once).
        DispatchQueue.global().asyncAfter(deadline: .now() + .seconds(1)) { self.stopLoops() }
        let cutting = Countdown(servers.count)
        for box in servers {
            box.server.loop.execute { [self] in
                box.server.cutInFlight()
                guard cutting.finishOne() else { return }
                // The cuts' writes and records go out in the loops' next turns.
                DispatchQueue.global().asyncAfter(deadline: .now() + .milliseconds(100)) { self.stopLoops() }
            }
        }
    }

    /// Stops every loop now (in-flight work is cancelled as the loops tear down). Once: a
    /// second signal's stop and the drain's own end may both ask.
    public func stopLoops() {
        guard loopsStopping.compareExchange(expected: false, desired: true, ordering: .acquiringAndReleasing).exchanged else { return }
        let hook = willStopLoops.withLock { $0 }
        hook?()
        DispatchQueue.global().async { [self] in
            for thread in threads { thread.shutdown() }
            hook?()  // again: closing a signal watcher gives its signal back its default action
            stopped.signal()
        }
    }

    public func waitUntilStopped() { stopped.wait() }

    /// Per loop: connections accepted and upstream transfers started so far, and Fusion calls open now.
    public func loopCounters() throws -> [(accepted: Int, transfers: Int, openInnerCalls: Int)] {
        try servers.map { box in
            try box.server.loop.submitAndWait { (box.server.acceptedConnections, box.server.startedTransfers, box.server.openInnerCalls) }
        }
    }

    /// Client connections open over every loop (for tests).
    public func openConnections() throws -> Int {
        try servers.map { box in try box.server.loop.submitAndWait { box.server.openConnections } }.reduce(0, +)
    }

    /// Open cross-thread wakeups over every loop (`EventLoop.openWakeupCount`; for tests).
    public func openWakeups() throws -> Int {
        try servers.map { box in try box.server.loop.submitAndWait { box.server.loop.openWakeupCount() } }.reduce(0, +)
    }

    /// Active streams per loop (a snapshot; for tests and metrics).
    public func activeStreamsPerLoop() throws -> [Int] {
        try servers.map { box in try box.server.loop.submitAndWait { box.server.activeStreams } }
    }
}

/// Counts loops still shutting down; the last one to finish is told so.
private final class Flag: Sendable {
    let value = Atomic<Bool>(false)
}

private final class Countdown: Sendable {
    private let remaining: Atomic<Int>
    init(_ count: Int) { remaining = Atomic(count) }

    /// True for the call that brings the count to zero.
    func finishOne() -> Bool {
        // Acquiring-and-releasing: the last loop sees every other loop's shutdown as complete.
        remaining.subtract(1, ordering: .acquiringAndReleasing).newValue == 0
    }
}
