// libFuzzer target: the verdict-line reader (`report`, `simulate`), on any bytes a log holds.
// Properties: no crash, no hang; a line the reader accepts as conforming is read the same twice.

import ConnectorReview
import FuzzDriver
import Foundation

runFuzzer("FuzzVerdictLineReader", fuzzVerdictLineReader)


@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzVerdictLineReader(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = UnsafeBufferPointer(start: data, count: size)
    var clock = LogClock(now: Date(timeIntervalSince1970: 1_790_000_000), timeZone: TimeZone(identifier: "UTC")!)
    _ = VerdictLineReader.parse(bytes: bytes, complete: true, clock: &clock)
    _ = VerdictLineReader.parse(bytes: bytes, complete: false, clock: &clock)
    let text = String(decoding: bytes, as: UTF8.self)
    if VerdictLineReader.conformanceProblems(text).isEmpty {
        let first = VerdictLineReader.parse(message: text)
        precondition(first == VerdictLineReader.parse(message: text), "reading is not deterministic")
    }
    return 0
}
