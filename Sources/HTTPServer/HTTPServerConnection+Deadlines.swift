import EventLoop

/// A connection's deadlines: the first byte's and the headers' (`headerTimeoutMilliseconds`), a
/// body's pace, the idle time between requests, and a slow reader's drain of a finished answer;
/// one timer, re-armed for whichever runs, and what its firing does.
extension HTTPServerConnection {
    /// A body in progress may pause for `idleTimeoutMilliseconds` at most, and must be whole by
    /// its deadline: `bodyTimeoutMilliseconds` from the end of the headers, plus a second for
    /// every `minBodyBytesPerSecond` bytes received; and a body of known length must bring what
    /// it still owes at that pace from any moment on (`bodyTimeoutMilliseconds` plus a second a
    /// `minBodyBytesPerSecond` from now), a deadline that only comes closer: one that sent all
    /// but its last bytes fast earned an hour's credit, and trickled them for it (review 66 #2).
    /// Arithmetic on the client's byte count saturates.
    func armBodyTimer() {
        headerDeadlineArmed = false
        let now = loop.nowMilliseconds
        let start = bodyStartedAt ?? now
        bodyStartedAt = start
        let rate = UInt64(max(1, limits.minBodyBytesPerSecond))
        func plus(_ a: UInt64, _ b: UInt64) -> UInt64 { a.addingReportingOverflow(b).overflow ? .max : a + b }
        func milliseconds(for bytes: Int) -> UInt64 { min(UInt64(max(0, bytes)) / rate, UInt64.max / 1_000) * 1_000 }
        var deadline = plus(plus(start, limits.bodyTimeoutMilliseconds), milliseconds(for: decoder.bodyBytesReceived))
        if let owed = decoder.bodyBytesRemaining {
            let owing = min(plus(plus(now, limits.bodyTimeoutMilliseconds), milliseconds(for: owed)), bodyDeadline ?? .max)
            bodyDeadline = owing
            deadline = min(deadline, owing)
        } else {
            // A chunked body says nothing of what it owes: it keeps the pace window by window,
            // each `bodyTimeoutMilliseconds` earning only from what came in it (review 67 #1: a
            // fast start earned an hour to trickle in, holding the shared bound on bodies).
            var mark = paceMark ?? (start, 0)
            if now >= plus(mark.at, limits.bodyTimeoutMilliseconds) { mark = (now, decoder.bodyBytesReceived) }
            paceMark = mark
            deadline = min(deadline, plus(plus(mark.at, limits.bodyTimeoutMilliseconds), milliseconds(for: decoder.bodyBytesReceived - mark.bytes)))
        }
        timer.start(afterMilliseconds: min(limits.idleTimeoutMilliseconds, deadline > now ? deadline - now : 0))
    }

    /// Idle means nothing left to write: while a finished response is still queued for a slow
    /// reader, the connection is not idle but writing, and is closed if the reader falls below
    /// the pace `DrainPace` asks. A check already running keeps its deadline: a pipelined answer
    /// finishing behind it buys no time.
    func armIdleTimer() {
        headerDeadlineArmed = false
        reprieved = false
        if tcp.bufferedBytes > 0 {
            let check = drainCheck ?? startDrainCheck()
            let (end, overflow) = check.since.addingReportingOverflow(limits.stalledWriteTimeoutMilliseconds)
            let now = loop.nowMilliseconds
            timer.start(afterMilliseconds: overflow ? .max : (end > now ? end - now : 0))
        } else {
            drainCheck = nil
            timer.start(afterMilliseconds: limits.idleTimeoutMilliseconds)
        }
        updateDrainInterest()
    }

    /// A new period of the drain check, from now. Every path that arms the stalled-write deadline
    /// goes through this.
    @discardableResult
    func startDrainCheck() -> DrainPace {
        let check = DrainPace(since: loop.nowMilliseconds, backlog: tcp.backlog)
        drainCheck = check
        return check
    }

    func keptPace(_ check: DrainPace) -> Bool {
        check.kept(now: loop.nowMilliseconds, backlog: tcp.backlog, minBytesPerSecond: limits.minDrainBytesPerSecond)
    }

    func timerDidFire() {
        switch state {
        case .reading:
            // Still writing the last response to a client that does not keep pace.
            let stalled = tcp.bufferedBytes > 0 && !(drainCheck.map(keptPace) ?? false)
            if !decoder.isMidRequest && tcp.bufferedBytes > 0 && !stalled {
                // Still writing the last response, and the client keeps pace (a pipelined request
                // may wait for it to drain: `writesBacklogged`).
                startDrainCheck()
                armIdleTimer()
            } else if !stalled && !reprieved && tcp.hasUnreadBytes {
                // Bytes wait that no read has taken: the loop ran late (libuv runs due timers
                // before the poll that reads), and closing now would drop without a word a
                // request sent in time, or answer 408 to one whose rest came in time (nginx reads
                // before it expires timers). Once a request: the read in this turn starts its
                // deadline or moves it as the bytes earn; if they were empty lines, or nothing
                // more follows, the next firing closes it or answers 408.
                reprieved = true
                timer.start(afterMilliseconds: 1)
            } else if (decoder.isMidRequest || !inbound.isEmpty) && !stalled {
                refuse(server.render(.timeout, path: decoder.requestPath, head: currentHead))
            } else {
                // An idle keep-alive connection, or a reader that stopped or crawls, its pipelined
                // requests waiting behind what it does not read: the reader is the slow one, not
                // the request (review 60B #6: a 408 `request_timeout` was queued behind the unread).
                if tcp.bufferedBytes > 0 { server.onStalledWrite?(tcp.bufferedBytes, responseLabel) }
                close()
            }
        case .lingering:
            close()
        case .closed where tcp.isOpen:
            // Sending its last bytes (`finishAndClose`): a reader that keeps pace gets more time,
            // one that stopped or crawls is cut off.
            if tcp.bufferedBytes > 0, let check = drainCheck, keptPace(check) {
                startDrainCheck()
                timer.start(afterMilliseconds: limits.stalledWriteTimeoutMilliseconds)
            } else {
                if tcp.bufferedBytes > 0 { server.onStalledWrite?(tcp.bufferedBytes, responseLabel) }
                tcp.close()
            }
        case .responding:
            // Reading paused at the pipelining bound (`didRead`): the client may have left.
            if tcp.peerHasClosed {
                close()
            } else {
                timer.start(afterMilliseconds: Self.peerProbeMilliseconds)
            }
        case .closed:
            break
        }
    }
}
