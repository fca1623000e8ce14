import Crypto
import FLIdentity
import FLLedger
import FLWire
import Foundation

@testable import FLGossip
@testable import FLPeer

/// Several peers in one process, linked by an in-memory network, on an
/// injected clock: the test mode of the round protocol (no sockets, no
/// sleeping: the clock is `ContinuousClock` instants offset from a start,
/// moved only by the event queue). Each peer is a `SimulatedPeer`; messages between them are
/// `WireMessage` values delivered after each link's latency, in order per
/// direction, by a discrete-event queue (ordered by time, then by when an
/// event was scheduled). Latencies and training times are drawn from a
/// seed, so a run repeats.
final class InMemoryFederation {
    typealias Instant = ContinuousClock.Instant

    struct Settings {
        var members = ["a", "b", "c", "d", "e"]
        /// Who is linked to whom; nil: every pair (a full mesh).
        var links: [(String, String)]?
        var quorum = 3
        var deadline: Duration = .seconds(10)
        var confirmLimit: Duration = .seconds(2)
        /// Each link's one-way latency is drawn from this range (milliseconds).
        var latency: ClosedRange<Int> = 5...25
        /// Each member's training time is its behaviour's plus a draw from this range (milliseconds).
        var trainingJitter: ClosedRange<Int> = 0...50
        /// Each peer aggregates only its neighbours' updates and its own (the O(degree) round kind).
        var neighboursOnly = false
        var skipUnreachable = true
        /// Anti-entropy ticks (nil: none, so only pushes, relays and echoes move entries).
        var headsInterval: Duration? = .seconds(2)
        var behaviours: [String: SimulatedPeer.Behaviour] = [:]
        var seed: UInt64 = 1
    }

    static let consortium = "sim"
    static let round: UInt64 = 1
    /// Links come up at time zero; the round starts after this (genesis entries have replicated by then).
    static let warmUp: Duration = .seconds(1)

    let settings: Settings
    let ca: ConsortiumCA
    let start: Instant
    /// Wall-clock seconds at creation, whole: ledger times must lie within the members' certificates (issued now, for 5 days).
    let wallStart = Date().timeIntervalSince1970.rounded(.down)
    var roundStart: Instant { start.advanced(by: Self.warmUp) }
    private(set) var now: Instant
    private(set) var peers: [String: SimulatedPeer] = [:]
    private let directory: String

    private struct Link {
        var latency: Duration
        var up = true
        /// Bumped when the link goes down, so messages in flight on it are lost.
        var generation = 0
    }

    private var linkState: [String: Link] = [:]
    /// When the last message on each direction of a link arrives (links keep order, as TCP does).
    private var lastArrival: [String: Instant] = [:]

    private struct Event {
        let at: Instant
        let order: Int
        let peer: String
        let work: () throws -> Void
    }

    /// Pending events, latest first (the next one is last).
    private var queue: [Event] = []
    private var scheduled = 0
    private var rng: SplitMix

    init(_ settings: Settings) throws {
        self.settings = settings
        rng = SplitMix(state: settings.seed)
        start = ContinuousClock.now
        now = start
        // Ledgers sync every own append: on a memory file system that costs nothing.
        let scratch = FileManager.default.fileExists(atPath: "/dev/shm") ? "/dev/shm" : FileManager.default.temporaryDirectory.path
        directory = "\(scratch)/flpeer-federation-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        ca = try ConsortiumCA.create(consortium: Self.consortium)
        for id in settings.members {
            let (key, csr) = try InstitutionKey.generate(institution: id)
            let certificate = try PEMFiles.pem(try ca.sign(csr, days: 5))
            peers[id] = try SimulatedPeer(id: id, key: key, certificatePEM: certificate, behaviour: settings.behaviours[id] ?? .honest,
                                          directory: "\(directory)/\(id)", federation: self)
        }
        for (a, b) in edges {
            linkState[Self.key(a, b)] = Link(latency: .milliseconds(draw(settings.latency)))
        }
        for (a, b) in edges { connect(a, b) }
        for id in settings.members {
            let peer = peers[id]!
            if let interval = settings.headsInterval {
                let phase = Duration.milliseconds(draw(0...Int(interval.components.seconds * 1000) - 1))
                every(interval, from: start.advanced(by: phase), peer: id) { try peer.antiEntropy() }
            }
            let jitter = Duration.milliseconds(draw(settings.trainingJitter))
            if let training = peer.behaviour.commitsAfter {
                schedule(at: roundStart.advanced(by: training + jitter), peer: id) { try peer.commit() }
            }
            if let leaving = peer.behaviour.departsAfter {
                schedule(at: roundStart.advanced(by: leaving), peer: id) { self.depart(id) }
            }
        }
    }

    /// A seeded draw from `range`.
    private func draw(_ range: ClosedRange<Int>) -> Int { range.lowerBound + Int(rng.next() % UInt64(range.count)) }

    deinit { try? FileManager.default.removeItem(atPath: directory) }

    /// Every link as a sorted pair.
    var edges: [(String, String)] {
        let all = settings.links ?? settings.members.flatMap { a in settings.members.filter { $0 > a }.map { (a, $0) } }
        return all.map { $0 < $1 ? ($0, $1) : ($1, $0) }.sorted { ($0.0, $0.1) < ($1.0, $1.1) }
    }

    /// The members linked to `id` by the topology (whether or not the link is up now).
    func neighbours(of id: String) -> Set<String> {
        Set(edges.compactMap { $0.0 == id ? $0.1 : $0.1 == id ? $0.0 : nil })
    }

    /// The round's plan at `id`.
    func plan(for id: String) -> SimulatedPeer.Machine.Plan {
        .init(round: Self.round, inputs: settings.neighboursOnly ? neighbours(of: id).union([id]) : Set(settings.members), me: id,
              quorum: settings.quorum, commitFirst: true, skipUnreachable: settings.skipUnreachable,
              deadline: settings.deadline, confirmLimit: settings.confirmLimit)
    }

    /// Time since the round started.
    var elapsed: Duration { now - roundStart }

    /// A wall-clock time for ledger entries, derived from the simulated clock.
    var date: Date {
        let t = (now - start).components
        return Date(timeIntervalSince1970: wallStart + Double(t.seconds) + Double(t.attoseconds) * 1e-18)
    }

    // MARK: - Running

    /// Carries out every event up to `limit` after the round's start.
    func run(for limit: Duration) throws {
        let end = roundStart.advanced(by: limit)
        while let next = queue.last, next.at <= end {
            queue.removeLast()
            now = next.at
            guard let peer = peers[next.peer], !peer.departed else { continue }
            try next.work()
        }
        now = end
    }

    /// Runs `work` at `at` as `peer` (dropped if the peer departed by then).
    func schedule(at: Instant, peer: String, _ work: @escaping () throws -> Void) {
        let event = Event(at: max(at, now), order: scheduled, peer: peer, work: work)
        scheduled += 1
        // Binary search for the place that keeps the queue latest first.
        var low = 0, high = queue.count
        while low < high {
            let mid = (low + high) / 2
            if (queue[mid].at, queue[mid].order) > (event.at, event.order) { low = mid + 1 } else { high = mid }
        }
        queue.insert(event, at: low)
    }

    private func every(_ interval: Duration, from first: Instant, peer: String, _ work: @escaping () throws -> Void) {
        schedule(at: first, peer: peer) { [unowned self] in
            try work()
            every(interval, from: first.advanced(by: interval), peer: peer, work)
        }
    }

    // MARK: - The network

    private static func key(_ a: String, _ b: String) -> String { a < b ? "\(a)|\(b)" : "\(b)|\(a)" }

    /// Sends `messages` from `from` to `to` over their link (lost if the link is down or goes down on the way).
    func transmit(_ messages: [WireMessage], from: String, to: String) {
        let key = Self.key(from, to)
        guard let link = linkState[key], link.up, !messages.isEmpty else { return }
        let direction = "\(from)>\(to)"
        let at = max(now.advanced(by: link.latency), lastArrival[direction] ?? now)
        lastArrival[direction] = at
        schedule(at: at, peer: to) { [unowned self] in
            guard let l = linkState[key], l.up, l.generation == link.generation else { return }
            try peers[to]!.handle(messages, from: from)
        }
    }

    /// Brings a link up: each side sends its hello with its heads.
    private func connect(_ a: String, _ b: String) {
        transmit([.hello(peers[a]!.hello())], from: a, to: b)
        transmit([.hello(peers[b]!.hello())], from: b, to: a)
    }

    /// Takes a link down: what is in flight is lost, and each side sees the connection close after the link's latency.
    func cut(_ a: String, _ b: String) {
        let key = Self.key(a, b)
        guard var link = linkState[key], link.up else { return }
        link.up = false
        link.generation += 1
        linkState[key] = link
        for (side, other) in [(a, b), (b, a)] {
            schedule(at: now.advanced(by: link.latency), peer: side) { [unowned self] in try peers[side]!.closed(other) }
        }
    }

    /// `id` leaves for good: its links drop and it stops.
    func depart(_ id: String) {
        for other in neighbours(of: id).sorted() { cut(id, other) }
        peers[id]!.departed = true
    }
}
