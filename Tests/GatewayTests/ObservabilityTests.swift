import EventLoop
import Foundation
import GatewayCore
import Logging
import PropertyBased
import Providers
import Testing
@testable import Gateway

/// Metrics and log lines without sockets: every label value from a fixed set whatever the input,
/// log lines that stay one parseable line and carry no secret.
@Suite struct ObservabilityTests {
    /// What an upstream, a client or a model might put where a label value comes from.
    static let hostile = Gen.element(of: ["", "upstream_error", "mock_error", "rate_limited", "x\ny", "a\"b", "{}", "web_search",
                                          "web_fetch", "timeout", "cancelled", "mock", "openrouter", "sk-secret-123456", "ü", "\u{2028}",
                                          String(repeating: "z", count: 300), "other", "4xx"])
        .array(of: 1...3).map { $0.compactMap { $0 }.joined() }

    static func shared(providers: [String] = ["mock", "openrouter"], keys: [String] = []) -> GatewayShared {
        var config = GatewayConfig()
        for name in providers { config.providers[name] = .init(name: name, baseURL: "http://127.0.0.1:1/v1") }
        return GatewayShared(router: ModelRouter(config: config, environment: [:]), gatewayKeys: keys, web: nil)
    }

    static let silent = Logger(label: "test") { _ in SwiftLogNoOpLogHandler() }

    /// Every error code the gateway's sources give (`code: "…"`) is a label of its own, so
    /// `other` means an upstream's code (review 68D #2: three of the gateway's were `other`).
    /// A log line's fields are sorted by key in byte order, by eight-byte prefixes first
    /// (`sortByKey`): the same order as sorting them with the byte comparison itself, whatever
    /// the keys (shared prefixes longer than eight bytes, a key that begins another, NUL, non-ASCII).
    @Test func fieldsSortByKeyAsTheByteComparisonOrdersThem() async {
        let keys = Gen.element(of: ["a", "ab", "a\u{0}", "upstream_id", "upstream_request_id", "upstream_ttft_ms", "upstream",
                                    "error", "error_code", "é", "z", "", "usage_estimated", "prompt_tokens", "prompt"])
            .array(of: 0...20).map { $0.compactMap { $0 } }
        await propertyCheck(count: 500, input: keys) { keys in
            var fields = keys.enumerated().map { LogField(key: .metadata($0.element), value: .int(Int64($0.offset))) }
            let expected = fields.map(\.key.string).sorted { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }
            fields.sortByKey()
            #expect(fields.map(\.key.string) == expected, "\(keys)")
        }
    }

    @Test func everyErrorCodeInTheSourcesIsALabel() throws {
        let sources = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("Sources")
        let pattern = try NSRegularExpression(pattern: #"code: "([a-z0-9_]+)""#)
        var found: Set<String> = []
        let files = try #require(FileManager.default.enumerator(at: sources, includingPropertiesForKeys: nil))
        for case let file as URL in files where file.pathExtension == "swift" && !file.path.contains("/MockUpstream/") {
            let text = try String(contentsOf: file, encoding: .utf8)
            for match in pattern.matches(in: text, range: NSRange(text.startIndex..., in: text)) {
                found.insert((text as NSString).substring(with: match.range(at: 1)))
            }
        }
        #expect(found.count > 30, "the sources were read: \(found.count) codes")
        #expect(found.subtracting(MetricLabels.errorCodes).isEmpty, "\(found.subtracting(MetricLabels.errorCodes).sorted())")
    }

    /// The allowed values of each label (`le` is a histogram's bucket bound, not ours to bound).
    static func allowed(_ label: String) -> Set<String>? {
        switch label {
        case "route": MetricLabels.routes
        case "kind": MetricLabels.kinds.union(LimitDecision.Kind.allCases.map(\.rawValue))  // requests' kinds; the limit exceeded
        case "status": Set(MetricLabels.statuses.map(String.init) + ["4xx", "5xx", "other"])
        case "code": MetricLabels.errorCodes.union(["other"])
        case "provider": ["mock", "openrouter", "other"]
        case "reason": MetricLabels.memberReasons.union(["other"])
        case "tool": MetricLabels.webTools.union(["other"])
        case "outcome": Set(["ok", "error"] + GatewayMetrics.limitOutcomes)  // web tools; limit decisions
        case "phase": MetricLabels.phases
        case "origin": Set(["gateway", "upstream"])
        case "le": nil
        default: []
        }
    }

    /// Every (label, value) pair in the exposition text.
    static func labels(_ text: String) -> [(String, String)] {
        var pairs: [(String, String)] = []
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            guard let open = line.firstIndex(of: "{"), let close = line.lastIndex(of: "}") else { continue }
            for pair in line[line.index(after: open)..<close].split(separator: ",") {
                let parts = pair.split(separator: "=", maxSplits: 1)
                guard parts.count == 2 else { Issue.record("unparsable label in \(line)"); continue }
                pairs.append((String(parts[0]), String(parts[1].dropFirst().dropLast())))
            }
        }
        return pairs
    }

    @Test func noLabelTakesAValueFromOutside() async {
        let shared = Self.shared()
        await propertyCheck(count: 200, input: Self.hostile, Self.hostile, Gen.int(in: -5...1_000), Gen.bool) { code, name, status, cancelled in
            var record = GatewayRecordFixture.record(kind: cancelled ? .proxy : .fusion)
            record.provider = name
            var call = CallRecord(role: name, model: name, provider: name)
            call.error = RecordError(type: name, code: code, message: code)
            call.cancelled = cancelled
            record.innerCalls = [call, CallRecord(role: "panel", model: "m", provider: "mock", cancelled: true)]
            record.close(ResponseEnding(sentStatus: status, error: RecordError(type: name, code: code, message: name), cancelled: cancelled),
                         durationMilliseconds: 1)
            shared.file(record, prompt: nil, log: Self.silent)
            shared.metrics.countWebTool(name: name, failed: cancelled)
            shared.metrics.countMemberFailure(reason: code)
            shared.metrics.countUpstreamError(provider: name, code: code)
            shared.metrics.provider(name).countRetry()
            shared.metrics.provider(code).observeGap(nanoseconds: 1_000)
        }
        let text = String(decoding: shared.metrics.render(), as: UTF8.self)
        let pairs = Self.labels(text)
        #expect(!pairs.isEmpty)
        for (label, value) in pairs {
            guard let allowed = Self.allowed(label) else { continue }
            #expect(allowed.contains(value), "label \(label)=\(value) is not in its fixed set")
        }
        #expect(text.split(separator: "\n").count < 2_000, "the series stay few, whatever came in")
    }

    /// `requests_total` keeps each series it has made (one per route, kind and status label): the
    /// counts rendered are a tally of what was counted, whatever the order and the statuses.
    /// Families with a known label set are there from the start, at 0, so `rate()` and alerts on
    /// them work before their first event; counting moves the series that was shown.
    @Test func knownSeriesStartAtZero() {
        let metrics = GatewayMetrics(providerNames: ["mock"])
        let text = String(decoding: metrics.render(), as: UTF8.self)
        for series in [#"fusion_gateway_fusion_member_failures_total{reason="timeout"} 0"#, #"fusion_gateway_fusion_member_failures_total{reason="cancelled"} 0"#,
                       #"fusion_gateway_web_tool_calls_total{tool="web_search",outcome="error"} 0"#,
                       #"fusion_gateway_limit_decisions_total{outcome="limited"} 0"#, #"fusion_gateway_rate_limited_total{kind="budget-day"} 0"#] {
            #expect(text.contains(series), "\(series)")
        }
        metrics.countRateLimited(kind: "budget-day")
        #expect(String(decoding: metrics.render(), as: UTF8.self).contains(#"fusion_gateway_rate_limited_total{kind="budget-day"} 1"#))
    }

    @Test func requestCountsAreATallyOfWhatWasCounted() async {
        let requests = zip(Gen.element(of: RecordRoute.allCases), Gen.element(of: RecordKind.allCases),
                               Gen.element(of: [200, 200, 400, 429, 499, 502, 418, 599, 700, -1]))
            .array(of: 1...60)
        await propertyCheck(count: 100, input: requests) { requests in
            let metrics = GatewayMetrics(providerNames: ["mock"])
            var tally: [String: Int] = [:]
            for (route, kind, status) in requests {
                metrics.countRequest(route: route!, kind: kind!, status: status!)
                tally[#"fusion_gateway_requests_total{route="\#(route!.rawValue)",kind="\#(kind!.rawValue)",status="\#(MetricLabels.status(status!))"}"#, default: 0] += 1
            }
            var rendered: [String: Int] = [:]
            for line in String(decoding: metrics.render(), as: UTF8.self).split(separator: "\n")
            where line.hasPrefix("fusion_gateway_requests_total{") {
                let parts = line.split(separator: " ")
                rendered[String(parts[0])] = Int(parts[1])
            }
            #expect(rendered == tally)
        }
    }

    @Test func costsAddUpAsDecimalsInRecordsAndMetrics() async {
        let shared = Self.shared()
        // Costs as an upstream computes them (a price times tokens, with float noise).
        let tokens = Gen.int(in: 0...5_000).array(of: 1...20)
        await propertyCheck(count: 100, input: tokens) { counts in
            let usages = counts.map { Usage(totalTokens: Int64($0), cost: Double($0) * 0.000002) }
            let total = usages.reduce(Usage(), +)
            let units = counts.reduce(0) { $0 + $1 * 20_000 }  // in 1e-10 dollars, exactly
            #expect(total.cost == Double(units) / 1e10)
            #expect(GatewayMetrics.decimal(Int128(units)) == Self.decimal(units))
            // The sum is the double of the exact decimal sum: it prints as that decimal.
            #expect(Double(Self.decimal(units)) == total.cost)
            let text = String(decoding: JSONValue.object(["cost": .double(total.cost)]).serialized(), as: UTF8.self)
            #expect(text.count <= #"{"cost":0.0000000001}"#.count, "\(text)")
        }
        var record = GatewayRecordFixture.record(kind: .proxy)
        record.usage = Usage(totalTokens: 344, cost: 344 * 0.000002)
        shared.file(record, prompt: nil, log: Self.silent)
        shared.file(record, prompt: nil, log: Self.silent)
        // What a key was charged for a stream whose upstream reported no cost (review 64E #2).
        var charged = GatewayRecordFixture.record(kind: .proxy)
        charged.spendMicros = 1_234
        shared.file(charged, prompt: nil, log: Self.silent)
        let text = String(decoding: shared.metrics.render(), as: UTF8.self)
        #expect(text.contains(#"fusion_gateway_cost_usd_total{kind="proxy"} 0.001376"#))
        #expect(text.contains(#"fusion_gateway_spend_usd_total{kind="proxy"} 0.001234"#), "\(text)")
        // A cost at the clamp (1e9 dollars, beyond 64 bits of units) leaves the counter counting
        // (review 59B #6: it stuck at 922337203.68 for good).
        var huge = record
        huge.usage = Usage(totalTokens: 1, cost: 1e308)
        shared.file(huge, prompt: nil, log: Self.silent)
        shared.file(record, prompt: nil, log: Self.silent)
        let after = String(decoding: shared.metrics.render(), as: UTF8.self)
        #expect(after.contains(#"fusion_gateway_cost_usd_total{kind="proxy"} 1000000000.002064"#), "\(after)")
    }

    static func decimal(_ units: Int) -> String {
        var text = String(format: "%d.%010d", units / 10_000_000_000, units % 10_000_000_000)
        while text.hasSuffix("0") { text.removeLast() }
        if text.hasSuffix(".") { text.removeLast() }
        return text
    }

    @Test func jsonLogLinesAreOneObjectEachAndCarryNoSecret() throws {
        // Two gateways' secrets, added as each starts: one redactor each, none for a known one.
        let redaction = LogRedaction()
        redaction.add(["sk-secret-123456"])
        redaction.add(["gw-key-abcdef", "sk-secret-123456"])
        redaction.add(["sk-secret-123456"])
        #expect(redaction.redactor.redactors.count == 2)
        let lines = Lock([[UInt8]]())
        let handler = GatewayLogHandler(label: "gw", format: .json, redaction: redaction) { line in lines.withLock { $0.append(line) } }
        let logger = Logger(label: "gw") { _ in handler }
        logger.info("line one\nline two \u{2028} \"quoted\" sk-secret-123456", metadata: [
            "generation_id": "gen-1", "status": .stringConvertible(502), "cost_usd": .stringConvertible(0.000688),
            "cancelled": .stringConvertible(true), "error": "echoed gw-key-abcdef", "msg": "shadow",
            "list": .array(["a", "sk-secret-123456"]), "nested": .dictionary(["k": .stringConvertible(1.5)]),
        ])
        let captured = lines.withLock { $0 }
        #expect(captured.count == 1)
        let line = try #require(captured.first)
        #expect(line.last == UInt8(ascii: "\n") && line.filter { $0 == UInt8(ascii: "\n") }.count == 1)
        let text = String(decoding: line, as: UTF8.self)
        #expect(!text.contains("sk-secret-123456") && !text.contains("gw-key-abcdef"))
        #expect(!text.contains("\u{2028}"), "escaped: a line splitter must not see a break")
        let json = try JSONValue.parse(Array(line.dropLast()))
        #expect(json["msg"]?.stringValue?.hasPrefix("line one\nline two") == true)
        #expect(json["level"] == .string("info") && json["logger"] == .string("gw"))
        #expect(json["ts"]?.stringValue?.hasSuffix("Z") == true)
        #expect(json["status"] == .int(502) && json["cancelled"] == .bool(true) && json["cost_usd"] == .double(0.000688))
        #expect(json["meta_msg"] == .string("shadow"), "a field never shadows the entry's own")
        #expect(json["error"] == .string("echoed [redacted]"))
        #expect(json["list"] == .array([.string("a"), .string("[redacted]")]))
        #expect(json["nested"]?["k"] == .double(1.5))
    }

    /// A logger's own fields (a request's `generation_id`) and an entry's come out together,
    /// sorted by key, and where both name one, the entry's value is the one written (once).
    @Test func aLoggersFieldsAndAnEntrysComeOutSortedTheEntrysWinning() throws {
        for format in GatewayLogHandler.Format.allCases {
            let lines = Lock([[UInt8]]())
            var logger = Logger(label: "gw") { _ in
                GatewayLogHandler(label: "gw", format: format, redaction: LogRedaction()) { line in lines.withLock { $0.append(line) } }
            }
            logger[metadataKey: "generation_id"] = "gen-1"
            logger[metadataKey: "status"] = "own"
            logger.info("m", metadata: ["status": .stringConvertible(200), "b": "x", "z": "y"])
            logger.info("n")
            let captured = lines.withLock { $0 }.map { String(decoding: $0, as: UTF8.self) }
            #expect(captured.count == 2)
            if format == .json {
                let first = try JSONValue.parse(Array(captured[0].utf8.dropLast()))
                #expect(first["status"] == .int(200) && first["generation_id"] == .string("gen-1") && first["b"] == .string("x"))
                #expect(captured[0].components(separatedBy: "\"status\"").count == 2, "written once: \(captured[0])")
                #expect(try JSONValue.parse(Array(captured[1].utf8.dropLast()))["status"] == .string("own"))
            } else {
                #expect(captured[0].hasSuffix(": m b=x generation_id=gen-1 status=200 z=y\n"), "\(captured[0])")
                #expect(captured[1].hasSuffix(": n generation_id=gen-1 status=own\n"), "\(captured[1])")
            }
        }
    }

    @Test func textLogLinesStayOneLine() {
        let redaction = LogRedaction()
        redaction.add(["sk-secret-123456"])
        let lines = Lock([[UInt8]]())
        let handler = GatewayLogHandler(label: "gw", format: .text, redaction: redaction) { line in lines.withLock { $0.append(line) } }
        Logger(label: "gw") { _ in handler }.info("two\nlines", metadata: ["model": "a b\r\nforged=1 sk-secret-123456"])
        let text = String(decoding: lines.withLock { $0 }.first ?? [], as: UTF8.self)
        #expect(text.filter { $0 == "\n" }.count == 1 && text.hasSuffix("\n"))
        #expect(text.contains(#"two\nlines"#))
        #expect(text.contains(#"model="a b\r\nforged=1 [redacted]""#))
        // A backslash is escaped too: a value ends only at its own quote (review 46: `gpt\"` closed
        // it early and `status=200` read as a field of its own).
        Logger(label: "gw") { _ in handler }.info("x", metadata: ["model": #"gpt\" status=200 x=\"#])
        let forged = String(decoding: lines.withLock { $0 }.last ?? [], as: UTF8.self)
        #expect(forged.contains(#"model="gpt\\\" status=200 x=\\""#), "\(forged)")
    }

    /// Pieces that break a naive key=value line: separators, quotes, escapes' own backslash,
    /// C0, DEL and C1 controls, the Unicode line breaks, and a space or quote hidden in a grapheme
    /// cluster by a combining mark (a `Character` compare does not see it).
    static let logPieces = Gen.element(of: ["a", "42", " ", "=", "\"", "\\", "\n", "\r", "\t", "\u{0}", "\u{1b}", "\u{7f}", "\u{85}",
                                            "\u{9f}", "\u{a0}", "\u{2028}", "\u{2029}", "é", "e\u{301}", " \u{301}", "\"\u{301}",
                                            "=\u{301}", "😀", "👩‍👩‍👧", "k=v", "\\u{41}", "\\\"",
                                            // Characters that join the line's own delimiters (review 83A #3): combining
                                            // marks, a joiner, a spacing mark, a variation selector, an emoji modifier (at
                                            // a value's start), prepended concatenation marks (at its end).
                                            "\u{301}", "\u{200d}", "\u{903}", "\u{fe0f}", "\u{1f3fb}", "\u{600}", "\u{6dd}", "\u{110bd}",
                                            // After an escape (review 84 #1): a mark joins its last character.
                                            "\u{1b}\u{301}", "\n\u{301}", "\u{85}\u{301}", "\"\u{301}", "\\\u{301}", "\u{600}\u{600}",
                                           ]).map { $0 ?? "" }.array(of: 0...6).map { $0.joined() }

    @Test func textLogLinesReadBackToTheirValuesWhateverTheyHold() async {
        await propertyCheck(count: 500, input: Self.logPieces, Self.logPieces) { first, second in
            let line = LogTextLine.line(level: .info, label: "gw", message: "m", metadata: ["a": .string(first), "b": .string(second)],
                                        redactor: RedactorChain(redactors: []))
            #expect(line.last == UInt8(ascii: "\n") && line.filter { $0 == UInt8(ascii: "\n") }.count == 1)
            let text = String(decoding: line.dropLast(), as: UTF8.self)
            #expect(!text.unicodeScalars.contains { $0.value < 0x20 || (0x7F..<0xA0).contains($0.value) || $0.value == 0x2028 || $0.value == 0x2029 })
            let fields = Self.readFields(text)
            #expect(fields.map(\.key) == ["a", "b"], "\(text)")
            let byCharacter = Self.readFieldsByCharacter(text)
            #expect(byCharacter.map(\.key) == ["a", "b"], "a reader stepping through characters: \(text)")
            #expect(byCharacter.map { Array($0.value.unicodeScalars) } == [Array(first.unicodeScalars), Array(second.unicodeScalars)],
                    "a reader stepping through characters: \(text)")
            #expect(fields.first.map { Array($0.value.unicodeScalars) == Array(first.unicodeScalars) } == true, "\(text)")
            #expect(fields.last.map { Array($0.value.unicodeScalars) == Array(second.unicodeScalars) } == true, "\(text)")
        }
    }

    /// Review 84's cases: a mark after an escape joined the escape's last character (`}́`, `ń`)
    /// and a reader stepping through characters ran past the value; a prepended mark before an
    /// escaped one hid its backslash. Each value reads back whole both ways.
    @Test func marksAroundEscapesReadBackWhole() {
        for value in ["bad \u{1b}\u{301}", "a\n\u{301}b", "a\u{85}\u{301}b", "x\u{600}\u{600}", "q\"\u{301}", "\\\u{301}x", "e\u{301} \u{301}"] {
            let line = LogTextLine.line(level: .info, label: "gw", message: "m", metadata: ["a": .string(value), "b": "x"],
                                        redactor: RedactorChain(redactors: []))
            let text = String(decoding: line.dropLast(), as: UTF8.self)
            let fields = Self.readFieldsByCharacter(text)
            #expect(fields.map(\.key) == ["a", "b"] && fields.first.map { Array($0.value.unicodeScalars) } == Array(value.unicodeScalars), "\(text)")
        }
    }

    @Test func textLogLineTimestampsAndNumbersArePadded() {
        var out: [UInt8] = []
        LogTextLine.appendDecimal(7, digits: 3, to: &out)
        LogTextLine.appendDecimal(1234, digits: 2, to: &out)
        LogTextLine.appendDecimal(0, digits: 1, to: &out)
        LogTextLine.appendDecimal(-5, digits: 2, to: &out)
        LogTextLine.appendDecimal(Int.max, digits: 4, to: &out)
        #expect(String(decoding: out, as: UTF8.self) == "007" + "1234" + "0" + "00" + String(Int.max))
        var stamp: [UInt8] = []
        LogTextLine.appendTimestamp(to: &stamp)
        let text = String(decoding: stamp, as: UTF8.self)
        #expect(text.count == 24 && text.hasSuffix("Z") && text.hasPrefix("20"), "\(text)")
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        let date = formatter.date(from: text)
        #expect(date.map { abs($0.timeIntervalSinceNow) < 60 } == true, "\(text)")
    }

    /// The fields as a reader that steps through grapheme clusters (`Character`s) reads them: a
    /// quote, `=`, space, backslash or escape's brace joined to its neighbour into one character
    /// is not one to it (reviews 83A #3, 84 #1).
    static func readFieldsByCharacter(_ line: String) -> [(key: String, value: String)] {
        guard let header = line.range(of: " info gw: m") else { return [] }
        let characters = Array(line[header.upperBound...])
        var fields: [(key: String, value: String)] = []
        var index = 0
        while index < characters.count, characters[index] == " " {
            index += 1
            var key = ""
            while index < characters.count, characters[index] != "=" { key.append(characters[index]); index += 1 }
            index += 1
            var value = ""
            let quoted = index < characters.count && characters[index] == "\""
            if quoted { index += 1 }
            while index < characters.count, quoted ? characters[index] != "\"" : characters[index] != " " {
                let character = characters[index]
                index += 1
                guard character == "\\", index < characters.count else { value.append(character); continue }
                let escape = characters[index]
                index += 1
                switch escape {
                case "n": value.append("\n")
                case "r": value.append("\r")
                case "t": value.append("\t")
                case "u":
                    var hex = ""
                    index += 1  // {
                    while index < characters.count, characters[index] != "}" { hex.append(characters[index]); index += 1 }
                    index += 1
                    value.unicodeScalars.append(UInt32(hex, radix: 16).flatMap(Unicode.Scalar.init) ?? "?")
                default: value.append(escape)
                }
            }
            if quoted { index += 1 }
            fields.append((key, value))
        }
        return index >= characters.count ? fields : fields + [("<rest>", String(characters[index...]))]
    }

    /// A reader of the text format's fields after `<ts> info gw: m`: `key=value` separated by one
    /// space, a value in quotes up to its own closing quote.
    static func readFields(_ line: String) -> [(key: String, value: String)] {
        let scalars = Array(line.unicodeScalars)
        guard let header = line.range(of: " info gw: m") else { return [] }
        var index = line.unicodeScalars.distance(from: line.unicodeScalars.startIndex, to: header.upperBound)
        var fields: [(key: String, value: String)] = []
        while index < scalars.count, scalars[index] == " " {
            index += 1
            var key = String.UnicodeScalarView()
            while index < scalars.count, scalars[index] != "=" { key.append(scalars[index]); index += 1 }
            index += 1
            var value = String.UnicodeScalarView()
            let quoted = index < scalars.count && scalars[index] == "\""
            if quoted { index += 1 }
            while index < scalars.count {
                let scalar = scalars[index]
                if quoted ? scalar == "\"" : scalar == " " { break }
                index += 1
                guard scalar == "\\", index < scalars.count else { value.append(scalar); continue }
                let escape = scalars[index]
                index += 1
                switch escape {
                case "n": value.append("\n")
                case "r": value.append("\r")
                case "t": value.append("\t")
                case "u":
                    var hex = ""
                    index += 1  // {
                    while index < scalars.count, scalars[index] != "}" { hex.unicodeScalars.append(scalars[index]); index += 1 }
                    index += 1
                    value.append(UInt32(hex, radix: 16).flatMap(Unicode.Scalar.init) ?? "?")
                default: value.append(escape)
                }
            }
            if quoted { index += 1 }
            fields.append((String(key), String(value)))
        }
        return fields
    }

    @Test func theLogFormatAndPromptLoggingComeFromTheConfig() throws {
        let config = try GatewayConfig.parse(yaml: "server:\n  log_format: json\n  log_prompts: true\n")
        #expect(config.server.logFormat == .json && config.server.logPrompts)
        #expect(GatewayConfig().server.logFormat == .text && !GatewayConfig().server.logPrompts, "text, and no prompts, by default")
        #expect(throws: (any Error).self) { try GatewayConfig.parse(yaml: "server:\n  log_format: xml\n") }
        #expect(throws: (any Error).self) { try GatewayConfig.parse(yaml: "server:\n  log_prompts: maybe\n") }
    }

    @Test func aPromptIsLoggedOnlyWhenAllowedAndBounded() {
        let messages = [ModelMessage(role: .user, text: "first"), ModelMessage(role: .assistant, text: "x"),
                        ModelMessage(role: .user, text: String(repeating: "q", count: 5_000))]
        #expect(GatewayShared.loggedPrompt(messages, enabled: false) == nil)
        #expect(GatewayShared.loggedPrompt(messages, enabled: true)?.count == 2_001)
    }
}

/// Records for tests.
enum GatewayRecordFixture {
    static func record(kind: RecordKind) -> GenerationRecord {
        var record = GenerationRecord(id: GenerationStore.newID(), route: .chatCompletions, kind: kind, requestedModel: "mock/normal",
                                      streamed: true, created: 1, owner: nil)
        record.firstTokenMilliseconds = 1
        record.overheadMilliseconds = 0.5
        record.phases = [.init(phase: .panel, durationMilliseconds: 2, overheadMilliseconds: 0.25)]
        return record
    }
}
