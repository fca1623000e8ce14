import FLWire

/// Blob dissemination by announce/pull as a value-type state machine: which
/// blobs are announced, which are being received from whom (and who else
/// offered them), and what to send. Announcements, chunks and disconnects go
/// in; actions come out for the node to carry out. Chunk bytes are written by
/// the node (a large blob's on a thread pool).
struct BlobExchange {
    enum Action: Equatable {
        case send(to: String, [WireMessage])
        /// Stream the stored blob's chunks to `to`.
        case stream(ContentHash, size: UInt64, to: String)
        /// Pull from `from` if nothing of the blob arrived within a second (its author pushes small blobs unasked).
        case pullIfStalled(ContentHash, from: String)
        case event(GossipEvent)
        /// An announcement was not pulled (logged with the reason).
        case refused(Announce, from: String, reason: String)
        /// `member` exceeded a bound: close its connection, logging the reason.
        case close(String, reason: String)
    }

    /// Who offered a blob for which round: the round protocol names one blob per key.
    struct NameKey: Hashable {
        let source: String
        let author: String
        let round: UInt64
        let kind: Announce.Kind
    }

    struct Inflight {
        var announce: Announce
        var source: String
        var otherSources: [String]
        var incoming: IncomingBlob
    }

    let store: BlobStore
    /// Every blob this node announced or received, by hash (re-announced to new neighbours).
    private(set) var announcements: [ContentHash: Announce] = [:]
    private(set) var inflight: [ContentHash: Inflight] = [:]
    /// Announcements of updates and aggregates for rounds before this are
    /// replays or stragglers: dropped unpulled.
    private(set) var minimumRound: UInt64 = 0

    let limits: BlobLimits
    /// The consortium's members: the only authors whose blobs are pulled (empty: any).
    let members: Set<String>
    /// Blobs pulled per source, author, round and kind (rounds below `minimumRound` forgotten).
    private(set) var named: [NameKey: Int] = [:]
    /// Refused announcements per connected member (reset when it disconnects).
    private(set) var refusals: [String: Int] = [:]

    init(store: BlobStore, limits: BlobLimits = BlobLimits(), members: Set<String> = []) {
        self.store = store
        self.limits = limits
        self.members = members
    }

    mutating func setMinimumRound(_ round: UInt64) {
        minimumRound = max(minimumRound, round)
        named = named.filter { $0.key.round >= minimumRound }
    }

    /// Blobs and announced bytes being received from `member`.
    func load(of member: String) -> (blobs: Int, bytes: UInt64) {
        inflight.values.reduce((0, 0)) { $1.source == member ? ($0.0 + 1, $0.1 + $1.announce.size) : $0 }
    }

    /// This node stored and announces `a` itself.
    mutating func own(_ a: Announce) { announcements[a.hash] = a }

    /// A new neighbour hears of every blob this node has.
    func connected(_ member: String) -> [Action] {
        let all = announcements.values.sorted { ($0.round, $0.author, hex($0.hash.bytes)) < ($1.round, $1.author, hex($1.hash.bytes)) }
        return all.isEmpty ? [] : [.send(to: member, all.map { .announce($0) })]
    }

    /// A neighbour lost its links to `authors`: re-announce their blobs to it (it may depend on this node now).
    func lostLinks(_ authors: Set<String>, of member: String) -> [Action] {
        let again = announcements.values.filter { authors.contains($0.author) }
        return again.isEmpty ? [] : [.send(to: member, again.map { .announce($0) })]
    }

    mutating func announced(_ a: Announce, from member: String) -> [Action] {
        if a.kind != .other && a.round < minimumRound && !store.has(a.hash) {
            return [.event(.stale(a, from: member))]
        }
        if store.has(a.hash) { return [.event(.duplicate(hash: a.hash, from: member))] }
        if var f = inflight[a.hash] {
            if f.source != member && !f.otherSources.contains(member) { f.otherSources.append(member) }
            inflight[a.hash] = f
            return [.event(.duplicate(hash: a.hash, from: member))]
        }
        if let reason = refusal(a, from: member) { return refuse(a, from: member, reason: reason) }
        let (blobs, bytes) = load(of: member)
        if blobs + 1 > limits.inflightBlobsPerMember {
            return [.close(member, reason: "\(member) has more than \(limits.inflightBlobsPerMember) blobs in flight (the bound per member)")]
        }
        if bytes + a.size > limits.inflightBytesPerMember {
            return [.close(member, reason: "\(member) has more than \(limits.inflightBytesPerMember) announced bytes in flight (the bound per member)")]
        }
        named[NameKey(source: member, author: a.author, round: a.round, kind: a.kind), default: 0] += 1
        inflight[a.hash] = Inflight(announce: a, source: member, otherSources: [], incoming: store.beginReceiving(a.hash, size: a.size))
        // Its author pushes a small blob right behind the announcement; pull only if it stalls.
        if a.author == member && a.size <= WireProtocol.pushLimit { return [.pullIfStalled(a.hash, from: member)] }
        return [.send(to: member, [.pull(hash: a.hash)])]
    }

    /// Why an announcement that is neither stored nor in flight is not pulled, if it is not.
    func refusal(_ a: Announce, from member: String) -> String? {
        if a.size > limits.maxBlobSize {
            return "announced size \(a.size) bytes exceeds the plan's bound of \(limits.maxBlobSize) bytes"
        }
        if !members.isEmpty && !members.contains(a.author) { return "author \(a.author) is not a member of the consortium" }
        if a.round > minimumRound + limits.roundsAhead {
            return "round \(a.round) is more than \(limits.roundsAhead) rounds beyond the oldest open round \(minimumRound)"
        }
        let key = NameKey(source: member, author: a.author, round: a.round, kind: a.kind)
        if named[key, default: 0] >= limits.blobsPerAuthorRound {
            return "\(member) already offered \(limits.blobsPerAuthorRound) blobs of \(a.author)'s round \(a.round); the round protocol names one"
        }
        return nil
    }

    private mutating func refuse(_ a: Announce, from member: String, reason: String) -> [Action] {
        refusals[member, default: 0] += 1
        var actions: [Action] = [.refused(a, from: member, reason: reason)]
        if refusals[member, default: 0] == limits.refusalsPerConnection {
            actions.append(.close(member, reason: "\(member) sent \(limits.refusalsPerConnection) refused announcements (the bound per connection)"))
        }
        return actions
    }

    /// `member` asked for a blob.
    func pulled(_ hash: ContentHash, by member: String) -> [Action] {
        guard store.has(hash), let size = store.size(hash) else { return [.send(to: member, [.notFound(hash: hash)])] }
        return [.stream(hash, size: size, to: member)]
    }

    /// Where a chunk from `member` goes: the blob being received from it, or nil (a duplicate).
    func receiving(_ hash: ContentHash, from member: String) -> IncomingBlob? {
        guard let f = inflight[hash], f.source == member else { return nil }
        return f.incoming
    }

    /// A blob arrived whole and checked: tell the engine and announce it to the
    /// neighbours not linked to its author.
    mutating func completed(_ hash: ContentHash, from member: String, links: Links) -> [Action] {
        guard let f = inflight.removeValue(forKey: hash) else { return [] }
        announcements[hash] = f.announce
        var actions: [Action] = [.event(.blobReceived(f.announce, from: member))]
        for other in links.connected.sorted() where other != member && !links.direct(other, to: f.announce.author) {
            actions.append(.send(to: other, [.announce(f.announce)]))
        }
        return actions
    }

    /// `member` does not have a blob it was asked for.
    mutating func notFound(_ hash: ContentHash, from member: String, links: Links) -> [Action] {
        guard inflight[hash]?.source == member else { return [] }
        return retry(hash, links: links)
    }

    /// Nothing of a pushed blob arrived in time: pull it.
    mutating func stalled(_ hash: ContentHash, from source: String, links: Links) -> [Action] {
        guard let f = inflight[hash], f.source == source, f.incoming.received == 0 else { return [] }
        return links.connected.contains(source) ? [.send(to: source, [.pull(hash: hash)])] : retry(hash, links: links)
    }

    /// Abandons the current source of a blob (bad data, gone) and pulls it from the next one.
    mutating func retry(_ hash: ContentHash, links: Links) -> [Action] {
        guard var f = inflight.removeValue(forKey: hash) else { return [] }
        f.incoming.abandon()
        while !f.otherSources.isEmpty {
            let next = f.otherSources.removeFirst()
            guard links.connected.contains(next) else { continue }
            inflight[hash] = Inflight(announce: f.announce, source: next, otherSources: f.otherSources,
                                      incoming: store.beginReceiving(hash, size: f.announce.size))
            return [.send(to: next, [.pull(hash: hash)])]
        }
        return []
    }

    /// A neighbour's connection closed: blobs coming from it come from the next source.
    mutating func disconnected(_ member: String, links: Links) -> [Action] {
        refusals[member] = nil
        return inflight.filter { $0.value.source == member }.keys.sorted { $0.bytes.lexicographicallyPrecedes($1.bytes) }
            .flatMap { retry($0, links: links) }
    }
}
