import GatewayCore
import Providers

/// The fusion tool's parameters for one request, validated; every bad one is a 400 naming its
/// field (`param` is the JSON path in the request, e.g. `tools[1].parameters.temperature`).
public struct FusionParameters: Sendable, Equatable {
    public var analysisModels: [String]
    /// The judge; nil means the outer model.
    public var judge: String?
    public var maxToolCalls = 8
    public var maxCompletionTokens: Int64?
    public var reasoning: ModelRequest.Reasoning?
    public var temperature: Double?
    public var preset: String
    /// Web tools for the panel / the judge; nil means the gateway's configured default.
    public var webSearch: Bool?
    public var judgeWebSearch: Bool?
    /// Usable answers after which the judge need not wait for the rest (nil: all of them).
    public var minAnswers: Int?
    /// Once `minAnswers` are in, how long the others may still finish (nil: the config's default).
    public var graceMilliseconds: UInt64?
    /// The deliberation's budget (nil: the config's `fusion.deadline_ms`, if any).
    public var deadlineMilliseconds: UInt64?

    static let allowedKeys: Set<String> = [
        "analysis_models", "model", "max_tool_calls", "max_completion_tokens", "reasoning", "temperature", "preset",
        "web_search", "judge_web_search", "min_answers", "grace_ms", "deadline_ms",
    ]
    /// Bounds of the latency parameters (the config's are checked against the same).
    /// Output limits and reasoning budgets, as the top-level fields take them: Gemini's and other
    /// APIs' fields are 32-bit (review 21 F3).
    public static let outputLimitRange: ClosedRange<Int64> = 1...Int64(Int32.max)
    public static let graceRange: ClosedRange<Int64> = 0...600_000
    public static let deadlineRange: ClosedRange<Int64> = 100...3_600_000
    static let reasoningEfforts: Set<String> = ["none", "minimal", "low", "medium", "high", "xhigh", "max"]

    /// OpenRouter's preset names, for a config that does not name its presets so: the plugin's
    /// `general-high` and `general-budget` run `quality` and `budget`.
    static let openRouterPresets = ["general-high": "quality", "general-budget": "budget"]

    /// Every name a request may give: the configured presets, and OpenRouter's that stand for
    /// one of them (review 74C #5: the refusal left them out).
    static func presetNames(in settings: FusionSettings) -> [String] {
        settings.presets.keys.sorted() + openRouterPresets.keys.sorted().filter { presetName($0, in: settings) != nil && settings.presets[$0] == nil }
    }

    /// The configured preset `name` asks for: itself, or the preset OpenRouter's name stands for.
    static func presetName(_ name: String, in settings: FusionSettings) -> String? {
        if settings.presets[name] != nil { return name }
        return openRouterPresets[name].flatMap { settings.presets[$0] != nil ? $0 : nil }
    }

    /// Defaults from `settings` (its default preset), overridden by `json` (the tool's
    /// `parameters` object, or nil for none). `path` prefixes field names in errors.
    public init(json: JSONValue?, settings: FusionSettings, path: String) throws(APIError) {
        var fields: [String: JSONValue] = [:]
        if let json, json != .null {
            guard case .object(let object) = json else {
                throw .invalidRequest("'\(path)' must be an object.", param: path)
            }
            fields = object
        }
        for key in fields.keys.sorted() where !Self.allowedKeys.contains(key) {
            throw .invalidRequest(
                "Unknown fusion parameter '\(path).\(key)' (allowed: \(Self.allowedKeys.sorted().joined(separator: ", "))).",
                param: "\(path).\(key)")
        }
        var presetName = settings.defaultPreset
        if let value = fields["preset"], value != .null {
            guard let asked = value.stringValue, let name = Self.presetName(asked, in: settings) else {
                throw .invalidRequest(
                    "Invalid value for '\(path).preset': expected one of \(Self.presetNames(in: settings).joined(separator: ", ")).",
                    param: "\(path).preset")
            }
            presetName = name
        }
        let preset = settings.presets[presetName] ?? FusionSettings.Preset(analysisModels: [])
        self.preset = presetName
        analysisModels = preset.analysisModels
        judge = preset.judge
        if let value = fields["analysis_models"], value != .null {
            guard let list = value.arrayValue, (1...8).contains(list.count) else {
                throw .invalidRequest("'\(path).analysis_models' must be an array of 1 to 8 model names.",
                                      param: "\(path).analysis_models")
            }
            analysisModels = try list.enumerated().map { (index, item) throws(APIError) in
                guard let name = item.stringValue, !name.isEmpty else {
                    throw .invalidRequest("'\(path).analysis_models[\(index)]' must be a non-empty string.",
                                          param: "\(path).analysis_models[\(index)]")
                }
                return name
            }
            // The analysis names members by model: two answers under one name could not be told
            // apart ("h/a contradicts h/a", review 122 #1).
            if let index = analysisModels.indices.first(where: { analysisModels[..<$0].contains(analysisModels[$0]) }) {
                throw .invalidRequest("'\(path).analysis_models[\(index)]' repeats a model: the analysis names members by model, so each may be on the panel once.",
                                      param: "\(path).analysis_models[\(index)]")
            }
        }
        if let value = fields["model"], value != .null {
            guard let name = value.stringValue, !name.isEmpty else {
                throw .invalidRequest("'\(path).model' (the judge) must be a non-empty string.", param: "\(path).model")
            }
            judge = name
        }
        if let value = fields["max_tool_calls"], value != .null {
            guard let count = value.intValue, (1...16).contains(count) else {
                throw .invalidRequest("'\(path).max_tool_calls' must be an integer from 1 to 16.", param: "\(path).max_tool_calls")
            }
            maxToolCalls = Int(count)
        }
        for key in ["web_search", "judge_web_search"] {
            guard let value = fields[key], value != .null else { continue }
            guard let flag = value.boolValue else {
                throw .invalidRequest("'\(path).\(key)' must be true or false.", param: "\(path).\(key)")
            }
            if key == "web_search" { webSearch = flag } else { judgeWebSearch = flag }
        }
        if let value = fields["max_completion_tokens"], value != .null {
            guard let count = value.intValue, Self.outputLimitRange.contains(count) else {
                throw .invalidRequest("'\(path).max_completion_tokens' must be an integer from 1 to \(Self.outputLimitRange.upperBound).",
                                      param: "\(path).max_completion_tokens")
            }
            maxCompletionTokens = count
        }
        if let value = fields["temperature"], value != .null {
            guard let number = value.doubleValue, (0...2).contains(number) else {
                throw .invalidRequest("'\(path).temperature' must be a number from 0 to 2.", param: "\(path).temperature")
            }
            temperature = number
        }
        if let value = fields["reasoning"], value != .null {
            guard case .object(let reasoning) = value else {
                throw .invalidRequest("'\(path).reasoning' must be an object with optional 'effort', 'max_tokens', 'exclude' and 'enabled'.",
                                      param: "\(path).reasoning")
            }
            for key in reasoning.keys.sorted() where key != "effort" && key != "max_tokens" && key != "exclude" && key != "enabled" {
                throw .invalidRequest("Unknown field '\(path).reasoning.\(key)'.", param: "\(path).reasoning.\(key)")
            }
            if let effort = reasoning["effort"], effort != .null {
                guard let text = effort.stringValue, Self.reasoningEfforts.contains(text) else {
                    throw .invalidRequest(
                        "'\(path).reasoning.effort' must be one of \(Self.reasoningEfforts.sorted().joined(separator: ", ")).",
                        param: "\(path).reasoning.effort")
                }
            }
            var settings = ModelRequest.Reasoning(effort: reasoning["effort"]?.stringValue)
            if let tokens = reasoning["max_tokens"], tokens != .null {
                guard let count = tokens.intValue, Self.outputLimitRange.contains(count) else {
                    throw .invalidRequest("'\(path).reasoning.max_tokens' must be an integer from 1 to \(Self.outputLimitRange.upperBound).",
                                          param: "\(path).reasoning.max_tokens")
                }
                settings.maxTokens = count
            }
            if let exclude = reasoning["exclude"], exclude != .null {
                guard let flag = exclude.boolValue else {
                    throw .invalidRequest("'\(path).reasoning.exclude' must be true or false.", param: "\(path).reasoning.exclude")
                }
                settings.exclude = flag
            }
            if let enabled = reasoning["enabled"], enabled != .null {
                // `false` asks for no reasoning whatever else is set, as on a plain request.
                guard let flag = enabled.boolValue else {
                    throw .invalidRequest("'\(path).reasoning.enabled' must be true or false.", param: "\(path).reasoning.enabled")
                }
                settings.enabled = flag
            }
            self.reasoning = settings
        }
        guard !analysisModels.isEmpty else {
            throw .invalidRequest("No panel: the preset '\(presetName)' has no analysis_models and none were given.",
                                  param: "\(path).analysis_models")
        }
        // The preset's quorum applies to its own panel, or to any panel when the preset is named
        // here (a smaller panel caps it); a panel of the client's own under the default preset
        // waits for every member unless `min_answers` says otherwise.
        let namesPreset = fields["preset"].map { $0 != .null } ?? false
        let ownPanel = fields["analysis_models"].map { $0 != .null } ?? false
        if namesPreset || !ownPanel {
            minAnswers = preset.minAnswers.map { min($0, analysisModels.count) }
            graceMilliseconds = preset.graceMilliseconds
        }
        if let value = fields["min_answers"], value != .null {
            guard let count = value.intValue, (1...Int64(analysisModels.count)).contains(count) else {
                throw .invalidRequest("'\(path).min_answers' must be an integer from 1 to the panel's size (\(analysisModels.count)).",
                                      param: "\(path).min_answers")
            }
            minAnswers = Int(count)
        }
        if let value = fields["grace_ms"], value != .null {
            guard let milliseconds = value.intValue, Self.graceRange.contains(milliseconds) else {
                throw .invalidRequest("'\(path).grace_ms' must be an integer from \(Self.graceRange.lowerBound) to \(Self.graceRange.upperBound).",
                                      param: "\(path).grace_ms")
            }
            graceMilliseconds = UInt64(milliseconds)
        }
        if let value = fields["deadline_ms"], value != .null {
            guard let milliseconds = value.intValue, Self.deadlineRange.contains(milliseconds) else {
                throw .invalidRequest(
                    "'\(path).deadline_ms' must be an integer from \(Self.deadlineRange.lowerBound) to \(Self.deadlineRange.upperBound).",
                    param: "\(path).deadline_ms")
            }
            deadlineMilliseconds = UInt64(milliseconds)
        }
    }
}
