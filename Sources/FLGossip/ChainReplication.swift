import FLWire

/// Chain replication as a value-type state machine: what this node knows of
/// its own and its neighbours' ledger chains, and what to send whom. Messages
/// and ticks go in; actions come out, and the node carries them out (sends,
/// and reads or merges on a thread pool, never on the event loop). It keeps
/// the last entries of every chain it holds, so pushes and most pulls are
/// answered without reading the ledger.
struct ChainReplication {
    typealias Instant = ContinuousClock.Instant

    enum Action: Hashable {
        case send(to: String, [WireMessage])
        /// Read up to `ChainReplication.batch` entries of `author` after `after` from the ledger and send them to `to`.
        case serve(author: String, after: UInt64?, to: String)
        /// Look up the hash this node holds at (`author`, `seq`); if it differs from `theirs`, call `conflictFound`.
        case lookUp(author: String, seq: UInt64, theirs: ContentHash, from: String)
        /// `member` reported new chain positions (an event for the round engine).
        case positionsReported(String)
        /// Anti-entropy repaired `member`: it still lacked `chains` a tick after this node held them (logged).
        case repair(member: String, chains: [String])
        /// `from` holds a different entry at (`author`, `seq`); its entry is being pulled (logged).
        case conflict(author: String, seq: UInt64, from: String)
    }

    /// Entries per `ledger-entries` message.
    static let batch = 64
    /// Entries kept per chain for pushes and pulls.
    static let recentPerChain = 16
    /// Bound on the chains tracked per neighbour (a hostile one may name many).
    static let maximumChains = 1024

    /// This node's heads, by author.
    private(set) var mine: [String: ChainHead] = [:]
    private(set) var mineSorted: [ChainHead] = []
    /// The last heads each neighbour reported (or was pushed).
    private var peerHeads: [String: [String: ChainHead]] = [:]
    /// Positions each neighbour showed it holds (heads, entries it sent), at most 16 per chain.
    private var reported: [String: [String: [UInt64: ContentHash]]] = [:]
    /// When each neighbour last reported its head of each chain.
    private var reportedAt: [String: [String: Instant]] = [:]
    /// Conflict pulls already sent, "member|author#seq" (each at most once).
    private var conflictPulls: Set<String> = []
    /// The outstanding pull per chain: after which seq, and when.
    private var pendingPulls: [String: (after: UInt64?, at: Instant)] = [:]
    /// The highest position of each chain received and waiting for a merge
    /// (not pulled again meanwhile: a neighbour's echo often names it first).
    private var queued: [String: UInt64] = [:]
    /// The last entries of each chain this node holds.
    private var recent: [String: [UInt64: WireEntry]] = [:]
    // Anti-entropy: the heads the last tick saw, the neighbours it sent them to,
    // what each neighbour lacked then, and when it ran.
    private var lastTickHeads: [ChainHead] = []
    private var lastTickSentTo: Set<String> = []
    private var ticks = 0
    private var lackedAtLastTick: [String: [String: UInt64]] = [:]
    private var lastTick: Instant?

    // MARK: - This node's chains

    /// This node's heads as read from its ledger (after a merge, an own
    /// append, a tick). Chains only grow: a read older than one already seen
    /// (reads run concurrently off the event loop) changes nothing.
    mutating func setHeads(_ heads: [ChainHead]) {
        var changed = false
        for h in heads where (mine[h.author]?.seq).map({ h.seq > $0 }) ?? true {
            mine[h.author] = h
            changed = true
        }
        if changed { mineSorted = mine.values.sorted { $0.author < $1.author } }
    }

    /// Entries this node now holds (merged or appended), kept for pushes and pulls.
    mutating func hold(_ entries: [WireEntry]) {
        for e in entries {
            guard let author = WireEntry.author(of: e.header), let seq = WireEntry.seq(of: e.header),
                  recent[author] != nil || recent.count < Self.maximumChains else { continue }
            // Taken out and put back: mutating a copy read from the dictionary would copy the chain.
            var chain = recent.removeValue(forKey: author) ?? [:]
            chain[seq] = e
            while chain.count > Self.recentPerChain, let oldest = chain.keys.min() { chain[oldest] = nil }
            recent[author] = chain
        }
    }

    /// The held entries of `author` after `after` up to its head, if every one is kept.
    func held(author: String, after: UInt64?, limit: Int) -> [WireEntry]? {
        guard let head = mine[author], let chain = recent[author] else { return nil }
        let first = after.map { $0 + 1 } ?? 0
        guard first <= head.seq else { return [] }
        let last = min(head.seq, first + UInt64(limit) - 1)
        var out: [WireEntry] = []
        for seq in first...last {
            guard let e = chain[seq] else { return nil }
            out.append(e)
        }
        return out
    }

    /// The hash held at (`author`, `seq`): nil when not known without reading the ledger.
    func heldHash(author: String, seq: UInt64) -> ContentHash? {
        if let head = mine[author], head.seq == seq { return head.hash }
        return recent[author]?[seq].flatMap { ContentHash($0.hash) }
    }

    // MARK: - Neighbours

    /// A neighbour's connection closed.
    mutating func disconnected(_ member: String) {
        peerHeads[member] = nil
        reportedAt[member] = nil
        reported[member] = nil
        lackedAtLastTick[member] = nil
    }

    /// Entries at `positions` arrived and wait for a merge.
    mutating func queue(_ positions: [ChainHead]) {
        for p in positions where (queued[p.author].map { p.seq > $0 } ?? true) && (queued[p.author] != nil || queued.count < Self.maximumChains) {
            queued[p.author] = p.seq
        }
    }

    /// A merge of `entries` failed: their chains may be pulled again.
    mutating func mergeFailed(_ entries: [WireEntry]) {
        for p in Self.positions(entries) { queued[p.author] = nil }
    }

    /// The furthest position of `author`'s chain that a neighbour reported
    /// holding, and which neighbour (a peer compares its own chain with it).
    func furthestReported(of author: String) -> (seq: UInt64, member: String)? {
        var best: (seq: UInt64, member: String)?
        for (member, chains) in reported {
            guard let seq = chains[author]?.keys.max() else { continue }
            if best.map({ seq > $0.seq }) ?? true { best = (seq, member) }
        }
        for (member, heads) in peerHeads {
            guard let seq = heads[author]?.seq else { continue }
            if best.map({ seq > $0.seq }) ?? true { best = (seq, member) }
        }
        return best
    }

    /// `member` showed it holds `heads` (a hello, `ledger-heads`, or entries it sent).
    mutating func record(_ heads: [ChainHead], from member: String) -> [Action] {
        // Taken out and put back (a value taken out is uniquely referenced, so
        // mutating it copies nothing; a copy read from the dictionary would).
        var theirs = reported.removeValue(forKey: member) ?? [:]
        defer { reported[member] = theirs }
        var changed = false
        for h in heads {
            var positions = theirs.removeValue(forKey: h.author) ?? [:]
            guard !positions.isEmpty || theirs.count < Self.maximumChains else { continue }
            if positions.updateValue(h.hash, forKey: h.seq) != h.hash { changed = true }
            if positions.count > 16, let oldest = positions.keys.min() { positions[oldest] = nil }
            theirs[h.author] = positions
        }
        return changed ? [.positionsReported(member)] : []
    }

    /// `member` reported heads (a hello or `ledger-heads`, perhaps an echo of
    /// some chains only): remember them and pull what it holds beyond this
    /// node, and its entry where it holds a different one (a fork).
    mutating func heard(_ heads: [ChainHead], from member: String, now: Instant) -> [Action] {
        record(heads, from: member) + requestMissing(heads, from: member, now: now)
    }

    /// Pulls every chain in which `member` is ahead of this node, and the
    /// entry of every position where it holds a different one (the merge
    /// turns the pair into fork evidence). `theirs` may name only some
    /// chains; the others keep what it last reported.
    mutating func requestMissing(_ theirs: [ChainHead], from member: String, now: Instant) -> [Action] {
        var known = peerHeads.removeValue(forKey: member) ?? [:]
        var times = reportedAt.removeValue(forKey: member) ?? [:]
        for head in theirs {
            if known[head.author] != nil || known.count < Self.maximumChains {
                if let k = known[head.author], k.seq > head.seq { continue }  // an echo of an older position
                known[head.author] = head
            }
            if times[head.author] != nil || times.count < Self.maximumChains { times[head.author] = now }
        }
        // Put back (taken out above so that mutating them copied nothing).
        peerHeads[member] = known
        reportedAt[member] = times
        var actions: [Action] = []
        for head in theirs {
            if let my = mine[head.author], head.seq <= my.seq {
                if let ours = heldHash(author: head.author, seq: head.seq) {
                    if ours != head.hash { actions += conflictFound(head, from: member) }
                } else {
                    actions.append(.lookUp(author: head.author, seq: head.seq, theirs: head.hash, from: member))
                }
                continue
            }
            if let q = queued[head.author], q >= head.seq { continue }  // received, being merged
            let after = mine[head.author]?.seq
            // One pull per chain position at a time: every neighbour offers the same entries.
            if let pending = pendingPulls[head.author], pending.after == after, now - pending.at < .milliseconds(500) { continue }
            pendingPulls[head.author] = (after, now)
            actions.append(.send(to: member, [.ledgerPull(author: head.author, after: after ?? 0, fromStart: after == nil)]))
        }
        return actions
    }

    /// `member` holds `head`, which differs from this node's entry there: pull it (once).
    mutating func conflictFound(_ head: ChainHead, from member: String) -> [Action] {
        if conflictPulls.count > 4096 { conflictPulls.removeAll() }
        guard conflictPulls.insert("\(member)|\(head.author)#\(head.seq)").inserted else { return [] }
        return [.conflict(author: head.author, seq: head.seq, from: member),
                .send(to: member, [.ledgerPull(author: head.author, after: head.seq == 0 ? 0 : head.seq - 1, fromStart: head.seq == 0)])]
    }

    /// `member` asked for entries of `author` after `after`.
    func pulled(author: String, after: UInt64?, by member: String) -> [Action] {
        if let entries = held(author: author, after: after, limit: Self.batch) {
            return entries.isEmpty ? [] : [.send(to: member, WireMessage.ledgerEntryMessages(entries))]
        }
        return [.serve(author: author, after: after, to: member)]
    }

    /// The chain positions of received entries (the sender holds them).
    static func positions(_ entries: [WireEntry]) -> [ChainHead] {
        entries.compactMap { e in
            guard let author = WireEntry.author(of: e.header), let seq = WireEntry.seq(of: e.header), let hash = ContentHash(e.hash) else { return nil }
            return ChainHead(author: author, seq: seq, hash: hash)
        }
    }

    /// Entries from `member` were merged (this node's heads already updated):
    /// pull gaps from it, tell the other neighbours, and keep pulling after a full batch.
    mutating func merged(_ entries: [WireEntry], stored: Int, from member: String, links: Links, now: Instant) -> [Action] {
        let positions = Self.positions(entries)
        for author in Set(positions.map(\.author)) {
            pendingPulls[author] = nil
            if let q = queued[author], q <= (mine[author]?.seq ?? 0) || positions.contains(where: { $0.author == author && $0.seq == q }) { queued[author] = nil }
        }
        // A chain whose entries start past this node's head + 1 (a push that
        // assumed more than this node holds): pull the gap. (Entries right
        // after the head that were refused diverge from it: a fork, not a gap.)
        let gaps = Dictionary(grouping: positions, by: \.author).compactMap { author, heads -> ChainHead? in
            guard let first = heads.map(\.seq).min(), let last = heads.max(by: { $0.seq < $1.seq }) else { return nil }
            return first > (mine[author].map { $0.seq + 1 } ?? 0) ? last : nil
        }
        var actions = gaps.isEmpty ? [] : requestMissing(gaps, from: member, now: now)
        guard stored > 0 else { return actions }
        // Entries that `member` relayed from authors this node has no link to
        // (so it may not echo them): tell it this node holds them now, so that
        // it can count this node's confirmation (see `unconfirmed`) without
        // waiting for an anti-entropy tick.
        let relayed = Set(positions.map(\.author)).subtracting(links.connected).subtracting([member]).sorted().compactMap { mine[$0] }
        if !relayed.isEmpty { actions.append(.send(to: member, [.ledgerHeads(relayed)])) }
        actions += relayHeads(authors: Set(positions.map(\.author)), except: member, links: links)
        if entries.count == Self.batch, let theirs = peerHeads[member] {
            actions += requestMissing(theirs.values.sorted { $0.author < $1.author }, from: member, now: now)
        }
        return actions
    }

    /// Sends this node's heads to every neighbour (but `except`) that is not
    /// directly connected to all of `authors` and not known to hold these heads.
    func relayHeads(authors: Set<String>, except: String, links: Links) -> [Action] {
        links.connected.sorted().compactMap { other in
            guard other != except else { return nil }
            if !authors.isEmpty && authors.allSatisfy({ links.direct(other, to: $0) }) { return nil }
            let theirs = peerHeads[other] ?? [:]
            if mineSorted.allSatisfy({ head in theirs[head.author].map { $0.seq >= head.seq } ?? false }) { return nil }
            return .send(to: other, [.ledgerHeads(mineSorted)])
        }
    }

    /// This node's ledger changed (a local append): push each neighbour the
    /// kept entries it is known to lack, and the heads to those the push did
    /// not bring up to date (so they pull the rest).
    mutating func changed(links: Links) -> [Action] {
        var actions: [Action] = []
        for member in links.connected.sorted() {
            let (entries, complete) = push(to: member)
            var messages = WireMessage.ledgerEntryMessages(entries)
            if !complete { messages.append(.ledgerHeads(mineSorted)) }
            if !messages.isEmpty { actions.append(.send(to: member, messages)) }
        }
        return actions
    }

    /// The kept entries `member` lacks (at most 8 per chain), assumed held
    /// from now on, and whether it then holds every head of this node.
    private mutating func push(to member: String) -> ([WireEntry], Bool) {
        // Taken out and put back, as in `record`.
        guard var theirs = peerHeads.removeValue(forKey: member) else { return ([], false) }
        defer { peerHeads[member] = theirs }
        var batch: [WireEntry] = []
        for head in mineSorted {
            guard let seq = theirs[head.author]?.seq, head.seq > seq, head.seq - seq <= 8,
                  let entries = held(author: head.author, after: seq, limit: 8), !entries.isEmpty else { continue }
            batch += entries
            theirs[head.author] = head
        }
        return (batch, mineSorted.allSatisfy { head in theirs[head.author].map { $0.seq >= head.seq } ?? false })
    }

    /// Echo: tells every neighbour (but each position's author) which chain
    /// positions this node holds, so that an author that showed members
    /// different entries for one position is caught (see `unconfirmed`).
    func echo(_ positions: [ChainHead], links: Links) -> [Action] {
        links.connected.sorted().compactMap { member in
            let shown = positions.filter { $0.author != member }
            return shown.isEmpty ? nil : .send(to: member, [.ledgerHeads(shown)])
        }
    }

    /// The authors among `entries` (positions this node holds) that some
    /// neighbour other than the author has not yet shown it holds with the
    /// same hash. A neighbour that showed this node's head of a chain holds
    /// every earlier position too (each entry names the previous one's hash).
    func unconfirmed(_ entries: [ChainHead], links: Links) -> Set<String> {
        var out = Set<String>()
        for e in entries {
            for neighbour in links.connected where neighbour != e.author {
                let shown = reported[neighbour]?[e.author]
                if shown?[e.seq] == e.hash { continue }
                if let head = mine[e.author], head.seq >= e.seq, shown?[head.seq] == head.hash { continue }
                out.insert(e.author)
                break
            }
        }
        return out
    }

    /// A neighbour's list of links lost some: it may now depend on relays, so send it the heads.
    func neighbourLostLinks(_ member: String) -> [Action] {
        [.send(to: member, [.ledgerHeads(mineSorted)])]
    }

    // MARK: - Anti-entropy

    /// One anti-entropy tick: changed heads go to every neighbour once (and
    /// again every fifth tick, in case a pull or its answer was lost with a
    /// closed connection); a neighbour that reported its heads a second after
    /// the last tick and still lacked a position this node then held is
    /// repaired by them (and logged: a clean run needs none).
    mutating func tick(links: Links, now: Instant) -> [Action] {
        ticks += 1
        var actions = noteRepairs(links: links, now: now)
        if mineSorted != lastTickHeads || ticks % 5 == 0 {
            lastTickHeads = mineSorted
            lastTickSentTo = []
        }
        for member in links.connected.sorted() where !lastTickSentTo.contains(member) {
            actions.append(.send(to: member, [.ledgerHeads(mineSorted)]))
            lastTickSentTo.insert(member)
        }
        return actions
    }

    private mutating func noteRepairs(links: Links, now: Instant) -> [Action] {
        var lacked: [String: [String: UInt64]] = [:]
        var actions: [Action] = []
        for member in links.connected.sorted() {
            let theirs = peerHeads[member] ?? [:]
            var missing: [String: UInt64] = [:]
            for head in mineSorted where head.author != member && (theirs[head.author].map { $0.seq < head.seq } ?? true) {
                missing[head.author] = head.seq
            }
            lacked[member] = missing
            guard let lastTick, let before = lackedAtLastTick[member] else { continue }
            let stuck = missing.keys.filter { author in
                guard let old = before[author], let at = reportedAt[member]?[author], at >= lastTick + .seconds(1) else { return false }
                return (theirs[author]?.seq ?? 0) < old
            }
            if !stuck.isEmpty {
                actions.append(.repair(member: member, chains: stuck.sorted()))
                lastTickSentTo.remove(member)
            }
        }
        lackedAtLastTick = lacked
        lastTick = now
        return actions
    }
}

/// Who is linked to whom, as far as this node knows: its connections and
/// the links each neighbour last reported.
struct Links: Sendable {
    var connected: Set<String> = []
    var theirs: [String: Set<String>] = [:]

    /// True when `neighbour` reported a direct connection to `author` (or is it).
    func direct(_ neighbour: String, to author: String) -> Bool {
        neighbour == author || theirs[neighbour]?.contains(author) == true
    }
}
