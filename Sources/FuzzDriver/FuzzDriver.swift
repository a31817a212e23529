// The entry point every libFuzzer target shares. SwiftPM renames an executable's entry to
// `<Target>_main` and links it with `--defsym main=<Target>_main`, so libFuzzer's own main() is
// never used (and with -parse-as-library there is no entry at all). Under scripts/fuzz.sh
// (-DFUZZING) the entry hands over to libFuzzer's driver; a plain build only says how to run it.

#if canImport(Glibc)
import Glibc
#endif

#if FUZZING
@_silgen_name("LLVMFuzzerRunDriver")
private func runLibFuzzer(_ argc: UnsafeMutablePointer<CInt>,
                          _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>,
                          _ test: @convention(c) (UnsafePointer<UInt8>, Int) -> CInt) -> CInt
#endif

/// Runs `test` under libFuzzer with the process's arguments (scripts/fuzz.sh passes them).
public func runFuzzer(_ name: String, _ test: @convention(c) (UnsafePointer<UInt8>, Int) -> CInt) -> Never {
#if FUZZING
    var argc = CommandLine.argc
    var argv = CommandLine.unsafeArgv
    exit(runLibFuzzer(&argc, &argv, test))
#else
    print("\(name): a libFuzzer target; run it with scripts/fuzz.sh")
    exit(0)
#endif
}
