import EventLoop

/// What the mock saw, readable from any thread (tests assert on it while servers run elsewhere).
public final class MockUpstreamStats: Sendable {
    public struct Counts: Equatable, Sendable {
        /// TCP connections accepted (fewer than requests when clients reuse connections).
        public var connections = 0
        public var requests = 0
        public var streamsStarted = 0
        /// Responses the mock ended itself (normally, or by a scripted failure).
        public var streamsFinished = 0
        /// Responses the client (the gateway) closed before the mock ended them.
        public var streamsCancelled = 0
        /// Times a stream waited for its client to read what was queued (backpressure).
        public var waitsForClient = 0
        /// Simulated-web `slow` pages requested, and those whose fetcher hung up before the page came.
        public var slowPagesStarted = 0
        public var slowPagesCancelled = 0

        public var active: Int { streamsStarted - streamsFinished - streamsCancelled }
    }

    private let state = Lock<(counts: Counts, body: [UInt8], headers: [(String, String)], models: [String])>((Counts(), [], [], []))

    /// The models of the most recent requests (at most 256), oldest first: the order calls reached the mock.
    public var requestedModels: [String] { state.withLock { $0.models } }

    func noteModel(_ model: String) {
        state.withLock {
            if $0.models.count >= 256 { $0.models.removeFirst() }
            $0.models.append(model)
        }
    }

    public init() {}

    public var counts: Counts { state.withLock { $0.counts } }

    /// The body of the most recent chat request.
    public var lastRequestBody: [UInt8] { state.withLock { $0.body } }

    /// A header of the most recent chat request.
    public func lastRequestHeader(_ name: String) -> String? {
        state.withLock { $0.headers.first { $0.0.lowercased() == name.lowercased() }?.1 }
    }

    func record(body: [UInt8], headers: [(String, String)]) {
        state.withLock {
            $0.counts.requests += 1
            $0.body = body
            $0.headers = headers
        }
    }

    func update(_ change: (inout Counts) -> Void) {
        state.withLock { change(&$0.counts) }
    }
}
