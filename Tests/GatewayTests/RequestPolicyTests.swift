import PropertyBased
import Testing
@testable import Gateway

/// The header checks that run on every request, without sockets: the media type check and the
/// upstream's event-stream check against the definitions they implement, and generation ids.
@Suite struct RequestPolicyTests {
    /// What `isJSON` means: the media type before any `;`, blanks trimmed, is `application/json`
    /// in any ASCII case, and no parameter names a charset other than UTF-8.
    static func reference(_ contentType: String) -> Bool {
        func lowered(_ text: Substring) -> String {
            let trimmed = text.drop { $0 == " " || $0 == "\t" }.reversed().drop { $0 == " " || $0 == "\t" }.reversed()
            return String(String(trimmed).unicodeScalars.map { ("A"..."Z").contains($0) ? Character(Unicode.Scalar($0.value + 32)!) : Character($0) })
        }
        let parts = contentType.unicodeScalars.split(separator: ";", omittingEmptySubsequences: false).map { Substring(String(String.UnicodeScalarView($0))) }
        guard lowered(parts.first ?? "") == "application/json" else { return false }
        for parameter in parts.dropFirst() {
            let text = lowered(parameter)
            guard text.hasPrefix("charset=") else { continue }
            var value = Substring(text.dropFirst(8))
            if value.count >= 2, value.first == "\"", value.last == "\"" { value = value.dropFirst().dropLast() }
            if value != "utf-8" && value != "utf8" { return false }
        }
        return true
    }

    @Test func theMediaTypeCheckAcceptsJSONInAnyCaseWithParametersAndNothingElse() {
        for accepted in ["application/json", "Application/JSON", "APPLICATION/JSON", " application/json ", "\tapplication/json\t;",
                         "application/json; charset=utf-8", "application/json;charset=UTF-8", "application/json;",
                         #"application/json; charset="utf-8""#, "application/json; boundary=x; charset=utf8"] {
            #expect(RequestPolicy.isJSON(accepted), "\(accepted.debugDescription)")
        }
        for refused in ["", ";", "application/jsonx", "application/json5", "text/json", "application/ json", "application /json",
                        "application/json\u{0}", "xapplication/json", "application/x-www-form-urlencoded", "application\\json",
                        "\u{212A}application/json", "appl\u{0130}cation/json", "application/j\u{017F}on", "application/json,text/plain",
                        "application/json; charset=UTF-16", "application/json;charset=latin1", "application/json; charset="] {
            #expect(!RequestPolicy.isJSON(refused), "\(refused.debugDescription)")
        }
        #expect(!RequestPolicy.isJSON(nil))
    }

    @Test func theMediaTypeCheckAgreesWithItsDefinitionOnGeneratedHeaders() async {
        // Pieces of real and near-miss media types, with case changes, blanks, separators and
        // non-ASCII look-alikes (the Kelvin sign, the long s, dotted capital I).
        let piece = Gen.element(of: ["application", "APPLICATION", "Application", "/", "json", "JSON", "Json", ";", " ", "\t", "charset=utf-8",
                                     "x", "\u{212A}", "\u{017F}", "\u{0130}", "\u{0}", "/json", "application/json", "text", "+json", ",",
                                     "charset=utf-16", "CHARSET=UTF8", "\"", "charset=\"utf-8\""])
        await propertyCheck(count: 2_000, input: piece.array(of: 0...6)) { pieces in
            let header = pieces.compactMap { $0 }.joined()
            #expect(RequestPolicy.isJSON(header) == Self.reference(header), "\(header.debugDescription)")
        }
    }

    @Test func generationIDsAreTwentyFourRandomHexDigits() {
        var seen = Set<String>()
        var digitsAt = Array(repeating: Set<Character>(), count: 24)
        for _ in 0..<2_000 {
            let id = GenerationStore.newID()
            #expect(id.hasPrefix("gen-") && id.count == 28)
            for (index, character) in id.dropFirst(4).enumerated() {
                #expect(character.isHexDigit && !character.isUppercase)
                digitsAt[index].insert(character)
            }
            seen.insert(id)
        }
        #expect(seen.count == 2_000, "no id repeats")
        // 2,000 draws give every position all 16 digits (a stuck or short fill would not).
        #expect(digitsAt.allSatisfy { $0.count == 16 })
    }

    /// The event-stream check against its definition (the lowercased comparison it replaced),
    /// over names and values built from real ones, near misses, other cases and look-alikes.
    @Test func theEventStreamCheckAgreesWithItsDefinition() {
        let names = ["content-type", "Content-Type", "CONTENT-TYPE", "content-typ", "content-types", "x-content-type", "Content_Type",
                     "content-\u{0130}ype", "content-\u{212A}ype", ""]
        let values = ["text/event-stream", "Text/Event-Stream", "TEXT/EVENT-STREAM; charset=utf-8", "text/event-stream;", "text/event",
                      "text/event-streamer", "application/json", " text/event-stream", "text/event-\u{017F}tream", ""]
        func reference(_ headers: [(String, String)]) -> Bool {
            headers.contains { $0.0.lowercased() == "content-type" && $0.1.lowercased().hasPrefix("text/event-stream") }
        }
        for name in names {
            for value in values {
                let headers = [("Date", "today"), (name, value)]
                #expect(UpstreamHead.isEventStream(headers) == reference(headers), "\(name.debugDescription): \(value.debugDescription)")
            }
        }
        #expect(!UpstreamHead.isEventStream([]))
    }
}
