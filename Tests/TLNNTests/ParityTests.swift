import XCTest
@testable import TLCore
@testable import TLNN

/// max |got − want| / max |want|: the error relative to the output's scale (the measure).
func scaledError(_ got: Tensor, _ want: Tensor) throws -> Double {
    let g = try got.converted(to: .f64), w = try want.converted(to: .f64)
    precondition(g.count == w.count)
    var e = 0.0, s = 0.0
    for i in 0..<g.count { e = max(e, abs(g.double(at: i) - w.double(at: i))); s = max(s, abs(w.double(at: i))) }
    return e / max(s, 1e-30)
}

func loadTensor(_ path: String) throws -> Tensor {
    if path.hasSuffix(".pb") { return try fileBytes(path).withUnsafeBytes { try ONNX.tensor($0).1 } }
    let set = try readAll(try openRecords(path))
    return set.tensors[set.names[0]]!
}

/// Networks trained or exported elsewhere give the numbers their framework gives.
final class ParityTests: XCTestCase {
    func models() throws -> String {
        guard let s = nnShared else { throw XCTSkip("../shared is absent: no reference networks to compare with") }
        return s + "/models"
    }

    /// PyTorch's LeNet-5 and a bigger CNN trained on Fashion-MNIST, as ONNX: logits and the
    /// penultimate features (the default cut) for 1,000 test images within 1e-4.
    func testPyTorchFashionMNISTNetworks() throws {
        let dir = try models() + "/pytorch-fmnist"
        let x = try loadTensor(dir + "/fmnist_test1000_input.npy")
        for stem in ["fmnist_lenet", "fmnist_bigcnn"] {
            let net = try Network.importONNX("\(dir)/\(stem).onnx")
            let ctx = Context(training: false, threads: 2)
            let logits = try net.forward(x, ctx)
            XCTAssertLessThan(try scaledError(logits, try loadTensor("\(dir)/\(stem)_test1000_logits.npy")), 1e-4, stem)
            let cut = try net.cut(layer: nil, activation: true)
            let feats = try net.forward(x, to: cut, ctx)
            XCTAssertLessThan(try scaledError(feats, try loadTensor("\(dir)/\(stem)_test1000_features.npy")), 1e-4, "\(stem) features at \(cut.layer)")
            // Saved as a tl model and loaded again: the same bits (on the first 100 images).
            let few = x.rows(0..<100), fewLogits = logits.rows(0..<100).copy()
            let path = tempDirectory() + "/m.tlm"
            try net.save(path, producer: "test")
            let back = try Network.load(path).0
            XCTAssertTrue(try back.forward(few, ctx).bitwiseEqual(fewLogits), "\(stem) reloaded")
            // And exported to ONNX, imported again.
            let onnx = tempDirectory() + "/m.onnx"
            try writeBytes(onnx, try ONNXExport.model(net, producer: "test", version: "0"))
            XCTAssertLessThan(try scaledError(try Network.importONNX(onnx).forward(few, ctx), fewLogits), 1e-6, "\(stem) re-imported")
        }
    }

    /// An ImageNet-trained EfficientNet-Lite0 (asymmetric SAME pads, ReLU6 as Clip with inputs):
    /// its 1280 features and 1000 logits within 1e-4 and the expected top-5 classes.
    func testEfficientNetLite0() throws {
        let dir = try models() + "/efficientnet-lite0-imagenet"
        let net = try Network.importONNX(dir + "/efficientnet_lite0_imagenet.onnx")
        XCTAssertEqual(net.input.shape, [3, 224, 224])
        let expected: [[Int]] = [[698, 442, 975, 663, 483], [985, 309, 108, 947, 996]]
        for (k, set) in ["test_data_set_0", "test_data_set_1"].enumerated() {
            let x = try loadTensor("\(dir)/\(set)/input_0.pb")
            let ctx = Context(training: false, threads: 2)
            let logits = try net.forward(x, ctx)
            XCTAssertLessThan(try scaledError(logits, try loadTensor("\(dir)/\(set)/output_1.pb")), 1e-4, "\(set) logits")
            let feats = try net.forward(x, to: try net.cut(layer: nil, activation: true), ctx)
            XCTAssertLessThan(try scaledError(feats, try loadTensor("\(dir)/\(set)/output_0.pb")), 1e-4, "\(set) features")
            let top = (0..<1000).sorted { logits.f32[$0] > logits.f32[$1] }.prefix(5)
            XCTAssertEqual(Array(top), expected[k], set)
        }
    }
}

func tempDirectory() -> String {
    var t = Array("/tmp/tl-nn-test-XXXXXX".utf8CString)
    return t.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)!) }
}

func writeBytes(_ path: String, _ bytes: [UInt8]) throws {
    let o = try Output(path)
    try o.write(bytes)
    try o.commit()
}
