import Crypto
import FLLedger
import FLWire
import Foundation
import NIOCore

@testable import FLGossip
@testable import FLPeer

/// One member of an `InMemoryFederation`. Its gossip side holds the node's
/// state machines (`ChainReplication`, `BlobExchange`, its `Links`) over a
/// real ledger (`LedgerStore` on a temporary file, `LedgerSync`: signatures,
/// links and fork evidence are real) and a `BlobStore`, and carries out their
/// actions as `GossipNode` does. Its round side drives a `RoundStateMachine`
/// as `RoundEngine.Session.exchange` does: it wakes on the same events
/// (entries stored, a blob complete, positions reported, neighbours or
/// connections changed) and at the machine's deadlines, and nothing else.
final class SimulatedPeer {
    typealias Machine = RoundStateMachine<ContinuousClock.Instant>

    /// How a member behaves in the round.
    struct Behaviour {
        /// When it signs its update (its training time), after the round starts; nil: never (a missing member).
        var commitsAfter: Duration? = .milliseconds(100)
        /// How long publishing its bytes takes once its machine says reveal (a slow member).
        var revealTakes: Duration = .zero
        /// When its links drop for good, after the round starts (a departing member).
        var departsAfter: Duration?
        /// Neighbours it shows a second, different entry for its update's chain position, consistently (an equivocating member).
        var liesTo: Set<String> = []

        static let honest = Behaviour()
    }

    /// How the round ended at this peer.
    struct Outcome: Equatable {
        /// The members whose updates it aggregates (nil: the round failed).
        var accepted: [String]?
        var failure: String?
        /// Simulated time from the round's start.
        var after: Duration
    }

    /// A notice of the machine (what the engine logs), and when it came.
    struct Noticed: Equatable {
        var notice: Machine.Notice
        var after: Duration
    }

    let id: String
    let behaviour: Behaviour
    let store: LedgerStore
    let blobStore: BlobStore
    var departed = false
    private let key: Curve25519.Signing.PrivateKey
    private let ledger: LedgerSync
    private unowned let federation: InMemoryFederation

    // The node.
    private var replication = ChainReplication()
    private var blobs: BlobExchange
    private var links = Links()
    /// Logged by the node: positions where a neighbour held a different entry, and anti-entropy repairs.
    private(set) var conflicts: [String] = []
    private(set) var repairs: [String] = []
    /// The equivocator's two entries for one position: the one it stored, and the one it shows `liesTo`.
    private var lie: (told: ChainHead, shown: WireEntry)?

    // The round.
    private(set) var machine: Machine?
    private(set) var outcome: Outcome?
    private(set) var notices: [Noticed] = []
    private var commitments: [String: (updateHash: String, blob: ContentHash, position: ChainHead)] = [:]
    private var collected: Set<String> = []
    /// Update entries of the round stored at the last read.
    private var commitmentsRead = -1
    private var echoed = false
    private var publishing = false
    private var wakePending = false
    private var alarm: ContinuousClock.Instant?

    init(id: String, key: Curve25519.Signing.PrivateKey, certificatePEM: String, behaviour: Behaviour, directory: String,
         federation: InMemoryFederation) throws {
        self.id = id
        self.key = key
        self.behaviour = behaviour
        self.federation = federation
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        store = try LedgerStore(path: "\(directory)/ledger.sqlite", consortium: InMemoryFederation.consortium)
        try store.append(author: id, kind: .genesis, round: 0, body: EntryBody.genesis(certificatePEM: certificatePEM), key: key, time: federation.date)
        ledger = LedgerSync(store: store, caCertificate: federation.ca.certificate, identity: (id, key))
        blobStore = try BlobStore(directory: "\(directory)/blobs")
        blobs = BlobExchange(store: blobStore)
        replication.setHeads(try ledger.heads())
    }

    func hello() -> Hello { Hello(consortium: InMemoryFederation.consortium, institution: id, heads: replication.mineSorted) }

    /// Who this peer can reach now: itself, its connections and theirs.
    var reachable: Set<String> {
        links.connected.reduce(into: links.connected.union([id])) { out, c in out.formUnion(links.theirs[c] ?? []) }
    }

    var connected: Set<String> { links.connected }

    /// Members whose update entry for the round this peer holds but did not
    /// aggregate, other than those proven to equivocate (what it records as late).
    func late() throws -> Set<String> {
        let flagged = Set(try store.flaggedAuthors(caCertificate: federation.ca.certificate))
        let authors = Set(try store.entries(kind: .update, round: InMemoryFederation.round).map(\.header.author))
        return authors.subtracting(outcome?.accepted ?? []).subtracting(flagged)
    }

    // MARK: - Messages

    func handle(_ messages: [WireMessage], from member: String) throws {
        for message in messages {
            if case .hello(let h) = message {
                if !links.connected.contains(member) { try established(member, heads: h.heads) }
                continue
            }
            guard links.connected.contains(member) else { continue }
            switch message {
            case .announce(let a): try perform(blobs.announced(a, from: member))
            case .pull(let hash): try perform(blobs.pulled(hash, by: member))
            case .chunk(let hash, let offset, let bytes): try chunk(hash, offset: offset, bytes: bytes, from: member)
            case .notFound(let hash): try perform(blobs.notFound(hash, from: member, links: links))
            case .ledgerHeads(let heads): try perform(replication.heard(heads, from: member, now: federation.now))
            case .ledgerPull(let author, let after, let fromStart):
                try perform(replication.pulled(author: author, after: fromStart ? nil : after, by: member))
            case .ledgerEntries(let entries): try receive(entries, from: member)
            case .neighbours(let ids):
                let before = links.theirs[member] ?? []
                links.theirs[member] = Set(ids)
                if before != Set(ids) { wake() }
                let lost = before.subtracting(ids)
                if !lost.isEmpty {
                    try perform(replication.neighbourLostLinks(member))
                    try perform(blobs.lostLinks(lost, of: member))
                }
            case .hello, .ping, .pong, .goodbye: break
            }
        }
    }

    private func established(_ member: String, heads: [ChainHead]) throws {
        links.connected.insert(member)
        wake()
        try perform(blobs.connected(member))
        announceNeighbours()
        try perform(replication.heard(heads, from: member, now: federation.now))
    }

    /// The connection to `member` closed.
    func closed(_ member: String) throws {
        guard links.connected.remove(member) != nil else { return }
        links.theirs[member] = nil
        replication.disconnected(member)
        announceNeighbours()
        try perform(blobs.disconnected(member, links: links))
        wake()
    }

    private func announceNeighbours() {
        for member in links.connected.sorted() { send([.neighbours(links.connected.sorted())], to: member) }
    }

    private func send(_ messages: [WireMessage], to member: String) {
        guard links.connected.contains(member) else { return }
        federation.transmit(lie != nil && behaviour.liesTo.contains(member) ? messages.map(lied) : messages, from: id, to: member)
    }

    /// The equivocator's version of a message for the members it lies to: the other entry at its update's position.
    private func lied(_ message: WireMessage) -> WireMessage {
        guard let lie, let shown = ContentHash(lie.shown.hash) else { return message }
        switch message {
        case .ledgerEntries(let entries):
            return .ledgerEntries(entries.map { ContentHash($0.hash) == lie.told.hash ? lie.shown : $0 })
        case .ledgerHeads(let heads):
            return .ledgerHeads(heads.map { $0 == lie.told ? ChainHead(author: id, seq: $0.seq, hash: shown) : $0 })
        default:
            return message
        }
    }

    // MARK: - Carrying out the machines' actions (as GossipNode does)

    private func perform(_ actions: [ChainReplication.Action]) throws {
        for action in actions {
            switch action {
            case .send(let to, let messages): send(messages, to: to)
            case .serve(let author, let after, let to):
                let entries = try ledger.entries(author: author, after: after, limit: ChainReplication.batch)
                if !entries.isEmpty { send([.ledgerEntries(entries)], to: to) }
            case .lookUp(let author, let seq, let theirs, let from):
                if let ours = try ledger.entryHash(author: author, seq: seq), ours != theirs {
                    try perform(replication.conflictFound(ChainHead(author: author, seq: seq, hash: theirs), from: from))
                }
            case .positionsReported: wake()
            case .repair(let member, let chains): repairs.append("\(member): \(chains.joined(separator: ","))")
            case .conflict(let author, let seq, let from): conflicts.append("\(author)#\(seq) from \(from)")
            }
        }
    }

    private func perform(_ actions: [BlobExchange.Action]) throws {
        for action in actions {
            switch action {
            case .send(let to, let messages): send(messages, to: to)
            case .stream(let hash, let size, let to):
                send([.chunk(hash: hash, offset: 0, bytes: try blobStore.read(hash, offset: 0, length: Int(size), allocator: ByteBufferAllocator()))], to: to)
            case .pullIfStalled(let hash, let source):
                federation.schedule(at: federation.now.advanced(by: .seconds(1)), peer: id) { [unowned self] in
                    try perform(blobs.stalled(hash, from: source, links: links))
                }
            case .event(let event):
                if case .blobReceived = event { wake() }
            case .refused, .close: break  // honest simulated peers stay within the limits
            }
        }
    }

    private func receive(_ entries: [WireEntry], from member: String) throws {
        guard !entries.isEmpty else { return }
        try perform(replication.record(ChainReplication.positions(entries), from: member))
        let ownBefore = replication.mine[id]?.seq
        let outcome = try ledger.merge(entries)
        replication.setHeads(try ledger.heads())
        replication.hold(outcome.held)
        if outcome.stored > 0 { wake() }
        try perform(replication.merged(entries, stored: outcome.stored, from: member, links: links, now: federation.now))
        // The merge signed evidence into this peer's own chain: push it.
        if replication.mine[id]?.seq != ownBefore { try ledgerChanged() }
    }

    private func chunk(_ hash: ContentHash, offset: UInt64, bytes: ByteBuffer, from member: String) throws {
        guard let incoming = blobs.receiving(hash, from: member) else { return }
        do {
            try incoming.append(offset: offset, bytes: bytes)
            guard incoming.isComplete else { return }
            try incoming.commit()
        } catch {
            try perform(blobs.retry(hash, links: links))
            return
        }
        try perform(blobs.completed(hash, from: member, links: links))
    }

    private func ledgerChanged() throws {
        let after = replication.mine[id]?.seq
        replication.setHeads(try ledger.heads())
        replication.hold(try ledger.entries(author: id, after: after, limit: ChainReplication.recentPerChain))
        try perform(replication.changed(links: links))
    }

    func antiEntropy() throws {
        replication.setHeads(try ledger.heads())
        try perform(replication.tick(links: links, now: federation.now))
    }

    // MARK: - The round (as RoundEngine.Session.exchange drives it)

    /// Signs this peer's update entry (its commitment), pushes it, and starts the round's machine.
    func commit() throws {
        let (bytes, forged) = (SimulatedModel.bytes(author: id, variant: 0), SimulatedModel.bytes(author: id, variant: 1))
        if !behaviour.liesTo.isEmpty {
            // The second entry for the same position, signed but never stored here.
            let shown = try store.draft(author: id, kind: .update, round: InMemoryFederation.round, body: SimulatedModel.updateBody(forged),
                                        key: key, time: federation.date)
            let told = try store.append(author: id, kind: .update, round: InMemoryFederation.round, body: SimulatedModel.updateBody(bytes),
                                        key: key, time: federation.date)
            lie = (ChainHead(author: id, seq: told.header.seq, hash: ContentHash(told.hash)!),
                   WireEntry(header: shown.headerBytes, body: shown.body, hash: shown.hash, signature: shown.signature))
        } else {
            try store.append(author: id, kind: .update, round: InMemoryFederation.round, body: SimulatedModel.updateBody(bytes), key: key, time: federation.date)
        }
        try ledgerChanged()
        machine = Machine(plan: federation.plan(for: id), now: federation.now)
        try drive()
    }

    /// Something happened that may move the round on: drive the machine once the current event is handled.
    private func wake() {
        guard machine != nil, outcome == nil, !wakePending else { return }
        wakePending = true
        federation.schedule(at: federation.now, peer: id) { [unowned self] in
            wakePending = false
            try drive()
        }
    }

    private func setAlarm(_ at: ContinuousClock.Instant) {
        guard alarm != at else { return }
        alarm = at
        federation.schedule(at: at, peer: id) { [unowned self] in
            guard alarm == at else { return }
            alarm = nil
            wake()
        }
    }

    /// Feeds the machine what this peer now knows, and carries out its action, until it says wait.
    private func drive() throws {
        while var m = machine, outcome == nil {
            let now = federation.now
            var action = m.tick(now: now)
            let flagged = Set(try store.flaggedAuthors(caCertificate: federation.ca.certificate))
            if flagged != m.flagged { action = m.flagged(flagged, now: now) }
            for author in try readCommitments() { action = m.committed(author, now: now) }
            for author in commitments.keys.sorted() where !collected.contains(author) && m.collects(author) && !m.refused.contains(author) {
                guard let c = commitments[author], let bytes = blobStore.bytes(c.blob) else { continue }
                let ok = SimulatedModel.updateHash(bytes) == c.updateHash
                if ok { collected.insert(author) }
                action = m.checked(author, ok: ok, now: now)
            }
            if m.wantsReachability { action = m.reachable(reachable, now: now) }
            if m.phase == .confirming {
                if !echoed {
                    echoed = true
                    try perform(replication.echo(commitments.values.map(\.position).sorted { $0.author < $1.author }, links: links))
                }
                let watched = m.included.filter { $0 != id }.compactMap { commitments[$0]?.position }
                action = m.unconfirmed(replication.unconfirmed(watched, links: links), now: now)
            }
            notices += m.takeNotices().map { Noticed(notice: $0, after: federation.elapsed) }
            machine = m
            switch action {
            case .wait(let until):
                setAlarm(until)
                return
            case .reveal:
                guard !publishing else { return }
                publishing = true
                if behaviour.revealTakes > .zero {
                    federation.schedule(at: now.advanced(by: behaviour.revealTakes), peer: id) { [unowned self] in try reveal() }
                    return
                }
                try reveal()
                return
            case .confirm:
                continue
            case .close(let accepted):
                outcome = Outcome(accepted: accepted, failure: nil, after: federation.elapsed)
            case .fail(let reason):
                outcome = Outcome(accepted: nil, failure: reason, after: federation.elapsed)
            }
        }
    }

    /// Publishes this peer's bytes (the equivocator both versions), then lets collection start.
    private func reveal() throws {
        var versions = [SimulatedModel.bytes(author: id, variant: 0)]
        if lie != nil { versions.append(SimulatedModel.bytes(author: id, variant: 1)) }
        for bytes in versions {
            let hash = try blobStore.put(bytes)
            let a = Announce(author: id, round: InMemoryFederation.round, kind: .update, hash: hash, size: UInt64(bytes.count))
            blobs.own(a)
            let pushed = try blobStore.read(hash, offset: 0, length: bytes.count, allocator: ByteBufferAllocator())
            for member in links.connected.sorted() { send([.announce(a), .chunk(hash: hash, offset: 0, bytes: pushed)], to: member) }
        }
        _ = machine?.revealed(now: federation.now)
        try drive()
    }

    /// The round's update entries stored since the last read; returns their authors.
    private func readCommitments() throws -> [String] {
        let stored = try store.count(kind: .update, round: InMemoryFederation.round)
        guard stored != commitmentsRead else { return [] }
        commitmentsRead = stored
        var added: [String] = []
        for e in try store.entries(kind: .update, round: InMemoryFederation.round) where commitments[e.header.author] == nil {
            guard let body = EntryBody.decode(EntryBody.Update.self, from: e.body),
                  let blob = body.blob.flatMap(unhex).flatMap(ContentHash.init), let hash = ContentHash(e.hash) else { continue }
            commitments[e.header.author] = (body.updateHash, blob, ChainHead(author: e.header.author, seq: e.header.seq, hash: hash))
            added.append(e.header.author)
        }
        return added
    }
}

/// Stand-ins for models: deterministic bytes per member, and the hashes an update entry signs for them.
enum SimulatedModel {
    static func bytes(author: String, variant: Int) -> [UInt8] {
        var rng = SplitMix(state: author.utf8.reduce(UInt64(variant)) { $0 &* 31 &+ UInt64($1) })
        return (0..<512).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
    }

    /// What the update entry's `update_hash` names (the canonical hash of a real model).
    static func updateHash(_ bytes: [UInt8]) -> String { FLLedger.hex(SHA256.hash(data: Array("model".utf8) + bytes)) }

    static func updateBody(_ bytes: [UInt8]) -> [UInt8] {
        EntryBody.update(round: InMemoryFederation.round, baseHash: "00", updateHash: updateHash(bytes), samples: 10, codec: "sim",
                         metrics: [:], blob: FLLedger.hex(SHA256.hash(data: bytes)))
    }
}
