import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Where a bench report goes, checked before the run the way it is written after it (review 49
/// #4: checked by opening, written by renaming a new file over the path, so `/dev/stdout`
/// passed the check and then failed, or as root was replaced by a file). A regular file (or a
/// new one) is written whole and renamed into place, so a run cut short never leaves half a
/// report; anything else (a terminal, a pipe, `/dev/stdout`) is written in place. Symbolic
/// links are followed: the report replaces what they point to, not the link.
struct ReportFile {
    let path: String

    init(_ path: String) {
        self.path = path
    }

    /// The path with its links resolved (the link itself when it dangles).
    private var target: String {
        URL(fileURLWithPath: path).resolvingSymlinksInPath().path
    }

    /// Whether the target exists and is not a regular file.
    private var isSpecial: Bool {
        var info = stat()
        guard stat(target, &info) == 0 else { return false }
        return (info.st_mode & S_IFMT) != S_IFREG
    }

    /// Why the report could not be written there (nil: it can).
    var problem: String? {
        if isSpecial {
            let descriptor = open(target, O_WRONLY | O_NONBLOCK)
            guard descriptor >= 0 else { return String(cString: strerror(errno)) }
            close(descriptor)
            return nil
        }
        let directory = (target as NSString).deletingLastPathComponent
        guard access(directory.isEmpty ? "." : directory, W_OK) == 0 else {
            return "its directory is not writable (\(String(cString: strerror(errno))))"
        }
        return nil
    }

    func write(_ data: Data) throws {
        if isSpecial {
            guard let handle = FileHandle(forWritingAtPath: target) else {
                throw CocoaError(.fileWriteNoPermission, userInfo: [NSFilePathErrorKey: path])
            }
            defer { try? handle.close() }
            try handle.write(contentsOf: data)
        } else {
            try data.write(to: URL(fileURLWithPath: target), options: .atomic)
        }
    }
}
