import FLIdentity
import Foundation
import X509

extension PeerConfig {
    /// Refuses a member or CA certificate that is not valid at `now`: a peer
    /// started with one could never complete a handshake and would not say why.
    func checkValidity(of tls: PeerTLS, at now: Date) throws(ConfigError) {
        let renew = "ask the coordinator for a new certificate ('flpeer keygen', then 'flpeer ca sign --days N')"
        try Self.checkValidity(tls.trust.caCertificate, named: network.caFile, at: now, file: network.file, key: "ca",
                               renew: "the consortium needs a new CA ('flpeer ca init') and new member certificates")
        try Self.checkValidity(tls.certificate, named: certificateFile, at: now, file: file, key: "certificate", renew: renew)
    }

    static func checkValidity(_ certificate: Certificate, named path: String, at now: Date,
                              file: String, key: String, renew: String) throws(ConfigError) {
        let name = (path as NSString).lastPathComponent
        if now > certificate.notValidAfter {
            throw ConfigError(file: file, key: key, problem: "names \(name), which expired on \(utc(certificate.notValidAfter))", fix: renew)
        }
        if now < certificate.notValidBefore {
            throw ConfigError(file: file, key: key, problem: "names \(name), which is not valid until \(utc(certificate.notValidBefore))",
                              fix: "check this machine's clock (it reads \(utc(now))) or wait until then")
        }
    }

    /// A date as operators read it in messages: `2026-01-31 12:00:00 UTC`.
    public static func utc(_ date: Date) -> String {
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: "UTC")
        f.dateFormat = "yyyy-MM-dd HH:mm:ss 'UTC'"
        return f.string(from: date)
    }
}
