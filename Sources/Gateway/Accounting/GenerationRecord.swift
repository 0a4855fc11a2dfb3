import GatewayCore
import Providers

/// Which API a completion was asked for through. A fixed set: it is a metric label.
enum RecordRoute: String, Sendable, CaseIterable {
    case chatCompletions = "chat_completions"
    case responses
    case messages

    init(_ api: ClientAPI) {
        switch api {
        case .chatCompletions: self = .chatCompletions
        case .responses: self = .responses
        case .messages: self = .messages
        }
    }
}

/// Whether the gateway relayed the completion to one upstream (`proxy`), ran a Fusion session
/// (`fusion`, whether or not its outer model called for the deliberation), or refused the request
/// before either (`rejected`: invalid, unknown model…). A metric label.
enum RecordKind: String, Sendable, CaseIterable {
    case proxy
    case fusion
    case rejected
}

/// An error as a record states it (its message redacted before it is stored).
struct RecordError: Sendable, Equatable {
    var type: String
    var code: String
    var message: String
    /// The gateway's own error, or an upstream's passed on (`APIError.Origin`).
    var origin: APIError.Origin
    /// `APIError.detail`: the operator's log line only, neither stored nor looked up.
    var detail: String?

    init(type: String, code: String, message: String, origin: APIError.Origin = .gateway, detail: String? = nil) {
        self.type = type
        self.code = code
        self.message = message
        self.origin = origin
        self.detail = detail
    }

    /// The gateway itself cut the call (its timeouts, its shutdown), not the upstream's failure:
    /// an upstream that had taken the prompt bills it (review 78 #2).
    var isGatewaysCut: Bool { code == "upstream_timeout" || code == "shutting_down" }

    /// An error's message is kept to this many bytes: it may quote the client's request.
    static let maxMessageBytes = 2048

    init(_ error: APIError, redactor: Redactor) {
        self.init(type: error.type, code: error.code, message: redactor(error.message).shortened(toBytes: Self.maxMessageBytes),
                  origin: error.origin, detail: error.detail.map { redactor($0).shortened(toBytes: Self.maxMessageBytes) })
    }

    /// A client that did not keep pace for too long (took nothing, or less than the drain
    /// floor: review 60B #5 read "nothing" for a client that had taken 12 KB): dropped.
    static func clientTooSlow(afterMilliseconds limit: UInt64) -> RecordError {
        RecordError(type: "client_error", code: "client_too_slow",
                    message: "the client did not keep up with its stream for \(limit) ms (it read too little or nothing) and was dropped")
    }
}

/// How a response ended, as the client saw it: what turns a record's running figures into its
/// final `status`, `finish_reason`, `cancelled` and `error`. One rule for every route and every
/// inner call, so the same ending is never told two ways.
struct ResponseEnding: Sendable, Equatable {
    /// The HTTP status the client was sent; nil when nothing was (the client left first).
    var sentStatus: Int?
    /// What the upstream said it stopped for (nil: it said nothing).
    var upstreamFinishReason: String?
    var error: RecordError?
    /// The client went away (or was dropped) before the response was complete.
    var cancelled = false

    /// The status a record states when no response was sent: nginx's "client closed request".
    static let clientClosedRequest = 499

    var status: Int { sentStatus ?? Self.clientClosedRequest }

    /// `cancelled` or `error` when the response did not end normally; else the upstream's own
    /// reason (nil when it gave none: never an invented `stop`).
    var finishReason: String? {
        if cancelled { return "cancelled" }
        if error != nil { return "error" }
        return upstreamFinishReason
    }
}

/// One upstream call made for a Fusion completion (the outer model's turns, each panel member's
/// turns, the judge's), with its own ending.
struct CallRecord: Sendable, Equatable {
    /// `outer`, `panel`, `judge` or `outer_final`.
    var role: String
    /// When the call started, ms after the request arrived.
    var startMilliseconds: Double = 0
    /// The model slug that answered (a fallback's, if one took over).
    var model: String
    var provider: String
    /// The upstream's last HTTP status; nil when it never answered (unreachable, cancelled first).
    var httpStatus: Int?
    /// Upstream requests made: 1 + retries + fallbacks.
    var attempts = 1
    var fallbacks = 0
    var finishReason: String? { didSet { finishReason = GenerationRecord.recordable(finishReason) } }
    var cancelled = false
    var error: RecordError?
    /// nil: the upstream reported none (unknown, not zero).
    var usage: Usage?
    /// `usage` is the gateway's estimate: the call was cut (the client left, a member was cut for
    /// latency) or failed after producing output, before its upstream reported usage.
    var usageEstimated = false
    var firstTokenMilliseconds: Double?
    var durationMilliseconds: Double = 0
    /// The upstream's own time: from the request handed to the transport (built, in curl's hands)
    /// to the answer's end (its final event, or the response's end), first attempt to last.
    /// `durationMilliseconds` also holds the gateway's work on the call (building the request,
    /// handling its end). nil: no request went out, or the call was cut before it ended.
    var upstreamMilliseconds: Double?
    /// The answering attempt's ids as its upstream gave them, as a proxied request's
    /// (`GenerationRecord.upstreamID`): to find a panel member's call in its provider's logs.
    var upstreamID: String?
    var upstreamRequestID: String?
}

/// Closes a finished completion's record (its end time, its usage and per-call accounting) and
/// returns it: what a proxy or a Fusion session hands its route when the response is over, run
/// once, after the response's last bytes are written (`GatewayServer.ended`).
typealias RecordCloser = () -> GenerationRecord

/// What happened to one completion: what `GET /api/v1/generation?id=…` returns (OpenRouter's
/// shape, `{"data":{…}}`), what the metrics count and what the request's log lines say. A plain
/// value with a JSON encoding both ways (`storedJSON` / `init(stored:)`), so a shared store can
/// keep it as text. Every field is documented in the README ("Generation records").
struct GenerationRecord: Sendable, Equatable {
    var id: String
    var route: RecordRoute
    var kind: RecordKind
    /// The model that answered (a fallback's slug if one took over; Fusion: the outer model).
    var model: String
    /// The model the client asked for, never longer than a model name may be (whoever sets it:
    /// a refusal's path once stored a client's 16 MiB; review 46 #1).
    var requestedModel: String {
        didSet { if requestedModel.utf8.count > ModelRouter.maxModelNameBytes { requestedModel = requestedModel.shortened(toBytes: ModelRouter.maxModelNameBytes) } }
    }
    /// The configured provider of `model`.
    var provider: String?
    /// `openrouter/fusion` for a Fusion request (what OpenRouter's records say), nil on the proxy.
    var router: String?
    /// How Fusion was asked for: the alias named (`fusion`, `openrouter/fusion`), `fusion_tool`
    /// or `fusion_plugin`.
    var entryPoint: String?
    /// The upstream's ids for a proxied call (`UpstreamIdentifier`): its response's
    /// `x-request-id` / `request-id`, and the answer's `id` (an OpenAI-format answer's).
    var upstreamID: String?
    var upstreamRequestID: String?
    /// Unix seconds: the `created` of the completion's body and every chunk.
    var created: Int
    var streamed: Bool
    var status = 0
    /// An upstream's word, recorded only as an identifier (`recordable`).
    var finishReason: String? { didSet { finishReason = Self.recordable(finishReason) } }
    var cancelled = false
    var error: RecordError?
    var usage = Usage()
    /// The usage is the gateway's estimate (the upstream reported none).
    var usageEstimated = false
    /// An answer came but some upstream reported no usage (and nothing was estimated): the token
    /// counts are a lower bound, not a measurement.
    var usageUnknown = false
    /// From the request's arrival to its first token sent (ms).
    var firstTokenMilliseconds: Double?
    var durationMilliseconds: Double = 0
    /// The first upstream's time to its first event (ms), proxy only.
    var upstreamFirstTokenMilliseconds: Double?
    /// The gateway's own time: the duration less the time waiting on upstreams and web tools
    /// (see `OverheadMeter`); nil when cancelled.
    var overheadMilliseconds: Double?
    /// Upstream requests made for the completion itself (proxy: 1 + retries + fallbacks).
    var upstreamAttempts = 0
    var retries = 0
    var fallbacks = 0
    /// Web search results returned to the panel and the judge, and web tool calls run.
    var numSearchResults = 0
    var webToolCalls = 0
    /// Fusion: the per-participant summary the client got in `usage.fusion.calls`, as sent.
    var fusionCalls: [JSONValue] = []
    /// Fusion: each deliberation phase's duration and overhead.
    var phases: [PhaseTiming] = []
    /// Fusion: the deliberation's estimated cost range and, per call, its estimate and actual at
    /// the config's prices (`CostEstimate.report`); nil without prices.
    var fusionCost: JSONValue?
    /// Fusion: every upstream call, with its role and ending.
    var innerCalls: [CallRecord] = []
    /// What the request counts against its key's budgets, in millionths of a dollar (`Spend`:
    /// from `prices:` where its models have one, else the upstream's reported cost; an estimated
    /// usage included): a cancelled stream's `total_cost` may be 0 while this is not.
    var spendMicros: Int64 = 0
    /// The fingerprint of the gateway key that made the request (`KeyFingerprint`); nil when the
    /// gateway has no keys. Stored, never shown.
    var owner: String?

    struct PhaseTiming: Sendable, Equatable {
        var phase: OverheadMeter.Phase
        var durationMilliseconds: Double
        var overheadMilliseconds: Double
    }

    init(id: String, route: RecordRoute, kind: RecordKind, requestedModel: String, streamed: Bool, created: Int, owner: String?) {
        self.id = id
        self.route = route
        self.kind = kind
        // The client's name before any check: kept short, as every record is held and logged.
        let requestedModel = requestedModel.shortened(toBytes: ModelRouter.maxModelNameBytes)
        self.model = requestedModel
        self.requestedModel = requestedModel
        self.streamed = streamed
        self.created = created
        self.owner = owner
    }

    /// A finish reason as records and logs keep it: an identifier of at most 64 bytes, or
    /// `other`. An OpenAI-compatible upstream's own word is any string (the client's stream
    /// carries it as sent); held, logged and stored, a megabyte of it would be too (review 46
    /// #2). A key fits an identifier's characters: one holding a secret of any gateway in the
    /// process (`LogRedaction`) is `other` too, as an upstream id holding one is dropped; the
    /// record is served and stored as it is (review 83A #1: the log line redacted it, the
    /// record kept it).
    static func recordable(_ reason: String?, secrets: LogRedaction = .shared) -> String? {
        guard let reason else { return nil }
        let isLabel = (1...64).contains(reason.utf8.count) && reason.utf8.allSatisfy {
            $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: "-") || $0 == UInt8(ascii: ".") || (0x30...0x39).contains($0) || (0x61...0x7A).contains($0)
                || (0x41...0x5A).contains($0)
        }
        return isLabel && secrets.redactor(reason) == reason ? reason : "other"
    }

    /// What the route learned from the request once it was valid.
    mutating func note(requestedModel: String, streamed: Bool, kind: RecordKind) {
        let requestedModel = requestedModel.shortened(toBytes: ModelRouter.maxModelNameBytes)
        self.requestedModel = requestedModel
        model = requestedModel
        self.streamed = streamed
        self.kind = kind
    }

    /// Files how the response ended (the one rule every path uses: `ResponseEnding`).
    mutating func close(_ ending: ResponseEnding, durationMilliseconds: Double) {
        status = ending.status
        finishReason = ending.finishReason
        cancelled = ending.cancelled
        error = ending.error
        self.durationMilliseconds = durationMilliseconds
        if cancelled { overheadMilliseconds = nil }
    }
}

extension GenerationRecord {
    /// The models' names as the client gave them, redacted: a key pasted into a model (or a
    /// panel member) is a name the record, the log and the metrics keep (review 112 #1).
    /// Fusion's calls and cost name the panel's, the judge's and the outer model (review 113 #2).
    mutating func redactNames(_ redactor: Redactor) {
        model = redactor(model)
        requestedModel = redactor(requestedModel)
        for index in innerCalls.indices { innerCalls[index].model = redactor(innerCalls[index].model) }
        fusionCalls = fusionCalls.map { Self.redactingStrings($0, redactor) }
        fusionCost = fusionCost.map { Self.redactingStrings($0, redactor) }
    }

    private static func redactingStrings(_ value: JSONValue, _ redactor: Redactor) -> JSONValue {
        switch value {
        case .string(let text): .string(redactor(text))
        case .array(let elements): .array(elements.map { redactingStrings($0, redactor) })
        case .object(let members): .object(members.mapValues { redactingStrings($0, redactor) })
        default: value
        }
    }
}
