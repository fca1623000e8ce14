import FLIdentity
import FLWire
import NIOCore

/// Connection management as a value type: which members are connected (one
/// connection each), which links are cut, what each neighbour says it is
/// linked to, and whether a verified hello is admitted.
struct ConnectionRegistry {
    struct Connection: Sendable {
        let institution: String
        /// Back-pressured writes, for streaming a pulled blob's chunks.
        let output: NIOAsyncChannelOutboundWriter<WireMessage>
        let id: UInt64
        let channel: Channel

        /// Writes `messages` in order and flushes once. Called on the node's
        /// event loop, which is the channel's (one loop per peer), so the
        /// write happens at once, with no task or thread in between.
        func send(_ messages: [WireMessage]) {
            guard let last = messages.last else { return }
            for m in messages.dropLast() { channel.write(m, promise: nil) }
            channel.writeAndFlush(last, promise: nil)
        }
    }

    enum Admission: Equatable {
        case accept
        /// Refused with a goodbye (`code`, the rejection's reason) or, when `code` is nil, silently.
        case refuse(PeerRejection, code: UInt8?)
        /// A second connection to a connected member: closed with goodbye 2.
        case duplicate
    }

    private(set) var connections: [String: Connection] = [:]
    /// Every connection being served (handshaking or established), closed on shutdown.
    private(set) var open: [ObjectIdentifier: Channel] = [:]
    /// Members whose link to this node is cut (an injected fault).
    private(set) var cut: Set<String> = []
    private(set) var links = Links()
    private(set) var stopping = false
    private var rng: SplitMix

    init(seed: UInt64) { rng = SplitMix(state: seed) }

    mutating func opened(_ channel: Channel) { open[ObjectIdentifier(channel)] = channel }
    mutating func closed(_ channel: Channel) { open[ObjectIdentifier(channel)] = nil }
    mutating func stop() { stopping = true }
    mutating func cutLinks(to members: Set<String>) { cut.formUnion(members) }
    mutating func nextID() -> UInt64 { rng.next() }

    /// Whether a hello from `member` (its certificate verified) is admitted.
    func admit(_ hello: Hello, member: MemberCertificate, expected: String?, consortium: String) -> Admission {
        if let problem = Self.check(hello, member: member, expected: expected, consortium: consortium) { return .refuse(problem, code: 1) }
        if cut.contains(member.institution) {
            return .refuse(PeerRejection(.policy, "link to \(member.institution) is cut (injected fault)"), code: 3)
        }
        return connections[member.institution] == nil ? .accept : .duplicate
    }

    static func check(_ hello: Hello, member: MemberCertificate, expected: String?, consortium: String) -> PeerRejection? {
        if hello.protocolVersion != WireProtocol.version {
            return PeerRejection(.policy, "protocol version \(hello.protocolVersion) is not supported (this peer speaks \(WireProtocol.version))")
        }
        if hello.consortium != consortium {
            return PeerRejection(.wrongConsortium, "hello names consortium '\(hello.consortium)', expected '\(consortium)'")
        }
        if hello.institution != member.institution {
            return PeerRejection(.identityMismatch, "peer claims to be '\(hello.institution)' but its certificate is for '\(member.institution)'")
        }
        if let expected, expected != member.institution {
            return PeerRejection(.identityMismatch, "dialled '\(expected)' but reached '\(member.institution)'")
        }
        return nil
    }

    mutating func register(_ c: Connection) {
        connections[c.institution] = c
        links.connected.insert(c.institution)
    }

    /// Forgets `c` if it is still the member's connection; returns whether it was.
    mutating func remove(_ c: Connection) -> Bool {
        guard connections[c.institution]?.id == c.id else { return false }
        connections[c.institution] = nil
        links.connected.remove(c.institution)
        links.theirs[c.institution] = nil
        return true
    }

    /// A neighbour's list of its own links: whether it changed, and the links it lost.
    mutating func neighbours(_ ids: [String], of member: String) -> (changed: Bool, lost: Set<String>) {
        let now = Set(ids)
        let before = links.theirs[member] ?? []
        links.theirs[member] = now
        return (before != now, before.subtracting(now))
    }

    /// Members reachable now: connections and theirs (one relay away), and `me`.
    func reachable(me: String) -> Set<String> {
        var out = links.connected
        for c in links.connected { out.formUnion(links.theirs[c] ?? []) }
        out.insert(me)
        return out
    }

    /// Capped exponential backoff with jitter in [0.5, 1).
    mutating func backoff(_ attempt: Int, base: Duration, cap: Duration) -> Duration {
        min(base * (1 << min(attempt, 20)), cap) * (0.5 + 0.5 * rng.unit())
    }
}

/// SplitMix64, for reconnect jitter and connection ids.
struct SplitMix {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func unit() -> Double { Double(next() >> 11) * 0x1.0p-53 }
}
