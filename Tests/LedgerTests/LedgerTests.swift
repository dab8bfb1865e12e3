import Crypto
import Foundation
import GatewayCore
import GRDB
import Testing
@testable import Ledger

/// The ledger's promises, each checked on SQLite and on PostgreSQL.
@Suite("Usage ledger (SQLite and PostgreSQL)")
struct LedgerTests {
    @Test("an event is durable and readable once record returns; a retried request id is recorded once",
          arguments: Backend.allCases)
    func recordsOnce(_ backend: Backend) async throws {
        let t = try await TestLedger.make(backend)
        try await t.ledger.record(event(1))
        try await t.ledger.record(event(1))
        #expect(try await t.ledger.recordedEvent(id: event(1).id)?.signatures == 1)
        #expect(try await t.events(tenant: "acme").count == 1)
        await t.close()
    }

    @Test("only a request id the client chose is found as a retry; the flag is stored with the event",
          arguments: Backend.allCases)
    func gatewayMadeIDsAreNotRetries(_ backend: Backend) async throws {
        let t = try await TestLedger.make(backend)
        try await t.ledger.record(event(1, clientChoseID: false))
        try await t.ledger.record(event(2, clientChoseID: true))
        #expect(try await t.ledger.recordedEvent(id: event(1).id) == nil)
        #expect(try await t.ledger.recordedEvent(id: event(2).id) == event(2, clientChoseID: true))
        #expect(try await t.events(tenant: "acme").map(\.event.requestIDFromClient) == [false, true])
        await t.close()
    }

    @Test("a SQLite ledger written before v3 migrates: its chain stays intact and its old ids are still found as retries")
    func sqliteMigratesFromV2() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("ledger-v2-" + UUID().uuidString)
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("ledger.sqlite").path
        do {
            // The file as a v2 gateway left it: the old table, with its UNIQUE id.
            let old = try DatabasePool(path: path)
            try LedgerSchema.migrator.migrate(old, upTo: "v2: OCSP responses kept as evidence")
            let chained = try LedgerChain.extend([event(1, clientChoseID: false), event(2, clientChoseID: false)],
                                                 after: [:], signer: nil)
            try await old.write { db in
                for r in chained.rows {
                    let e = r.event
                    try db.execute(sql: """
                        INSERT INTO usage_events (tenant, seq, id, time_ms, client, credential, upstream, operation, signatures,
                          sign_algo, hash_algo, outcome, stage, reason, latency_us, request_id, evidence, answer, prev_hash, hash)
                        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                        """, arguments: [e.tenantID, r.seq, e.id, r.timeMs, e.clientID, e.credentialID, e.upstream, e.operation,
                                         e.signatures, e.signAlgorithm, e.hashAlgorithm, e.outcome.rawValue, e.stage, e.reason,
                                         e.latencyMicros, e.requestID, e.evidence, e.answer, r.previousHash, r.hash])
                }
            }
            try old.close()
        }
        // `ledger verify` reads an old file as it is (read-only, not migrated).
        let asItWas = try await LedgerVerifier.verify(path: path, publicKey: nil)
        #expect(asItWas.isIntact && asItWas.events == ["acme": 2], "\(asItWas.problems)")
        let ledger = try SQLiteLedger(path: path)
        // Whether the client chose those ids was not recorded then: each is still found as a retry.
        #expect(try await ledger.recordedEvent(id: event(1).id)?.requestID == "req-1")
        try await ledger.record(event(2, clientChoseID: true))  // a retry of an old request: not recorded again
        try await ledger.record(event(3, clientChoseID: false))
        await ledger.shutdown()
        let result = try await LedgerVerifier.verify(path: path, publicKey: nil)
        #expect(result.isIntact, "\(result.problems)")
        #expect(result.events == ["acme": 3])
    }

    @Test("the SQLite writer commits with synchronous=FULL, not the NORMAL that GRDB's pool sets for WAL")
    func sqliteCommitsAreFullySynchronous() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("cscgate-sync-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let ledger = try SQLiteLedger(path: dir.appendingPathComponent("ledger.sqlite").path)
        try await ledger.record(event(1, clientChoseID: false))
        #expect(try ledger.writerSynchronous() == SQLiteLedger.synchronousFull)
        await ledger.shutdown()
    }

    @Test("concurrent records share commits and keep each tenant's chain contiguous", arguments: Backend.allCases)
    func concurrentGroupCommit(_ backend: Backend) async throws {
        let t = try await TestLedger.make(backend, interval: 100)
        let ledger = t.ledger
        try await withThrowingTaskGroup(of: Void.self) { group in
            for i in 0..<2000 {
                group.addTask { try await ledger.record(event(i, tenant: i % 2 == 0 ? "acme" : "globex")) }
            }
            try await group.waitForAll()
        }
        let result = try await t.verify()
        #expect(result.isIntact, "\(result.problems)")
        #expect(result.events == ["acme": 1000, "globex": 1000])
        #expect(result.checkpoints == ["acme": 10, "globex": 10])
        #expect(try await t.events(tenant: "acme").map(\.seq) == Array(1...1000))
        await t.close()
    }

    @Test("a reopened ledger continues the chain where it stopped", arguments: Backend.allCases)
    func reopens(_ backend: Backend) async throws {
        let t = try await TestLedger.make(backend)
        for i in 0..<7 { try await t.ledger.record(event(i)) }
        let again = try await t.another()
        for i in 7..<12 { try await again.record(event(i)) }
        await again.shutdown()
        let result = try await t.verify()
        #expect(result.isIntact, "\(result.problems)")
        #expect(result.events["acme"] == 12)
        await t.close()
    }

    enum Tampering: String, CaseIterable, CustomTestStringConvertible, Sendable {
        case edited, deleted, inserted, reordered, rewrittenAfterEdit
        var testDescription: String { rawValue }
    }

    @Test("ledger verify names the event that was edited, deleted, inserted or reordered",
          arguments: Backend.allCases, Tampering.allCases)
    func detectsTampering(_ backend: Backend, _ kind: Tampering) async throws {
        let t = try await TestLedger.make(backend, interval: 4)
        for i in 0..<10 { try await t.ledger.record(event(i)) }
        #expect(try await t.verify().isIntact)
        let target = event(5).id
        switch kind {
        case .edited:
            try await t.tamper("UPDATE usage_events SET signatures = 0 WHERE seq = 6")
        case .deleted:
            try await t.tamper("DELETE FROM usage_events WHERE seq = 6")
        case .inserted:
            try await t.tamper("UPDATE usage_events SET seq = seq + 100 WHERE seq >= 6")
            try await t.tamper("UPDATE usage_events SET seq = seq - 99 WHERE seq >= 106")
            try await t.tamper("""
                INSERT INTO usage_events (tenant, seq, id, time_ms, client, credential, upstream, operation, signatures,
                  sign_algo, hash_algo, outcome, stage, reason, latency_us, request_id, evidence, answer, prev_hash, hash)
                SELECT tenant, 6, 'forged', time_ms, client, credential, upstream, operation,
                  signatures, sign_algo, hash_algo, outcome, stage, reason, latency_us, request_id, evidence, answer,
                  prev_hash, hash FROM usage_events WHERE seq = 5
                """)
        case .reordered:
            try await t.tamper("UPDATE usage_events SET seq = -1 WHERE seq = 6")
            try await t.tamper("UPDATE usage_events SET seq = 6 WHERE seq = 7")
            try await t.tamper("UPDATE usage_events SET seq = 7 WHERE seq = -1")
        case .rewrittenAfterEdit:
            // Edit, then recompute every later link: only the signed checkpoints can tell.
            try await t.tamper("UPDATE usage_events SET signatures = 0 WHERE seq = 6")
            let rows = try await t.events(tenant: "acme")
            var prev = try #require(rows.first { $0.seq == 5 }).hash
            for row in rows where row.seq >= 6 {
                let h = LedgerChain.link(previous: prev, seq: row.seq, event: row.event, timeMs: row.timeMs)
                try await t.tamper("UPDATE usage_events SET prev_hash = \(t.bytes(prev)), hash = \(t.bytes(h)) WHERE seq = \(row.seq)")
                prev = h
            }
        }
        let result = try await t.verify()
        #expect(!result.isIntact)
        let text = result.problems.map(\.description).joined(separator: "\n")
        switch kind {
        case .edited: #expect(text.contains("event \(target)") && text.contains("edited"))
        case .deleted: #expect(text.contains("missing (deleted)"))
        case .inserted: #expect(text.contains("forged") || text.contains("does not link"))
        case .reordered: #expect(text.contains("does not link") || text.contains("edited"))
        case .rewrittenAfterEdit: #expect(text.contains("checkpoint does not match the chain"))
        }
        await t.close()
    }

    @Test("a checkpoint signed by another key is reported", arguments: Backend.allCases)
    func foreignCheckpointKey(_ backend: Backend) async throws {
        let t = try await TestLedger.make(backend, interval: 2)
        for i in 0..<4 { try await t.ledger.record(event(i)) }
        let result = try await t.verify(publicKey: Curve25519.Signing.PrivateKey().publicKey)
        #expect(result.problems.contains { $0.message.contains("signature does not verify") })
        await t.close()
    }

    @Test("a report's every number matches what was sent; denied and failed are counted, never billed",
          arguments: Backend.allCases)
    func reportMatchesMix(_ backend: Backend) async throws {
        let t = try await TestLedger.make(backend, interval: 1000)
        var expected: [String: (ok: Int, denied: Int, failed: Int, billed: Int)] = [:]
        var n = 0
        for day in 0..<3 {
            for client in ["app", "batch"] {
                for (outcome, count, sigs) in [(UsageOutcome.ok, 4 + day, 3), (.denied, 2, 0), (.failed, day, 0)] {
                    for _ in 0..<count {
                        try await t.ledger.record(event(n, outcome: outcome, signatures: sigs, client: client, day: day))
                        n += 1
                    }
                    var e = expected[client] ?? (0, 0, 0, 0)
                    switch outcome {
                    case .ok: e.ok += count; e.billed += count * sigs
                    case .denied: e.denied += count
                    case .failed: e.failed += count
                    }
                    expected[client] = e
                }
            }
        }
        try await t.ledger.record(event(9999, tenant: "other", signatures: 50))
        let from = Date(timeIntervalSince1970: 1_800_000_000), to = from.addingTimeInterval(3 * 86400)
        let byClient = try await t.report(tenant: "acme", from: from, to: to, grouping: .client)
        #expect(byClient.lines.map(\.key) == ["app", "batch"])
        for line in byClient.lines {
            let e = try #require(expected[line.key])
            #expect(line.ok == e.ok && line.denied == e.denied && line.failed == e.failed && line.billedSignatures == e.billed)
        }
        #expect(byClient.total.billedSignatures == expected.values.reduce(0) { $0 + $1.billed })
        let byDay = try await t.report(tenant: "acme", from: from, to: to, grouping: .day)
        #expect(byDay.lines.map(\.key) == ["2027-01-15", "2027-01-16", "2027-01-17"])
        #expect(byDay.lines.count == 3)
        #expect(byDay.lines[2].billedSignatures == 2 * (4 + 2) * 3)
        // The end is exclusive: the first day alone.
        let firstDay = try await t.report(tenant: "acme", from: from, to: from.addingTimeInterval(86400), grouping: .outcome)
        #expect(firstDay.total.operations == 2 * (4 + 2 + 0))
        #expect(firstDay.lines.map(\.key) == ["denied", "ok"])
        #expect(byClient.csv.hasPrefix("client,operations,ok,denied,failed,billed_signatures\n"))
        await t.close()
    }

    @Test("both backends chain the same events to the same hashes")
    func sameHashesOnBothBackends() async throws {
        let sqlite = try await TestLedger.make(.sqlite)
        let postgres = try await TestLedger.make(.postgres)
        for i in 0..<12 {
            try await sqlite.ledger.record(event(i))
            try await postgres.ledger.record(event(i))
        }
        let a = try await sqlite.events(tenant: "acme"), b = try await postgres.events(tenant: "acme")
        #expect(a.map(\.hash) == b.map(\.hash))
        #expect(a.count == 12)
        await sqlite.close()
        await postgres.close()
    }

    @Test("CSV fields cannot smuggle spreadsheet formulas or break columns")
    func csvFields() {
        #expect(UsageReport.csvField("=cmd()") == "'=cmd()")
        #expect(UsageReport.csvField("a,b") == "\"a,b\"")
        #expect(UsageReport.csvField("-") == "-")
    }

    @Test("day keys are UTC calendar dates")
    func dayKeys() {
        #expect(UsageReport.dayKey(0) == "1970-01-01")
        #expect(UsageReport.dayKey(1_800_000_000 / 86400) == "2027-01-15")
        #expect(UsageReport.dayKey(11_016) == "2000-02-29")
        #expect(UsageReport.dayKey(20_818) == "2026-12-31")
    }
}
