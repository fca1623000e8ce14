import Crypto
import Foundation
import SwiftASN1
import X509

/// Reading and writing the PEM files of the PKI, with errors that name the file.
public enum PEMFiles {
    /// The text of `path`.
    public static func read(_ path: String) throws(IdentityError) -> String {
        do {
            return try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw IdentityError(.unreadableFile, "cannot read \(path): \((error as NSError).localizedDescription)")
        }
    }

    /// Writes `text` to `path`; private keys get mode 0600 (owner only).
    public static func write(_ text: String, to path: String, secret: Bool = false) throws(IdentityError) {
        let fm = FileManager.default
        do {
            let dir = (path as NSString).deletingLastPathComponent
            if !dir.isEmpty { try fm.createDirectory(atPath: dir, withIntermediateDirectories: true) }
            guard fm.createFile(atPath: path, contents: Data(text.utf8), attributes: secret ? [.posixPermissions: 0o600] : nil) else {
                throw CocoaError(.fileWriteUnknown)
            }
            if secret { try fm.setAttributes([.posixPermissions: 0o600], ofItemAtPath: path) }
        } catch {
            throw IdentityError(.io, "cannot write \(path): \((error as NSError).localizedDescription)")
        }
    }

    /// A certificate from a PEM file.
    public static func certificate(at path: String) throws(IdentityError) -> Certificate {
        let text = try read(path)
        do {
            return try Certificate(pemEncoded: text)
        } catch {
            throw IdentityError(.malformedPEM, "\(path) \(described(text, expected: "CERTIFICATE")) where a PEM certificate was expected")
        }
    }

    /// What a PEM file holds, for an error that names the wrong kind rather
    /// than the parser's internals: "holds a certificate signing request",
    /// "does not hold PEM text", "holds a certificate that cannot be read".
    static func described(_ text: String, expected: String) -> String {
        let labels = text.split(separator: "\n").compactMap { line -> String? in
            guard line.hasPrefix("-----BEGIN "), line.hasSuffix("-----") else { return nil }
            return String(line.dropFirst(11).dropLast(5))
        }
        guard let label = labels.first else { return "does not hold PEM text (no -----BEGIN …----- line)" }
        let names = ["CERTIFICATE": "a certificate", "CERTIFICATE REQUEST": "a certificate signing request", "PRIVATE KEY": "a private key",
                     "X509 CRL": "a revocation list", "PUBLIC KEY": "a public key"]
        let name = names[label] ?? "a PEM \(label)"
        return label == expected ? "holds \(name) that cannot be read (damaged or truncated)" : "holds \(name)"
    }

    /// A certificate signing request from a PEM file.
    public static func csr(at path: String) throws(IdentityError) -> CertificateSigningRequest {
        let text = try read(path)
        do {
            return try CertificateSigningRequest(pemEncoded: text)
        } catch {
            throw IdentityError(.malformedPEM, "\(path) \(described(text, expected: "CERTIFICATE REQUEST")), not a certificate signing request: "
                                + "give the member's ID.csr.pem, which `flpeer keygen` writes")
        }
    }

    /// PEM text of any PEM-serialisable value.
    public static func pem(_ value: some PEMSerializable) throws(IdentityError) -> String {
        do {
            return try value.serializeAsPEM().pemString + "\n"
        } catch {
            throw IdentityError(.io, "cannot encode PEM: \(error)")
        }
    }

}

