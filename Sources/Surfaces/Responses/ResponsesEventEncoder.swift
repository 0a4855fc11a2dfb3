import GatewayCore

/// Frames Responses stream events: `event: <type>\ndata: {"type":"<type>","sequence_number":N,…}\n\n`,
/// numbering them from 0 across the whole stream (every event type carries `sequence_number`,
/// openai-python `response_*_event.py`). The `event:` line repeats the type because clients
/// other than the OpenAI SDKs (which read only `data`) route on it.
///
/// JSON is written by hand (this is the per-token path), every string through `JSONWriting`;
/// the whole payload then goes through `SSEEncoder.appendData`, so nothing in it, serialized
/// `JSONValue`s included, can end a line for any reader.
public struct ResponsesEventEncoder: Sendable {
    public private(set) var nextSequenceNumber = 0
    /// Reused for every payload (the bytes are copied into the stream).
    private var scratch: [UInt8] = []

    public init() {}

    /// Appends one event of `type` whose fields after `type` and `sequence_number` `build` writes.
    public mutating func append(_ type: String, to out: inout [UInt8], _ build: (inout EventFields) -> Void) {
        var fields = EventFields(bytes: scratch)
        scratch = []
        fields.bytes.removeAll(keepingCapacity: true)
        fields.bytes.append(contentsOf: #"{"type":"#.utf8)
        JSONWriting.appendString(type, to: &fields.bytes)
        fields.bytes.append(contentsOf: #","sequence_number":"#.utf8)
        fields.bytes.append(contentsOf: String(nextSequenceNumber).utf8)
        build(&fields)
        fields.bytes.append(UInt8(ascii: "}"))
        nextSequenceNumber += 1
        out.append(contentsOf: "event: ".utf8)
        out.append(contentsOf: type.utf8)  // our own constants: nothing to escape
        out.append(UInt8(ascii: "\n"))
        SSEEncoder.appendData(fields.bytes, to: &out)
        scratch = fields.bytes
    }
}

/// The fields of one event's JSON object, appended in order. Keys are the caller's constants.
public struct EventFields: Sendable {
    var bytes: [UInt8]

    public mutating func string(_ key: StaticString, _ value: String) {
        self.key(key)
        JSONWriting.appendString(value, to: &bytes)
    }

    public mutating func int(_ key: StaticString, _ value: Int) {
        self.key(key)
        bytes.append(contentsOf: String(value).utf8)
    }

    public mutating func bool(_ key: StaticString, _ value: Bool) {
        self.key(key)
        bytes.append(contentsOf: (value ? "true" : "false").utf8)
    }

    /// A value serialized whole (items, the response object, an analysis): not per token.
    public mutating func json(_ key: StaticString, _ value: JSONValue) {
        self.key(key)
        bytes.append(contentsOf: value.serialized())
    }

    /// A constant piece of JSON (`[]`, `null`).
    public mutating func raw(_ key: StaticString, _ value: StaticString) {
        self.key(key)
        bytes.append(contentsOf: UnsafeRawBufferPointer(start: value.utf8Start, count: value.utf8CodeUnitCount))
    }

    private mutating func key(_ key: StaticString) {
        bytes.append(contentsOf: #",""#.utf8)
        bytes.append(contentsOf: UnsafeRawBufferPointer(start: key.utf8Start, count: key.utf8CodeUnitCount))
        bytes.append(contentsOf: #"":"#.utf8)
    }
}
