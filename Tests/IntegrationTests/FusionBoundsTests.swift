import Foundation
import Fusion
import Gateway
import GatewayCore
import HTTPServer
import MockUpstream
import Testing

/// A rambling panel member or judge cannot hold a deliberation: each inner call carries an output
/// limit (`fusion.max_completion_tokens`, unless the request's fusion parameters set one), and
/// each phase a deadline (`member_timeout_ms`, `judge_timeout_ms` per judge attempt), on a
/// non-streamed request too.
@Suite struct FusionBoundsTests {
    func body(stream: Bool, parameters: String, events: Bool = false) -> String {
        #"{"model":"mock/outer:pace_ms=1","stream":\#(stream),"messages":[{"role":"user","content":"Should cities ban cars?"}],"tools":[{"type":"fusion","parameters":\#(parameters)}]"#
            + (events ? #","stream_options":{"include_fusion_events":true}"# : "") + "}"
    }

    @Test(.timeLimit(.minutes(1)))
    func aJudgeThatNeverStopsIsCutAtItsDeadlineAndTheAnswerStillComes() throws {
        // The members' deadline far from the test's subject: under ThreadSanitizer, beside the
        // fan-in stress test, two members once missed the default 600 ms (CI, stop 40).
        let env = try TestEnvironment {
            $0.fusion?.judgeTimeoutMilliseconds = 400
            $0.fusion?.memberTimeoutMilliseconds = 10_000
        }
        let started = Date()
        // An analysis written a piece every 2 s: a minute or more without its deadline.
        let response = try env.chat(body(stream: false, parameters: #"{"preset":"budget","model":"mock/judge:pace_ms=2000"}"#))
        let elapsed = Date().timeIntervalSince(started)
        #expect(response.status == 200)
        let fusion = try #require(response.json?["fusion"])
        #expect(fusion["analysis"] == nil && fusion["analysis_failure"]?["reason"] == .string("judge_timeout"), "\(fusion)")
        #expect(fusion["responses"]?.arrayValue?.count == 2, "the panel's answers are kept")
        let judge = response.json?["usage"]?["fusion"]?["calls"]?.arrayValue?.filter { $0["role"] == .string("judge") } ?? []
        #expect(judge.map { $0["status"] } == [.string("judge_timeout")], "a timeout is not retried")
        let content = response.json?["choices"]?.arrayValue?.first?["message"]?["content"]?.stringValue ?? ""
        #expect(content.contains("judge_timeout"), "the outer model wrote the answer without the analysis: \(content)")
        #expect(elapsed < 30, "bounded by the deadline, not by the judge")
        #expect(env.eventually { env.mockStats.counts.active == 0 }, "the judge's transfer was cancelled")
    }

    @Test(.timeLimit(.minutes(1)))
    func aMemberThatNeverStopsIsFailedAtItsDeadlineWhileTheOthersCount() throws {
        // Far beyond what the other member needs (~60 deltas 1 ms apart), even with the whole
        // suite running under AddressSanitizer on 2 cores (400 ms was not, once); far below the
        // never-stopping member's 200 s.
        let env = try TestEnvironment { $0.fusion?.memberTimeoutMilliseconds = 3_000 }
        let response = try env.chat(body(stream: false, parameters: #"{"analysis_models":["mock/paced:deltas=100000:pace_ms=2","mock/expert-1:pace_ms=1"]}"#))
        let fusion = try #require(response.json?["fusion"])
        #expect(fusion["failed_models"]?.arrayValue?.map { $0["reason"] } == [.string("timeout")], "\(fusion)")
        #expect(fusion["panel"]?["answered"] == .int(1) && fusion["analysis"] != nil)
    }

    /// A member the gateway cuts at its timeout, once its upstream took the prompt and before
    /// any output, is charged its prompt, as one the session stops is (review 78 #2: free).
    @Test func aMemberCutAtItsTimeoutPaysForItsPrompt() throws {
        let log = CapturedLog()
        let env = try TestEnvironment(logHandler: log) { $0.fusion?.memberTimeoutMilliseconds = 1_000 }
        let response = try env.chat(body(stream: false, parameters: #"{"analysis_models":["mock/slow-first-token:first_ms=30000","mock/expert-1:pace_ms=1"]}"#))
        #expect(response.json?["fusion"]?["failed_models"]?.arrayValue?.map { $0["reason"] } == [.string("timeout")], "\(response.text.prefix(400))")
        #expect(env.eventually { log.entries.contains { $0.message == "inner call finished" && $0.metadata["model"]?.hasPrefix("mock/slow-first-token") == true } })
        let line = log.entries.first { $0.message == "inner call finished" && $0.metadata["model"]?.hasPrefix("mock/slow-first-token") == true }
        #expect((Int(line?.metadata["prompt_tokens"] ?? "") ?? 0) > 0 && line?.metadata["completion_tokens"] == "0", "\(line?.text ?? "")")
    }

    /// A member whose upstream has its whole request and has not answered (many providers send
    /// the head only with the first token, after the prompt's processing) is charged its prompt
    /// when the client leaves, as a proxied call is; one whose upstream refused it (a `500` head,
    /// its body still coming) is not, nor one refused before its body was in, which curl still
    /// sent after (review 94 #1: charged its 3 MB prompt). Both were charged nothing before: a
    /// deliberation left in its first second had every panel prompt free. The member's word that
    /// its request went out crosses loops here (every panel spills over both). A client that
    /// reads nothing holds that word in the session's ring, where it goes unread when the client
    /// leaves: the member is charged all the same (review 94 #3: it was not).
    @Test(.timeLimit(.minutes(3)), arguments: [(UpstreamKeptConnectionTests.Answer.nothing, true), (.refusal, true), (.earlyRefusal, true),
                                               (.nothing, false)])
    func aMemberCutBeforeItsUpstreamAnsweredPaysForThePromptItSent(answer: UpstreamKeptConnectionTests.Answer, clientReads: Bool) throws {
        let upstream = try UpstreamKeptConnectionTests.Listener()
        defer { close(upstream.fd) }
        // The early refusal's upstream reads slowly (a few KB of window): the gateway's 8 MB
        // request is still going out as the refusal comes.
        var small: Int32 = 4096
        if answer == .earlyRefusal { setsockopt(upstream.fd, SOL_SOCKET, SO_RCVBUF, &small, socklen_t(MemoryLayout<Int32>.size)) }
        let log = CapturedLog()
        let env = try TestEnvironment(logHandler: log) { config in
            config.upstream.retry = RetryPolicy(maxRetries: 0, baseDelayMilliseconds: 20, maxDelayMilliseconds: 20)
            // The client's leaving cuts the member, not its silence or its budget.
            config.upstream.idleTimeoutMilliseconds = 30_000
            config.fusion?.memberTimeoutMilliseconds = 30_000
            config.server.limits.maxBodyBytes = 16 << 20
            config.providers["raw"] = .init(name: "raw", baseURL: String(upstream.url.dropLast("/ping".count)) + "/v1")
        }
        // 8 MB: curl is still sending it as the refusal comes; and the progress repeats it, far
        // more than a client reading nothing lets through (its own buffer is made small too).
        let question = answer == .earlyRefusal || !clientReads ? String(repeating: "x ", count: 4 << 20) : "Should cities ban cars?"
        // Forced fusion: the panel starts with the request.
        let body = #"{"model":"mock/outer:pace_ms=1","stream":true,"tool_choice":"required","#
            + #""messages":[{"role":"user","content":"\#(question)"}],"#
            + #""tools":[{"type":"fusion","parameters":{"analysis_models":["raw/any","mock/paced:pace_ms=1:deltas=3"]}}]}"#
        // Built before connecting: under ThreadSanitizer building 8 MB took longer than the
        // test server's 500 ms for a connection's first byte, which closed it (CI, stop 67: EPIPE).
        let request = Array(TestEnvironment.post("/v1/chat/completions", body: body).utf8)
        let client = try env.client(timeoutSeconds: 20)
        try client.send(request)
        let fd = client.fd
        let readerDone = DispatchSemaphore(value: 0)
        if clientReads {
            DispatchQueue.global().async {
                var chunk = [UInt8](repeating: 0, count: 65_536)
                while recv(fd, &chunk, chunk.count, 0) > 0 {}
                readerDone.signal()
            }
        } else {
            setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, socklen_t(MemoryLayout<Int32>.size))
        }
        let connection = try UpstreamKeptConnectionTests.takeRequestThenLeave(upstream, client: client, answer: answer)
        defer { close(connection) }
        // Its descriptor stays the client's until the reader has stopped (the leaving shut it).
        if clientReads { #expect(readerDone.wait(timeout: .now() + 10) == .success) }
        var line: CapturedLog.Entry?
        #expect(env.eventually(timeoutSeconds: 5 * Double(TestEnvironment.sanitizerSlowdown)) {
            line = log.entries.first { $0.message == "inner call finished" && $0.metadata["model"] == "raw/any" }
            return line != nil
        })
        let fields = line?.metadata ?? [:]
        let prompt = Int(fields["prompt_tokens"] ?? "0") ?? -1
        #expect(fields["cancelled"] == "true", "\(fields)")
        if !clientReads {
            // The other member answered whole, all of it held too: its upstream's own usage. Its
            // line may come after the cut member's (CI run 141 under ThreadSanitizer: not yet
            // logged when read): waited for as that one is.
            func otherLine() -> [String: String]? {
                log.entries.first { $0.message == "inner call finished" && $0.metadata["model"]?.hasPrefix("mock/paced") == true }?.metadata
            }
            _ = env.eventually(timeoutSeconds: 5 * Double(TestEnvironment.sanitizerSlowdown)) { otherLine() != nil }
            let other = otherLine() ?? [:]
            #expect(other["usage_estimated"] == nil && Int(other["completion_tokens"] ?? "0") ?? 0 > 0 && Int(other["prompt_tokens"] ?? "0") ?? 0 > 0,
                    "\(other)")
        }
        if answer == .nothing {
            #expect(prompt > 0 && fields["completion_tokens"] == "0" && fields["usage_estimated"] == "true", "\(fields)")
        } else {
            #expect(prompt == 0 && fields["usage_estimated"] == nil && fields["status"] == "500", "\(fields)")
        }
    }

    /// The outer model's final answer streams for as long as it takes, well past
    /// `upstream.idle_timeout_ms` (800 ms here), its tokens flowing (review 55C #1: the turn was
    /// cut at that time in total); a member is bounded by its own budget, not by that silence
    /// (review 56 #5: a model thinking without a word got less than its `member_timeout_ms`).
    @Test(.timeLimit(.minutes(1)))
    func outerTurnsAreBoundedByTheirSilenceAndMembersByTheirBudget() throws {
        let env = try TestEnvironment { $0.fusion?.memberTimeoutMilliseconds = 20_000 }
        let response = try env.chat(#"{"model":"mock/paced:deltas=16:pace_ms=100","stream":true,"tool_choice":"required","#
            + #""messages":[{"role":"user","content":"Should cities ban cars?"}],"#
            + #""tools":[{"type":"fusion","parameters":{"analysis_models":["mock/expert-1:pace_ms=1","mock/slow-first-token:first_ms=1500"]}}]}"#)
        #expect(response.status == 200 && response.streamError == nil, "\(response.text.suffix(400))")
        let answer = response.plainChunksJSON.compactMap { $0["choices"]?.arrayValue?.first?["delta"]?["content"]?.stringValue }.joined()
        #expect(!answer.isEmpty, "\(response.text.suffix(400))")
        #expect(response.plainChunksJSON.last { $0["choices"]?.arrayValue?.first?["finish_reason"]?.stringValue != nil }?["choices"]?
            .arrayValue?.first?["finish_reason"] == .string("stop"), "\(response.text.suffix(400))")
        // The member silent for 1.5 s before its first token answered: nothing failed.
        #expect(!response.text.contains("timeout"), "\(response.text.prefix(2_000))")
        #expect(response.comments.contains { $0.contains("2 of 2 answered") }, "\(response.comments)")
        // An outer turn silent past the idle timeout fails as a proxied stream would (review 57 #6).
        let silent = try env.chat(#"{"model":"mock/paced:deltas=3:pace_ms=1:first_ms=1500","stream":true,"tool_choice":"required","#
            + #""messages":[{"role":"user","content":"Should cities ban cars?"}],"#
            + #""tools":[{"type":"fusion","parameters":{"analysis_models":["mock/expert-1:pace_ms=1"]}}]}"#)
        #expect(silent.streamError?["code"] == .string("upstream_timeout"), "\(silent.text.suffix(400))")
    }

    /// An outer turn silent for `upstream.idle_timeout_ms` fails when its silence reaches the
    /// limit, not up to a quarter of it later (review 80A #3: checked on a tick of a quarter of
    /// the limit, 2 s here failed at 2.5 s; 30 s late with the defaults).
    @Test(.timeLimit(.minutes(1)))
    func anOuterTurnsSilenceFailsAtItsLimit() throws {
        let env = try TestEnvironment { $0.upstream.idleTimeoutMilliseconds = 2_000 }
        let started = Date()
        let silent = try env.chat(#"{"model":"mock/stall:after=1:pace_ms=1","stream":true,"tool_choice":"required","#
            + #""messages":[{"role":"user","content":"Should cities ban cars?"}],"#
            + #""tools":[{"type":"fusion","parameters":{"analysis_models":["mock/expert-1:pace_ms=1"]}}]}"#)
        #expect(silent.streamError?["code"] == .string("upstream_timeout"), "\(silent.text.suffix(400))")
        #expect(Date().timeIntervalSince(started) >= 1.99)
        // The silence it names, measured by the gateway when the check fired (not the client's
        // clock, which a slow sanitizer build stretches): the old tick fired at 2,500 ms.
        let message = silent.streamError?["message"]?.stringValue ?? ""
        let silence = message.split(separator: " ").firstIndex(of: "ms").flatMap { index in Int(message.split(separator: " ")[index - 1]) }
        #expect(silence.map { (2_000..<2_300).contains($0) } == true, "\(message)")
    }

    /// `mock/echo` answers with the request it got: as a member and as the judge, it shows what
    /// the gateway asked of them.
    @Test(.timeLimit(.minutes(1)))
    func everyPanelAndJudgeCallCarriesTheOutputLimit() throws {
        let env = try TestEnvironment {
            $0.fusion?.defaultMaxTokens = 77
            $0.fusion?.memberTimeoutMilliseconds = 10_000  // as above: not this test's subject
        }
        for (parameters, limit) in [(#"{"analysis_models":["mock/echo"],"model":"mock/echo"}"#, 77),
                                    (#"{"analysis_models":["mock/echo"],"model":"mock/echo","max_completion_tokens":33}"#, 33)] {
            let response = try env.chat(body(stream: true, parameters: parameters, events: true))
            var judgeText = ""
            var memberText = ""
            var judgeAttemptEnded = false
            var decoder = SSEDecoder()
            try decoder.feed(response.body) { event in
                guard let json = try? JSONValue.parse(Array(event.data)) else { return }
                switch event.nameString {
                case "fusion.judge.progress" where !judgeAttemptEnded: judgeText += json["delta"]?.stringValue ?? ""
                case "fusion.judge.failed": judgeAttemptEnded = true
                case "fusion.member.delta": memberText += json["delta"]?.stringValue ?? ""
                default: break
                }
            }
            let member = try JSONValue.parse(Array(memberText.utf8))
            #expect(member["max_tokens"] == .int(Int64(limit)) && member["stream"] == .bool(true), "\(memberText.prefix(300))")
            // The judge's first reply (its request) is no analysis; its text is what it was asked.
            let judge = try JSONValue.parse(Array(judgeText.utf8))
            #expect(judge["max_tokens"] == .int(Int64(limit)), "\(judgeText.prefix(300))")
            #expect(judge["temperature"] == .int(0) || judge["temperature"] == .double(0))
            #expect(judge["response_format"]?["type"] == .string("json_object"))
        }
    }
}
