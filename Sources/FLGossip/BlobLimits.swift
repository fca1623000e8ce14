/// What a peer accepts from one member's blob announcements, so that no
/// member can fill its disk or memory (docs/wire-protocol.md, "Blob limits").
public struct BlobLimits: Sendable, Equatable {
    /// Largest blob pulled: the plan's update size (parameter count × 4 bytes) plus slack.
    public var maxBlobSize: UInt64
    /// Blobs being received from one member (its connection) at once; one more closes the connection.
    public var inflightBlobsPerMember: Int
    /// Announced bytes being received from one member at once (its `.part` files and memory
    /// buffers); more closes the connection.
    public var inflightBytesPerMember: UInt64
    /// Blobs pulled from one member per (author, round, kind): the round protocol names one.
    public var blobsPerAuthorRound: Int
    /// Announcements for rounds more than this beyond the oldest open round are refused.
    public var roundsAhead: UInt64
    /// Refused announcements on one connection before it is closed.
    public var refusalsPerConnection: Int

    /// Bytes allowed above the raw parameters (safetensors header, statistics blobs).
    public static let headerSlack: UInt64 = 65_536

    /// Generous defaults for a node that is not told its plan's model (tests, tools).
    public init(maxBlobSize: UInt64 = 1 << 30, inflightBlobsPerMember: Int = 128, inflightBytesPerMember: UInt64 = 1 << 31,
                blobsPerAuthorRound: Int = 2, roundsAhead: UInt64 = 16, refusalsPerConnection: Int = 32) {
        self.maxBlobSize = maxBlobSize
        self.inflightBlobsPerMember = inflightBlobsPerMember
        self.inflightBytesPerMember = inflightBytesPerMember
        self.blobsPerAuthorRound = blobsPerAuthorRound
        self.roundsAhead = roundsAhead
        self.refusalsPerConnection = refusalsPerConnection
    }

    /// Limits for a plan whose model has `parameterCount` Float32 parameters over `features`
    /// inputs, among `members` members (round 0's feature statistics, as JSON, take under 128 bytes a feature).
    public static func forModel(parameterCount: Int, features: Int, members: Int) -> BlobLimits {
        let size = UInt64(max(0, parameterCount)) * 4 + UInt64(max(0, features)) * 128 + headerSlack
        // One member may relay every author's update and aggregate of a few rounds.
        let bytes = max(16 << 20, size * UInt64(max(1, members)) * 4)
        return BlobLimits(maxBlobSize: size, inflightBytesPerMember: bytes)
    }
}
