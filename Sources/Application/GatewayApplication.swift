import EventLoop
import Foundation
import Gateway
import GatewayCore
import Logging
import MockUpstream
import Providers
import Web

/// The gateway as the command line runs it: the cluster of event loops and, when the config asks
/// for simulated models (the embedded default does), the simulator beside it on a loop of its own.
/// The gateway itself knows nothing of the simulator: it is wired in here as one more provider,
/// reachable only with a per-process secret the gateway holds. Tests build the same thing.
public final class GatewayApplication: Sendable {
    public let cluster: GatewayCluster
    private let simulator: SimulatorHost?

    public init(config: GatewayConfig, environment: [String: String], logger: Logger, loops: Int) throws {
        var config = config
        if config.simulatedModels {
            let host = try SimulatorHost()
            simulator = host
            for provider in host.providers { config.providers[provider.name] = provider }
            if let web = config.web, web.simulated { config.web = web.resolvingSimulatedWeb(port: host.port, key: host.key) }
        } else {
            simulator = nil
        }
        do {
            cluster = try GatewayCluster(config: config, environment: environment, logger: logger, loops: loops)
        } catch {
            simulator?.stop()
            throw error
        }
    }

    public var port: Int { cluster.port }
    /// The simulator's own port (for tests that check nobody but the gateway can use it).
    public var simulatorPort: Int? { simulator?.port }

    /// Graceful stop (see `GatewayCluster.shutdown`), then the simulator. Returns at once.
    public func shutdown() {
        cluster.shutdown()
    }

    /// Blocks until the cluster has stopped, then stops the simulator.
    public func waitUntilStopped() {
        cluster.waitUntilStopped()
        simulator?.stop()
    }
}

/// The simulated models' server on a thread of its own, and the providers that reach it: `sim`
/// over OpenAI's chat completions, `sim-anthropic` over Anthropic's Messages API, `sim-gemini`
/// over Gemini's (the same scenarios in each vendor's wire format, so a mixed-vendor panel runs
/// on the embedded default).
final class SimulatorHost: Sendable {
    private let thread = EventLoopThread(name: "fusion-sim")
    private let box = Box()
    let port: Int
    /// Only the gateway holds it: the simulator's port is open on loopback, but nothing else can use it.
    let key: String
    let providers: [GatewayConfig.Provider]

    /// Loop-confined: created, used and shut down on `thread.loop` only.
    private final class Box: @unchecked Sendable { var mock: MockUpstream? }

    init() throws {
        let loop = thread.loop
        let box = box
        let key = "sim-" + (0..<4).map { _ in String(UInt64.random(in: .min ... .max), radix: 16) }.joined()
        self.key = key
        do {
            port = try loop.submitAndWait {
                let mock = try MockUpstream(loop: loop, host: "127.0.0.1", port: 0, accessKey: key)
                box.mock = mock
                return mock.port
            }
        } catch {
            thread.shutdown()
            throw error
        }
        let base = "http://127.0.0.1:\(port)"
        providers = [(GatewayConfig.simulatedProviderName, GatewayConfig.Provider.Kind.openai, base + "/v1"),
                     (GatewayConfig.simulatedAnthropicProviderName, .anthropic, base + "/v1"),
                     (GatewayConfig.simulatedGeminiProviderName, .gemini, base + "/v1beta")].map { name, kind, url in
            var provider = GatewayConfig.Provider(name: name, kind: kind, baseURL: url, catalog: SimulatedModelCatalog(providerName: name))
            provider.apiKey = key
            return provider
        }
    }

    func stop() {
        let box = box
        thread.loop.execute { box.mock?.shutdown() }
        thread.shutdown()
    }
}

/// The simulated models' names: a scenario with options (`sim/paced:deltas=10`).
public struct SimulatedModelCatalog: ModelCatalog {
    public let providerName: String
    public init(providerName: String = GatewayConfig.simulatedProviderName) {
        self.providerName = providerName
    }
    public var models: [String] { MockScenario.modelNames }
    public var isSimulated: Bool { true }

    /// An unknown scenario is a 404 like any unknown model; a bad option is a 400 naming it,
    /// checked here before any work, as the simulator itself would check it.
    public func validate(_ model: String) throws(APIError) {
        let slug = "\(providerName)/\(model)"
        do {
            _ = try MockScenario.parse(model: model)
        } catch .unknownScenario {
            let list = MockScenario.modelNames.map { "\(providerName)/\($0)" }.joined(separator: ", ")
            throw .modelNotFound(slug, detail: "provider '\(providerName)' serves only: \(list)")
        } catch {
            throw .invalidModelOption(slug, error)
        }
    }
}
