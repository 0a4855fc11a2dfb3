import EventLoop
import Foundation
import Fusion
import Gateway
import GatewayCore
import MockUpstream
import Testing
import Web

/// Web search and fetch for the panel and the judge, end to end: the mock's `researcher` model
/// calls the tools, the gateway runs them against the mock's simulated SearXNG and web pages
/// (allow-listed by port; every other loopback port stays refused), sources come back as
/// citations.
@Suite struct WebToolsTests {
    static let outer = "mock/outer:pace_ms=1"

    /// A fusion request on the mock outer model, forced, with these fusion parameters.
    func body(_ question: String, parameters: String, stream: Bool = true, extra: String = "") -> String {
        #"{"model":"\#(Self.outer)","stream":\#(stream),"tool_choice":"required","messages":[{"role":"user","content":"\#(question)"}],"tools":[{"type":"openrouter:fusion","parameters":\#(parameters)}]\#(extra)}"#
    }

    func panel(_ models: String...) -> String {
        #"{"analysis_models":[\#(models.map { "\"\($0)\"" }.joined(separator: ","))]"#
    }

    func content(_ response: TestResponse) -> String {
        response.plainChunksJSON.compactMap { $0["choices"]?.arrayValue?.first?["delta"]?["content"]?.stringValue }.joined()
    }

    func annotations(_ response: TestResponse) -> [JSONValue] {
        response.plainChunksJSON.flatMap { $0["choices"]?.arrayValue?.first?["delta"]?["annotations"]?.arrayValue ?? [] }
    }

    /// What panel member 0 said, from the progress comments.
    /// The member's readable pieces (whole words or lines), joined by spaces: sentences within
    /// a line read as the model wrote them.
    func memberText(_ response: TestResponse, model: String) -> String {
        response.comments.filter { $0.hasPrefix("fusion panel[0] \(model) | ") }
            .map { String($0.dropFirst("fusion panel[0] \(model) | ".count)) }
            .joined(separator: " ")
    }

    /// A search backend that cannot be reached is named, its address not: the failure reaches
    /// the member's model, the progress, the analysis and the answer (review 78 #3: curl's text
    /// gave them the operator's internal host and port).
    @Test func anUnreachableSearchBackendsAddressStaysTheOperators() throws {
        let log = CapturedLog()
        let env = try TestEnvironment(web: true, logHandler: log) { config in
            config.web?.search = SearchBackend(kind: .searxng, baseURL: "http://127.0.0.1:9")
        }
        let response = try env.chat(body("Research the history of congestion pricing", parameters: panel("mock/researcher:pace_ms=1") + "}"))
        #expect(response.status == 200)
        #expect(response.text.contains("search backend failed"), "\(response.text.suffix(2000))")
        #expect(!response.text.contains("127.0.0.1") && !response.text.contains("port 9"), "\(response.text.suffix(2000))")
        // The operator's log has it whole (review 79 #10).
        #expect(log.entries.contains { $0.message == "web search backend failed" && ($0.metadata["error_detail"] ?? "").contains("127.0.0.1") },
                "\(log.entries.map(\.text))")
    }

    /// A client that leaves while a member loops on its tools: the member's finished turns and
    /// its running one are in the record's usage, as in its calls and its spend (review 97 #1:
    /// the session's stats had no row for a member still running, and the usage left its turns
    /// out while the spend charged them).
    @Test(.timeLimit(.minutes(1)))
    func aClientLeavingMidToolLoopIsChargedEveryTurnInTheUsage() throws {
        let env = try TestEnvironment(web: true)
        for seconds in [0.3, 1.0] {
            let client = try env.client()
            try client.send(TestEnvironment.post("/v1/chat/completions", body: body(
                "Research the history of congestion pricing", parameters: panel("mock/paced:pace_ms=1", "mock/researcher:loop=1:pace_ms=20") + "}")))
            let started = Date()
            _ = try? client.readResponse { _ in
                if Date().timeIntervalSince(started) > seconds { client.disconnect() }
            }
            let id = client.lastResponseHeaders.first { $0.0.lowercased() == "x-generation-id" }?.1
            var found: JSONValue?
            #expect(env.eventually(timeoutSeconds: 5) {
                found = try? env.generation(id)
                return found != nil
            }, "\(id ?? "no id")")
            let record = try #require(found)
            let calls = record["inner_calls"]?.arrayValue ?? []
            #expect(calls.filter { $0["role"] == .string("panel") }.count >= 2, "\(calls)")
            for field in ["prompt_tokens", "completion_tokens"] {
                let sum = calls.compactMap { $0["usage"]?[field]?.doubleValue }.reduce(0, +)
                #expect(record["usage"]?[field]?.doubleValue == sum, "\(field) after \(seconds) s: \(record)")
            }
        }
    }

    @Test func aMemberSearchesReadsAndAnswersWithCitedSources() throws {
        let env = try TestEnvironment(web: true)
        let researcher = "mock/researcher:pace_ms=1"
        let response = try env.chat(body("What do studies say about congestion pricing?", parameters: panel(researcher) + "}",
                                         extra: #","stream_options":{"include_usage":true}"#))
        #expect(response.status == 200)
        let comments = response.comments
        let prefix = "fusion panel[0] \(researcher): "
        #expect(comments.contains { $0.hasPrefix(prefix + #"web_search {"query":"What do studies say"#) })
        #expect(comments.contains { $0.hasPrefix(prefix + "web_search done: 3 results") })
        let base = "http://127.0.0.1:\(env.mockPort)/web/page/"
        #expect(comments.contains { $0 == prefix + #"web_fetch {"url":"\#(base)1"}"# })
        #expect(comments.contains { $0.hasPrefix(prefix + "web_fetch done: page read") })
        // The member read the page as text (no markup) and cited it.
        let said = memberText(response, model: researcher)
        #expect(said.contains("[Simulated source 1](\(base)1) reports: This page is served by the mock upstream's simulated web."), "\(said)")
        #expect(!said.contains("<"))
        // The final answer lists the sources; the annotations carry them, deduplicated (the read
        // page was also a search result), with the span of the markdown link where cited.
        let answer = content(response)
        #expect(answer.contains("Sources: [Simulated source 1](\(base)1), [Simulated source 2](\(base)2), [Simulated source 3](\(base)3)"))
        let citations = annotations(response)
        #expect(citations.count == 3)
        #expect(citations.allSatisfy { $0["type"] == .string("url_citation") })
        let first = try #require(citations.first?["url_citation"])
        #expect(first["url"] == .string(base + "1") && first["title"] == .string("Simulated source 1"))
        #expect(first["content"]?.stringValue?.isEmpty == false)
        let scalars = Array(answer.unicodeScalars)
        let start = Int(try #require(first["start_index"]?.intValue)), end = Int(try #require(first["end_index"]?.intValue))
        #expect(String(String.UnicodeScalarView(scalars[start..<end])) == "[Simulated source 1](\(base)1)")
        // Annotations come before the finish chunk; usage and the record count the tools.
        let chunks = response.plainChunksJSON
        let annotationIndex = try #require(chunks.firstIndex { $0["choices"]?.arrayValue?.first?["delta"]?["annotations"] != nil })
        let finishIndex = try #require(chunks.firstIndex { $0["choices"]?.arrayValue?.first?["finish_reason"]?.stringValue == "stop" })
        #expect(annotationIndex < finishIndex)
        let calls = try #require(chunks.last?["usage"]?["fusion"]?["calls"]?.arrayValue)
        let member = try #require(calls.first { $0["role"] == .string("panel") })
        #expect(member["tool_calls"]?.intValue == 2)
        #expect(member["status"] == .string("ok"))
        let record = try #require(try env.generation(response.header("x-generation-id")))
        #expect(record["num_search_results"]?.intValue == 3)
        #expect(record["num_web_tool_calls"]?.intValue == 2)
        let metrics = try env.get("/metrics")
        #expect(metrics.metric(#"fusion_gateway_web_tool_calls_total{tool="web_search",outcome="ok"}"#) == 1)
        #expect(metrics.metric(#"fusion_gateway_web_tool_calls_total{tool="web_fetch",outcome="ok"}"#) == 1)
    }

    /// The tool loop behind Anthropic's and Gemini's APIs: the calls come in the vendor's stream,
    /// the results go back in its shape (`tool_result` blocks, `functionResponse` parts), the
    /// judge sits behind the same API, and the citations still reach the client.
    @Test(arguments: ["anthropic", "gemini"])
    func researchersBehindNativeAPIsSearchReadAndCite(kind: String) throws {
        let env = try TestEnvironment(web: true) { config in
            let base = config.providers["mock"]!.baseURL
            config.providers["native"] = kind == "anthropic"
                ? .init(name: "native", kind: .anthropic, baseURL: base, apiKeyEnvironmentVariable: "TEST_PROVIDER_KEY")
                : .init(name: "native", kind: .gemini, baseURL: String(base.dropLast(3)) + "/v1beta", apiKeyEnvironmentVariable: "TEST_PROVIDER_KEY")
        }
        let researcher = "native/researcher:pace_ms=1"
        let response = try env.chat(body("What do studies say about congestion pricing?",
                                         parameters: panel(researcher) + #","model":"native/outer:pace_ms=1"}"#))
        #expect(response.status == 200, "\(kind): \(response.text.suffix(500))")
        let prefix = "fusion panel[0] \(researcher): "
        #expect(response.comments.contains { $0.hasPrefix(prefix + "web_search done: 3 results") }, "\(kind)")
        #expect(response.comments.contains { $0.hasPrefix(prefix + "web_fetch done: page read") }, "\(kind)")
        let base = "http://127.0.0.1:\(env.mockPort)/web/page/"
        #expect(memberText(response, model: researcher).contains("[Simulated source 1](\(base)1) reports:"), "\(kind): the tool results reached the model")
        #expect(annotations(response).count == 3, "\(kind)")
        #expect(response.comments.contains { $0.hasPrefix("fusion judge native/outer:pace_ms=1: analysis ready") }, "\(kind)")
    }

    @Test func nonStreamedAnswerCarriesAnnotationsOnTheMessage() throws {
        let env = try TestEnvironment(web: true)
        let response = try env.chat(body("Research the history of congestion pricing", parameters: panel("mock/researcher:pace_ms=1") + "}",
                                         stream: false))
        #expect(response.status == 200)
        let message = try #require(response.json?["choices"]?.arrayValue?.first?["message"])
        let citations = try #require(message["annotations"]?.arrayValue)
        #expect(citations.count == 3)
        #expect(citations[0]["url_citation"]?["start_index"] != nil)
        #expect(response.json?["fusion"]?["sources"]?.arrayValue?.count == 3)
    }

    @Test func citationsFromSeveralMembersAreDeduplicatedByURL() throws {
        let env = try TestEnvironment(web: true)
        // Both search the same query and read the same top page: 3 distinct sources, not 8.
        let response = try env.chat(body("Research congestion pricing outcomes", parameters: #"{"analysis_models":["mock/researcher:pace_ms=1","mock/researcher:pace_ms=2"]}"#))
        #expect(response.status == 200)
        let urls = annotations(response).compactMap { $0["url_citation"]?["url"]?.stringValue }
        #expect(urls.count == 3)
        #expect(Set(urls).count == 3)
        let record = try #require(try env.generation(response.header("x-generation-id")))
        #expect(record["num_search_results"]?.intValue == 6, "two searches of 3 results each")
    }

    @Test func aMemberLoopingOnToolsIsStoppedAtTheCapAndMustAnswer() throws {
        let env = try TestEnvironment(web: true)
        let looper = "mock/researcher:loop=1:pace_ms=1"
        let response = try env.chat(body("Keep searching forever please", parameters: panel(looper) + #","max_tool_calls":2}"#,
                                         extra: #","stream_options":{"include_usage":true}"#))
        #expect(response.status == 200)
        let done = response.comments.filter { $0.hasPrefix("fusion panel[0] \(looper): web_search done") }
        #expect(done.count == 2, "exactly max_tool_calls tool-calling steps")
        #expect(memberText(response, model: looper).contains("I stopped searching after 2 tool results."))
        let calls = try #require(response.plainChunksJSON.last?["usage"]?["fusion"]?["calls"]?.arrayValue)
        #expect(calls.first { $0["role"] == .string("panel") }?["tool_calls"]?.intValue == 2)
        // Three calls to the member: two with tools, the last refusing them.
        #expect(content(response).hasPrefix("Drawing on a panel of 1 models (1 answered)"))
    }

    @Test func parallelCallsBeyondThePerTurnLimitGetAnError() throws {
        let env = try TestEnvironment(web: true) { $0.web?.maxCallsPerTurn = 2 }
        let model = "mock/researcher:loop=1:parallel=3:pace_ms=1"
        let response = try env.chat(body("Search in parallel please", parameters: panel(model) + #","max_tool_calls":1}"#))
        #expect(response.status == 200)
        let failed = response.comments.filter { $0.contains("web_search failed") }
        #expect(failed.count == 1)
        #expect(failed.first?.contains("too many tool calls in one turn: at most 2 run") == true)
        #expect(response.comments.filter { $0.contains("web_search done") }.count == 2)
    }

    @Test func toolErrorsReachTheModelWhichStillAnswers() throws {
        let env = try TestEnvironment(web: true)
        let base = "http://127.0.0.1:\(env.mockPort)/web"
        let model = "mock/researcher:pace_ms=1"
        // A 500 page, a binary file, then a search that fails.
        let response = try env.chat(body("Read \(base)/status/500 and \(base)/binary please", parameters: panel(model) + "}"))
        #expect(response.status == 200)
        let said = memberText(response, model: model)
        #expect(said.contains("A web tool failed: \(base)/status/500 answered HTTP 500"), "\(said)")
        #expect(said.contains("A web tool failed: \(base)/binary: unsupported content type image/png"))
        #expect(response.comments.contains { $0.hasPrefix("fusion panel[0] \(model): completed") })
        let failedSearch = try env.chat(body("Why did the search fail today", parameters: panel(model) + "}"))
        #expect(memberText(failedSearch, model: model).contains("A web tool failed: the searxng search backend answered HTTP 500: search engine exploded"))
        let metrics = try env.get("/metrics")
        #expect(metrics.metric(#"fusion_gateway_web_tool_calls_total{tool="web_fetch",outcome="error"}"#) == 2)
        #expect(metrics.metric(#"fusion_gateway_web_tool_calls_total{tool="web_search",outcome="error"}"#) == 1)
    }

    /// An error page's body is never read: the head says all (review 55B #1: a 404 with a gzip
    /// bomb was decompressed on the loop, holding every stream on it for seconds). Its body comes
    /// long after its head here; the fetch fails at the head, not at the deadline.
    @Test func anErrorPagesBodyIsNeverWaitedFor() throws {
        let env = try TestEnvironment(web: true)
        let base = "http://127.0.0.1:\(env.mockPort)/web"
        let model = "mock/researcher:pace_ms=1"
        let response = try env.chat(body("Read \(base)/status/404?body_ms=5000 please", parameters: panel(model) + "}",
                                         extra: #","stream_options":{"include_fusion_events":true}"#))
        #expect(response.status == 200)
        let completed = try #require(response.namedEvents.first { $0.name == "fusion.web.completed" }?.data)
        #expect(completed["error"]?.stringValue == "\(base)/status/404?body_ms=5000 answered HTTP 404", "\(completed)")
        #expect((completed["duration_ms"]?.doubleValue ?? .infinity) < 900, "\(completed)")  // the fetch deadline is 1,000 ms
    }

    @Test func fetchesOfPrivateAddressesAreRefusedIncludingAfterRedirects() throws {
        let env = try TestEnvironment(web: true)
        let base = "http://127.0.0.1:\(env.mockPort)/web"
        let model = "mock/researcher:pace_ms=1"
        let targets = [
            // The allow-listed server redirects to a loopback port that is not allowed, and to the
            // cloud metadata address; the gateway's own port; a name resolving to loopback;
            // a scheme other than http(s).
            "\(base)/redirect?to=http://127.0.0.1:\(env.gatewayPort)/health",
            "\(base)/redirect?to=http://169.254.169.254/latest/meta-data/",
            "http://localhost:\(env.gatewayPort)/v1/models",
            "http://[::ffff:127.0.0.1]:\(env.gatewayPort)/health",
            "file:///etc/passwd",
        ]
        let acceptedBefore = try env.acceptedConnections()
        let response = try env.chat(body("Read " + targets.joined(separator: " "), parameters: panel(model) + "}"))
        #expect(response.status == 200)
        // The gateway never connected to itself: the test's request was its only connection.
        #expect(try env.acceptedConnections() == acceptedBefore + 1)
        let said = memberText(response, model: model)
        #expect(said.contains("refused to fetch http://127.0.0.1:\(env.gatewayPort)/health: it points to a loopback address"), "\(said)")
        #expect(said.contains("refused to fetch http://169.254.169.254/latest/meta-data/: it points to a cloud metadata address"))
        // A name's address is not told (review 62B #5: the gateway was a DNS oracle for internal names).
        #expect(said.contains("refused to fetch http://localhost:\(env.gatewayPort)/v1/models: it points to a loopback address"))
        #expect(!said.contains("::1 is") && !said.contains("127.0.0.1 is"))
        #expect(said.contains("refused to fetch http://[::ffff:127.0.0.1]:\(env.gatewayPort)/health: it points to a loopback address"))
        #expect(said.contains("only http and https URLs can be fetched, not file:"))
        #expect(!said.contains("reports:"), "nothing was read")
    }

    @Test func redirectsAreFollowedWithinTheLimit() throws {
        let env = try TestEnvironment(web: true) { $0.web?.maxRedirects = 2 }
        let base = "http://127.0.0.1:\(env.mockPort)/web"
        let model = "mock/researcher:pace_ms=1"
        let response = try env.chat(body("Read \(base)/redirect-chain/2 and \(base)/redirect-chain/3", parameters: panel(model) + "}"))
        let said = memberText(response, model: model)
        #expect(said.contains("[Simulated source 1](\(base)/page/1) reports:"), "\(said)")
        #expect(said.contains("too many redirects (more than 2) from \(base)/redirect-chain/1"))
        // The citation is the page finally read.
        #expect(annotations(response).compactMap { $0["url_citation"]?["url"]?.stringValue } == ["\(base)/page/1"])
    }

    @Test func anOversizedPageIsTruncatedAndASlowOneTimesOut() throws {
        let env = try TestEnvironment(web: true)
        let base = "http://127.0.0.1:\(env.mockPort)/web"
        let model = "mock/researcher:pace_ms=1"
        let response = try env.chat(body("Read \(base)/big?bytes=300000 and \(base)/slow?ms=3000 and \(base)/dribble?ms=3000",
                                         parameters: panel(model) + "}", extra: #","stream_options":{"include_fusion_events":true}"#))
        #expect(response.status == 200)
        let completed = response.namedEvents.filter { $0.name == "fusion.web.completed" }.map(\.data)
        #expect(completed.count == 3)
        // A page still arriving at the deadline is read as far as it came, marked truncated
        // (review 62B #8: it was thrown away as a timeout).
        let dribbled = try #require(completed.first { $0["arguments"]?.stringValue?.contains("dribble") == true })
        #expect(dribbled["error"] == nil && (dribbled["result_bytes"]?.intValue ?? 0) > 50, "\(dribbled)")
        let big = try #require(completed.first { $0["arguments"]?.stringValue?.contains("big") == true })
        #expect(big["error"] == nil)
        let bytes = try #require(big["result_bytes"]?.intValue)
        #expect(bytes > 1_000 && bytes < 2_400, "the text given to the model is capped (max 2,000 characters)")
        let slow = try #require(completed.first { $0["arguments"]?.stringValue?.contains("slow") == true })
        #expect(slow["error"]?.stringValue == "fetching \(base)/slow?ms=3000 took longer than 1000 ms")
        #expect((slow["duration_ms"]?.doubleValue ?? 0) < 2_500)
        let events = response.namedEvents
        let started = try #require(events.first { $0.name == "fusion.web.started" }?.data)
        #expect(started["role"] == .string("panel") && started["index"]?.intValue == 0 && started["name"] == .string("web_fetch"))
        #expect(started["t_ms"]?.doubleValue != nil)
        let said = events.filter { $0.name == "fusion.member.delta" }.compactMap { $0.data["delta"]?.stringValue }.joined()
        #expect(said.contains("(page truncated)"))
    }

    @Test func theMemberTimeoutCoversItsToolCalls() throws {
        let env = try TestEnvironment(web: true) { config in
            config.fusion?.memberTimeoutMilliseconds = 600
            config.web?.fetchTimeoutMilliseconds = 500
        }
        let base = "http://127.0.0.1:\(env.mockPort)/web"
        let model = "mock/researcher:pace_ms=1"
        let response = try env.chat(body("Read \(base)/slow?ms=3000 and \(base)/slow?ms=3001", parameters: panel(model) + "}"))
        #expect(response.status == 200)
        let failure = try #require(response.comments.first { $0.hasPrefix("fusion panel[0] \(model): failed") })
        #expect(failure.hasPrefix("fusion panel[0] \(model): failed at ")
                && failure.hasSuffix(" ms (timeout): no answer within 600 ms (web tool calls included)"), "\(failure)")
        #expect(content(response).hasPrefix("The panel could not answer (all_panels_failed)"))
    }

    @Test func theJudgeCanSearchBeforeItsAnalysis() throws {
        let env = try TestEnvironment(web: true)
        let parameters = #"{"analysis_models":["mock/expert-1:pace_ms=1","mock/expert-2:pace_ms=1"],"model":"mock/judge:search=1:pace_ms=1"}"#
        let response = try env.chat(body("Should cities ban cars from their centres?", parameters: parameters,
                                         extra: #","stream_options":{"include_usage":true}"#))
        #expect(response.status == 200)
        let comments = response.comments
        #expect(comments.contains { $0.hasPrefix(#"fusion judge mock/judge:search=1:pace_ms=1: web_search {"query":"fact check"#) })
        #expect(comments.contains { $0.hasPrefix("fusion judge mock/judge:search=1:pace_ms=1: web_search done: 5 results") })
        #expect(comments.contains { $0.contains("analysis ready") }, "the text before the tool call is not taken for the analysis")
        let calls = try #require(response.plainChunksJSON.last?["usage"]?["fusion"]?["calls"]?.arrayValue)
        #expect(calls.first { $0["role"] == .string("judge") }?["tool_calls"]?.intValue == 1)
        // Experts were offered tools but did not use them; the judge's search results are sources.
        #expect(annotations(response).count == 5)
    }

    @Test func toolsCanBeSwitchedOffPerRequestAndMustExistToBeSwitchedOn() throws {
        let env = try TestEnvironment(web: true)
        let model = "mock/researcher:pace_ms=1"
        let response = try env.chat(body("Research congestion pricing outcomes",
                                         parameters: panel(model) + #","web_search":false,"judge_web_search":false}"#))
        #expect(memberText(response, model: model).contains("I answered without web tools."))
        #expect(!response.comments.contains { $0.contains("web_") })
        #expect(annotations(response).isEmpty)
        let bad = try env.chat(body("Research this", parameters: panel(model) + #","web_search":"yes"}"#))
        #expect(bad.status == 400)
        #expect(bad.json?["error"]?["param"] == .string("tools[0].parameters.web_search"))

        let noWeb = try TestEnvironment()
        let refused = try noWeb.chat(body("Research this", parameters: panel(model) + #","web_search":true}"#))
        #expect(refused.status == 400)
        #expect(refused.json?["error"]?["message"]?.stringValue?.contains("no web tools configured") == true)
        let off = try noWeb.chat(body("Research congestion pricing", parameters: panel(model) + "}"))
        #expect(memberText(off, model: model).contains("I answered without web tools."))
    }

    @Test func hostedSearchAPIsSpeakTheirOwnWireFormats() throws {
        for kind in [SearchBackend.Kind.brave, .tavily] {
            let env = try TestEnvironment(web: true) { config in
                let mock = config.web!.search!.baseURL
                config.web!.search = SearchBackend(kind: kind, baseURL: kind == .brave ? mock + "/res/v1" : mock, apiKey: "test-key")
            }
            let model = "mock/researcher:pace_ms=1"
            let response = try env.chat(body("Research congestion pricing outcomes", parameters: panel(model) + "}"))
            #expect(response.comments.contains { $0.hasPrefix("fusion panel[0] \(model): web_search done: 3 results") }, "\(kind)")
            #expect(annotations(response).count == 3, "\(kind)")
            let keyless = try TestEnvironment(web: true) { config in
                let mock = config.web!.search!.baseURL
                config.web!.search = SearchBackend(kind: kind, baseURL: kind == .brave ? mock + "/res/v1" : mock, apiKey: nil)
            }
            let failed = try keyless.chat(body("Research congestion pricing outcomes", parameters: panel(model) + "}"))
            #expect(memberText(failed, model: model).contains("A web tool failed: the \(kind.rawValue) search backend has no API key"), "\(kind)")
        }
    }

    /// The search API's key is a secret like a provider's: a backend that quotes it in an error
    /// reply (after enough blank lines that a cut at 200 bytes would halve it) reaches neither the
    /// models, nor the client, nor the record (review 42: it was in the stream seven times).
    @Test func theSearchKeyNeverLeavesTheGateway() throws {
        let key = "brave-test-key-0123456789abcdef"
        let env = try TestEnvironment(web: true) { config in
            config.web!.search = SearchBackend(kind: .brave, baseURL: config.web!.search!.baseURL + "/res/v1", apiKey: key)
        }
        let model = "mock/researcher:pace_ms=1"
        let response = try env.chat(body("Research echo-key outcomes", parameters: panel(model) + "}"))
        #expect(response.text.contains("search backend answered HTTP 401"), "the failure is reported: \(response.text.prefix(2000))")
        #expect(!response.text.contains("brave-test"), "\(response.text)")
        let record = try #require(try env.generation(response.header("x-generation-id")))
        #expect(!String(decoding: record.serialized(), as: UTF8.self).contains("brave-test"))
    }

    @Test func aClientHangingUpCancelsRunningFetches() throws {
        let env = try TestEnvironment(web: true) { $0.web?.fetchTimeoutMilliseconds = 5_000 }
        let base = "http://127.0.0.1:\(env.mockPort)/web"
        let client = try env.client()
        try client.send(TestEnvironment.post("/v1/chat/completions",
                                             body: body("Read \(base)/slow?ms=4000 now", parameters: panel("mock/researcher:pace_ms=1") + "}")))
        // Wait until the page is being fetched, then hang up.
        #expect(env.eventually { env.mockStats.counts.slowPagesStarted == 1 }, "the fetch started")
        client.disconnect()
        #expect(env.eventually { (try? env.get("/metrics"))?.metric("fusion_gateway_active_streams") == 0 })
        // The fetch itself was cancelled with the session: the simulated web saw the fetcher hang
        // up long before its page was due (a fetch left running would still be waiting).
        #expect(env.eventually(timeoutSeconds: 2) { env.mockStats.counts.slowPagesCancelled == 1 }, "\(env.mockStats.counts)")
        let metrics = try env.get("/metrics")
        #expect(metrics.metric(#"fusion_gateway_web_tool_calls_total{tool="web_fetch",outcome="ok"}"#) == 0
                && metrics.metric(#"fusion_gateway_web_tool_calls_total{tool="web_fetch",outcome="error"}"#) == 0, "a cancelled fetch is no call made")
        #expect(try env.chat(TestEnvironment.chatBody(model: "mock/normal:pace_ms=1")).status == 200)
    }
}
