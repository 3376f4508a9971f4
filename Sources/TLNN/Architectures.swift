import TLCore

/// Built-in architectures and the compact spec language that describes any sequential stack.
///
/// A spec is comma-separated tokens, each one layer:
///
/// | token | layer |
/// |---|---|
/// | `convKxK-C` | Conv2d, K×K kernel, C outputs, "same" padding K/2, stride 1; suffixes `-pP` padding, `-sS` stride, `-gG` groups, `-nobias` |
/// | `fcN` | Linear to N features (flattens [C,H,W] first) |
/// | `maxpoolK`, `avgpoolK` | pooling, window and stride K (`-sS` for another stride) |
/// | `gap` | global average pooling to [C] |
/// | `bn` | BatchNorm (1d or 2d from the input) |
/// | `relu`, `lrelu`, `lreluA`, `sigmoid`, `tanh`, `gelu`, `relu6` | activations |
/// | `dropoutP` | dropout with probability P (e.g. `dropout0.5`) |
/// | `flatten` | [C,H,W] → [C·H·W] |
/// | `resC`, `resC-sS` | residual basic block: conv3x3-C-sS, bn, relu, conv3x3-C, bn, + shortcut (1x1 conv + bn when the shape changes), relu |
///
/// If the spec does not end in `fcN`, a classifier `fc<classes>` is appended; if it does, N must
/// equal the number of classes. Layers are named by kind and count: `conv1`, `fc2`, `bn1`,
/// `relu3`, `pool1`, `block2` (inside: `block2.conv1`, `block2.bn1`, `block2.down.conv`).
public enum Architectures {
    public static let builtins: [(String, String, String)] = [
        ("mlp", "fc256,relu,fc128,relu", "two hidden layers of 256 and 128 units"),
        ("lenet5", "conv5x5-6-p0,relu,maxpool2,conv5x5-16-p0,relu,maxpool2,fc120,relu,fc84,relu", "LeCun et al. 1998, ReLU and max pooling (as PyTorch's tutorial)"),
        ("cnn-small", "conv3x3-32,relu,conv3x3-64,relu,maxpool2,fc128,relu", "conv3x3-32, conv3x3-64, pool, fc128"),
        ("resnet-small", "conv3x3-32-nobias,bn,relu,res32,res64-s2,res128-s2,gap", "a residual net for 28-32 px images: stem, 3 basic blocks, global pooling"),
    ]

    /// The spec of a built-in name, or the argument itself.
    public static func expand(_ arch: String) -> String {
        builtins.first { $0.0 == arch }?.1 ?? arch
    }

    /// The spec's tokens.
    public static func tokens(_ arch: String) -> [String] {
        expand(arch).split(separator: ",").map { String($0).trimmingSpaces }.filter { !$0.isEmpty }
    }

    /// Builds the network for per-sample input shape `input` and `classes` outputs. With
    /// `classifier` false, the layers of the spec only (a trunk that heads are put on).
    public static func build(_ arch: String, input: [Int], classes: Int, classifier: Bool = true) throws -> Sequential {
        var tokens = self.tokens(arch)
        guard !tokens.isEmpty else { throw TLError.usage("empty architecture '\(arch)'") }
        if !classifier {
        } else if let last = tokens.last, last.hasPrefix("fc") {
            guard let n = Int(last.dropFirst(2)) else { throw TLError.usage("architecture token '\(last)': fc needs a size") }
            if classes > 0 && n != classes {
                throw TLError.usage("architecture '\(arch)' ends in \(last), but the data has \(classes) classes")
            }
        } else {
            guard classes > 0 else { throw TLError.usage("architecture '\(arch)' needs a classifier size: the data has no classes") }
            tokens.append("fc\(classes)")
        }
        var b = Builder(shape: [1] + input)
        for t in tokens { try b.add(t) }
        return Sequential("net", b.layers)
    }

    struct Builder {
        var shape: [Int]
        var layers: [Layer] = []
        var counts: [String: Int] = [:]
        var prefix = ""
        mutating func next(_ kind: String) -> String {
            counts[kind, default: 0] += 1
            return prefix + kind + String(counts[kind]!)
        }
        mutating func push(_ l: Layer) throws {
            shape = try l.outputShape(shape)
            layers.append(l)
        }
        var channels: Int { shape.count == 4 ? shape[1] : (shape.count == 2 ? shape[1] : 0) }

        mutating func add(_ token: String) throws {
            func bad(_ why: String) -> TLError { TLError.usage("architecture token '\(token)': \(why)") }
            let parts = token.split(separator: "-").map(String.init)
            let head = parts[0]
            // suffix options
            var pad: Int? = nil, strideOpt: Int? = nil, groups = 1, bias = true
            let options: ArraySlice<String> = parts.dropFirst(head.hasPrefix("conv") ? 2 : 1)
            for opt in options {
                if opt == "nobias" { bias = false }
                else if opt.hasPrefix("p"), let v = Int(opt.dropFirst()) { pad = v }
                else if opt.hasPrefix("s"), let v = Int(opt.dropFirst()), v > 0 { strideOpt = v }
                else if opt.hasPrefix("g"), let v = Int(opt.dropFirst()), v > 0 { groups = v }
                else { throw bad("unknown option '\(opt)'") }
            }
            let stride = strideOpt ?? 1
            if head.hasPrefix("conv") {
                let k = head.dropFirst(4).split(separator: "x").compactMap { Int($0) }
                guard k.count == 2, k[0] == k[1], k[0] > 0, parts.count >= 2, let oc = Int(parts[1]), oc > 0 else { throw bad("write convKxK-C, e.g. conv3x3-32") }
                guard shape.count == 4 else { throw bad("needs [C, H, W] images, the input here is \(shapeString(Array(shape.dropFirst())))") }
                try push(Conv2d(next("conv"), shape[1], oc, kernel: k[0], stride: stride, pad: pad ?? k[0] / 2, groups: groups, bias: bias))
            } else if head.hasPrefix("fc") {
                guard let n = Int(head.dropFirst(2)), n > 0 else { throw bad("write fcN, e.g. fc128") }
                if shape.count != 2 { try push(Flatten(prefix + "flatten")) }
                try push(Linear(next("fc"), shape[1], n))
            } else if head.hasPrefix("maxpool") || head.hasPrefix("avgpool") {
                guard let k = Int(head.dropFirst(7)), k > 0 else { throw bad("write maxpoolK, e.g. maxpool2") }
                let name = next("pool")
                let st = strideOpt ?? k
                try push(Pool2d(name, head.hasPrefix("max") ? .max : .avg, kernel: k, stride: st))
            } else if head == "gap" {
                try push(GlobalAvgPool(next("gap")))
            } else if head == "flatten" {
                try push(Flatten(next("flatten")))
            } else if head == "bn" {
                try push(BatchNorm(next("bn"), channels))
            } else if let kind = activation(head) {
                try push(Activation(next(head.hasPrefix("lrelu") ? "lrelu" : head), kind))
            } else if head.hasPrefix("dropout") {
                guard let p = Float(head.dropFirst(7)), p >= 0, p < 1 else { throw bad("write dropoutP with 0 <= P < 1, e.g. dropout0.5") }
                let name = next("dropout")
                try push(Dropout(name, p: p, stream: UInt64(layers.count + 1) &* 0x1000193))
            } else if head.hasPrefix("res") {
                guard let c = Int(head.dropFirst(3)), c > 0 else { throw bad("write resC, e.g. res64 or res64-s2") }
                guard shape.count == 4 else { throw bad("needs [C, H, W] images") }
                let name = next("block")
                let inC = shape[1]
                var inner = Builder(shape: shape); inner.prefix = name + "."
                try inner.add("conv3x3-\(c)-s\(stride)-nobias"); try inner.add("bn"); try inner.add("relu")
                try inner.add("conv3x3-\(c)-nobias"); try inner.add("bn")
                var short: Sequential? = nil
                if stride != 1 || inC != c {
                    var s = Builder(shape: shape); s.prefix = name + ".down."
                    try s.push(Conv2d(name + ".down.conv", inC, c, kernel: 1, stride: stride, pad: 0, bias: false))
                    try s.push(BatchNorm(name + ".down.bn", c))
                    short = Sequential(name + ".down", s.layers)
                }
                try push(Residual(name, body: Sequential(name + ".body", inner.layers), shortcut: short, spec: token))
            } else {
                throw bad("unknown layer (see tl-train(1), ARCHITECTURES)")
            }
        }

        func activation(_ h: String) -> Activation.Kind? {
            switch h {
            case "relu": return .relu
            case "sigmoid": return .sigmoid
            case "tanh": return .tanh
            case "gelu": return .gelu
            case "relu6": return .relu6
            case "lrelu": return .leakyRelu(0.01)
            default:
                if h.hasPrefix("lrelu"), let s = Float(h.dropFirst(5)) { return .leakyRelu(s) }
                return nil
            }
        }
    }
}

extension String {
    public var trimmingSpaces: String {
        var s = Substring(self)
        while s.first == " " { s = s.dropFirst() }
        while s.last == " " { s = s.dropLast() }
        return String(s)
    }
}
