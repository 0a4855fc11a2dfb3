import Foundation
import GatewayCore

/// What the simulated Fusion models say: deterministic, derived from the request, realistic in
/// shape. Panel experts share some points and not others; the judge computes its analysis from
/// the answers it is actually given; the outer model calls tools the way real models do.
enum MockRoles {
    /// The marker the gateway's judge prompt carries (FusionPrompts.judgeMarker; not imported:
    /// the mock must not depend on the code it tests).
    static let judgeMarker = "You are the judge of a fusion-gateway deliberation."

    // MARK: panel experts

    /// Points and the experts (1…8) who make them.
    static let points: [(text: String, experts: Set<Int>)] = [
        ("The answer should rest on evidence rather than intuition.", Set(1...8)),
        ("Trade-offs should be weighed explicitly, not assumed away.", Set(1...8)),
        ("Short-term costs are often overstated in public debate.", [1, 2, 5, 7]),
        ("Implementation details matter more than the headline policy.", [2, 3, 6, 8]),
        ("Historical precedent offers the clearest guide.", [1]),
        ("Distributional effects deserve separate attention.", [2]),
        ("Second-order effects are easy to miss and often dominate.", [3]),
        ("International comparisons help calibrate expectations.", [4]),
        ("Measurement choices can change the conclusion.", [4, 5]),
        ("Political feasibility constrains the best design.", [6, 7, 8]),
    ]
    static let verdicts = ["the benefits outweigh the costs.", "the costs outweigh the benefits.", "the evidence is mixed."]
    /// Aspects a judge checks for; those no answer mentions are blind spots.
    static let aspects = [("legal", "Legal and regulatory constraints"), ("maintenance", "Long-term maintenance costs"),
                          ("vulnerable", "Effects on vulnerable groups"), ("evidence", "The quality of the evidence")]

    static func expertAnswer(persona: Int, question: String) -> String {
        var lines = ["Expert \(persona)'s view on \"\(question.prefix(80))\":"]
        for point in points where point.experts.contains(persona) { lines.append("- \(point.text)") }
        lines.append("- On the overall verdict: \(verdicts[(persona - 1) % verdicts.count])")
        return lines.joined(separator: "\n")
    }

    // MARK: judge

    static func isJudgeRequest(_ request: JSONValue) -> Bool {
        request["messages"]?.arrayValue?.contains { message in
            message["role"]?.stringValue == "system" && (message["content"]?.stringValue?.contains(judgeMarker) ?? false)
        } ?? false
    }

    /// The panel answers in the judge's prompt: `<answer model="…">…</answer>` blocks, or
    /// `<answer label="Response A">` under neutral labels (the analysis then cites the labels,
    /// as a real judge would, and the gateway maps them back).
    static func panelAnswers(in request: JSONValue) -> [(model: String, text: String)] {
        let prompt = request["messages"]?.arrayValue?.first { $0["role"]?.stringValue == "user" }?["content"]?.stringValue ?? ""
        var answers: [(String, String)] = []
        var rest = Substring(prompt)
        func nextAnswer(_ text: Substring) -> Range<Substring.Index>? {
            let byModel = text.range(of: "<answer model=\"")
            let byLabel = text.range(of: "<answer label=\"")
            guard let byModel else { return byLabel }
            guard let byLabel else { return byModel }
            return byModel.lowerBound < byLabel.lowerBound ? byModel : byLabel
        }
        while let open = nextAnswer(rest), let quote = rest[open.upperBound...].firstIndex(of: "\""),
            let close = rest[quote...].range(of: "</answer>")
        {
            let model = String(rest[open.upperBound..<quote])
            let bodyStart = rest.index(after: rest[quote...].firstIndex(of: ">") ?? quote)
            answers.append((model, String(rest[bodyStart..<close.lowerBound]).trimmingCharacters(in: CharacterSet(charactersIn: "\n"))))
            rest = rest[close.upperBound...]
        }
        return answers
    }

    /// Consensus, partial coverage and unique insights from which answers make each point;
    /// contradictions from differing "On <topic>: <stance>" lines; blind spots from aspects
    /// no answer mentions.
    static func analysis(of answers: [(model: String, text: String)]) -> JSONValue {
        var byPoint: [(point: String, models: [String])] = []
        var stances: [String: [(String, String)]] = [:]
        for (model, text) in answers {
            for line in text.split(separator: "\n") where line.hasPrefix("- ") {
                let point = String(line.dropFirst(2))
                if point.hasPrefix("On "), let colon = point.firstIndex(of: ":") {
                    let topic = String(point[point.index(point.startIndex, offsetBy: 3)..<colon])
                    stances[topic, default: []].append((model, String(point[point.index(after: colon)...]).trimmingCharacters(in: .whitespaces)))
                } else if let index = byPoint.firstIndex(where: { $0.point == point }) {
                    byPoint[index].models.append(model)
                } else {
                    byPoint.append((point, [model]))
                }
            }
        }
        var consensus: [JSONValue] = []
        var partial: [JSONValue] = []
        var unique: [JSONValue] = []
        for (point, models) in byPoint {
            if models.count == answers.count && answers.count > 1 {
                consensus.append(.string(point))
            } else if models.count > 1 {
                partial.append(.object(["models": .array(models.map(JSONValue.string)), "point": .string(point)]))
            } else {
                unique.append(.object(["model": .string(models[0]), "insight": .string(point)]))
            }
        }
        var contradictions: [JSONValue] = []
        for (topic, list) in stances.sorted(by: { $0.key < $1.key }) {
            if Set(list.map(\.1)).count > 1 {
                contradictions.append(.object(["topic": .string(topic), "stances": .array(list.map {
                    .object(["model": .string($0.0), "stance": .string($0.1)])
                })]))
            } else if let stance = list.first?.1, list.count == answers.count, answers.count > 1 {
                consensus.append(.string("On \(topic): \(stance)"))
            }
        }
        let everything = answers.map(\.text).joined(separator: " ").lowercased()
        let blindSpots = aspects.filter { !everything.contains($0.0) }.map { JSONValue.string($0.1) }
        return .object(["consensus": .array(consensus), "contradictions": .array(contradictions),
                        "partial_coverage": .array(partial), "unique_insights": .array(unique),
                        "blind_spots": .array(blindSpots)])
    }

    // MARK: researcher (web tools)

    static func offersTools(_ request: JSONValue) -> Bool {
        let names = request["tools"]?.arrayValue?.compactMap { $0["function"]?["name"]?.stringValue } ?? []
        return names.contains("web_search") || names.contains("web_fetch") ? request["tool_choice"]?.stringValue != "none" : false
    }

    /// The tool messages' contents, in order.
    static func toolResults(_ request: JSONValue) -> [String] {
        (request["messages"]?.arrayValue ?? []).filter { $0["role"]?.stringValue == "tool" }.compactMap { $0["content"]?.stringValue }
    }

    static func researcherTurn(_ request: JSONValue, loop: Bool, parallel: Int) -> OuterTurn {
        let messages = request["messages"]?.arrayValue ?? []
        let question = messages.first { $0["role"]?.stringValue == "user" }?["content"]?.stringValue ?? ""
        let results = toolResults(request)
        let parsed = results.map { try? JSONValue.parse(Array($0.utf8)) }
        if offersTools(request) {
            func search(_ query: String) -> OuterTurn {
                .callTools(Array(repeating: ("web_search", #"{"query":\#(JSONWriting.quoted(query)),"max_results":3}"#), count: max(1, parallel)))
            }
            if loop { return search("\(question.prefix(40)) \(results.count)") }
            let urls = question.split(whereSeparator: { $0 == " " || $0 == "\n" }).map(String.init).filter { $0.contains("://") }
            if !urls.isEmpty {
                if results.count < urls.count { return .callTools([("web_fetch", #"{"url":\#(JSONWriting.quoted(urls[results.count]))}"#)]) }
            } else if results.isEmpty {
                return search(String(question.prefix(80)))
            } else if results.count == max(1, parallel), let url = parsed.last??["results"]?.arrayValue?.first?["url"]?.stringValue {
                return .callTools([("web_fetch", #"{"url":\#(JSONWriting.quoted(url))}"#)])
            }
        }
        var lines = ["A researcher's view on \"\(question.prefix(80))\":", "- The answer should rest on evidence rather than intuition."]
        var cited: [String] = []
        for result in parsed {
            if let error = result?["error"]?.stringValue {
                lines.append("- A web tool failed: \(error)")
            } else if let found = result?["results"]?.arrayValue {
                lines.append("- A search found \(found.count) results.")
            } else if let url = result?["url"]?.stringValue {
                let title = result?["title"]?.stringValue ?? url
                let excerpt = (result?["content"]?.stringValue ?? "").split(separator: "\n").first { !$0.hasPrefix("#") } ?? ""
                lines.append("- [\(title)](\(url)) reports: \(excerpt.prefix(120))"
                    + (result?["truncated"]?.boolValue == true ? " (page truncated)" : ""))
                cited.append(url)
            }
        }
        if results.isEmpty { lines.append("- I answered without web tools.") }
        if request["tool_choice"]?.stringValue == "none" { lines.append("- I stopped searching after \(results.count) tool results.") }
        lines.append("- On the overall verdict: the evidence is mixed.")
        return .text(lines.joined(separator: "\n"))
    }

    // MARK: outer model

    enum OuterTurn {
        case callTools([(name: String, arguments: String)])
        case text(String)
    }

    /// `withFusion`: a caller's tool named in the prompt is called in one turn with fusion (1:
    /// after it, 2: before it).
    static func outerTurn(_ request: JSONValue, lastUserText: String, withFusion: Int = 0, badArguments: Int = 0) -> OuterTurn {
        let messages = request["messages"]?.arrayValue ?? []
        if let last = messages.last, last["role"]?.stringValue == "tool" {
            return .text(finalAnswer(afterToolResultsIn: messages))
        }
        let tools = request["tools"]?.arrayValue ?? []
        let names = tools.compactMap { $0["function"]?["name"]?.stringValue }
        let lower = lastUserText.lowercased()
        if let callerTool = names.first(where: { $0 != "fusion" && lower.contains($0.lowercased()) }) {
            let arguments = switch badArguments {
            case 1: #"{"query":\#(JSONWriting.quoted(lastUserText).dropLast())"#  // cut inside the string
            case 2: #"{"query": ]]}"#
            default: #"{"query":\#(JSONWriting.quoted(lastUserText))}"#
            }
            let call = (callerTool, arguments)
            if withFusion > 0 && names.contains("fusion") {
                let fusion = ("fusion", #"{"question":\#(JSONWriting.quoted(lastUserText))}"#)
                return .callTools(withFusion == 2 ? [fusion, call] : [call, fusion])
            }
            return .callTools([call])
        }
        let required = request["tool_choice"]?.stringValue == "required"
        let words = lastUserText.split(whereSeparator: { $0 == " " }).count
        if names.contains("fusion") && (required || words >= 4) {
            return .callTools([("fusion", #"{"question":\#(JSONWriting.quoted(lastUserText))}"#)])
        }
        return .text("A direct answer from the simulated outer model: \"\(lastUserText.prefix(80))\" needs no deliberation.")
    }

    /// The final answer after the tool results ending `messages`: written from the fusion
    /// tool's result (the one answering a fusion call, else the last), citing the other results.
    static func finalAnswer(afterToolResultsIn messages: [JSONValue]) -> String {
        let results = messages.reversed().prefix { $0["role"]?.stringValue == "tool" }.reversed()
        let turn = messages.dropLast(results.count).last
        let fusionIDs = Set((turn?["tool_calls"]?.arrayValue ?? []).filter { $0["function"]?["name"]?.stringValue == "fusion" }
            .compactMap { $0["id"]?.stringValue })
        let fusion = results.first { fusionIDs.contains($0["tool_call_id"]?.stringValue ?? "") } ?? results.last
        var answer = finalAnswer(toolResult: fusion?["content"]?.stringValue ?? "")
        for other in results where results.count > 1 && other["tool_call_id"] != fusion?["tool_call_id"] {
            answer += "\nYour tool \(other["tool_call_id"]?.stringValue ?? "?") said: \((other["content"]?.stringValue ?? "").prefix(80))"
        }
        return answer
    }

    /// The final answer an outer model writes from the fusion tool's result.
    static func finalAnswer(toolResult: String) -> String {
        guard let result = try? JSONValue.parse(Array(toolResult.utf8)) else {
            return "The deliberation tool returned something unreadable, so this answer stands alone."
        }
        if result["status"]?.stringValue == "error" {
            return "The panel could not answer (\(result["failure_reason"]?.stringValue ?? "error")), so this is a direct answer without deliberation."
        }
        let requested = result["panel"]?["requested"]?.intValue ?? 0
        let answered = result["panel"]?["answered"]?.intValue ?? 0
        var lines = ["Drawing on a panel of \(requested) models (\(answered) answered):"]
        guard let analysis = result["analysis"] else {
            let reason = result["analysis_failure"]?["reason"]?.stringValue ?? "unknown"
            lines.append("The judge's comparison was unavailable (\(reason)), so this synthesis reads the answers directly.")
            for response in result["responses"]?.arrayValue ?? [] {
                lines.append("- \(response["model"]?.stringValue ?? "?") contributed \(response["content"]?.stringValue?.count ?? 0) characters.")
            }
            return lines.joined(separator: "\n")
        }
        let consensus = analysis["consensus"]?.arrayValue?.compactMap(\.stringValue) ?? []
        if !consensus.isEmpty { lines.append("Where they agree: " + consensus.joined(separator: " ")) }
        for item in analysis["contradictions"]?.arrayValue ?? [] {
            let stances = (item["stances"]?.arrayValue ?? []).map {
                "\($0["model"]?.stringValue ?? "?") says \(($0["stance"]?.stringValue ?? "?").trimmingCharacters(in: CharacterSet(charactersIn: ".")))"
            }
            lines.append("Where they differ on \(item["topic"]?.stringValue ?? "?"): " + stances.joined(separator: "; "))
        }
        for item in analysis["partial_coverage"]?.arrayValue ?? [] {
            let models = item["models"]?.arrayValue?.compactMap(\.stringValue).joined(separator: ", ") ?? ""
            lines.append("Raised only by \(models): \(item["point"]?.stringValue ?? "")")
        }
        for item in analysis["unique_insights"]?.arrayValue ?? [] {
            lines.append("A unique insight from \(item["model"]?.stringValue ?? "?"): \(item["insight"]?.stringValue ?? "")")
        }
        let blind = analysis["blind_spots"]?.arrayValue?.compactMap(\.stringValue) ?? []
        if !blind.isEmpty { lines.append("Not covered by any model: " + blind.joined(separator: "; ") + ".") }
        let sources = (result["sources"]?.arrayValue ?? []).compactMap { source -> String? in
            guard let url = source["url"]?.stringValue else { return nil }
            return "[\(source["title"]?.stringValue ?? url)](\(url))"
        }
        if !sources.isEmpty { lines.append("Sources: " + sources.joined(separator: ", ")) }
        return lines.joined(separator: "\n")
    }
}
