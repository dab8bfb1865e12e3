import ArgumentParser
import Crypto
import Foundation
import GatewayCore
import Ledger

/// `cscgate ledger bench` (hidden): the ledger alone, outside the request path. Measures
/// durable events/s through `record` with many concurrent recorders (group commit), and the
/// time to build a one-month report over a bulk-loaded ledger. Prints one JSON object per
/// figure on standard output, for benchmarks/ledger.py.
struct LedgerBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench", abstract: "Measure the ledger: durable events/s and report time.", shouldDisplay: false)

    @Option(help: "A SQLite file to create (must not exist).") var sqlite: String?
    @Option(help: "postgres://user@host:port/database; the password, if any, from PGPASSWORD.") var postgres: String?
    @Option(help: "PostgreSQL schema, dropped and created anew.") var schema: String = "ledger_bench"
    @Option(help: "Events to record through record().") var events: Int = 100_000
    @Option(help: "Concurrent recorders.") var concurrency: Int = 512
    @Option(help: "Tenants the events are spread over.") var tenants: Int = 8
    @Option(help: "Events to bulk-load for the report figure (0: skip).") var reportEvents: Int = 0
    @Option(help: "Checkpoint every N events per tenant.") var checkpointInterval: Int = 1000
    @Option(name: .customLong("client-request-ids"),
            help: "Percent of recorded events whose request id the client chose (each is looked up as a possible retry).")
    var clientRequestIDs: Int = 0
    @Flag(help: "Verify the chains after recording.") var verify = false

    func run() async throws {
        guard (sqlite == nil) != (postgres == nil) else { throw ValidationError("give exactly one of --sqlite or --postgres") }
        let signer = CheckpointSigner(key: Curve25519.Signing.PrivateKey(), interval: checkpointInterval)
        let backend = sqlite == nil ? "postgres" : "sqlite"

        if events > 0 {
            let ledger = try await open(suffix: "record", signer: signer)
            let n = events, c = max(1, concurrency), t = max(1, tenants)
            // Made before the clock starts: the figure is the ledger's, not the event factory's.
            let share = min(100, max(0, clientRequestIDs))
            let made = (0..<n).map { i in
                var e = Self.event(i, tenant: "tenant-\(i % t)", of: n)
                e.requestIDFromClient = i % 100 < share
                return e
            }
            let started = ContinuousClock.now
            try await withThrowingTaskGroup(of: Void.self) { group in
                for worker in 0..<c {
                    group.addTask {
                        var i = worker
                        while i < n {
                            try await ledger.record(made[i])
                            i += c
                        }
                    }
                }
                try await group.waitForAll()
            }
            let seconds = (ContinuousClock.now - started).seconds
            emit(["backend": backend, "figure": "record", "events": n, "concurrency": c, "tenants": t, "seconds": seconds,
                  "events_per_s": Double(n) / seconds, "client_request_ids_percent": share])
            if verify {
                let v = try await LedgerVerifier.verify(ledger, publicKey: signer.publicKey)
                let total = v.events.values.reduce(0, +)
                emit(["backend": backend, "figure": "verify", "intact": v.isIntact, "events": total])
                guard v.isIntact, total == n else { throw ExitCode(1) }
            }
            await ledger.shutdown()
        }

        if reportEvents > 0 {
            let ledger = try await open(suffix: "report", signer: signer)
            let m = reportEvents
            var batch = [UsageEvent]()
            batch.reserveCapacity(100_000)
            // Only the loading is timed, not the making of the events.
            var loading = Duration.zero
            for i in 0..<m {
                batch.append(Self.event(i, tenant: "acme", of: m))
                if batch.count == 100_000 || i == m - 1 {
                    let started = ContinuousClock.now
                    try await load(batch, into: ledger)
                    loading += ContinuousClock.now - started
                    batch.removeAll(keepingCapacity: true)
                }
            }
            let loadSeconds = loading.seconds
            emit(["backend": backend, "figure": "bulk-load", "events": m, "seconds": loadSeconds,
                  "events_per_s": Double(m) / loadSeconds])
            await ledger.shutdown()
            // The report as `cscgate report` builds it: a fresh reader over the stored ledger.
            let store = try await reader(suffix: "report")
            let from = Self.monthStart, to = Self.monthStart.addingTimeInterval(31 * 86400)
            for grouping in [UsageReport.Grouping.day, .client, .upstream, .outcome] {
                var best = Double.infinity
                var report: UsageReport?
                for _ in 0..<3 {
                    let started = ContinuousClock.now
                    report = try await UsageReport.make(store, tenant: "acme", from: from, to: to, grouping: grouping)
                    best = min(best, (ContinuousClock.now - started).seconds)
                }
                emit(["backend": backend, "figure": "report", "group_by": grouping.rawValue, "events": m,
                      "operations_counted": report?.total.operations ?? 0, "lines": report?.lines.count ?? 0, "seconds": best])
            }
            // What `cscgate report` really runs: the report plus the month's invoice lines.
            let plans = ["acme": TenantPlan(currency: "EUR", monthlyFee: 49, includedSignatures: 100_000,
                                            pricePerSignature: 0, overagePrice: Decimal(string: "0.045") ?? 0)]
            var best = Double.infinity
            var statement: UsageStatement?
            for _ in 0..<3 {
                let started = ContinuousClock.now
                statement = try await UsageStatement.make(store, tenants: ["acme"], plans: plans, from: from, to: to,
                                                          grouping: .client)
                best = min(best, (ContinuousClock.now - started).seconds)
            }
            emit(["backend": backend, "figure": "report+invoice", "group_by": "client", "events": m,
                  "billed": statement?.sections.first?.invoices.first?.billedSignatures ?? 0, "seconds": best])
            if let pg = store as? LedgerLifecycle { await pg.shutdown() }
        }
    }

    static let monthStart = Date(timeIntervalSince1970: 1_767_225_600)  // 2026-01-01T00:00:00Z

    /// A plausible mix spread evenly over 30 days: 90 % ok (1–3 signatures), 7 % denied,
    /// 3 % failed, over 20 clients, 50 credentials and 3 upstreams.
    static func event(_ i: Int, tenant: String, of total: Int) -> UsageEvent {
        let outcome: UsageOutcome = i % 100 < 90 ? .ok : (i % 100 < 97 ? .denied : .failed)
        let offset = Double(i) * 30 * 86400 / Double(max(1, total))
        return UsageEvent(
            id: UsageEvent.eventID(tenantID: tenant, clientID: "client-\(i % 20)", requestID: "bench-\(i)",
                                   operation: "signatures/signHash"),
            time: monthStart.addingTimeInterval(offset), tenantID: tenant, clientID: "client-\(i % 20)",
            credentialID: "cred-\(i % 50)", upstream: ["vendor-a", "vendor-b", "hsm"][i % 3], operation: "signatures/signHash",
            signatures: outcome == .ok ? 1 + i % 3 : 0, signAlgorithm: "1.2.840.10045.4.3.2", hashAlgorithm: "2.16.840.1.101.3.4.2.1",
            outcome: outcome, stage: outcome == .ok ? nil : (outcome == .denied ? "sad" : "upstream"),
            reason: outcome == .ok ? nil : (outcome == .denied ? "SAD expired" : "upstream timed out"),
            latencyMicros: 800 + i % 400, requestID: "bench-\(i)")
    }

    func postgresSettings(suffix: String) throws -> GatewayConfiguration.PostgresLedgerSettings {
        guard case .success(var settings) = GatewayConfiguration.PostgresLedgerSettings.parse(url: postgres ?? "") else {
            throw ValidationError("--postgres must be postgres://user@host:port/database")
        }
        if ProcessInfo.processInfo.environment["PGPASSWORD"] != nil { settings.password = .environment("PGPASSWORD") }
        settings.schema = "\(schema)_\(suffix)"
        settings.maxConnections = 4
        return settings
    }

    func open(suffix: String, signer: CheckpointSigner) async throws -> any UsageLedger & LedgerStore & LedgerLifecycle {
        if let sqlite {
            let path = sqlite + "." + suffix
            for ext in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: path + ext) }
            return try SQLiteLedger(path: path, checkpoints: signer)
        }
        let settings = try postgresSettings(suffix: suffix)
        try await PostgresLedger.dropSchema(settings)
        return try await PostgresLedger(settings: settings, checkpoints: signer)
    }

    func reader(suffix: String) async throws -> any LedgerStore {
        if let sqlite { return try SQLiteLedgerStore(path: sqlite + "." + suffix) }
        return try await PostgresLedger(settings: try postgresSettings(suffix: suffix), checkpoints: nil, migrate: false)
    }

    func load(_ events: [UsageEvent], into ledger: any UsageLedger) async throws {
        if let l = ledger as? SQLiteLedger { try await l.load(events) }
        if let l = ledger as? PostgresLedger { try await l.load(events) }
    }

    func emit(_ object: [String: Any]) {
        if let data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]) {
            print(String(decoding: data, as: UTF8.self))
        }
    }
}

extension Duration {
    var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}
