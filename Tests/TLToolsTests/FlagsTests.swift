import XCTest
@testable import TLTools
import TLCore

final class FlagsTests: XCTestCase {
    let spec = CommandSpec(name: "tl-x", usage: ["[OPTIONS] FILE"], summary: "A test command.", options: [
        Option("output", "o", value: "FILE", help: "output"),
        Option("rows", "n", value: "N", help: "rows"),
        Option("dtype", value: "D", repeatable: true, help: "dtype"),
        Option("json", help: "json"),
        Option("header", help: "header"),
    ])

    func testForms() throws {
        let a = try parseArguments(["--output=a.tlt", "-n", "5", "--json", "in.tlt", "-", "-3", "--dtype", "f32", "--dtype=y=i64", "--", "--json"], spec)
        XCTAssertEqual(a.value("output"), "a.tlt")
        XCTAssertEqual(try a.int("rows", default: 0), 5)
        XCTAssertTrue(a.has("json"))
        XCTAssertEqual(a.positionals, ["in.tlt", "-", "-3", "--json"])
        XCTAssertEqual(a.all("dtype"), ["f32", "y=i64"])
        let b = try parseArguments(["-qn7", "-oout.npy", "--hea"], spec)
        XCTAssertTrue(b.has("quiet"))
        XCTAssertEqual(b.value("rows"), "7")
        XCTAssertEqual(b.value("output"), "out.npy")
        XCTAssertTrue(b.has("header"), "an unambiguous prefix selects the option")
    }

    func testErrors() {
        func usage(_ args: [String], _ contains: String) {
            XCTAssertThrowsError(try parseArguments(args, spec)) { e in
                XCTAssertEqual((e as? TLError)?.kind, .usage)
                XCTAssertTrue("\(e)".contains(contains), "\(e)")
            }
        }
        usage(["--nope"], "unknown option '--nope'")
        usage(["--he"], "unknown option '--he'")  // ambiguous: --header or --help
        usage(["-z"], "unknown option '-z'")
        usage(["--output"], "needs a value")
        usage(["--json=1"], "takes no value")
        usage(["-o", "a", "-o", "b"], "given twice")
        XCTAssertThrowsError(try parseArguments(["-n", "x"], spec).int("rows", default: 0))
    }

    func testHelpComesFromTheDeclaration() {
        let h = spec.help
        XCTAssertTrue(h.hasPrefix("Usage: tl-x [OPTIONS] FILE\n"))
        for o in spec.options { XCTAssertTrue(h.contains("--\(o.long)"), o.long) }
        XCTAssertTrue(h.contains("-o, --output FILE"))
        XCTAssertTrue(h.contains("--version"))
    }

    func testExitCodes() {
        XCTAssertEqual([TLError.Kind.usage, .data, .noInput, .software, .cantCreate, .io].map(exitCode), [64, 65, 66, 70, 73, 74])
    }

    func testClassNames() {
        let t = TensorTool.namesTensor(["T-shirt/top", "Trouser", "é"])
        XCTAssertEqual(TensorTool.classNames(t), ["T-shirt/top", "Trouser", "é"])
        XCTAssertEqual(TensorTool.classNames(TensorTool.namesTensor([])), [])
    }
}
