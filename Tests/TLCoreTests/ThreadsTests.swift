import Glibc
import XCTest
@testable import TLCore

/// `Threads.parallelFor` on the worker pool: every task exactly once, on the participant the
/// contract names, for any count of tasks and threads, back to back (the pool's spinning hand-
/// over) and after the workers have gone to sleep, and nested calls (which fall back to Dispatch).
final class ThreadsTests: XCTestCase {
    /// Runs tasks 0..<n; returns how often each ran and the thread each ran on.
    func run(_ n: Int, threads: Int) -> (counts: [Int], owners: [pthread_t]) {
        let counts = UnsafeMutablePointer<Int>.allocate(capacity: max(n, 1)), owners = UnsafeMutablePointer<pthread_t>.allocate(capacity: max(n, 1))
        counts.initialize(repeating: 0, count: max(n, 1)); owners.initialize(repeating: 0, count: max(n, 1))
        defer { counts.deallocate(); owners.deallocate() }
        let c = UnsafeSendable(counts), o = UnsafeSendable(owners)
        Threads.parallelFor(n, threads: threads) { i in c.value[i] += 1; o.value[i] = pthread_self() }
        return (Array(UnsafeBufferPointer(start: counts, count: n)), Array(UnsafeBufferPointer(start: owners, count: n)))
    }

    func testEveryTaskOnceOnItsParticipant() {
        let me = pthread_self()
        for threads in 1...5 {
            for n in [0, 1, 2, 3, 7, 64, 1000] {
                let (counts, owners) = run(n, threads: threads)
                XCTAssertEqual(counts, [Int](repeating: 1, count: n), "n \(n), threads \(threads)")
                let stride = min(n, threads)
                for i in 0..<n {
                    XCTAssertEqual(owners[i], owners[i % max(stride, 1)], "task \(i) runs where task \(i % stride) ran")
                    if i % max(stride, 1) == 0 { XCTAssertEqual(owners[i], me, "participant 0 is the caller") }
                    else { XCTAssertNotEqual(owners[i], me) }
                }
                if stride > 1 { XCTAssertEqual(Set(owners.prefix(stride).map { UInt($0) }).count, stride, "\(stride) distinct threads") }
            }
        }
    }

    /// Many small jobs back to back, then a pause long enough for the workers to sleep, then more.
    func testBackToBackAndAfterSleep() {
        let total = UnsafeMutablePointer<Int>.allocate(capacity: 4)
        total.initialize(repeating: 0, count: 4)
        defer { total.deallocate() }
        let t = UnsafeSendable(total)
        for round in 0..<3 {
            for _ in 0..<20_000 { Threads.parallelFor(4, threads: 2) { i in t.value[i] += 1 } }
            if round < 2 { usleep(5_000) }
        }
        XCTAssertEqual(Array(UnsafeBufferPointer(start: total, count: 4)), [60_000, 60_000, 60_000, 60_000])
    }

    func testNestedCalls() {
        let cells = UnsafeMutablePointer<Int>.allocate(capacity: 6 * 10)
        cells.initialize(repeating: 0, count: 60)
        defer { cells.deallocate() }
        let c = UnsafeSendable(cells)
        Threads.parallelFor(6, threads: 3) { i in
            Threads.parallelFor(10, threads: 2) { j in c.value[i * 10 + j] += 1 }
        }
        XCTAssertEqual(Array(UnsafeBufferPointer(start: cells, count: 60)), [Int](repeating: 1, count: 60))
    }
}
