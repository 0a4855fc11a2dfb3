@testable import Gateway
import GatewayCore
import Testing

/// Anthropic's model list is paged as Anthropic's API pages it; following `after_id` (or
/// `before_id`) from any page visits every model once, in order.
@Suite struct ModelsPageTests {
    static let ids = (0..<7).map { "p/m\($0)" }

    static func page(limit: String? = nil, after: String? = nil, before: String? = nil) -> ModelsPage? {
        try? ModelsPage.make(ids, limit: limit, afterID: after, beforeID: before).get()
    }

    @Test func pagesForwardAndBackwardCoverTheListOnce() {
        for limit in 1...8 {
            var forward: [String] = []
            var page = Self.page(limit: String(limit))
            while let current = page {
                forward += current.ids
                page = current.hasMore ? Self.page(limit: String(limit), after: current.ids.last) : nil
            }
            #expect(forward == Self.ids, "limit \(limit)")
            var backward: [String] = []
            page = Self.page(limit: String(limit), before: "p/m6")
            while let current = page {
                backward = current.ids + backward
                page = current.hasMore ? Self.page(limit: String(limit), before: current.ids.first) : nil
            }
            #expect(backward == Array(Self.ids.dropLast()), "limit \(limit)")
        }
        #expect(Self.page() == ModelsPage(ids: Self.ids, hasMore: false))
        #expect(Self.page(after: "p/m6") == ModelsPage(ids: [], hasMore: false))
        #expect(ModelsPage.make((0..<25).map(String.init), limit: nil, afterID: nil, beforeID: nil) == .success(ModelsPage(ids: (0..<20).map(String.init), hasMore: true)))
    }

    @Test(arguments: [("0", nil, nil, "limit"), ("1001", nil, nil, "limit"), ("x", nil, nil, "limit"), ("", nil, nil, "limit"),
                      (nil, "p/none", nil, "after_id"), (nil, nil, "p/none", "before_id"), (nil, "p/m1", "p/m3", "before_id")] as [(String?, String?, String?, String)])
    func badParametersAreA400NamingThem(limit: String?, after: String?, before: String?, param: String) {
        guard case .failure(let error) = ModelsPage.make(Self.ids, limit: limit, afterID: after, beforeID: before) else {
            Issue.record("accepted")
            return
        }
        #expect(error.status == 400 && error.param == param, "\(error)")
    }
}
