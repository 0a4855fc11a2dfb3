import ArgumentParser
import BenchSupport
import EventLoop
import Foundation
import GatewayCore
import UpstreamClient
import Web

/// What the web tools cost, in one run:
/// 1. Page to text: `HTMLText` (libxml2) on generated article pages of three sizes, against Python
///    peers (lxml's `text_content()`, BeautifulSoup's `get_text()`) timed on the same pages.
/// 2. A page read by a panel member: the gateway's `web_fetch` duration (from its
///    `fusion.web.completed` events: SSRF-checked connect, GET, HTML to text), against a direct
///    GET of the same page (fresh connection, no parsing) and a Python agent's usual tool
///    (httpx GET + BeautifulSoup `get_text()`), alternating, same mock server.
@main
struct WebBench: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "web-bench", abstract: "Cost of web_fetch and HTML-to-text.")

    @Option(help: "The fusion-gateway binary (release build).")
    var gateway = "../.build/release/fusion-gateway"

    @Option(help: "Python with lxml, beautifulsoup4 and httpx for the peers (skipped if missing).")
    var python = "../.venv/bin/python"

    @Option(help: "Repetitions per measurement.")
    var runs = 40

    func run() throws {
        let pythonOK = FileManager.default.isExecutableFile(atPath: python) && shell(python, ["-c", "import lxml, bs4, httpx"]) != nil
        if !pythonOK { print("(no Python peers: \(python) lacks lxml, beautifulsoup4 or httpx)") }
        try renderBenchmark(pythonOK: pythonOK)
        try fetchBenchmark(pythonOK: pythonOK)
    }

    // MARK: 1. HTML to text

    func renderBenchmark(pythonOK: Bool) throws {
        print("page to text, median of \(runs) (ms per page; MB/s)")
        print("page     fusion-gateway          lxml text_content       bs4 get_text            speed vs lxml, vs bs4 (>1: faster)")
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("web-bench-\(getpid())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        for (name, sections) in [("20 KB", 12), ("200 KB", 120), ("2 MB", 1200)] {
            let page = Self.article(sections: sections)
            let file = directory.appendingPathComponent("\(sections).html")
            try Data(page).write(to: file)
            var times: [Double] = []
            var characters = 0
            for _ in 0..<runs {
                let start = DispatchTime.now().uptimeNanoseconds
                characters = HTMLText.extract(page).text.count
                times.append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6)
            }
            let ours = median(times)
            var peers: [Double] = [.nan, .nan]
            if pythonOK, let output = shell(python, ["-c", Self.pythonRender, file.path, String(runs)]) {
                peers = output.split(separator: " ").compactMap { Double($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
            }
            let megabytes = Double(page.count) / 1e6
            func cell(_ ms: Double) -> String {
                ms.isNaN ? "-".padding(toLength: 22, withPad: " ", startingAt: 0) : String(format: "%7.2f ms %6.1f MB/s", ms, megabytes / (ms / 1000))
            }
            let bs4 = peers.count > 1 ? peers[1] : .nan
            print(name.padding(toLength: 8, withPad: " ", startingAt: 0), cell(ours), " ", cell(peers[0]), " ", cell(bs4), " ",
                  String(format: "%5.2fx, %5.1fx   (%d characters of text)", peers[0] / ours, bs4 / ours, characters))
        }
    }

    static let pythonRender = """
        import sys, time, statistics, lxml.html, bs4
        data = open(sys.argv[1], 'rb').read(); runs = int(sys.argv[2])
        def timed(f):
            t = []
            for _ in range(runs):
                s = time.perf_counter(); f(); t.append((time.perf_counter() - s) * 1000)
            return statistics.median(t)
        a = timed(lambda: lxml.html.fromstring(data).text_content())
        b = timed(lambda: bs4.BeautifulSoup(data, 'html.parser').get_text())
        print(a, b)
        """

    /// A news-article-like page: navigation, scripts and styles, then `sections` sections of
    /// headings, paragraphs with inline markup, lists and a table.
    static func article(sections: Int) -> [UInt8] {
        var html = "<!doctype html><html><head><meta charset=utf-8><title>A long article</title>"
        html += "<style>body{font:16px sans-serif}.x{color:red}</style><script>window.dataLayer=[];function t(){}</script></head><body>"
        html += "<nav><ul>" + (1...20).map { "<li><a href=\"/s\($0)\">Section \($0)</a></li>" }.joined() + "</ul></nav><main><article>"
        for section in 0..<sections {
            html += "<h2>Section \(section): findings and caveats</h2>"
            html += "<p>Researchers measured <b>outcomes</b> across <a href=\"/c\(section)\">several cities</a> and found that "
                + "congestion fell by <em>\(section % 30)%</em> while transit use rose; the effect persisted for years.</p>"
            html += "<ul><li>Evidence point \(section)</li><li>Caveat: small samples &amp; short windows</li></ul>"
            if section % 4 == 0 {
                html += "<table><tr><th>City</th><th>Change</th></tr><tr><td>A</td><td>-\(section % 20)%</td></tr></table>"
            }
            html += "<script>t(\(section))</script>"
        }
        html += "</article></main><footer>© footer links</footer></body></html>"
        return Array(html.utf8)
    }

    // MARK: 2. a page read through the gateway

    func fetchBenchmark(pythonOK: Bool) throws {
        let mock = try ChildProcess(gateway, ["mock-upstream", "--port", "0", "--log-level", "error"],
                                    banner: "mock upstream listening on http://127.0.0.1:")
        defer { mock.stop() }
        let config = FileManager.default.temporaryDirectory.appendingPathComponent("web-bench-\(getpid()).yaml")
        try """
            providers:
              mock: {base_url: 'http://127.0.0.1:\(mock.port)/v1'}
            fusion:
              outer_model: 'mock/outer:pace_ms=0'
              presets:
                quality: {analysis_models: ['mock/researcher:pace_ms=0']}
            web:
              search: {backend: searxng, url: 'http://127.0.0.1:\(mock.port)'}
              fetch: {allow: ['127.0.0.1:\(mock.port)']}
            """.write(to: config, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: config) }
        let gatewayProcess = try ChildProcess(gateway, ["serve", "--port", "0", "--config", config.path, "--log-level", "error", "--loops", "1"],
                                              banner: "fusion-gateway listening on http://127.0.0.1:")
        defer { gatewayProcess.stop() }
        let thread = EventLoopThread(name: "bench-client")
        defer { thread.shutdown() }
        let client = try thread.loop.submitAndWait { LoopBound(UpstreamClient(loop: thread.loop)) }
        defer { thread.loop.execute { client.value.close() } }

        print("\nweb_fetch of a page from a loopback server, median / p90 of \(runs) (ms)")
        print("page                 direct GET        gateway web_fetch   added     python httpx+bs4")
        for (name, path) in [("article (0.7 KB)", "/web/page/1"), ("long page (200 KB)", "/web/big?bytes=200000")] {
            let url = "http://127.0.0.1:\(mock.port)\(path)"
            var direct: [Double] = []
            var viaGateway: [Double] = []
            for _ in 0..<runs {
                direct.append(try Self.get(client, thread: thread, url: url, method: "GET", body: []).milliseconds)
                let body = #"{"model":"mock/outer:pace_ms=0","stream":true,"tool_choice":"required","stream_options":{"include_fusion_events":true},"messages":[{"role":"user","content":"Read \#(url) now"}],"tools":[{"type":"fusion"}]}"#
                let response = try Self.get(client, thread: thread, url: "http://127.0.0.1:\(gatewayProcess.port)/v1/chat/completions",
                                            method: "POST", body: Array(body.utf8))
                var decoder = SSEDecoder()
                try decoder.feed(response.body) { event in
                    guard event.nameString == "fusion.web.completed", let data = try? JSONValue.parse(Array(event.data)) else { return }
                    if data["error"] == nil, let milliseconds = data["duration_ms"]?.doubleValue { viaGateway.append(milliseconds) }
                }
            }
            var peer = "-"
            if pythonOK, let output = shell(python, ["-c", Self.pythonFetch, url, String(runs)]) {
                peer = output.trimmingCharacters(in: .whitespacesAndNewlines)
            }
            guard !viaGateway.isEmpty else { throw ValidationError("no successful web_fetch through the gateway for \(path)") }
            print(name.padding(toLength: 20, withPad: " ", startingAt: 0),
                  String(format: "%6.3f / %6.3f   %6.3f / %6.3f     %+6.3f   ", median(direct), percentile(direct, 0.9),
                         median(viaGateway), percentile(viaGateway, 0.9), median(viaGateway) - median(direct)) + peer)
        }
    }

    static let pythonFetch = """
        import sys, time, statistics, httpx, bs4
        url, runs = sys.argv[1], int(sys.argv[2]); t = []
        for _ in range(runs):
            s = time.perf_counter()
            with httpx.Client() as c: r = c.get(url)
            bs4.BeautifulSoup(r.content, 'html.parser').get_text()
            t.append((time.perf_counter() - s) * 1000)
        t.sort(); print('%.3f / %.3f' % (statistics.median(t), t[int(0.9 * (len(t) - 1))]))
        """

    struct Fetched {
        var body: [UInt8]
        var milliseconds: Double
    }

    /// One request on a fresh connection (as web_fetch makes), timed to its last byte.
    static func get(_ client: LoopBound<UpstreamClient>, thread: EventLoopThread, url: String, method: String, body: [UInt8]) throws -> Fetched {
        let done = DispatchSemaphore(value: 0)
        nonisolated(unsafe) var result = Fetched(body: [], milliseconds: 0)
        thread.loop.execute {
            var request = UpstreamRequest(url: url, method: method,
                                          headers: method == "POST" ? [("Content-Type", "application/json")] : [], body: body)
            request.connectFilter = { _, _ in nil }  // fresh connection, like web_fetch
            let start = DispatchTime.now().uptimeNanoseconds
            let transfer = client.value.start(request)
            transfer.onData = { bytes in
                result.body.append(contentsOf: bytes)
                return true
            }
            transfer.onComplete = { _ in
                result.milliseconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6
                done.signal()
            }
        }
        done.wait()
        return result
    }

    func median(_ values: [Double]) -> Double { percentile(values, 0.5) }

    func percentile(_ values: [Double], _ p: Double) -> Double {
        guard !values.isEmpty else { return .nan }
        let sorted = values.sorted()
        return sorted[Int((Double(sorted.count - 1) * p).rounded())]
    }

    /// Runs a command; its stdout, or nil if it failed.
    func shell(_ executable: String, _ arguments: [String]) -> String? {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        let output = Pipe()
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        guard (try? process.run()) != nil else { return nil }
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return process.terminationStatus == 0 ? String(decoding: data, as: UTF8.self) : nil
    }
}

/// A loop-confined object handed between threads: only touched on its loop.
final class LoopBound<Value>: @unchecked Sendable {
    let value: Value
    init(_ value: Value) { self.value = value }
}
