import Glibc
import TLCore

/// The tl version, printed by `--version`.
public let tlVersion = "0.1.0"

/// Writes to stderr without buffering (C's `stderr` global is not usable from Swift 6 code).
public func writeStderr(_ s: String) {
    var b = Array(s.utf8)
    var off = 0
    while off < b.count {
        let n = b.withUnsafeMutableBytes { write(2, $0.baseAddress! + off, $0.count - off) }
        if n <= 0 { if errno == EINTR { continue }; return }
        off += n
    }
    b.removeAll()
}

/// The sysexits(3) code for an error kind. This is the only place the mapping lives.
public func exitCode(_ k: TLError.Kind) -> Int32 {
    switch k {
    case .usage: return 64
    case .data: return 65
    case .noInput: return 66
    case .software: return 70
    case .cantCreate: return 73
    case .io: return 74
    }
}

/// Process-wide settings of the running command.
public enum Session {
    nonisolated(unsafe) public static var command = "tl"
    nonisolated(unsafe) public static var quiet = false
    nonisolated(unsafe) public static var progress = isatty(2) == 1

    /// A note on stderr (`tl-x: ...`), unless `-q`.
    public static func note(_ s: String) { if !quiet { writeStderr("\(command): \(s)\n") } }
}

/// Runs a command: parses the common options, calls `body`, maps errors to one stderr line and
/// an exit code. Never returns.
public func runCommand(_ spec: CommandSpec, argv: [String]? = nil, prefix: String? = nil, _ body: (Arguments) throws -> Void) -> Never {
    signal(SIGPIPE, SIG_DFL)  // `tl-x | head` ends the producer quietly
    Session.command = prefix ?? spec.name
    let argv = argv ?? Array(CommandLine.arguments.dropFirst())
    var code: Int32 = 0
    do {
        let args = try parseArguments(argv, spec)
        if args.has("help") { try writeStdout(spec.help); exit(0) }
        if args.has("version") { try writeStdout("\(Session.command) (tl) \(tlVersion)\n"); exit(0) }
        if args.has("quiet") { Session.quiet = true; Session.progress = false }
        if args.has("progress") { Session.progress = true }
        try body(args)
    } catch let e as TLError {
        code = report(e)
    } catch {
        writeStderr("\(spec.name): internal error: \(error)\n")
        code = 70
    }
    exit(code)
}

/// Prints an error the standard way and returns its exit code.
public func report(_ e: TLError) -> Int32 {
    if e.kind == .io && e.message == "broken pipe" { return 141 }  // reader went away: quiet
    writeStderr("\(Session.command): \(e)\n")
    if e.kind == .usage && e.file == nil { writeStderr("Try '\(Session.command) --help' for more information.\n") }
    return exitCode(e.kind)
}

/// Writes text to stdout, checking for errors (so `> /dev/full` fails with 74).
public func writeStdout(_ s: String) throws {
    var b = Array(s.utf8)
    var off = 0
    while off < b.count {
        let n = b.withUnsafeMutableBytes { write(1, $0.baseAddress! + off, $0.count - off) }
        if n < 0 {
            if errno == EINTR { continue }
            if errno == EPIPE { throw TLError(.io, "broken pipe") }
            throw TLError(.io, "write failed: \(String(cString: strerror(errno)))", file: "<stdout>")
        }
        off += n
    }
    b.removeAll()
}

/// Formats a number with `decimals` digits after the point.
public func fixed(_ x: Double, _ decimals: Int) -> String {
    var buf = [CChar](repeating: 0, count: 64)
    _ = withVaList([x]) { vsnprintf(&buf, 64, "%.\(decimals)f", $0) }
    return String(cString: buf)
}

/// Formats a number with `digits` significant digits (%g).
public func sig(_ x: Double, _ digits: Int = 6) -> String {
    var buf = [CChar](repeating: 0, count: 64)
    _ = withVaList([x]) { vsnprintf(&buf, 64, "%.\(digits)g", $0) }
    return String(cString: buf)
}
