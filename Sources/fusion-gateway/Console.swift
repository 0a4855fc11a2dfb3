import Foundation

/// Text for the terminal (banners, progress, reports), written with `write(2)`: Foundation's
/// `FileHandle.write(_: Data)` traps when the write fails, so a gateway whose standard output
/// was a pipe nobody read any more (`serve | head -1`, a log shipper gone) died at start with
/// SIGILL (review 83B #1). A failed write here is dropped, as a log line's is.
enum Console {
    static func out(_ text: String) { write(text, to: STDOUT_FILENO) }

    static func error(_ text: String) { write(text, to: STDERR_FILENO) }

    static func out(_ data: Data) { write(Array(data), to: STDOUT_FILENO) }

    static func write(_ text: String, to descriptor: Int32) { write(Array(text.utf8), to: descriptor) }

    static func write(_ bytes: [UInt8], to descriptor: Int32) {
        bytes.withUnsafeBytes { buffer in
            var offset = 0
            while offset < buffer.count {
                let written = Glibc.write(descriptor, buffer.baseAddress! + offset, buffer.count - offset)
                if written < 0 && errno == EINTR { continue }
                if written <= 0 { return }
                offset += written
            }
        }
    }

    /// Standard input, output and error made open (on /dev/null) where one was closed at start:
    /// the first descriptor the process opened took its number (the event loop's epoll, with
    /// standard output closed), the banner went into it, and libuv asserted when closing it at
    /// shutdown: exit 134 (review 84 #5). Before anything else opens a descriptor.
    static func keepStandardDescriptorsOpen() {
        for descriptor in Int32(0)...2 where fcntl(descriptor, F_GETFD) == -1 && errno == EBADF {
            let opened = open("/dev/null", O_RDWR)
            if opened >= 0 && opened != descriptor {
                dup2(opened, descriptor)
                close(opened)
            }
        }
    }
}
