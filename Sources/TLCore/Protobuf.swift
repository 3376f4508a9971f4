/// Protocol Buffers wire format (proto2/proto3 encoding; no schema compiler, no package):
/// enough to read and write ONNX models.
///
/// A message is a sequence of fields, each a varint key (field number << 3 | wire type) and a
/// value: wire type 0 varint, 1 fixed 64-bit, 2 length-delimited (bytes, strings, nested
/// messages, packed repeated scalars), 5 fixed 32-bit. Integers are little-endian.
public struct ProtoWriter {
    public private(set) var bytes: [UInt8] = []
    public init() {}

    mutating func varint(_ v: UInt64) {
        var v = v
        while v >= 0x80 { bytes.append(UInt8(v & 0x7F) | 0x80); v >>= 7 }
        bytes.append(UInt8(v))
    }
    mutating func key(_ field: Int, _ wire: UInt64) { varint(UInt64(field) << 3 | wire) }

    /// An int64/int32/enum/bool field (two's complement, as protobuf's int64).
    public mutating func int(_ field: Int, _ v: Int64) { key(field, 0); varint(UInt64(bitPattern: v)) }
    public mutating func float(_ field: Int, _ v: Float) {
        key(field, 5)
        withUnsafeBytes(of: v.bitPattern.littleEndian) { bytes += $0 }
    }
    public mutating func bytes(_ field: Int, _ b: UnsafeRawBufferPointer) {
        key(field, 2); varint(UInt64(b.count)); bytes += b
    }
    public mutating func string(_ field: Int, _ s: String) {
        var s = s
        s.withUTF8 { bytes(field, UnsafeRawBufferPointer($0)) }
    }
    /// A nested message built by `body`.
    public mutating func message(_ field: Int, _ body: (inout ProtoWriter) throws -> Void) rethrows {
        var inner = ProtoWriter()
        try body(&inner)
        inner.bytes.withUnsafeBytes { bytes(field, $0) }
    }
    /// A packed repeated int64 field.
    public mutating func packed(_ field: Int, _ values: [Int64]) {
        var inner = ProtoWriter()
        for v in values { inner.varint(UInt64(bitPattern: v)) }
        inner.bytes.withUnsafeBytes { bytes(field, $0) }
    }
    /// A packed repeated float field.
    public mutating func packed(_ field: Int, _ values: [Float]) {
        var inner = ProtoWriter()
        for v in values { withUnsafeBytes(of: v.bitPattern.littleEndian) { inner.bytes += $0 } }
        inner.bytes.withUnsafeBytes { bytes(field, $0) }
    }
}

/// One field of a message as read: its number and its value.
public struct ProtoField {
    public enum Value {
        case varint(UInt64)
        case fixed64(UInt64)
        case fixed32(UInt32)
        /// Bytes of a length-delimited field, without copying (a view into the message).
        case bytes(UnsafeRawBufferPointer)
    }
    public let number: Int
    public let value: Value

    public var int: Int64? { if case .varint(let v) = value { return Int64(bitPattern: v) }; return nil }
    public var float: Float? { if case .fixed32(let v) = value { return Float(bitPattern: v) }; return nil }
    public var double: Double? { if case .fixed64(let v) = value { return Double(bitPattern: v) }; return nil }
    public var data: UnsafeRawBufferPointer? { if case .bytes(let b) = value { return b }; return nil }
    public var string: String? { data.map { String(decoding: $0, as: UTF8.self) } }

    /// The int64 values of a repeated field, packed (one length-delimited field) or not.
    public var ints: [Int64] {
        switch value {
        case .varint(let v): return [Int64(bitPattern: v)]
        case .bytes(let b):
            var r = ProtoReader(b), out: [Int64] = []
            while !r.atEnd { guard let v = try? r.varint() else { break }; out.append(Int64(bitPattern: v)) }
            return out
        default: return []
        }
    }
    /// The float values of a repeated float field, packed or not.
    public var floats: [Float] {
        switch value {
        case .fixed32(let v): return [Float(bitPattern: v)]
        case .bytes(let b): return (0..<(b.count / 4)).map { Float(bitPattern: UInt32(littleEndian: b.loadUnaligned(fromByteOffset: $0 * 4, as: UInt32.self))) }
        default: return []
        }
    }
}

/// Reads the fields of one message from a buffer that the caller keeps alive. Malformed input
/// (a truncated varint or field, an unknown wire type) is a data error, never a crash.
public struct ProtoReader {
    let buf: UnsafeRawBufferPointer
    var pos = 0
    public init(_ buf: UnsafeRawBufferPointer) { self.buf = buf }
    public var atEnd: Bool { pos >= buf.count }

    mutating func varint() throws -> UInt64 {
        var v: UInt64 = 0, shift: UInt64 = 0
        while true {
            guard pos < buf.count else { throw TLError.data("protobuf: truncated varint at byte \(pos)") }
            let b = buf[pos]; pos += 1
            guard shift < 64 else { throw TLError.data("protobuf: varint longer than 10 bytes at byte \(pos)") }
            v |= UInt64(b & 0x7F) << shift
            if b < 0x80 { return v }
            shift += 7
        }
    }

    /// The next field, or nil at the end of the message.
    public mutating func next() throws -> ProtoField? {
        guard !atEnd else { return nil }
        let k = try varint()
        let number = Int(k >> 3)
        guard number > 0 else { throw TLError.data("protobuf: field number 0 at byte \(pos)") }
        func need(_ n: Int) throws {
            guard n >= 0, n <= buf.count - pos else { throw TLError.data("protobuf: field \(number) runs past the end (byte \(pos), \(n) bytes)") }
        }
        switch k & 7 {
        case 0: return ProtoField(number: number, value: .varint(try varint()))
        case 1:
            try need(8); defer { pos += 8 }
            return ProtoField(number: number, value: .fixed64(UInt64(littleEndian: buf.loadUnaligned(fromByteOffset: pos, as: UInt64.self))))
        case 5:
            try need(4); defer { pos += 4 }
            return ProtoField(number: number, value: .fixed32(UInt32(littleEndian: buf.loadUnaligned(fromByteOffset: pos, as: UInt32.self))))
        case 2:
            let n = try varint()
            guard n <= UInt64(Int.max) else { throw TLError.data("protobuf: absurd length at byte \(pos)") }
            try need(Int(n))
            defer { pos += Int(n) }
            return ProtoField(number: number, value: .bytes(UnsafeRawBufferPointer(rebasing: buf[pos..<(pos + Int(n))])))
        case let w: throw TLError.data("protobuf: unsupported wire type \(w) (field \(number), byte \(pos))")
        }
    }

    /// All fields, in order.
    public mutating func fields() throws -> [ProtoField] {
        var out: [ProtoField] = []
        while let f = try next() { out.append(f) }
        return out
    }
}
