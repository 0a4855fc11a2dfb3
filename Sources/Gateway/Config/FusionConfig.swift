import Fusion
import Yams

/// The config file's `fusion:` section (documented key by key in Fixtures/config/example.yaml).
extension GatewayConfig {
    /// `base`: what keys left out keep (the simulated setup, with simulated models on); without
    /// one, `outer_model` and `presets` are required.
    static func parseFusion(_ node: ConfigNode, base: FusionSettings? = nil) throws -> FusionSettings {
        try node.allowOnly(["outer_model", "default_preset", "presets", "judge_fallback_model", "member_timeout_ms",
                            "judge_timeout_ms", "panel_context", "grace_ms", "deadline_ms", "neutral_labels", "shuffle_labels",
                            "prices", "max_inner_calls", "max_web_tool_calls", "max_upstream_bytes", "max_fanout_bytes", "max_bytes_in_flight", "max_bytes_in_flight_per_key",
                            "max_completion_tokens",
                            "panel_spill_margin"])
        guard let outer = try node.string("outer_model") ?? base?.outerModel else {
            throw ConfigError("\(node.path).outer_model is required (with simulated_models: true it defaults to the simulated setup's)")
        }
        var presets: [String: FusionSettings.Preset] = [:]
        let presetNodes = try node.child("presets")
        guard presetNodes != nil || base != nil else {
            throw ConfigError("\(node.path).presets is required (at least one named panel; with simulated_models: true the simulated presets are the default)")
        }
        for (name, preset) in try presetNodes?.members() ?? [] {
            try preset.allowOnly(["analysis_models", "model", "min_answers", "grace_ms"])
            guard let models = try preset.stringList("analysis_models"), (1...8).contains(models.count) else {
                throw ConfigError("\(preset.path).analysis_models must list 1 to 8 models")
            }
            if let index = models.indices.first(where: { models[..<$0].contains(models[$0]) }) {
                throw ConfigError("\(preset.path).analysis_models[\(index)] repeats a model: the analysis names members by model, so each is on the panel once")
            }
            presets[name] = FusionSettings.Preset(analysisModels: models, judge: try preset.string("model"),
                                                  minAnswers: try preset.int("min_answers", in: 1...models.count),
                                                  graceMilliseconds: try graceMilliseconds(preset))
        }
        if presetNodes == nil, let base { presets = base.presets }
        let defaultPreset = try node.string("default_preset") ?? (presets["quality"] != nil ? "quality" : presets.keys.sorted().first ?? "")
        guard !presets.isEmpty else { throw ConfigError("\(node.path).presets is empty: give at least one preset") }
        guard presets[defaultPreset] != nil else {
            throw ConfigError("\(node.path).default_preset '\(defaultPreset)' is not one of the presets")
        }
        var settings = FusionSettings(outerModel: outer, presets: presets, defaultPreset: defaultPreset,
                                      judgeFallbackModel: try node.string("judge_fallback_model") ?? base?.judgeFallbackModel)
        settings.prices = base?.prices ?? [:]
        settings.memberTimeoutMilliseconds = try node.milliseconds("member_timeout_ms") ?? settings.memberTimeoutMilliseconds
        settings.judgeTimeoutMilliseconds = try node.milliseconds("judge_timeout_ms") ?? settings.judgeTimeoutMilliseconds
        settings.maxInnerCalls = try node.int("max_inner_calls", in: 3...10_000) ?? settings.maxInnerCalls
        settings.maxWebToolCalls = try node.int("max_web_tool_calls", in: 0...10_000) ?? settings.maxWebToolCalls
        settings.maxUpstreamBytes = try node.int("max_upstream_bytes", in: (64 << 10)...(64 << 30)) ?? settings.maxUpstreamBytes
        settings.maxFanOutBytes = try node.int("max_fanout_bytes", in: (1 << 20)...(64 << 30)) ?? settings.maxFanOutBytes
        settings.maxBytesInFlight = try node.int("max_bytes_in_flight", in: (1 << 20)...(1 << 40)) ?? settings.maxBytesInFlight
        settings.maxBytesInFlightPerKey = try node.int("max_bytes_in_flight_per_key", in: (1 << 20)...(1 << 40)) ?? settings.maxBytesInFlightPerKey
        settings.panelSpillMargin = try node.int("panel_spill_margin", in: 0...10_000) ?? settings.panelSpillMargin
        if let limit = try node.int("max_completion_tokens", in: 1...1_000_000) { settings.defaultMaxTokens = Int64(limit) }
        if let context = try node.string("panel_context") {
            guard let value = FusionSettings.PanelContext(rawValue: context) else {
                throw ConfigError("\(node.path).panel_context must be 'conversation' or 'last_message'")
            }
            settings.panelContext = value
        }
        settings.graceMilliseconds = try graceMilliseconds(node) ?? settings.graceMilliseconds
        let deadline = FusionParameters.deadlineRange
        settings.deadlineMilliseconds = try node.int("deadline_ms", in: Int(deadline.lowerBound)...Int(deadline.upperBound)).map(UInt64.init)
        settings.neutralLabels = try node.bool("neutral_labels") ?? settings.neutralLabels
        settings.shuffleLabels = try node.bool("shuffle_labels") ?? settings.shuffleLabels
        if let prices = try node.child("prices") {
            settings.prices = PriceBook(try parsePrices(prices))
        }
        return settings
    }

    private static func graceMilliseconds(_ node: ConfigNode) throws -> UInt64? {
        let range = FusionParameters.graceRange
        return try node.int("grace_ms", in: Int(range.lowerBound)...Int(range.upperBound)).map(UInt64.init)
    }

    /// `model: {input: 2.5, output: 10}` in US dollars per million tokens; `provider/*` prices
    /// every model of a provider.
    static func parsePrices(_ node: ConfigNode) throws -> [String: ModelPrice] {
        var prices: [String: ModelPrice] = [:]
        for (model, entry) in try node.members() {
            try entry.allowOnly(["input", "output"])
            func price(_ key: String) throws -> Double {
                guard let child = try entry.child(key) else { throw ConfigError("\(entry.path).\(key) is required (dollars per million tokens)") }
                // Bounded: a price is a number a cost sum can never overflow with. Written as a
                // plain decimal: YAML 1.1 also reads `1:30` as 90, `0x10` as 16 and `1_0` as 10
                // (review 121 #4, as 83B #4 for integers).
                guard ConfigNode.isPlainDecimal(child.node.scalar?.string ?? ""), let value = child.node.float, value.isFinite,
                      (0...100_000).contains(value) else {
                    throw ConfigError("\(child.path) must be a number from 0 to 100000 (dollars per million tokens)")
                }
                return value
            }
            prices[model] = ModelPrice(inputPerMillion: try price("input"), outputPerMillion: try price("output"))
        }
        return prices
    }
}
