extension String {
    /// At most `limit` bytes of UTF-8, cut at a character boundary, with "…" when cut: for text
    /// from outside (a model name, an id, an error message) that is echoed, recorded or logged,
    /// where its whole length would let one request make the gateway hold or write megabytes.
    public func shortened(toBytes limit: Int) -> String {
        guard utf8.count > limit else { return self }
        var kept = 0
        var end = startIndex
        for character in self {
            let size = character.utf8.count
            guard kept + size <= limit else { break }
            kept += size
            end = index(after: end)
        }
        return String(self[..<end]) + "…"
    }
}
