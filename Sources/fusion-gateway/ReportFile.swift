import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Where a bench report goes, checked before the run the way it is written after it (review 49
/// #4, review 50 #2):
/// - `/dev/stdout`, `/dev/stderr`, `/dev/fd/N`, `/proc/self/fd/N`: written to that descriptor
///   itself, where its file's offset is (`--json /dev/stdout >> run.log` appends);
/// - a pipe, a terminal or another device: opened and written in place when the run is over
///   (checked with `access`, never opened early: a pipe's reader would see its end);
/// - a regular file, or a new one: written whole to a new file renamed over it (a run cut short
///   never leaves half a report), through any symbolic links (dangling ones too): the link
///   stays, its target is replaced.
struct ReportFile {
    let path: String

    init(_ path: String) {
        self.path = path
    }

    private enum Destination {
        case descriptor(Int32)
        case special(String)
        case regular(String)
    }

    private var destination: Destination {
        let (descriptor, target) = Self.followingLinks(path)
        if let descriptor { return .descriptor(descriptor) }
        var info = stat()
        if stat(target, &info) == 0, (info.st_mode & S_IFMT) != S_IFREG, (info.st_mode & S_IFMT) != S_IFDIR { return .special(target) }
        return .regular(target)
    }

    /// The descriptor a path names by itself (`/dev/stdout`, `/dev/fd/N`, …): nil when it names
    /// none, -1 when it is one of those places but no number of a descriptor.
    private static func descriptorNamed(_ path: String) -> Int32? {
        // Read as written: "." and repeated slashes dropped, no link followed (Foundation's
        // standardizing would follow /dev/stdout to the file behind it).
        let standard = "/" + path.split(separator: "/").filter { $0 != "." }.joined(separator: "/")
        switch path.hasPrefix("/") ? standard : path {
        case "/dev/stdout": return 1
        case "/dev/stderr": return 2
        case "/dev/stdin": return 0
        case let standard:
            for prefix in ["/dev/fd/", "/proc/self/fd/"] where standard.hasPrefix(prefix) {
                return Int32(standard.dropFirst(prefix.count)) ?? -1
            }
            return nil
        }
    }

    /// Where `path` leads: a descriptor named on the way (a link to `/dev/stdout`), else the
    /// file its symbolic links end at, dangling ones too. Each hop's directory is resolved by
    /// the kernel (`realpath`), so `..` in a link means what it means to the kernel (review 51
    /// #2: resolved as text, a link through a linked directory wrote over another file).
    private static func followingLinks(_ path: String) -> (descriptor: Int32?, path: String) {
        var current = path
        for _ in 0..<40 {
            if let descriptor = descriptorNamed(current) { return (descriptor, current) }
            var info = stat()
            guard lstat(current, &info) == 0, (info.st_mode & S_IFMT) == S_IFLNK else { break }
            var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
            let count = readlink(current, &buffer, buffer.count - 1)
            guard count > 0 else { break }
            let destination = String(decoding: buffer[..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
            current = destination.hasPrefix("/") ? destination : physical((current as NSString).deletingLastPathComponent) + "/" + destination
        }
        // The last hop's directory, physically, and its name.
        let name = (current as NSString).lastPathComponent
        return (nil, physical((current as NSString).deletingLastPathComponent) + "/" + name)
    }

    /// `directory` as the kernel resolves it (itself when it does not exist).
    private static func physical(_ directory: String) -> String {
        let directory = directory.isEmpty ? "." : directory
        guard let resolved = realpath(directory, nil) else { return directory }
        defer { free(resolved) }
        return String(cString: resolved)
    }

    /// Why the report could not be written there (nil: it can).
    var problem: String? {
        switch destination {
        case .descriptor(let descriptor):
            guard descriptor >= 0 else { return "it names no descriptor" }
            let flags = fcntl(descriptor, F_GETFL)
            guard flags >= 0 else { return "descriptor \(descriptor) is not open" }
            return flags & O_ACCMODE == O_RDONLY ? "descriptor \(descriptor) is open only for reading" : nil
        case .special(let target):
            return access(target, W_OK) == 0 ? nil : String(cString: strerror(errno))
        case .regular(let target):
            var info = stat()
            if stat(target, &info) == 0, (info.st_mode & S_IFMT) == S_IFDIR { return "it is a directory" }
            let directory = (target as NSString).deletingLastPathComponent
            guard access(directory.isEmpty ? "." : directory, W_OK) == 0 else {
                return "its directory is not writable (\(String(cString: strerror(errno))))"
            }
            return nil
        }
    }

    func write(_ data: Data) throws {
        switch destination {
        case .descriptor(let descriptor):
            try FileHandle(fileDescriptor: descriptor, closeOnDealloc: false).write(contentsOf: data)
        case .special(let target):
            // Never blocking without a bound: a pipe nobody reads is waited for 10 s, then said
            // (review 51 #3: a blocking open waited forever, deaf to Ctrl-C).
            var descriptor: Int32 = -1
            for _ in 0..<100 {
                descriptor = open(target, O_WRONLY | O_NONBLOCK)
                guard descriptor < 0, errno == ENXIO else { break }
                usleep(100_000)
            }
            guard descriptor >= 0 else {
                throw CocoaError(.fileWriteUnknown, userInfo: [NSFilePathErrorKey: path,
                                 NSLocalizedDescriptionKey: errno == ENXIO ? "no reader on the pipe \(path)" : String(cString: strerror(errno))])
            }
            _ = fcntl(descriptor, F_SETFL, fcntl(descriptor, F_GETFL) & ~O_NONBLOCK)
            let handle = FileHandle(fileDescriptor: descriptor, closeOnDealloc: true)
            try handle.write(contentsOf: data)
        case .regular(let target):
            try data.write(to: URL(fileURLWithPath: target), options: .atomic)
        }
    }
}
