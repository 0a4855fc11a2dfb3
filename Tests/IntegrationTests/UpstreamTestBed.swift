import EventLoop
import HTTPServer
import MockUpstream
import UpstreamClient

/// What the upstream client's loopback suites share (they subclass it): the mock upstream on a
/// loop of its own and a client loop for an `UpstreamClient`; both shut down with the test.
class UpstreamTestBed {
    final class Box: @unchecked Sendable {  // touched on the mock loop / client loop only
        var mock: MockUpstream?
        var client: UpstreamClient?
        var transfer: UpstreamTransfer?
    }

    let mockThread: EventLoopThread
    let clientThread: EventLoopThread
    let stats = MockUpstreamStats()
    let box = Box()
    let mockPort: Int

    init(name: String, limits: HTTPServerLimits = HTTPServerLimits()) throws {
        mockThread = EventLoopThread(name: "\(name)-mock")
        clientThread = EventLoopThread(name: "\(name)-client")
        let stats = stats
        let box = box
        let mockLoop = mockThread.loop
        mockPort = try mockLoop.submitAndWait {
            let mock = try MockUpstream(loop: mockLoop, port: 0, stats: stats, limits: limits)
            box.mock = mock
            return mock.port
        }
    }

    deinit {
        let box = box
        try? clientThread.loop.submitAndWait { box.client?.close() }
        clientThread.shutdown()
        mockThread.loop.execute { box.mock?.shutdown() }
        mockThread.shutdown()
    }
}
