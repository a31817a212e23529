import Foundation

/// Splits a byte stream read in chunks into lines. A line longer than
/// `VerdictLineReader.maximumLineLength` is handed on cut, flagged incomplete, so a file
/// without newlines cannot make the reader hold it all.
public struct LogLineSplitter {
    private var pending: [UInt8] = []
    private var pendingIsCut = false

    public init() {}

    public mutating func feed(_ chunk: UnsafeBufferPointer<UInt8>,
                              _ body: (_ line: UnsafeBufferPointer<UInt8>, _ complete: Bool) -> Void) {
        let limit = VerdictLineReader.maximumLineLength
        var start = 0
        while start < chunk.count {
            let rest = UnsafeBufferPointer(rebasing: chunk[start...])
            guard let newline = memchr(rest.baseAddress!, 0x0A, rest.count) else {
                keep(rest, limit: limit)
                return
            }
            let length = rest.baseAddress!.distance(to: newline.assumingMemoryBound(to: UInt8.self))
            let line = UnsafeBufferPointer(rebasing: rest[..<length])
            if pending.isEmpty && !pendingIsCut {
                // The common case: the whole line is in this chunk, hand it on without copying.
                body(UnsafeBufferPointer(rebasing: line.prefix(limit)), line.count <= limit)
            } else {
                keep(line, limit: limit)
                pending.withUnsafeBufferPointer { body($0, !pendingIsCut) }
                pending.removeAll(keepingCapacity: true)
                pendingIsCut = false
            }
            start += length + 1
        }
    }

    /// Holds the start of a line that goes on in the next chunk, up to the limit.
    private mutating func keep(_ part: UnsafeBufferPointer<UInt8>, limit: Int) {
        let room = max(0, limit - pending.count)
        if part.count > room { pendingIsCut = true }
        pending.append(contentsOf: part.prefix(room))
    }

    /// The last line, when the stream does not end with a newline.
    public mutating func finish(_ body: (_ line: UnsafeBufferPointer<UInt8>, _ complete: Bool) -> Void) {
        if !pending.isEmpty || pendingIsCut {
            pending.withUnsafeBufferPointer { body($0, !pendingIsCut) }
        }
        pending.removeAll()
        pendingIsCut = false
    }
}
