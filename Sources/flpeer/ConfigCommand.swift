import ArgumentParser
import FLPeer

struct ConfigCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "config",
        abstract: "Check configuration files.",
        subcommands: [ConfigCheckCommand.self]
    )
}

struct ConfigCheckCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Load a peer file and its network file, check certificates (including their validity dates) and paths, and summarise them.",
        discussion: "Exit 0 when usable; otherwise exit 1 with one sentence naming the file, the key and the fix."
    )

    @Option(help: "The peer's YAML file.")
    var config: String

    func run() async throws {
        let peer: PeerConfig
        do {
            peer = try PeerConfig.load(config)
        } catch {
            throw CLIError("\(error)")
        }
        let n = peer.network
        let until = (try? peer.tls()).map { PeerConfig.utc($0.certificate.notValidAfter) } ?? "?"
        print("\(config): member '\(peer.id)' of '\(n.consortium)' (\(n.members.count) members), listening on \(peer.listenHost):\(peer.listenPort), dialling [\(peer.dial.joined(separator: ", "))]; plan: \(n.plan.rounds) rounds of \(n.plan.model.rawValue) with \(n.plan.rule); certificate valid until \(until)")
    }
}
