import Foundation

/// A real `redis-server` (Debian's package) started by a test on a free loopback port, in a
/// temporary directory, persisting nothing; stopped (and its directory removed) on `stop()` or
/// deinit. `pause()`/`resume()` freeze it with SIGSTOP/SIGCONT (a Redis that accepts but never
/// answers); `kill()` and `restart()` simulate an outage on the same port.
///
/// These tests always run: a missing redis-server (or nginx) is a failure naming the package, not
/// a silent skip. Only FUSION_SKIP_REDIS=1 skips them (scripts/install-deps --with-services
/// installs both).
public final class RedisServerProcess: @unchecked Sendable {
    public struct Failure: Error, CustomStringConvertible { public let description: String }

    public static var binary: String? {
        ["/usr/bin/redis-server", "/usr/local/bin/redis-server"].first { FileManager.default.isExecutableFile(atPath: $0) }
    }
    /// The suites' `.enabled(if:)`: true unless FUSION_SKIP_REDIS=1 says to skip them.
    public static var available: Bool { ProcessInfo.processInfo.environment["FUSION_SKIP_REDIS"] != "1" }

    public let port: Int
    public let directory: URL
    private let password: String?
    private var process: Process?

    public init(password: String? = nil) throws {
        guard Self.binary != nil else { throw Failure(description: "redis-server is not installed (scripts/install-deps --with-services; FUSION_SKIP_REDIS=1 skips these tests)") }
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("fusion-redis-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        self.password = password
        var lastError: (any Error)?
        for _ in 0..<5 {
            let candidate = try Self.freePort()
            do {
                process = try Self.launch(port: candidate, directory: directory, password: password)
                port = candidate
                return
            } catch {
                lastError = error
            }
        }
        try? FileManager.default.removeItem(at: directory)
        throw lastError ?? Failure(description: "could not start redis-server")
    }

    deinit { stop() }

    public func stop() {
        // SIGKILL, not SIGTERM: a child of the test process inherits its blocked signals, so a
        // SIGTERM would stay pending (and nothing is persisted that a clean shutdown would save).
        if let process, process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
        process = nil
        try? FileManager.default.removeItem(at: directory)
    }

    /// SIGKILL: Redis is gone at once (connections reset, the port refuses).
    public func killNow() {
        guard let process, process.isRunning else { return }
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        self.process = nil
    }

    /// Starts Redis again on the same port (empty: nothing was persisted).
    public func restart() throws {
        killNow()
        var lastError: (any Error)?
        for _ in 0..<50 {  // the port may linger a moment
            do {
                process = try Self.launch(port: port, directory: directory, password: password)
                return
            } catch {
                lastError = error
                usleep(50_000)
            }
        }
        throw lastError ?? Failure(description: "could not restart redis-server")
    }

    public func pause() { if let process { kill(process.processIdentifier, SIGSTOP) } }
    public func resume() { if let process { kill(process.processIdentifier, SIGCONT) } }

    /// Runs `redis-cli`-free commands through a blocking socket (test-side checks).
    public func command(_ arguments: [String]) throws -> String {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var timeout = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else { throw Failure(description: "connect to redis failed") }
        var all = password.map { [["AUTH", $0]] } ?? []
        all.append(arguments)
        var text = ""
        for command in all {
            text += "*\(command.count)\r\n" + command.map { "$\($0.utf8.count)\r\n\($0)\r\n" }.joined()
        }
        _ = text.withCString { send(fd, $0, strlen($0), 0) }
        var received: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        // Good enough for tests: read until the last reply looks complete (short replies).
        while true {
            let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            guard count > 0 else { break }
            received += buffer[..<count]
            let replies = String(decoding: received, as: UTF8.self).components(separatedBy: "\r\n").filter { !$0.isEmpty }
            if replies.count >= all.count, received.suffix(2) == [13, 10] { break }
        }
        let lines = String(decoding: received, as: UTF8.self).components(separatedBy: "\r\n").filter { !$0.isEmpty }
        return password == nil ? lines.joined(separator: "\n") : lines.dropFirst().joined(separator: "\n")
    }

    private static func launch(port: Int, directory: URL, password: String?) throws -> Process {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: binary!)
        var arguments = ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                         "--dir", directory.path, "--daemonize", "no", "--protected-mode", "yes", "--loglevel", "warning"]
        if let password { arguments += ["--requirepass", password] }
        process.arguments = arguments
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        // Ready when it accepts connections (it starts in milliseconds).
        for _ in 0..<200 {
            if !process.isRunning { throw Failure(description: "redis-server exited (port \(port) taken?)") }
            if canConnect(port: port) { return process }
            usleep(10_000)
        }
        kill(process.processIdentifier, SIGKILL)
        throw Failure(description: "redis-server did not start listening on \(port)")
    }

    public static func canConnect(port: Int) -> Bool {
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

    /// A port the kernel just handed out (bound to port 0, then released).
    public static func freePort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = 0
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0 else { throw Failure(description: "bind failed") }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        return Int(UInt16(bigEndian: address.sin_port))
    }
}
