import Application
import ArgumentParser
import EventLoop
import Foundation
import Gateway
import HTTPServer
import Logging
import MockUpstream
import Synchronization

@main
struct FusionGateway: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fusion-gateway",
        abstract: "An OpenAI-compatible streaming gateway for multi-model deliberation.",
        version: "fusion-gateway \(GatewayVersion.current)",
        subcommands: [Serve.self, MockUpstreamCommand.self, BenchCommand.self],
        defaultSubcommand: Serve.self
    )

    static func main() {
        Console.keepStandardDescriptorsOpen()
        main(nil)
    }
}

struct LoggingOptions: ParsableArguments {
    @Option(name: .long, help: "trace, debug, info, notice, warning, error or critical.")
    var logLevel: String = "info"

    @Option(name: .long, help: "text (for people) or json (one JSON object per line); default: text (for serve, its config's server.log_format).")
    var logFormat: String?

    func validate() throws {
        if Logger.Level(rawValue: logLevel) == nil {
            throw ValidationError("unknown log level '\(logLevel)' (trace, debug, info, notice, warning, error or critical)")
        }
        if let logFormat, GatewayLogHandler.Format(rawValue: logFormat) == nil {
            throw ValidationError("--log-format must be text or json, not '\(logFormat)'")
        }
    }

    /// Log lines on standard error, secrets redacted (`GatewayLogHandler`); `configured` is the
    /// config's format, which `--log-format` overrides.
    func bootstrap(configured: GatewayLogHandler.Format = .text) throws {
        guard let level = Logger.Level(rawValue: logLevel) else {
            throw ValidationError("unknown log level '\(logLevel)'")
        }
        let format = logFormat.flatMap(GatewayLogHandler.Format.init(rawValue:)) ?? configured
        LoggingSystem.bootstrap { label in GatewayLogHandler(label: label, format: format, level: level) }
    }
}

struct Serve: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the gateway. With no --config, serves the built-in simulated models (no keys needed).")

    /// Below this many connections a loop, `serve` refuses to start (see `run`).
    static let minimumConnectionsPerLoop = 8

    @Option(help: "Address to listen on (overrides the config).")
    var host: String?

    // Unconditional: `--port -1` is a value to refuse by its range, not a missing one (review 121 #8).
    @Option(parsing: .unconditional, help: "Port to listen on (overrides the config; default 8080).")
    var port: Int?

    @Option(help: "YAML config file (see Fixtures/config/example.yaml).")
    var config: String?

    @Option(help: "Event loops, one thread each (default: one per core).")
    var loops: Int?

    @OptionGroup var logging: LoggingOptions

    func validate() throws {
        if let port { try validatePort(port) }
        if let loops, !(1...1024).contains(loops) {
            throw ValidationError("--loops must be in 1...1024, not \(loops)")
        }
    }

    func run() throws {
        EventLoop.unblockTerminationSignals()
        var settings: GatewayConfig
        do {
            settings = try config.map { try GatewayConfig.load(path: $0) } ?? .embeddedDefault
        } catch {
            throw startFailure(error)
        }
        try logging.bootstrap(configured: settings.server.logFormat)
        let logger = Logger(label: "fusion-gateway")
        if let host { settings.server.host = host }
        if let port { settings.server.port = port }

        let loopCount = loops ?? ProcessInfo.processInfo.activeProcessorCount
        let descriptors = DescriptorLimit.raiseToHard()
        let fitting = HTTPServerLimits.connectionsFitting(descriptors: descriptors, loops: loopCount)
        // A gateway holding a connection or two a loop is shut out by two idle sockets (review
        // 123 #4): refused, not started with a warning.
        if fitting < Self.minimumConnectionsPerLoop && settings.server.limits.maxConnections > fitting {
            logger.error("the open-file limit leaves too few connections per event loop: raise it (ulimit -n, systemd's LimitNOFILE) or run fewer loops (--loops)",
                         metadata: ["open_file_limit": .stringConvertible(descriptors), "loops": .stringConvertible(loopCount),
                                    "connections_per_loop": .stringConvertible(fitting), "needed": .stringConvertible(Self.minimumConnectionsPerLoop)])
            throw ExitCode(1)
        }
        if settings.server.limits.maxConnections > fitting {
            logger.warning("server.max_connections lowered to what the open-file limit holds; raise the limit (ulimit -n, systemd's LimitNOFILE) for more",
                           metadata: ["configured": .stringConvertible(settings.server.limits.maxConnections), "now": .stringConvertible(fitting),
                                      "open_file_limit": .stringConvertible(descriptors), "loops": .stringConvertible(loopCount)])
            settings.server.limits.maxConnections = fitting
        }
        let application: GatewayApplication
        do {
            application = try GatewayApplication(config: settings, environment: ProcessInfo.processInfo.environment,
                                                  logger: logger, loops: loopCount)
        } catch {
            throw startFailure(error)
        }
        let cluster = application.cluster
        // An IPv6 address is bracketed in a URL (RFC 3986): http://[::1]:8080.
        let host = settings.server.host.contains(":") ? "[\(settings.server.host)]" : settings.server.host
        let base = "http://\(host):\(cluster.port)"
        var banner = "fusion-gateway listening on \(base) (\(cluster.loopCount) event loop\(cluster.loopCount == 1 ? "" : "s"))\n"
        if settings.simulatedModels {
            let keysRequired = !settings.server.apiKeys.isEmpty || settings.server.apiKeysEnvironmentVariable != nil || !settings.keys.isEmpty
            banner += """
                Try:  curl -N \(base)/v1/chat/completions -H 'Content-Type: application/json' \\\(keysRequired ? "\n        -H 'Authorization: Bearer <a gateway key>' \\" : "")
                        -d '{"model":"fusion","stream":true,"messages":[{"role":"user","content":"Should cities ban cars from their centres?"}]}'

                """
        }

        // First signal: graceful shutdown (streams get shutdown_grace_ms); a second: stop now.
        let firstLoop = cluster.threads[0].loop
        // A stop forced by a second signal cut what was in flight: not a clean exit, so a
        // supervisor can tell them apart (review 66 #3: both exited 0).
        let forced = Atomic<Bool>(false)
        // Once the loops (and the signal watchers on them) stop, a signal's default action would
        // end the process mid-stop (review 79 #8: exit 143 under a burst of signals): ignored then.
        cluster.willStopLoops.withLock { $0 = { signal(SIGINT, SIG_IGN); signal(SIGTERM, SIG_IGN) } }
        try firstLoop.submitAndWait {
            var stopping = false
            for signalNumber in [SIGINT, SIGTERM] {
                _ = SignalWatcher(loop: firstLoop, signal: signalNumber) { received in
                    if stopping {
                        if cluster.hasStoppedServing {
                            // Every response has ended: only the shared store's drain is cut,
                            // what it did not send logged. No client was cut: a clean exit.
                            logger.warning("second signal: ending the shared store's drain now (every response has ended)",
                                           metadata: ["signal": .stringConvertible(Int(received))])
                            cluster.endStoreDrain()
                            return
                        }
                        // Decided on what is in flight, not on how far the stop has come (review
                        // 79 #8: a second signal within the drain delay, nothing in flight, exited 1).
                        cluster.checkResponsesInFlight { inFlight in
                            guard inFlight else {
                                logger.warning("second signal: stopping now (no response in flight)",
                                               metadata: ["signal": .stringConvertible(Int(received))])
                                cluster.endStoreDrain()
                                return
                            }
                            logger.warning("second signal: stopping now, cutting what is in flight",
                                           metadata: ["signal": .stringConvertible(Int(received))])
                            forced.store(true, ordering: .relaxed)
                            cluster.cutInFlightThenStopLoops()
                        }
                        return
                    }
                    stopping = true
                    logger.info("signal received: finishing streams, then stopping", metadata: ["signal": .stringConvertible(Int(received))])
                    application.shutdown()
                }
            }
            // SIGHUP's default action ends the process at once, every stream cut mid-chunk, no
            // record: an operator's `kill -HUP` (a reload elsewhere) or a closed terminal did that
            // (review 62D #3). The config is read at start only, so a hang-up changes nothing.
            _ = SignalWatcher(loop: firstLoop, signal: SIGHUP) { _ in
                logger.warning("SIGHUP ignored: the config is read at start only; restart (SIGTERM drains) to apply changes")
            }
        }
        // Announced once a signal stops it gracefully: a supervisor's SIGTERM right after the
        // banner found the default action, and the process died with status 15.
        logger.info("listening", metadata: ["url": "\(base)", "loops": .stringConvertible(cluster.loopCount), "config": "\(config ?? "embedded default")",
                                            "version": "\(GatewayVersion.current)"])
        Console.out(banner)
        application.waitUntilStopped()
        if forced.load(ordering: .relaxed) {
            logger.warning("stopped before the requests in flight ended (second signal)")
            throw ExitCode(1)
        }
        logger.info("stopped")
    }
}

struct MockUpstreamCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mock-upstream",
        abstract: "Run the mock upstream: OpenAI's, Anthropic's and Gemini's APIs and a simulated web (deterministic scenarios chosen by model name).",
        discussion: "Scenarios: \(MockScenario.modelNames.joined(separator: ", ")). "
            + "Options follow the name, e.g. paced:pace_ms=20:deltas=64 or error:status=503.")

    @Option(help: "Address to listen on.")
    var host: String = "127.0.0.1"

    @Option(parsing: .unconditional, help: "Port to listen on (0 picks a free one).")
    var port: Int = 8090

    @Option(help: "Open connections at most (a scale test holds thousands of streams at once).")
    var maxConnections: Int = HTTPServerLimits().maxConnections

    @OptionGroup var logging: LoggingOptions

    func validate() throws {
        try validatePort(port)
        guard (1...1_000_000).contains(maxConnections) else { throw ValidationError("--max-connections must be 1...1000000") }
    }

    func run() throws {
        // As `serve`: a parent that blocks them (a test runner's thread) must not leave the mock
        // deaf to SIGTERM (found with review 83B #1's test).
        EventLoop.unblockTerminationSignals()
        try logging.bootstrap()
        let loop = EventLoop()
        var limits = HTTPServerLimits()
        limits.maxConnections = maxConnections
        let mock = try MockUpstream(loop: loop, host: host, port: port, limits: limits)
        let urlHost = host.contains(":") ? "[\(host)]" : host  // IPv6, bracketed (RFC 3986)
        Console.out("mock upstream listening on http://\(urlHost):\(mock.port)/v1\n")
        let signals = [SIGINT, SIGTERM].map { signalNumber in
            SignalWatcher(loop: loop, signal: signalNumber) { _ in mock.shutdown { loop.stop() } }
        }
        loop.run()
        withExtendedLifetime(signals) {}
    }
}

/// Why the gateway could not start, on standard error without the usage text (the command line
/// was fine): a config the gateway refuses exits with 78 (EX_CONFIG), anything else (a port in
/// use) with 1.
func startFailure(_ error: any Error) -> ExitCode {
    Console.error("fusion-gateway: cannot start: \(error)\n")
    return error is ConfigError ? ExitCode(78) : ExitCode.failure
}

/// A TCP port: converting anything else for the socket API would trap.
func validatePort(_ port: Int) throws {
    guard (0...65535).contains(port) else {
        throw ValidationError("--port must be in 0...65535 (0 picks a free port), not \(port)")
    }
}
