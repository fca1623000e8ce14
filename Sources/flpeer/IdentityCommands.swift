import ArgumentParser
import FLIdentity
import Foundation
import X509

struct CACommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ca",
        abstract: "The consortium CA: create it, sign members' CSRs, revoke certificates.",
        subcommands: [CAInitCommand.self, CASignCommand.self, CARevokeCommand.self]
    )
}

struct CAInitCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "init",
        abstract: "Create the consortium CA key and certificate.",
        discussion: "Writes DIR/ca.pem (share it), DIR/ca.key.pem (keep it offline, mode 0600) and DIR/crl.pem (an empty revocation list)."
    )

    @Option(help: "Consortium name: lowercase letters, digits, '.', '_' and '-'.")
    var consortium: String

    @Option(help: "Output directory.")
    var out: String

    @Option(help: "Validity of the CA certificate in years.")
    var years: Int = 10

    func validate() throws {
        do { try MemberName.validate(consortium, what: "--consortium") } catch { throw ValidationError("\(error).") }
        if !(1...ConsortiumCA.maximumYears).contains(years) {
            throw ValidationError("--years must be from 1 to \(ConsortiumCA.maximumYears), got \(years).")
        }
    }

    func run() async throws {
        let keyPath = "\(out)/\(ConsortiumCA.Files.privateKey)"
        if FileManager.default.fileExists(atPath: keyPath) {
            throw CLIError("\(keyPath) already exists; refusing to overwrite a CA key (choose another --out).")
        }
        let ca = try ConsortiumCA.create(consortium: consortium, years: years)
        try ca.save(directory: out)
        print("created the \(consortium) consortium CA in \(out): \(ConsortiumCA.Files.certificate), \(ConsortiumCA.Files.privateKey), \(ConsortiumCA.Files.revocationList)")
    }
}

struct KeygenCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "keygen",
        abstract: "Create an institution's Ed25519 key and a certificate signing request.",
        discussion: "Writes DIR/ID.key.pem (never leaves the institution, mode 0600) and DIR/ID.csr.pem (send it to the coordinator)."
    )

    @Option(help: "Institution id: lowercase letters, digits, '.', '_' and '-'.")
    var institution: String

    @Option(help: "Output directory.")
    var out: String

    func validate() throws {
        do { try MemberName.validate(institution, what: "--institution") } catch { throw ValidationError("\(error).") }
    }

    func run() async throws {
        let keyPath = "\(out)/\(institution).key.pem"
        if FileManager.default.fileExists(atPath: keyPath) {
            throw CLIError("\(keyPath) already exists; refusing to overwrite a private key.")
        }
        let (key, csr) = try InstitutionKey.generate(institution: institution)
        try PEMFiles.write(Ed25519Keys.pem(key), to: keyPath, secret: true)
        try PEMFiles.write(try PEMFiles.pem(csr), to: "\(out)/\(institution).csr.pem")
        print("wrote \(keyPath) (keep it here) and \(out)/\(institution).csr.pem (send it to the coordinator)")
    }
}

struct CASignCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sign",
        abstract: "Issue a member certificate for a CSR (TLS client and server, SAN URI flpeer://CONSORTIUM/ID)."
    )

    @Option(help: "The CA directory (from `flpeer ca init`).")
    var ca: String

    @Option(help: "The institution's CSR (from `flpeer keygen`).")
    var csr: String

    @Option(help: "Validity in days.")
    var days: Int = 365

    @Option(help: "Where to write the certificate (PEM).")
    var out: String

    func validate() throws {
        if !(1...ConsortiumCA.maximumDays).contains(days) {
            throw ValidationError("--days must be from 1 to \(ConsortiumCA.maximumDays) (100 years), got \(days); ask for a shorter validity and renew the certificate before it ends.")
        }
    }

    func run() async throws {
        let authority = try ConsortiumCA.load(directory: ca)
        let request = try PEMFiles.csr(at: csr)
        let certificate: Certificate
        do {
            certificate = try authority.sign(request, days: days)
        } catch {
            throw CLIError("cannot sign \(csr): \(error)")
        }
        try PEMFiles.write(try PEMFiles.pem(certificate), to: out)
        let member = MemberCertificate(certificate)!
        print("issued \(out) for \(MemberName.uri(consortium: member.consortium, institution: member.institution)), serial \(certificate.serialNumber), valid until \(certificate.notValidAfter)")
    }
}

struct CARevokeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "revoke",
        abstract: "Add a certificate to the CA-signed revocation list (CA_DIR/crl.pem) that peers load."
    )

    @Option(help: "The CA directory.")
    var ca: String

    @Option(help: "The certificate to revoke (PEM).")
    var cert: String

    func run() async throws {
        let authority = try ConsortiumCA.load(directory: ca)
        let certificate = try PEMFiles.certificate(at: cert)
        guard certificate.issuer == authority.certificate.subject else {
            throw CLIError("\(cert) was not issued by the CA in \(ca).")
        }
        let path = "\(ca)/\(ConsortiumCA.Files.revocationList)"
        var entries: [RevocationList.Entry] = []
        var number = 0
        if FileManager.default.fileExists(atPath: path) {
            let current = try RevocationList.load(path: path, caCertificate: authority.certificate)
            entries = current.entries
            number = current.number
        }
        if entries.contains(where: { $0.serial == certificate.serialNumber }) {
            print("\(cert) (serial \(certificate.serialNumber)) is already revoked in \(path)")
            return
        }
        entries.append(RevocationList.Entry(serial: certificate.serialNumber, revoked: Date()))
        let list = try RevocationList.issue(by: authority, revoked: entries, number: number + 1)
        try PEMFiles.write(list.pem, to: path)
        print("revoked serial \(certificate.serialNumber); \(path) now lists \(entries.count) certificate(s) (CRL number \(list.number)); distribute it with the network config")
    }
}
