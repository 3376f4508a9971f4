// swift-tools-version:6.0
//
// tl: transfer learning from the command line.
//
// Build settings (see README "Building for speed"):
//   * TLCore holds the numeric kernels. It is compiled for x86-64-v3 (AVX2 + FMA) because the
//     default baseline x86-64 target turns SIMD fused multiply-adds into library calls
//     (measured ~60x slower). `-enforce-exclusivity=unchecked` removes dynamic exclusivity
//     checks on class-stored buffers (measured 22 -> 3 ns/element).
//   * A binary built that way would die of SIGILL on an older CPU. CTLSupport has a C
//     constructor that runs before any Swift code, checks the CPU and stops with a clear
//     message instead. `TL_PORTABLE=1 swift build` (or `make build PORTABLE=1`) builds a
//     baseline x86-64 binary without the check.
//   * No third-party packages: stdlib, Glibc, Dispatch and XCTest only.
import PackageDescription
import Foundation

let portable = ProcessInfo.processInfo.environment["TL_PORTABLE"].map { $0 != "" && $0 != "0" } ?? false
#if arch(x86_64)
let cpuFlags: [String] = portable ? [] : ["-Xcc", "-march=x86-64-v3"]
let cpuDefines: [CSetting] = portable ? [] : [.define("TL_REQUIRE_X86_64_V3")]
#else
let cpuFlags: [String] = []
let cpuDefines: [CSetting] = []
#endif
// Debug builds optimize the numeric modules too: `make test` runs real training in its
// command-line tests, and -Onone element loops run ~100x slower (a 200-image resnet-small epoch
// took minutes). Debug information stays.
let fastSwift: [SwiftSetting] = [.unsafeFlags(cpuFlags + ["-enforce-exclusivity=unchecked"]),
                                 .unsafeFlags(["-O"], .when(configuration: .debug))]

let tools = ["tl-tensor", "tl-train", "tl-extract", "tl-eval"]

let package = Package(
    name: "tl",
    products: tools.map { .executable(name: $0, targets: [$0]) },
    targets: [
        // MARK: C support: CPU feature check at start-up (before any AVX2 code can run)
        .target(name: "CTLSupport", cSettings: cpuDefines),

        // MARK: Core: tensor, dtypes, formats, kernels
        .target(name: "TLCore", dependencies: ["CTLSupport"], swiftSettings: fastSwift),

        // MARK: Networks: layers with explicit forward/backward, losses, optimizers, model files
        .target(name: "TLNN", dependencies: ["TLCore"], swiftSettings: fastSwift),

        // MARK: Methods: the transfer methods the commands share (linear probe, extraction, metrics, ...)
        .target(name: "TLMethods", dependencies: ["TLCore", "TLNN"], swiftSettings: fastSwift),

        // MARK: Tools: flag parsing, diagnostics, exit codes, progress, one file per command
        .target(name: "TLTools", dependencies: ["TLCore", "TLNN", "TLMethods"], swiftSettings: fastSwift),

        // MARK: Commands: main.swift only
    ] + tools.map { .executableTarget(name: $0, dependencies: ["TLTools"], path: "Sources/\($0)") } + [

        // MARK: Benchmarks: kernel figures for `make bench` (not installed)
        .executableTarget(name: "tl-bench", dependencies: ["TLCore", "TLNN", "TLMethods"], path: "Tests/bench/swift", swiftSettings: fastSwift),

        // MARK: Tests
        .testTarget(name: "TLCoreTests", dependencies: ["TLCore"], swiftSettings: fastSwift),
        .testTarget(name: "TLNNTests", dependencies: ["TLNN"], swiftSettings: fastSwift),
        .testTarget(name: "TLMethodsTests", dependencies: ["TLMethods"], swiftSettings: fastSwift),
        .testTarget(name: "TLToolsTests", dependencies: ["TLTools"], swiftSettings: fastSwift),
    ],
    swiftLanguageModes: [.v5]
)
