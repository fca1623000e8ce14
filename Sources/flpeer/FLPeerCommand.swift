import ArgumentParser

@main
struct FLPeerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "flpeer",
        abstract: "Serverless federated learning among consortium members.",
        discussion: "Exit codes: 0 success, 1 runtime failure, 64 usage error.",
        subcommands: [DemoCommand.self, JoinCommand.self, TrainCommand.self, DataCommand.self, CACommand.self, KeygenCommand.self, ConfigCommand.self]
    )
}
