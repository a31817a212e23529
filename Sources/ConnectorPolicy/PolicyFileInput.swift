// Stage 1 of reading a policy: the bytes, and the thread with a stack deep enough for Yams.

import Dispatch
import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

extension PolicyParser {
    /// Yams composes (and Swift frees) the YAML tree recursively, about 1 KiB of stack per
    /// level, and libyaml allows 1000 levels: a deeply nested file would overflow the 512 KiB
    /// stack of a secondary thread (measured: it does at 500 levels). 16 MiB is four times what
    /// the deepest file libyaml accepts needs; untouched stack pages cost no memory.
    static func onLargeStack(_ work: @escaping @Sendable () -> Result<Policy, PolicyErrors>) -> Result<Policy, PolicyErrors> {
        final class Outcome: @unchecked Sendable {
            // Written by the worker before it signals, read after the wait: the semaphore orders them.
            var result: Result<Policy, PolicyErrors>?
        }
        let outcome = Outcome()
        let done = DispatchSemaphore(value: 0)
        let thread = Thread {
            outcome.result = work()
            done.signal()
        }
        thread.stackSize = 16 << 20
        thread.start()
        done.wait()
        return outcome.result!
    }

    package struct ReadFailure: Error { package let message: String }

    package static func readFile(_ path: String) -> Result<[UInt8], ReadFailure> {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return .failure(ReadFailure(message: "cannot open the policy file: \(errnoText())")) }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                return .failure(ReadFailure(message: "cannot read the policy file: \(errnoText())"))
            }
            if n == 0 { return .success(bytes) }
            bytes.append(contentsOf: chunk[0..<n])
            // Checked while reading, not with fstat, so /dev/zero or a FIFO cannot exhaust memory.
            if bytes.count > maximumFileSize {
                return .failure(ReadFailure(message: "the policy file is larger than 64 MiB"))
            }
        }
    }

    private static func errnoText() -> String { String(cString: strerror(errno)) }

    static func firstInvalidUTF8(_ bytes: [UInt8]) -> (offset: Int, line: Int, column: Int) {
        var iterator = bytes.makeIterator()
        var parser = Unicode.UTF8.ForwardParser()
        var offset = 0, line = 1, column = 1
        while true {
            switch parser.parseScalar(from: &iterator) {
            case .valid(let encoded):
                offset += encoded.count
                if encoded.count == 1 && encoded.first == 0x0A { line += 1; column = 1 } else { column += 1 }
            case .error:
                return (offset, line, column)
            case .emptyInput:
                return (max(0, bytes.count - 1), line, column)  // unreachable for invalid input
            }
        }
    }
}
