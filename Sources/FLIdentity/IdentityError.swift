/// A failure of an identity operation, with a sentence a user can act on.
public struct IdentityError: Error, Equatable, CustomStringConvertible {
    /// What kind of failure, for programs.
    public enum Code: String, Sendable {
        case invalidName, unreadableFile, malformedPEM, wrongKeyType, badSignature, notIssuedByCA, policy, io
    }

    public let code: Code
    public let reason: String

    public init(_ code: Code, _ reason: String) {
        self.code = code
        self.reason = reason
    }

    public var description: String { reason }
}
