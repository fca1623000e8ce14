import Foundation
@_spi(FixedExpiryValidationTime) import X509

/// Why a peer's certificate was refused.
public struct PeerRejection: Error, Equatable, CustomStringConvertible, Sendable {
    /// Kinds of rejection, each logged with its own reason.
    public enum Code: String, Sendable {
        case noCertificate = "no-certificate"
        case malformed
        case untrustedIssuer = "untrusted-issuer"
        case expired
        case notYetValid = "not-yet-valid"
        case revoked
        case noIdentity = "no-identity"
        case wrongConsortium = "wrong-consortium"
        case notMember = "not-member"
        case identityMismatch = "identity-mismatch"
        case policy
    }

    public let code: Code
    public let reason: String

    public init(_ code: Code, _ reason: String) {
        self.code = code
        self.reason = reason
    }

    public var description: String { "\(code.rawValue): \(reason)" }
}

/// Who may be a peer: the consortium CA, the member list and the revocation
/// list. Replaces all of BoringSSL's certificate checks, so it validates the
/// whole chain itself (RFC 5280 with an injected time, then flpeer's rules).
public struct ConsortiumTrust: Sendable {
    public let consortium: String
    public let caCertificate: Certificate
    public var members: Set<String>
    public var revocations: RevocationList?

    public init(consortium: String, caCertificate: Certificate, members: Set<String>, revocations: RevocationList?) {
        self.consortium = consortium
        self.caCertificate = caCertificate
        self.members = members
        self.revocations = revocations
    }

    /// Accepts `chain` (leaf first, DER) at `time`, or says exactly why not.
    public func evaluate(derChain: [[UInt8]], at time: Date) async -> Result<MemberCertificate, PeerRejection> {
        guard !derChain.isEmpty else { return .failure(PeerRejection(.noCertificate, "the peer presented no certificate")) }
        var chain: [Certificate] = []
        for der in derChain {
            guard let c = try? Certificate(derEncoded: der) else {
                return .failure(PeerRejection(.malformed, "the peer's certificate is not valid DER X.509"))
            }
            chain.append(c)
        }
        return await evaluate(chain: chain, at: time)
    }

    /// As above, for parsed certificates.
    public func evaluate(chain: [Certificate], at time: Date) async -> Result<MemberCertificate, PeerRejection> {
        guard let leaf = chain.first else { return .failure(PeerRejection(.noCertificate, "the peer presented no certificate")) }
        let subject = InstitutionKey.commonName(leaf.subject) ?? "\(leaf.subject)"
        var verifier = Verifier(rootCertificates: CertificateStore([caCertificate])) {
            RFC5280Policy(fixedExpiryValidationTime: time)
        }
        let result = await verifier.validate(leaf: leaf, intermediates: CertificateStore(chain.dropFirst()))
        if case .couldNotValidate(let failures) = result {
            if failures.isEmpty {
                return .failure(PeerRejection(.untrustedIssuer, "certificate '\(subject)' was not issued by the \(consortium) consortium CA"))
            }
            if time > leaf.notValidAfter {
                return .failure(PeerRejection(.expired, "certificate '\(subject)' expired at \(leaf.notValidAfter)"))
            }
            if time < leaf.notValidBefore {
                return .failure(PeerRejection(.notYetValid, "certificate '\(subject)' is not valid before \(leaf.notValidBefore)"))
            }
            let why = failures.first.map { "\($0.policyFailureReason)" } ?? "unknown"
            return .failure(PeerRejection(.policy, "certificate '\(subject)' fails RFC 5280 validation: \(why)"))
        }
        if let revocations, revocations.isRevoked(leaf) {
            return .failure(PeerRejection(.revoked, "certificate '\(subject)' (serial \(leaf.serialNumber)) is revoked"))
        }
        guard let member = MemberCertificate(leaf) else {
            return .failure(PeerRejection(.noIdentity, "certificate '\(subject)' carries no flpeer://<consortium>/<institution> identity"))
        }
        guard member.consortium == consortium else {
            return .failure(PeerRejection(.wrongConsortium, "certificate names consortium '\(member.consortium)', expected '\(consortium)'"))
        }
        guard members.contains(member.institution) else {
            return .failure(PeerRejection(.notMember, "institution '\(member.institution)' is not a member of \(consortium)"))
        }
        return .success(member)
    }
}
