import Crypto
import FLIdentity
import Foundation
import SwiftASN1
import Testing
import X509

func shell(_ args: [String]) throws -> (status: Int32, out: String) {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    p.arguments = args
    let pipe = Pipe()
    p.standardOutput = pipe
    p.standardError = pipe
    try p.run()
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return (p.terminationStatus, String(decoding: data, as: UTF8.self))
}

func scratchDirectory() throws -> String {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("flpeer-id-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

/// A CA and a member certificate for `institution`.
func issue(_ ca: ConsortiumCA, _ institution: String, days: Int = 30, now: Date = Date()) throws -> Certificate {
    let (_, csr) = try InstitutionKey.generate(institution: institution)
    return try ca.sign(csr, days: days, now: now)
}

@Suite("identity")
struct IdentityTests {
    @Test func issuedCertificatesCarryTheMemberIdentity() throws {
        let ca = try ConsortiumCA.create(consortium: "oncology-eu")
        let cert = try issue(ca, "charite")
        let member = try #require(MemberCertificate(cert))
        #expect(member.consortium == "oncology-eu" && member.institution == "charite")
        #expect(cert.issuer == ca.certificate.subject)
        let eku = try #require(try cert.extensions.extendedKeyUsage)
        #expect(eku.contains(.serverAuth) && eku.contains(.clientAuth))
        #expect(try cert.extensions.basicConstraints == .notCertificateAuthority)
        #expect(ca.certificate.publicKey.isValidSignature(cert.signature, for: cert))
    }

    @Test func filesInteroperateWithOpenSSL() throws {
        let dir = try scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let ca = try ConsortiumCA.create(consortium: "demo")
        try ca.save(directory: dir)
        let (key, csr) = try InstitutionKey.generate(institution: "lab-3")
        try PEMFiles.write(Ed25519Keys.pem(key), to: "\(dir)/lab-3.key.pem", secret: true)
        try PEMFiles.write(try PEMFiles.pem(csr), to: "\(dir)/lab-3.csr.pem")
        let reloaded = try ConsortiumCA.load(directory: dir)
        let cert = try reloaded.sign(try PEMFiles.csr(at: "\(dir)/lab-3.csr.pem"), days: 10)
        try PEMFiles.write(try PEMFiles.pem(cert), to: "\(dir)/lab-3.pem")

        let verify = try shell(["openssl", "verify", "-CAfile", "\(dir)/ca.pem", "\(dir)/lab-3.pem"])
        #expect(verify.status == 0 && verify.out.contains("OK"), "\(verify.out)")
        let text = try shell(["openssl", "x509", "-in", "\(dir)/lab-3.pem", "-noout", "-text"])
        #expect(text.out.contains("URI:flpeer://demo/lab-3"), "\(text.out)")
        #expect(text.out.contains("TLS Web Server Authentication") && text.out.contains("TLS Web Client Authentication"))
        #expect(try shell(["openssl", "req", "-in", "\(dir)/lab-3.csr.pem", "-noout", "-verify"]).status == 0)
        // The private key is PKCS#8 Ed25519 that OpenSSL reads, and it matches the certificate.
        let pub1 = try shell(["openssl", "pkey", "-in", "\(dir)/lab-3.key.pem", "-pubout"])
        let pub2 = try shell(["openssl", "x509", "-in", "\(dir)/lab-3.pem", "-noout", "-pubkey"])
        #expect(pub1.status == 0 && pub1.out == pub2.out)
        let mode = try FileManager.default.attributesOfItem(atPath: "\(dir)/lab-3.key.pem")[.posixPermissions] as? Int
        #expect(mode == 0o600)
        // A certificate from another CA does not verify.
        let other = try ConsortiumCA.create(consortium: "demo")
        try PEMFiles.write(try PEMFiles.pem(try issue(other, "lab-3")), to: "\(dir)/foreign.pem")
        #expect(try shell(["openssl", "verify", "-CAfile", "\(dir)/ca.pem", "\(dir)/foreign.pem"]).status != 0)
    }

    @Test func revocationListsAreSignedX509CRLs() throws {
        let dir = try scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let ca = try ConsortiumCA.create(consortium: "demo")
        try ca.save(directory: dir)
        let revokedCert = try issue(ca, "mallory"), kept = try issue(ca, "alice")
        let list = try RevocationList.issue(by: ca, revoked: [.init(serial: revokedCert.serialNumber, revoked: Date())], number: 7)
        try PEMFiles.write(list.pem, to: "\(dir)/crl.pem")
        let parsed = try RevocationList.load(path: "\(dir)/crl.pem", caCertificate: ca.certificate)
        #expect(parsed.number == 7 && parsed.entries.count == 1)
        #expect(parsed.isRevoked(revokedCert) && !parsed.isRevoked(kept))
        let openssl = try shell(["openssl", "crl", "-in", "\(dir)/crl.pem", "-CAfile", "\(dir)/ca.pem", "-noout", "-text"])
        #expect(openssl.status == 0 && openssl.out.contains("verify OK"), "\(openssl.out)")
        #expect(openssl.out.contains("X509v3 CRL Number") && openssl.out.contains("7"))
        // Signed by another CA, or altered: refused.
        let other = try ConsortiumCA.create(consortium: "demo")
        #expect(throws: IdentityError.self) { try RevocationList.parse(der: list.der, file: "crl", caCertificate: other.certificate) }
        var tampered = list.der
        tampered[tampered.count / 2] ^= 1
        #expect(throws: IdentityError.self) { try RevocationList.parse(der: tampered, file: "crl", caCertificate: ca.certificate) }
    }

    @Test func trustAcceptsMembersAndRejectsEachCaseWithItsReason() async throws {
        let now = Date()
        let ca = try ConsortiumCA.create(consortium: "demo")
        let good = try issue(ca, "alice")
        let expired = try issue(ca, "bob", days: 1, now: now.addingTimeInterval(-10 * 86_400))
        let revoked = try issue(ca, "carol")
        let stranger = try issue(ca, "eve")
        let foreign = try issue(try ConsortiumCA.create(consortium: "demo"), "alice")
        let otherConsortium = try ConsortiumCA.create(consortium: "other")
        let crl = try RevocationList.issue(by: ca, revoked: [.init(serial: revoked.serialNumber, revoked: now)], number: 2)
        let trust = ConsortiumTrust(consortium: "demo", caCertificate: ca.certificate, members: ["alice", "bob", "carol"], revocations: crl)

        func code(_ cert: Certificate, at time: Date = now, with t: ConsortiumTrust? = nil) async -> PeerRejection.Code? {
            switch await (t ?? trust).evaluate(chain: [cert], at: time) {
            case .success: nil
            case .failure(let r): r.code
            }
        }
        #expect(await code(good) == nil)
        #expect(await code(foreign) == .untrustedIssuer)
        #expect(await code(expired) == .expired)
        #expect(await code(good, at: now.addingTimeInterval(-86_400)) == .notYetValid)
        #expect(await code(revoked) == .revoked)
        #expect(await code(stranger) == .notMember)
        let wrong = ConsortiumTrust(consortium: "other", caCertificate: ca.certificate, members: ["alice"], revocations: nil)
        #expect(await code(good, with: wrong) == .wrongConsortium)
        _ = otherConsortium
        if case .failure(let r) = await trust.evaluate(derChain: [[0x30, 0x03, 0x02, 0x01, 0x01]], at: now) {
            #expect(r.code == .malformed)
        } else {
            Issue.record("garbage DER was accepted")
        }
        var coder = DER.Serializer()
        try coder.serialize(good)
        if case .success(let m) = await trust.evaluate(derChain: [coder.serializedBytes], at: now) {
            #expect(m.institution == "alice")
        } else {
            Issue.record("a member certificate was refused")
        }
    }

    @Test func badRequestsAndNamesAreRefused() throws {
        let ca = try ConsortiumCA.create(consortium: "demo")
        for bad in ["", "UPPER", "-dash", "a/b", "with space", String(repeating: "x", count: 65)] {
            #expect(throws: IdentityError.self) { try InstitutionKey.generate(institution: bad) }
        }
        #expect(throws: IdentityError.self) { try ConsortiumCA.create(consortium: "Bad Name") }
        // A CSR whose signature does not match its key.
        let (_, csr) = try InstitutionKey.generate(institution: "alice")
        let (_, other) = try InstitutionKey.generate(institution: "mallory")
        let forged = try CertificateSigningRequest(
            version: csr.version, subject: csr.subject, publicKey: other.publicKey,
            attributes: csr.attributes, signatureAlgorithm: csr.signatureAlgorithm, signature: csr.signature)
        #expect(throws: IdentityError.self) { try ca.sign(forged, days: 10) }
        #expect(throws: IdentityError.self) { try Ed25519Keys.privateKey(pem: "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", file: "k.pem") }
    }

    @Test func keysRoundTripThroughPEM() throws {
        let key = Curve25519.Signing.PrivateKey()
        let back = try Ed25519Keys.privateKey(pem: Ed25519Keys.pem(key), file: "k.pem")
        #expect(back.rawRepresentation == key.rawRepresentation)
    }
}
