import Crypto
import Foundation
import NIOCore
import NIOSSL
import X509

/// One institution's TLS credentials and the trust it places in others:
/// mutual TLS 1.3 with Ed25519 certificates, verified by `ConsortiumTrust`.
public struct PeerTLS: Sendable {
    public let trust: ConsortiumTrust
    public let certificate: Certificate
    public let member: MemberCertificate
    let certificatePEM: String
    let keyPEM: String

    /// Credentials from PEM text; the key must belong to the certificate.
    public init(trust: ConsortiumTrust, certificatePEM: String, keyPEM: String, keyFile: String = "key") throws(IdentityError) {
        let cert: Certificate
        do {
            cert = try Certificate(pemEncoded: certificatePEM)
        } catch {
            throw IdentityError(.malformedPEM, "the peer certificate is not PEM X.509")
        }
        let key = try Ed25519Keys.privateKey(pem: keyPEM, file: keyFile)
        guard Certificate.PrivateKey(key).publicKey == cert.publicKey else {
            throw IdentityError(.wrongKeyType, "\(keyFile) does not belong to the peer certificate")
        }
        guard let member = MemberCertificate(cert) else {
            throw IdentityError(.policy, "the peer certificate carries no flpeer://<consortium>/<institution> identity")
        }
        self.trust = trust
        self.certificate = cert
        self.member = member
        self.certificatePEM = certificatePEM
        self.keyPEM = keyPEM
    }

    /// Loads certificate and key files.
    public init(trust: ConsortiumTrust, certificateFile: String, keyFile: String) throws(IdentityError) {
        try self.init(trust: trust, certificatePEM: try PEMFiles.read(certificateFile), keyPEM: try PEMFiles.read(keyFile), keyFile: keyFile)
    }

    /// TLS 1.3 only; Ed25519 for handshake signatures; the peer's certificate is
    /// required and checked by the custom callback, not by BoringSSL.
    public func configuration(server: Bool) throws -> TLSConfiguration {
        let chain = try NIOSSLCertificate.fromPEMBytes(Array(certificatePEM.utf8)).map { NIOSSLCertificateSource.certificate($0) }
        let key = try NIOSSLPrivateKey(bytes: Array(keyPEM.utf8), format: .pem)
        var c: TLSConfiguration
        if server {
            c = TLSConfiguration.makeServerConfiguration(certificateChain: chain, privateKey: .privateKey(key))
        } else {
            c = TLSConfiguration.makeClientConfiguration()
            c.certificateChain = chain
            c.privateKey = .privateKey(key)
        }
        c.minimumTLSVersion = .tlsv13
        c.maximumTLSVersion = .tlsv13
        c.certificateVerification = .noHostnameVerification
        c.trustRoots = .certificates([])
        c.signingSignatureAlgorithms = [.ed25519]
        c.verifySignatureAlgorithms = [.ed25519]
        return c
    }

    /// A server-side or client-side SSL context.
    public func makeContext(server: Bool) throws -> NIOSSLContext {
        try NIOSSLContext(configuration: configuration(server: server))
    }

    /// A verification callback that accepts only what `trust` accepts at
    /// `clock()` time, recording the verdict in `verdict` for the connection.
    public func verificationCallback(
        clock: @escaping @Sendable () -> Date, verdict: PeerVerdict
    ) -> NIOSSLCustomVerificationCallback {
        let trust = self.trust
        return { certificates, promise in
            let ders: [[UInt8]]
            do {
                ders = try certificates.map { try $0.toDERBytes() }
            } catch {
                verdict.set(.failure(PeerRejection(.malformed, "the peer's certificate cannot be encoded")))
                promise.succeed(.failed)
                return
            }
            let time = clock()
            // Off the event loop, on Swift's cooperative pool (a peer blocks at
            // most one of its threads, with training or scoring).
            Task {
                let result = await trust.evaluate(derChain: ders, at: time)
                verdict.set(result)
                switch result {
                case .success: promise.succeed(.certificateVerified)
                case .failure: promise.succeed(.failed)
                }
            }
        }
    }
}

/// The result of certificate verification for one connection, written by
/// the TLS callback and read once the handshake is over.
public final class PeerVerdict: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Result<MemberCertificate, PeerRejection>?

    public init() {}

    func set(_ v: Result<MemberCertificate, PeerRejection>) {
        lock.lock()
        value = v
        lock.unlock()
    }

    /// The verdict, or nil if verification never ran (the handshake failed earlier).
    public var result: Result<MemberCertificate, PeerRejection>? {
        lock.lock()
        defer { lock.unlock() }
        return value
    }
}
