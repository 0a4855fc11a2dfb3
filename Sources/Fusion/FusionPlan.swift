import GatewayCore

/// How the gateway handles one chat request with respect to Fusion, decided from the body, the
/// config and the recursion depth, before any upstream call.
public enum FusionPlan: Sendable {
    /// No fusion in sight: proxy as is.
    case passthrough
    /// Fusion was asked for but must not run (depth ≥ 1): proxy this rewritten body to `model`
    /// (the alias resolved, the fusion tool removed).
    case withoutFusion(model: String, body: JSONValue)
    /// Run the pipeline.
    case fusion(FusionRequest)

    /// The names that mean "the fusion alias" and "the fusion server tool".
    public static let aliases: Set<String> = ["fusion", "openrouter/fusion"]
    public static let toolTypes: Set<String> = ["fusion", "openrouter:fusion"]
    /// The function name the outer model sees.
    public static let toolName = "fusion"

    /// `depth` is the caller's fusion depth (`x-fusion-depth` / `x-openrouter-fusion-depth`).
    public static func make(request: ChatRequest, settings: FusionSettings?, depth: Int) throws(APIError) -> FusionPlan {
        guard case .object(var body) = request.json else { return .passthrough }
        let isAlias = aliases.contains(request.model)
        var fusionTool: (index: Int, parameters: JSONValue?)?
        var callerTools: [JSONValue] = []
        for (index, tool) in (body["tools"]?.arrayValue ?? []).enumerated() {
            if let type = tool["type"]?.stringValue, toolTypes.contains(type) {
                guard fusionTool == nil else {
                    throw .invalidRequest("Only one fusion tool may be given.", param: "tools[\(index)]")
                }
                fusionTool = (index, tool["parameters"])
            } else {
                if tool["function"]?["name"]?.stringValue == toolName {
                    throw .invalidRequest("The function name '\(toolName)' is reserved for the fusion tool.",
                                          param: "tools[\(index)].function.name")
                }
                callerTools.append(tool)
            }
        }
        guard isAlias || fusionTool != nil else { return .passthrough }
        guard let settings else {
            throw .invalidRequest("Fusion is not configured on this gateway (no 'fusion' section in its config).",
                                  param: isAlias ? "model" : "tools[\(fusionTool!.index)]")
        }
        let outerModel = isAlias ? settings.outerModel : request.model
        if depth >= 1 {
            // Recursion protection: inner calls never get the tool again.
            body["model"] = .string(outerModel)
            if callerTools.isEmpty {
                body["tools"] = nil
                body["tool_choice"] = nil
            } else {
                body["tools"] = .array(callerTools)
            }
            return .withoutFusion(model: outerModel, body: .object(body))
        }
        let parameterPath = fusionTool.map { "tools[\($0.index)].parameters" } ?? "fusion"
        let parameters = try FusionParameters(json: fusionTool?.parameters, settings: settings, path: parameterPath)
        var structured = false
        if let flag = body["stream_options"]?["include_fusion_events"], flag != .null {
            guard let value = flag.boolValue else {
                throw .invalidRequest("'stream_options.include_fusion_events' must be a boolean.",
                                      param: "stream_options.include_fusion_events")
            }
            structured = value
        }
        return .fusion(FusionRequest(
            outerModel: outerModel, parameters: parameters, parameterPath: parameterPath, callerTools: callerTools,
            body: body, stream: request.stream, includeUsage: request.includeUsage, structuredEvents: structured,
            depth: depth))
    }
}

/// A request that runs the Fusion pipeline, with everything needed to build its inner calls.
public struct FusionRequest: Sendable {
    public var outerModel: String
    public var parameters: FusionParameters
    /// Where the parameters came from in the request (for error messages).
    public var parameterPath: String
    public var callerTools: [JSONValue]
    /// The client's body (fields unknown to us included).
    public var body: [String: JSONValue]
    public var stream: Bool
    public var includeUsage: Bool
    /// The client asked for named SSE events (`stream_options.include_fusion_events`).
    public var structuredEvents: Bool
    public var depth: Int

    public var judgeModel: String { parameters.judge ?? outerModel }
    public var messages: [JSONValue] { body["messages"]?.arrayValue ?? [] }

    /// The last user message's text: the question when the outer model gives none.
    public var lastUserText: String {
        for message in messages.reversed() where message["role"]?.stringValue == "user" {
            return FusionPrompts.text(of: message["content"])
        }
        return ""
    }
}
