import Crypto
import Foundation
import SwiftASN1
import X509

/// The consortium's certificate authority: its Ed25519 key and self-signed
/// certificate, which sign member certificates and revocation lists.
public struct ConsortiumCA: Sendable {
    public let consortium: String
    public let certificate: Certificate
    public let signingKey: Curve25519.Signing.PrivateKey

    /// The signing key in swift-certificates' form.
    public var privateKey: Certificate.PrivateKey { Certificate.PrivateKey(signingKey) }

    /// File names inside a CA directory.
    public enum Files {
        public static let certificate = "ca.pem"
        public static let privateKey = "ca.key.pem"
        public static let revocationList = "crl.pem"
    }

    /// The longest validity `sign` issues (100 years): longer ones overflow X.509's dates.
    public static let maximumDays = 36_500
    /// The longest CA validity `create` issues.
    public static let maximumYears = 100

    /// Creates a new CA valid for `years` from `now`.
    public static func create(consortium: String, years: Int = 10, now: Date = Date()) throws -> ConsortiumCA {
        try MemberName.validate(consortium, what: "consortium name")
        guard (1...maximumYears).contains(years) else { throw IdentityError(.policy, "a CA must be valid for 1 to \(maximumYears) years, got \(years)") }
        let signingKey = Curve25519.Signing.PrivateKey()
        let key = Certificate.PrivateKey(signingKey)
        let name = try DistinguishedName {
            OrganizationName(consortium)
            CommonName("\(consortium) consortium CA")
        }
        let certificate = try Certificate(
            version: .v3,
            serialNumber: Certificate.SerialNumber(),
            publicKey: key.publicKey,
            notValidBefore: now.addingTimeInterval(-300),
            notValidAfter: now.addingTimeInterval(Double(years) * 365 * 86_400),
            issuer: name,
            subject: name,
            signatureAlgorithm: .ed25519,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.isCertificateAuthority(maxPathLength: 0))
                Critical(KeyUsage(keyCertSign: true, cRLSign: true))
                SubjectKeyIdentifier(hash: key.publicKey)
                SubjectAlternativeNames([.uniformResourceIdentifier("\(MemberName.uriScheme)://\(consortium)")])
            },
            issuerPrivateKey: key
        )
        return ConsortiumCA(consortium: consortium, certificate: certificate, signingKey: signingKey)
    }

    /// Loads a CA from its directory (certificate and private key).
    public static func load(directory: String) throws(IdentityError) -> ConsortiumCA {
        let cert = try PEMFiles.certificate(at: "\(directory)/\(Files.certificate)")
        let key = try Ed25519Keys.privateKey(at: "\(directory)/\(Files.privateKey)")
        guard Certificate.PrivateKey(key).publicKey == cert.publicKey else {
            throw IdentityError(.wrongKeyType, "\(directory)/\(Files.privateKey) does not belong to \(directory)/\(Files.certificate)")
        }
        guard let consortium = ConsortiumCA.consortiumName(of: cert) else {
            throw IdentityError(.policy, "\(directory)/\(Files.certificate) is not a flpeer consortium CA certificate (no flpeer:// URI)")
        }
        return ConsortiumCA(consortium: consortium, certificate: cert, signingKey: key)
    }

    /// The consortium a CA certificate names in its `flpeer://<consortium>` URI.
    public static func consortiumName(of certificate: Certificate) -> String? {
        guard let san = try? certificate.extensions.subjectAlternativeNames else { return nil }
        for name in san {
            if case .uniformResourceIdentifier(let uri) = name, uri.hasPrefix("\(MemberName.uriScheme)://") {
                let rest = String(uri.dropFirst(MemberName.uriScheme.count + 3))
                if (try? MemberName.validate(rest, what: "consortium")) != nil { return rest }
            }
        }
        return nil
    }

    /// Writes the certificate and key into `directory` (key mode 0600), plus an
    /// empty revocation list.
    public func save(directory: String, now: Date = Date()) throws(IdentityError) {
        try PEMFiles.write(try PEMFiles.pem(certificate), to: "\(directory)/\(Files.certificate)")
        try PEMFiles.write(Ed25519Keys.pem(signingKey), to: "\(directory)/\(Files.privateKey)", secret: true)
        let crl = try RevocationList.issue(by: self, revoked: [], number: 1, now: now)
        try PEMFiles.write(crl.pem, to: "\(directory)/\(Files.revocationList)")
    }

    /// Issues a member certificate for a CSR made by `flpeer keygen`: checks
    /// the CSR's signature and institution id, and binds the id as the SAN URI
    /// `flpeer://<consortium>/<institution>`; usable for TLS client and server.
    public func sign(_ csr: CertificateSigningRequest, days: Int, now: Date = Date()) throws -> Certificate {
        guard csr.publicKey.isValidSignature(csr.signature, for: csr) else {
            throw IdentityError(.badSignature, "the certificate signing request's signature does not verify")
        }
        guard Curve25519.Signing.PublicKey(csr.publicKey) != nil else {
            throw IdentityError(.wrongKeyType, "the certificate signing request is not for an Ed25519 key")
        }
        guard let institution = InstitutionKey.institution(of: csr) else {
            throw IdentityError(.invalidName, "the certificate signing request names no institution (its subject needs a common name)")
        }
        try MemberName.validate(institution, what: "institution id")
        guard (1...Self.maximumDays).contains(days) else { throw IdentityError(.policy, "a certificate must be valid for 1 to \(Self.maximumDays) days, got \(days)") }
        let subject = try DistinguishedName {
            OrganizationName(consortium)
            CommonName(institution)
        }
        return try Certificate(
            version: .v3,
            serialNumber: Certificate.SerialNumber(),
            publicKey: csr.publicKey,
            notValidBefore: now.addingTimeInterval(-300),
            notValidAfter: now.addingTimeInterval(Double(days) * 86_400),
            issuer: certificate.subject,
            subject: subject,
            signatureAlgorithm: .ed25519,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.notCertificateAuthority)
                Critical(KeyUsage(digitalSignature: true))
                try ExtendedKeyUsage([.serverAuth, .clientAuth])
                SubjectKeyIdentifier(hash: csr.publicKey)
                AuthorityKeyIdentifier(keyIdentifier: try certificate.extensions.subjectKeyIdentifier?.keyIdentifier)
                SubjectAlternativeNames([.uniformResourceIdentifier(MemberName.uri(consortium: consortium, institution: institution))])
            },
            issuerPrivateKey: privateKey
        )
    }
}

extension SubjectKeyIdentifier {
    /// The key identifier as RFC 5280 method 1: SHA-1 of the public key bits
    /// (here SHA-256 truncated to 20 bytes, which RFC 7093 allows).
    init(hash key: Certificate.PublicKey) {
        let digest = SHA256.hash(data: key.subjectPublicKeyInfoBytes)
        self.init(keyIdentifier: ArraySlice(Array(digest).prefix(20)))
    }
}

extension Certificate.PublicKey {
    /// The raw subjectPublicKey bit-string contents (the 32 key bytes for Ed25519).
    var subjectPublicKeyInfoBytes: [UInt8] {
        if let ed = Curve25519.Signing.PublicKey(self) { return Array(ed.rawRepresentation) }
        return (try? derBytes(self)) ?? []
    }
}
