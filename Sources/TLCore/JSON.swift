/// A small JSON value type with a strict parser and a deterministic writer (compact, object keys
/// sorted by their UTF-8 bytes), so the same metadata always gives the same bytes on disk.
public enum JSON: Equatable, Sendable {
    case null
    case bool(Bool)
    case number(Double)
    case string(String)
    case array([JSON])
    case object([String: JSON])

    // MARK: access
    public subscript(key: String) -> JSON? {
        if case .object(let o) = self { return o[key] }
        return nil
    }
    public var string: String? { if case .string(let s) = self { return s }; return nil }
    public var number: Double? { if case .number(let d) = self { return d }; return nil }
    public var array: [JSON]? { if case .array(let a) = self { return a }; return nil }
    public var object: [String: JSON]? { if case .object(let o) = self { return o }; return nil }
    /// The number as an Int when it is integral and in range.
    public var int: Int? {
        guard case .number(let d) = self, d.rounded() == d, abs(d) < 9.0e15 else { return nil }
        return Int(d)
    }

    // MARK: writing
    /// Compact JSON with sorted keys. Non-finite numbers become `null` (JSON has no NaN).
    public var serialized: String {
        var out = ""
        write(to: &out)
        return out
    }

    func write(to out: inout String) {
        switch self {
        case .null: out += "null"
        case .bool(let b): out += b ? "true" : "false"
        case .number(let d):
            if !d.isFinite { out += "null" }
            else if d.rounded() == d && abs(d) < 1e15 { out += String(Int64(d)) }
            else { out += "\(d)" }
        case .string(let s): JSON.quote(s, into: &out)
        case .array(let a):
            out += "["
            for (i, v) in a.enumerated() { if i > 0 { out += "," }; v.write(to: &out) }
            out += "]"
        case .object(let o):
            out += "{"
            let keys = o.keys.sorted { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }
            for (i, k) in keys.enumerated() {
                if i > 0 { out += "," }
                JSON.quote(k, into: &out); out += ":"; o[k]!.write(to: &out)
            }
            out += "}"
        }
    }

    static func quote(_ s: String, into out: inout String) {
        out += "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if u.value < 0x20 {
                    let h = String(u.value, radix: 16)
                    out += "\\u" + String(repeating: "0", count: 4 - h.count) + h
                } else { out.unicodeScalars.append(u) }
            }
        }
        out += "\""
    }

    // MARK: parsing
    /// Parses UTF-8 JSON text. Invalid UTF-8, bad syntax, nesting deeper than 64 or trailing
    /// garbage are data errors with the byte offset.
    public static func parse(_ bytes: UnsafeRawBufferPointer) throws -> JSON {
        var p = Parser(b: bytes.bindMemory(to: UInt8.self))
        p.skipSpace()
        let v = try p.value(depth: 0)
        p.skipSpace()
        guard p.i == p.b.count else { throw p.fail("unexpected text after the JSON value") }
        return v
    }
    public static func parse(_ s: String) throws -> JSON {
        var a = Array(s.utf8)
        return try a.withUnsafeMutableBytes { try parse(UnsafeRawBufferPointer($0)) }
    }

    struct Parser {
        let b: UnsafeBufferPointer<UInt8>
        var i = 0
        init(b: UnsafeBufferPointer<UInt8>) { self.b = b }

        func fail(_ m: String) -> TLError { TLError.data("JSON byte \(i): \(m)") }

        mutating func skipSpace() {
            while i < b.count, b[i] == 0x20 || b[i] == 0x0A || b[i] == 0x0D || b[i] == 0x09 { i += 1 }
        }

        mutating func literal(_ word: String, _ v: JSON) throws -> JSON {
            for c in word.utf8 {
                guard i < b.count, b[i] == c else { throw fail("invalid literal") }
                i += 1
            }
            return v
        }

        mutating func value(depth: Int) throws -> JSON {
            guard depth < 64 else { throw fail("nesting deeper than 64") }
            guard i < b.count else { throw fail("unexpected end") }
            switch b[i] {
            case UInt8(ascii: "{"):
                i += 1
                var o: [String: JSON] = [:]
                skipSpace()
                if i < b.count, b[i] == UInt8(ascii: "}") { i += 1; return .object(o) }
                while true {
                    skipSpace()
                    guard i < b.count, b[i] == UInt8(ascii: "\"") else { throw fail("expected a string key") }
                    let k = try string()
                    skipSpace()
                    guard i < b.count, b[i] == UInt8(ascii: ":") else { throw fail("expected ':'") }
                    i += 1
                    skipSpace()
                    guard o[k] == nil else { throw fail("duplicate key \"\(k)\"") }
                    o[k] = try value(depth: depth + 1)
                    skipSpace()
                    guard i < b.count else { throw fail("unexpected end in object") }
                    if b[i] == UInt8(ascii: ",") { i += 1; continue }
                    if b[i] == UInt8(ascii: "}") { i += 1; return .object(o) }
                    throw fail("expected ',' or '}'")
                }
            case UInt8(ascii: "["):
                i += 1
                var a: [JSON] = []
                skipSpace()
                if i < b.count, b[i] == UInt8(ascii: "]") { i += 1; return .array(a) }
                while true {
                    skipSpace()
                    a.append(try value(depth: depth + 1))
                    skipSpace()
                    guard i < b.count else { throw fail("unexpected end in array") }
                    if b[i] == UInt8(ascii: ",") { i += 1; continue }
                    if b[i] == UInt8(ascii: "]") { i += 1; return .array(a) }
                    throw fail("expected ',' or ']'")
                }
            case UInt8(ascii: "\""): return .string(try string())
            case UInt8(ascii: "t"): return try literal("true", .bool(true))
            case UInt8(ascii: "f"): return try literal("false", .bool(false))
            case UInt8(ascii: "n"): return try literal("null", .null)
            default: return .number(try number())
            }
        }

        mutating func number() throws -> Double {
            let start = i
            if i < b.count, b[i] == UInt8(ascii: "-") { i += 1 }
            func digits() -> Int { let s = i; while i < b.count, b[i] >= 0x30, b[i] <= 0x39 { i += 1 }; return i - s }
            let intDigits = digits()
            guard intDigits > 0 else { throw fail("invalid number") }
            if intDigits > 1, b[i - intDigits] == 0x30 { throw fail("leading zero in number") }
            if i < b.count, b[i] == UInt8(ascii: ".") { i += 1; guard digits() > 0 else { throw fail("invalid number") } }
            if i < b.count, b[i] == UInt8(ascii: "e") || b[i] == UInt8(ascii: "E") {
                i += 1
                if i < b.count, b[i] == UInt8(ascii: "+") || b[i] == UInt8(ascii: "-") { i += 1 }
                guard digits() > 0 else { throw fail("invalid exponent") }
            }
            let text = String(decoding: UnsafeBufferPointer(rebasing: b[start..<i]), as: UTF8.self)
            guard let d = Double(text) else { throw fail("invalid number") }
            return d
        }

        mutating func hex4() throws -> UInt32 {
            guard i + 4 <= b.count else { throw fail("short \\u escape") }
            var v: UInt32 = 0
            for _ in 0..<4 {
                let c = b[i]; i += 1
                let d: UInt32
                switch c {
                case 0x30...0x39: d = UInt32(c - 0x30)
                case 0x41...0x46: d = UInt32(c - 0x41 + 10)
                case 0x61...0x66: d = UInt32(c - 0x61 + 10)
                default: throw fail("bad hex digit in \\u escape")
                }
                v = v * 16 + d
            }
            return v
        }

        mutating func string() throws -> String {
            i += 1  // opening quote
            var bytes: [UInt8] = []
            while true {
                guard i < b.count else { throw fail("unterminated string") }
                let c = b[i]
                if c == UInt8(ascii: "\"") { i += 1; break }
                if c < 0x20 { throw fail("control character in string") }
                if c == UInt8(ascii: "\\") {
                    i += 1
                    guard i < b.count else { throw fail("unterminated escape") }
                    let e = b[i]; i += 1
                    switch e {
                    case UInt8(ascii: "\""): bytes.append(0x22)
                    case UInt8(ascii: "\\"): bytes.append(0x5C)
                    case UInt8(ascii: "/"): bytes.append(0x2F)
                    case UInt8(ascii: "b"): bytes.append(0x08)
                    case UInt8(ascii: "f"): bytes.append(0x0C)
                    case UInt8(ascii: "n"): bytes.append(0x0A)
                    case UInt8(ascii: "r"): bytes.append(0x0D)
                    case UInt8(ascii: "t"): bytes.append(0x09)
                    case UInt8(ascii: "u"):
                        var v = try hex4()
                        if v >= 0xD800 && v < 0xDC00 {
                            guard i + 2 <= b.count, b[i] == UInt8(ascii: "\\"), b[i + 1] == UInt8(ascii: "u") else {
                                throw fail("unpaired surrogate")
                            }
                            i += 2
                            let lo = try hex4()
                            guard lo >= 0xDC00 && lo < 0xE000 else { throw fail("unpaired surrogate") }
                            v = 0x10000 + ((v - 0xD800) << 10) + (lo - 0xDC00)
                        } else if v >= 0xDC00 && v < 0xE000 { throw fail("unpaired surrogate") }
                        bytes.append(contentsOf: Array(String(Unicode.Scalar(v)!).utf8))
                    default: throw fail("invalid escape")
                    }
                } else { bytes.append(c); i += 1 }
            }
            guard let s = String(validating: bytes, as: UTF8.self) else { throw fail("string is not valid UTF-8") }
            return s
        }
    }
}

extension JSON: ExpressibleByStringLiteral, ExpressibleByIntegerLiteral, ExpressibleByBooleanLiteral,
    ExpressibleByArrayLiteral, ExpressibleByDictionaryLiteral, ExpressibleByFloatLiteral {
    public init(stringLiteral v: String) { self = .string(v) }
    public init(integerLiteral v: Int) { self = .number(Double(v)) }
    public init(floatLiteral v: Double) { self = .number(v) }
    public init(booleanLiteral v: Bool) { self = .bool(v) }
    public init(arrayLiteral v: JSON...) { self = .array(v) }
    public init(dictionaryLiteral v: (String, JSON)...) { self = .object(Dictionary(v, uniquingKeysWith: { a, _ in a })) }
}
