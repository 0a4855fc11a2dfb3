import Bench
import EventLoop
import Foundation
import GatewayCore
import Synchronization
import UpstreamClient

/// One loop's share of a run: its `UpstreamClient`, its closed-loop workers or open-loop
/// arrivals, and the results of the requests it sent. Loop-confined after creation (hence
/// `@unchecked Sendable`: the runner only reaches it through `submitAndWait`/`execute`).
final class LoopDriver: @unchecked Sendable {
    let loop: EventLoop
    let client: UpstreamClient
    let configuration: BenchConfiguration
    let counters: [TargetCounters]
    let stopRequested: @Sendable () -> Bool
    /// Called when this loop finds every request of the run claimed in open loop: every loop
    /// then stops waiting for arrivals (`stopArrivals`).
    let allClaimed: @Sendable () -> Void
    /// Request bodies per target and prompt, serialized once.
    let bodies: [[[UInt8]]]
    let headers: [[(String, String)]]

    private(set) var results: [TargetResults] = []
    private(set) var lastFinishedAt: UInt64 = 0
    private var measuring = false
    private var startedAt: UInt64 = 0
    private var deadline: UInt64?
    private var requestLimit: Int?
    private var inFlight = 0
    private var onFinished: (() -> Void)?
    /// How to abandon each request in flight, by serial number.
    private var abandoners: [Int: () -> Void] = [:]
    private var nextSerial = 0
    /// Abandons what is still in flight once the run stopped issuing and the drain time passed.
    private var drainTimer: LoopTimer?
    private var drainDeadline: UInt64?
    /// Takes the secrets out of a server's error text before it reaches a report: a key it
    /// echoes, in any form the gateway redacts (cut short, hex, base64, percent-encoded, …).
    private let redactor: Redactor

    // Closed loop
    private var activeWorkers = 0
    /// A worker whose request failed waits before its next (`backoff`): a closed loop against an
    /// endpoint that refuses at once would otherwise send thousands of requests a second.
    private var backoffTimers: [Int: LoopTimer] = [:]
    /// Workers waiting out a failure now.
    private var waitingWorkers: Set<Int> = []
    private var failuresInARow: [Int: Int] = [:]
    // Open loop
    private var clock: ArrivalClock?
    private var random = SystemRandomNumberGenerator()
    private var arrivalTimer: LoopTimer?
    private var nextDue: UInt64 = 0
    private var nextTarget = 0
    /// How far this loop's rotation moves per arrival: the number of loops sending arrivals, so
    /// that arrival k of the whole run, whichever loop sends it, goes to target k mod targets
    /// (review 105 #2: each loop stepping by one sent A, A, B, B with two loops).
    private var targetStep = 1
    private var arrivalsDone = true
    private var maxInFlight: Int?
    /// Arrivals waiting for a free slot, oldest first; `queueHead` is the next to send.
    private var queue: [(target: Int, index: Int, due: UInt64)] = []
    private var queueHead = 0

    init(loop: EventLoop, configuration: BenchConfiguration, counters: [TargetCounters], stopRequested: @escaping @Sendable () -> Bool,
         allClaimed: @escaping @Sendable () -> Void = {}) {
        self.loop = loop
        client = UpstreamClient(loop: loop)
        self.configuration = configuration
        self.counters = counters
        self.stopRequested = stopRequested
        self.allClaimed = allClaimed
        redactor = Redactor(secrets: configuration.targets.flatMap(\.secrets))
        bodies = configuration.targets.map { target in
            configuration.prompts.prompts.map {
                PromptSet.requestBody(model: target.info.model, prompt: $0, streamed: configuration.streamed,
                                      defaultMaxTokens: configuration.maxTokens)
            }
        }
        headers = configuration.targets.map { target in
            var headers = [("Content-Type", "application/json")]
            if configuration.streamed { headers.append(("Accept", "text/event-stream")) }
            if let key = target.apiKey { headers.append(("Authorization", "Bearer \(key)")) }
            return headers
        }
    }

    func close() {
        arrivalTimer?.close()
        arrivalTimer = nil
        drainTimer?.close()
        drainTimer = nil
        for timer in backoffTimers.values { timer.close() }
        backoffTimers.removeAll()
        client.close()
    }

    /// The run stopped issuing (Ctrl-C): what is in flight has the drain time, then is abandoned.
    func drain() {
        abandon(at: EventLoop.monotonicNanoseconds() + UInt64(configuration.drainMilliseconds) * 1_000_000)
        // Open loop: no arrival is waited for any more (the next may be minutes away).
        if !arrivalsDone {
            arrivalsDone = true
            arrivalTimer?.stop()
        }
        drainQueue()
        for worker in waitingWorkers { backoffTimers[worker]?.stop() }  // a worker waiting out a failure stops now
        activeWorkers -= waitingWorkers.count
        waitingWorkers.removeAll()
        finishIfDone()
    }

    /// Open loop with `--requests`: every target's requests are claimed (on this loop or
    /// another), so no arrival is left to wait for; the run ends with its last answer, not when
    /// the next arrival would have come (review 103 #1: `--rate 0.1 --requests 1` idled 10 s after
    /// its one request, and a Ctrl-C then marked the finished run interrupted). Checked anew:
    /// a call queued behind a phase's end finds the next phase's counters reset.
    func stopArrivals() {
        guard !arrivalsDone, everyRequestClaimed else { return }
        arrivalsDone = true
        arrivalTimer?.stop()
        finishIfDone()
    }

    private var everyRequestClaimed: Bool {
        requestLimit != nil && !counters.indices.contains(where: hasRequestsLeft)
    }

    /// Whether `target` has requests not yet claimed by any loop (always, without `--requests`).
    private func hasRequestsLeft(_ target: Int) -> Bool {
        guard let requestLimit else { return true }
        return counters[target].claimed.load(ordering: .relaxed) < requestLimit
    }

    /// Abandons every request in flight now: each ends `interrupted`.
    func abandonInFlight() {
        let pending = abandoners
        abandoners.removeAll()
        for (_, abandon) in pending.sorted(by: { $0.key < $1.key }) { abandon() }
        if !waitingWorkers.isEmpty { drain() }
    }

    /// Abandons what is still in flight at `time` (the earliest such time asked for wins).
    private func abandon(at time: UInt64) {
        if let drainDeadline, drainDeadline <= time { return }
        drainDeadline = time
        if drainTimer == nil { drainTimer = LoopTimer(loop: loop) { [unowned self] in abandonInFlight() } }
        let now = EventLoop.monotonicNanoseconds()
        drainTimer?.start(afterMilliseconds: time > now ? (time - now + 999_999) / 1_000_000 : 0)
    }

    /// Starts this loop's part of `plan`; `done` runs (on the loop) when its last request ended.
    func start(plan: LoadPlan, loopIndex: Int, measuring: Bool, startedAt: UInt64, done: @escaping () -> Void) {
        self.measuring = measuring
        self.startedAt = startedAt
        onFinished = done
        results = configuration.targets.map { _ in TargetResults() }
        lastFinishedAt = startedAt
        failuresInARow.removeAll()
        requestLimit = plan.stop.requestsPerTarget
        deadline = plan.stop.durationSeconds.map { startedAt + UInt64($0 * 1e9) }
        drainDeadline = nil
        drainTimer?.stop()
        if let deadline { abandon(at: deadline + UInt64(configuration.drainMilliseconds) * 1_000_000) }
        switch plan.shape {
        case .closedLoop:
            let workers = plan.closedLoopWorkers()[loopIndex]
            activeWorkers = workers.count
            for (worker, cycle) in workers.enumerated() { runWorker(worker, cycle, position: 0) }
        case .openLoop(_, let arrivals, _):
            let share = plan.openLoopShares()[loopIndex]
            maxInFlight = share.maxInFlight
            arrivalsDone = share.rate <= 0
            if !arrivalsDone {
                var clock = ArrivalClock(rate: share.rate, process: arrivals, phaseSeconds: share.phaseSeconds)
                // Poisson arrivals split over loops are one process of the whole rate: one
                // arrival at the start, not one per loop (review 104 #3: four loops sent their
                // first requests together, and three requests read as 107 requests a second).
                if arrivals == .poisson && loopIndex > 0 { _ = clock.nextArrival(using: &random) }
                nextDue = startedAt + UInt64(clock.nextArrival(using: &random) * 1e9)
                self.clock = clock
                // Loops begin their rotation on different targets, so with `--compare` each
                // target's arrivals spread over time rather than come in pairs of loops.
                nextTarget = loopIndex % configuration.targets.count
                targetStep = plan.openLoopShares().count { $0.rate > 0 } % configuration.targets.count
                if arrivalTimer == nil { arrivalTimer = LoopTimer(loop: loop) { [unowned self] in arrive() } }
                arrive()
            }
        }
        finishIfDone()
    }

    /// The number of the next request for `target`, or nil when the run stops issuing: the
    /// limit is reached, the deadline passed (`due` for open-loop arrivals), or Ctrl-C.
    private func claim(_ target: Int, due: UInt64) -> Int? {
        if stopRequested() { return nil }
        if let deadline, due >= deadline { return nil }
        let index = counters[target].claimed.wrappingAdd(1, ordering: .relaxed).oldValue
        if let requestLimit, index >= requestLimit { return nil }
        return index
    }

    // MARK: Closed loop

    /// The worker's next request, to the target at `position` in its cycle. With `--compare` at
    /// concurrency 1 the one worker alternates strictly, so both targets get their requests in
    /// step and share the run's time; a failure makes the worker wait before its next request,
    /// to either target. (Review 103 #3 had the failing target back off alone; then the healthy
    /// one finished early and its rate over the shared run collapsed, review 105 #1: strict
    /// alternation is kept, and its cost, a healthy target's requests spaced by the other's
    /// backoff, is said in the README.)
    private func runWorker(_ worker: Int, _ cycle: [Int], position: Int) {
        let target = cycle[position % cycle.count]
        let now = EventLoop.monotonicNanoseconds()
        guard let index = claim(target, due: now) else {
            activeWorkers -= 1
            return
        }
        send(target: target, index: index, scheduledAt: now) { [unowned self] outcome in
            guard !outcome.succeeded, outcome.error != .interrupted else {
                failuresInARow[worker] = nil
                return runWorker(worker, cycle, position: position + 1)
            }
            let failures = (failuresInARow[worker] ?? 0) + 1
            failuresInARow[worker] = failures
            waitingWorkers.insert(worker)
            let timer = LoopTimer(loop: loop) { [unowned self] in
                guard waitingWorkers.remove(worker) != nil else { return }
                // A wait the run's end cut short: the run lasted until then, though no request did.
                if let deadline, EventLoop.monotonicNanoseconds() >= deadline { lastFinishedAt = max(lastFinishedAt, deadline) }
                runWorker(worker, cycle, position: position + 1)
                finishIfDone()  // the worker may have found the run over
            }
            backoffTimers[worker]?.close()
            backoffTimers[worker] = timer
            // Never past the run's end: it stops when `--duration` says, not when the wait would.
            var wait = Self.backoffMilliseconds(failuresInARow: failures)
            if let deadline {
                let now = EventLoop.monotonicNanoseconds()
                wait = min(wait, deadline > now ? (deadline - now + 999_999) / 1_000_000 : 0)
            }
            timer.start(afterMilliseconds: wait)
        }
    }

    /// 25 ms after one failure, doubling to at most 1 s.
    static func backoffMilliseconds(failuresInARow: Int) -> UInt64 {
        min(1_000, 25 << UInt64(min(max(failuresInARow - 1, 0), 6)))
    }

    // MARK: Open loop

    /// Queues every arrival now due, sends what the cap allows, and sets the timer for the next.
    private func arrive() {
        let now = EventLoop.monotonicNanoseconds()
        while !arrivalsDone && nextDue <= now {
            // The next target in the rotation with requests left: one whose requests are all
            // claimed gives its turn to the other (review 104 #2: a loop stopped its arrivals
            // at A's last, and B's last came loops ÷ rate seconds late from another loop).
            let count = configuration.targets.count
            guard let target = (0..<count).map({ (nextTarget + $0) % count }).first(where: hasRequestsLeft),
                  !stopRequested(), deadline.map({ nextDue >= $0 }) != true else {
                arrivalsDone = true
                break
            }
            nextTarget = (target + targetStep) % count
            if let index = claim(target, due: nextDue) {
                queue.append((target, index, nextDue))
                nextDue = startedAt + UInt64(clock!.nextArrival(using: &random) * 1e9)
            }  // else another loop took its last request: the turn goes on to the next target
        }
        if everyRequestClaimed {
            // None left for any loop: the others stop waiting for their next arrivals too.
            arrivalsDone = true
            allClaimed()
        }
        if !arrivalsDone, let deadline, nextDue >= deadline {
            // The next arrival falls past the window: none is left to wait for (at a low rate
            // the timer would have held the run minutes past its end, review 48 bench #2).
            arrivalsDone = true
        }
        if arrivalsDone, let deadline, nextDue >= deadline {
            // A duration run's window is what was offered, even if its last answer came earlier
            // (review 48 bench #6: rates were divided by a shorter time).
            lastFinishedAt = max(lastFinishedAt, deadline)
        }
        drainQueue()
        if !arrivalsDone {
            // libuv timers tick in whole milliseconds: round up, never fire early and spin. A late
            // arrival is sent late, and the lateness shows in the queue wait.
            arrivalTimer?.start(afterMilliseconds: (nextDue - now + 999_999) / 1_000_000)
        }
        finishIfDone()  // the last arrival may find every request already answered
    }

    private func drainQueue() {
        // Once the run stops issuing (its duration is over, or Ctrl-C), arrivals still waiting for
        // a slot are not sent: `--duration` bounds when requests go out, not only when they arrive.
        if queueHead < queue.count, stopRequested() || deadline.map({ EventLoop.monotonicNanoseconds() >= $0 }) == true {
            for arrival in queue[queueHead...] where measuring { results[arrival.target].addNotSent(1) }
            queueHead = queue.count
            arrivalsDone = true
        }
        while queueHead < queue.count && inFlight < (maxInFlight ?? .max) {
            let arrival = queue[queueHead]
            queueHead += 1
            send(target: arrival.target, index: arrival.index, scheduledAt: arrival.due) { [unowned self] _ in
                drainQueue()
            }
        }
        if queueHead > 1024 && queueHead * 2 > queue.count {
            queue.removeFirst(queueHead)
            queueHead = 0
        }
    }

    // MARK: Requests

    private func send(target: Int, index: Int, scheduledAt: UInt64, then next: @escaping (RequestOutcome) -> Void) {
        var request = UpstreamRequest(url: configuration.targets[target].requestURL, headers: headers[target],
                                      body: bodies[target][index % bodies[target].count],
                                      connectTimeoutMilliseconds: configuration.connectTimeoutMilliseconds)
        request.totalTimeoutMilliseconds = configuration.requestTimeoutMilliseconds
        let transfer = client.start(request)
        var recorder = ResponseRecorder(target: target, streamed: configuration.streamed, scheduledAt: scheduledAt,
                                        sentAt: EventLoop.monotonicNanoseconds())
        inFlight += 1
        counters[target].inFlight.add(1, ordering: .relaxed)
        var finished = false
        let serial = nextSerial
        nextSerial += 1
        // Every outcome, however it ended, has its server text redacted here (review 48 bench
        // #1: an abandoned request's detail skipped it, and a key a server echoed reached the
        // reports).
        let settle = { [unowned self] (outcome: RequestOutcome) in
            let outcome = redacted(outcome)
            record(outcome)
            next(outcome)
            finishIfDone()
        }
        let complete = { [unowned self] (failure: TransportFailure?) in
            guard !finished else { return }
            finished = true
            abandoners[serial] = nil
            settle(recorder.finish(failure, at: EventLoop.monotonicNanoseconds()))
        }
        abandoners[serial] = { [unowned transfer] in
            guard !finished else { return }
            finished = true
            transfer.cancel()
            settle(recorder.abandon(at: EventLoop.monotonicNanoseconds()))
        }
        transfer.onHead = { [unowned transfer] status, headers in
            recorder.didReceiveHead(status: status, contentType: headers.first { $0.0.lowercased() == "content-type" }?.1)
            if recorder.hasFailed {
                // Decided by the head (a streamed request answered with something else): read
                // no more, rather than hold the request until the server closes or the drain ends.
                transfer.cancel()
                complete(nil)
            }
        }
        transfer.onData = { [unowned transfer] bytes in
            guard recorder.didReceive(bytes, at: EventLoop.monotonicNanoseconds()) else {
                if recorder.hasFailed {
                    transfer.cancel()  // a failure already: read no more (no callback fires after cancel)
                } else {
                    // [DONE]: the request is over, but curl reads the body's end so the connection
                    // is reused, as the SDKs keep it (review 49 #1: cancelled, every request paid a
                    // new connection); a server holding the stream open is cut after 2 s.
                    transfer.detach(cancelAfterMilliseconds: 2_000)
                }
                complete(nil)
                return true
            }
            return true
        }
        transfer.onComplete = { failure in complete(failure.map(Self.transportFailure)) }
    }

    static func transportFailure(_ failure: UpstreamFailure) -> TransportFailure {
        let detail = failure.message  // the whole text: the benchmark's user is the operator
        switch failure {
        case .couldNotResolve, .couldNotConnect, .refused, .outOfDescriptors:
            return .connect(detail)
        case .timedOut:
            // curl reports a connect timeout with the same code as the request's time limit;
            // its message tells them apart ("Connection timed out after …").
            return detail.hasPrefix("Connection timed out") ? .connect(detail) : .timeout(detail)
        case .malformedResponse:
            return .malformed(detail)
        case .transfer:
            // What curl refuses of the response itself (not HTTP, headers over its limit) is the
            // server's malformed answer, not a connection that broke.
            let malformed = ["Received HTTP/0.9", "Too large response headers", "Unsupported HTTP version", "Weird server reply"]
            if malformed.contains(where: { detail.hasPrefix($0) }) { return .malformed(detail) }
            // libcurl 7.88 (Debian 12's) refuses a header line over 100 KB as out of memory,
            // with no message of its own (review 64A #3).
            if detail == "Out of memory" { return .malformed("curl refused the response: out of memory (a header line over 100 KB?)") }
            return .broken(detail)
        }
    }

    /// `outcome` with the run's secrets taken out of its error text.
    private func redacted(_ outcome: RequestOutcome) -> RequestOutcome {
        guard let detail = outcome.errorDetail else { return outcome }
        var outcome = outcome
        outcome.errorDetail = ResponseRecorder.shortDetail(redactor(detail))
        return outcome
    }

    private func record(_ outcome: RequestOutcome) {
        let now = EventLoop.monotonicNanoseconds()
        lastFinishedAt = max(lastFinishedAt, now)
        inFlight -= 1
        let counter = counters[outcome.target]
        counter.inFlight.subtract(1, ordering: .relaxed)
        if outcome.succeeded {
            counter.succeeded.add(1, ordering: .relaxed)
            counter.outputTokens.add(outcome.outputTokens, ordering: .relaxed)
        } else {
            counter.failed.add(1, ordering: .relaxed)
        }
        if measuring { results[outcome.target].add(outcome, runStartedAt: startedAt) }
    }

    private func finishIfDone() {
        let idle = inFlight == 0 && activeWorkers == 0 && arrivalsDone && queueHead == queue.count
        guard idle, let done = onFinished else { return }
        onFinished = nil
        arrivalTimer?.stop()
        drainTimer?.stop()
        drainDeadline = nil
        queue.removeAll()
        queueHead = 0
        done()
    }
}
