import GatewayCore

/// Fusion's configuration: which model `model: "fusion"` resolves to, the panels, the judge and
/// the timeouts. Loaded from the config file's `fusion:` section (see Fixtures/config/example.yaml).
public struct FusionSettings: Sendable, Equatable {
    public struct Preset: Sendable, Equatable {
        public var analysisModels: [String]
        /// The judge; nil means the outer model.
        public var judge: String?
        /// Quorum defaults for this panel (the request's `min_answers` / `grace_ms` override them).
        public var minAnswers: Int?
        public var graceMilliseconds: UInt64?

        public init(analysisModels: [String], judge: String? = nil, minAnswers: Int? = nil, graceMilliseconds: UInt64? = nil) {
            self.analysisModels = analysisModels
            self.judge = judge
            self.minAnswers = minAnswers
            self.graceMilliseconds = graceMilliseconds
        }
    }

    /// What panel members are given.
    public enum PanelContext: String, Sendable {
        /// The whole conversation (tool traffic rendered as text).
        case conversation
        /// Only the question (the last user message, or the outer model's `question` argument).
        case lastMessage = "last_message"
    }

    /// The concrete model behind the `fusion` alias.
    public var outerModel: String
    public var presets: [String: Preset]
    public var defaultPreset: String
    /// Tried when the judge fails upstream or keeps returning invalid analysis.
    public var judgeFallbackModel: String?
    public var memberTimeoutMilliseconds: UInt64 = 120_000
    public var judgeTimeoutMilliseconds: UInt64 = 180_000
    public var panelContext = PanelContext.conversation
    /// Inner calls (outer turns, panel and judge turns) one request may make.
    public var maxInnerCalls = 200
    /// Web tool calls one request may make, over the whole panel and the judge.
    public var maxWebToolCalls = 64
    /// Bytes all of one deliberation's upstream responses may bring in together.
    public var maxUpstreamBytes = 256 << 20
    /// Bytes one deliberation's conversation may amount to over the calls that carry it (each
    /// panel member, the judge, the outer model's turns): a 15 MB conversation sent ten times
    /// took 300 MB and a second of a loop (review 21 F7). Checked before any call starts.
    public var maxFanOutBytes = 64 << 20
    /// Bytes every deliberation in flight may hold together, across loops: each one's
    /// conversation times its calls, from its start, and its upstream responses as they arrive.
    /// A deliberation that would not fit is a 503 `server_busy` to retry; a member whose bytes
    /// would not fit fails (review 74B #1: 45 deliberations at once held 3.3 GB).
    public var maxBytesInFlight = 1 << 30
    /// Of those, what the deliberations of one gateway key may hold (nil: a quarter of
    /// `maxBytesInFlight`): one key cannot take every other key's room (review 75A #2).
    public var maxBytesInFlightPerKey: Int?
    /// The output limit of a panel or judge call whose request sets none (`max_completion_tokens`
    /// in the fusion parameters): a rambling model must not hold a deliberation for minutes.
    public var defaultMaxTokens: Int64? = 4096
    /// How long stragglers may still finish once `min_answers` usable answers are in, when
    /// neither the request nor its preset says.
    public var graceMilliseconds: UInt64 = 0
    /// The whole deliberation's budget (panel and judge): members still running when it passes
    /// are cut for latency, a judge still writing is stopped. nil: none beyond the per-call timeouts.
    public var deadlineMilliseconds: UInt64?
    /// The judge reads the answers as "Response A", "Response B", … rather than by model name.
    public var neutralLabels = true
    /// …in an order shuffled per request.
    public var shuffleLabels = true
    /// A panel member runs on its session's loop unless that loop has more than this many open
    /// model calls beyond the least busy loop (then it runs there); 0 spreads every panel.
    public var panelSpillMargin = 8
    /// Prices for the cost estimate, by model (`provider/*` matches a provider's every model).
    public var prices: PriceBook = [:]

    public init(outerModel: String, presets: [String: Preset], defaultPreset: String, judgeFallbackModel: String? = nil) {
        self.outerModel = outerModel
        self.presets = presets
        self.defaultPreset = defaultPreset
        self.judgeFallbackModel = judgeFallbackModel
    }

    /// The embedded default: simulated outer model, panel and judge (no keys needed).
    public static let simulated = FusionSettings(
        outerModel: "sim/outer",
        presets: [
            "quality": Preset(analysisModels: ["sim/expert-1", "sim/expert-2", "sim/expert-3"]),
            "budget": Preset(analysisModels: ["sim/expert-1", "sim/expert-2"]),
            // A member that searches and reads the simulated web (when web tools are on).
            "research": Preset(analysisModels: ["sim/researcher", "sim/expert-1", "sim/expert-2"]),
            // Each member behind another vendor's API (OpenAI's, Anthropic's, Gemini's), judged behind Anthropic's.
            "mixed": Preset(analysisModels: ["sim/expert-1", "sim-anthropic/expert-2", "sim-gemini/expert-3"], judge: "sim-anthropic/outer"),
        ],
        defaultPreset: "quality")
        // The simulator's made-up 2 µ$ per token; its Anthropic and Gemini APIs report no cost, as
        // the vendors' do not, so their usage is costed at the same price here.
        .with(prices: ["sim/*": ModelPrice(inputPerMillion: 2, outputPerMillion: 2),
                       "sim-anthropic/*": ModelPrice(inputPerMillion: 2, outputPerMillion: 2),
                       "sim-gemini/*": ModelPrice(inputPerMillion: 2, outputPerMillion: 2)])

    func with(prices: PriceBook) -> FusionSettings {
        var settings = self
        settings.prices = prices
        return settings
    }
}
