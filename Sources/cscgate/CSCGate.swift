import ArgumentParser
import CSC
import Foundation
import GatewayCore
import GatewayServer
import Hummingbird
import Ledger
import Logging
import NIOCore
import NIOPosix
import Revocation
import Upstreams

/// Entry point. Installs NIO's event loops as Swift's global executor before any task exists,
/// so a request's awaits (HTTP in, upstream call, response out) stay on the event-loop
/// threads instead of crossing to a second thread pool and back at every step.
@main
enum Entry {
    static func main() {
        // The event-loop count has to be known before the first task runs, so before the
        // configuration is read: an environment variable, like GOMAXPROCS.
        if let text = ProcessInfo.processInfo.environment["CSCGATE_EVENT_LOOPS"] {
            if let n = Int(text), (1...256).contains(n) {
                NIOSingletons.groupLoopCountSuggestion = n
            } else {
                FileHandle.standardError.write(Data("CSCGATE_EVENT_LOOPS must be a number from 1 to 256; using one per core\n".utf8))
            }
        }
        _ = NIOSingletons.unsafeTryInstallSingletonPosixEventLoopGroupAsConcurrencyGlobalExecutor()
        // The command runs on the main actor, whose executor is the main queue: the main thread
        // must serve that queue (dispatchMain), not wait.
        Task { @MainActor in
            await CSCGate.main()
            exit(0)
        }
        dispatchMain()
    }
}

struct CSCGate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cscgate",
        abstract: "A multi-tenant CSC remote-signing gateway.",
        subcommands: [Serve.self, Check.self, Secret.self, Keys.self, LedgerCommand.self, Report.self, OCSPCommand.self,
                      PolicyCommand.self])
}

struct ConfigOption: ParsableArguments {
    @Option(name: .long, help: "Path to gateway.yaml.")
    var config: String = "gateway.yaml"
}

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run the gateway.")

    @OptionGroup var options: ConfigOption

    @Option(name: .long, help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: String = ProcessInfo.processInfo.environment["CSCGATE_LOG_LEVEL"] ?? "info"

    func run() async throws {
        let level = Logger.Level(rawValue: logLevel) ?? .info
        LoggingSystem.bootstrap { label in GatewayLogHandler(label: label, level: level) }
        let logger = Logger(label: "cscgate")
        let loaded: LoadedConfiguration
        do {
            loaded = try ConfigurationLoader.load(gatewayFile: options.config)
        } catch let error as ConfigurationError {
            FileHandle.standardError.write(Data("configuration is invalid:\n\(error)\n".utf8))
            throw ExitCode(2)
        }
        let seal = try sadSeal(loaded.gateway.sad, logger: logger)
        var upstreams = [CSCUpstream]()
        for u in loaded.gateway.upstreams where !u.isPKCS11 {
            do { upstreams.append(try CSCUpstream(u)) } catch {
                FileHandle.standardError.write(Data("upstream '\(u.name)': cannot set up TLS (caFile): \(error)\n".utf8))
                throw ExitCode(2)
            }
        }
        let inFlight = OperationsInFlight()
        let opened = loaded.gateway.ledger.enabled ? try await openLedger(loaded.gateway.ledger, inFlight: inFlight, logger: logger) : nil
        let ledger = opened?.ledger
        if ledger == nil { logger.warning("the usage ledger is disabled (ledger.enabled: false): nothing is recorded or billed") }
        if let recovered = (ledger as? SQLiteLedger)?.recoveredEvents, recovered > 0 {
            logger.notice("usage events from before a crash stored from the journal", metadata: ["events": .stringConvertible(recovered)])
        }
        // PIN and OTP failures of local credentials live beside the ledger, so a restart does
        // not unlock and instances sharing a PostgreSQL ledger share one count.
        let attempts: any AuthorizationAttempts = (ledger as? any AuthorizationAttempts) ?? AttemptsInMemory()
        if ledger == nil && loaded.gateway.upstreams.contains(where: \.isPKCS11) {
            logger.warning("without the ledger, PIN and OTP failures are counted in this process only: a restart unlocks")
        }
        // Local HSMs: the module is loaded and the token found now, so a wrong path, label or
        // PIN stops the gateway at start rather than at the first signature.
        var hsms = [PKCS11Backend]()
        for u in loaded.gateway.upstreams {
            guard let settings = u.pkcs11 else { continue }
            do {
                let hsm = try PKCS11Backend(name: u.name, settings: settings, attempts: attempts,
                                            sadKey: seal.derivedKey(purpose: "local SAD"))
                let context = OperationContext(requestID: "startup", logger: logger)
                for problem in try await hsm.open(context) {
                    logger.warning("HSM credential not usable", metadata: ["upstream": .string(u.name), "problem": .string(problem)])
                }
                hsms.append(hsm)
            } catch {
                FileHandle.standardError.write(Data("upstream '\(u.name)': cannot open the PKCS#11 token: \(error)\n".utf8))
                throw ExitCode(2)
            }
        }
        defer { for h in hsms { h.shutdown() } }
        let backends = upstreams.map { ($0.name, $0 as any SigningBackend) } + hsms.map { ($0.name, $0 as any SigningBackend) }
        let revocation = try SignerCertificateChecking(loaded, evidence: ledger as? any EvidenceStore)
        let counters = try await openCounters(loaded, ledger: ledger, logger: logger)
        let limits = Limits(store: counters.store, timeout: loaded.gateway.counters.timeout,
                            permitLease: loaded.gateway.counters.permitLease)
        let sessions = try await openSessions(loaded, logger: logger)
        let gateway = Gateway(configuration: loaded, backends: Dictionary(backends, uniquingKeysWith: { a, _ in a }), seal: seal,
                              ledger: ledger, limits: limits, revocation: revocation?.checker,
                              sessions: sessions.map { (tokens: $0, budgets: $0) }, inFlight: inFlight)
        // tenants/ and policies/ change without a restart: SIGHUP, a file watch, POST /admin/v1/reload.
        let reload = ConfigurationReload(gatewayFile: options.config, gateway: gateway)
        var admin = AdminAPI(operators: loaded.gateway.admins)
        admin.addPolicyRoutes(gateway: gateway, reload: reload)
        signal(SIGHUP, SIG_IGN)
        let hangup = DispatchSource.makeSignalSource(signal: SIGHUP, queue: DispatchQueue(label: "cscgate.sighup"))
        hangup.setEventHandler { reload.reload(trigger: "SIGHUP", logger: logger) }
        hangup.resume()
        let watch = Task { await reload.watch(every: loaded.gateway.reloadPollInterval, logger: logger) }
        logger.info("starting", metadata: [
            "address": .string("\(loaded.gateway.host):\(loaded.gateway.port)"),
            "tenants": .stringConvertible(loaded.tenants.count), "upstreams": .stringConvertible(backends.count),
            "policies": .stringConvertible(loaded.policies.count), "counters": .string(counters.postgres == nil ? "memory" : "postgres"),
            "sessions": .string(sessions == nil ? "memory" : "postgres"),
        ])
        // Usage for operators (/admin/v1/usage, usage/export, reports) and for tenants' clients
        // (/tenant/v1/…), read from the ledger this gateway writes.
        let usage = opened.map { UsageAPI(store: $0.ledger, gateway: gateway, publicKey: $0.signer.publicKey) }
        let app = GatewayApplication.make(gateway: gateway, admin: admin, usage: usage, logger: logger)
        do {
            try await app.runService()
        } catch {
            watch.cancel()
            hangup.cancel()
            for u in upstreams { await u.shutdown() }
            await revocation?.shutdown()
            await counters.postgres?.shutdown()
            await sessions?.shutdown()
            await ledger?.shutdown()
            throw error
        }
        watch.cancel()
        hangup.cancel()
        for u in upstreams { await u.shutdown() }
        await revocation?.shutdown()
        await counters.postgres?.shutdown()
        await sessions?.shutdown()
        await ledger?.shutdown()
    }

    /// Tokens and SAD budgets: nil keeps them in this process; `sessions:` shares them in
    /// PostgreSQL, reachable at start like the ledger.
    func openSessions(_ loaded: LoadedConfiguration, logger: Logger) async throws -> PostgresSessionStore? {
        guard let pg = loaded.gateway.sessions.postgres else { return nil }
        do {
            return try await PostgresSessionStore(settings: pg, timeout: loaded.gateway.sessions.timeout,
                                                  accessLifetime: loaded.gateway.tokens.accessTokenLifetime,
                                                  refreshLifetime: loaded.gateway.tokens.refreshTokenLifetime)
        } catch {
            FileHandle.standardError.write(Data("cannot open the session store at \(pg.url): \(error)\n".utf8))
            throw ExitCode(2)
        }
    }

    /// The limit counters: in memory, or PostgreSQL (reachable at start, like the ledger). Monthly
    /// quotas start from what the ledger has billed this month, so a restart forgets nothing.
    func openCounters(_ loaded: LoadedConfiguration, ledger: (any LedgerStore)?, logger: Logger) async throws
        -> (store: any CounterStore, postgres: PostgresCounterStore?) {
        var postgres: PostgresCounterStore?
        let store: any CounterStore
        if let pg = loaded.gateway.counters.postgres {
            do {
                let s = try await PostgresCounterStore(settings: pg)
                postgres = s
                store = s
            } catch {
                FileHandle.standardError.write(Data("cannot open the limit counters at \(pg.url): \(error)\n".utf8))
                throw ExitCode(2)
            }
        } else {
            store = InMemoryCounterStore()
        }
        let month = MonthWindow(containing: Date())
        for t in loaded.tenants where t.plan?.monthlyQuota != nil {
            guard let ledger else { break }
            do {
                let lines = try await ledger.usageCells(tenant: t.id, from: Date(timeIntervalSince1970: month.start),
                                                        to: Date(timeIntervalSince1970: month.end), grouping: .outcome, byDay: false)
                let billed = lines.reduce(0) { $0 + $1.billedSignatures }
                try await store.seed(key: Limits.quotaKey(tenant: t.id, month: month.key), used: billed)
            } catch {
                logger.warning("monthly quota could not be seeded from the ledger", metadata: [
                    "tenant": .string(t.id), "error": .string("\(error)"),
                ])
            }
        }
        return (store, postgres)
    }

    /// Without a configured key, SADs are sealed with a key that dies with the process.
    func sadSeal(_ settings: GatewayConfiguration.SADSettings, logger: Logger) throws -> SADSeal {
        var text: String?
        if let env = settings.keyEnvironment { text = try SecretReference.environment(env).resolve() }
        if let file = settings.keyFile { text = try SecretReference.file(file).resolve() }
        guard let text else {
            logger.warning("no SAD key configured (sad.keyEnv or sad.keyFile): SADs will not survive a restart")
            return .randomKey()
        }
        guard let seal = SADSeal(base64Key: text) else {
            FileHandle.standardError.write(Data("the SAD key must be 32 bytes, base64-encoded\n".utf8))
            throw ExitCode(2)
        }
        return seal
    }
}

struct Check: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Validate gateway.yaml, tenants/ and policies/; print every problem with file and line.")

    @OptionGroup var options: ConfigOption

    func run() throws {
        do {
            let loaded = try ConfigurationLoader.load(gatewayFile: options.config)
            let credentials = loaded.tenants.reduce(0) { $0 + $1.credentials.count }
            if !loaded.gateway.ledger.enabled {
                print("warning: ledger.enabled is false: no operation is recorded, billed or auditable")
            }
            print("ok: \(loaded.gateway.upstreams.count) upstreams, \(loaded.tenants.count) tenants, \(credentials) credentials")
        } catch let error as ConfigurationError {
            for issue in error.issues { print(issue) }
            throw ExitCode(1)
        }
    }
}

struct Secret: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Client secrets.", subcommands: [Hash.self])

    struct Hash: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Read a client secret on standard input and print its stored form for a tenant file.")

        func run() throws {
            // Read from stdin, not argv: arguments show up in process lists and shell history.
            let data = FileHandle.standardInput.readDataToEndOfFile()
            guard var secret = String(data: data, encoding: .utf8) else { throw ValidationError("the secret is not UTF-8") }
            while secret.hasSuffix("\n") || secret.hasSuffix("\r") { secret.removeLast() }
            guard secret.count >= 16 else { throw ValidationError("a client secret must have at least 16 characters") }
            print(try SecretHash.make(secret: secret).encoded)
        }
    }
}
