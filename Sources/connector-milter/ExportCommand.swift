// `connector-milter export postfix|sendmail`: the outbound connectors as static MTA tables
// (docs/outbound-maps.md). The live alternative for Postfix is `run --maps-socket`.

import ArgumentParser
import ConnectorDaemon
import ConnectorPolicy
import ConnectorReview
import Foundation

enum ExportTarget: String, ExpressibleByArgument, CaseIterable, Sendable {
    case postfix, sendmail
}

struct Export: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write the outbound connectors as Postfix or Sendmail tables.",
        discussion: """
            postfix: tls_policy, transport and relay_domains (run postmap on each) and main.cf.snippet. \
            sendmail: access (TLS_Rcpt:, TLS_Srv: and Connect: RELAY entries), mailertable, relay-domains and \
            sendmail.mc.snippet. With --output the files are written into that directory \
            (created if missing, files replaced); without it they are printed, each after a \
            "==> NAME <==" line. Exit 78 when the policy file is invalid.
            """)

    @Argument(help: "The MTA: postfix or sendmail.")
    var target: ExportTarget

    @Option(help: ArgumentHelp("The policy file.", valueName: "file"))
    var config: String = defaultPolicyPath

    @Option(help: ArgumentHelp("Write the files into this directory instead of printing them.", valueName: "dir"))
    var output: String?

    func run() throws {
        let policy: Policy
        switch PolicyParser.load(path: config) {
        case .failure(let problems):
            FileHandle.standardError.write(Data((problems.description + "\n").utf8))
            throw Sysexit.config.exitCode
        case .success(let loaded):
            policy = loaded
        }
        let set = PolicySet(policy)
        let directory = output.map { absolutePath($0, relativeTo: currentDirectory()) }
        let files: [ExportedFile]
        switch target {
        case .postfix:
            files = OutboundExport.postfix(set, source: config, directory: directory ?? "/etc/postfix/connector-milter")
        case .sendmail:
            files = OutboundExport.sendmail(set, source: config)
        }

        guard let directory else {
            print(files.map { "==> \($0.name) <==\n\($0.contents)" }.joined(separator: "\n"), terminator: "")
            return
        }
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            for file in files {
                // Atomic: a postmap or makemap running meanwhile never reads half a file.
                try file.contents.write(toFile: directory + "/" + file.name, atomically: true, encoding: .utf8)
            }
        } catch {
            printError("connector-milter: cannot write into \(directory): \(error.localizedDescription)")
            throw Sysexit.cantCreate.exitCode
        }
        printError("\(files.map(\.name).joined(separator: ", ")) written to \(directory)")
    }
}
