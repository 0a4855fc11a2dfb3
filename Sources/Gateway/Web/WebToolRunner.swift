import EventLoop
import Foundation
import Fusion
import GatewayCore
import Logging
import UpstreamClient
import Providers
import Web

/// What a web tool call produced (the Fusion state machine's type).
typealias WebToolOutcome = FusionSessionMachine.ToolOutcome

/// A web tool call in flight: its completion runs once, on the loop; `cancel()` stops it and
/// the completion never runs.
class WebToolTask {
    fileprivate var completion: ((WebToolOutcome) -> Void)?
    fileprivate var transfer: UpstreamTransfer?
    fileprivate var deadline: LoopTimer?
    /// A page waiting for (or being) parsed off the loop: cancelled with the call, so a parse
    /// nobody waits for any more never starts.
    fileprivate var parse: OffLoopLane.Ticket?

    fileprivate init(completion: @escaping (WebToolOutcome) -> Void) {
        self.completion = completion
    }

    /// Neither finished nor cancelled.
    fileprivate var isRunning: Bool { completion != nil }

    func cancel() {
        completion = nil
        transfer?.cancel()
        transfer = nil
        deadline?.close()
        deadline = nil
        parse?.cancel()
        parse = nil
    }

    fileprivate func finish(_ outcome: WebToolOutcome) {
        let callback = completion
        cancel()
        callback?(outcome)
    }
}

/// Runs `web_search` and `web_fetch` calls on one loop, with its curl client (no thread, no
/// blocking): Fusion's tool loops hand it the calls their models make.
final class WebToolRunner {
    /// Fetched pages' parses (and search backends' replies), process-wide: a thread per core at most, and a backlog of 256 pages
    /// holding at most 256 MiB of bodies, beyond which a fetch is answered "busy" (review 63 #4:
    /// 32 pages refused a third of six deliberations' 2 MiB pages). A page waits no longer than
    /// its member's or judge's time (the tools' timers), and not at all once its call is gone.
    static let pageParsers = OffLoopLane(width: ProcessInfo.processInfo.activeProcessorCount, backlog: 256, backlogBytes: 256 << 20)

    let settings: WebSettings
    private let client: UpstreamClient
    /// Where a search backend's transport failure is told whole (host, port: the operator's),
    /// the model and the client getting curl's description only (review 79 #10).
    private let logger: Logger?

    init(client: UpstreamClient, settings: WebSettings, logger: Logger? = nil) {
        self.client = client
        self.settings = settings
        self.logger = logger
    }

    /// Runs `call`; `completion` runs on the loop, possibly before this returns (a call that is
    /// invalid on its face), and then nil is returned.
    @discardableResult
    func run(_ call: ToolCall, completion: @escaping (WebToolOutcome) -> Void) -> WebToolTask? {
        guard case .object(let arguments) = (try? JSONValue.parse(Array(call.arguments.utf8))) ?? .null else {
            completion(.failure("the arguments of \(call.name) are not a JSON object"))
            return nil
        }
        switch call.name {
        case WebToolNames.search:
            guard let backend = settings.search else {
                completion(.failure("web_search is not available on this gateway"))
                return nil
            }
            if backend.kind != .searxng, backend.apiKey?.isEmpty ?? true {
                completion(.failure("the \(backend.kind.rawValue) search backend has no API key (its environment variable is not set)"))
                return nil
            }
            guard let query = arguments["query"]?.stringValue?.trimmingCharacters(in: .whitespacesAndNewlines), !query.isEmpty else {
                completion(.failure("web_search needs a non-empty 'query'"))
                return nil
            }
            let count = min(settings.maxResults, max(1, Int(arguments["max_results"]?.intValue ?? Int64(settings.maxResults))))
            return WebSearch(client: client, backend: backend, query: query, count: count, settings: settings, logger: logger, completion: completion)
        case WebToolNames.fetch:
            guard settings.fetch else {
                completion(.failure("web_fetch is not available on this gateway"))
                return nil
            }
            guard let text = arguments["url"]?.stringValue else {
                completion(.failure("web_fetch needs a 'url' string"))
                return nil
            }
            switch WebPage.validate(text) {
            case .failure(let error):
                completion(.failure(error.message))
                return nil
            case .success(let url):
                return WebFetch(client: client, url: url, settings: settings, completion: completion)
            }
        default:
            completion(.failure("unknown tool '\(call.name)': the available tools are web_search and web_fetch"))
            return nil
        }
    }
}

/// One search: a GET (or POST) to the configured backend, its reply normalised.
private final class WebSearch: WebToolTask {
    private var status = 0
    private var body: [UInt8] = []

    init(client: UpstreamClient, backend: SearchBackend, query: String, count: Int, settings: WebSettings, logger: Logger?,
         completion: @escaping (WebToolOutcome) -> Void) {
        super.init(completion: completion)
        let request = backend.request(query: query, count: count)
        let access = settings.access(for: request.url)
        var upstream = UpstreamRequest(url: request.url, method: request.method, headers: request.headers + access.headers,
                                       body: request.body, connectTimeoutMilliseconds: Int(settings.searchTimeoutMilliseconds))
        upstream.connectTo = access.connectTo
        upstream.totalTimeoutMilliseconds = Int(settings.searchTimeoutMilliseconds)
        upstream.acceptCompression = true
        let transfer = client.start(upstream)
        self.transfer = transfer
        let name = backend.kind.rawValue
        let loop = client.loop
        transfer.onHead = { [unowned self] status, _ in self.status = status }
        transfer.onData = { [unowned self] bytes in
            guard body.count + bytes.count <= 4 << 20 else {
                finish(.failure("the \(name) search backend's reply is larger than 4 MiB"))
                return true
            }
            body.append(contentsOf: bytes)
            return true
        }
        transfer.onComplete = { [unowned self] failure in
            self.transfer = nil
            if let failure {
                // curl's fixed description, not its text naming the backend's host and port:
                // the result reaches the model, the client and the analysis (review 78 #3).
                finish(.failure("the \(name) search backend failed: \(failure.detail.client)"))
                logger?.warning("web search backend failed", metadata: ["backend": "\(name)", "error_detail": "\(failure.message)"])
            } else if !(200..<300).contains(status) {
                // Redacted, then shortened: a backend that echoes the request has its key in the
                // reply, and a key cut in half is not recognised as one.
                let reply = String(decoding: body.prefix(16 << 10), as: UTF8.self)
                let detail = backend.apiKey.map { Redactor(secrets: [$0])(reply) } ?? reply
                finish(.failure("the \(name) search backend answered HTTP \(status): \(detail.shortened(toBytes: 200))"))
            } else {
                parseOffTheLoop(backend: backend, query: query, count: count, loop: loop)
            }
        }
    }

    /// The reply parsed in the pages' lane, as a page is: a backend's 4 MiB of nested JSON held
    /// the loop, and every stream on it, for seconds a search (review 106 #1).
    private func parseOffTheLoop(backend: SearchBackend, query: String, count: Int, loop: EventLoop) {
        let reply = body
        body = []
        let ticket = OffLoopLane.Ticket()
        parse = ticket
        let queued = WebToolRunner.pageParsers.submit(on: loop, ticket: ticket, bytes: reply.count, { () -> Result<[SearchResult], SearchBackend.ParseError> in
            do throws(SearchBackend.ParseError) {
                return .success(try backend.parse(reply, count: count))
            } catch {
                return .failure(error)
            }
        }, then: { [weak self] parsed in
            guard let self, isRunning else { return }
            parse = nil
            switch parsed {
            case .success(let results):
                let content = JSONValue.object(["query": .string(query), "results": .array(results.map(\.json))])
                finish(WebToolOutcome(content: String(decoding: content.serialized(), as: UTF8.self),
                                      sources: results.map { Source(url: $0.url, title: $0.title, content: $0.snippet) }))
            case .failure(let error):
                finish(.failure(error.description))
            }
        })
        if !queued {
            finish(.failure("the gateway is busy reading other pages and search replies: the search's reply was not read; try again later"))
        }
    }

}

/// One page read: GET with redirects followed by hand (each hop's URL validated, and each
/// connection's address checked by the SSRF policy after DNS resolution), a size cap (the rest is
/// cut off, the page marked truncated), one deadline over all hops, and the body turned into text.
private final class WebFetch: WebToolTask {
    private let client: UpstreamClient
    private let settings: WebSettings
    private var url: URL
    private var redirects = 0
    private var status = 0
    private var headers: [(String, String)] = []
    private var body: [UInt8] = []
    private var truncated = false

    init(client: UpstreamClient, url: URL, settings: WebSettings, completion: @escaping (WebToolOutcome) -> Void) {
        self.client = client
        self.settings = settings
        self.url = url
        super.init(completion: completion)
        let deadline = LoopTimer(loop: client.loop, readsFirstWhenLate: true) { [unowned self] in
            // A page still arriving is read as far as it came, marked truncated, as a page cut at
            // `max_bytes` is (review 62B #8: it was thrown away).
            if readWhatCame() { return }
            finish(.failure("fetching \(self.url.absoluteString) took longer than \(settings.fetchTimeoutMilliseconds) ms"))
        }
        deadline.start(afterMilliseconds: settings.fetchTimeoutMilliseconds)
        self.deadline = deadline
        hop()
    }

    /// curl's own timeouts are a backstop behind the fetch's deadline, which reads what came and
    /// names the limit: a deadline put off because the loop ran late (`readsFirstWhenLate`)
    /// must still come first (a "Timeout was reached" failure threw the page away).
    static let curlSlackMilliseconds = 1_000

    private func hop() {
        status = 0
        headers = []
        body = []
        let policy = settings.addressPolicy
        let access = settings.access(for: url.absoluteString)
        var request = UpstreamRequest(url: url.absoluteString, method: "GET", headers: [
            ("Accept", "text/html,application/xhtml+xml,text/plain;q=0.9,application/json;q=0.8,*/*;q=0.5"),
        ] + access.headers, connectTimeoutMilliseconds: Int(settings.fetchTimeoutMilliseconds) + Self.curlSlackMilliseconds)
        request.connectTo = access.connectTo
        request.connectFilter = { address, port in policy.refusal(address: address, port: port) }
        request.totalTimeoutMilliseconds = Int(settings.fetchTimeoutMilliseconds) + Self.curlSlackMilliseconds
        request.acceptCompression = true
        let transfer = client.start(request)
        self.transfer = transfer
        transfer.onHead = { [unowned self] status, headers in
            self.status = status
            self.headers = headers
            // A redirect's or an error's body is not needed: never read, so never decompressed on
            // the loop (review 55B #1: a 404 with a gzip bomb held every stream here for seconds).
            guard (200..<300).contains(status) else {
                self.transfer?.cancel()
                self.transfer = nil
                complete()
                return
            }
        }
        transfer.onData = { [unowned self] bytes in
            let room = settings.maxFetchBytes - body.count
            body.append(contentsOf: bytes.prefix(room))
            if bytes.count > room {
                truncated = true
                self.transfer?.cancel()  // enough: read no more
                self.transfer = nil
                complete()
            }
            return true
        }
        transfer.onComplete = { [unowned self] failure in
            self.transfer = nil
            // A page whose server broke off mid-body, or still arriving at the deadline (curl's
            // own timer is the deadline's twin): what arrived, marked truncated.
            let cut: Bool = switch failure {
            case .transfer?, .timedOut?: true
            default: false
            }
            if cut, readWhatCame() { return }
            if let failure {
                if case .refused(let reason) = failure {
                    finish(.failure("refused to fetch \(url.absoluteString): \(reason.client)"))
                } else {
                    finish(.failure("could not fetch \(url.absoluteString): \(failure.detail.client)"))
                }
                return
            }
            complete()
        }
    }

    /// A page cut short (its server broke off, the deadline came) that has begun: read as far as
    /// it came, marked truncated. False when there is nothing to read.
    private func readWhatCame() -> Bool {
        guard (200..<300).contains(status), !body.isEmpty else { return false }
        transfer?.cancel()
        transfer = nil
        truncated = true
        complete()
        return true
    }

    private func header(_ name: String) -> String? {
        headers.last { $0.0.caseInsensitiveCompare(name) == .orderedSame }?.1
    }

    private func complete() {
        if [301, 302, 303, 307, 308].contains(status), let location = header("Location") {
            guard redirects < settings.maxRedirects else {
                finish(.failure("too many redirects (more than \(settings.maxRedirects)) from \(url.absoluteString)"))
                return
            }
            switch WebPage.redirectTarget(location, from: url) {
            case .failure(let error):
                finish(.failure(error.message))
            case .success(let target):
                redirects += 1
                url = target
                hop()
            }
            return
        }
        guard (200..<300).contains(status) else {
            finish(.failure("\(url.absoluteString) answered HTTP \(status)"))
            return
        }
        // Parsed off the loop: libxml2 over up to `max_bytes` takes tens of milliseconds for an
        // ordinary page and most of a second for a hostile one, a stall for every stream here.
        // In a bounded lane (`pageParsers`): a burst of pages waits its turn there, its download
        // deadline stopped (the page is in: a wait for the gateway's own threads is no slow
        // site), and a call finished or cancelled meanwhile never has its page parsed.
        let (body, contentType, maxCharacters, truncated) = (body, header("Content-Type"), settings.maxPageCharacters, truncated)
        self.body = []
        deadline?.close()
        deadline = nil
        let ticket = OffLoopLane.Ticket()
        parse = ticket
        let queued = WebToolRunner.pageParsers.submit(on: client.loop, ticket: ticket, bytes: body.count, {
            WebPage.render(body: body, contentType: contentType, maxCharacters: maxCharacters, downloadTruncated: truncated)
        }, then: { [weak self] rendered in
            guard let self, isRunning else { return }
            parse = nil
            read(rendered)
        })
        if !queued {
            finish(.failure("the gateway is busy reading other pages: \(url.absoluteString) was not read; try again later"))
        }
    }

    private func read(_ rendered: Result<(title: String?, text: String, truncated: Bool), WebToolError>) {
        switch rendered {
        case .failure(let error):
            finish(.failure("\(url.absoluteString): \(error.message)"))
        case .success(let page):
            let address = url.absoluteString
            var content: [String: JSONValue] = ["url": .string(address), "content": .string(page.text),
                                                "truncated": .bool(page.truncated)]
            if let title = page.title { content["title"] = .string(title) }
            let excerpt = String(page.text.prefix(300)).shortened(toBytes: 1_200)  // a Character may be any number of bytes
            // Shown to people as they are: without a page's terminal escapes and bidi overrides.
            finish(WebToolOutcome(content: String(decoding: JSONValue.object(content).serialized(), as: UTF8.self),
                                  sources: [Source(url: address, title: DisplayText.cleaned(page.title ?? address, oneLine: true),
                                                   content: DisplayText.cleaned(excerpt))]))
        }
    }

}
