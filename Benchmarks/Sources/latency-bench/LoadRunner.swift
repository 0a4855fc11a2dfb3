import BenchSupport
import EventLoop
import Foundation
import GatewayCore
import Histogram
import UpstreamClient

/// N streams at once on one path; per event: latency from the mock's send stamp (`sent_at_us`,
/// wall clock, same machine) to arrival, and the gap since the stream's previous event.
final class LoadRunner: @unchecked Sendable {  // loop-confined after creation
    struct Result {
        var path: String
        var streams: Int
        var latency: Histogram<UInt64>
        var gaps: Histogram<UInt64>
        var ttft: Histogram<UInt64>
        var stalls = 0
        /// Stalls whose event arrived more than one pace after the mock's send stamp: held on the
        /// way (proxy, kernel or this client), not sent late by the mock.
        var stallsHeldInTransit = 0
        var failures = 0
        var events = 0
        var seconds = 0.0
        /// Streams that have had their first event, and when the first of them had it.
        var opened = 0
        var firstOpenNanoseconds: UInt64 = 0
        var completed = 0
        /// Why streams failed, by kind (the first bytes of a body that was not a stream).
        var failureKinds: [String: Int] = [:]
    }

    let loop: EventLoop
    /// One libcurl multi handle per `streamsPerClient` streams. libcurl 7.88 walks every connection
    /// of a multi handle when a transfer starts (looking for one to reuse) and again when one is
    /// removed (`close_connect_only`), so one handle for 10,000 streams made this client the
    /// bottleneck as streams opened and ended (100% of its CPU in those walks, every stream's last
    /// events held up to 2 s). Shards keep each walk short.
    let clients: [UpstreamClient]
    static let streamsPerClient = 250
    let url: String
    /// More proxies to spread the streams over, round robin with `url`.
    var moreURLs: [String] = []
    private var startedStreams = 0
    let model: String
    let streams: Int
    let paceMicroseconds: UInt64
    var result: Result
    private var remaining: Int
    private var completion: () -> Void = {}
    private var started = Date()
    private var rampTimer: LoopTimer?

    init(loop: EventLoop, path: String, url: String, model: String, streams: Int, paceMilliseconds: Int) {
        self.loop = loop
        clients = (0..<max(1, (streams + Self.streamsPerClient - 1) / Self.streamsPerClient)).map { _ in UpstreamClient(loop: loop) }
        self.url = url
        self.model = model
        self.streams = streams
        paceMicroseconds = UInt64(paceMilliseconds) * 1000
        remaining = streams
        let histogram = Histogram<UInt64>(highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: .three)
        result = Result(path: path, streams: streams, latency: histogram, gaps: histogram, ttft: histogram)
    }

    /// Starts every stream at once, or `batch` streams every `everyMilliseconds` (thousands of
    /// connects at once would overflow the listen backlogs and measure SYN retransmits).
    func start(batch: Int = .max, everyMilliseconds: UInt64 = 20, _ completion: @escaping () -> Void) {
        self.completion = completion
        started = Date()
        let body = Array(#"{"model":"\#(model)","stream":true,"messages":[{"role":"user","content":"load"}]}"#.utf8)
        var toStart = streams
        func startBatch() {
            for _ in 0..<min(batch, toStart) { startStream(body) }
            toStart -= min(batch, toStart)
        }
        startBatch()
        guard toStart > 0 else { return }
        let timer = LoopTimer(loop: loop) { [unowned self] in
            startBatch()
            if toStart == 0 { rampTimer?.close(); rampTimer = nil }
        }
        rampTimer = timer
        timer.start(afterMilliseconds: everyMilliseconds, repeatMilliseconds: everyMilliseconds)
    }

    private func startStream(_ body: [UInt8]) {
        let begin = EventLoop.monotonicNanoseconds()
        var decoder = SSEDecoder()
        var last: UInt64 = 0
        var done = false
        let urls = [url] + moreURLs
        let target = urls[startedStreams % urls.count]
        let shard = clients[startedStreams % clients.count]
        startedStreams += 1
        let transfer = shard.start(UpstreamRequest(url: target, headers: [("Content-Type", "application/json")], body: body,
                                                    connectTimeoutMilliseconds: 30_000))
        var head: [UInt8] = []
        transfer.onData = { [unowned self] bytes in
            if head.count < 80 { head += bytes.prefix(80 - head.count) }
            let arrival = EventLoop.monotonicNanoseconds()
            let wall = Self.wallMicroseconds()
            try? decoder.feed(bytes) { event in
                if event.isDone { done = true; return }
                result.events += 1
                var latency: UInt64 = 0
                if let range = JSONScanner.rangeOfTopLevelValue(forKey: "sent_at_us", in: event.data),
                   let sent = UInt64(String(decoding: UnsafeRawBufferPointer(rebasing: event.data[range]), as: UTF8.self)) {
                    latency = wall > sent ? wall - sent : 0
                    _ = result.latency.record(latency)
                }
                if last == 0 {
                    result.opened += 1
                    if result.firstOpenNanoseconds == 0 { result.firstOpenNanoseconds = arrival }
                    _ = result.ttft.record((arrival - begin) / 1000)
                } else {
                    let gap = (arrival - last) / 1000
                    _ = result.gaps.record(gap)
                    if gap > 2 * paceMicroseconds {
                        result.stalls += 1
                        if latency > paceMicroseconds { result.stallsHeldInTransit += 1 }
                    }
                }
                last = arrival
            }
            return true
        }
        transfer.onComplete = { [unowned self] failure in
            if failure != nil || !done {
                result.failures += 1
                let kind = failure.map { String($0.message.prefix(80)) } ?? "no [DONE]: " + String(decoding: head.prefix(80), as: UTF8.self)
                result.failureKinds[kind, default: 0] += 1
            }
            remaining -= 1
            result.completed += 1
            if remaining == 0 {
                result.seconds = Date().timeIntervalSince(started)
                for client in clients { client.close() }
                completion()
            }
        }
    }

    static func wallMicroseconds() -> UInt64 {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        return UInt64(now.tv_sec) * 1_000_000 + UInt64(now.tv_nsec) / 1000
    }
}

/// nginx as a peer proxy in front of the mock (proxy_buffering off: its best case for streams).
final class NginxPeer {
    let process = Process()
    let port: Int
    let directory: URL

    /// `pinCPU`: run it (master and workers) on that CPU only, with `taskset`.
    init?(upstreamPort: Int, workers: Int = 2, connectionsPerWorker: Int = 10_000, pinCPU: Int? = nil) throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/sbin/nginx") else { return nil }
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("latency-bench-nginx-\(getpid())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        port = Self.freePort()
        let config = """
            worker_processes \(workers); daemon off; pid \(directory.path)/nginx.pid; error_log \(directory.path)/error.log;
            worker_rlimit_nofile \(min(2 * connectionsPerWorker + 100, Self.descriptorLimit));
            events { worker_connections \(connectionsPerWorker); }
            http {
              access_log off;
              client_body_temp_path \(directory.path); proxy_temp_path \(directory.path);
              upstream mock { server 127.0.0.1:\(upstreamPort); keepalive 256; }
              server {
                listen 127.0.0.1:\(port) reuseport backlog=1024;  # the gateway's (libuv) backlog; nginx's own is 511
                location / {
                  proxy_pass http://mock; proxy_http_version 1.1; proxy_set_header Connection "";
                  proxy_buffering off; proxy_read_timeout 300s;
                }
              }
            }
            """
        try config.write(to: directory.appendingPathComponent("nginx.conf"), atomically: true, encoding: .utf8)
        let arguments = ["-c", directory.appendingPathComponent("nginx.conf").path, "-e", directory.appendingPathComponent("error.log").path]
        if let pinCPU {
            process.executableURL = URL(fileURLWithPath: "/usr/bin/taskset")
            process.arguments = ["-c", String(pinCPU), "/usr/sbin/nginx"] + arguments
        } else {
            process.executableURL = URL(fileURLWithPath: "/usr/sbin/nginx")
            process.arguments = arguments
        }
        try process.run()
        // Ready when it accepts.
        for _ in 0..<200 {
            if Self.accepts(port) { return }
            usleep(10_000)
        }
        process.terminate()
        return nil
    }

    func stop() {
        process.terminate()
        process.waitUntilExit()
        // Its alerts (descriptor limits, refused upstreams) outlive the run.
        let kept = FileManager.default.temporaryDirectory.appendingPathComponent("latency-bench-nginx-error.log")
        try? FileManager.default.removeItem(at: kept)
        try? FileManager.default.copyItem(at: directory.appendingPathComponent("error.log"), to: kept)
        try? FileManager.default.removeItem(at: directory)
    }

    /// This process's hard descriptor limit (nginx's master inherits it; asking more fails).
    static var descriptorLimit: Int {
        var limit = rlimit()
        getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
        return Int(min(limit.rlim_max, 1 << 20))
    }

    static func freePort() -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) } }
        _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
        return Int(UInt16(bigEndian: address.sin_port))
    }

    static func accepts(_ port: Int) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        } == 0
    }
}
