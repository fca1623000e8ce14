import Crypto
import SwiftASN1

/// PKCS#8 PEM encoding of Ed25519 private keys (RFC 8410), compatible with
/// OpenSSL's `genpkey -algorithm ed25519`.
public enum Ed25519Keys {
    /// DER of PrivateKeyInfo up to the 32 key bytes: version 0, algorithm
    /// id-Ed25519 (1.3.101.112), and the nested OCTET STRING headers.
    static let pkcs8Prefix: [UInt8] = [0x30, 0x2E, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2B, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20]

    /// PEM text ("PRIVATE KEY") of `key`.
    public static func pem(_ key: Curve25519.Signing.PrivateKey) -> String {
        PEMDocument(type: "PRIVATE KEY", derBytes: pkcs8Prefix + Array(key.rawRepresentation)).pemString + "\n"
    }

    /// Parses a PKCS#8 PEM Ed25519 private key.
    public static func privateKey(pem: String, file: String) throws(IdentityError) -> Curve25519.Signing.PrivateKey {
        let doc: PEMDocument
        do {
            doc = try PEMDocument(pemString: pem)
        } catch {
            throw IdentityError(.malformedPEM, "\(file) does not hold a PEM private key")
        }
        guard doc.discriminator == "PRIVATE KEY", doc.derBytes.count == 48, Array(doc.derBytes.prefix(16)) == pkcs8Prefix else {
            throw IdentityError(.wrongKeyType, "\(file) does not hold an Ed25519 PKCS#8 private key; flpeer uses Ed25519 keys only")
        }
        do {
            return try Curve25519.Signing.PrivateKey(rawRepresentation: doc.derBytes.suffix(32))
        } catch {
            throw IdentityError(.malformedPEM, "\(file) holds an invalid Ed25519 key")
        }
    }

    /// Reads a PKCS#8 PEM Ed25519 private key file.
    public static func privateKey(at path: String) throws(IdentityError) -> Curve25519.Signing.PrivateKey {
        try privateKey(pem: try PEMFiles.read(path), file: path)
    }
}
