import Application
import Gateway
import GatewayCore
import Providers
import Testing

/// The simulated models' names as the gateway's router sees them: options checked up front.
@Suite struct SimulatedModelCatalogTests {
    static let router: ModelRouter = {
        var config = GatewayConfig()
        config.providers["sim"] = GatewayConfig.Provider(name: "sim", baseURL: "http://127.0.0.1:9/v1", catalog: SimulatedModelCatalog())
        return ModelRouter(config: config, environment: [:])
    }()

    @Test func validNamesWithOptionsRoute() throws {
        let route = try Self.router.route("sim/paced:pace_ms=5:deltas=10")
        #expect(route.upstreamModel == "paced:pace_ms=5:deltas=10")
        #expect(route.simulated && route.endpoint.name == "sim")
    }

    @Test func anUnknownScenarioIsAnUnknownModel() {
        do {
            _ = try Self.router.route("sim/unknown-scenario")
            Issue.record("routed")
        } catch {
            #expect(error.status == 404 && error.message.contains("sim/unknown-scenario"))
        }
    }

    @Test(arguments: [
        ("sim/paced:deltas=abc", "deltas"), ("sim/paced:deltas=-1", "deltas"), ("sim/paced:deltas=99999999999999999999", "deltas"),
        ("sim/normal:pace_ms=1.5", "pace_ms"), ("sim/normal:speed=3", "speed"), ("sim/normal:fast", "fast"),
        ("sim/error:status=200", "status"), ("sim/expert-9", "persona"), ("sim/normal:after=1:after=2", "after"),
    ])
    func simulatedModelsWithBadOptionsAreRefusedUpFront(model: String, option: String) throws {
        let router = Self.router
        do {
            _ = try router.route(model)
            Issue.record("routed \(model)")
        } catch {
            #expect(error.status == 400)
            #expect(error.param == "model")
            #expect(error.code == "invalid_model_option")
            #expect(error.message.contains("'\(option)'") && error.message.contains(model), "\(error.message)")
        }
    }
}
