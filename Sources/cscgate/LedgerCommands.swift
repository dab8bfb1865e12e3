import ArgumentParser
import Crypto
import Foundation
import GatewayCore
import Ledger

/// Opens the configured ledger (SQLite file or PostgreSQL database, migrated); a gateway that
/// cannot record does not start.
func openLedger(_ settings: GatewayConfiguration.LedgerSettings) async throws -> any UsageLedger & LedgerStore & LedgerLifecycle {
    do {
        let signer = try CheckpointSigner.loadOrCreate(keyFile: settings.checkpointKeyFile, interval: settings.checkpointInterval)
        return try await LedgerBackends.openLedger(settings, signer: signer)
    } catch {
        FileHandle.standardError.write(Data("cannot open the usage ledger at \(settings.location): \(error)\n".utf8))
        throw ExitCode(2)
    }
}

/// Runs `body` over a reader of the configured ledger; an unreachable ledger exits with 2.
func withLedgerStore<T: Sendable>(_ settings: GatewayConfiguration.LedgerSettings,
                                  _ body: (any LedgerStore) async throws -> T) async throws -> T {
    do {
        return try await LedgerBackends.withStore(settings, body)
    } catch let error as ExitCode {
        throw error
    } catch let error as ValidationError {
        throw error
    } catch {
        FileHandle.standardError.write(Data("cannot read the usage ledger at \(settings.location): \(error)\n".utf8))
        throw ExitCode(2)
    }
}

struct LedgerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "ledger", abstract: "The usage ledger.",
                                                    subcommands: [Verify.self, LedgerBench.self])

    struct Verify: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Recompute every tenant's hash chain and check the signed checkpoints; name each break.")

        @OptionGroup var options: ConfigOption
        @Option(help: "Only this tenant.") var tenant: String?

        func run() async throws {
            let settings = try loadSettings(options.config)
            let publicKey = try CheckpointSigner.loadOrCreate(keyFile: settings.checkpointKeyFile, interval: 1).publicKey
            let tenant = tenant
            let result = try await withLedgerStore(settings) { store in
                try await LedgerVerifier.verify(store, publicKey: publicKey, tenant: tenant)
            }
            for (t, n) in result.events.sorted(by: { $0.key < $1.key }) {
                print("\(t): \(n) events, \(result.checkpoints[t] ?? 0) signed checkpoints verified")
            }
            if result.isIntact {
                print("ledger intact")
            } else {
                for p in result.problems { print("TAMPERED \(p)") }
                throw ExitCode(1)
            }
        }
    }
}

struct Report: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "A tenant's usage over a period, grouped, as CSV or JSON.")

    @OptionGroup var options: ConfigOption
    @Option(help: "The tenant.") var tenant: String
    @Option(help: "Start, inclusive: YYYY-MM-DD or an ISO 8601 time (UTC).") var from: String
    @Option(help: "End, exclusive: YYYY-MM-DD or an ISO 8601 time (UTC).") var to: String
    @Option(name: .customLong("group-by"), help: "day, client, credential, upstream, outcome or operation.")
    var groupBy: String = "day"
    @Option(help: "csv or json.") var format: String = "csv"

    func run() async throws {
        guard let grouping = UsageReport.Grouping(rawValue: groupBy) else {
            throw ValidationError("--group-by must be one of \(UsageReport.Grouping.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        guard let start = parseDate(from), let end = parseDate(to), start < end else {
            throw ValidationError("--from and --to must be dates (YYYY-MM-DD or ISO 8601) with --from before --to")
        }
        let settings = try loadSettings(options.config)
        let tenant = tenant
        let report = try await withLedgerStore(settings) { store in
            try await UsageReport.make(store, tenant: tenant, from: start, to: end, grouping: grouping)
        }
        switch format {
        case "csv": print(report.csv, terminator: "")
        case "json": print(String(decoding: report.json, as: UTF8.self))
        default: throw ValidationError("--format must be csv or json")
        }
    }
}

func loadSettings(_ config: String) throws -> GatewayConfiguration.LedgerSettings {
    do { return try ConfigurationLoader.load(gatewayFile: config).gateway.ledger } catch let e as ConfigurationError {
        FileHandle.standardError.write(Data("configuration is invalid:\n\(e)\n".utf8))
        throw ExitCode(2)
    }
}

func parseDate(_ s: String) -> Date? {
    if let d = ISO8601DateFormatter().date(from: s) { return d }
    let f = DateFormatter()
    f.locale = Locale(identifier: "en_US_POSIX")
    f.timeZone = TimeZone(identifier: "UTC")
    f.dateFormat = "yyyy-MM-dd"
    return f.date(from: s)
}
