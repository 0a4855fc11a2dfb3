import Fusion
import GatewayCore
import Providers

/// What a finished request cost, in millionths of a dollar, for spend budgets and usage
/// counters: each call priced from `prices:` when its model has a price there (by its slug, or
/// its slug without `:options`), else the cost its upstream reported. A deliberation is the sum
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
        let bare = model.split(separator: ":", maxSplits: 1).first.map(String.init) ?? model
        guard let price = prices[model] ?? prices[bare] else {
            // Usage clamps the reported cost to 0...1e9 dollars: the product fits easily.
            return Int64((max(0, usage.cost) * 1_000_000).rounded())
        }
        return scaled(usage.promptTokens, price.promptMicrosPerMillion).addingSaturating(scaled(usage.completionTokens, price.completionMicrosPerMillion))
    }

    /// tokens × price per million ÷ a million, rounded up (a fraction of a micro-dollar is charged).
    private static func scaled(_ tokens: Int64, _ pricePerMillion: Int64) -> Int64 {
        let (product, overflow) = max(0, tokens).multipliedReportingOverflow(by: max(0, pricePerMillion))
        if overflow { return max(0, tokens) / 1_000_000 * pricePerMillion }
        return (product + 999_999) / 1_000_000
    }
}

private extension Int64 {
    func addingSaturating(_ other: Int64) -> Int64 {
        let (sum, overflow) = addingReportingOverflow(other)
        return overflow ? .max : sum
    }
}
