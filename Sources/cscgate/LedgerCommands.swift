import ArgumentParser
import Crypto
import Foundation
import GatewayCore
import Ledger
import Logging

/// Opens the configured ledger (SQLite file or PostgreSQL database, migrated); a gateway that
/// cannot record does not start.
func openLedger(_ settings: GatewayConfiguration.LedgerSettings, inFlight: OperationsInFlight? = nil,
                logger: Logger = Logger(label: "cscgate.ledger")) async throws
    -> (ledger: any UsageLedger & LedgerStore & LedgerLifecycle, signer: CheckpointSigner) {
    do {
        let signer = try CheckpointSigner.loadOrCreate(keyFile: settings.checkpointKeyFile, interval: settings.checkpointInterval)
        return (try await LedgerBackends.openLedger(settings, signer: signer, inFlight: inFlight, logger: logger), signer)
    } catch {
        FileHandle.standardError.write(Data("cannot open the usage ledger at \(settings.location): \(error)\n".utf8))
        throw ExitCode(2)
    }
}

/// Runs `body` over a reader of the configured ledger; an unreachable ledger exits with 2. A
/// SQLite ledger no gateway holds first gets what its journal kept from before a crash.
func withLedgerStore<T: Sendable>(_ settings: GatewayConfiguration.LedgerSettings,
                                  _ body: (any LedgerStore) async throws -> T) async throws -> T {
    do {
        let signer = try? CheckpointSigner.load(keyFile: settings.checkpointKeyFile, interval: settings.checkpointInterval)
        switch try LedgerBackends.recoverJournal(settings, signer: signer) {
        case .current: break
        case .recovered(let n):
            FileHandle.standardError.write(Data("note: stored \(n) usage events from the journal that a stopped gateway had acknowledged\n".utf8))
        case .inUse:
            FileHandle.standardError.write(Data("note: a running gateway writes this ledger; its events of the last moment may not be in the file yet\n".utf8))
        }
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
                                                    subcommands: [Verify.self, Export.self, LedgerBench.self])

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
    static let configuration = CommandConfiguration(
        abstract: "A tenant's usage over a period, grouped, with invoice lines from its plan, as CSV, JSON or HTML.")

    @OptionGroup var options: ConfigOption
    @Option(help: "The tenant.") var tenant: String
    @Flag(name: .customLong("include-subtenants"), help: "Also the tenants whose parent (reseller) is --tenant.")
    var includeSubtenants = false
    @Option(help: "Start, inclusive: YYYY-MM-DD or an ISO 8601 time (UTC).") var from: String
    @Option(help: "End, exclusive: YYYY-MM-DD or an ISO 8601 time (UTC).") var to: String
    @Option(name: .customLong("group-by"), help: "day, month, client, credential, upstream, outcome, operation or reason.")
    var groupBy: String = "day"
    @Option(help: "csv, json or html (one self-contained page, with the ledger's verification).") var format: String = "csv"

    func run() async throws {
        guard let grouping = UsageReport.Grouping(rawValue: groupBy) else {
            throw ValidationError("--group-by must be one of \(UsageReport.Grouping.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        guard ["csv", "json", "html"].contains(format) else { throw ValidationError("--format must be csv, json or html") }
        let (start, end) = try period(from, to)
        let loaded = try loadConfiguration(options.config)
        let settings = loaded.gateway.ledger
        let tenant = tenant, includeSubtenants = includeSubtenants, format = format
        let plans = Dictionary(loaded.tenants.compactMap { t in t.plan.map { (t.id, $0) } }, uniquingKeysWith: { a, _ in a })
        let publicKey = format == "html"
            ? try CheckpointSigner.loadOrCreate(keyFile: settings.checkpointKeyFile, interval: 1).publicKey : nil
        let output = try await withLedgerStore(settings) { store in
            let tenants = try await scopedTenants(store, loaded, tenant: tenant, includeSubtenants: includeSubtenants)
            let statement = try await UsageStatement.make(store, tenants: tenants ?? [tenant], plans: plans, from: start, to: end,
                                                          grouping: grouping)
            switch format {
            case "json": return String(decoding: statement.json, as: UTF8.self) + "\n"
            case "html": return try await CompliancePage.make(store, statement: statement, publicKey: publicKey)
            default: return statement.csv
            }
        }
        print(output, terminator: "")
    }
}

/// The operator's scope on the command line: every configured tenant, and tenants that only
/// the ledger still knows. The same `UsageScope` as the APIs, so `--include-subtenants` means
/// the same everywhere.
func scopedTenants(_ store: any LedgerStore, _ loaded: LoadedConfiguration, tenant: String?,
                   includeSubtenants: Bool) async throws -> [String]? {
    var known = Set<String>()
    if let tenant, !loaded.tenants.contains(where: { $0.id == tenant }),
       try await store.usageEvents(UsageEventQuery(tenants: [tenant], limit: 1)).isEmpty == false {
        known.insert(tenant)
    }
    let scope = UsageScope(reader: .operator("command line"), tenants: loaded.tenants, known: known)
    if tenant == nil && !includeSubtenants { return nil }
    do {
        return try scope.tenants(named: tenant, includeSubtenants: includeSubtenants)
    } catch {
        throw ValidationError(error.errorDescription)
    }
}

func period(_ from: String, _ to: String) throws -> (Date, Date) {
    guard let start = UsageReport.parseDate(from), let end = UsageReport.parseDate(to), start < end else {
        throw ValidationError("--from and --to must be dates (YYYY-MM-DD or ISO 8601) with --from before --to")
    }
    return (start, end)
}

extension LedgerCommand {
    struct Export: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Usage events as CloudEvents 1.0 JSON lines, ids stable across exports (for OpenMeter, Lago, Stripe).")

        @OptionGroup var options: ConfigOption
        @Option(help: "cloudevents (the only format).") var format: String = "cloudevents"
        @Option(help: "Start, inclusive: YYYY-MM-DD or an ISO 8601 time (UTC).") var from: String
        @Option(help: "End, exclusive: YYYY-MM-DD or an ISO 8601 time (UTC).") var to: String
        @Option(help: "Only this tenant (default: every tenant).") var tenant: String?
        @Flag(name: .customLong("include-subtenants"), help: "With --tenant: also its sub-tenants.") var includeSubtenants = false
        @Option(help: "Only events with this outcome: ok, denied or failed.") var outcome: String?

        func run() async throws {
            guard format == "cloudevents" else { throw ValidationError("--format must be cloudevents") }
            let (start, end) = try period(from, to)
            var outcomeFilter: UsageOutcome?
            if let outcome {
                guard let o = UsageOutcome(rawValue: outcome) else { throw ValidationError("--outcome must be ok, denied or failed") }
                outcomeFilter = o
            }
            let loaded = try loadConfiguration(options.config)
            let tenant = tenant, includeSubtenants = includeSubtenants, outcomeValue = outcomeFilter
            try await withLedgerStore(loaded.gateway.ledger) { store in
                let tenants = try await scopedTenants(store, loaded, tenant: tenant, includeSubtenants: includeSubtenants)
                let query = UsageEventQuery(tenants: tenants, from: start, to: end, outcome: outcomeValue)
                var buffer = ""
                try await UsageCloudEvents.export(store, query) { line in
                    buffer += line
                    buffer += "\n"
                    if buffer.utf8.count > 1 << 16 {
                        FileHandle.standardOutput.write(Data(buffer.utf8))
                        buffer = ""
                    }
                }
                FileHandle.standardOutput.write(Data(buffer.utf8))
            }
        }
    }
}

func loadConfiguration(_ config: String) throws -> LoadedConfiguration {
    do { return try ConfigurationLoader.load(gatewayFile: config) } catch let e as ConfigurationError {
        FileHandle.standardError.write(Data("configuration is invalid:\n\(e)\n".utf8))
        throw ExitCode(2)
    }
}

func loadSettings(_ config: String) throws -> GatewayConfiguration.LedgerSettings {
    do { return try ConfigurationLoader.load(gatewayFile: config).gateway.ledger } catch let e as ConfigurationError {
        FileHandle.standardError.write(Data("configuration is invalid:\n\(e)\n".utf8))
        throw ExitCode(2)
    }
}
