import Foundation

/// Reads a config file: a regular file, or a pipe or device (`--config /dev/stdin`,
/// `--config <(render-template)`, as containers render configs), to its end, at most `maxBytes`.
/// Foundation's `String(contentsOfFile:)` refused every non-regular file as "You don't have
/// permission" and read any size whole (review 52B #5).
enum ConfigFile {
    /// Far beyond any real config: a path given by mistake (a log, a disk image) is refused.
    static let maxBytes = 4 << 20

    static func read(_ path: String) throws -> String {
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { throw ConfigError("cannot read config file \(path): \(String(cString: strerror(errno)))") }
        defer { close(descriptor) }
        var info = stat()
        if fstat(descriptor, &info) == 0, info.st_mode & S_IFMT == S_IFDIR {
            throw ConfigError("cannot read config file \(path): it is a directory, not a YAML file")
        }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            let count = chunk.withUnsafeMutableBytes { Glibc.read(descriptor, $0.baseAddress, $0.count) }
            if count < 0 {
                if errno == EINTR { continue }
                throw ConfigError("cannot read config file \(path): \(String(cString: strerror(errno)))")
            }
            if count == 0 { break }
            bytes += chunk[..<count]
            guard bytes.count <= maxBytes else {
                throw ConfigError("cannot read config file \(path): larger than \(maxBytes / (1 << 20)) MiB, which no config is")
            }
        }
        // A UTF-8 byte-order mark (Windows' Notepad, PowerShell 5.1) is not part of the YAML, as
        // Foundation's reader dropped it (review 53 #4).
        if bytes.starts(with: [0xEF, 0xBB, 0xBF]) { bytes.removeFirst(3) }
        guard let text = String(validating: bytes, as: UTF8.self) else {
            throw ConfigError("cannot read config file \(path): it is not UTF-8 text")
        }
        return text
    }
}
