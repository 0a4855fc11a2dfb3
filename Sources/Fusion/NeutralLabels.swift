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
    /// Labels of members whose answers the judge was not given (failed, cut): in prose their
    /// model is marked so, or the analysis would put words in the mouth of a model that never
    /// answered (review 110 #1; in the fields that cite a model, such a citation is refused).
    public private(set) var notCompared: Set<String> = []

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
        func letter(_ value: Int) -> Character { Character(Unicode.Scalar(UInt8(ascii: "A") + UInt8(value % 26))) }
        var value = position
        var text = String(letter(value))
        while value >= 26 {
            value = value / 26 - 1
            text.insert(letter(value), at: text.startIndex)
        }
        return text
    }

    public var isNeutral: Bool { !models.isEmpty }

    /// Label → model (empty when labels are off).
    public var mapping: [String: String] { models }

    /// Marks the members at `indexes` as not compared (see `notCompared`).
    public mutating func markNotCompared(_ indexes: [Int]) {
        notCompared = Set(indexes.compactMap { labels.indices.contains($0) && models[labels[$0]] != nil ? labels[$0] : nil })
    }

    /// The same labels without those marks: for messages about the judge's reply, which name
    /// what it cited as it is.
    public var unmarked: NeutralLabels {
        var copy = self
        copy.notCompared = []
        return copy
    }

    /// What a label reads as in prose: its model, marked when its answer was not compared.
    private func proseName(_ label: String) -> String? {
        guard let model = models[label] else { return nil }
        return notCompared.contains(label) ? model + String(decoding: Self.notComparedMark, as: UTF8.self) : model
    }

    static let notComparedMark = Array(" (not compared)".utf8)

    /// The model a label names, or the text itself when it is no label.
    public func model(for label: String) -> String {
        models[label.trimmingWhitespace()] ?? label
    }

    /// The analysis (or one of its items) with every label replaced by its model: exactly in the
    /// fields that cite a model, as whole words in prose ("Response B argues…").
    /// A citation is its model's name as validated, white space trimmed (the fuzzer's finding:
    /// `"   p/c"` passed as `p/c` and went out padded), labels or not.
    public func restore(_ value: JSONValue) -> JSONValue {
        restore(value, key: nil)
    }

    private func restore(_ value: JSONValue, key: String?) -> JSONValue {
        switch value {
        case .string(let written):
            // As people will see it: no terminal escapes, bells or bidi overrides from the judge
            // reach a comment, an event, the outer model or the answer (review 110 #4).
            let text = DisplayText.cleaned(written)
            if key == "model" || key == "models" {
                let name = text.trimmingWhitespace()
                return .string(isNeutral ? models[name] ?? restoreProse(name) : name)
            }
            guard isNeutral else { return .string(text) }
            return .string(restoreProse(text))
        case .array(let elements):
            return .array(elements.map { restore($0, key: key) })
        case .object(let members):
            var restored: [String: JSONValue] = [:]
            restored.reserveCapacity(members.count)
            for (name, member) in members { restored[name] = restore(member, key: name) }
            return .object(restored)
        default:
            return value
        }
    }

    /// "Response B" as a whole word in prose becomes the model's name, and so does each label
    /// of a list ("Responses A and B", "Response A, B, and C" → "p/a and p/b", review 19 F4;
    /// "Responses A/B", "Responses A–C", "Responses A's and B's", "Response A (and B)").
    /// On UTF-8 bytes: it runs over every item the judge streams and the whole analysis
    /// (Foundation's `range(of:)` was most of the judge's overhead).
    public func restoreProse(_ text: String) -> String {
        let stem = Array("Response".utf8)
        var contiguous = text
        var out: [UInt8]?
        var copied = 0
        contiguous.withUTF8 { bytes in
            var index = 0
            while index + stem.count < bytes.count {
                guard bytes[index] == stem[0], bytes[index..<index + stem.count].elementsEqual(stem), Self.isWordEdge(bytes, before: index) else {
                    index += 1
                    continue
                }
                var cursor = index + stem.count
                let plural = bytes[cursor] == UInt8(ascii: "s")
                if plural { cursor += 1 }
                guard cursor < bytes.count, bytes[cursor] == UInt8(ascii: " ") else {
                    index = cursor
                    continue
                }
                cursor += 1
                // The label's letters, and those of a list of labels ("Response A and B" is
                // written too), with what joins them; a label may be possessive ("A's") or a
                // range ("Responses A–C").
                var items: [(joiner: ArraySlice<UInt8>, text: [UInt8], end: Int)] = []
                var joiner: ArraySlice<UInt8> = []
                while true {
                    let start = cursor
                    while cursor < bytes.count, (0x41...0x5A).contains(bytes[cursor]) { cursor += 1 }
                    let label = "Response " + String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<cursor]), as: UTF8.self)
                    guard cursor > start, Self.isWordEdge(bytes, after: cursor), let model = models[label] else { break }
                    var text = Array(model.utf8)
                    var mark = notCompared.contains(label)
                    if cursor == start + 1, let (last, end) = rangeEnd(bytes, from: bytes[start], at: cursor) {
                        text = expandRange(from: bytes[start], to: last)  // each marked in the list
                        mark = false
                        cursor = end
                    }
                    if let length = Self.possessive(bytes, at: cursor) {
                        text += bytes[cursor..<cursor + length]
                        cursor += length
                    }
                    if mark { text += Self.notComparedMark }  // after a possessive: "p/c's (not compared)"
                    items.append((joiner, text, cursor))
                    guard let length = Self.listJoiner(bytes, at: cursor) else { break }
                    joiner = ArraySlice(bytes[cursor..<cursor + length])
                    // "A/B" between model names that hold slashes reads "p/a / p/b".
                    if joiner.elementsEqual("/".utf8) { joiner = ArraySlice(" / ".utf8) }
                    cursor += length
                }
                // After the singular, a list ends in "and", "or", "&" or "/" ("Response A, B and
                // C"): "Response A, A good point" goes on with a sentence, not a label.
                if !plural, let last = items.lastIndex(where: { !$0.joiner.isEmpty && !$0.joiner.elementsEqual(", ".utf8) }) {
                    items.removeSubrange((last + 1)...)
                } else if !plural {
                    items.removeSubrange(min(1, items.count)...)
                }
                // "Response A (and B)": a list of labels in parentheses right after.
                if let last = items.last, let (text, end) = parenthetical(bytes, at: last.end) {
                    items.append((joiner: [], text: text, end: end))
                }
                guard let end = items.last?.end else {
                    index += 1
                    continue
                }
                var replacement: [UInt8] = []
                for item in items { replacement += item.joiner + item.text }
                out = out ?? []
                out!.append(contentsOf: bytes[copied..<index])
                out!.append(contentsOf: replacement)
                copied = end
                index = end
            }
            out?.append(contentsOf: bytes[copied...])
        }
        return out.map { String(decoding: $0, as: UTF8.self) } ?? text
    }

    private static let joiners = [", and ", ", or ", " and ", " or ", ", ", " & ", "/"].map { Array($0.utf8) }
    private static let dashes = ["-", "\u{2013}"].map { Array($0.utf8) }  // hyphen, en dash
    private static let possessives = ["'s", "\u{2019}s"].map { Array($0.utf8) }

    /// A range's last letter and where it ends, when a dash and a later one-letter label follow
    /// a one-letter label at `index` ("A–C"; panels have at most 8 members).
    private func rangeEnd(_ bytes: UnsafeBufferPointer<UInt8>, from first: UInt8, at index: Int) -> (UInt8, Int)? {
        guard let dash = Self.dashes.first(where: { index + $0.count < bytes.count && bytes[index..<index + $0.count].elementsEqual($0) }) else { return nil }
        let letter = index + dash.count
        guard bytes[letter] > first, bytes[letter] <= 0x5A, Self.isWordEdge(bytes, after: letter + 1),
              models["Response " + String(UnicodeScalar(bytes[letter]))] != nil else { return nil }
        return (bytes[letter], letter + 1)
    }

    /// " (and B)", " (or B, C)", " (B)" right after a label, at `index`: its labels replaced by
    /// their models, and where it ends; nil when anything but labels is inside.
    private func parenthetical(_ bytes: UnsafeBufferPointer<UInt8>, at index: Int) -> (text: [UInt8], end: Int)? {
        let open = Array(" (".utf8)
        guard index + open.count < bytes.count, bytes[index..<index + open.count].elementsEqual(open) else { return nil }
        var cursor = index + open.count
        var text = open
        if let word = Self.parentheticalWords.first(where: { cursor + $0.count <= bytes.count && bytes[cursor..<cursor + $0.count].elementsEqual($0) }) {
            text += word
            cursor += word.count
        }
        while true {
            let start = cursor
            while cursor < bytes.count, (0x41...0x5A).contains(bytes[cursor]) { cursor += 1 }
            guard cursor > start, let model = proseName("Response " + String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<cursor]), as: UTF8.self))
            else { return nil }
            text += Array(model.utf8)
            if cursor < bytes.count, bytes[cursor] == UInt8(ascii: ")") { return (text + [UInt8(ascii: ")")], cursor + 1) }
            guard let length = Self.listJoiner(bytes, at: cursor) else { return nil }
            text += bytes[cursor..<cursor + length].elementsEqual("/".utf8) ? Array(" / ".utf8) : Array(bytes[cursor..<cursor + length])
            cursor += length
        }
    }

    private static let parentheticalWords = ["and also ", "and ", "or ", "also ", "as does ", "as do ", "like "].map { Array($0.utf8) }

    /// The models of the labels `first` through `last`, as a list ("p/a, p/b and p/c").
    private func expandRange(from first: UInt8, to last: UInt8) -> [UInt8] {
        let names = (first...last).compactMap { proseName("Response " + String(UnicodeScalar($0))) }
        var text: [UInt8] = []
        for (position, name) in names.enumerated() {
            if position > 0 { text += Array((position == names.count - 1 ? " and " : ", ").utf8) }
            text += Array(name.utf8)
        }
        return text
    }

    /// The length of a possessive ending at `index` ("'s", "’s") that ends a word, or nil.
    static func possessive(_ bytes: UnsafeBufferPointer<UInt8>, at index: Int) -> Int? {
        possessives.first { ending in
            index + ending.count <= bytes.count && bytes[index..<index + ending.count].elementsEqual(ending)
                && isWordEdge(bytes, after: index + ending.count)
        }?.count
    }

    /// The length of a list's joiner at `index` (", ", " and ", …), or nil.
    static func listJoiner(_ bytes: UnsafeBufferPointer<UInt8>, at index: Int) -> Int? {
        joiners.first { joiner in index + joiner.count <= bytes.count && bytes[index..<index + joiner.count].elementsEqual(joiner) }?.count
    }

    /// No letter or digit just before `index` (a scalar ends there).
    static func isWordEdge(_ bytes: UnsafeBufferPointer<UInt8>, before index: Int) -> Bool {
        var start = index - 1
        while start > 0, bytes[start] & 0xC0 == 0x80 { start -= 1 }
        guard start >= 0, let scalar = scalar(in: bytes, at: start) else { return true }
        return !(scalar.properties.isAlphabetic || scalar.properties.numericType != nil)
    }

    /// No letter, digit or combining mark at `index`: the label is not the start of a longer word
    /// ("Response AB") or of a letter with an accent ("Response Á" written A + U+0301).
    static func isWordEdge(_ bytes: UnsafeBufferPointer<UInt8>, after index: Int) -> Bool {
        guard let scalar = scalar(in: bytes, at: index) else { return true }
        let properties = scalar.properties
        return !(properties.isAlphabetic || properties.numericType != nil || properties.isGraphemeExtend
                 || properties.generalCategory == .spacingMark)
    }

    /// The scalar whose UTF-8 encoding starts at `index` (nil at the end).
    static func scalar(in bytes: UnsafeBufferPointer<UInt8>, at index: Int) -> Unicode.Scalar? {
        guard index < bytes.count else { return nil }
        var iterator = bytes[index...].makeIterator()
        var decoder = UTF8()
        if case .scalarValue(let scalar) = decoder.decode(&iterator) { return scalar }
        return nil
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
