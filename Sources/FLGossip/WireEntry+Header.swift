import FLWire

extension WireEntry {
    /// The author named by a ledger entry header (version, consortium, author; docs/ledger-spec.md), if it parses that far.
    static func author(of header: [UInt8]) -> String? {
        guard header.count >= 3 else { return nil }
        let consortiumLength = Int(header[1]) << 8 | Int(header[2])
        let a = 3 + consortiumLength
        guard header.count >= a + 2 else { return nil }
        let authorLength = Int(header[a]) << 8 | Int(header[a + 1])
        guard header.count >= a + 2 + authorLength else { return nil }
        return String(validating: header[(a + 2)..<(a + 2 + authorLength)], as: UTF8.self)
    }

    /// The seq of a ledger entry header (after version, consortium and author), if it parses that far.
    static func seq(of header: [UInt8]) -> UInt64? {
        guard header.count >= 3 else { return nil }
        let a = 3 + (Int(header[1]) << 8 | Int(header[2]))
        guard header.count >= a + 2 else { return nil }
        let s = a + 2 + (Int(header[a]) << 8 | Int(header[a + 1]))
        guard header.count >= s + 8 else { return nil }
        return header[s..<(s + 8)].reduce(0) { $0 << 8 | UInt64($1) }
    }
}
