import Fusion
import GatewayCore
import Providers

/// What a finished request cost, in millionths of a dollar, for spend budgets and usage
/// counters: each call priced from `prices:` when its model has a price there (by its slug, its
/// slug without `:options`, its provider's `provider/*` or `*`), else the cost its upstream
/// reported. A deliberation is the sum
/// of its inner calls. Saturating: no token count can overflow it.
enum Spend {
    static func micros(of record: GenerationRecord, prices: [String: ModelPrice]) -> Int64 {
        guard !record.innerCalls.isEmpty else { return micros(model: record.model, usage: record.usage, prices: prices) }
        var total: Int64 = 0
        for call in record.innerCalls {
            guard let usage = call.usage else { continue }
            let (sum, overflow) = total.addingReportingOverflow(micros(model: call.model, usage: usage, prices: prices))
            total = overflow ? .max : sum
        }
        return total
    }

    static func micros(model: String, usage: Usage, prices: [String: ModelPrice]) -> Int64 {
        guard let price = ModelPrice.lookup(model, in: prices) else {
            // Usage clamps the reported cost to 0...1e9 dollars: the product fits easily.
            return Int64((max(0, usage.cost) * 1_000_000).rounded())
        }
        // Dollars per million tokens × tokens = micro-dollars. Prices are at most 1e5 and token
        // counts at most 2^40 (`Usage`), so the sum is finite; clamped below Int64.max anyway.
        // Rounded up: a fraction of a micro-dollar is charged.
        let micros = (Double(max(0, usage.promptTokens)) * price.inputPerMillion
            + Double(max(0, usage.completionTokens)) * price.outputPerMillion).rounded(.up)
        guard micros.isFinite, micros >= 0 else { return 0 }
        return micros >= 9.0e18 ? 9_000_000_000_000_000_000 : Int64(micros)
    }
}
