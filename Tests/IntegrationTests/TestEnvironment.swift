import Application
import EventLoop
import Foundation
import GatewayCore
import Fusion
import Gateway
import GatewayCore
import HTTPServer
import Logging
import MockUpstream
import Testing
import Web

/// A gateway and a mock upstream, both on port 0. The gateway is what the CLI runs: a cluster of
/// `loops` event loops (two by default, so Fusion panels cross loops); the mock has a loop of its
/// own. Each test makes its own environment, so tests run in parallel without sharing a loop or a
/// counter.
final class TestEnvironment: @unchecked Sendable {
    /// The mock, loop-confined: created and used only on `thread.loop`.
    private final class MockBox: @unchecked Sendable { var mock: MockUpstream? }
    private let mockBox = MockBox()
    /// The mock's loop.
    let thread = EventLoopThread(name: "test-mock-loop")
    let mockStats = MockUpstreamStats()
    /// The gateway as the CLI runs it (with the simulator behind `sim/`, when the config has it).
    let application: GatewayApplication
    var cluster: GatewayCluster { application.cluster }
    var gatewayPort: Int { cluster.port }
    /// The gateway's counters (thread-safe).
    var gatewayStats: GatewayStats { cluster.shared.stats }
    private(set) var mockPort = 0

    static let secretKey = "sk-test-secret-0123456789"
    /// 5 when this test binary runs under ThreadSanitizer or AddressSanitizer (their runtimes'
    /// entry points are linked in), else 1: what default deadlines are multiplied by.
    static let sanitizerSlowdown: UInt64 = {
        let runtimes: [String] = ["__tsan_init", "__asan_init"]
        return runtimes.contains { dlsym(UnsafeMutableRawPointer(bitPattern: 0), $0) != nil } ? 5 : 1
    }()

    /// `web`: web tools on, searching the mock's simulated SearXNG and allowed to fetch from the
    /// mock's port only (every other loopback port stays refused); fetches time out after 1 s,
    /// members and the judge after 10 s.
    /// `logHandler`: receives the gateway's logs at info and above (default: FUSION_TEST_LOG).
    /// `logs`: a handler of the test's own for the gateway's logs (at info and above), instead.
    /// `environment`: variables the gateway sees besides the provider key (named keys' values).
    init(web: Bool = false, loops: Int = 2, logHandler: CapturedLog? = nil, logs: (any LogHandler)? = nil, environment: [String: String] = [:],
         _ configure: @escaping @Sendable (inout GatewayConfig) -> Void = { _ in }) throws {
        let stats = mockStats
        let box = mockBox
        let mockLoop = thread.loop
        let mockPort = try mockLoop.submitAndWait { () -> Int in
            let mock = try MockUpstream(loop: mockLoop, port: 0, stats: stats)
            box.mock = mock
            return mock.port
        }
        self.mockPort = mockPort
        var config = GatewayConfig.embeddedDefault
        config.server.port = 0
        config.server.limits.headerTimeoutMilliseconds = 500
        config.server.limits.idleTimeoutMilliseconds = 2_000
        config.server.limits.maxHeaderBytes = 8 * 1024
        config.server.limits.maxBodyBytes = 256 * 1024
        config.server.shutdownGraceMilliseconds = 2_000
        config.upstream.keepAliveIntervalMilliseconds = 150
        config.upstream.idleTimeoutMilliseconds = 800
        config.upstream.maxEventBytes = 64 * 1024
        config.upstream.retry = RetryPolicy(maxRetries: 2, baseDelayMilliseconds: 20, maxDelayMilliseconds: 1_000)
        let base = "http://127.0.0.1:\(mockPort)/v1"
        config.providers["mock"] = .init(name: "mock", baseURL: base)
        config.providers["keyed"] = .init(name: "keyed", baseURL: base, apiKeyEnvironmentVariable: "TEST_PROVIDER_KEY",
                                          headers: ["X-Title": "fusion-gateway tests"])
        config.providers["unkeyed"] = .init(name: "unkeyed", baseURL: base, apiKeyEnvironmentVariable: "TEST_UNSET_KEY")
        config.providers["listed"] = .init(name: "listed", baseURL: base, models: ["normal"])
        config.providers["dead"] = .init(name: "dead", baseURL: "http://127.0.0.1:1/v1")
        config.providers["nowhere"] = .init(name: "nowhere", baseURL: "http://no-such-host.invalid/v1")
        // Fusion on the mock, fast: 1 ms between deltas.
        var fusion = FusionSettings(
            outerModel: "mock/outer:pace_ms=1",
            presets: ["quality": .init(analysisModels: ["mock/expert-1:pace_ms=1", "mock/expert-2:pace_ms=1", "mock/expert-3:pace_ms=1"]),
                      "budget": .init(analysisModels: ["mock/expert-1:pace_ms=1", "mock/expert-2:pace_ms=1"])],
            defaultPreset: "quality")
        // Short, so a test of a stalled member ends fast; five times as long under a sanitizer:
        // ThreadSanitizer beside the fan-in stress test (more producer threads than cores)
        // starved healthy members past 600 ms in two CI runs.
        fusion.memberTimeoutMilliseconds = 600 * Self.sanitizerSlowdown
        fusion.judgeTimeoutMilliseconds = 1_000 * Self.sanitizerSlowdown
        // Labels in panel order: the simulated judge lists models in the order it reads them, so
        // two runs of one request give the same answer (DeliberationLatencyTests shuffles).
        fusion.shuffleLabels = false
        // Every panel spread over both loops (not the default: members on their session's loop),
        // so the suite, and ThreadSanitizer with it, crosses threads on every deliberation.
        fusion.panelSpillMargin = 0
        config.fusion = fusion
        config.web = nil
        if web {
            var settings = WebSettings()
            settings.search = SearchBackend(kind: .searxng, baseURL: "http://127.0.0.1:\(mockPort)")
            settings.addressPolicy = AddressPolicy(allow: [AddressRule("127.0.0.1:\(mockPort)")!])
            settings.fetchTimeoutMilliseconds = 1_000
            settings.searchTimeoutMilliseconds = 1_000
            settings.maxPageCharacters = 2_000
            settings.maxFetchBytes = 64 * 1024
            config.web = settings
            // A researcher's turns and tool calls all count against these (and sanitizers are slow).
            config.fusion?.memberTimeoutMilliseconds = 10_000
            config.fusion?.judgeTimeoutMilliseconds = 10_000
        }
        configure(&config)
        var logger = logs.map { handler in Logger(label: "gateway-under-test") { _ in handler } }
            ?? logHandler.map { log in Logger(label: "gateway-under-test") { _ in log.handler } } ?? Logger(label: "gateway-under-test")
        logger.logLevel = logHandler != nil || logs != nil ? .info
            : ProcessInfo.processInfo.environment["FUSION_TEST_LOG"].flatMap { Logger.Level(rawValue: $0) } ?? .critical
        do {
            application = try GatewayApplication(config: config, environment: environment.merging(["TEST_PROVIDER_KEY": Self.secretKey]) { $1 },
                                                 logger: logger, loops: loops)
        } catch {
            mockLoop.execute { box.mock?.shutdown() }
            thread.shutdown()
            throw error
        }
    }

    deinit { stop() }

    private var stopped = false
    private var gatewayStopping = false

    func stop() {
        guard !stopped else { return }
        stopped = true
        if !gatewayStopping { application.shutdown() }
        application.waitUntilStopped()
        let box = mockBox
        thread.loop.execute { box.mock?.shutdown() }
        thread.shutdown()
    }

    /// Starts the gateway's graceful shutdown; returns at once.
    func beginGatewayShutdown() {
        gatewayStopping = true
        application.shutdown()
    }

    /// Requests in flight on every loop of the gateway.
    func activeStreams() throws -> Int { try cluster.activeStreamsPerLoop().reduce(0, +) }

    /// Connections the gateway accepted so far, over every loop.
    func acceptedConnections() throws -> Int { try cluster.loopCounters().map(\.accepted).reduce(0, +) }

    func client(timeoutSeconds: Int = 5, receiveBufferBytes: Int32? = nil) throws -> TestClient {
        try TestClient(port: gatewayPort, timeoutSeconds: timeoutSeconds, receiveBufferBytes: receiveBufferBytes)
    }

    /// Sends `count` chat completions of `body`, each on its own connection, one after another
    /// once the mock has begun streaming the previous one: requests running at once.
    func startStreams(_ count: Int, body: String, headers: [String: String]) throws -> [TestClient] {
        var running: [TestClient] = []
        let before = mockStats.counts.streamsStarted
        for index in 0..<count {
            let client = try client()
            try client.send(Self.post("/v1/chat/completions", body: body, headers: headers))
            #expect(eventually { mockStats.counts.streamsStarted == before + index + 1 })
            running.append(client)
        }
        return running
    }

    /// POSTs a chat completion on a new connection and reads the whole response.
    func chat(_ body: String, headers: [String: String] = [:]) throws -> TestResponse {
        let client = try client()
        try client.send(Self.post("/v1/chat/completions", body: body, headers: headers))
        return try client.readResponse()
    }

    /// The gateway's generation record for `id`.
    func generation(_ id: String?) throws -> JSONValue? {
        guard let id else { return nil }
        return try get("/api/v1/generation?id=\(id)").json?["data"]
    }

    func get(_ path: String) throws -> TestResponse {
        let client = try client()
        try client.send("GET \(path) HTTP/1.1\r\nHost: localhost\r\n\r\n")
        return try client.readResponse()
    }

    static func post(_ path: String, body: String, headers: [String: String] = [:]) -> String {
        var text = "POST \(path) HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        for (name, value) in headers { text += "\(name): \(value)\r\n" }
        return text + "Content-Length: \(body.utf8.count)\r\n\r\n" + body
    }

    static func chatBody(model: String, stream: Bool = true, prompt: String = "Hello there", extra: String = "") -> String {
        #"{"model":"\#(model)","stream":\#(stream),"messages":[{"role":"user","content":"\#(prompt)"}]\#(extra)}"#
    }

    /// Waits (bounded) until `condition` holds; returns whether it did.
    func eventually(timeoutSeconds: Double = 3, _ condition: () -> Bool) -> Bool {
        Self.eventually(timeoutSeconds: timeoutSeconds, condition)
    }

    /// Whether `condition` holds within `timeoutSeconds`, asked every 5 ms.
    static func eventually(timeoutSeconds: Double = 3, _ condition: () -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(timeoutSeconds)
        while Date() < deadline {
            if condition() { return true }
            usleep(5_000)
        }
        return condition()
    }
}

/// Keeps every log entry, for tests that check what is (not) logged. Its `handler` is a value,
/// as swift-log expects of a `LogHandler`: each `Logger` copy's metadata is its own (the gateway
/// sets `generation_id` and `key` per request, on several loops at once); only the entries are
/// shared, behind a lock. (A class handler shared that metadata between threads: a data race
/// that crashed a CI run.)
final class CapturedLog: @unchecked Sendable {
    struct Entry: Sendable {
        let level: Logger.Level
        let message: String
        let metadata: [String: String]
        /// Everything the entry says, for searching.
        var text: String { message + " " + metadata.map { "\($0.key)=\($0.value)" }.joined(separator: " ") }
    }

    private let lock = NSLock()
    private var stored: [Entry] = []

    var entries: [Entry] { lock.withLock { stored } }

    fileprivate func append(_ entry: Entry) { lock.withLock { stored.append(entry) } }

    /// A handler that files its entries here.
    var handler: Handler { Handler(store: self) }

    struct Handler: LogHandler {
        let store: CapturedLog
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .info

        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }

        func log(event: LogEvent) {
            var all = metadata
            if let extra = event.metadata { all.merge(extra) { $1 } }
            store.append(Entry(level: event.level, message: "\(event.message)", metadata: all.mapValues { "\($0)" }))
        }
    }
}
