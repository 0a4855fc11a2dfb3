import GatewayCore

/// The plugin form of Fusion: `plugins: [{"id": "fusion", "preset"?, "analysis_models"?, "model"?, …}]`
/// on any request. OpenRouter documents it as "a thin sugar layer" over the `openrouter:fusion`
/// server tool, so it is exactly that here: its fields are the tool's parameters (validated by
/// `FusionParameters`, errors naming `plugins[i].<field>`), plus three of its own:
///
/// - `id` (`"fusion"`) picks the plugin out; other plugins are not ours and are left alone;
/// - `enabled: false` switches it off (as if it were not there);
/// - `tools`: OpenRouter's list of the panel's server tools. `[]` means no web tools for the
///   panel nor the judge; a list of web tools (`openrouter:web_search`, `openrouter:web_fetch`)
///   leaves the gateway's configured default, since ours come as a pair.
///
/// Unlike the tool, which the outer model may or may not call, the plugin forces the
/// deliberation (OpenRouter's `openrouter/fusion` alias is implemented by it).
struct FusionPlugin {
    /// Its position in `plugins`, for error messages and `parameterPath`.
    var index: Int
    /// The fields that are the server tool's parameters.
    var parameters: JSONValue
    /// `plugins` without this one: nil when nothing is left (the key is then dropped), so the
    /// fusion plugin never reaches an upstream that would run its own deliberation.
    var otherPlugins: JSONValue?

    static let id = "fusion"
    static let webToolTypes: Set<String> = ["openrouter:web_search", "openrouter:web_fetch", "web_search", "web_fetch"]

    var path: String { "plugins[\(index)]" }

    /// The enabled fusion plugin in `plugins` (a request's `plugins` value), if any. A `plugins`
    /// that is not an array is not ours to judge: it is forwarded as it is.
    static func find(in plugins: JSONValue?) throws(APIError) -> FusionPlugin? {
        guard let list = plugins?.arrayValue else { return nil }
        var found: FusionPlugin?
        var others: [JSONValue] = []
        for (index, plugin) in list.enumerated() {
            guard plugin["id"]?.stringValue == id, case .object(var fields) = plugin else {
                others.append(plugin)
                continue
            }
            let path = "plugins[\(index)]"
            fields["id"] = nil
            if let enabled = fields.removeValue(forKey: "enabled"), enabled != .null {
                guard let flag = enabled.boolValue else {
                    throw .invalidRequest("'\(path).enabled' must be true or false.", param: "\(path).enabled")
                }
                if !flag { continue }  // switched off: dropped, and no deliberation
            }
            if let tools = fields.removeValue(forKey: "tools"), tools != .null {
                guard let list = tools.arrayValue else {
                    throw .invalidRequest("'\(path).tools' must be an array of server tools.", param: "\(path).tools")
                }
                for (position, tool) in list.enumerated() {
                    guard let type = tool["type"]?.stringValue, webToolTypes.contains(type) else {
                        throw .invalidRequest(
                            "'\(path).tools[\(position)]' must be a web tool ({\"type\": \"openrouter:web_search\"} or "
                                + "{\"type\": \"openrouter:web_fetch\"}): this gateway gives the panel no other tools.",
                            param: "\(path).tools[\(position)].type")
                    }
                }
                if list.isEmpty {
                    // Explicit web_search / judge_web_search fields say more than an empty list.
                    if fields["web_search"] == nil { fields["web_search"] = .bool(false) }
                    if fields["judge_web_search"] == nil { fields["judge_web_search"] = .bool(false) }
                }
            }
            guard found == nil else {
                throw .invalidRequest("Only one fusion plugin may be given.", param: path)
            }
            found = FusionPlugin(index: index, parameters: .object(fields))
        }
        found?.otherPlugins = others.isEmpty ? nil : .array(others)
        return found
    }
}
