import Foundation
import GatewayCore

/// The names the judge sees the panel's answers under. With neutral labels (the default) each
/// answer is "Response A", "Response B", … in an order shuffled per request, so the judge cannot
/// favour a brand or a position; whatever it writes is mapped back to the real model names
/// before it is validated, streamed or handed on (`restore`).
public struct NeutralLabels: Sendable, Equatable {
    /// The label of each panel member, by index (its model name when labels are off).
    public let labels: [String]
    /// The members in the order the judge reads them.
    public let order: [Int]
    /// Label → model, for the labels that are not model names.
    private let models: [String: String]

    /// `seed` shuffles the order (nil: panel order). `neutral: false` labels by model name.
    public init(models panel: [String], neutral: Bool, seed: UInt64?) {
        var order = Array(panel.indices)
        if let seed {
            var generator = SplitMix64(seed: seed)
            order.shuffle(using: &generator)
        }
        self.order = order
        guard neutral else {
            labels = panel
            models = [:]
            return
        }
        var labels = Array(repeating: "", count: panel.count)
        var models: [String: String] = [:]
        for (position, index) in order.enumerated() {
            let label = "Response " + Self.letters(position)
            labels[index] = label
            models[label] = panel[index]
        }
        self.labels = labels
        self.models = models
    }

    /// A, B, … Z, then AA, AB, … (panels have at most 8 members; this never runs out).
    static func letters(_ position: Int) -> String {
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
        var value = position
        var text = String(alphabet[value % 26])
        while value >= 26 {
            value = value / 26 - 1
            text = String(alphabet[value % 26]) + text
        }
        return text
    }

    public var isNeutral: Bool { !models.isEmpty }

    /// Label → model (empty when labels are off).
    public var mapping: [String: String] { models }

    /// The model a label names, or the text itself when it is no label.
    public func model(for label: String) -> String {
        models[label.trimmingWhitespace()] ?? label
    }

    /// The analysis (or one of its items) with every label replaced by its model: exactly in the
    /// fields that cite a model, as whole words in prose ("Response B argues…").
    public func restore(_ value: JSONValue) -> JSONValue {
        guard isNeutral else { return value }
        return restore(value, key: nil)
    }

    private func restore(_ value: JSONValue, key: String?) -> JSONValue {
        switch value {
        case .string(let text):
            if key == "model" || key == "models", let model = models[text.trimmingWhitespace()] { return .string(model) }
            return .string(restoreProse(text))
        case .array(let elements):
            return .array(elements.map { restore($0, key: key) })
        case .object(let members):
            var restored: [String: JSONValue] = [:]
            for (name, member) in members { restored[name] = restore(member, key: name) }
            return .object(restored)
        default:
            return value
        }
    }

    /// "Response B" as a whole word in prose becomes the model's name.
    public func restoreProse(_ text: String) -> String {
        guard text.contains("Response ") else { return text }
        var out = ""
        var rest = Substring(text)
        while let found = rest.range(of: "Response ") {
            out += rest[..<found.lowerBound]
            let after = rest[found.upperBound...]
            let letters = after.prefix { $0.isASCII && $0.isUppercase }
            let end = after.index(after.startIndex, offsetBy: letters.count)
            let boundary = end == after.endIndex || !(after[end].isLetter || after[end].isNumber)
            let before = out.last.map { !($0.isLetter || $0.isNumber) } ?? true
            if !letters.isEmpty, boundary, before, let model = models["Response " + letters] {
                out += model
                rest = after[end...]
            } else {
                out += rest[found]
                rest = after
            }
        }
        return out + rest
    }
}

/// A small seeded generator (SplitMix64, Steele et al. 2014): the same seed gives the same
/// order, so a test can pin the shuffle (and property tests their inputs); the shell seeds it
/// from the system's generator.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    private var state: UInt64

    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
