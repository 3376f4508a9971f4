/// Element access and dtype conversion.
///
/// Conversion rules (documented in tl-tensor(1)): float to float rounds to nearest even;
/// float to integer requires an integral value in range (3.0 -> 3; 3.5, NaN or out-of-range
/// values are a data error naming the element); integer to float is exact up to the target's
/// precision; BOOL reads as 0/1 and accepts only 0 or 1.

@inline(__always) func bf16ToFloat(_ b: UInt16) -> Float { Float(bitPattern: UInt32(b) << 16) }

/// Float -> bfloat16, round to nearest even; NaN stays a (quiet) NaN.
@inline(__always) func floatToBF16(_ f: Float) -> UInt16 {
    let u = f.bitPattern
    if f.isNaN { return UInt16(truncatingIfNeeded: u >> 16) | 0x0040 }
    let rounding = UInt32(0x7FFF) + ((u >> 16) & 1)
    return UInt16(truncatingIfNeeded: (u &+ rounding) >> 16)
}

extension Tensor {
    /// Element `i` (flat index) as a Double.
    @inlinable
    public func double(at i: Int) -> Double {
        let p = UnsafeRawPointer(rawPointer)
        switch dtype {
        case .f64: return p.loadUnaligned(fromByteOffset: i * 8, as: Double.self)
        case .f32: return Double(p.loadUnaligned(fromByteOffset: i * 4, as: Float.self))
        case .f16: return Double(p.loadUnaligned(fromByteOffset: i * 2, as: Float16.self))
        case .bf16: return Double(Float(bitPattern: UInt32(p.loadUnaligned(fromByteOffset: i * 2, as: UInt16.self)) << 16))
        case .i64: return Double(p.loadUnaligned(fromByteOffset: i * 8, as: Int64.self))
        case .i32: return Double(p.loadUnaligned(fromByteOffset: i * 4, as: Int32.self))
        case .i16: return Double(p.loadUnaligned(fromByteOffset: i * 2, as: Int16.self))
        case .i8: return Double(p.loadUnaligned(fromByteOffset: i, as: Int8.self))
        case .u64: return Double(p.loadUnaligned(fromByteOffset: i * 8, as: UInt64.self))
        case .u32: return Double(p.loadUnaligned(fromByteOffset: i * 4, as: UInt32.self))
        case .u16: return Double(p.loadUnaligned(fromByteOffset: i * 2, as: UInt16.self))
        case .u8, .bool: return Double(p.loadUnaligned(fromByteOffset: i, as: UInt8.self))
        }
    }

    /// Element `i` as an Int64 when the dtype is an integer type (exact for every integer dtype
    /// but U64 above Int64.max, which returns nil), or a float holding an integral value.
    public func int64(at i: Int) -> Int64? {
        let p = UnsafeRawPointer(rawPointer)
        switch dtype {
        case .i64: return p.loadUnaligned(fromByteOffset: i * 8, as: Int64.self)
        case .u64: return Int64(exactly: p.loadUnaligned(fromByteOffset: i * 8, as: UInt64.self))
        default:
            let d = double(at: i)
            guard d.rounded() == d, d >= -9.2e18, d <= 9.2e18 else { return nil }
            return Int64(d)
        }
    }

    /// Stores `v` into element `i`. Throws a data error if `v` does not fit the dtype exactly
    /// (for integer dtypes) or is not 0/1 (BOOL).
    public func set(_ v: Double, at i: Int) throws {
        let p = rawPointer
        func int<T: FixedWidthInteger>(_: T.Type) throws -> T {
            guard let x = T(exactly: v) else {
                throw TLError.data("element \(i): value \(v) does not fit in \(dtype.shortName)")
            }
            return x
        }
        switch dtype {
        case .f64: p.storeBytes(of: v, toByteOffset: i * 8, as: Double.self)
        case .f32: p.storeBytes(of: Float(v), toByteOffset: i * 4, as: Float.self)
        case .f16: p.storeBytes(of: Float16(Float(v)), toByteOffset: i * 2, as: Float16.self)
        case .bf16: p.storeBytes(of: floatToBF16(Float(v)), toByteOffset: i * 2, as: UInt16.self)
        case .i64: p.storeBytes(of: try int(Int64.self), toByteOffset: i * 8, as: Int64.self)
        case .i32: p.storeBytes(of: try int(Int32.self), toByteOffset: i * 4, as: Int32.self)
        case .i16: p.storeBytes(of: try int(Int16.self), toByteOffset: i * 2, as: Int16.self)
        case .i8: p.storeBytes(of: try int(Int8.self), toByteOffset: i, as: Int8.self)
        case .u64: p.storeBytes(of: try int(UInt64.self), toByteOffset: i * 8, as: UInt64.self)
        case .u32: p.storeBytes(of: try int(UInt32.self), toByteOffset: i * 4, as: UInt32.self)
        case .u16: p.storeBytes(of: try int(UInt16.self), toByteOffset: i * 2, as: UInt16.self)
        case .u8: p.storeBytes(of: try int(UInt8.self), toByteOffset: i, as: UInt8.self)
        case .bool:
            guard v == 0 || v == 1 else { throw TLError.data("element \(i): value \(v) is not a boolean (0 or 1)") }
            p.storeBytes(of: UInt8(v), toByteOffset: i, as: UInt8.self)
        }
    }

    /// Stores the integer `v` into element `i` of an integer or BOOL tensor, range-checked.
    public func setInteger(_ v: Int64, at i: Int) throws {
        let p = rawPointer
        func int<T: FixedWidthInteger>(_: T.Type) throws -> T {
            guard let x = T(exactly: v) else {
                throw TLError.data("element \(i): value \(v) does not fit in \(dtype.shortName)")
            }
            return x
        }
        switch dtype {
        case .i64: p.storeBytes(of: v, toByteOffset: i * 8, as: Int64.self)
        case .i32: p.storeBytes(of: try int(Int32.self), toByteOffset: i * 4, as: Int32.self)
        case .i16: p.storeBytes(of: try int(Int16.self), toByteOffset: i * 2, as: Int16.self)
        case .i8: p.storeBytes(of: try int(Int8.self), toByteOffset: i, as: Int8.self)
        case .u64: p.storeBytes(of: try int(UInt64.self), toByteOffset: i * 8, as: UInt64.self)
        case .u32: p.storeBytes(of: try int(UInt32.self), toByteOffset: i * 4, as: UInt32.self)
        case .u16: p.storeBytes(of: try int(UInt16.self), toByteOffset: i * 2, as: UInt16.self)
        case .u8: p.storeBytes(of: try int(UInt8.self), toByteOffset: i, as: UInt8.self)
        default: try set(Double(v), at: i)
        }
    }

    /// This tensor converted to `to` (a new buffer; the same view when the dtype already matches).
    public func converted(to: DType) throws -> Tensor {
        if to == dtype { return self }
        let out = try Tensor(zeros: to, shape: shape)
        let n = count
        // Fast paths for the conversions pipelines use all the time.
        switch (dtype, to) {
        case (.u8, .f32):
            let s = UnsafeRawPointer(rawPointer).assumingMemoryBound(to: UInt8.self)
            let d = out.rawPointer.assumingMemoryBound(to: Float.self)
            for i in 0..<n { d[i] = Float(s[i]) }
        case (.f32, .f16):
            let s = UnsafeRawPointer(rawPointer).assumingMemoryBound(to: Float.self)
            let d = out.rawPointer.assumingMemoryBound(to: Float16.self)
            for i in 0..<n { d[i] = Float16(s[i]) }
        case (.f16, .f32):
            let s = UnsafeRawPointer(rawPointer).assumingMemoryBound(to: Float16.self)
            let d = out.rawPointer.assumingMemoryBound(to: Float.self)
            for i in 0..<n { d[i] = Float(s[i]) }
        case (.f32, .bf16):
            let s = UnsafeRawPointer(rawPointer).assumingMemoryBound(to: Float.self)
            let d = out.rawPointer.assumingMemoryBound(to: UInt16.self)
            for i in 0..<n { d[i] = floatToBF16(s[i]) }
        case (.f32, .f64):
            let s = UnsafeRawPointer(rawPointer).assumingMemoryBound(to: Float.self)
            let d = out.rawPointer.assumingMemoryBound(to: Double.self)
            for i in 0..<n { d[i] = Double(s[i]) }
        case (.f64, .f32):
            let s = UnsafeRawPointer(rawPointer).assumingMemoryBound(to: Double.self)
            let d = out.rawPointer.assumingMemoryBound(to: Float.self)
            for i in 0..<n { d[i] = Float(s[i]) }
        default:
            if to.isFloat {
                for i in 0..<n { try out.set(double(at: i), at: i) }
            } else if !dtype.isFloat && dtype != .u64 && to != .u64 {
                // Integer to integer through Int64: exact, range-checked.
                for i in 0..<n { try out.setInteger(int64(at: i)!, at: i) }
            } else {
                for i in 0..<n {
                    let v = double(at: i)
                    guard v.isFinite else { throw TLError.data("element \(i): \(v) cannot become \(to.shortName)") }
                    try out.set(v, at: i)
                }
            }
        }
        return out
    }
}
