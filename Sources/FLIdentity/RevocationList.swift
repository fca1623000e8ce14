import Crypto
import Foundation
import SwiftASN1
import X509

/// An X.509 v2 certificate revocation list (RFC 5280 §5) signed by the
/// consortium CA with Ed25519. `openssl crl -CAfile ca.pem` verifies it.
public struct RevocationList: Sendable {
    /// One revoked certificate.
    public struct Entry: Sendable, Equatable {
        public let serial: Certificate.SerialNumber
        public let revoked: Date
        public init(serial: Certificate.SerialNumber, revoked: Date) {
            self.serial = serial
            self.revoked = revoked
        }
    }

    public let entries: [Entry]
    /// The CRL number (extension 2.5.29.20); each new list has a higher one.
    public let number: Int
    public let thisUpdate: Date
    public let nextUpdate: Date
    /// The signed DER encoding.
    public let der: [UInt8]

    /// PEM text ("X509 CRL").
    public var pem: String { PEMDocument(type: "X509 CRL", derBytes: der).pemString + "\n" }

    /// True when `certificate`'s serial number is on the list.
    public func isRevoked(_ certificate: Certificate) -> Bool {
        entries.contains { $0.serial == certificate.serialNumber }
    }

    static let ed25519OID: ASN1ObjectIdentifier = [1, 3, 101, 112]
    static let crlNumberOID: ASN1ObjectIdentifier = [2, 5, 29, 20]

    /// Issues a list of `revoked` entries signed by `ca`, valid for `days`.
    public static func issue(by ca: ConsortiumCA, revoked: [Entry], number: Int, now: Date = Date(), days: Int = 365) throws(IdentityError) -> RevocationList {
        let next = now.addingTimeInterval(Double(days) * 86_400)
        do {
            var coder = DER.Serializer()
            try coder.appendConstructedNode(identifier: .sequence) { coder in
                try coder.serialize(1)  // version v2
                try coder.appendConstructedNode(identifier: .sequence) { try $0.serialize(ed25519OID) }
                try coder.serialize(ca.certificate.subject)
                try coder.serialize(try utcTime(now))
                try coder.serialize(try utcTime(next))
                if !revoked.isEmpty {
                    try coder.appendConstructedNode(identifier: .sequence) { coder in
                        for e in revoked {
                            try coder.appendConstructedNode(identifier: .sequence) { coder in
                                try coder.serialize(e.serial.bytes)
                                try coder.serialize(try utcTime(e.revoked))
                            }
                        }
                    }
                }
                try coder.serialize(explicitlyTaggedWithTagNumber: 0, tagClass: .contextSpecific) { coder in
                    try coder.appendConstructedNode(identifier: .sequence) { coder in
                        try coder.appendConstructedNode(identifier: .sequence) { coder in
                            try coder.serialize(crlNumberOID)
                            try coder.serialize(ASN1OctetString(contentBytes: ArraySlice(try derBytes(number))))
                        }
                    }
                }
            }
            let tbs = coder.serializedBytes
            let signature = try ca.signingKey.signature(for: tbs)
            var outer = DER.Serializer()
            try outer.appendConstructedNode(identifier: .sequence) { coder in
                coder.serializeRawBytes(tbs)
                try coder.appendConstructedNode(identifier: .sequence) { try $0.serialize(ed25519OID) }
                try coder.serialize(ASN1BitString(bytes: ArraySlice(signature)))
            }
            return RevocationList(entries: revoked, number: number, thisUpdate: now, nextUpdate: next, der: outer.serializedBytes)
        } catch let e as IdentityError {
            throw e
        } catch {
            throw IdentityError(.io, "cannot encode the revocation list: \(error)")
        }
    }

    /// Parses a PEM CRL and checks that `caCertificate` signed it.
    public static func parse(pem: String, file: String, caCertificate: Certificate) throws(IdentityError) -> RevocationList {
        let doc: PEMDocument
        do {
            doc = try PEMDocument(pemString: pem)
        } catch {
            throw IdentityError(.malformedPEM, "\(file) does not hold a PEM revocation list")
        }
        guard doc.discriminator == "X509 CRL" else {
            throw IdentityError(.malformedPEM, "\(file) holds a PEM '\(doc.discriminator)', not an 'X509 CRL'")
        }
        return try parse(der: doc.derBytes, file: file, caCertificate: caCertificate)
    }

    /// Parses a DER CRL and checks that `caCertificate` signed it.
    public static func parse(der: [UInt8], file: String, caCertificate: Certificate) throws(IdentityError) -> RevocationList {
        var tbsBytes: ArraySlice<UInt8> = []
        var signature: ASN1BitString?
        var issuer: DistinguishedName?
        var entries: [Entry] = []
        var number = 0
        var thisUpdate = Date(timeIntervalSince1970: 0), nextUpdate = Date(timeIntervalSince1970: 0)
        do {
            let root = try DER.parse(der)
            try DER.sequence(root, identifier: .sequence) { nodes in
                guard let tbsNode = nodes.next() else { throw ASN1Error.invalidASN1Object(reason: "missing TBSCertList") }
                tbsBytes = tbsNode.encodedBytes
                try DER.sequence(tbsNode, identifier: .sequence) { tbs in
                    _ = try Int(derEncoded: &tbs)  // version
                    _ = try DER.sequence(of: ASN1ObjectIdentifier.self, identifier: .sequence, nodes: &tbs)
                    guard let issuerNode = tbs.next() else { throw ASN1Error.invalidASN1Object(reason: "missing issuer") }
                    issuer = try DistinguishedName(derEncoded: issuerNode)
                    thisUpdate = try Date(try UTCTime(derEncoded: &tbs))
                    nextUpdate = try Date(try UTCTime(derEncoded: &tbs))
                    while let node = tbs.next() {
                        if node.identifier == .sequence {
                            entries = try DER.sequence(of: EntryNode.self, identifier: .sequence, rootNode: node).map(\.entry)
                        } else if node.identifier == ASN1Identifier(tagWithNumber: 0, tagClass: .contextSpecific) {
                            number = try RevocationList.crlNumber(node)
                        }
                    }
                }
                _ = try DER.sequence(of: ASN1ObjectIdentifier.self, identifier: .sequence, nodes: &nodes)
                signature = try ASN1BitString(derEncoded: &nodes)
            }
        } catch {
            throw IdentityError(.malformedPEM, "\(file) is not a valid X.509 revocation list (\(error))")
        }
        guard issuer == caCertificate.subject, let signature,
              let caKey = Curve25519.Signing.PublicKey(caCertificate.publicKey),
              caKey.isValidSignature(signature.bytes, for: tbsBytes)
        else {
            throw IdentityError(.notIssuedByCA, "\(file) is not signed by the consortium CA")
        }
        return RevocationList(entries: entries, number: number, thisUpdate: thisUpdate, nextUpdate: nextUpdate, der: der)
    }

    /// Reads and verifies a CRL file.
    public static func load(path: String, caCertificate: Certificate) throws(IdentityError) -> RevocationList {
        try parse(pem: try PEMFiles.read(path), file: path, caCertificate: caCertificate)
    }

    private static func crlNumber(_ node: ASN1Node) throws -> Int {
        var number = 0
        try DER.explicitlyTagged(node, tagNumber: 0, tagClass: .contextSpecific) { extensions in
            try DER.sequence(extensions, identifier: .sequence) { list in
                while let ext = list.next() {
                    try DER.sequence(ext, identifier: .sequence) { fields in
                        let oid = try ASN1ObjectIdentifier(derEncoded: &fields)
                        var value = try ASN1OctetString(derEncoded: &fields)
                        if fields.next() != nil { value = try ASN1OctetString(derEncoded: &fields) }  // skip `critical`
                        if oid == crlNumberOID { number = try Int(derEncoded: value.bytes) }
                    }
                }
            }
        }
        return number
    }

    private struct EntryNode: DERParseable {
        let entry: Entry
        init(derEncoded node: ASN1Node) throws {
            entry = try DER.sequence(node, identifier: .sequence) { fields in
                let serial = try ArraySlice<UInt8>(derEncoded: &fields)
                let date = try Date(try UTCTime(derEncoded: &fields))
                while fields.next() != nil {}  // entry extensions are ignored
                return Entry(serial: Certificate.SerialNumber(bytes: serial), revoked: date)
            }
        }
    }

    static func utcTime(_ date: Date) throws -> UTCTime {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        let c = calendar.dateComponents([.year, .month, .day, .hour, .minute, .second], from: date)
        return try UTCTime(year: c.year!, month: c.month!, day: c.day!, hours: c.hour!, minutes: c.minute!, seconds: c.second!)
    }
}

extension Date {
    init(_ time: UTCTime) throws {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        guard let d = calendar.date(from: DateComponents(year: time.year, month: time.month, day: time.day, hour: time.hours, minute: time.minutes, second: time.seconds)) else {
            throw ASN1Error.invalidASN1Object(reason: "invalid UTCTime")
        }
        self = d
    }
}

/// The DER encoding of one value.
func derBytes(_ value: some DERSerializable) throws -> [UInt8] {
    var coder = DER.Serializer()
    try coder.serialize(value)
    return coder.serializedBytes
}
