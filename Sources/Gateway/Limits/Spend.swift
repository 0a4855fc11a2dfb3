import EventLoop
import Fusion
import GatewayCore
import Providers

/// What a finished request cost, in millionths of a dollar, for spend budgets and usage
/// counters: each call priced from `prices:` when its model has a price there (by its slug, its
/// slug without `:options`, its provider's `provider/*` or `*`), else the cost its upstream
/// reported. A call without a price whose usage is the gateway's estimate (its stream was cut
/// before the usage, so no cost came) is charged at the rate its model's reported costs showed
/// (`ReportedRates`). A deliberation is the sum of its inner calls. Saturating: no token count
/// can overflow it.
///
/// A call is charged for at most `maxChargedPromptTokens` read and `maxChargedCompletionTokens`
/// written, whatever its upstream reports: a broken or hostile upstream's `1e20` tokens on a
/// 10-token answer charged $3.3M and locked its key out for the month (review 83B #2). The bounds
/// are above any model's context and output today (10M and 128K tokens).
///
/// A cost an unpriced call's upstream reports is charged up to `maxReportedMicrosPerToken` a
/// token (its bounded tokens) plus `maxReportedMicrosPerCall`: one 8-token answer reporting
/// `"cost": 1e9` (a hostile upstream, or one reporting credits or cents) charged $1,000,000,000
/// and, through the rate it taught `ReportedRates`, every other key's cut call of that model
/// too (review 117 #1). Above any model's price today ($600 per million output tokens) and any
/// request fee (web search, tools), so a true cost is charged whole; a model priced higher is
/// given its price in `prices:`.
enum Spend {
    static let maxChargedPromptTokens = Usage.maxPricedPromptTokens
    static let maxChargedCompletionTokens = Usage.maxPricedCompletionTokens
    /// $1,000 per million tokens.
    static let maxReportedMicrosPerToken = 1_000.0
    /// $1 a call, for what is not priced per token (a search's fee).
    static let maxReportedMicrosPerCall = 1_000_000.0

    static func micros(of record: GenerationRecord, prices: PriceBook, rates: ReportedRates? = nil) -> Int64 {
        guard !record.innerCalls.isEmpty else {
            return micros(model: record.model, usage: record.usage, estimated: record.usageEstimated, prices: prices, rates: rates)
        }
        // The calls that reported a cost first: a member cut before its usage is charged at the
        // rate its model's other calls of this deliberation showed, whatever their order.
        for call in record.innerCalls where !call.usageEstimated && prices.price(of: call.model) == nil {
            if let usage = call.usage { rates?.learn(model: call.model, usage: usage) }
        }
        var total: Int64 = 0
        for call in record.innerCalls {
            guard let usage = call.usage else { continue }
            let (sum, overflow) = total.addingReportingOverflow(micros(model: call.model, usage: usage, estimated: call.usageEstimated,
                                                                       prices: prices, rates: rates))
            total = overflow ? .max : sum
        }
        return total
    }

    static func micros(model: String, usage reported: Usage, estimated: Bool = false, prices: PriceBook,
                       rates: ReportedRates? = nil) -> Int64 {
        var usage = reported
        usage.promptTokens = min(max(0, usage.promptTokens), maxChargedPromptTokens)
        usage.completionTokens = min(max(0, usage.completionTokens), maxChargedCompletionTokens)
        guard let price = prices.price(of: model) else {
            if estimated, usage.cost == 0, let rate = rates?.micros(perToken: model) {
                // No cost came with an estimate: charged at the rate the model's own costs showed,
                // not nothing (review 22: a client hanging up before the last chunk paid $0).
                return clamped(rate * Double(Usage.saturatingAdd(usage.promptTokens, usage.completionTokens)))
            }
            if !estimated { rates?.learn(model: model, usage: usage) }
            // Usage clamps the reported cost to 0...1e9 dollars, and the bound is far below
            // Int64.max. Rounded up, as a priced cost is: a fraction of a micro-dollar is charged.
            let tokens = Double(Usage.saturatingAdd(usage.promptTokens, usage.completionTokens))
            let bound = tokens * maxReportedMicrosPerToken + maxReportedMicrosPerCall
            return clamped(min(max(0, usage.cost) * 1_000_000, bound))
        }
        // Dollars per million tokens × tokens = micro-dollars. Prices are at most 1e5 and token
        // counts at most 2^40 (`Usage`), so the sum is finite; clamped below Int64.max anyway.
        return clamped(Double(max(0, usage.promptTokens)) * price.inputPerMillion
            + Double(max(0, usage.completionTokens)) * price.outputPerMillion)
    }

    /// Rounded up (a fraction of a micro-dollar is charged), never negative, below Int64.max.
    private static func clamped(_ micros: Double) -> Int64 {
        let rounded = micros.rounded(.up)
        guard rounded.isFinite, rounded >= 0 else { return 0 }
        return rounded >= 9.0e18 ? 9_000_000_000_000_000_000 : Int64(rounded)
    }
}

/// The cost per token each unpriced model's upstream reported on its recent calls that
/// reported one (each call's cost over its prompt and completion tokens), shared by every loop:
/// what a call of that model cut before its usage is charged at. Prompt and completion prices
/// differ, so it is an estimate, as the tokens it multiplies are.
///
/// The median (the lower one of an even count) of the model's last `window` rates, each at most
/// `Spend.maxReportedMicrosPerToken`: one call's report, whichever key made it (an absurd cost,
/// a short call's search fee, a call all prompt), moves no other key's cut calls' cost (reviews
/// 118 #1, 120 #2: the last report charged another key's dropped stream $99 of its $100 budget;
/// the lowest one let one prompt-only call cut every key's charge 200×). One rate per model
/// without its `:options` (the simulator's pacing, `:online`): a new suffix is no model without
/// a rate (review 120 #1). Bounded: at most `maxModels` models.
final class ReportedRates: Sendable {
    private let rates = Lock<[String: Recent]>([:])  // not `Mutex`: see `Lock`, ThreadSanitizer sees through this one
    static let maxModels = 1_024
    static let window = 8

    /// A model's last `window` rates, the oldest replaced first: its storage made once, so a
    /// request's report allocates nothing (an array appended to and shifted cost ~20
    /// allocations a request: the perf gate).
    private struct Recent {
        var values: [Double]
        var next = 0
        init() {
            values = []
            values.reserveCapacity(ReportedRates.window)
        }
        mutating func add(_ rate: Double) {
            if values.count < ReportedRates.window { values.append(rate) } else { values[next] = rate }
            next = (next + 1) % ReportedRates.window
        }
    }

    /// Learns from a call whose upstream reported its cost.
    func learn(model: String, usage: Usage) {
        let tokens = Usage.saturatingAdd(usage.promptTokens, usage.completionTokens)
        guard usage.cost > 0, tokens > 0 else { return }
        // At most the bound a reported cost is charged to (`Spend`).
        let rate = min(usage.cost * 1_000_000 / Double(tokens), Spend.maxReportedMicrosPerToken)
        guard rate.isFinite else { return }
        let name = Self.name(model)
        rates.withLock { rates in
            if rates[name] == nil, rates.count >= Self.maxModels { rates.remove(at: rates.startIndex) }
            rates[name, default: Recent()].add(rate)
        }
    }

    /// Micro-dollars per token, when the model's upstream has reported a cost.
    func micros(perToken model: String) -> Double? {
        let name = Self.name(model)
        guard let recent = rates.withLock({ $0[name]?.values }), !recent.isEmpty else { return nil }
        return recent.sorted()[(recent.count - 1) / 2]
    }

    /// The model without its `:options`: one rate per model.
    private static func name(_ model: String) -> String {
        guard let colon = model.utf8.firstIndex(of: UInt8(ascii: ":")) else { return model }
        return String(model[..<colon])
    }
}
