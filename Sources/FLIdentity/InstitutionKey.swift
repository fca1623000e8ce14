import Crypto
import Foundation
import SwiftASN1
import X509

/// An institution's own Ed25519 key and its certificate signing request.
/// The key never leaves the institution; only the CSR goes to the coordinator.
public enum InstitutionKey {
    /// A new key and a CSR whose subject common name is the institution id.
    public static func generate(institution: String) throws -> (key: Curve25519.Signing.PrivateKey, csr: CertificateSigningRequest) {
        try MemberName.validate(institution, what: "institution id")
        let key = Curve25519.Signing.PrivateKey()
        let csr = try CertificateSigningRequest(
            version: .v1,
            subject: try DistinguishedName { CommonName(institution) },
            privateKey: Certificate.PrivateKey(key),
            attributes: CertificateSigningRequest.Attributes(),
            signatureAlgorithm: .ed25519
        )
        return (key, csr)
    }

    /// The institution id a CSR asks for (its subject common name).
    public static func institution(of csr: CertificateSigningRequest) -> String? {
        commonName(csr.subject)
    }

    /// The first common name in a distinguished name.
    static func commonName(_ name: DistinguishedName) -> String? {
        for rdn in name {
            for attribute in rdn where attribute.type == .RDNAttributeType.commonName {
                if let s = String(attribute.value) { return s }
            }
        }
        return nil
    }
}

/// What a member certificate says about its holder.
public struct MemberCertificate: Sendable, Equatable {
    public let consortium: String
    public let institution: String
    public let certificate: Certificate

    /// Reads the `flpeer://<consortium>/<institution>` SAN URI, or nil when absent.
    public init?(_ certificate: Certificate) {
        guard let san = try? certificate.extensions.subjectAlternativeNames else { return nil }
        for name in san {
            if case .uniformResourceIdentifier(let uri) = name, let parsed = MemberName.parse(uri: uri) {
                self.consortium = parsed.consortium
                self.institution = parsed.institution
                self.certificate = certificate
                return
            }
        }
        return nil
    }

    /// The raw 32-byte Ed25519 public key (what signs ledger entries too).
    public var ed25519PublicKey: Curve25519.Signing.PublicKey? { Curve25519.Signing.PublicKey(certificate.publicKey) }
}
