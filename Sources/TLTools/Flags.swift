import TLCore

/// One option of a command, declared once: parsing and `--help` both come from it.
public struct Option: Sendable {
    public let long: String
    public let short: Character?
    /// The value's placeholder (e.g. "FILE"); nil for a flag without a value.
    public let value: String?
    public let help: String
    public let repeatable: Bool
    public init(_ long: String, _ short: Character? = nil, value: String? = nil, repeatable: Bool = false, help: String) {
        self.long = long; self.short = short; self.value = value; self.help = help; self.repeatable = repeatable
    }
}

/// Options every command has.
public let commonOptions: [Option] = [
    Option("quiet", "q", help: "no progress line and no notes on stderr (errors still print)"),
    Option("progress", help: "show the progress line even when stderr is not a terminal"),
    Option("help", "h", help: "print this help and exit"),
    Option("version", help: "print the version and exit"),
]

/// A command (or subcommand) declaration.
public struct CommandSpec: Sendable {
    public let name: String
    public let usage: [String]
    public let summary: String
    public let options: [Option]
    public let footer: String
    public init(name: String, usage: [String], summary: String, options: [Option], footer: String = "") {
        self.name = name; self.usage = usage; self.summary = summary; self.options = options + commonOptions; self.footer = footer
    }

    /// The `--help` text.
    public var help: String {
        var s = "Usage: " + usage.map { "\(name) \($0)" }.joined(separator: "\n       ") + "\n\n\(summary)\n"
        if !options.isEmpty {
            s += "\nOptions:\n"
            let cols = options.map { o -> String in
                (o.short.map { "-\($0), " } ?? "    ") + "--\(o.long)" + (o.value.map { " \($0)" } ?? "")
            }
            let w = min(30, cols.map(\.count).max() ?? 0)
            for (c, o) in zip(cols, options) {
                let pad = c.count < w ? String(repeating: " ", count: w - c.count) : ""
                s += "  \(c)\(pad)  \(o.help)\n"
            }
        }
        if !footer.isEmpty { s += "\n" + footer + (footer.hasSuffix("\n") ? "" : "\n") }
        return s
    }
}

/// The result of parsing: flags seen, option values (in order), positional arguments.
public struct Arguments {
    public var flags: Set<String> = []
    public var values: [String: [String]] = [:]
    public var positionals: [String] = []

    public func has(_ long: String) -> Bool { flags.contains(long) || values[long] != nil }
    public func value(_ long: String) -> String? { values[long]?.last }
    public func all(_ long: String) -> [String] { values[long] ?? [] }

    public func int(_ long: String, default d: Int, min lo: Int = Int.min) throws -> Int {
        guard let v = value(long) else { return d }
        guard let i = Int(v), i >= lo else { throw TLError.usage("--\(long) needs an integer\(lo > Int.min ? " >= \(lo)" : ""), not '\(v)'") }
        return i
    }
    public func double(_ long: String, default d: Double) throws -> Double {
        guard let v = value(long) else { return d }
        guard let x = Double(v), x.isFinite else { throw TLError.usage("--\(long) needs a number, not '\(v)'") }
        return x
    }
    public func uint64(_ long: String, default d: UInt64) throws -> UInt64 {
        guard let v = value(long) else { return d }
        guard let x = UInt64(v) else { throw TLError.usage("--\(long) needs a non-negative integer, not '\(v)'") }
        return x
    }
}

/// Parses `args` against `spec`: `--long`, `--long=value`, `--long value`, `-s value`,
/// `-abc` for grouped short flags, `--` ends options; "-" and negative numbers are positional.
public func parseArguments(_ args: [String], _ spec: CommandSpec) throws -> Arguments {
    var a = Arguments()
    var i = 0
    func find(long: String) throws -> Option {
        if let o = spec.options.first(where: { $0.long == long }) { return o }
        let near = spec.options.filter { $0.long.hasPrefix(long) }
        if near.count == 1 { return near[0] }  // unambiguous prefix, as getopt_long allows
        throw TLError.usage("unknown option '--\(long)'")
    }
    func store(_ o: Option, _ v: String?) throws {
        if let v = v {
            if !o.repeatable, let prev = a.values[o.long], !prev.isEmpty, prev.last != v {
                throw TLError.usage("--\(o.long) given twice ('\(prev.last!)' and '\(v)')")
            }
            a.values[o.long, default: []].append(v)
        } else { a.flags.insert(o.long) }
    }
    while i < args.count {
        let arg = args[i]; i += 1
        if arg == "--" { a.positionals += args[i...]; break }
        if arg.hasPrefix("--") {
            let body = arg.dropFirst(2)
            let (name, inline) = body.firstIndex(of: "=").map { (String(body[..<$0]), String(body[body.index(after: $0)...])) } ?? (String(body), nil)
            let o = try find(long: name)
            if o.value == nil {
                guard inline == nil else { throw TLError.usage("option '--\(o.long)' takes no value") }
                try store(o, nil)
            } else if let v = inline { try store(o, v) }
            else {
                guard i < args.count else { throw TLError.usage("option '--\(o.long)' needs a value (\(o.value!))") }
                try store(o, args[i]); i += 1
            }
        } else if arg.hasPrefix("-") && arg.count > 1 && Double(arg) == nil {
            var rest = Substring(arg.dropFirst())
            while let c = rest.first {
                rest = rest.dropFirst()
                guard let o = spec.options.first(where: { $0.short == c }) else { throw TLError.usage("unknown option '-\(c)'") }
                if o.value == nil { try store(o, nil); continue }
                if !rest.isEmpty { try store(o, String(rest)) }
                else {
                    guard i < args.count else { throw TLError.usage("option '-\(c)' needs a value (\(o.value!))") }
                    try store(o, args[i]); i += 1
                }
                break
            }
        } else { a.positionals.append(arg) }
    }
    return a
}
