import Foundation

/// Inline SVG charts for the HTML report: plain elements, no script, no external asset, so the
/// report opens anywhere, offline, and can be mailed as one file.
struct SVGChart {
    struct Series {
        var name: String
        var color: String
        var points: [(x: Double, y: Double)]
    }

    enum Style {
        /// One dot per point (latency over time).
        case dots
        /// Points joined in order (a CDF).
        case line
    }

    var title: String
    var xLabel: String
    var yLabel: String
    var logX = false
    var yRange: ClosedRange<Double>?
    var width = 640.0
    var height = 300.0
    let margin = (left: 64.0, right: 16.0, top: 28.0, bottom: 42.0)

    var plotWidth: Double { width - margin.left - margin.right }
    var plotHeight: Double { height - margin.top - margin.bottom }

    func render(_ series: [Series], style: Style) -> String {
        let xs = series.flatMap { $0.points.map(\.x) }.filter { !logX || $0 > 0 }
        let ys = series.flatMap { $0.points.map(\.y) }
        guard let xMin = xs.min(), let xMax = xs.max(), let yMax = ys.max() else {
            return frame("") + "<text x=\"\(margin.left + 8)\" y=\"\(margin.top + 20)\">no samples</text></svg>"
        }
        let xAxis = Axis(lower: logX ? xMin : Swift.min(0, xMin), upper: xMax, log: logX)
        let yAxis = Axis(lower: yRange?.lowerBound ?? 0, upper: yRange?.upperBound ?? yMax, log: false)
        var body = axes(xAxis, yAxis)
        for item in series {
            let mapped = item.points.filter { !logX || $0.x > 0 }.map { (px(xAxis, $0.x), py(yAxis, $0.y)) }
            switch style {
            case .dots:
                for (x, y) in mapped {
                    body += "<circle cx=\"\(f(x))\" cy=\"\(f(y))\" r=\"1.6\" fill=\"\(item.color)\" fill-opacity=\"0.6\"/>"
                }
            case .line:
                let points = mapped.map { "\(f($0.0)),\(f($0.1))" }.joined(separator: " ")
                body += "<polyline points=\"\(points)\" fill=\"none\" stroke=\"\(item.color)\" stroke-width=\"1.6\"/>"
            }
        }
        return frame(body + legend(series.map { ($0.name, $0.color) })) + "</svg>"
    }

    /// Overlaid histograms sharing bins: counts per bin for each series, bins of `binWidth` from `lower`.
    func bars(_ series: [(name: String, color: String, counts: [Int])], lower: Double, binWidth: Double) -> String {
        let bins = series.map(\.counts.count).max() ?? 0
        let top = series.flatMap(\.counts).max() ?? 0
        guard bins > 0, top > 0 else {
            return frame("") + "<text x=\"\(margin.left + 8)\" y=\"\(margin.top + 20)\">no samples</text></svg>"
        }
        let xAxis = Axis(lower: lower, upper: lower + binWidth * Double(bins), log: false)
        let yAxis = Axis(lower: 0, upper: Double(top), log: false)
        var body = axes(xAxis, yAxis)
        for item in series {
            for (index, count) in item.counts.enumerated() where count > 0 {
                let x0 = px(xAxis, lower + binWidth * Double(index))
                let x1 = px(xAxis, lower + binWidth * Double(index + 1))
                let y = py(yAxis, Double(count))
                body += "<rect x=\"\(f(x0))\" y=\"\(f(y))\" width=\"\(f(Swift.max(x1 - x0 - 0.5, 0.5)))\" "
                    + "height=\"\(f(margin.top + plotHeight - y))\" fill=\"\(item.color)\" fill-opacity=\"0.45\">"
                    + "<title>\(escape(item.name)): \(count)</title></rect>"
            }
        }
        return frame(body + (series.count > 1 ? legend(series.map { ($0.name, $0.color) }) : "")) + "</svg>"
    }

    // MARK: Frame, axes, legend

    struct Axis {
        var lower: Double
        var upper: Double
        var log: Bool

        init(lower: Double, upper: Double, log: Bool) {
            self.log = log
            self.lower = lower
            // A degenerate range (one sample) still needs a width to draw on.
            self.upper = upper > lower ? upper : (log ? lower * 10 : lower + Swift.max(abs(lower), 1))
        }

        func fraction(_ value: Double) -> Double {
            log ? (Foundation.log10(value) - Foundation.log10(lower)) / (Foundation.log10(upper) - Foundation.log10(lower))
                : (value - lower) / (upper - lower)
        }

        /// About five round ticks: 1, 2 or 5 × 10ⁿ apart. On a log axis 1-2-5 of each decade, thinned
        /// to decades when that crowds, or the linear ticks when the range is under a decade.
        var ticks: [Double] {
            guard log else { return Self.linearTicks(lower, upper) }
            var ticks: [Double] = []
            var decade = pow(10, floor(log10(lower)))
            while decade <= upper {
                for step in [1.0, 2, 5] where decade * step >= lower && decade * step <= upper { ticks.append(decade * step) }
                decade *= 10
            }
            if ticks.count < 3 { return Self.linearTicks(lower, upper).filter { $0 > 0 } }
            if ticks.count > 8 {
                let decades = ticks.filter { abs(log10($0) - log10($0).rounded()) < 1e-9 }
                return decades.count > 8 ? decades.enumerated().filter { $0.offset % 2 == 0 }.map(\.element) : decades
            }
            return ticks
        }

        static func linearTicks(_ lower: Double, _ upper: Double) -> [Double] {
            let raw = (upper - lower) / 5
            let power = pow(10, floor(log10(raw)))
            let step = [1.0, 2, 5, 10].map { $0 * power }.first { $0 >= raw } ?? raw
            var tick = ceil(lower / step) * step
            var ticks: [Double] = []
            while tick <= upper + step * 1e-9 {
                ticks.append(tick)
                tick += step
            }
            return ticks
        }
    }

    func px(_ axis: Axis, _ x: Double) -> Double { margin.left + axis.fraction(x) * plotWidth }
    func py(_ axis: Axis, _ y: Double) -> Double { margin.top + (1 - Swift.min(Swift.max(axis.fraction(y), 0), 1)) * plotHeight }

    func frame(_ body: String) -> String {
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 \(f(width)) \(f(height))\" width=\"\(f(width))\" "
            + "height=\"\(f(height))\" role=\"img\" aria-label=\"\(escape(title))\" font-family=\"sans-serif\" font-size=\"11\">"
            + "<text x=\"\(f(margin.left))\" y=\"16\" font-size=\"13\" font-weight=\"bold\">\(escape(title))</text>" + body
    }

    func axes(_ x: Axis, _ y: Axis) -> String {
        let bottom = margin.top + plotHeight
        var out = "<rect x=\"\(f(margin.left))\" y=\"\(f(margin.top))\" width=\"\(f(plotWidth))\" height=\"\(f(plotHeight))\" "
            + "fill=\"none\" stroke=\"#999\"/>"
        for tick in x.ticks {
            let position = px(x, tick)
            out += "<line x1=\"\(f(position))\" y1=\"\(f(margin.top))\" x2=\"\(f(position))\" y2=\"\(f(bottom))\" stroke=\"#eee\"/>"
                + "<text x=\"\(f(position))\" y=\"\(f(bottom + 14))\" text-anchor=\"middle\">\(label(tick))</text>"
        }
        for tick in y.ticks {
            let position = py(y, tick)
            out += "<line x1=\"\(f(margin.left))\" y1=\"\(f(position))\" x2=\"\(f(margin.left + plotWidth))\" y2=\"\(f(position))\" stroke=\"#eee\"/>"
                + "<text x=\"\(f(margin.left - 4))\" y=\"\(f(position + 4))\" text-anchor=\"end\">\(label(tick))</text>"
        }
        out += "<text x=\"\(f(margin.left + plotWidth / 2))\" y=\"\(f(height - 6))\" text-anchor=\"middle\">\(escape(xLabel))</text>"
        out += "<text transform=\"translate(14 \(f(margin.top + plotHeight / 2))) rotate(-90)\" text-anchor=\"middle\">\(escape(yLabel))</text>"
        return out
    }

    /// A tick label without trailing zeros: 0.005, 2, 2000.
    func label(_ value: Double) -> String { String(format: "%g", value) }

    func legend(_ entries: [(String, String)]) -> String {
        var out = ""
        var x = width - margin.right
        for (name, color) in entries.reversed() {
            x -= Double(name.count) * 6.5 + 22
            out += "<rect x=\"\(f(x))\" y=\"8\" width=\"10\" height=\"10\" fill=\"\(color)\"/>"
                + "<text x=\"\(f(x + 14))\" y=\"17\">\(escape(name))</text>"
        }
        return out
    }

    func f(_ value: Double) -> String { String(format: "%.1f", value) }
}

/// Text for XML/HTML: server-controlled strings (model names, error messages) never become markup.
/// By Unicode scalar, not by `Character`: a prepend letter (U+0D4E, U+111C2) joins the `<` after
/// it into one grapheme cluster that equals no case, and the `<` went out raw (review 127 #1).
func escape(_ text: String) -> String {
    var out = String.UnicodeScalarView()
    for scalar in text.unicodeScalars {
        switch scalar {
        case "&": out.append(contentsOf: "&amp;".unicodeScalars)
        case "<": out.append(contentsOf: "&lt;".unicodeScalars)
        case ">": out.append(contentsOf: "&gt;".unicodeScalars)
        case "\"": out.append(contentsOf: "&quot;".unicodeScalars)
        case "'": out.append(contentsOf: "&#39;".unicodeScalars)
        default: out.append(scalar)
        }
    }
    return String(out)
}
