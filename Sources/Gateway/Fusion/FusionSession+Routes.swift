import Fusion
import GatewayCore
import Providers

/// The models a Fusion request may call, resolved before any call is made.
extension FusionSession {
    /// Every model the request may use, resolved up front (a bad one is a 400 naming its field).
    struct Routes {
        var byModel: [String: ModelRoute]
        /// The outer model's fallbacks (the client's `models`), tried in order before its first token.
        var outerFallbacks: [ModelRoute] = []

        /// A model's price as its calls are charged (a route's, or an outer fallback's).
        func price(of model: String) -> ModelPrice? { (byModel[model] ?? outerFallbacks.first { $0.slug == model })?.price }
    }

    /// Resolves every model the request may use, so a bad one is a 400 naming its field before
    /// any upstream call.
    /// `invalidFallback`: the refusal of a model of `outerFallbacks`, in the client's terms.
    static func resolveRoutes(_ request: FusionRequest, settings: FusionSettings, router: ModelRouter, outerFallbacks: [String] = [],
                              invalidFallback: (APIError, _ model: String) -> APIError) throws(APIError) -> Routes {
        var routes: [String: ModelRoute] = [:]
        func resolve(_ model: String, _ param: String) throws(APIError) {
            guard routes[model] == nil else { return }
            do {
                routes[model] = try router.route(model)
            } catch {
                // Any refusal of the name (unknown, or a simulated model's bad option) names the
                // field that holds it (review 59C #4: an option's error said `model`); the
                // gateway's own trouble (a provider without its key) stays its own.
                guard (400..<500).contains(error.status) else { throw error }
                throw .invalidRequest("Invalid model in '\(param)': \(error.message)", param: param, code: error.code)
            }
        }
        try resolve(request.outerModel, "model")
        for (index, model) in request.parameters.analysisModels.enumerated() {
            try resolve(model, "\(request.parameterPath).analysis_models[\(index)]")
        }
        try resolve(request.judgeModel, "\(request.parameterPath).model")
        if let fallback = settings.judgeFallbackModel {
            try resolve(fallback, "fusion.judge_fallback_model (gateway config)")
        }
        var fallbacks: [ModelRoute] = []
        for model in outerFallbacks {
            do {
                fallbacks.append(try router.route(model))
            } catch {
                throw invalidFallback(error, model)
            }
        }
        return Routes(byModel: routes, outerFallbacks: fallbacks)
    }
}
