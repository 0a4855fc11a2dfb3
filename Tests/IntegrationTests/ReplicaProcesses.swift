import RedisServerProcess
import Foundation

/// Separate processes for the deployment test: the `fusion-gateway` binary built next to the
/// tests, and Debian's nginx in front, each on a free loopback port with a generated config in
/// a temporary directory. Everything is killed (SIGKILL) and removed on `stop()`/deinit.
final class GatewayProcess: @unchecked Sendable {
    struct Failure: Error, CustomStringConvertible { let description: String }

    let process = Process()
    let port: Int
    let log: URL

    /// Starts `fusion-gateway serve --config <config> --port 0` and waits for its banner.
    init(config: URL, environment: [String: String], directory: URL, name: String) throws {
        log = directory.appendingPathComponent("\(name).log")
        _ = FileManager.default.createFile(atPath: log.path, contents: nil)
        let output = try FileHandle(forWritingTo: log)
        process.executableURL = CommandLineTests.binary
        process.arguments = ["serve", "--config", config.path, "--port", "0", "--loops", "2"]
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        process.standardOutput = output
        process.standardError = output
        try process.run()
        let deadline = Date().addingTimeInterval(20)
        while Date() < deadline {
            let text = (try? String(contentsOf: log, encoding: .utf8)) ?? ""
            if let range = text.range(of: #"listening on http://127\.0\.0\.1:(\d+)"#, options: .regularExpression),
               let port = Int(text[range].split(separator: ":").last ?? "") {
                self.port = port
                return
            }
            if !process.isRunning { break }
            usleep(20_000)
        }
        let text = (try? String(contentsOf: log, encoding: .utf8)) ?? ""
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        throw Failure(description: "\(name) did not start: \(text)")
    }

    deinit { stop() }

    func terminate() { kill(process.processIdentifier, SIGTERM) }

    func stop() {
        guard process.isRunning else { return }
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }

    /// Waits (bounded) for the process to exit; its status, or nil if it is still running.
    func waitForExit(seconds: Double) -> Int32? {
        let deadline = Date().addingTimeInterval(seconds)
        while process.isRunning && Date() < deadline { usleep(20_000) }
        return process.isRunning ? nil : process.terminationStatus
    }

    var logText: String { (try? String(contentsOf: log, encoding: .utf8)) ?? "" }
}

/// nginx as the load balancer: round robin over the replicas, SSE unbuffered (the settings
/// docs/deploy.md recommends).
final class NginxProcess: @unchecked Sendable {
    static var binary: String? { ["/usr/sbin/nginx", "/usr/bin/nginx"].first { FileManager.default.isExecutableFile(atPath: $0) } }
    static var available: Bool { RedisServerProcess.available }

    let port: Int
    let directory: URL
    private var running: Process?

    init(upstreams: [Int], directory: URL) throws {
        guard let binary = Self.binary else {
            throw GatewayProcess.Failure(description: "nginx is not installed (scripts/install-deps --with-services; FUSION_SKIP_REDIS=1 skips these tests)")
        }
        self.directory = directory
        let temp = directory.appendingPathComponent("nginx-temp")
        try FileManager.default.createDirectory(at: temp, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o777])
        var lastError = ""
        for _ in 0..<5 {
            let port = try RedisServerProcess.freePort()
            let config = directory.appendingPathComponent("nginx.conf")
            try Self.config(port: port, upstreams: upstreams, directory: directory, temp: temp).write(to: config, atomically: true, encoding: .utf8)
            let process = Process()
            process.executableURL = URL(fileURLWithPath: binary)
            process.arguments = ["-c", config.path, "-p", directory.path, "-e", directory.appendingPathComponent("error.log").path]
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
            try process.run()
            for _ in 0..<300 where process.isRunning {
                if RedisServerProcess.canConnect(port: port) {
                    self.port = port
                    running = process
                    return
                }
                usleep(10_000)
            }
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
            lastError = (try? String(contentsOf: directory.appendingPathComponent("error.log"), encoding: .utf8)) ?? "no error log"
        }
        throw GatewayProcess.Failure(description: "nginx did not start: \(lastError)")
    }

    deinit { stop() }

    /// What nginx logged (warnings and errors): why it answered 502, for a failing test's message.
    var errorLog: String { (try? String(contentsOf: directory.appendingPathComponent("error.log"), encoding: .utf8)) ?? "no error log" }

    /// nginx handles its own signal mask (it waits in sigsuspend), so SIGQUIT stops it gracefully;
    /// SIGKILL on the master would leave its worker behind.
    func stop() {
        guard let running, running.isRunning else { return }
        kill(running.processIdentifier, SIGQUIT)
        let deadline = Date().addingTimeInterval(5)
        while running.isRunning && Date() < deadline { usleep(10_000) }
        if running.isRunning { kill(running.processIdentifier, SIGKILL) }
        self.running = nil
    }

    static func config(port: Int, upstreams: [Int], directory: URL, temp: URL) -> String {
        """
        daemon off;
        master_process on;
        worker_processes 1;
        pid \(directory.path)/nginx.pid;
        error_log \(directory.path)/error.log warn;
        events { worker_connections 512; }
        http {
          access_log off;
          client_body_temp_path \(temp.path)/body;
          proxy_temp_path \(temp.path)/proxy;
          fastcgi_temp_path \(temp.path)/fastcgi;
          uwsgi_temp_path \(temp.path)/uwsgi;
          scgi_temp_path \(temp.path)/scgi;
          upstream fusion_gateway {
        \(upstreams.map { "    server 127.0.0.1:\($0) max_fails=1 fail_timeout=5s;" }.joined(separator: "\n"))
          }
          server {
            listen 127.0.0.1:\(port);
            location / {
              proxy_pass http://fusion_gateway;
              proxy_http_version 1.1;
              proxy_set_header Host $http_host;
              proxy_set_header Connection "";
              proxy_buffering off;
              proxy_request_buffering off;
              proxy_cache off;
              proxy_read_timeout 300s;
              proxy_next_upstream error timeout;
            }
          }
        }
        """
    }
}
