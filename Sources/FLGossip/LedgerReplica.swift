import FLWire

/// What the gossip layer needs from a peer's ledger to keep replicas in
/// sync: heads go out in the hello and whenever they change, and each side
/// pulls the entries it lacks. The node calls these on a thread pool, never
/// on its event loop: they may read and write the database and check signatures.
public protocol LedgerReplica: Sendable {
    /// The last entry of every chain held.
    func heads() throws -> [ChainHead]
    /// Entries of `author` after `after` (from seq 0 when nil), at most `limit`.
    func entries(author: String, after: UInt64?, limit: Int) throws -> [WireEntry]
    /// Checks and stores replicated entries.
    func merge(_ entries: [WireEntry]) throws -> MergeOutcome
    /// The hash of the stored entry of `author` at `seq` (its main chain), if held.
    func entryHash(author: String, seq: UInt64) throws -> ContentHash?
}

/// What a merge did.
public struct MergeOutcome: Sendable, Equatable {
    /// Entries that were new (including any evidence entries the merge signed).
    public var stored: Int
    /// Received entries this replica now holds on its chains (new or not),
    /// kept by the node to answer pushes and pulls without reading the ledger.
    public var held: [WireEntry]

    public init(stored: Int, held: [WireEntry]) {
        self.stored = stored
        self.held = held
    }
}
