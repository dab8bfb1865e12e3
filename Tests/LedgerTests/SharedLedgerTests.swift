import Crypto
import Foundation
import GatewayCore
import Testing
@testable import Ledger

/// Several gateway instances writing one PostgreSQL ledger.
@Suite("Usage ledger shared by several instances (PostgreSQL)")
struct SharedLedgerTests {
    @Test("two instances recording concurrently leave one intact chain per tenant with every event exactly once")
    func twoInstancesOneChain() async throws {
        let t = try await TestLedger.make(.postgres, interval: 50)
        let first = t.ledger
        let second = try await t.another()
        let tenants = ["acme", "globex", "initech"]
        let perInstance = 1500
        // Each instance records its own events; one event in ten is also sent to the other
        // instance (a client retrying through another gateway): recorded once all the same.
        try await withThrowingTaskGroup(of: Void.self) { group in
            for (k, ledger) in [first, second].enumerated() {
                for worker in 0..<32 {
                    group.addTask {
                        var i = worker
                        while i < perInstance {
                            let n = k * perInstance + i
                            try await ledger.record(event(n, tenant: tenants[n % tenants.count]))
                            if i % 10 == 0 {
                                let other = (1 - k) * perInstance + i
                                try await ledger.record(event(other, tenant: tenants[other % tenants.count]))
                            }
                            i += 32
                        }
                    }
                }
            }
            try await group.waitForAll()
        }
        let result = try await t.verify()
        #expect(result.isIntact, "\(result.problems.prefix(5))")
        #expect(result.events.values.reduce(0, +) == 2 * perInstance)
        for tenant in tenants {
            let rows = try await t.events(tenant: tenant)
            #expect(rows.map(\.seq) == Array(1...Int64(rows.count)))
            let ids = Set(rows.map(\.event.id))
            #expect(ids.count == rows.count, "an event was recorded twice for \(tenant)")
            let expected = (0..<(2 * perInstance)).filter { tenants[$0 % tenants.count] == tenant }.map { event($0, tenant: tenant).id }
            #expect(ids == Set(expected))
            #expect(result.checkpoints[tenant] == rows.count / 50)
        }
        await second.shutdown()
        await t.close()
    }

    @Test("instances starting together migrate the schema once")
    func concurrentMigrations() async throws {
        let settings = try Backend.postgresSettings()
        let ledgers = try await withThrowingTaskGroup(of: PostgresLedger.self) { group in
            for _ in 0..<4 { group.addTask { try await PostgresLedger(settings: settings, checkpoints: nil) } }
            return try await group.reduce(into: [PostgresLedger]()) { $0.append($1) }
        }
        #expect(ledgers.count == 4)
        let applied = try await ledgers[0].client.query("SELECT count(*) FROM ledger_migrations").collect()
        let count = try applied.first?.decode(Int.self)
        #expect(count == PostgresLedgerSchema.migrations.count)
        for l in ledgers { await l.shutdown() }
        try await PostgresLedger.dropSchema(settings)
    }

    @Test("the ledger's connections commit synchronously even where the role's default says otherwise")
    func synchronousCommitIsAskedFor() async throws {
        let settings = try Backend.postgresSettings()
        let first = try await PostgresLedger(settings: settings, checkpoints: nil)
        _ = try await first.client.query("ALTER ROLE CURRENT_USER SET synchronous_commit = off").collect()
        do {
            // New connections get the role's default unless the client asks for another value.
            let second = try await PostgresLedger(settings: settings, checkpoints: nil, migrate: false)
            #expect(try await PostgresLedger.setting("synchronous_commit", second.client, second.logger) == "on")
            await second.shutdown()
        } catch {
            Issue.record("\(error)")
        }
        _ = try await first.client.query("ALTER ROLE CURRENT_USER RESET synchronous_commit").collect()
        await first.shutdown()
        try await PostgresLedger.dropSchema(settings)
    }

    @Test("an unreachable server fails the start with a message, within the connect timeout")
    func unreachable() async throws {
        _ = try Backend.postgresSettings()
        var settings = GatewayConfiguration.PostgresLedgerSettings(host: "127.0.0.1", port: 9, username: "cscgate",
                                                                    database: "none", tls: .disable)
        settings.maxConnections = 1
        let started = ContinuousClock.now
        await #expect(throws: PostgresLedgerError.self) {
            _ = try await PostgresLedger(settings: settings, checkpoints: nil, connectTimeout: .seconds(2))
        }
        // Bounded, not instant: the pool's connection attempts share two cores with the rest
        // of the parallel suite (13 s was seen under load average 12); a hang would be minutes.
        #expect(ContinuousClock.now - started < .seconds(30))
    }
}

/// `ledger:` in gateway.yaml: path for SQLite, url for PostgreSQL, errors with file and line.
@Suite("Ledger configuration")
struct LedgerConfigurationTests {
    func load(_ ledgerYAML: String) throws -> Result<GatewayConfiguration.LedgerSettings, ConfigurationError> {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("ledger-config-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir.appendingPathComponent("tenants"), withIntermediateDirectories: true)
        try FileManager.default.createDirectory(at: dir.appendingPathComponent("policies"), withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = dir.appendingPathComponent("gateway.yaml")
        try "listen: {host: 127.0.0.1, port: 8080}\n\(ledgerYAML)\n".write(to: file, atomically: true, encoding: .utf8)
        do {
            return .success(try ConfigurationLoader.load(gatewayFile: file.path).gateway.ledger)
        } catch let error as ConfigurationError {
            return .failure(error)
        }
    }

    @Test("without a ledger section the ledger is ledger.sqlite next to gateway.yaml")
    func sqliteDefault() throws {
        let settings = try load("").get()
        #expect(settings.path?.hasSuffix("/ledger.sqlite") == true)
    }

    @Test("a PostgreSQL URL with the password from the environment")
    func postgresURL() throws {
        let settings = try load("""
            ledger:
              url: postgres://gw@db.internal:6543/billing?sslmode=require
              passwordEnv: LEDGER_PASSWORD
              schema: cscgate
            """).get()
        guard case .postgres(let pg) = settings.store else { Issue.record("not postgres"); return }
        #expect(pg.host == "db.internal" && pg.port == 6543 && pg.username == "gw" && pg.database == "billing")
        #expect(pg.tls == .require && pg.schema == "cscgate" && pg.password == .environment("LEDGER_PASSWORD"))
        #expect(settings.location == "postgres://gw@db.internal:6543/billing (schema cscgate)")
    }

    @Test("a bad ledger URL is reported with file and line", arguments: [
        ("url: mysql://gw@db/billing", "scheme must be postgres"),
        ("url: postgres://gw:secret@db/billing", "must not hold a password"),
        ("url: postgres://db/billing", "names no user"),
        ("url: postgres://gw@db", "names no database"),
        ("url: postgres://gw@db/billing?sslmode=maybe", "sslmode must be one of"),
    ])
    func badURL(_ line: String, _ message: String) throws {
        guard case .failure(let error) = try load("ledger:\n  checkpointInterval: 10\n  \(line)") else {
            Issue.record("accepted \(line)")
            return
        }
        let issue = try #require(error.issues.first { $0.message.contains(message) }, "\(error)")
        #expect(issue.line == 4)
        #expect(issue.file.hasSuffix("gateway.yaml"))
        #expect(!error.description.contains("secret"))
    }

    @Test("path and url exclude each other")
    func pathAndURL() throws {
        guard case .failure(let error) = try load("ledger: {path: l.sqlite, url: \"postgres://gw@db/billing\"}") else {
            Issue.record("accepted both")
            return
        }
        #expect(error.description.contains("exclude each other"))
    }
}
