import Foundation
import GatewayCore

/// What verification and reports read from a ledger, whatever keeps it. Each backend answers
/// these few questions in its own SQL; `LedgerVerifier` and `UsageReport` exist once.
public protocol LedgerStore: Sendable {
    /// Tenants that have at least one event, sorted.
    func tenants() async throws -> [String]
    /// At most `limit` events of `tenant` whose seq is above `seq`, in seq order.
    func events(tenant: String, after seq: Int64, limit: Int) async throws -> [StoredEvent]
    /// The tenant's stored checkpoints, in seq order.
    func checkpoints(tenant: String) async throws -> [Checkpoint]
    /// One line per key of `grouping` over events of `tenant` with `from <= time < to`, sorted by key.
    func reportLines(tenant: String, from: Date, to: Date, grouping: UsageReport.Grouping) async throws -> [UsageReport.Line]
}

/// Opens the configured ledger, for writing (`serve`) or reading (`ledger verify`, `report`).
public enum LedgerBackends {
    /// The ledger `serve` records into. A PostgreSQL ledger runs its connection pool until
    /// `shutdown()`; its schema is migrated before this returns.
    public static func openLedger(_ settings: GatewayConfiguration.LedgerSettings, signer: CheckpointSigner?) async throws
        -> any UsageLedger & LedgerStore & LedgerLifecycle {
        switch settings.store {
        case .sqlite(let path):
            return try SQLiteLedger(path: path, checkpoints: signer)
        case .postgres(let pg):
            return try await PostgresLedger(settings: pg, checkpoints: signer)
        }
    }

    /// Runs `body` over a reader of the configured ledger and closes it after. SQLite is opened
    /// read-only; PostgreSQL through a short-lived client.
    public static func withStore<T: Sendable>(_ settings: GatewayConfiguration.LedgerSettings,
                                              _ body: (any LedgerStore) async throws -> T) async throws -> T {
        switch settings.store {
        case .sqlite(let path):
            return try await body(SQLiteLedgerStore(path: path))
        case .postgres(let pg):
            let ledger = try await PostgresLedger(settings: pg, checkpoints: nil, migrate: false)
            do {
                let result = try await body(ledger)
                await ledger.shutdown()
                return result
            } catch {
                await ledger.shutdown()
                throw error
            }
        }
    }
}

/// A ledger that holds resources beyond its lifetime in Swift (a connection pool) and lets
/// them go on `shutdown`. Pending records finish first.
public protocol LedgerLifecycle: Sendable {
    func shutdown() async
}
