import Foundation
import GatewayCore

/// Why the judge produced no analysis.
public enum JudgeFailureReason: String, Sendable, Equatable {
    case notValidJSON = "judge_not_valid_json"
    case schemaMismatch = "judge_schema_mismatch"
    case upstreamError = "judge_upstream_error"
    case emptyCompletion = "judge_empty_completion"
    /// No analysis within the judge's time budget.
    case timeout = "judge_timeout"
}

/// The judge's structured analysis, validated against the schema the judge was given.
public enum JudgeAnalysis {
    public static let fields = ["consensus", "contradictions", "partial_coverage", "unique_insights", "blind_spots"]

    /// Parses the judge's reply. Accepts the object alone or inside a ```json fence; requires the
    /// five fields with their shapes, and that every model it cites is one of `panel`. Returns
    /// the analysis with exactly the five fields.
    public static func parse(_ text: String, panel: Set<String>) -> Result<JSONValue, JudgeFailure> {
        var body = text.trimmingWhitespace()
        if body.isEmpty { return .failure(JudgeFailure(.emptyCompletion, "the judge returned no text")) }
        if body.hasPrefix("```") {
            body = String(body.drop { $0 != "\n" }.dropFirst())
            if let fence = body.range(of: "```", options: .backwards) { body = String(body[..<fence.lowerBound]) }
        }
        guard let json = try? JSONValue.parse(Array(body.utf8)) else {
            return .failure(JudgeFailure(.notValidJSON, "the reply is not a JSON object"))
        }
        guard case .object(let object) = json else {
            return .failure(JudgeFailure(.schemaMismatch, "the reply is JSON but not an object"))
        }
        func mismatch(_ message: String) -> Result<JSONValue, JudgeFailure> { .failure(JudgeFailure(.schemaMismatch, message)) }
        func cited(_ value: JSONValue?, _ where_: String) -> String? {
            guard let model = value?.stringValue else { return "\(where_) must be a model name (string)" }
            return panel.contains(model) ? nil : "\(where_) cites '\(model)', which is not a panel member"
        }
        for field in fields where object[field] == nil { return mismatch("missing field '\(field)'") }
        for field in fields {
            guard object[field]?.arrayValue != nil else { return mismatch("'\(field)' must be an array") }
        }
        for (index, item) in object["consensus"]!.arrayValue!.enumerated() where item.stringValue == nil {
            return mismatch("consensus[\(index)] must be a string")
        }
        for (index, item) in object["blind_spots"]!.arrayValue!.enumerated() where item.stringValue == nil {
            return mismatch("blind_spots[\(index)] must be a string")
        }
        for (index, item) in object["contradictions"]!.arrayValue!.enumerated() {
            guard item["topic"]?.stringValue != nil, let stances = item["stances"]?.arrayValue else {
                return mismatch("contradictions[\(index)] must have a string 'topic' and an array 'stances'")
            }
            for (position, stance) in stances.enumerated() {
                if let problem = cited(stance["model"], "contradictions[\(index)].stances[\(position)].model") { return mismatch(problem) }
                guard stance["stance"]?.stringValue != nil else {
                    return mismatch("contradictions[\(index)].stances[\(position)].stance must be a string")
                }
            }
        }
        for (index, item) in object["partial_coverage"]!.arrayValue!.enumerated() {
            guard let models = item["models"]?.arrayValue, item["point"]?.stringValue != nil else {
                return mismatch("partial_coverage[\(index)] must have an array 'models' and a string 'point'")
            }
            for (position, model) in models.enumerated() {
                if let problem = cited(model, "partial_coverage[\(index)].models[\(position)]") { return mismatch(problem) }
            }
        }
        for (index, item) in object["unique_insights"]!.arrayValue!.enumerated() {
            if let problem = cited(item["model"], "unique_insights[\(index)].model") { return mismatch(problem) }
            guard item["insight"]?.stringValue != nil else { return mismatch("unique_insights[\(index)].insight must be a string") }
        }
        return .success(.object(object.filter { fields.contains($0.key) }))
    }
}

public struct JudgeFailure: Error, Sendable, Equatable {
    public var reason: JudgeFailureReason
    public var message: String

    public init(_ reason: JudgeFailureReason, _ message: String) {
        self.reason = reason
        self.message = message
    }
}

extension String {
    func trimmingWhitespace() -> String { trimmingCharacters(in: .whitespacesAndNewlines) }
}
