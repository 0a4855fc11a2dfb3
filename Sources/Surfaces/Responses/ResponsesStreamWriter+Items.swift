import GatewayCore
import Providers

/// Items a renderer manages itself (a server tool's run, Fusion's `openrouter:fusion` item) in a
/// `ResponsesStreamWriter`'s output: opened, given events, closed with their final JSON.
extension ResponsesStreamWriter {
    /// Opens an item its renderer manages (a server tool's run): `initial` is its JSON object
    /// without `id`, which is added (`<prefix>_…`). Whatever the model had open is closed first.
    public mutating func openItem(prefix: String, initial: JSONValue, to out: inout [UInt8]) -> ItemReference {
        appendStart(to: &out)
        closeOpenItems(status: "completed", &out)
        let position = items.count
        let id = envelope.itemID(prefix, outputIndex: position)
        var json = initial.objectValue ?? [:]
        json["id"] = .string(id)
        items.append(ResponseItem(id: id, kind: .other(.object(json))))
        openOthers.insert(position)
        let item = items[position].initialJSON
        emit("response.output_item.added", &out) {
            $0.int("output_index", position)
            $0.json("item", item)
        }
        return ItemReference(id: id, outputIndex: position)
    }

    /// An event about `item` (`item_id` and `output_index` first, then what `build` writes).
    public mutating func appendItemEvent(_ type: String, _ item: ItemReference, to out: inout [UInt8],
                                         _ build: (inout EventFields) -> Void = { _ in }) {
        guard !isFinished else { return }
        emit(type, &out) {
            $0.string("item_id", item.id)
            $0.int("output_index", item.outputIndex)
            build(&$0)
        }
    }

    /// Closes `item` with its final JSON (without `id`, which is kept): `output_item.done`.
    public mutating func closeItem(_ item: ItemReference, final: JSONValue, to out: inout [UInt8]) {
        guard !isFinished, openOthers.remove(item.outputIndex) != nil else { return }
        var json = final.objectValue ?? [:]
        json["id"] = .string(item.id)
        items[item.outputIndex].kind = .other(.object(json))
        emitDone(item.outputIndex, &out)
    }
}
