import XCTest
@testable import TLCore
@testable import TLNN
@testable import TLMethods

/// Data-parallel training: a batch cut into shards, each run on a twin of the network, gives the
/// batch's loss and gradients (up to float rounding) for every objective the trainer knows, and
/// the result depends on the shard count, never on the thread count.
final class ShardingTests: XCTestCase {
    func stack(_ arch: String, classes: Int = 4, seed: UInt64 = 11) throws -> Network {
        let n = try Network(arch: Architectures.expand(arch), input: InputSpec(shape: [1, 12, 12], mean: [0.1], std: [0.6]),
                            classes: (0..<classes).map { "c\($0)" })
        n.initialize(seed: seed)
        return n
    }
    /// Every parameter's value, copied.
    func snapshot(_ net: Network) -> [String: Tensor] {
        Dictionary(uniqueKeysWithValues: net.parameters.map { ($0.name, $0.value.copy()) })
    }
    func restore(_ net: Network, _ s: [String: Tensor]) {
        for p in net.parameters { p.value.rawPointer.copyMemory(from: s[p.name]!.rawPointer, byteCount: p.value.byteCount) }
    }

    /// Loss and gradients of `rows` with 1 shard and with `shards`, from the same weights.
    func compare(_ net: Network, _ set: TrainingSet, rows: [Int], shards: Int, objective: Objective = Objective(),
                 configure: (inout TrainConfig) -> Void = { _ in }, file: StaticString = #filePath, line: UInt = #line) throws {
        let start = snapshot(net)
        var results: [(Double, [String: [Float]])] = []
        for s in [1, shards] {
            restore(net, start)
            var cfg = TrainConfig(); cfg.threads = 2; cfg.shards = s
            configure(&cfg)
            let t = Trainer(net: net, config: cfg, set: set, objective: objective)
            XCTAssertEqual(t.shards, s, file: file, line: line)
            let r = try t.lossAndGradients(rows: rows)
            results.append((r.loss, Dictionary(uniqueKeysWithValues: net.parameters.filter { !$0.frozen }.map { ($0.name, $0.grad.floats) })))
        }
        let (l1, g1) = results[0], (ls, gs) = results[1]
        XCTAssertEqual(ls, l1, accuracy: 1e-6 * max(1, abs(l1)), "loss", file: file, line: line)
        XCTAssertEqual(Set(g1.keys), Set(gs.keys), file: file, line: line)
        for (name, a) in g1 {
            let b = gs[name]!, scale = max(a.map(abs).max() ?? 0, 1e-3)
            XCTAssertTrue(a.contains { $0 != 0 }, "\(name) has no gradient", file: file, line: line)
            let worst = zip(a, b).map { abs($0 - $1) }.max() ?? 0
            XCTAssertLessThan(worst, 1e-5 * scale, "\(name): sharded gradient differs by \(worst)", file: file, line: line)
        }
    }

    func testShardsAddUpToTheBatchForAStack() throws {
        let net = try stack("conv3x3-5,relu,maxpool2,conv3x3-6,relu,fc10,relu")
        let x = random([23, 1, 12, 12], seed: 1), y = labels(23, 4, seed: 2)
        let set = TrainingSet(LabeledData(x: x, y: y))
        // Uneven shards (23 rows in 3), label smoothing and class weights, which change the divisor.
        try compare(net, set, rows: Array((0..<23).reversed()), shards: 3) { c in
            c.labelSmoothing = 0.1; c.classWeights = [1, 2, 0.5, 3]
        }
        try compare(net, set, rows: Array(0..<16), shards: 2)
    }

    /// Learning without Forgetting (a second head distilled toward the source) plus L2-SP:
    /// distillation's mean is over the whole batch, the penalty is added once.
    func testShardsAddUpWithDistillationAndPenalty() throws {
        let src = try stack("conv3x3-5,relu,maxpool2,fc10,relu", classes: 3)
        let net = try FineTune.withSourceHead(try FineTune.transfer(src, classes: ["a", "b"], copy: nil, seed: 4), source: src)
        let x = random([18, 1, 12, 12], seed: 3), y = labels(18, 2, seed: 4)
        var obj = Objective()
        // A teacher other than the head's starting point, so distillation has a gradient.
        obj.distillation = Distillation(task: 1, teacher: try stack("conv3x3-5,relu,maxpool2,fc10,relu", classes: 3, seed: 12), lambda: 0.7, temperature: 2)
        var pen = ParameterPenalty()
        for p in net.parameters.prefix(2) { pen.anchored.append((p, p.value.copy(), 0.1)) }
        obj.penalty = pen
        try compare(net, TrainingSet(LabeledData(x: x, y: y)), rows: Array(0..<18), shards: 2, objective: obj)
    }

    /// Multitask data where each row is labeled for one task only, with task weights: each
    /// task's mean is over its labeled rows of the whole batch, whichever shard they fall in.
    func testShardsAddUpForMultitaskData() throws {
        let inputs = [(name: "x", spec: InputSpec(shape: [1, 12, 12]))]
        let net = try FineTune.multitask(arch: "conv3x3-4,relu,maxpool2,fc8,relu", inputs: inputs,
                                         tasks: [.init(name: "a", classes: ["0", "1"], input: 0), .init(name: "b", classes: ["0", "1", "2"], input: 0)],
                                         inputLayers: 0, seed: 3)
        let n = 20
        var ya = labels(n, 2, seed: 5), yb = labels(n, 3, seed: 6)
        for i in 0..<n { if i % 3 == 0 { ya[i] = -1 } else if i < 14 { yb[i] = -1 } }   // task b only in the second half
        let set = TrainingSet(parts: [.init(input: 0, x: random([n, 1, 12, 12], seed: 7), labels: [ya, yb])])
        var obj = Objective(); obj.taskWeights = [1, 0.5]
        try compare(net, set, rows: Array(0..<n), shards: 2, objective: obj)
    }

    /// Two epochs with dropout (masks keyed by seed, step and shard) on 1 and on 3 threads:
    /// the same bits.
    func testShardedTrainingDoesNotDependOnThreads() throws {
        var finals: [[UInt8]] = []
        for threads in [1, 3] {
            let net = try stack("conv3x3-5,relu,maxpool2,fc10,relu,dropout0.5")
            var cfg = TrainConfig(); cfg.epochs = 2; cfg.batch = 32; cfg.threads = threads
            let t = Trainer(net: net, config: cfg, data: LabeledData(x: random([70, 1, 12, 12], seed: 8), y: labels(70, 4, seed: 9)))
            XCTAssertEqual(t.shards, 2, "the default for a network without batch normalization")
            for _ in 0..<2 { _ = try t.trainEpoch(val: nil) { _, _ in } }
            finals.append(net.parameters.flatMap { Array($0.value.rawBytes) })
        }
        XCTAssertEqual(finals[0], finals[1])
    }

    func testBatchNormalizationTrainsInOneShard() throws {
        let bn = try stack("conv3x3-4,bn,relu,fc6,relu")
        let plain = try stack("conv3x3-4,relu,fc6,relu")
        XCTAssertEqual(Trainer.defaultShards(bn, batch: 64), 1)
        XCTAssertEqual(Trainer.defaultShards(plain, batch: 64), 2)
        XCTAssertEqual(Trainer.defaultShards(plain, batch: 16), 1, "small batches are not worth cutting")
        var cfg = TrainConfig(); cfg.shards = 2
        let t = Trainer(net: bn, config: cfg, data: LabeledData(x: random([8, 1, 12, 12], seed: 1), y: labels(8, 4, seed: 2)))
        XCTAssertThrowsError(try t.lossAndGradients(rows: Array(0..<8))) { e in XCTAssertEqual((e as? TLError)?.kind, .usage) }
    }
}
