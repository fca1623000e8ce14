import FLWire

/// What the gossip layer needs from a peer's ledger to keep replicas in
/// sync: heads go out in the hello and whenever they change, and each side
/// pulls the entries it lacks.
public protocol LedgerReplica: Sendable {
    /// The last entry of every chain held.
    func heads() throws -> [ChainHead]
    /// Entries of `author` after `after` (from seq 0 when nil), at most `limit`.
    func entries(author: String, after: UInt64?, limit: Int) throws -> [WireEntry]
    /// Checks and stores replicated entries; returns how many were new.
    func merge(_ entries: [WireEntry]) throws -> Int
    /// The hash of the stored entry of `author` at `seq` (its main chain), if held.
    func entryHash(author: String, seq: UInt64) throws -> ContentHash?
}
