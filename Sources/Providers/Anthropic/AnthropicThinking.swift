import Foundation
import GatewayCore

/// How a Claude model is asked to think. Models before 4.6 take a token budget
/// (`thinking: {type: enabled, budget_tokens}`); 4.6 and later prefer, and from Opus 4.7 on
/// require (the budgeted form is a 400 there), `thinking: {type: adaptive}` with an effort in
/// `output_config.effort`. The model's name says which: the first numbers after "claude" are
/// its version (`claude-opus-4-7`, `claude-3-7-sonnet-20250219`, `anthropic.claude-opus-4.7-v1`;
/// an 8-digit date is not one). A Claude name without a version (`claude-mythos-preview`) is a
/// new model; a name without "claude" (a deployment's own alias) keeps the budgeted form, which
/// every model before 4.7 takes.
enum AnthropicThinking {
    /// `outputLimit`: the model's own cap on `max_tokens` (without a beta header), when its name
    /// says it, so a budget asked by effort stays within it: Opus 4 and 4.1 32,000; Claude 3.7
    /// and the other 4.x models 64,000.
    case budget(outputLimit: Int64?)
    /// `xhigh`: the model takes that effort (Opus 4.7 and later).
    case adaptive(xhigh: Bool)

    /// The output cap every adaptive-thinking model takes (Sonnet 4.6's 64,000; Opus's is larger).
    static let adaptiveOutputCap: Int64 = 64_000

    init(model: String) {
        let name = model.lowercased()
        guard let claude = name.range(of: "claude") else {
            self = .budget(outputLimit: nil)
            return
        }
        var version: [Int] = []
        for token in name[claude.upperBound...].split(whereSeparator: { "-._/:@".contains($0) }) {
            if token.count <= 2, let number = Int(token), version.count < 2 {
                version.append(number)
            } else if !version.isEmpty {
                break
            }
        }
        guard let major = version.first else {
            self = .adaptive(xhigh: true)
            return
        }
        let minor = version.count > 1 ? version[1] : 0
        if major < 4 || (major == 4 && minor < 6) {
            let limit: Int64? = switch (major, minor) {
            case (4, 0...4) where name.contains("opus"): 32000
            case (4, _), (3, 7...): 64000
            default: nil // no extended thinking before 3.7
            }
            self = .budget(outputLimit: limit)
        } else {
            self = .adaptive(xhigh: major > 4 || minor >= 7)
        }
    }

    /// The effort for adaptive thinking: the one asked for in the API's words (OpenAI's
    /// `minimal` is `low`; `xhigh` is `high` on a model without it), else the nearest to a token
    /// budget (below 4,096 `low`, below 16,384 `medium`, else `high`); nil for the API's default.
    static func effort(_ reasoning: ModelRequest.Reasoning?, xhigh: Bool) -> String? {
        switch reasoning?.effort {
        case "minimal"?, "low"?: return "low"
        case "medium"?: return "medium"
        case "high"?: return "high"
        case "xhigh"?: return xhigh ? "xhigh" : "high"
        case "max"?: return "max"
        default: break
        }
        guard let budget = reasoning?.maxTokens else { return nil }
        return budget < 4096 ? "low" : budget < 16384 ? "medium" : "high"
    }

    /// `thinking` and `output_config` for adaptive thinking, into `body`: the thinking text
    /// summarized (Opus 4.7 and later omit it unless asked) or omitted with `exclude`; the effort
    /// merged into a client's own `output_config` (which may hold its output format).
    static func applyAdaptive(_ reasoning: ModelRequest.Reasoning?, xhigh: Bool, to body: inout [String: JSONValue]) {
        let display = reasoning?.exclude == true ? "omitted" : "summarized"
        body["thinking"] = .object(["type": .string("adaptive"), "display": .string(display)])
        guard let effort = effort(reasoning, xhigh: xhigh) else { return }
        var config = body["output_config"]?.objectValue ?? [:]
        config["effort"] = .string(effort)
        body["output_config"] = .object(config)
    }
}
