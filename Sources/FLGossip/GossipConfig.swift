import FLIdentity
import FLWire
import Foundation
import NIOPosix

/// Where to reach another member.
public struct PeerAddress: Sendable, Hashable {
    public let institution: String
    public let host: String
    public let port: Int
    public init(institution: String, host: String, port: Int) {
        self.institution = institution
        self.host = host
        self.port = port
    }
}

/// Everything a gossip node needs.
public struct GossipConfig: Sendable {
    public var tls: PeerTLS
    public var listenHost: String
    /// 0 lets the OS choose (tests).
    public var listenPort: Int
    /// Members this node dials (and keeps dialling); others may dial it.
    public var dial: [PeerAddress]
    public var blobDirectory: String
    /// What this node pulls from a member, and how much it holds in flight for one.
    public var blobLimits = BlobLimits()
    /// The blob window's first round at start (`GossipNode.setMinimumRound` moves it on).
    public var minimumRound: UInt64 = 0
    /// Bytes per chunk when sending blobs.
    public var chunkSize: Int = 262_144
    /// Send a ping after this long without writing.
    public var keepaliveInterval: Duration = .seconds(5)
    /// Close a connection after this long without reading anything.
    public var idleTimeout: Duration = .seconds(20)
    /// A peer must finish TLS and send its hello within this time.
    public var handshakeTimeout: Duration = .seconds(10)
    /// Reconnect backoff: base · 2^attempt, capped, times a jitter in [0.5, 1).
    public var backoffBase: Duration = .milliseconds(100)
    public var backoffCap: Duration = .seconds(10)
    /// Anti-entropy: this often, a node whose ledger heads changed since the
    /// last tick sends them to every neighbour (a safety net under push,
    /// relay and pull; a neighbour that is behind pulls).
    public var headsInterval: Duration = .seconds(2)
    /// The ledger whose chains this node replicates, if any.
    public var ledger: (any LedgerReplica)?
    /// Seeds the reconnect jitter.
    public var seed: UInt64 = 0
    /// For evaluating misbehaviour only: the id to claim in the hello instead
    /// of the certificate's.
    var claimedInstitution: String?
    /// Where ledger reads and merges and large blobs' file I/O run (never the event loop).
    public var threadPool: NIOThreadPool = .singleton
    /// Current time for certificate validation (injected in tests).
    public var clock: @Sendable () -> Date = { Date() }

    public init(tls: PeerTLS, listenHost: String = "127.0.0.1", listenPort: Int = 0, dial: [PeerAddress] = [], blobDirectory: String) {
        self.tls = tls
        self.listenHost = listenHost
        self.listenPort = listenPort
        self.dial = dial
        self.blobDirectory = blobDirectory
    }

    public var institution: String { tls.member.institution }
    public var consortium: String { tls.trust.consortium }
}

/// Something a node observed; tests and the round engine consume these.
public enum GossipEvent: Sendable, Equatable {
    /// A member completed TLS and hello.
    case connected(institution: String, inbound: Bool)
    case disconnected(institution: String)
    /// A connection was refused, with the reason that was logged.
    case rejected(remote: String, code: String, reason: String)
    /// A blob arrived complete, hash-checked, from `from`.
    case blobReceived(Announce, from: String)
    /// A duplicate announcement or chunk was ignored.
    case duplicate(hash: ContentHash, from: String)
    /// An announcement for a round before `setMinimumRound` was dropped.
    case stale(Announce, from: String)
    /// Ledger entries from `from` were merged; `stored` were new.
    case ledgerMerged(from: String, stored: Int)
    /// A neighbour showed chain positions it holds that it had not shown before (echo confirmation may progress).
    case positionsReported(by: String)
    /// A neighbour's list of its own connections changed (who is reachable may have changed).
    case neighboursChanged(of: String)
}
