import GatewayCore
import Providers

/// How the gateway handles one chat request with respect to Fusion, decided from the request,
/// the config and the recursion depth, before any upstream call.
public enum FusionPlan: Sendable {
    /// No fusion in sight: proxy as is.
    case passthrough
    /// Fusion was asked for but must not run (depth ≥ 1): proxy this rewritten request (the
    /// alias resolved to `model`, the fusion tool removed).
    case withoutFusion(model: String, request: ModelRequest)
    /// Run the pipeline.
    case fusion(FusionRequest)

    /// The names that mean "the fusion alias" and "the fusion server tool".
    public static let aliases: Set<String> = ["fusion", "openrouter/fusion"]
    public static let toolTypes: Set<String> = ["fusion", "openrouter:fusion"]
    /// The function name the outer model sees.
    public static let toolName = "fusion"

    /// `request` is the client's, in neutral form (`model` as the client named it, server tools
    /// among `tools` as `.other`, `plugins` in `extraFields`: see `FusionPlugin`). `depth` is the
    /// caller's fusion depth (`x-fusion-depth` / `x-openrouter-fusion-depth`); `structuredEvents`:
    /// the client asked for named events.
    public static func make(request: ModelRequest, settings: FusionSettings?, depth: Int,
                            structuredEvents: Bool = false) throws(APIError) -> FusionPlan {
        let isAlias = aliases.contains(request.model)
        var fusionTool: (index: Int, parameters: JSONValue?)?
        var callerTools: [ToolDefinition] = []
        var customTool: Int?
        for (index, tool) in request.tools.enumerated() {
            if case .other(let json) = tool, let type = json["type"]?.stringValue, toolTypes.contains(type) {
                guard fusionTool == nil else {
                    throw .invalidRequest("Only one fusion tool may be given.", param: "tools[\(index)]")
                }
                fusionTool = (index, json["parameters"])
            } else {
                if tool.functionName == toolName {
                    throw .invalidRequest("The function name '\(toolName)' is reserved for the fusion tool.",
                                          param: "tools[\(index)].function.name")
                }
                if case .other(let json) = tool, json["type"]?.stringValue == "custom", customTool == nil { customTool = index }
                callerTools.append(tool)
            }
        }
        let plugin = try FusionPlugin.find(in: request.extraFields["plugins"])
        if let customTool, fusionTool != nil || plugin != nil || isAlias {
            // A deliberation decodes its outer model's turns, and a custom tool's call has no
            // neutral form: it would reach the client as a nameless function call (review 51 #1).
            throw .invalidRequest("A request for fusion takes function tools only; OpenAI's custom tools are not offered with it.",
                                  param: "tools[\(customTool)]")
        }
        if let plugin, let fusionTool {
            throw .invalidRequest("Fusion is given twice, as the plugin '\(plugin.path)' and as the tool 'tools[\(fusionTool.index)]': use one.",
                                  param: plugin.path)
        }
        guard isAlias || fusionTool != nil || plugin != nil else {
            // (No function of the caller's may be named `fusion`: the name is reserved, above.)
            if request.toolChoice == .function(toolName) {
                throw .invalidRequest("'tool_choice' asks for the fusion tool, but the request offers none (add it to 'tools').",
                                      param: "tool_choice")
            }
            return .passthrough
        }
        guard let settings else {
            throw .invalidRequest("Fusion is not configured on this gateway (no 'fusion' section in its config).",
                                  param: isAlias ? "model" : plugin?.path ?? fusionTool.map { "tools[\($0.index)]" })
        }
        let outerModel = isAlias ? settings.outerModel : request.model
        var base = request
        base.model = outerModel
        base.tools = callerTools
        // The fusion plugin is ours: an upstream that knows it (OpenRouter) would deliberate again.
        if let plugin { base.extraFields["plugins"] = plugin.otherPlugins }
        if depth >= 1 {
            // Recursion protection: inner calls never get the tool again (nor a choice forcing it).
            if callerTools.isEmpty || base.toolChoice == .function(toolName) { base.toolChoice = nil }
            return .withoutFusion(model: outerModel, request: base)
        }
        // A deliberation writes one final answer; n choices would mean n deliberations, paid n times.
        if let count = request.extraFields["n"]?.intValue, count > 1 {
            throw .invalidRequest("Fusion writes one answer per request; 'n' must be 1 (send several requests instead).", param: "n")
        }
        let parameterPath = plugin?.path ?? fusionTool.map { "tools[\($0.index)].parameters" } ?? "fusion"
        let parameters = try FusionParameters(json: plugin?.parameters ?? fusionTool?.parameters, settings: settings, path: parameterPath)
        // The outer model could only call fusion: the plugin form, "required" with no tool of the
        // caller's, or the fusion function named.
        let forced = plugin != nil || (request.toolChoice == .required && callerTools.isEmpty)
            || request.toolChoice == .function(toolName)
        var fusion = FusionRequest(outerModel: outerModel, parameters: parameters, parameterPath: parameterPath, base: base,
                                   structuredEvents: structuredEvents, depth: depth, forced: forced)
        fusion.entryPoint = isAlias ? request.model : plugin != nil ? "fusion_plugin" : "fusion_tool"
        fusion.requestedModel = request.model
        fusion.fusionToolIndex = fusionTool?.index
        return .fusion(fusion)
    }
}

/// A request that runs the Fusion pipeline, with everything needed to build its inner calls.
public struct FusionRequest: Sendable {
    /// The concrete outer model (the alias resolved).
    public var outerModel: String
    public var parameters: FusionParameters
    /// Where the parameters came from in the request (for error messages).
    public var parameterPath: String
    /// The client's request with the fusion tool removed (its own tools kept) and `model` the
    /// outer model: what the outer model's calls are built from.
    public var base: ModelRequest
    /// The client asked for named SSE events (`stream_options.include_fusion_events`).
    public var structuredEvents: Bool
    public var depth: Int
    /// The request leaves the outer model no choice but fusion (the plugin form, or a tool choice
    /// that can only be fusion): its first turn is skipped.
    public var forced: Bool
    /// The id of the fusion call the gateway makes itself (a forced run's), and the stem of one
    /// for an outer model's call that came without an id: unique per request (the session sets
    /// it from the generation id), since a client sends the turns back and a repeated id is
    /// refused (review 60C #1: every forced run's was `call_fusion`, and a conversation's third
    /// request was a 400).
    public var fusionCallID = "call_fusion"
    /// How the client asked for Fusion, as the generation record's `entry_point` says: the alias
    /// it named (`fusion`, `openrouter/fusion`), `fusion_tool` or `fusion_plugin`.
    public var entryPoint = "fusion"
    /// The generation record's `router` for every Fusion request, as OpenRouter documents it
    /// ("the router field reports openrouter/fusion").
    public static let router = "openrouter/fusion"
    /// The model the client named (`fusion`, or its own model with the fusion tool or plugin).
    public var requestedModel = ""
    /// Where the fusion tool was among the client's `tools` (nil: asked for otherwise): `base`'s
    /// tools are the others, so its indexes after this one are one less than the client's.
    public var fusionToolIndex: Int?

    /// A parameter of `base` (`tools[1].function`) as the client's request names it
    /// (`tools[2].function` when the fusion tool came first).
    public func clientPath(_ param: String) -> String {
        guard let fusionToolIndex, param.hasPrefix("tools["), let close = param.firstIndex(of: "]"),
              let index = Int(param[param.index(param.startIndex, offsetBy: 6)..<close]), index >= fusionToolIndex else { return param }
        return "tools[\(index + 1)" + param[close...]
    }

    public init(outerModel: String, parameters: FusionParameters, parameterPath: String, base: ModelRequest,
                structuredEvents: Bool, depth: Int, forced: Bool = false) {
        self.outerModel = outerModel
        self.parameters = parameters
        self.parameterPath = parameterPath
        self.base = base
        self.structuredEvents = structuredEvents
        self.depth = depth
        self.forced = forced
    }

    public var stream: Bool { base.stream }
    public var includeUsage: Bool { base.includeUsage }
    public var callerTools: [ToolDefinition] { base.tools }
    public var judgeModel: String { parameters.judge ?? outerModel }
    public var messages: [ModelMessage] { base.messages }

    /// The last user message's text: the question when the outer model gives none.
    public var lastUserText: String {
        messages.last { $0.role == .user }?.text ?? ""
    }
}
