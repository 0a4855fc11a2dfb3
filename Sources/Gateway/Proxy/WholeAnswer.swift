import EventLoop
import Foundation
import Fusion
import GatewayCore
import Providers
import Surfaces
import Synchronization

/// A whole 2xx upstream answer, read into what `CompletionProxy.deliverWhole` sends: decoded and
/// costed, then made into the client's body (not streamed) or relayed by a fresh relay into the
/// client's stream (streamed). Reading is a pure function of the body and the request, so a large
/// answer is read off its loop (`readers`): one 12 MB answer decoded and converted on the loop
/// held every other stream on it for 1.8 s in a debug build (review 125 #1).
struct WholeAnswer<Request: ProxyRequest>: @unchecked Sendable {
    // @unchecked: `relay` is made by `read` and handed whole to the proxy's loop; nothing else
    // holds it. Everything else is plain values.

    /// The answer's id as the upstream named it.
    var upstreamID: String?
    /// What the body says, costed; nil when it is not the API's answer (`notAnAnswer`: why).
    var events: [ModelEvent]?
    var notAnAnswer = ""
    /// Not streamed, without an error among the events: the client's body, redacted, or why
    /// none can be made.
    var clientBody: Result<[UInt8], APIError>?
    /// Not streamed: the output in tokens when the events say less than the client got
    /// (`ProxyRequest.wholeAnswerOutputTokens`).
    var outputTokens: Int64?
    /// Streamed, without an error among the events: the relay that relayed the answer, its
    /// stream's start (sent unless a stream is open already, with an earlier relay's), and the
    /// answer as it wrote it.
    var relay: Request.Relay?
    var startBytes: [UInt8] = []
    var streamBytes: [UInt8] = []

    /// Answers at least this large are read off the loop; smaller ones, at once on it (a thread
    /// hop costs more than reading them).
    static var offLoopBytes: Int { 256 << 10 }

    /// Readers of large whole answers: a loop's worth of threads. What they may hold is already
    /// bounded (`upstream.max_collected_bytes`, reserved until the answer has left); the backlog
    /// bounds the queue's length, and an answer it refuses is read on the loop, as before.
    static var readers: OffLoopLane { wholeAnswerReaders }

    static func read(_ body: [UInt8], request: Request, route: ModelRoute, pricing: ModelPrice?, context: ProxyContext) -> WholeAnswer {
        var answer = WholeAnswer()
        answer.upstreamID = UpstreamIdentifier.answerID(inWholeBody: body, redactor: context.redactor)
        let events: [ModelEvent]
        do {
            events = try route.provider.decodeResponse(body, redactor: context.redactor).map { $0.costed(at: pricing) }
        } catch {
            answer.notAnAnswer = error.message
            return answer
        }
        answer.events = events
        guard !events.contains(where: { if case .error = $0 { true } else { false } }) else { return answer }
        if request.stream {
            var relay = request.makeRelay(route: route, context: context)
            relay.start(into: &answer.startBytes)
            relay.relayWhole(events, body: body, into: &answer.streamBytes)
            answer.relay = relay
            return answer
        }
        answer.outputTokens = request.wholeAnswerOutputTokens(route: route, body: body)
        do {
            let whole = try request.wholeBody(route: route, body: body, events: events, context: context)
            answer.clientBody = .success(whole.withUnsafeBytes { context.redactor.redacting($0) } ?? whole)  // as a stream's bytes are
        } catch {
            answer.clientBody = .failure(error)
        }
        return answer
    }
}

/// Shared by every `WholeAnswer` specialisation (a static stored property cannot be generic).
private let wholeAnswerReaders = OffLoopLane(width: ProcessInfo.processInfo.activeProcessorCount, backlog: 1024)

/// Bytes of `upstream.max_collected_bytes` an answer read off the loop holds: given back when
/// the last holder lets go (the read done for a client that left, or its job skipped unread),
/// unless the proxy takes them back to hold until the answer has left. The proxy's own release
/// (its `deinit`, as the client left) gave them back while the queued job still held the body
/// (review 130 #2).
final class CollectedReservation: Sendable {
    private let collected: HeldBytes?
    private let bytes: Atomic<Int>

    init(_ collected: HeldBytes?, bytes: Int) {
        self.collected = collected
        self.bytes = Atomic(bytes)
    }

    /// The bytes, now the taker's to give back.
    func take() -> Int { bytes.exchange(0, ordering: .acquiringAndReleasing) }

    deinit { collected?.release(bytes.load(ordering: .acquiring)) }
}
