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
        if let descriptor = Self.descriptorNamed(path) { return .descriptor(descriptor) }
        let target = Self.followingLinks(path)
        var info = stat()
        if stat(target, &info) == 0, (info.st_mode & S_IFMT) != S_IFREG, (info.st_mode & S_IFMT) != S_IFDIR { return .special(target) }
        return .regular(target)
    }

    /// The descriptor a path names by itself, if it is one of the ways to name one.
    private static func descriptorNamed(_ path: String) -> Int32? {
        switch path {
        case "/dev/stdout": return 1
        case "/dev/stderr": return 2
        default:
            for prefix in ["/dev/fd/", "/proc/self/fd/"] where path.hasPrefix(prefix) {
                return Int32(path.dropFirst(prefix.count))
            }
            return nil
        }
    }

    /// `path` with its symbolic links followed, a dangling one to where it points.
    private static func followingLinks(_ path: String) -> String {
        var current = path
        for _ in 0..<40 {
            var info = stat()
            guard lstat(current, &info) == 0, (info.st_mode & S_IFMT) == S_IFLNK else { return current }
            var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
            let count = readlink(current, &buffer, buffer.count - 1)
            guard count > 0 else { return current }
            let destination = String(decoding: buffer[..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
            current = destination.hasPrefix("/") ? destination
                : ((current as NSString).deletingLastPathComponent as NSString).appendingPathComponent(destination)
        }
        return current
    }

    /// Why the report could not be written there (nil: it can).
    var problem: String? {
        switch destination {
        case .descriptor(let descriptor):
            return fcntl(descriptor, F_GETFL) < 0 ? "descriptor \(descriptor) is not open" : nil
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
            guard let handle = FileHandle(forWritingAtPath: target) else {
                throw CocoaError(.fileWriteNoPermission, userInfo: [NSFilePathErrorKey: path])
            }
            defer { try? handle.close() }
            try handle.write(contentsOf: data)
        case .regular(let target):
            try data.write(to: URL(fileURLWithPath: target), options: .atomic)
        }
    }
}
