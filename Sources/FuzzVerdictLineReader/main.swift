// libFuzzer target: the verdict-line reader (`report`, `simulate`), on any bytes a log holds.
// Properties: no crash, no hang; a line the reader accepts as conforming is read the same twice.

import ConnectorPolicy
import Foundation

// The entry point. SwiftPM renames an executable's entry to `FuzzVerdictLineReader_main` and links it with
// `--defsym main=FuzzVerdictLineReader_main`, so libFuzzer's own main() is never used (and with
// -parse-as-library there is no entry at all: "undefined symbol 'FuzzVerdictLineReader_main'"). Under
// scripts/fuzz.sh (-DFUZZING) the entry hands over to libFuzzer's driver; a plain build
// only says how to run it.
#if FUZZING
@_silgen_name("LLVMFuzzerRunDriver")
func runLibFuzzer(_ argc: UnsafeMutablePointer<CInt>,
                  _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>,
                  _ test: @convention(c) (UnsafePointer<UInt8>, Int) -> CInt) -> CInt
var fuzzArgc = CommandLine.argc
var fuzzArgv = CommandLine.unsafeArgv
exit(runLibFuzzer(&fuzzArgc, &fuzzArgv, fuzzVerdictLineReader))
#else
print("FuzzVerdictLineReader: a libFuzzer target; run it with scripts/fuzz.sh")
#endif


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
