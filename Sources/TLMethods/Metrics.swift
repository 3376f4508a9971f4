import TLCore

/// Classification metrics from (label, prediction) pairs: accuracy, per-class precision,
/// recall, F1 and support, macro-F1 and the confusion matrix; top-k accuracy from scores.
///
/// Conventions (scikit-learn's): precision of a class never predicted, recall of a class with
/// no examples, and F1 when precision + recall = 0 are 0. Macro-F1 is the unweighted mean of
/// the per-class F1 over the classes that occur as labels or predictions.
public struct ClassificationReport {
    public let classes: Int
    /// counts[t · classes + p]: examples of true class t predicted as p.
    public private(set) var counts: [Int]
    public private(set) var total = 0
    /// Top-k hits for each k asked for.
    public private(set) var topHits: [Int: Int] = [:]

    public init(classes: Int, topK: [Int] = []) {
        self.classes = classes
        counts = [Int](repeating: 0, count: classes * classes)
        for k in topK { topHits[k] = 0 }
    }

    public mutating func add(label: Int, prediction: Int) {
        counts[label * classes + prediction] += 1; total += 1
    }

    /// Adds an example whose classes are ranked best first (at least the largest k asked
    /// for): the prediction is the first, and top-k counts a hit when the label is among the
    /// first k.
    public mutating func add(label: Int, ranked: ArraySlice<Int32>) {
        add(label: label, prediction: Int(ranked.first!))
        for k in topHits.keys where ranked.prefix(k).contains(Int32(label)) { topHits[k]! += 1 }
    }

    /// The `k` best classes of each row of scores [rows, classes] (higher is better; ties go to
    /// the lower index), appended to `out`.
    public static func rank(rows: Int, classes: Int, scores: UnsafePointer<Float>, k: Int, into out: inout [Int32]) {
        let k = min(max(k, 1), classes)
        var best = [Int32](repeating: 0, count: k)
        for i in 0..<rows {
            let s = scores + i * classes
            var n = 0
            for j in 0..<classes {
                // Insert j into the sorted top list if it beats the last entry.
                if n == k && !(s[j] > s[Int(best[k - 1])]) { continue }
                var pos = min(n, k - 1)
                while pos > 0 && s[j] > s[Int(best[pos - 1])] { best[pos] = best[pos - 1]; pos -= 1 }
                best[pos] = Int32(j)
                if n < k { n += 1 }
            }
            out += best
        }
    }

    public func count(_ t: Int, _ p: Int) -> Int { counts[t * classes + p] }
    public var correct: Int { (0..<classes).reduce(0) { $0 + count($1, $1) } }
    public var accuracy: Double { total == 0 ? 0 : Double(correct) / Double(total) }
    public func topK(_ k: Int) -> Double? { topHits[k].map { total == 0 ? 0 : Double($0) / Double(total) } }
    public func support(_ c: Int) -> Int { (0..<classes).reduce(0) { $0 + count(c, $1) } }
    public func predicted(_ c: Int) -> Int { (0..<classes).reduce(0) { $0 + count($1, c) } }
    public func precision(_ c: Int) -> Double { predicted(c) == 0 ? 0 : Double(count(c, c)) / Double(predicted(c)) }
    public func recall(_ c: Int) -> Double { support(c) == 0 ? 0 : Double(count(c, c)) / Double(support(c)) }
    public func f1(_ c: Int) -> Double {
        let p = precision(c), r = recall(c)
        return p + r == 0 ? 0 : 2 * p * r / (p + r)
    }
    /// Classes that occur as a label or a prediction.
    public var present: [Int] { (0..<classes).filter { support($0) > 0 || predicted($0) > 0 } }
    public var macroF1: Double {
        let p = present
        return p.isEmpty ? 0 : p.reduce(0.0) { $0 + f1($1) } / Double(p.count)
    }
}
