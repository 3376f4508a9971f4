/// Errors thrown by the tl libraries. Libraries never print and never exit: the command layer
/// (TLTools) maps each kind to one line on stderr and a sysexits code, in one place.
public struct TLError: Error, CustomStringConvertible, Equatable {
    /// What went wrong, in the terms of sysexits(3).
    public enum Kind: Equatable, Sendable {
        case usage       // EX_USAGE 64: the command line is wrong
        case data        // EX_DATAERR 65: the input is malformed
        case noInput     // EX_NOINPUT 66: an input file does not exist or is unreadable
        case software    // EX_SOFTWARE 70: an internal error (a bug)
        case cantCreate  // EX_CANTCREAT 73: an output file cannot be created
        case io          // EX_IOERR 74: reading or writing failed
    }
    public var kind: Kind
    /// The file the problem is in ("-" for stdin/stdout), when there is one.
    public var file: String?
    /// Where in the file: "record 3", "line 7", "byte 1024", "member x.npy".
    public var location: String?
    public var message: String

    public init(_ kind: Kind, _ message: String, file: String? = nil, location: String? = nil) {
        self.kind = kind; self.message = message; self.file = file; self.location = location
    }

    /// `file: location: message`, leaving out what is unknown.
    public var description: String {
        var parts: [String] = []
        if let f = file { parts.append(f == "-" ? "<stdin>" : f) }
        if let l = location { parts.append(l) }
        parts.append(message)
        return parts.joined(separator: ": ")
    }

    /// The same error, with file and location filled in where they are still unknown.
    public func at(file: String? = nil, location: String? = nil) -> TLError {
        var e = self
        if e.file == nil { e.file = file }
        if e.location == nil { e.location = location }
        return e
    }

    public static func data(_ m: String, file: String? = nil, location: String? = nil) -> TLError {
        TLError(.data, m, file: file, location: location)
    }
    public static func usage(_ m: String) -> TLError { TLError(.usage, m) }
    public static func io(_ m: String, file: String? = nil) -> TLError { TLError(.io, m, file: file) }
}

/// Runs `body`, attaching `file` and `location` to any TLError it throws that lacks them.
@inlinable
public func annotating<T>(file: String?, location: String? = nil, _ body: () throws -> T) throws -> T {
    do { return try body() } catch let e as TLError { throw e.at(file: file, location: location) }
}
