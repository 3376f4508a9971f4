/// ONNX models read with tl's own protobuf reader (no protobuf package): the messages an image
/// CNN uses. Field numbers are onnx.proto's. What is not understood is rejected with a data
/// error naming it, never guessed.
public enum ONNX {
    /// A dimension of a declared shape: a number, a named symbol (the batch), or unknown.
    public enum Dim: Equatable, Sendable { case value(Int), param(String), unknown }

    public struct ValueInfo: Sendable {
        public var name: String
        public var elemType: Int
        /// nil when the shape is not declared.
        public var dims: [Dim]?
    }

    public enum Attribute {
        case int(Int), ints([Int]), float(Float), floats([Float]), string(String), strings([String]), tensor(Tensor)
        case graph   // subgraphs (If, Loop) are not supported; kept only to name them in errors

        public var int: Int? { if case .int(let v) = self { return v }; return nil }
        public var ints: [Int]? {
            switch self { case .ints(let v): return v; case .int(let v): return [v]; default: return nil }
        }
        public var float: Float? {
            switch self { case .float(let v): return v; case .int(let v): return Float(v); default: return nil }
        }
        public var floats: [Float]? { if case .floats(let v) = self { return v }; return nil }
        public var string: String? { if case .string(let v) = self { return v }; return nil }
        public var tensor: Tensor? { if case .tensor(let v) = self { return v }; return nil }
    }

    public struct Node {
        public var name: String
        public var opType: String
        public var domain: String
        public var inputs: [String]
        public var outputs: [String]
        public var attributes: [String: Attribute]
    }

    public struct Graph {
        public var name: String
        public var nodes: [Node]
        /// Initializers in file order, and by name.
        public var initializerNames: [String]
        public var initializers: [String: Tensor]
        public var inputs: [ValueInfo]
        public var outputs: [ValueInfo]
    }

    public struct Model {
        public var irVersion: Int
        /// The ai.onnx (default domain) opset the model imports.
        public var opset: Int
        public var producer: String
        public var graph: Graph
    }

    // MARK: reading

    /// Parses a serialized ModelProto.
    public static func model(_ bytes: UnsafeRawBufferPointer) throws -> Model {
        var r = ProtoReader(bytes)
        var ir = 0, opset: Int? = nil, producer = "", graph: Graph? = nil
        while let f = try r.next() {
            switch f.number {
            case 1: ir = Int(f.int ?? 0)
            case 2: producer = f.string ?? ""
            case 7:
                guard let d = f.data else { throw TLError.data("onnx: graph is not a message") }
                graph = try self.graph(d)
            case 8:
                guard let d = f.data else { continue }
                var o = ProtoReader(d)
                var domain = "", version = 0
                while let g = try o.next() {
                    if g.number == 1 { domain = g.string ?? "" }
                    if g.number == 2 { version = Int(g.int ?? 0) }
                }
                if domain == "" || domain == "ai.onnx" { opset = version }
            default: continue
            }
        }
        guard let g = graph else { throw TLError.data("onnx: no graph (is this an ONNX model?)") }
        guard let o = opset else { throw TLError.data("onnx: the model imports no ai.onnx opset") }
        return Model(irVersion: ir, opset: o, producer: producer, graph: g)
    }

    static func graph(_ bytes: UnsafeRawBufferPointer) throws -> Graph {
        var r = ProtoReader(bytes)
        var g = Graph(name: "", nodes: [], initializerNames: [], initializers: [:], inputs: [], outputs: [])
        while let f = try r.next() {
            guard let d = f.data else { continue }
            switch f.number {
            case 1: g.nodes.append(try node(d))
            case 2: g.name = f.string ?? ""
            case 5:
                let (name, t) = try tensor(d)
                guard !name.isEmpty else { throw TLError.data("onnx: an initializer has no name") }
                if g.initializers[name] == nil { g.initializerNames.append(name) }
                g.initializers[name] = t
            case 15: throw TLError.data("onnx: sparse initializers are not supported")
            case 11: g.inputs.append(try valueInfo(d))
            case 12: g.outputs.append(try valueInfo(d))
            default: continue
            }
        }
        return g
    }

    static func node(_ bytes: UnsafeRawBufferPointer) throws -> Node {
        var r = ProtoReader(bytes)
        var n = Node(name: "", opType: "", domain: "", inputs: [], outputs: [], attributes: [:])
        while let f = try r.next() {
            switch f.number {
            case 1: n.inputs.append(f.string ?? "")
            case 2: n.outputs.append(f.string ?? "")
            case 3: n.name = f.string ?? ""
            case 4: n.opType = f.string ?? ""
            case 7: n.domain = f.string ?? ""
            case 5:
                guard let d = f.data else { continue }
                let (k, v) = try attribute(d, node: n.name)
                n.attributes[k] = v
            default: continue
            }
        }
        return n
    }

    static func attribute(_ bytes: UnsafeRawBufferPointer, node: String) throws -> (String, Attribute) {
        var r = ProtoReader(bytes)
        var name = "", type = 0
        var i: Int64? = nil, fl: Float? = nil, s: String? = nil, t: Tensor? = nil
        var ints: [Int64] = [], floats: [Float] = [], strings: [String] = [], hasGraph = false
        while let f = try r.next() {
            switch f.number {
            case 1: name = f.string ?? ""
            case 20: type = Int(f.int ?? 0)
            case 2: fl = f.float
            case 3: i = f.int
            case 4: s = f.string
            case 5: if let d = f.data { t = try tensor(d).1 }
            case 6, 11: hasGraph = true
            case 7: floats += f.floats
            case 8: ints += f.ints
            case 9: if let v = f.string { strings.append(v) }
            default: continue
            }
        }
        // The type field decides (IR ≥ 2); older files are inferred from what is set.
        switch type {
        case 1: return (name, .float(fl ?? 0))
        case 2: return (name, .int(Int(i ?? 0)))
        case 3: return (name, .string(s ?? ""))
        case 4:
            guard let t = t else { throw TLError.data("onnx: attribute '\(name)' of node '\(node)' has no tensor") }
            return (name, .tensor(t))
        case 5, 10: return (name, .graph)
        case 6: return (name, .floats(floats))
        case 7: return (name, .ints(ints.map { Int($0) }))
        case 8: return (name, .strings(strings))
        case 0:
            if let v = fl { return (name, .float(v)) }
            if let v = i { return (name, .int(Int(v))) }
            if let v = s { return (name, .string(v)) }
            if let v = t { return (name, .tensor(v)) }
            if !floats.isEmpty { return (name, .floats(floats)) }
            if !ints.isEmpty { return (name, .ints(ints.map { Int($0) })) }
            if hasGraph { return (name, .graph) }
            return (name, .ints([]))
        default:
            throw TLError.data("onnx: attribute '\(name)' of node '\(node)' has type \(type), which tl does not read")
        }
    }

    static func valueInfo(_ bytes: UnsafeRawBufferPointer) throws -> ValueInfo {
        var r = ProtoReader(bytes)
        var v = ValueInfo(name: "", elemType: 0, dims: nil)
        while let f = try r.next() {
            if f.number == 1 { v.name = f.string ?? "" }
            guard f.number == 2, let tp = f.data else { continue }
            var rt = ProtoReader(tp)
            while let g = try rt.next() {
                guard g.number == 1, let tt = g.data else { continue }   // tensor_type
                var rr = ProtoReader(tt)
                while let h = try rr.next() {
                    if h.number == 1 { v.elemType = Int(h.int ?? 0) }
                    guard h.number == 2, let sh = h.data else { continue }
                    var dims: [Dim] = []
                    var rs = ProtoReader(sh)
                    while let d = try rs.next() {
                        guard d.number == 1, let dd = d.data else { continue }
                        var rd = ProtoReader(dd)
                        var dim = Dim.unknown
                        while let e = try rd.next() {
                            if e.number == 1, let x = e.int { dim = .value(Int(x)) }
                            if e.number == 2, let p = e.string { dim = .param(p) }
                        }
                        dims.append(dim)
                    }
                    v.dims = dims
                }
            }
        }
        return v
    }

    /// The tl dtype of an ONNX TensorProto data type, or nil.
    public static func dtype(_ code: Int) -> DType? {
        switch code {
        case 1: return .f32
        case 2: return .u8
        case 3: return .i8
        case 4: return .u16
        case 5: return .i16
        case 6: return .i32
        case 7: return .i64
        case 9: return .bool
        case 10: return .f16
        case 11: return .f64
        case 12: return .u32
        case 13: return .u64
        case 16: return .bf16
        default: return nil
        }
    }

    /// Decodes a TensorProto: its name and values (one copy of the data, aligned).
    public static func tensor(_ bytes: UnsafeRawBufferPointer) throws -> (String, Tensor) {
        var r = ProtoReader(bytes)
        var dims: [Int] = [], code = 0, name = ""
        var raw: UnsafeRawBufferPointer? = nil
        var floats: [Float] = [], int32s: [Int64] = [], int64s: [Int64] = [], doubles: [Double] = [], uint64s: [Int64] = []
        var external = false
        while let f = try r.next() {
            switch f.number {
            case 1: dims += f.ints.map { Int($0) }
            case 2: code = Int(f.int ?? 0)
            case 4: floats += f.floats
            case 5: int32s += f.ints
            case 7: int64s += f.ints
            case 8: name = f.string ?? ""
            case 9: raw = f.data
            case 10:
                if let d = f.data { doubles += (0..<(d.count / 8)).map { Double(bitPattern: UInt64(littleEndian: d.loadUnaligned(fromByteOffset: $0 * 8, as: UInt64.self))) } }
                else if let v = f.double { doubles.append(v) }
            case 11: uint64s += f.ints
            case 13: external = true
            case 14: if f.int == 1 { external = true }
            case 3: throw TLError.data("onnx: tensor '\(name)' is stored in segments, which tl does not read")
            default: continue
            }
        }
        guard !external else { throw TLError.data("onnx: tensor '\(name)' keeps its data in an external file, which tl does not read") }
        guard let dt = dtype(code) else { throw TLError.data("onnx: tensor '\(name)' has data type \(code), which tl does not read") }
        let t = try Tensor(zeros: dt, shape: dims)
        let n = t.count
        func mismatch(_ have: Int) -> TLError { TLError.data("onnx: tensor '\(name)' has \(have) values for shape \(shapeString(dims))") }
        if let raw = raw {
            guard raw.count == t.byteCount else { throw TLError.data("onnx: tensor '\(name)' has \(raw.count) bytes of raw data for \(dt.shortName) \(shapeString(dims))") }
            if raw.count > 0 { t.rawPointer.copyMemory(from: raw.baseAddress!, byteCount: raw.count) }
        } else if n == 0 {
            // empty
        } else {
            switch dt {
            case .f32:
                guard floats.count == n else { throw mismatch(floats.count) }
                for i in 0..<n { t.rawPointer.storeBytes(of: floats[i], toByteOffset: 4 * i, as: Float.self) }
            case .f64:
                guard doubles.count == n else { throw mismatch(doubles.count) }
                for i in 0..<n { t.rawPointer.storeBytes(of: doubles[i], toByteOffset: 8 * i, as: Double.self) }
            case .i64:
                guard int64s.count == n else { throw mismatch(int64s.count) }
                for i in 0..<n { t.rawPointer.storeBytes(of: int64s[i], toByteOffset: 8 * i, as: Int64.self) }
            case .u32, .u64:
                guard uint64s.count == n else { throw mismatch(uint64s.count) }
                for i in 0..<n { try t.setInteger(uint64s[i], at: i) }
            case .f16, .bf16:
                guard int32s.count == n else { throw mismatch(int32s.count) }
                for i in 0..<n { t.rawPointer.storeBytes(of: UInt16(truncatingIfNeeded: int32s[i]), toByteOffset: 2 * i, as: UInt16.self) }
            default:   // int32, int16, int8, uint16, uint8, bool: int32_data
                guard int32s.count == n else { throw mismatch(int32s.count) }
                for i in 0..<n { try t.setInteger(int32s[i], at: i) }
            }
        }
        return (name, t)
    }
}
