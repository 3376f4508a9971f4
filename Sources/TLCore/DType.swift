/// Element types of tl tensors. The raw values are the names written in tl-format(5) records,
/// which are safetensors' names, so exported weights need no renaming.
public enum DType: String, CaseIterable, Sendable {
    case f64 = "F64", f32 = "F32", f16 = "F16", bf16 = "BF16"
    case i64 = "I64", i32 = "I32", i16 = "I16", i8 = "I8"
    case u64 = "U64", u32 = "U32", u16 = "U16", u8 = "U8"
    case bool = "BOOL"

    public var size: Int {
        switch self {
        case .f64, .i64, .u64: return 8
        case .f32, .i32, .u32: return 4
        case .f16, .bf16, .i16, .u16: return 2
        case .i8, .u8, .bool: return 1
        }
    }
    public var isFloat: Bool { self == .f64 || self == .f32 || self == .f16 || self == .bf16 }
    public var isInteger: Bool { !isFloat && self != .bool }

    /// Lower-case short name used on command lines: f32, u8, bf16, bool.
    public var shortName: String { rawValue.lowercased() }

    /// Parses "f32", "F32", "float32", "uint8", ... .
    public init?(name: String) {
        let n = name.lowercased()
        let aliases: [String: DType] = [
            "float64": .f64, "double": .f64, "float32": .f32, "float": .f32, "float16": .f16,
            "half": .f16, "bfloat16": .bf16, "int64": .i64, "int32": .i32, "int16": .i16,
            "int8": .i8, "uint64": .u64, "uint32": .u32, "uint16": .u16, "uint8": .u8,
        ]
        if let d = DType(rawValue: n.uppercased()) { self = d } else if let d = aliases[n] { self = d } else { return nil }
    }

    /// NumPy's `descr` for this dtype (little-endian), and the reverse.
    public var numpyDescr: String {
        switch self {
        case .f64: return "<f8"; case .f32: return "<f4"; case .f16: return "<f2"
        case .bf16: return "<u2"  // numpy has no bfloat16: bit patterns as uint16 (see tl-format(5))
        case .i64: return "<i8"; case .i32: return "<i4"; case .i16: return "<i2"; case .i8: return "|i1"
        case .u64: return "<u8"; case .u32: return "<u4"; case .u16: return "<u2"; case .u8: return "|u1"
        case .bool: return "|b1"
        }
    }

    public init?(numpyDescr d: String) {
        guard d.count == 3 else { return nil }
        let order = d.first!, code = String(d.dropFirst())
        // Single-byte types carry "|"; multi-byte must be little-endian ("<") or native ("=" on x86).
        let table: [String: DType] = [
            "f8": .f64, "f4": .f32, "f2": .f16, "i8": .i64, "i4": .i32, "i2": .i16, "i1": .i8,
            "u8": .u64, "u4": .u32, "u2": .u16, "u1": .u8, "b1": .bool,
        ]
        guard let t = table[code] else { return nil }
        if t.size == 1 { guard order == "|" || order == "<" || order == "=" || order == ">" else { return nil } }
        else { guard order == "<" || order == "=" else { return nil } }
        self = t
    }
}
