import Glibc
import TLCore


/// The progress line on stderr: count (of total), rate and ETA, redrawn at most 4 times a second.
/// Shown when stderr is a terminal or `--progress` was given; never with `-q`.
public final class Progress {
    let label: String
    let unit: String
    let total: Int?
    let start = monotonicSeconds()
    var last = 0.0
    public private(set) var count = 0
    /// Shown after the count and rate (e.g. "epoch 2/5, loss 0.4312").
    public var detail = ""
    var shown = false
    let enabled: Bool

    public init(_ label: String, total: Int? = nil, unit: String = "rows") {
        self.label = label; self.total = total; self.unit = unit; enabled = Session.progress
    }

    public func advance(_ n: Int) {
        count += n
        guard enabled else { return }
        let now = monotonicSeconds()
        if now - last >= 0.25 { last = now; draw(now) }
    }

    func draw(_ now: Double) {
        let dt = max(now - start, 1e-9)
        let rate = Double(count) / dt
        var s = "\r\(Session.command): \(label) \(count)"
        if let t = total { s += "/\(t)" }
        s += " \(unit), \(human(rate)) \(unit)/s"
        if let t = total, rate > 0, count <= t { s += ", ETA \(clock(Double(t - count) / rate))" }
        if !detail.isEmpty { s += ", " + detail }
        writeStderr(s + "\u{1B}[K")
        shown = true
    }

    /// Draws the final state and ends the line.
    public func finish() {
        guard enabled else { return }
        draw(monotonicSeconds())
        if shown { writeStderr("\n") }
    }

    func human(_ x: Double) -> String {
        if x >= 1e9 { return fixed(x / 1e9, 1) + "G" }
        if x >= 1e6 { return fixed(x / 1e6, 1) + "M" }
        if x >= 1e4 { return fixed(x / 1e3, 1) + "k" }
        return fixed(x, 0)
    }
    func clock(_ s: Double) -> String {
        let t = Int(s.rounded())
        return t >= 3600 ? "\(t / 3600):\(pad2((t / 60) % 60)):\(pad2(t % 60))" : "\(t / 60):\(pad2(t % 60))"
    }
    func pad2(_ v: Int) -> String { v < 10 ? "0\(v)" : "\(v)" }
}
