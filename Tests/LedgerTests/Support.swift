import Crypto
import Foundation
import GatewayCore
import GRDB
import PostgresNIO
import Testing
@testable import Ledger

/// The two places a ledger can live. Every contract test runs on both.
enum Backend: String, CaseIterable, CustomTestStringConvertible, Sendable {
    case sqlite, postgres
    var testDescription: String { self == .sqlite ? "SQLite" : "PostgreSQL" }

    static let postgresURLVariable = "CSCGATE_TEST_POSTGRES_URL"

    /// The server the PostgreSQL cases use; `make test` starts one and sets the variable.
    static func postgresSettings() throws -> GatewayConfiguration.PostgresLedgerSettings {
        guard let url = ProcessInfo.processInfo.environment[postgresURLVariable], !url.isEmpty else {
            try Test.cancel(Comment(rawValue: "\(postgresURLVariable) is unset: the PostgreSQL ledger is not tested in this run "
                + "(`make test` starts a server with scripts/postgres.sh and sets it)"))
        }
        switch GatewayConfiguration.PostgresLedgerSettings.parse(url: url) {
        case .success(var settings):
            // Each test in a schema of its own, so tests are independent and can run in parallel.
            settings.schema = "t_" + UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "").prefix(16)
            settings.maxConnections = 4
            return settings
        case .failure(let error):
            Issue.record("\(postgresURLVariable) is not a usable URL: \(error)")
            throw error
        }
    }
}

/// A fresh ledger on one backend, with checkpoints every `interval` events, and the means an
/// attacker with write access to its storage would use.
final class TestLedger: Sendable {
    let backend: Backend
    let signer: CheckpointSigner
    let ledger: any UsageLedger & LedgerStore & LedgerLifecycle
    let path: String?
    let settings: GatewayConfiguration.PostgresLedgerSettings?

    private init(backend: Backend, signer: CheckpointSigner, ledger: any UsageLedger & LedgerStore & LedgerLifecycle,
                 path: String?, settings: GatewayConfiguration.PostgresLedgerSettings?) {
        self.backend = backend; self.signer = signer; self.ledger = ledger; self.path = path; self.settings = settings
    }

    static func make(_ backend: Backend, interval: Int = 5) async throws -> TestLedger {
        let signer = CheckpointSigner(key: Curve25519.Signing.PrivateKey(), interval: interval)
        switch backend {
        case .sqlite:
            let dir = FileManager.default.temporaryDirectory.appendingPathComponent("ledger-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            let path = dir.appendingPathComponent("ledger.sqlite").path
            return TestLedger(backend: backend, signer: signer, ledger: try SQLiteLedger(path: path, checkpoints: signer),
                              path: path, settings: nil)
        case .postgres:
            let settings = try Backend.postgresSettings()
            let ledger = try await PostgresLedger(settings: settings, checkpoints: signer)
            return TestLedger(backend: backend, signer: signer, ledger: ledger, path: nil, settings: settings)
        }
    }

    /// Another writer over the same storage: a second instance (PostgreSQL), or a restarted
    /// gateway (SQLite, which one process writes at a time).
    func another() async throws -> any UsageLedger & LedgerStore & LedgerLifecycle {
        if let path {
            await ledger.shutdown()
            return try SQLiteLedger(path: path, checkpoints: signer)
        }
        return try await PostgresLedger(settings: settings!, checkpoints: signer)
    }

    /// A reader as `ledger verify` and `report` open it, once the file holds every event
    /// acknowledged so far (as it does when the gateway has stopped).
    func withReader<T: Sendable>(_ body: (any LedgerStore) async throws -> T) async throws -> T {
        if let path {
            try await (ledger as? SQLiteLedger)?.caughtUp()
            return try await body(SQLiteLedgerStore(path: path))
        }
        let reader = try await PostgresLedger(settings: settings!, checkpoints: nil, migrate: false)
        do {
            let result = try await body(reader)
            await reader.shutdown()
            return result
        } catch {
            await reader.shutdown()
            throw error
        }
    }

    func verify(publicKey: Curve25519.Signing.PublicKey? = nil) async throws -> LedgerVerification {
        let key = publicKey ?? signer.publicKey
        return try await withReader { try await LedgerVerifier.verify($0, publicKey: key) }
    }

    func report(tenant: String, from: Date, to: Date, grouping: UsageReport.Grouping) async throws -> UsageReport {
        try await withReader { try await UsageReport.make($0, tenant: tenant, from: from, to: to, grouping: grouping) }
    }

    func events(tenant: String) async throws -> [StoredEvent] {
        try await ledger.events(tenant: tenant, after: .min, limit: 1_000_000)
    }

    /// Direct SQL on the storage, bypassing the ledger.
    func tamper(_ sql: String) async throws {
        if let path {
            let q = try DatabaseQueue(path: path)
            try await q.write { try $0.execute(sql: sql) }
        } else {
            let pg = ledger as! PostgresLedger
            try await pg.client.query(PostgresQuery(unsafeSQL: sql))
        }
    }

    /// A binary literal in this backend's SQL.
    func bytes(_ data: Data) -> String {
        let hex = PostgresLedger.hex(data)
        return backend == .sqlite ? "X'\(hex)'" : "decode('\(hex)', 'hex')"
    }

    /// Drops the test's schema (PostgreSQL) or file (SQLite).
    func close() async {
        await ledger.shutdown()
        if let settings { try? await PostgresLedger.dropSchema(settings) }
        if let path { try? FileManager.default.removeItem(atPath: URL(fileURLWithPath: path).deletingLastPathComponent().path) }
    }
}

func event(_ n: Int, tenant: String = "acme", outcome: UsageOutcome = .ok, signatures: Int = 1, client: String = "app",
           credential: String = "cred", day: Int = 0, clientChoseID: Bool = true) -> UsageEvent {
    UsageEvent(id: UsageEvent.eventID(tenantID: tenant, clientID: client, requestID: "req-\(n)", operation: "signatures/signHash"),
               time: Date(timeIntervalSince1970: 1_800_000_000 + Double(day * 86400 + n)), tenantID: tenant, clientID: client,
               credentialID: credential, upstream: "vendor-a", operation: "signatures/signHash",
               signatures: outcome == .ok ? signatures : 0, outcome: outcome, stage: outcome == .ok ? nil : "sad",
               reason: outcome == .ok ? nil : "SAD expired", latencyMicros: 100, requestID: "req-\(n)",
               requestIDFromClient: clientChoseID)
}
