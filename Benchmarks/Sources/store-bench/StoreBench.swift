import ArgumentParser
import BenchSupport
import Foundation

/// What the shared store adds to a request, in one run: four gateways (release builds, one loop
/// each, the same simulated model) answer the same requests in turn, one at a time over a
/// keep-alive connection each:
///   A  in process, the key has no limits (the baseline)
///   B  in process, the key has limits (admission and settlement under a lock)
///   C  Redis, the key has no limits (the record and the usage counters written after the response)
///   D  Redis, the key has limits (one EVAL round trip before the request starts, one after)
/// Requests alternate A, B, C, D, so drift on the machine hits all four alike, with a pause after
/// each (`--gap-microseconds`): work a gateway does after its response (Redis writes) would
/// otherwise land in the next target's measurement.
@main
struct StoreBench: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "store-bench", abstract: "Latency the shared store adds per request.")

    @Option(help: "The fusion-gateway binary (release build).")
    var gateway = "../.build/release/fusion-gateway"

    @Option(help: "redis-server.")
    var redisServer = "/usr/bin/redis-server"

    @Option(help: "Measured requests per target.")
    var requests = 3_000

    @Option(help: "Warm-up requests per target.")
    var warmup = 200

    @Option(help: "Microseconds to wait after each request, so a target's after-response work (records and usage written to Redis) is not measured in the next target's request.")
    var gapMicroseconds: UInt32 = 1_000

    @Option(help: "The model every target serves.")
    var model = "sim/normal:pace_ms=0:deltas=3"

    static let key = "sk-store-bench-0123456789"

    func run() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("store-bench-\(getpid())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let redisPort = try freePort()
        let redis = Process()
        redis.executableURL = URL(fileURLWithPath: redisServer)
        redis.arguments = ["--port", String(redisPort), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", directory.path]
        redis.standardOutput = FileHandle.nullDevice
        try redis.run()
        defer { kill(redis.processIdentifier, SIGKILL); redis.waitUntilExit() }
        usleep(300_000)

        let targets: [(String, String)] = [
            ("A in process, no limits", Self.config(redis: nil, limits: false)),
            ("B in process, limits", Self.config(redis: nil, limits: true)),
            ("C redis, no limits", Self.config(redis: redisPort, limits: false)),
            ("D redis, limits", Self.config(redis: redisPort, limits: true)),
        ]
        var gateways: [ChildProcess] = []
        defer { for gateway in gateways { gateway.stop() } }
        for (index, (_, config)) in targets.enumerated() {
            let file = directory.appendingPathComponent("gateway-\(index).yaml")
            try config.write(to: file, atomically: true, encoding: .utf8)
            setenv("STORE_BENCH_KEY", Self.key, 1)
            gateways.append(try ChildProcess(gateway, ["serve", "--config", file.path, "--port", "0", "--loops", "1", "--log-level", "error"],
                                             banner: "listening on http://127.0.0.1:"))
        }
        let clients = try gateways.map { try Client(port: $0.port) }
        let body = #"{"model":"\#(model)","messages":[{"role":"user","content":"How far is the moon?"}]}"#
        var samples = Array(repeating: [Double](), count: targets.count)
        for round in 0..<(warmup + requests) {
            for (index, client) in clients.enumerated() {
                let elapsed = try client.post(body, key: Self.key)
                if round >= warmup { samples[index].append(elapsed) }
                usleep(gapMicroseconds)
            }
        }
        print("store-bench: \(requests) requests per target (after \(warmup) warm-up), alternating, one at a time, \(gapMicroseconds) µs apart; model \(model)")
        print("target                          p50 (ms)   p99 (ms)   added p50   added p99   (vs A)")
        let baseline = samples[0].sorted()
        for (index, (name, _)) in targets.enumerated() {
            let sorted = samples[index].sorted()
            let p50 = percentile(sorted, 0.5), p99 = percentile(sorted, 0.99)
            print(name.padding(toLength: 30, withPad: " ", startingAt: 0),
                  String(format: "%9.3f  %9.3f  %+9.3f  %+9.3f", p50, p99, p50 - percentile(baseline, 0.5), p99 - percentile(baseline, 0.99)))
        }
    }

    static func config(redis: Int?, limits: Bool) -> String {
        var text = "simulated_models: true\n"
        if let redis {
            text += "store:\n  redis:\n    url: redis://127.0.0.1:\(redis)/0\n    key_prefix: \"bench:\"\n"
        }
        text += "keys:\n  bench:\n    key_env: STORE_BENCH_KEY\n"
        // Limits high enough never to refuse: the cost measured is deciding, not refusing.
        if limits { text += "    limits: {requests_per_minute: 100000000, tokens_per_minute: 1000000000, daily_budget_usd: 1000000}\n" }
        return text
    }

    func percentile(_ sorted: [Double], _ quantile: Double) -> Double {
        guard !sorted.isEmpty else { return .nan }
        return sorted[min(sorted.count - 1, Int((Double(sorted.count) * quantile).rounded(.down)))]
    }

    func freePort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) } }
        _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
        return Int(UInt16(bigEndian: address.sin_port))
    }
}

/// A blocking keep-alive HTTP/1.1 client for whole (Content-Length) responses.
final class Client {
    let fd: Int32
    private var buffer: [UInt8] = []

    init(port: Int) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard result == 0 else { throw BenchFailure.connect(port) }
    }

    deinit { close(fd) }

    /// Milliseconds from sending the request to the last byte of a 200.
    func post(_ body: String, key: String) throws -> Double {
        let request = "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nAuthorization: Bearer \(key)\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)"
        let start = DispatchTime.now().uptimeNanoseconds
        _ = request.withCString { send(fd, $0, strlen($0), 0) }
        var headEnd: Int?
        var length = 0
        var status = ""
        while true {
            if headEnd == nil, let end = find([13, 10, 13, 10]) {
                let head = String(decoding: buffer[..<end], as: UTF8.self)
                status = String(head.prefix(12))
                for line in head.split(separator: "\r\n") where line.lowercased().hasPrefix("content-length:") {
                    length = Int(line.split(separator: ":")[1].trimmingCharacters(in: .whitespaces)) ?? 0
                }
                headEnd = end + 4
            }
            if let headEnd, buffer.count >= headEnd + length {
                buffer.removeFirst(headEnd + length)
                break
            }
            var chunk = [UInt8](repeating: 0, count: 65536)
            let count = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            guard count > 0 else { throw BenchFailure.closed }
            buffer += chunk[..<count]
        }
        guard status.hasSuffix("200") else { throw BenchFailure.status(status) }
        return Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6
    }

    private func find(_ needle: [UInt8]) -> Int? {
        guard buffer.count >= needle.count else { return nil }
        for index in 0...(buffer.count - needle.count) where buffer[index..<(index + needle.count)].elementsEqual(needle) { return index }
        return nil
    }
}

struct BenchFailure: Error, CustomStringConvertible {
    let description: String
    static func connect(_ port: Int) -> BenchFailure { .init(description: "cannot connect to \(port)") }
    static let closed = BenchFailure(description: "connection closed")
    static func status(_ line: String) -> BenchFailure { .init(description: "unexpected status: \(line)") }
}
