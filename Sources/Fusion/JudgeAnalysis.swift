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
    /// The request's inner calls (`fusion.max_inner_calls`) ran out before the judge's next turn;
    /// its last one is kept for the final answer.
    case innerCallLimit = "judge_inner_call_limit"
}

/// The judge's structured analysis, validated against the schema the judge was given.
public enum JudgeAnalysis {
    public static let fields = ["consensus", "contradictions", "partial_coverage", "unique_insights", "blind_spots"]

    /// The analysis in counts for people, each noun agreeing with its number: "2 points of
    /// consensus, 1 contradiction, 0 points covered partially, 3 unique insights, 1 blind spot".
    public static func countsSummary(_ analysis: JSONValue) -> String {
        let nouns = [("point of consensus", "points of consensus"), ("contradiction", "contradictions"),
                     ("point covered partially", "points covered partially"), ("unique insight", "unique insights"),
                     ("blind spot", "blind spots")]
        return zip(fields, nouns).map { field, noun in
            let count = analysis[field]?.arrayValue?.count ?? 0
            return "\(count) \(count == 1 ? noun.0 : noun.1)"
        }.joined(separator: ", ")
    }

    /// Parses the judge's reply. Accepts the object alone or inside a ```json fence; maps the
    /// neutral labels back to model names (`labels`), then requires the five fields with their
    /// shapes, and that every model it cites is one of `panel`. Returns the analysis with exactly
    /// the five fields.
    public static func parse(_ text: String, panel: Set<String>, labels: NeutralLabels? = nil) -> Result<JSONValue, JudgeFailure> {
        parse(text, citable: Citable(panel: panel.union(labels?.mapping.keys ?? [:].keys)), labels: labels)
    }

    public static func parse(_ text: String, citable: Citable, labels: NeutralLabels? = nil) -> Result<JSONValue, JudgeFailure> {
        var body = text.trimmingWhitespace()
        if body.isEmpty { return .failure(JudgeFailure(.emptyCompletion, "the judge returned no text")) }
        if body.hasPrefix("```") {
            // Through the fence's line end: "\r\n" is one Character, not "\n" (review 48 Fusion #5).
            body = String(body.drop { !$0.isNewline }.dropFirst())
            if let fence = body.range(of: "```", options: .backwards) { body = String(body[..<fence.lowerBound]) }
        }
        // Strict, as a client's body: a key given twice would be read one way here and the other
        // way by the tokenizer that streamed its items, so the analysis shown and the one
        // validated could differ. It is a schema failure (the items shown are withdrawn).
        // (Only the five fields matter: a duplicate inside an item is read the same way by both,
        // and other members are dropped.)
        let json: JSONValue
        do {
            // (Keys equal but for case are two keys here, as the tokenizer reads them.)
            json = try JSONValue.parseRequest(Array(body.utf8), refusingCaseVariants: false)
        } catch where error.code == "duplicate_key" && fields.contains(error.param ?? "") {
            return .failure(JudgeFailure(.schemaMismatch, "the key '\(error.param ?? "?")' appears twice"))
        } catch {
            guard let lenient = try? JSONValue.parse(Array(body.utf8)) else {
                return .failure(JudgeFailure(.notValidJSON, "the reply is not a JSON object"))
            }
            json = lenient
        }
        guard case .object(var object) = json else {
            return .failure(JudgeFailure(.schemaMismatch, "the reply is JSON but not an object"))
        }
        object = object.filter { fields.contains($0.key) }
        for field in fields where object[field] == nil { return .failure(JudgeFailure(.schemaMismatch, "missing field '\(field)'")) }
        // Checked as the judge wrote it (its labels), then mapped back: the problem told to the
        // judge on its retry quotes what it wrote, never the model behind a label (review 62C #1).
        for field in fields {
            guard let items = object[field]?.arrayValue else { return .failure(JudgeFailure(.schemaMismatch, "'\(field)' must be an array")) }
            for (index, item) in items.enumerated() {
                if let problem = problem(in: item, field: field, index: index, citable: citable) {
                    return .failure(JudgeFailure(schemaProblem: problem, labels: labels))
                }
            }
        }
        // Labels mapped back, citations trimmed as they were validated (without labels too).
        object = (labels ?? NeutralLabels(models: [], neutral: false, seed: nil)).restore(.object(object)).objectValue ?? object
        return .success(.object(object))
    }

    /// The analysis `parse` would return, assembled from the items the tokenizer handed out as
    /// the judge streamed them (`items`: each field's elements, models mapped back, each one
    /// already passed `problem`), or nil when that cannot be known without parsing: the judge's
    /// end is on the deliberation's critical path, and parsing the whole reply again there took
    /// ~90 µs. It is known when the tokenizer read one whole object, every field's key appeared
    /// exactly once with an array, and the object stands alone or inside a ```json fence, with
    /// nothing else around it but JSON white space. Anything else (a sentence before it, text
    /// after it, a duplicate field, a field that is not an array) goes through `parse`, which
    /// gives the same answer or the error to report.
    public static func assembled(_ text: String, tokenizer: AnalysisTokenizer, items: [String: [JSONValue]]) -> JSONValue? {
        guard tokenizer.finished, !tokenizer.stopped, let start = tokenizer.objectStart, let end = tokenizer.objectEnd else { return nil }
        for field in fields where tokenizer.fieldKeyCounts[field] != 1 || !tokenizer.arrayFields.contains(field) { return nil }
        let fenced: Bool? = text.utf8.withContiguousStorageIfAvailable { bytes -> Bool? in
            guard start < end, end <= bytes.count else { return nil }
            return aroundObject(before: UnsafeBufferPointer(rebasing: bytes[..<start]),
                                after: UnsafeBufferPointer(rebasing: bytes[end...]))
        } ?? nil
        guard fenced != nil else { return nil }
        var object: [String: JSONValue] = [:]
        for field in fields { object[field] = .array(items[field] ?? []) }
        return .object(object)
    }

    /// Whether what surrounds the object is what `parse` reads past: JSON white space on both
    /// sides (false), or a fence opened on a line of its own before it and closed after it
    /// (true); nil for anything else.
    private static func aroundObject(before: UnsafeBufferPointer<UInt8>, after: UnsafeBufferPointer<UInt8>) -> Bool? {
        func isSpace(_ byte: UInt8) -> Bool { byte == 0x20 || byte == 0x0A || byte == 0x0D || byte == 0x09 }
        let fence = Array("```".utf8)
        guard let opening = before.firstIndex(where: { !isSpace($0) }) else {
            return after.allSatisfy(isSpace) ? false : nil
        }
        // ```json\n (or \r\n): the fence's line ends before the object, with only white space
        // after it. A lone \r ends a line for `parse` (a newline Character), so none may come
        // before the line's end.
        guard before[opening...].starts(with: fence),
              let newline = before[opening...].firstIndex(of: 0x0A),
              !before[opening..<newline].dropLast(before[newline - 1] == 0x0D ? 1 : 0).contains(0x0D),
              before[(newline + 1)...].allSatisfy(isSpace) else { return nil }
        // The closing fence is the last thing, with only white space around it.
        guard let closing = after.firstIndex(where: { !isSpace($0) }), after[closing...].starts(with: fence),
              after[(closing + fence.count)...].allSatisfy(isSpace) else { return nil }
        return true
    }

    /// The most items one field of an analysis may hold; more is a schema mismatch (retried,
    /// then the fallback judge, then no analysis, as any broken analysis).
    public static let maxItemsPerField = 64

    /// Whom an analysis may cite, by the names the judge knows the panel under (its neutral
    /// labels, one per member even when a model repeats) and by model name (a judge may write
    /// one it guessed): every member, and of them the ones whose answers the judge was given (a
    /// member cut or failed was not compared: an insight or a stance the judge gives it is
    /// invented, review 19 F1).
    public struct Citable: Sendable, Equatable {
        public var panel: Set<String>
        public var compared: Set<String>

        public init(panel: Set<String>, compared: Set<String>? = nil) {
            self.panel = panel
            self.compared = compared ?? panel
        }
    }

    /// What is wrong with element `index` of `field` (as the judge wrote it: labels not yet
    /// mapped back), or nil: the same rule for one item streamed and for the whole analysis.
    public static func problem(in item: JSONValue, field: String, index: Int, panel: Set<String>) -> String? {
        problem(in: item, field: field, index: index, citable: Citable(panel: panel))
    }

    public static func problem(in item: JSONValue, field: String, index: Int, citable: Citable) -> String? {
        // An analysis is read by people and by the final turn's model: a judge listing thousands
        // of points is broken, not thorough (and each item is a line the client gets).
        guard index < maxItemsPerField else { return "'\(field)' has more than \(maxItemsPerField) items" }
        func cited(_ value: JSONValue?, _ where_: String) -> String? {
            guard let written = value?.stringValue else { return "\(where_) must be a model name (string)" }
            let name = written.trimmingWhitespace()  // as `NeutralLabels.restore` reads it
            guard citable.panel.contains(name) else { return "\(where_) cites '\(written)', which is not a panel member" }
            guard citable.compared.contains(name) else { return "\(where_) cites '\(name)', whose answer was not given to compare" }
            return nil
        }
        switch field {
        case "consensus", "blind_spots":
            return item.stringValue == nil ? "\(field)[\(index)] must be a string" : nil
        case "contradictions":
            guard item["topic"]?.stringValue != nil, let stances = item["stances"]?.arrayValue else {
                return "contradictions[\(index)] must have a string 'topic' and an array 'stances'"
            }
            for (position, stance) in stances.enumerated() {
                if let problem = cited(stance["model"], "contradictions[\(index)].stances[\(position)].model") { return problem }
                guard stance["stance"]?.stringValue != nil else {
                    return "contradictions[\(index)].stances[\(position)].stance must be a string"
                }
            }
            return nil
        case "partial_coverage":
            guard let models = item["models"]?.arrayValue, item["point"]?.stringValue != nil else {
                return "partial_coverage[\(index)] must have an array 'models' and a string 'point'"
            }
            for (position, model) in models.enumerated() {
                if let problem = cited(model, "partial_coverage[\(index)].models[\(position)]") { return problem }
            }
            return nil
        case "unique_insights":
            if let problem = cited(item["model"], "unique_insights[\(index)].model") { return problem }
            return item["insight"]?.stringValue == nil ? "unique_insights[\(index)].insight must be a string" : nil
        default:
            return "'\(field)' is not a field of the analysis"
        }
    }
}

public struct JudgeFailure: Error, Sendable, Equatable {
    public var reason: JudgeFailureReason
    /// For people and the final turn's model: models by their names.
    public var message: String
    /// For the judge's retry: the panel by the labels it was shown (nil: `message`).
    public var judgeMessage: String?
    /// False for a reply cut at its output limit: the same model is not asked again.
    public var sameModelMayRetry = true

    public init(_ reason: JudgeFailureReason, _ message: String) {
        self.reason = reason
        self.message = message
    }

    /// A schema problem found in what the judge wrote: as written for the judge, its labels
    /// mapped back for everyone else (review 62C #2: clients read "cites 'Response B'").
    public init(schemaProblem problem: String, labels: NeutralLabels?) {
        reason = .schemaMismatch
        message = DisplayText.cleaned(labels?.unmarked.restoreProse(problem) ?? problem)  // it quotes the judge (review 111 #3)
        judgeMessage = problem
    }
}

extension String {
    /// Whether any character would show: not only white space, format characters (zero-width
    /// spaces and joiners, U+FEFF, bidi marks) and other default-ignorables. An answer of
    /// nothing else is empty, not usable (review 62C #6: two U+200B met the quorum and cut the
    /// members still writing).
    var hasVisibleText: Bool {
        unicodeScalars.contains { scalar in
            let properties = scalar.properties
            return !properties.isWhitespace && !properties.isDefaultIgnorableCodePoint
                && properties.generalCategory != .format && properties.generalCategory != .control
        }
    }

    /// Without leading and trailing Unicode white space (the characters of Foundation's
    /// `.whitespacesAndNewlines`): by scalar property, a few times cheaper than a `CharacterSet`,
    /// and this runs on every item the judge streams.
    func trimmingWhitespace() -> String {
        let scalars = unicodeScalars
        guard let first = scalars.firstIndex(where: { !$0.properties.isWhitespace }),
              let last = scalars.lastIndex(where: { !$0.properties.isWhitespace }) else { return "" }
        if first == scalars.startIndex, scalars.index(after: last) == scalars.endIndex { return self }
        return String(scalars[first...last])
    }
}
