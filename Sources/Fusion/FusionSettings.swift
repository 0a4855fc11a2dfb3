import GatewayCore

/// Fusion's configuration: which model `model: "fusion"` resolves to, the panels, the judge and
/// the timeouts. Loaded from the config file's `fusion:` section (see Fixtures/config/example.yaml).
public struct FusionSettings: Sendable, Equatable {
    public struct Preset: Sendable, Equatable {
        public var analysisModels: [String]
        /// The judge; nil means the outer model.
        public var judge: String?

        public init(analysisModels: [String], judge: String? = nil) {
            self.analysisModels = analysisModels
            self.judge = judge
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
    /// The output limit of a panel or judge call whose request sets none (`max_completion_tokens`
    /// in the fusion parameters): a rambling model must not hold a deliberation for minutes.
    public var defaultMaxTokens: Int64? = 4096

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
}
